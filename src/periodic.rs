//! Work repeated on a timer in the background: reloads and gauges.

use std::time::Duration;

/// Runs `work` every `interval` on the current tokio runtime (the first time at once when
/// `now`, else after one interval), for as long as the returned handle is not aborted.
pub(crate) fn every(
    interval: Duration,
    now: bool,
    work: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        if !now {
            ticker.tick().await;
        }
        loop {
            ticker.tick().await;
            work();
        }
    })
}
