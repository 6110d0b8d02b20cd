//! Certificate rotation without downtime: replace the server's certificate, key and CA while
//! serving. Existing connections keep the material they were established with; new handshakes
//! use the new one; a broken new file changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use super::config::{TlsConfig, TlsError};
use crate::clock::{Clock, SystemClock};

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
/// explicit [`reload`](Self::reload), or on a timer with [`reload_every`](Self::reload_every).
///
/// Cheap to clone; clones share the configuration.
#[derive(Clone)]
pub struct ReloadingServerConfig {
    inner: Arc<Inner>,
}

struct Inner {
    files: (PathBuf, PathBuf, PathBuf),
    optional_client_certificates: bool,
    current: ArcSwap<ServerConfig>,
    not_after: ArcSwap<Option<i64>>,
}

/// Certificates closer than this to expiry are reported at every load.
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

impl ReloadingServerConfig {
    /// Loads the certificate chain, key and CA from these files.
    ///
    /// # Errors
    ///
    /// As [`TlsConfig::new`] and [`TlsConfig::server_config`].
    pub fn from_files(
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
        ca_file: impl Into<PathBuf>,
    ) -> Result<Self, TlsError> {
        let files = (cert_file.into(), key_file.into(), ca_file.into());
        let (config, not_after) = load(&files, false)?;
        Ok(Self {
            inner: Arc::new(Inner {
                files,
                optional_client_certificates: false,
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
    pub fn reload(&self) -> Result<(), TlsError> {
        let inner = &*self.inner;
        match load(&inner.files, inner.optional_client_certificates) {
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
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let _ = this.reload();
            }
        })
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
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

fn load(
    (cert, key, ca): &(PathBuf, PathBuf, PathBuf),
    optional_client_certificates: bool,
) -> Result<(Arc<ServerConfig>, Option<i64>), TlsError> {
    let mut tls = TlsConfig::new(cert, key, ca)?;
    if optional_client_certificates {
        tls = tls.client_certificates_optional();
    }
    let config = tls.server_config()?;
    let not_after = tls.leaf_not_after();
    if let Some(not_after) = not_after {
        let left = not_after.saturating_sub(now_secs());
        if left < EXPIRY_WARNING.as_secs() as i64 {
            tracing::warn!(target: "tower_zerotrust::mtls", file = %cert.display(), days_left = left / 86_400, "server certificate expires soon");
        }
    }
    Ok((config, not_after))
}

fn now_secs() -> i64 {
    i64::try_from(SystemClock.now_millis() / 1000).unwrap_or(i64::MAX)
}
