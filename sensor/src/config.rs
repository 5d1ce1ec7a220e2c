//! TOML configuration (`/etc/sensor/sensor.toml`). Every field has a documented default, so
//! an empty or missing file is a valid configuration.
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = "/etc/sensor/sensor.toml";

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
pub struct Config {
    pub sensor: SensorSection,
    pub output: OutputSection,
    pub health: HealthSection,
    pub ebpf: EbpfSection,
    pub audit: crate::sources::audit::source::AuditConfig,
    pub logins: crate::sources::logins::LoginsConfig,
    pub enrich: crate::enrich::EnrichConfig,
    /// gRPC shipping, used when `output.target = "grpc"` (or `--output grpc://host:port`).
    pub ship: crate::ship::ShipConfig,
    /// Network flows from conntrack (off by default).
    pub conntrack: crate::sources::conntrack::ConntrackConfig,
    /// Noise rules and argv redaction, applied before anything is written or shipped.
    pub filter: crate::filter::FilterConfig,
    /// File activity on the configured trees (fanotify, else inotify).
    pub files: crate::sources::files::FilesConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SensorSection {
    /// Host name put in every event; empty means the kernel's hostname.
    pub host: String,
    /// "auto" (probe and choose), "ebpf" or "audit".
    pub mode: String,
    /// Capacity of the bounded channel between capture and output, in events.
    pub channel_capacity: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSection {
    /// "-" for stdout, a file path (appended to), or "grpc" to ship to the collector in
    /// `[ship]` (the one outbound connection; `--output grpc://host:port` sets both).
    pub target: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSection {
    /// Seconds between `sensor_health` events (one is always emitted at start and at exit).
    pub interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EbpfSection {
    /// Ring buffer size in bytes; a power of two, at least one page.
    pub ring_buffer_bytes: u32,
}

impl Default for SensorSection {
    fn default() -> Self {
        Self {
            host: String::new(),
            mode: "auto".into(),
            channel_capacity: 65_536,
        }
    }
}

impl Default for OutputSection {
    fn default() -> Self {
        Self { target: "-".into() }
    }
}

impl Default for HealthSection {
    fn default() -> Self {
        Self { interval_secs: 60 }
    }
}

impl Default for EbpfSection {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Config {
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_string(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads `path`; a missing file at the default path means defaults, elsewhere an error.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let rb = self.ebpf.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            return Err(ConfigError::Invalid(format!(
                "ebpf.ring_buffer_bytes = {rb}: must be a power of two >= 4096"
            )));
        }
        if !["auto", "ebpf", "audit"].contains(&self.sensor.mode.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "sensor.mode = {:?}: expected auto, ebpf or audit",
                self.sensor.mode
            )));
        }
        if self.sensor.channel_capacity == 0 {
            return Err(ConfigError::Invalid(
                "sensor.channel_capacity must be > 0".into(),
            ));
        }
        self.enrich.validate().map_err(ConfigError::Invalid)?;
        self.files.validate().map_err(ConfigError::Invalid)?;
        self.filter
            .build()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.output.target == "grpc" {
            self.ship
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if self.health.interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "health.interval_secs must be > 0".into(),
            ));
        }
        Ok(())
    }

    /// The defaults as TOML, for `sensor config --defaults`.
    pub fn defaults_toml() -> String {
        toml::to_string_pretty(&Self::default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(Config::parse("", "x").unwrap(), Config::default());
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let c = Config::parse("[health]\ninterval_secs = 5\n", "x").unwrap();
        assert_eq!(c.health.interval_secs, 5);
        assert_eq!(c.ebpf, EbpfSection::default());
    }

    #[test]
    fn errors_are_clear() {
        let e = Config::parse("[ebpf]\nring_buffer_bytes = 1000\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        let e = Config::parse("[sensor]\nmode = \"kmod\"\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("kmod"), "{e}");
        let e = Config::parse("[sensor]\nbogus = 1\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("f.toml"), "{e}");
        assert!(Config::parse("not toml [", "f").is_err());
    }

    #[test]
    fn defaults_round_trip() {
        let text = Config::defaults_toml();
        assert_eq!(Config::parse(&text, "d").unwrap(), Config::default());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        assert!(Config::load(Some(Path::new("/nonexistent/sensor.toml"))).is_err());
    }
}
