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
