//! What the layers inside the audit layer tell it about a request: who was proven. (Refusals
//! travel in the response's extensions as the `Rejection` itself.)

use std::sync::{Arc, Mutex, PoisonError};

use http::Extensions;

use crate::principal::Principal;

/// Put into each request by the audit layer; authentication layers record the principal in
/// it when they prove one.
#[derive(Clone, Default)]
pub(crate) struct AuditContext(Arc<Mutex<Option<Principal>>>);

impl AuditContext {
    pub(crate) fn principal(&self) -> Option<Principal> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Records `principal` in the request's audit context, if the request is being audited: the
/// principal the request names (see `Principal::attach`), the one the handler sees.
#[cfg_attr(
    not(any(feature = "hmac", feature = "jwt", feature = "mtls")),
    allow(dead_code)
)]
pub(crate) fn record_principal(extensions: &Extensions, principal: &Principal) {
    if let Some(context) = extensions.get::<AuditContext>() {
        *context.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(principal.clone());
    }
}
