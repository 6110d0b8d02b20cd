//! Small macros shared by the layers.

/// `get_ref`, `get_mut` and `into_inner` for a service whose wrapped service is `self.inner`.
#[allow(unused_macros)] // every user sits behind a feature
macro_rules! inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

/// The response future of a layer whose service either calls the inner service or answers with
/// a rejection at once: a named wrapper around `RejectOr`.
#[allow(unused_macros)] // every user sits behind a feature
macro_rules! reject_or_response_future {
    ($service:literal) => {
        pin_project_lite::pin_project! {
            #[doc = concat!("The response future of [`", $service, "`].")]
            pub struct ResponseFuture<F> {
                #[pin]
                inner: crate::future::RejectOr<F>,
            }
        }

        impl<F, B, E> std::future::Future for ResponseFuture<F>
        where
            F: std::future::Future<Output = Result<http::Response<B>, E>>,
        {
            type Output = Result<http::Response<crate::body::ResponseBody<B>>, E>;

            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.project().inner.poll(cx)
            }
        }
    };
}
