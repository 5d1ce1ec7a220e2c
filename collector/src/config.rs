//! `collector serve` configuration (TOML). Every field has a default, so an empty file (or
//! none, with flags) is valid. Flags given to `collector serve` override the file.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use sensor_proto::config_file::ConfigError;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    pub server: ServerSection,
    pub storage: StorageSection,
    pub tls: TlsSection,
    pub metrics: MetricsSection,
    pub jetstream: JetStreamSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// gRPC listen address: `unix:/path` (local mode: a socket only root can use, the
    /// default) or `host:port` (TCP; plaintext only on loopback unless `allow_plaintext`).
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
    /// Elements of repeated fields inside one message (argv strings, ancestors, file ops,
    /// health entries, capabilities), summed; counted on the wire before decoding.
    pub max_message_elements: usize,
    /// Connections open at once; a connection over it is closed at accept and counted.
    pub max_connections: usize,
    /// Concurrent gRPC streams on one connection (a sensor uses one).
    pub max_streams_per_connection: u32,
    /// Streams one certificate host may have open at once, over all its connections (a
    /// sensor uses one); more are refused with RESOURCE_EXHAUSTED and counted.
    pub max_streams_per_host: usize,
    /// Events decoded and waiting to be stored, over all streams; a stream waits (reads
    /// nothing more) while the budget is used up.
    pub max_inflight_events: usize,
    /// A TLS handshake (or, on a plaintext listener, the HTTP/2 connection preface) not
    /// finished within this many seconds closes the connection.
    pub tls_handshake_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Where `collector serve` puts accepted batches: "sqlite" (the database below, the
    /// default) or "jetstream" (the `[jetstream]` stream; the collector keeps no state and
    /// `collector consume` fills the database from the stream).
    pub sink: String,
    /// SQLite database file (created with its directory when missing).
    pub path: PathBuf,
    /// SQLite `synchronous` in WAL mode: "full" fsyncs the WAL on every commit, so an
    /// acknowledged batch survives power loss; "normal" survives a collector crash but may
    /// lose the last commits on power loss (acks are then only process-crash durable).
    pub synchronous: String,
    /// Most events written in one transaction (batches arriving together share a commit).
    pub max_events_per_commit: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain of the server; TLS is on when this and `key_file` are set.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// PEM CA that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `client_ca_file` (with a CA set; the
    /// default). A sensor's host is the DNS name in its certificate.
    pub require_client_cert: bool,
    /// Allow TLS without client certificates on a non-loopback address (every sensor is
    /// then unauthenticated: its batches are kept apart from authenticated ones, but any
    /// client can send events claiming any host).
    pub allow_anonymous_clients: bool,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            require_client_cert: true,
            allow_anonymous_clients: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Prometheus endpoint (`GET /metrics`); empty disables it.
    pub listen: String,
}

/// `[jetstream]`: fleet mode. Batches are published to a JetStream stream and acknowledged
/// to the sensor only after JetStream acknowledged every message of the batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JetStreamSection {
    /// NATS server URLs (any node of the cluster; the client learns the others).
    pub servers: Vec<String>,
    /// Stream name; created with the settings below when missing (an existing stream is
    /// used as it is).
    pub stream: String,
    /// Subjects are `<subject_prefix>.<host>.<kind>`; the stream takes `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// Copies of every message in the cluster (1..=5).
    pub replicas: usize,
    /// "limits", "interest" or "workqueue".
    pub retention: String,
    /// "file" or "memory".
    pub storage: String,
    /// Oldest message kept, seconds (0 = no limit).
    pub max_age_secs: u64,
    /// Largest stream size in bytes (0 = no limit).
    pub max_bytes: i64,
    /// When a limit is reached: "new" refuses new messages (the collector stops
    /// acknowledging and sensors spool) or "old" deletes the oldest (unconsumed data may be
    /// lost).
    pub discard: String,
    /// JetStream's de-duplication window, seconds: a message whose id was seen within it
    /// is dropped. De-duplication in the stream holds only within this window (a sensor
    /// replaying older batches creates duplicates there; `collector consume` still stores
    /// each event once).
    pub duplicate_window_secs: u64,
    /// "batch": one message per (host, kind) of a batch (fast); "event": one message per
    /// event (exact per-event ids, much slower). See README "Fleet mode".
    pub granularity: String,
    /// How long to wait for JetStream's acknowledgement of a publish, seconds. A timeout
    /// means no ack to the sensor (it resends; the message id makes that safe).
    pub publish_timeout_secs: u64,
    /// Publishes awaiting their JetStream acknowledgement, over all streams.
    pub max_ack_inflight: usize,
    /// `collector consume`: durable consumer name (one `consume` process per name).
    pub durable: String,
    /// `collector consume`: messages fetched per request.
    pub fetch_batch: usize,
}

