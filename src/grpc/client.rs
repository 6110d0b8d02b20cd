//! Client interceptors: prove this service on every call of a tonic client.

use http::HeaderValue;
use http::header::AUTHORIZATION;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::method::method_path;
use crate::sign::{HmacSigner, MintedToken, StaticToken};

/// Signs each call with [`HmacSigner`], as [`SignHmacLayer`](crate::sign::SignHmacLayer)
/// does: `FooClient::with_interceptor(channel, SignHmacInterceptor::new(signer))`.
///
/// The signature covers the gRPC method, which generated clients name in each request
/// (`tonic::GrpcMethod`); a call that does not name it fails with INTERNAL rather than leave
/// unsigned.
#[derive(Debug, Clone)]
pub struct SignHmacInterceptor {
    signer: HmacSigner,
}

impl SignHmacInterceptor {
    /// Signs as `signer`.
    pub fn new(signer: HmacSigner) -> Self {
        Self { signer }
    }
}

impl Interceptor for SignHmacInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(path) = method_path(request.extensions()) else {
            return Err(Status::internal(
                "gRPC method unknown: cannot sign (use SignHmacLayer on the channel)",
            ));
        };
        let headers = self.signer.sign("POST", &path);
        headers.apply_to(request.metadata_mut().as_mut());
        Ok(request)
    }
}

/// Adds `Authorization: Bearer <token>` to each call, as
/// [`AddBearerLayer`](crate::sign::AddBearerLayer) does, from a [`StaticToken`] or a
/// [`MintedToken`] (re-minted when 80 % of its lifetime has passed). Sources that fetch tokens
/// asynchronously need the layer.
#[derive(Debug, Clone)]
pub struct BearerInterceptor {
    token: Token,
}

#[derive(Debug, Clone)]
enum Token {
    Static(StaticToken),
    Minted(MintedToken),
}

impl BearerInterceptor {
    /// Sends `token` (a [`StaticToken`] or a [`MintedToken`]).
    pub fn new(token: impl Into<BearerInterceptor>) -> Self {
        token.into()
    }

    fn authorization(&self) -> Result<HeaderValue, Status> {
        match &self.token {
            Token::Static(token) => Ok(token.0.clone()),
            Token::Minted(token) => token.current().map_err(|error| {
                tracing::warn!(target: "tower_zerotrust::sign", %error, "minting a token failed");
                Status::internal("minting a token failed")
            }),
        }
    }
}

impl From<StaticToken> for BearerInterceptor {
    fn from(token: StaticToken) -> Self {
        Self {
            token: Token::Static(token),
        }
    }
}

impl From<MintedToken> for BearerInterceptor {
    fn from(token: MintedToken) -> Self {
        Self {
            token: Token::Minted(token),
        }
    }
}

impl Interceptor for BearerInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value = self.authorization()?;
        request.metadata_mut().as_mut().insert(AUTHORIZATION, value);
        Ok(request)
    }
}
