//! `sensor status`: the running sensor writes a small JSON status file (never a socket or a
//! port) every few seconds; `sensor status` reads it, checks the process is really alive, and
//! prints the state with an exit code a health check can use.
pub mod assess;
pub mod file;
pub mod prometheus;
pub mod render;
pub mod snapshot;
pub mod writer;

use serde::{Deserialize, Serialize};

pub use assess::{assess, Verdict};
pub use snapshot::Status;

pub const DEFAULT_PATH: &str = "/run/sensor/status.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// Where the running sensor writes its status (read by `sensor status`). The directory is
    /// created if missing; the file is replaced atomically and removed at a clean exit.
    pub path: String,
    /// Seconds between status writes.
    pub interval_secs: u64,
    /// Seconds without a collector connection (when shipping) before the sensor reports
    /// itself degraded.
    pub disconnected_degraded_secs: u64,
    /// A file for node_exporter's textfile collector (e.g.
    /// "/var/lib/prometheus/node-exporter/sensor.prom"): the status figures in Prometheus
    /// text format, replaced atomically at every status write and removed at a clean exit.
    /// Empty (the default) = off. Must end in ".prom", the only files node_exporter reads.
    pub prometheus_textfile: String,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            path: DEFAULT_PATH.into(),
            interval_secs: 5,
            disconnected_degraded_secs: 60,
            prometheus_textfile: String::new(),
        }
    }
}

impl StatusConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.path.is_empty() {
            return Err("status.path must not be empty".into());
        }
        if !self.prometheus_textfile.is_empty() && !self.prometheus_textfile.ends_with(".prom") {
            return Err(format!(
                "status.prometheus_textfile = {:?}: must end in .prom (node_exporter's textfile \
                 collector reads only *.prom files)",
                self.prometheus_textfile
            ));
        }
        if self.interval_secs == 0 || self.interval_secs > 3600 {
            return Err(format!(
                "status.interval_secs = {}: must be between 1 and 3600",
                self.interval_secs
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no status file at {path}: the sensor is not running (or writes its status elsewhere: status.path)")]
    Missing { path: String },
    #[error("cannot read status file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("status file {path} is not valid: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write status file {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
