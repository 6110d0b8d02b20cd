//! A [`Rejection`] as the `tonic::Status` an interceptor returns: the same code, message and
//! reason as the layers' trailers-only responses.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::reject::{REASON, Rejection, grpc_code, header_value};

impl From<Rejection> for Status {
    fn from(rejection: Rejection) -> Self {
        let code = Code::from_i32(i32::from(grpc_code(rejection.kind())));
        let mut status = Status::new(code, rejection.message());
        if let Ok(reason) = MetadataValue::try_from(header_value(rejection.code()).as_bytes()) {
            status.metadata_mut().insert(REASON, reason);
        }
        status
    }
}

/// A server misconfiguration, not the caller's fault: the request is refused all the same.
pub(super) fn misconfigured(what: &'static str) -> Status {
    tracing::error!(target: "tower_zerotrust::grpc", what, "refusing a request the interceptor cannot check");
    Status::internal(what)
}
