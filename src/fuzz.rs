//! The configuration of the property tests that fuzz the crate's parsers in place.

/// `ZEROTRUST_FUZZ_CASES` cases (default 2000), no failure files left behind.
pub(crate) fn config() -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        cases: std::env::var("ZEROTRUST_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}
