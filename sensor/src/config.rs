//! TOML configuration (`/etc/sensor/sensor.toml`). Every field has a documented default, so
//! an empty or missing file is a valid configuration.
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = "/etc/sensor/sensor.toml";

pub use sensor_proto::config_file::ConfigError;

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
    pub ship: crate::sinks::grpc::ShipConfig,
    /// Network flows from conntrack (off by default).
    pub conntrack: crate::sources::conntrack::ConntrackConfig,
    /// Noise rules and argv redaction, applied before anything is written or shipped.
    pub filter: crate::filter::FilterConfig,
    /// File activity on the configured trees (fanotify, else inotify).
    pub files: crate::sources::files::FilesConfig,
    /// Self-limits: CPU budget (load shedding), memory ceiling, scheduling priority.
    pub limits: crate::limits::LimitsConfig,
    /// The sensor's own log (stderr): format and level.
    pub log: crate::logging::LogConfig,
    /// The local status file that `sensor status` reads.
    pub status: crate::telemetry::status::StatusConfig,
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
    /// Bytes of an exec's argv kept, in both modes (4096..=32768). A longer argv keeps its
    /// head and its last 1 KiB, and says how many bytes were left out between them.
    pub argv_max_bytes: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSection {
    /// "-" for stdout, a file path (appended to), "ocsf" / "ocsf:PATH" for OCSF 1.5.0 lines to
    /// stdout / a file, or "grpc" to ship to the collector in `[ship]` (the one outbound
    /// connection; `--output grpc://host:port` sets both).
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
    /// The `raw_syscalls` program that sees ia32 (`int 0x80`) syscalls at the call.
    pub ia32_hooks: Ia32Hooks,
}

/// `ebpf.ia32_hooks`: whether to attach the programs that run on every syscall to see the
/// ia32 ones (docs/ARCHITECTURE.md, "Kernel-user contract").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ia32Hooks {
    /// Attached when the kernel has an ia32 entry (probed at start); a kernel without one
    /// (`IA32_EMULATION` off, `ia32_emulation=0`) has no ia32 syscall to see.
    #[default]
    Auto,
    /// Never attached: every syscall is cheaper, and ia32 connects are reported without
    /// their result and ia32 set*id/capset only at the next exec or exit. The health reason
    /// names this blind spot.
    Off,
}

impl Default for SensorSection {
    fn default() -> Self {
        Self {
            host: String::new(),
            mode: "auto".into(),
            channel_capacity: 65_536,
            argv_max_bytes: crate::sources::argv::DEFAULT_BOUND as u32,
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
            ia32_hooks: Ia32Hooks::Auto,
        }
    }
}

impl Config {
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: Config = sensor_proto::config_file::parse(text, path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads `path`; a missing file at the default path means defaults, elsewhere an error.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        match sensor_proto::config_file::read(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(ConfigError::Read { source, .. })
                if !explicit && source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Self::default())
            }
            Err(e) => Err(e),
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
        let argv = self.sensor.argv_max_bytes as usize;
        if !(crate::sources::argv::ARGV_MIN_BOUND..=crate::sources::argv::ARGV_MAX_BOUND)
            .contains(&argv)
        {
            return Err(ConfigError::Invalid(format!(
                "sensor.argv_max_bytes = {argv}: must be between {} and {}",
                crate::sources::argv::ARGV_MIN_BOUND,
                crate::sources::argv::ARGV_MAX_BOUND
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
        self.limits.validate().map_err(ConfigError::Invalid)?;
        self.log.validate().map_err(ConfigError::Invalid)?;
        self.status.validate().map_err(ConfigError::Invalid)?;
        if self.health.interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "health.interval_secs must be > 0".into(),
            ));
        }
        Ok(())
    }

    /// For `sensor config --check`: parses and validates `text` like `run` does and, on an
    /// error, says which line of the file it is on.
    pub fn check(text: &str, path: &str) -> Result<Self, CheckError> {
        Self::parse(text, path).map_err(|e| {
            let line = match &e {
                ConfigError::Parse { source, .. } => source
                    .span()
                    .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1),
                ConfigError::Invalid(msg) => {
                    dotted_key_prefix(msg).and_then(|k| locate_key(text, k))
                }
                ConfigError::Read { .. } => None,
            };
            CheckError {
                error: Box::new(e),
                line,
            }
        })
    }

    /// The defaults as TOML, for `sensor config --defaults`.
    pub fn defaults_toml() -> String {
        toml::to_string_pretty(&Self::default()).unwrap_or_default()
    }
}

