//! One Redis connection for the stores that outgrow a process: the nonce store, distributed
//! rate limits and signed pub/sub. It connects on first use, reconnects by itself, and bounds
//! every command's time, so that a Redis outage turns into prompt errors (which the layers
//! answer with 503) rather than requests that hang, and ends by itself when Redis returns.
//!
//! It reaches one node, a Redis Cluster or a Sentinel-watched primary, with the same
//! fail-closed guarantee: while a slot has no primary (a cluster failover) or the primary is
//! gone and not yet replaced (Sentinel), the commands that need it fail and signed requests
//! get 503; they succeed again by themselves once the new primary is known. Redis replicates
//! asynchronously, so a nonce a primary acknowledged just before it crashed may be missing on
//! the promoted replica: [`RedisNonceStore::acknowledged_by`](crate::nonce::RedisNonceStore::acknowledged_by)
//! makes a nonce count only once a replica has it.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_zerotrust::redis::RedisConnection;
//!
//! # #[tokio::main] async fn main() -> Result<(), tower_zerotrust::ConfigError> {
//! let redis = RedisConnection::open("redis://127.0.0.1:6379/")?
//!     .command_timeout(Duration::from_millis(250));
//! let cluster = RedisConnection::open("redis-cluster://10.0.0.1:6379,10.0.0.2:6379")?;
//! let sentinels = RedisConnection::open("redis-sentinel://10.0.0.5:26379,10.0.0.6:26379/nonces")?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::{BoxError, ConfigError};

const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a connection waits for an answer: the command timeout bounds every command, so
/// this only ends answers that never come. Not shorter: a `WAIT` for replicas may rightly take
/// longer than the default command timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A shared, self-healing Redis connection with a time bound on every command. Cheap to
/// clone: clones share the connection (commands are pipelined on it).
///
/// It reaches a single node ([`open`](Self::open) with `redis://`), a Redis Cluster
/// ([`cluster`](Self::cluster), or `redis-cluster://host:port,host:port`: the slot map is
/// discovered from the nodes given and followed through `MOVED`, `ASK` and resharding), or the
/// primary a set of Sentinels names ([`sentinel`](Self::sentinel), or
/// `redis-sentinel://host:port,host:port/<service>`: asked again whenever the primary stops
/// answering, so a promoted replica is found without a restart). Every command the crate sends
/// touches one key, so one slot: the nonce store and the rate-limit script work unchanged on
/// all three.
#[derive(Clone)]
pub struct RedisConnection {
    link: Link,
    timeout: Duration,
}

#[derive(Clone)]
enum Link {
    Node(ConnectionManager),
    Cluster(Arc<ClusterLink>),
    Sentinel(Arc<SentinelLink>),
}

/// The cluster connection, made on first use (and again after a failed attempt).
struct ClusterLink {
    client: ClusterClient,
    connection: tokio::sync::OnceCell<ClusterConnection>,
}

/// The primary's connection, dropped when it fails so that the next command asks the
/// Sentinels again.
struct SentinelLink {
    client: tokio::sync::Mutex<SentinelClient>,
    primary: Mutex<Option<MultiplexedConnection>>,
}

/// One connection to whatever the [`RedisConnection`] reaches: what commands run on.
pub(crate) enum Connection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid {
        what: "Redis URL",
        reason,
    }
}