impl Default for JetStreamSection {
    fn default() -> Self {
        Self {
            servers: vec!["nats://127.0.0.1:4222".into()],
            stream: "SENSOR_EVENTS".into(),
            subject_prefix: "sensor".into(),
            replicas: 3,
            retention: "limits".into(),
            storage: "file".into(),
            max_age_secs: 7 * 24 * 3600,
            max_bytes: 0,
            discard: "new".into(),
            duplicate_window_secs: 120,
            granularity: "batch".into(),
            publish_timeout_secs: 10,
            max_ack_inflight: 16_384,
            durable: "collector-sqlite".into(),
            fetch_batch: 512,
        }
    }
}

/// The local-mode socket of the package (its directory is the unit's RuntimeDirectory).
pub const DEFAULT_SOCKET: &str = "/run/sensor-collector/collector.sock";

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: format!("unix:{DEFAULT_SOCKET}"),
            max_message_bytes: 16 * 1024 * 1024,
            max_batch_events: 20_000,
            keepalive_secs: 30,
            allow_plaintext: false,
            max_message_elements: 320_000,
            max_connections: 4096,
            max_streams_per_connection: 4,
            max_streams_per_host: 8,
            max_inflight_events: 200_000,
            tls_handshake_timeout_secs: 10,
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            sink: "sqlite".into(),
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
        sensor_proto::config_file::parse(text, path)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = sensor_proto::config_file::read(path)?;
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
        let sv = &self.server;
        if sv.max_connections == 0
            || sv.max_streams_per_connection == 0
            || sv.max_streams_per_host == 0
            || sv.tls_handshake_timeout_secs == 0
        {
            return bad(
                "server.max_connections, max_streams_per_connection, max_streams_per_host and \
                 tls_handshake_timeout_secs must be > 0"
                    .into(),
            );
        }
        if sv.max_inflight_events < sv.max_batch_events as usize {
            return bad("server.max_inflight_events must be >= server.max_batch_events".into());
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
        if !["sqlite", "jetstream"].contains(&self.storage.sink.as_str()) {
            return bad(format!(
                "storage.sink = {:?}: expected \"sqlite\" or \"jetstream\"",
                self.storage.sink
            ));
        }
        self.jetstream.validate()?;
        let t = &self.tls;
        if t.cert_file.is_some() != t.key_file.is_some() {
            return bad("tls.cert_file and tls.key_file go together".into());
        }
        let loopback = is_loopback_addr(&self.server.listen);
        if t.enabled()
            && !loopback
            && !unix_listen(&self.server.listen)
            && !t.allow_anonymous_clients
            && (t.client_ca_file.is_none() || !t.require_client_cert)
        {
            return bad(format!(
                "mutual TLS is required on non-loopback address {}: set tls.client_ca_file \
                 (and keep tls.require_client_cert = true), or set tls.allow_anonymous_clients = true",
                self.server.listen
            ));
        }
        if t.client_ca_file.is_some() && !t.enabled() {
            return bad("tls.client_ca_file needs tls.cert_file and tls.key_file".into());
        }
        let unix = unix_listen(&self.server.listen);
        if unix && t.enabled() {
            return bad("[tls] does not apply to a unix: listen address (local mode)".into());
        }
        if !unix
            && !t.enabled()
            && !self.server.allow_plaintext
            && !is_loopback_addr(&self.server.listen)
        {
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

impl JetStreamSection {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let one_of = |field: &str, v: &str, allowed: &[&str]| {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "jetstream.{field} = {v:?}: expected one of {}",
                    allowed.join(", ")
                )))
            }
        };
        if self.servers.is_empty() {
            return bad("jetstream.servers must name at least one server".into());
        }
        let token_ok = |s: &str| {
            !s.is_empty()
                && !s
                    .chars()
                    .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
        };
        if !token_ok(&self.stream) || self.stream.contains('.') {
            return bad(format!(
                "jetstream.stream = {:?} is not a valid stream name",
                self.stream
            ));
        }
        if !token_ok(&self.subject_prefix) || self.subject_prefix.split('.').any(str::is_empty) {
            return bad(format!(
                "jetstream.subject_prefix = {:?} is not a valid subject prefix",
                self.subject_prefix
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return bad("jetstream.replicas must be 1..=5".into());
        }
        one_of(
            "retention",
            &self.retention,
            &["limits", "interest", "workqueue"],
        )?;
        one_of("storage", &self.storage, &["file", "memory"])?;
        one_of("discard", &self.discard, &["new", "old"])?;
        one_of("granularity", &self.granularity, &["batch", "event"])?;
        if self.max_bytes < 0 {
            return bad("jetstream.max_bytes must be >= 0 (0 = no limit)".into());
        }
        if self.duplicate_window_secs == 0 {
            return bad("jetstream.duplicate_window_secs must be > 0".into());
        }
        if self.publish_timeout_secs == 0 || self.max_ack_inflight == 0 || self.fetch_batch == 0 {
            return bad(
                "jetstream.publish_timeout_secs, max_ack_inflight and fetch_batch must be > 0"
                    .into(),
            );
        }
        if !token_ok(&self.durable) || self.durable.contains('.') {
            return bad(format!(
                "jetstream.durable = {:?} is not a valid consumer name",
                self.durable
            ));
        }
        Ok(())
    }
}

