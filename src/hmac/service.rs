use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::Shared;
use super::verify::{Verdict, nonce_refusal, verify};
use crate::body::ResponseBody;
use crate::future::poll_now;
use crate::nonce::{MemoryNonceStore, NonceStore};
use crate::principal::{AuthMethod, Offered, Principal, Scheme};
use crate::reject::{Pending, RejectionKind};

/// The service made by [`VerifyHmacLayer`](super::VerifyHmacLayer).
#[derive(Debug)]
pub struct VerifyHmac<S, N = MemoryNonceStore> {
    inner: S,
    shared: Arc<Shared<N>>,
}

impl<S, N> VerifyHmac<S, N> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<N>>) -> Self {
        Self { inner, shared }
    }

    inner_service_accessors!();
}

impl<S: Clone, N> Clone for VerifyHmac<S, N> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, N, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyHmac<S, N>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    N: NonceStore,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, N, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let settings = &*self.shared.config.inner;
        let path = req.uri().path();
        let verdict = verify(
            settings,
            settings.clock.now_millis(),
            req.method().as_str(),
            path,
            req.headers(),
        );
        match verdict {
            Ok(Verdict::Public) => ResponseFuture::call(self.inner.call(req)),
            Ok(Verdict::Anonymous) => {
                Offered::record(req.extensions_mut(), Scheme::Hmac);
                ResponseFuture::call(self.inner.call(req))
            }
            Ok(Verdict::Caller { id, nonce }) => {
                let principal = Principal::new(id, AuthMethod::Hmac);
                let mut check = self
                    .shared
                    .store
                    .check_and_record(id, nonce, settings.nonce_ttl);
                // In-process stores answer at once: finish here rather than park the request
                // in the future. A store that is not ready is polled again, with the real
                // waker, by the response future.
                match poll_now(&mut check) {
                    Poll::Ready(Ok(())) => match principal.attach(req.extensions_mut()) {
                        Ok(()) => ResponseFuture::call(self.inner.call(req)),
                        Err(conflict) => {
                            ResponseFuture::reject(Pending::new(conflict, req.headers()))
                        }
                    },
                    Poll::Ready(Err(error)) => {
                        ResponseFuture::reject(nonce_refusal(&error, principal.id(), &req))
                    }
                    Poll::Pending => {
                        // Call the inner service once the nonce is recorded; take the one that
                        // is ready and leave a clone in its place.
                        let clone = self.inner.clone();
                        let inner = std::mem::replace(&mut self.inner, clone);
                        ResponseFuture::check(check, inner, req, principal)
                    }
                }
            }
            Err(rejection) => {
                let caller = req.headers().get(&super::SERVICE_ID);
                let caller = caller.and_then(|v| v.to_str().ok());
                // Only a caller refusal (403) comes after the signature was verified: the audit
                // event names who proved itself.
                let proven = rejection.kind() == RejectionKind::Forbidden;
                if let (true, Some(caller)) = (proven, caller) {
                    Principal::new(caller, AuthMethod::Hmac).refused_after_proof(req.extensions());
                }
                super::log_rejection(&rejection, caller, proven, &req);
                ResponseFuture::reject(Pending::new(rejection, req.headers()))
            }
        }
    }
}
