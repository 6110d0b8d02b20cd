//! Glue for web frameworks, each behind its feature.

#[cfg(feature = "axum")]
mod axum;