impl RedisConnection {
    /// A connection to `url`, made on first use. Call it inside a tokio runtime.
    ///
    /// * `redis://host:port/db` (`rediss://` for TLS, `user:password@` when Redis requires
    ///   it): one node;
    /// * `redis-cluster://host:port,host:port,...`: a Redis Cluster, from some of its nodes;
    /// * `redis-sentinel://host:port,host:port/<service-name>`: the primary the Sentinels name.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a URL Redis cannot use (the message never repeats the URL,
    /// which may hold a password).
    pub fn open(url: &str) -> Result<Self, ConfigError> {
        let url = match Target::of(url)? {
            Target::Node(url) => url,
            Target::Cluster(nodes) => return Self::cluster(&nodes),
            Target::Sentinel(sentinels, service) => return Self::sentinel(&sentinels, &service),
        };
        let url = url.as_str();
        let client = redis::Client::open(url).map_err(|e| invalid(format!("{:?}", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
            .set_response_timeout(Some(ANSWER_TIMEOUT))
            // Fail fast while Redis is away; the next command tries again.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| invalid(format!("{:?}", e.kind())))?;
        Ok(Self::with(Link::Node(manager)))
    }

    /// A Redis Cluster reached through `nodes` (`redis://host:port` URLs of some of its
    /// nodes; the others are discovered).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for unusable URLs, or none.
    pub fn cluster<U: AsRef<str>>(nodes: &[U]) -> Result<Self, ConfigError> {
        if nodes.is_empty() {
            return Err(invalid("a cluster needs at least one node".to_owned()));
        }
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let client = ClusterClient::builder(nodes)
            .connection_timeout(DEFAULT_COMMAND_TIMEOUT)
            .response_timeout(ANSWER_TIMEOUT)
            // Fail fast while a slot has no primary; the next command tries again.
            .retries(1)
            .max_retry_wait(100)
            .build()
            .map_err(|e| invalid(format!("{:?}", e.kind())))?;
        Ok(Self::with(Link::Cluster(Arc::new(ClusterLink {
            client,
            connection: tokio::sync::OnceCell::new(),
        }))))
    }

    /// The primary that the Sentinels at `sentinels` (`redis://host:port` URLs) name for
    /// `service`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for unusable URLs, or none.
    pub fn sentinel<U: AsRef<str>>(sentinels: &[U], service: &str) -> Result<Self, ConfigError> {
        Ok(Self::with(Link::Sentinel(Arc::new(SentinelLink {
            client: tokio::sync::Mutex::new(sentinel_client(sentinels, service)?),
            primary: Mutex::new(None),
        }))))
    }

    fn with(link: Link) -> Self {
        Self {
            link,
            timeout: DEFAULT_COMMAND_TIMEOUT,
        }
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
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (timeout, link) = (self.timeout, self.link.clone());
        async move {
            let running = async {
                let result = command(link.connect().await?).await;
                if let Err(error) = &result {
                    link.failed(error);
                }
                result
            };
            match tokio::time::timeout(timeout, running).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(error.into()),
                Err(_) => {
                    link.forget();
                    Err(format!("Redis did not answer within {timeout:?}").into())
                }
            }
        }
    }
}

impl Link {
    async fn connect(&self) -> RedisResult<Connection> {
        match self {
            Self::Node(manager) => Ok(Connection::Node(manager.clone())),
            Self::Cluster(cluster) => {
                let connection = cluster
                    .connection
                    .get_or_try_init(|| cluster.client.get_async_connection())
                    .await?;
                Ok(Connection::Cluster(connection.clone()))
            }
            Self::Sentinel(sentinel) => {
                let known = sentinel
                    .primary
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(primary) = known {
                    return Ok(Connection::Sentinel(primary));
                }
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(DEFAULT_COMMAND_TIMEOUT))
                    .set_response_timeout(Some(ANSWER_TIMEOUT));
                let primary = sentinel
                    .client
                    .lock()
                    .await
                    .get_async_connection_with_config(&config)
                    .await?;
                *sentinel
                    .primary
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(primary.clone());
                Ok(Connection::Sentinel(primary))
            }
        }
    }

    /// A command failed: if the connection (not the command) is at fault, a Sentinel-found
    /// primary is looked up again next time.
    fn failed(&self, error: &redis::RedisError) {
        let connection_lost = error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
            || error.to_string().contains("READONLY");
        if connection_lost {
            self.forget();
        }
    }

    fn forget(&self) {
        if let Self::Sentinel(sentinel) = self {
            *sentinel
                .primary
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

/// A client of the primary the Sentinels at `sentinels` name for `service`.
pub(crate) fn sentinel_client<U: AsRef<str>>(
    sentinels: &[U],
    service: &str,
) -> Result<SentinelClient, ConfigError> {
    if sentinels.is_empty() {
        return Err(invalid("no Sentinel given".to_owned()));
    }
    let sentinels: Vec<&str> = sentinels.iter().map(AsRef::as_ref).collect();
    SentinelClient::build(
        sentinels,
        service.to_owned(),
        None,
        SentinelServerType::Master,
    )
    .map_err(|e| invalid(format!("{:?}", e.kind())))
}

/// What a Redis URL names: one node, some of a cluster's nodes, or Sentinels and a service.
pub(crate) enum Target {
    Node(String),
    Cluster(Vec<String>),
    Sentinel(Vec<String>, String),
}

impl Target {
    /// Reads `redis://`, `rediss://`, `redis-cluster://host:port,...` and
    /// `redis-sentinel://host:port,.../<service>` URLs (the hosts of the last two as
    /// `redis://` URLs, with the credentials given).
    pub(crate) fn of(url: &str) -> Result<Self, ConfigError> {
        let hosts = |auth: &str, hosts: &str| -> Vec<String> {
            hosts
                .split(',')
                .map(|host| format!("redis://{auth}{host}"))
                .collect()
        };
        if let Some(rest) = url.strip_prefix("redis-cluster://") {
            let (auth, rest) = split_auth(rest);
            return Ok(Self::Cluster(hosts(auth, rest)));
        }
        if let Some(rest) = url.strip_prefix("redis-sentinel://") {
            let (auth, rest) = split_auth(rest);
            let Some((list, service)) = rest.split_once('/').filter(|(_, s)| !s.is_empty()) else {
                return Err(invalid(
                    "a Sentinel URL ends with /<service-name>".to_owned(),
                ));
            };
            return Ok(Self::Sentinel(hosts(auth, list), service.to_owned()));
        }
        Ok(Self::Node(url.to_owned()))
    }
}

/// `user:password@` (kept, with its `@`) and the rest of a multi-host URL.
fn split_auth(rest: &str) -> (&str, &str) {
    match rest.rfind('@') {
        Some(at) => rest.split_at(at + 1),
        None => ("", rest),
    }
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reaches = match self.link {
            Link::Node(_) => "node",
            Link::Cluster(_) => "cluster",
            Link::Sentinel(_) => "sentinel",
        };
        f.debug_struct("RedisConnection")
            .field("reaches", &reaches)
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