/// True for a `unix:/path` listen address (local mode).
pub fn unix_listen(addr: &str) -> bool {
    addr.starts_with("unix:")
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
        assert_eq!(d.server.listen, format!("unix:{DEFAULT_SOCKET}"));
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
        // Off loopback, TLS means mutual TLS unless anonymous clients are allowed.
        c.tls.cert_file = Some("c".into());
        c.tls.key_file = Some("k".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("mutual TLS is required"), "{e}");
        c.tls.client_ca_file = Some("ca".into());
        c.validate().unwrap();
        c.tls.require_client_cert = false;
        assert!(c.validate().is_err());
        c.tls.allow_anonymous_clients = true;
        c.validate().unwrap();
        let mut c = CollectorConfig::default();
        c.tls.cert_file = Some("c".into());
        c.tls.key_file = Some("k".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("unix:"), "{e}");
        let mut c = CollectorConfig::default();
        c.server.max_inflight_events = 10;
        assert!(c.validate().is_err());
        let mut c = CollectorConfig::default();
        c.storage.synchronous = "off".into();
        assert!(c.validate().is_err());
        let mut c = CollectorConfig::default();
        c.tls.cert_file = Some("x".into());
        assert!(c.validate().is_err());
        let mut c = CollectorConfig::default();
        c.storage.sink = "kafka".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn jetstream_section() {
        let c = CollectorConfig::parse(
            "[storage]\nsink = \"jetstream\"\n[jetstream]\nservers = [\"nats://10.0.0.1:4222\"]\nreplicas = 1\n",
            "j",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.jetstream.replicas, 1);
        assert_eq!(c.jetstream.granularity, "batch");
        for f in [
            |j: &mut JetStreamSection| j.replicas = 0,
            |j: &mut JetStreamSection| j.stream = "a.b".into(),
            |j: &mut JetStreamSection| j.subject_prefix = "a.>".into(),
            |j: &mut JetStreamSection| j.subject_prefix = "a..b".into(),
            |j: &mut JetStreamSection| j.retention = "forever".into(),
            |j: &mut JetStreamSection| j.discard = "both".into(),
            |j: &mut JetStreamSection| j.granularity = "kind".into(),
            |j: &mut JetStreamSection| j.servers.clear(),
            |j: &mut JetStreamSection| j.duplicate_window_secs = 0,
            |j: &mut JetStreamSection| j.max_bytes = -1,
        ] {
            let mut j = JetStreamSection::default();
            f(&mut j);
            assert!(j.validate().is_err(), "{j:?}");
        }
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
