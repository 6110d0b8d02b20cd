use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::JwtConfig;
use super::future::ResponseFuture;
use super::validate::{Verdict, authenticate};
use crate::body::ResponseBody;
use crate::principal::{Offered, Scheme};
use crate::reject::Pending;

/// The service made by [`RequireJwtLayer`](super::RequireJwtLayer).
#[derive(Debug, Clone)]
pub struct RequireJwt<S> {
    inner: S,
    config: JwtConfig,
}

impl<S> RequireJwt<S> {
    pub(crate) fn new(inner: S, config: JwtConfig) -> Self {
        Self { inner, config }
    }

    inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireJwt<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let settings = &self.config.inner;
        match authenticate(
            settings,
            Some(req.uri().path()),
            req.headers(),
            req.extensions(),
        ) {
            Ok(Verdict::Public) => ResponseFuture::call(self.inner.call(req)),
            Ok(Verdict::Anonymous) => {
                Offered::record(req.extensions_mut(), Scheme::Bearer);
                ResponseFuture::call(self.inner.call(req))
            }
            Ok(Verdict::Verified(principal, claims)) => {
                match principal.attach(req.extensions_mut()) {
                    Ok(()) => {
                        req.extensions_mut().insert(claims);
                        ResponseFuture::call(self.inner.call(req))
                    }
                    Err(conflict) => ResponseFuture::reject(Pending::new(conflict, req.headers())),
                }
            }
            Ok(Verdict::UnknownKey) => {
                // Learn the key set's new keys, then check again; take the inner service that
                // is ready and leave a clone in its place.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::refresh(self.config.clone(), inner, req)
            }
            Err(rejection) => {
                super::log_rejection(&rejection, &req);
                ResponseFuture::reject(Pending::new(rejection, req.headers()))
            }
        }
    }
}
