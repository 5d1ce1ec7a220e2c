//! `collector serve` configuration (TOML). Every field has a default, so an empty file (or
//! none, with flags) is valid. Flags given to `collector serve` override the file.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    pub server: ServerSection,
    pub storage: StorageSection,
    pub tls: TlsSection,
    pub metrics: MetricsSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// gRPC listen address.
    pub listen: String,
    /// Largest encoded message (one batch) accepted, in bytes; larger ones end that stream
    /// with RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Largest number of events in one batch; more ends that stream with RESOURCE_EXHAUSTED.
    pub max_batch_events: u32,
    /// HTTP/2 keepalive ping interval, seconds (0 = off).
    pub keepalive_secs: u64,
    /// Plaintext (no TLS) is allowed only on a loopback listen address unless this is true.
    pub allow_plaintext: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// SQLite database file (created with its directory when missing).
    pub path: PathBuf,
    /// SQLite `synchronous` in WAL mode: "full" fsyncs the WAL on every commit, so an
    /// acknowledged batch survives power loss; "normal" survives a collector crash but may
    /// lose the last commits on power loss (acks are then only process-crash durable).
    pub synchronous: String,
    /// Most events written in one transaction (batches arriving together share a commit).
    pub max_events_per_commit: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain of the server; TLS is on when this and `key_file` are set.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PEM CA that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `client_ca_file`.
    pub require_client_cert: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Prometheus endpoint (`GET /metrics`); empty disables it.
    pub listen: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4317".into(),
            max_message_bytes: 16 * 1024 * 1024,
            max_batch_events: 20_000,
            keepalive_secs: 30,
            allow_plaintext: false,
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/collector/events.db"),
            synchronous: "full".into(),
            max_events_per_commit: 50_000,
        }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9317".into(),
        }
    }
}

impl TlsSection {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }
}

impl CollectorConfig {
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_string(),
            source,
        })?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.server.max_message_bytes < 1024 {
            return bad("server.max_message_bytes must be >= 1024".into());
        }
        if self.server.max_batch_events == 0 {
            return bad("server.max_batch_events must be > 0".into());
        }
        if self.storage.max_events_per_commit == 0 {
            return bad("storage.max_events_per_commit must be > 0".into());
        }
        if !["full", "normal"].contains(&self.storage.synchronous.as_str()) {
            return bad(format!(
                "storage.synchronous = {:?}: expected \"full\" or \"normal\"",
                self.storage.synchronous
            ));
        }
        let t = &self.tls;
        if t.cert_file.is_some() != t.key_file.is_some() {
            return bad("tls.cert_file and tls.key_file go together".into());
        }
        if t.require_client_cert && t.client_ca_file.is_none() {
            return bad("tls.require_client_cert needs tls.client_ca_file".into());
        }
        if t.client_ca_file.is_some() && !t.enabled() {
            return bad("tls.client_ca_file needs tls.cert_file and tls.key_file".into());
        }
        if !t.enabled() && !self.server.allow_plaintext && !is_loopback_addr(&self.server.listen) {
            return bad(format!(
                "refusing plaintext gRPC on non-loopback address {}: configure [tls] or set \
                 server.allow_plaintext = true",
                self.server.listen
            ));
        }
        Ok(())
    }

    pub fn defaults_toml() -> String {
        toml::to_string_pretty(&Self::default()).unwrap_or_default()
    }
}

/// True for `127.x.y.z:port`, `[::1]:port` and `localhost:port`.
pub fn is_loopback_addr(addr: &str) -> bool {
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return sa.ip().is_loopback();
    }
    addr.rsplit_once(':')
        .is_some_and(|(h, _)| h.eq_ignore_ascii_case("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let d = CollectorConfig::default();
        d.validate().unwrap();
        let text = CollectorConfig::defaults_toml();
        assert_eq!(CollectorConfig::parse(&text, "d").unwrap(), d);
        assert_eq!(CollectorConfig::parse("", "e").unwrap(), d);
    }

    #[test]
    fn rejects_bad_settings() {
        let e = CollectorConfig::parse("[server]\nbogus = 1\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("f.toml"), "{e}");
        let mut c = CollectorConfig::default();
        c.server.listen = "0.0.0.0:4317".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("refusing plaintext"), "{e}");
        c.server.allow_plaintext = true;
        c.validate().unwrap();
        c.tls.require_client_cert = true;
        assert!(c.validate().is_err());
        let mut c = CollectorConfig::default();
        c.storage.synchronous = "off".into();
        assert!(c.validate().is_err());
        let mut c = CollectorConfig::default();
        c.tls.cert_file = Some("x".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback_addr("127.0.0.1:1"));
        assert!(is_loopback_addr("[::1]:1"));
        assert!(is_loopback_addr("localhost:1"));
        assert!(!is_loopback_addr("0.0.0.0:1"));
        assert!(!is_loopback_addr("10.1.2.3:1"));
        assert!(!is_loopback_addr("example.com:1"));
    }
}
