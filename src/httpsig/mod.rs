//! HTTP Message Signatures (RFC 9421) with `Content-Digest` (RFC 9530): the parts the verify
//! and sign layers are built from.
//!
//! * [`base`]: which signatures a request carries (`Signature-Input` and `Signature`, parsed as
//!   structured fields), the components each covers, and the signature base (§2.5) they sign.
//! * [`algorithm`]: keys pinned to one algorithm each (`hmac-sha256`, `ed25519`,
//!   `ecdsa-p256-sha256`, `ecdsa-p384-sha384`, `rsa-pss-sha512`, `rsa-v1_5-sha256`); the message
//!   never chooses it.
//! * [`digest`]: `Content-Digest` (`sha-256`, `sha-512`) made and checked over the body.
//! * [`verify`]: which signature counts (by label or tag, never ambiguous), the key it names,
//!   the coverage and freshness required, and the caller it proves.
//! * [`sign`]: the client side: `Signature-Input`, `Signature` and `Content-Digest` for a
//!   request.
//! * [`layer`]: the verify layer: headers first, then the body (bounded) against its digest,
//!   then the nonce, then the inner service with the same bytes.
//!
//! Work in progress (feature `httpsig`): not public until the layers land.

#![allow(dead_code)]

pub(crate) mod algorithm;
pub(crate) mod base;
pub(crate) mod digest;
pub(crate) mod layer;
pub(crate) mod sign;
pub(crate) mod verify;
