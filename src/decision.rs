//! What a layer decided besides letting a request through or refusing it, for the audit trail:
//! a refusal a layer in shadow mode did not make, a disagreement between the enforced policy
//! and a candidate running beside it, and why an authorization refusal was made.
//!
//! Layers tell these to the [audit layer](crate::audit::AuditLayer), when one runs outside
//! them, and to the debug log.

use crate::principal::PrincipalSlot;

/// Whether a layer refuses what it would refuse, or only records it: the way to roll out a
/// new policy or quota and see what it would do to real traffic before it does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Refuse (the default).
    #[default]
    Enforce,
    /// Let every request through, and record each refusal enforcement would have made: in the
    /// audit event (`metadata.shadow_refusal`), as a metric, and in the debug log.
    Shadow,
}

impl Enforcement {
    /// `enforce` or `shadow` (as `AUTHZ_MODE` spells them).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Shadow => "shadow",
        }
    }
}

/// A refusal a layer in [`Enforcement::Shadow`] did not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "audit", derive(serde::Serialize))]
pub struct ShadowRefusal {
    /// The layer: `authz` or `rate_limit`.
    pub layer: &'static str,
    /// The reason code it would have refused with.
    pub code: &'static str,
}

/// The enforced policy and a candidate running beside it decided differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "audit", derive(serde::Serialize))]
pub struct Disagreement {
    /// The layer: `authz`.
    pub layer: &'static str,
    /// The enforced decision: `allow`, or the reason code of the refusal.
    pub enforced: &'static str,
    /// The candidate's decision, the same way.
    pub candidate: &'static str,
}

/// Why an authorization refusal was (or, in shadow mode, would have been) made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "audit", derive(serde::Serialize))]
pub struct Explanation {
    /// The rule that matched: `GET /models/{id}`, a gRPC method, `otherwise`; `None` when a
    /// policy engine decided the whole request.
    pub rule: Option<String>,
    /// What the rule requires: `permission models:delete`, `role admin`, ...
    pub required: Option<String>,
    /// The roles the policy saw the principal hold (its own and those assigned to it).
    pub roles: Vec<String>,
    /// The policy engine's own reason, when it gave one.
    pub reason: Option<String>,
}

/// One thing a layer tells the listener (made by the authorize and rate-limit layers, read
/// by the audit layer).
#[derive(Debug, Clone)]
#[cfg_attr(
    not(all(feature = "audit", feature = "authz", feature = "rate-limit")),
    allow(dead_code)
)]
pub(crate) enum Note {
    Shadow(ShadowRefusal),
    Disagreement(Disagreement),
    Explanation(Explanation),
}

/// Tells `note` to the request's listener, if an outer layer put one there.
#[cfg_attr(not(any(feature = "authz", feature = "rate-limit")), allow(dead_code))]
pub(crate) fn tell(extensions: &http::Extensions, note: Note) {
    if let Some(slot) = extensions.get::<PrincipalSlot>() {
        slot.note(note);
    }
}