/// A config error and, when known, the 1-based line it is on.
#[derive(Debug)]
pub struct CheckError {
    pub error: Box<ConfigError>,
    pub line: Option<usize>,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&*self.error, self.line) {
            // toml's own message already shows the line and a caret under the key.
            (ConfigError::Parse { .. }, _) | (_, None) => write!(f, "{}", self.error),
            (e, Some(line)) => write!(f, "{e} (line {line})"),
        }
    }
}

/// `section.key` at the start of a validation message (`"limits.nice = 30: ..."`).
fn dotted_key_prefix(msg: &str) -> Option<&str> {
    let end = msg
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(msg.len());
    let key = msg[..end].trim_end_matches('.');
    key.contains('.').then_some(key)
}

/// The 1-based line where `dotted` (`section.key`) is set in TOML `text`, or where its section
/// starts when the key itself is not written (a default that failed validation together with
/// another value).
pub fn locate_key(text: &str, dotted: &str) -> Option<usize> {
    let (want_section, want_key) = dotted.rsplit_once('.')?;
    let mut section = String::new();
    let mut section_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            let name = h.split(']').next().unwrap_or("").trim();
            section = name.to_string();
            if section == want_section {
                section_line.get_or_insert(i + 1);
            }
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        let full = if section.is_empty() {
            k.to_string()
        } else {
            format!("{section}.{k}")
        };
        if full == dotted || (section == want_section && k == want_key) {
            return Some(i + 1);
        }
    }
    section_line
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
    fn ia32_hooks_auto_or_off() {
        assert_eq!(Config::default().ebpf.ia32_hooks, Ia32Hooks::Auto);
        let off = Config::parse("[ebpf]\nia32_hooks = \"off\"\n", "f.toml").unwrap();
        assert_eq!(off.ebpf.ia32_hooks, Ia32Hooks::Off);
        let e = Config::check("[ebpf]\nia32_hooks = \"no\"\n", "f.toml").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("ia32_hooks"), "{e}");
    }

    #[test]
    fn check_names_the_key_and_line() {
        let text = "[sensor]\nmode = \"auto\"\n\n[limits]\ncpu_percent = 10.0\nnice = 30\n";
        let e = Config::check(text, "f.toml").unwrap_err();
        assert_eq!(e.line, Some(6));
        assert!(
            e.to_string().contains("limits.nice") && e.to_string().contains("line 6"),
            "{e}"
        );

        let unknown = "[sensor]\nmode = \"auto\"\nmoed = \"ebpf\"\n";
        let e = Config::check(unknown, "f.toml").unwrap_err();
        assert_eq!(e.line, Some(3));
        let msg = e.to_string();
        assert!(msg.contains("moed") && msg.contains("line 3"), "{msg}");

        let wrong_type = "[health]\ninterval_secs = \"often\"\n";
        let e = Config::check(wrong_type, "f.toml").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("interval_secs"), "{e}");

        let syntax = "[sensor]\nmode = \"auto\"\n[limits\n";
        let e = Config::check(syntax, "f.toml").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");

        assert!(Config::check(&Config::defaults_toml(), "d").is_ok());
    }

    #[test]
    fn locate_key_handles_sections_and_dotted_keys() {
        let t = "a = 1\n[ship]\naddress = \"x\"\n[[filter.noise.rules]]\nname = \"n\"\n";
        assert_eq!(locate_key(t, "ship.address"), Some(3));
        assert_eq!(locate_key(t, "filter.noise.rules.name"), Some(5));
        assert_eq!(
            locate_key(t, "ship.spool_dir"),
            Some(2),
            "section line when unset"
        );
        assert_eq!(locate_key(t, "logins.wtmp"), None);
        assert_eq!(locate_key("limits.nice = 3\n", "limits.nice"), Some(1));
        assert_eq!(
            dotted_key_prefix("enrich.max_entries = 0: x"),
            Some("enrich.max_entries")
        );
        assert_eq!(
            dotted_key_prefix("files.watch is empty"),
            Some("files.watch")
        );
        assert_eq!(dotted_key_prefix("glob \"x\" bad"), None);
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        assert!(Config::load(Some(Path::new("/nonexistent/sensor.toml"))).is_err());
    }
}
