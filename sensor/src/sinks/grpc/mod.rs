//! Shipping: events leave the host over exactly one outbound gRPC stream to a collector.
//!
//! ```text
//! rx ─> stage (seq, batch by size/time) ─> spool (append-only segments, CRC framed)
//!                                              │  send in order, ≤ max_in_flight unacked
//!                                              v
//!                       client (one HTTP/2 connection, TLS, gzip, keepalive, backoff)
//!                                              │  Ack(batch_id) after the collector commits
//!                                              v
//!                                   spool.ack -> segment deleted when fully acked
//! ```
//!
//! - The wire message is the event itself (`crate::event`); nothing is converted.
//! - [`spool`]: the disk spool (survives kill -9; bounded; evicts oldest, rescuing exits).
//! - [`client`]: connection, TLS policy, the stream task with jittered backoff.
//! - [`ids`]: persistent sensor id, boot id, and the seq allocator that keeps
//!   (sensor id, boot id, seq) unique across sensor restarts within a boot.
//! - [`stage`]: [`stage::run_shipper`], the pipeline stage the runtime spawns.
mod backoff;
pub mod client;
mod codec;
mod hello;
pub mod ids;
pub mod local;
pub mod spool;
pub mod stage;

#[cfg(test)]
mod wire_tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use stage::run_shipper;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("invalid [ship] config: {0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    #[error(transparent)]
    Ids(#[from] ids::IdError),
    #[error("cannot open ship.json_copy {path}: {source}")]
    JsonCopy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `[ship]`: where and how events are shipped when the output is gRPC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShipConfig {
    /// Collector address: `unix:/path` (local mode, the default: the collector's socket on
    /// this host, checked to be root's before anything is sent), `host:port`,
    /// `grpc://host:port`, `https://host:port` (TLS), or `http://host:port` (plaintext,
    /// loopback only, see `allow_plaintext_loopback`).
    pub address: String,
    /// Other collectors, tried in order after `address` when a connection attempt fails or
    /// the stream breaks (fleet mode: stateless collectors in front of JetStream). Still
    /// one connection at a time; the sensor stays on a collector until it fails.
    pub fallback_addresses: Vec<String>,
    /// PEM CA the collector's certificate must chain to (pinned: no system roots are
    /// trusted). Setting it turns TLS on; without it the connection is plaintext.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for collectors that require mTLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Name the collector's certificate must carry; empty means the host of `address`.
    pub server_name: String,
    /// Allow plaintext gRPC, and only to a loopback address (127.0.0.0/8, ::1, localhost).
    pub allow_plaintext_loopback: bool,
    /// The host the Hello names (set by the runtime from `sensor.host`; empty means the
    /// kernel's hostname). With mutual TLS it must be the host of the client certificate.
    #[serde(skip)]
    pub host: String,
    /// Spool directory (segments, the sensor id, the seq reservation).
    pub spool_dir: PathBuf,
    /// Spool bound in bytes; when full the oldest segments are evicted (counted as drops).
    pub spool_max_bytes: u64,
    /// Segment size in bytes; a segment is deleted once every batch in it is acknowledged.
    pub segment_bytes: u64,
    /// "interval" (fdatasync at most every `fsync_interval_ms` and when a segment is
    /// sealed), "always" (fdatasync after every batch), or "never" (leave it to the kernel).
    /// A kill -9 loses nothing in any mode (written data is in the page cache); the modes
    /// differ only on power loss or a kernel crash.
    pub fsync: String,
    pub fsync_interval_ms: u64,
    /// A batch is sealed at this many events ...
    pub batch_max_events: usize,
    /// ... or this many encoded bytes ...
    pub batch_max_bytes: usize,
    /// ... or when its oldest event is this old; earlier when the link is idle.
    pub batch_max_delay_ms: u64,
    /// Batches sent and not yet acknowledged.
    pub max_in_flight: usize,
    /// Sealed batches kept decoded in memory for sending (beyond it they are read back
    /// from the spool), in bytes.
    pub memory_cache_bytes: usize,
    /// "gzip" or "none".
    pub compression: String,
    /// HTTP/2 PING interval and how long to wait for its answer (dead-peer detection
    /// instead of per-request timeouts).
    pub keepalive_interval_secs: u64,
    pub keepalive_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Reconnect backoff: doubles from initial to max, with full jitter.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// At shutdown, wait this long for outstanding batches to be acknowledged (what is not
    /// is delivered after the next start, from the spool).
    pub drain_timeout_secs: u64,
    /// Also append every shipped event, with the seq it is shipped with, as a JSON line to
    /// this file (the same writer and shape as `--output json`). A local record of what was
    /// sent; the end-to-end parity test compares it with the collector's. Off when unset.
    pub json_copy: Option<PathBuf>,
}

impl Default for ShipConfig {
    fn default() -> Self {
        Self {
            address: "unix:/run/sensor-collector/collector.sock".into(),
            fallback_addresses: Vec::new(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            server_name: String::new(),
            allow_plaintext_loopback: false,
            host: String::new(),
            spool_dir: PathBuf::from("/var/lib/sensor/spool"),
            spool_max_bytes: 256 * 1024 * 1024,
            segment_bytes: 4 * 1024 * 1024,
            fsync: "interval".into(),
            fsync_interval_ms: 1000,
            batch_max_events: 2000,
            batch_max_bytes: 1024 * 1024,
            batch_max_delay_ms: 100,
            max_in_flight: 16,
            memory_cache_bytes: 16 * 1024 * 1024,
            compression: "gzip".into(),
            keepalive_interval_secs: 20,
            keepalive_timeout_secs: 10,
            connect_timeout_secs: 10,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            drain_timeout_secs: 5,
            json_copy: None,
        }
    }
}

impl ShipConfig {
    /// Checks values and the TLS policy (no file access).
    pub fn validate(&self) -> Result<(), ShipError> {
        let bad = |m: String| Err(ShipError::Config(m));
        client::Target::all_from_config(self)?;
        if self.spool_max_bytes < 1024 * 1024 {
            return bad("ship.spool_max_bytes must be >= 1 MiB".into());
        }
        if self.segment_bytes < 64 * 1024 || self.segment_bytes > self.spool_max_bytes / 4 {
            return bad(format!(
                "ship.segment_bytes = {} must be >= 64 KiB and <= spool_max_bytes / 4",
                self.segment_bytes
            ));
        }
        if spool::FsyncPolicy::parse(&self.fsync).is_none() {
            return bad(format!(
                "ship.fsync = {:?}: expected \"interval\", \"always\" or \"never\"",
                self.fsync
            ));
        }
        if self.batch_max_events == 0 || self.batch_max_bytes < 1024 {
            return bad("ship.batch_max_events must be > 0 and batch_max_bytes >= 1024".into());
        }
        if self.batch_max_bytes as u64 > self.segment_bytes {
            return bad("ship.batch_max_bytes must be <= ship.segment_bytes".into());
        }
        if self.max_in_flight == 0 {
            return bad("ship.max_in_flight must be > 0".into());
        }
        if !["gzip", "none"].contains(&self.compression.as_str()) {
            return bad(format!(
                "ship.compression = {:?}: expected \"gzip\" or \"none\"",
                self.compression
            ));
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return bad("ship.backoff_initial_ms must be > 0 and <= backoff_max_ms".into());
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return bad("ship.client_cert_file and ship.client_key_file go together".into());
        }
        Ok(())
    }

    /// [`validate`](Self::validate), then reads the TLS files and prepares the spool
    /// directory, so a misconfiguration fails at start instead of in the background.
    pub fn check(&self) -> Result<(), ShipError> {
        self.validate()?;
        client::TlsFiles::load(self)?;
        crate::safefs::ensure_dir(&self.spool_dir, 0o700).map_err(spool::SpoolError::from)?;
        Ok(())
    }
}

/// Counters of the shipping stage, shared with the health reporter. Every loss is here.
#[derive(Debug, Default)]
pub struct ShipStats {
    /// Batches and events written to the spool.
    pub batches_spooled: AtomicU64,
    pub events_spooled: AtomicU64,
    /// Batches put on the stream (resends included).
    pub batches_sent: AtomicU64,
    /// Batches and events acknowledged by the collector.
    pub batches_acked: AtomicU64,
    pub events_acked: AtomicU64,
    /// Events the collector already had (replays after reconnects or restarts).
    pub duplicates: AtomicU64,
    /// Streams established / connection attempts that failed.
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub connected: AtomicBool,
    /// Spool size now, and events in it not yet acknowledged.
    pub spool_bytes: AtomicU64,
    pub spool_pending_events: AtomicU64,
    /// When the oldest unacknowledged batch was written (ms since the epoch; 0 = none).
    pub spool_oldest_unix_ms: AtomicU64,
    /// Batches found in the spool at start (recovered after a restart or crash).
    pub recovered_batches: AtomicU64,
    /// Bytes cut from torn segment tails at start.
    pub truncated_bytes: AtomicU64,
    /// Unacknowledged events evicted because the spool was full, by kind (see
    /// [`spool::KindCounts`] for the index).
    pub evicted: [AtomicU64; spool::KIND_SLOTS],
    /// Exit events saved from an evicted segment by copying them to the tail.
    pub rescued_exits: AtomicU64,
    /// Events lost because the spool could not be written (a batch too large for it, or
    /// still unwritten at exit).
    pub spool_write_errors: AtomicU64,
    /// Events sealed into batches the spool could not take yet (disk full): held in memory
    /// and retried.
    pub spool_unwritten_events: AtomicU64,
    /// Failed spool writes (each retry counts).
    pub spool_write_failures: AtomicU64,
    spool_error: Mutex<String>,
    /// Batches lost in corrupt or torn spool frames found at start (their event count is
    /// unknowable; a torn tail is the batch that was being written when the process died).
    pub spool_corrupt_batches: AtomicU64,
    /// Acks for batch ids not in flight on the stream (never sent, or already acknowledged):
    /// ignored, nothing is deleted.
    pub acks_unknown: AtomicU64,
    last_error: Mutex<String>,
}

impl ShipStats {
    /// Total evicted events.
    pub fn evicted_total(&self) -> u64 {
        self.evicted.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn set_last_error(&self, e: impl Into<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.into();
    }

    pub fn set_spool_error(&self, e: String) {
        *self.spool_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Why the spool cannot be written now, empty when it can.
    pub fn spool_error(&self) -> String {
        self.spool_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The last connection or stream error, empty when none.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let d = ShipConfig::default();
        // The default is the collector's local socket: valid without any opt-in.
        assert!(d.address.starts_with("unix:/"));
        d.validate().unwrap();
        // Plaintext loopback TCP needs the explicit opt-in.
        let mut tcp = ShipConfig {
            address: "127.0.0.1:4317".into(),
            ..ShipConfig::default()
        };
        assert!(tcp.validate().is_err());
        tcp.allow_plaintext_loopback = true;
        tcp.validate().unwrap();
        assert!(ShipConfig {
            address: "unix:relative.sock".into(),
            ..ShipConfig::default()
        }
        .validate()
        .is_err());
        let text = toml::to_string_pretty(&d).unwrap();
        let back: ShipConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, d);
        let partial: ShipConfig = toml::from_str("address = \"10.0.0.1:4317\"\n").unwrap();
        assert_eq!(partial.spool_max_bytes, d.spool_max_bytes);
        assert!(toml::from_str::<ShipConfig>("bogus = 1\n").is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let ok = ShipConfig {
            allow_plaintext_loopback: true,
            ..Default::default()
        };
        for f in [
            |c: &mut ShipConfig| c.fsync = "sometimes".into(),
            |c: &mut ShipConfig| c.compression = "zstd".into(),
            |c: &mut ShipConfig| c.segment_bytes = c.spool_max_bytes,
            |c: &mut ShipConfig| c.max_in_flight = 0,
            |c: &mut ShipConfig| c.client_cert_file = Some("x".into()),
            |c: &mut ShipConfig| c.backoff_max_ms = 1,
            |c: &mut ShipConfig| c.fallback_addresses = vec!["10.0.0.9:4317".into()],
        ] {
            let mut c = ok.clone();
            f(&mut c);
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn drops_are_named_per_kind() {
        let s = ShipStats::default();
        s.evicted[spool::slot_of(sensor_proto::Kind::ProcessExit)].fetch_add(3, Relaxed);
        let d = crate::telemetry::fields::fields_of(&s).drops;
        assert_eq!(d["spool_evicted_process_exit"], 3, "{d:?}");
        assert_eq!(s.evicted_total(), 3);
    }
}
