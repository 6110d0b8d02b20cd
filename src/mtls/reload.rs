//! Certificate rotation without downtime: replace the server's certificate, key and CA while
//! serving. Existing connections keep the material they were established with; new handshakes
//! use the new one; a broken new file changes nothing.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use super::config::{TlsConfig, TlsConfigBuilder};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;

/// Where [`serve_tls`](super::serve_tls) takes the configuration for each new connection.
pub trait ServerConfigSource: Send + Sync + 'static {
    /// The configuration for the next handshake.
    fn current(&self) -> Arc<ServerConfig>;
}

impl ServerConfigSource for Arc<ServerConfig> {
    fn current(&self) -> Arc<ServerConfig> {
        self.clone()
    }
}

/// A server configuration read from PEM files that can be reloaded while serving: on an
/// explicit [`reload`](Self::reload), on a timer with [`reload_every`](Self::reload_every), or
/// on a Unix signal with [`reload_on_signal`](Self::reload_on_signal).
///
/// Cheap to clone; clones share the configuration.
///
/// ```no_run
/// use tower_zerotrust::mtls::{ReloadingServerConfig, TlsConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // CRLs and relaxations are read again at every reload, like the certificates.
/// let tls = ReloadingServerConfig::new(
///     TlsConfig::builder("certs/svc/cert.pem", "certs/svc/key.pem", "certs/ca/cert.pem")
///         .crl_file("certs/ca/crl.pem"),
/// )?;
/// # #[cfg(unix)]
/// tls.reload_on_signal(tokio::signal::unix::SignalKind::hangup())?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ReloadingServerConfig {
    inner: Arc<Inner>,
}

type Loader = dyn Fn() -> Result<TlsConfig, ConfigError> + Send + Sync;

struct Inner {
    load: Box<Loader>,
    current: ArcSwap<ServerConfig>,
    not_after: ArcSwap<Option<i64>>,
}

/// Certificates closer than this to expiry are reported at every load.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

impl ReloadingServerConfig {
    /// Builds `tls` now and again at every reload, so that the files it names (certificates,
    /// key, CA and CRLs) are read afresh each time.
    ///
    /// # Errors
    ///
    /// As [`TlsConfigBuilder::build`].
    pub fn new(tls: TlsConfigBuilder) -> Result<Self, ConfigError> {
        Self::from_loader(move || tls.clone().build())
    }

    /// Builds the configuration with `load` now and at every reload: for material that does
    /// not come from files, such as a secrets manager's API.
    ///
    /// # Errors
    ///
    /// What `load` or [`TlsConfig::server_config`] returns.
    pub fn from_loader(
        load: impl Fn() -> Result<TlsConfig, ConfigError> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        let (config, not_after) = build(&load)?;
        Ok(Self {
            inner: Arc::new(Inner {
                load: Box::new(load),
                current: ArcSwap::new(config),
                not_after: ArcSwap::new(Arc::new(not_after)),
            }),
        })
    }

    /// Reads the files again and, if they are usable, serves new handshakes with them.
    ///
    /// # Errors
    ///
    /// The new material is unusable; the current configuration stays in place.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let inner = &*self.inner;
        match build(&*inner.load) {
            Ok((config, not_after)) => {
                inner.current.store(config);
                inner.not_after.store(Arc::new(not_after));
                tracing::info!(target: "tower_zerotrust::mtls", "TLS material reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(target: "tower_zerotrust::mtls", %error, "TLS reload failed; keeping the current material");
                Err(error)
            }
        }
    }

    /// Reloads every `interval` in a background task (on the current tokio runtime) for as long
    /// as the returned handle is not aborted.
    pub fn reload_every(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, false, move || {
            let _ = this.reload();
        })
    }

    /// Reloads whenever the process receives `signal` (typically `SIGHUP`), in a background
    /// task on the current tokio runtime, for as long as the returned handle is not aborted.
    ///
    /// # Errors
    ///
    /// The signal handler could not be installed.
    #[cfg(unix)]
    pub fn reload_on_signal(
        &self,
        signal: tokio::signal::unix::SignalKind,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut signals = tokio::signal::unix::signal(signal)?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            while signals.recv().await.is_some() {
                let _ = this.reload();
            }
        }))
    }

    /// How long until the served certificate expires (zero when it already has).
    pub fn time_to_expiry(&self) -> Option<Duration> {
        let not_after = (**self.inner.not_after.load())?;
        Some(Duration::from_secs(
            not_after.saturating_sub(now_secs()).max(0) as u64,
        ))
    }
}

impl ServerConfigSource for ReloadingServerConfig {
    fn current(&self) -> Arc<ServerConfig> {
        self.inner.current.load_full()
    }
}

impl std::fmt::Debug for ReloadingServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingServerConfig")
            .field("not_after", &**self.inner.not_after.load())
            .finish_non_exhaustive()
    }
}

fn build(load: &Loader) -> Result<(Arc<ServerConfig>, Option<i64>), ConfigError> {
    let tls = load()?;
    let config = tls.server_config()?;
    let not_after = tls.leaf_not_after();
    if let Some(not_after) = not_after {
        let left = not_after.saturating_sub(now_secs());
        if left < EXPIRY_WARNING.as_secs() as i64 {
            tracing::warn!(target: "tower_zerotrust::mtls", days_left = left / 86_400, "server certificate expires soon");
        }
    }
    Ok((config, not_after))
}

fn now_secs() -> i64 {
    i64::try_from(SystemClock.now_millis() / 1000).unwrap_or(i64::MAX)
}
