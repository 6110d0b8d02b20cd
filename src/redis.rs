//! One Redis connection for the stores that outgrow a process: the nonce store, distributed
//! rate limits and signed pub/sub. It connects on first use, reconnects by itself, and bounds
//! every command's time, so that a Redis outage turns into prompt errors (which the layers
//! answer with 503) rather than requests that hang, and ends by itself when Redis returns.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_zerotrust::redis::RedisConnection;
//!
//! # #[tokio::main] async fn main() -> Result<(), tower_zerotrust::ConfigError> {
//! let redis = RedisConnection::open("redis://127.0.0.1:6379/")?
//!     .command_timeout(Duration::from_millis(250));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{BoxError, ConfigError};

const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// A shared, self-healing Redis connection with a time bound on every command. Cheap to
/// clone: clones share the connection (commands are pipelined on it).
#[derive(Clone)]
pub struct RedisConnection {
    manager: ConnectionManager,
    timeout: Duration,
}

impl RedisConnection {
    /// A connection to `url` (`redis://host:port/db`, `rediss://` for TLS, with
    /// `user:password@` when Redis requires it), made on first use. Call it inside a tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a URL Redis cannot use (the message never repeats the URL,
    /// which may hold a password).
    pub fn open(url: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            what: "Redis URL",
            reason,
        };
        let client = redis::Client::open(url).map_err(|e| invalid(format!("{:?}", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
            // Fail fast while Redis is away; the next command tries again.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| invalid(format!("{:?}", e.kind())))?;
        Ok(Self {
            manager,
            timeout: DEFAULT_COMMAND_TIMEOUT,
        })
    }

    /// The longest a command may take, connecting included (default 500 ms); past it the
    /// command fails, and so does the request that needed it (fail closed).
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `command` on the connection within the time bound.
    pub(crate) fn run<T, F, Fut>(
        &self,
        command: F,
    ) -> impl Future<Output = Result<T, BoxError>> + Send + 'static
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (timeout, running) = (self.timeout, command(self.manager.clone()));
        async move {
            match tokio::time::timeout(timeout, running).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(error.into()),
                Err(_) => Err(format!("Redis did not answer within {timeout:?}").into()),
            }
        }
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("command_timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `prefix` then `parts` joined so that no two lists of parts give the same key, whatever
/// bytes the parts hold (a token subject may contain `:`): each part but the last is written
/// with its length, `<len>:<part>:`.
pub(crate) fn key(prefix: &str, parts: &[&str]) -> String {
    use std::fmt::Write;
    let mut key =
        String::with_capacity(prefix.len() + parts.iter().map(|p| p.len() + 8).sum::<usize>());
    key.push_str(prefix);
    if let Some((last, rest)) = parts.split_last() {
        for part in rest {
            let _ = write!(key, "{}:{part}:", part.len());
        }
        key.push_str(last);
    }
    key
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_unambiguous() {
        assert_eq!(super::key("zt:", &["gateway", "n1"]), "zt:7:gateway:n1");
        assert_ne!(
            super::key("zt:", &["a:b", "c"]),
            super::key("zt:", &["a", "b:c"])
        );
        assert_ne!(super::key("", &["a:1", "x"]), super::key("", &["a", "1:x"]));
    }
}
