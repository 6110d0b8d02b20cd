//! HMAC-signed requests checked by an interceptor.

use std::sync::Arc;
use std::task::Poll;

use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::method::method_path;
use super::status::misconfigured;
use crate::future::poll_now;
use crate::hmac::{HmacConfig, Verdict, nonce_rejection, verify};
use crate::nonce::{MemoryNonceStore, NonceStore};
use crate::principal::{AuthMethod, Offered, Principal, Scheme};

/// The HTTP method every gRPC call is made with, as signed by the client.
const POST: &str = "POST";

/// [`VerifyHmacLayer`](crate::hmac::VerifyHmacLayer) as a tonic interceptor, with the
/// in-memory nonce store: the same signature, window, allowed callers, replay refusal and
/// reason codes, and the caller's [`Principal`] in the request's extensions.
///
/// The signature covers the gRPC method, which tonic does not give interceptors: serve with
/// [`MethodPathLayer`](super::MethodPathLayer) (requests without it are refused with
/// INTERNAL). A shared nonce store (Redis) answers asynchronously, which an interceptor
/// cannot wait for: use the layer for that.
///
/// ```
/// use tower_zerotrust::grpc::{HmacInterceptor, MethodPathLayer};
/// use tower_zerotrust::hmac::HmacConfig;
///
/// # fn main() -> Result<(), tower_zerotrust::ConfigError> {
/// let config = HmacConfig::builder()
///     .secret("a secret of at least thirty-two bytes")
///     .allow_callers(["gateway"])
///     .build()?;
/// let interceptor = HmacInterceptor::new(config);
/// // Server::builder().layer(MethodPathLayer)
/// //     .add_service(ModelRegistryServer::with_interceptor(registry, interceptor))
/// # let _ = (interceptor, MethodPathLayer); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct HmacInterceptor {
    shared: Arc<(HmacConfig, MemoryNonceStore)>,
}

impl HmacInterceptor {
    /// Verifies with `config`, remembering nonces in a store of its own.
    pub fn new(config: HmacConfig) -> Self {
        Self::with_store(config, MemoryNonceStore::default())
    }

    /// Verifies with `config`, remembering nonces in `store` (shared with other interceptors
    /// or layers of this process that must not accept the same request twice).
    pub fn with_store(config: HmacConfig, store: MemoryNonceStore) -> Self {
        Self {
            shared: Arc::new((config, store)),
        }
    }
}

impl Interceptor for HmacInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let (config, store) = &*self.shared;
        let settings = &*config.inner;
        let Some(path) = method_path(request.extensions()) else {
            return Err(misconfigured(
                "gRPC method unknown: serve with MethodPathLayer",
            ));
        };
        let now = settings.clock.now_millis();
        let principal = match verify(settings, now, POST, &path, request.metadata().as_ref()) {
            Ok(Verdict::Public) => return Ok(request),
            Ok(Verdict::Anonymous) => {
                Offered::record(request.extensions_mut(), Scheme::Hmac);
                return Ok(request);
            }
            Ok(Verdict::Caller { id, nonce }) => {
                let mut check = store.check_and_record(id, nonce, settings.nonce_ttl);
                // The in-memory store answers at once.
                match poll_now(&mut check) {
                    Poll::Ready(Ok(())) => Principal::new(id, AuthMethod::Hmac),
                    Poll::Ready(Err(error)) => return Err(nonce_rejection(&error).into()),
                    Poll::Pending => return Err(misconfigured("nonce store did not answer")),
                }
            }
            Err(rejection) => {
                tracing::debug!(target: "tower_zerotrust::hmac", path = %path, code = rejection.code(), "gRPC request rejected");
                return Err(rejection.into());
            }
        };
        principal.attach(request.extensions_mut())?;
        Ok(request)
    }
}
