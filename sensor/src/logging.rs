//! The sensor's own log on stderr: text or JSON lines, a level from the config that
//! `SENSOR_LOG` overrides. Nothing is logged per event at info level: events are the output,
//! and losses are counters in health and status, not log lines.
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// "text" or "json" (one JSON object per line, for journald/log shippers).
    pub format: String,
    /// A tracing filter: "error", "warn", "info", "debug", or per module
    /// ("info,sensor::sinks::grpc=debug"). The `SENSOR_LOG` environment variable overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !["text", "json"].contains(&self.format.as_str()) {
            return Err(format!(
                "log.format = {:?}: expected \"text\" or \"json\"",
                self.format
            ));
        }
        EnvFilter::try_new(&self.level)
            .map_err(|e| format!("log.level = {:?}: {e}", self.level))?;
        Ok(())
    }
}

/// Installs the global subscriber (once, first thing after the config is read).
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_env("SENSOR_LOG")
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour_stderr())
        .with_env_filter(filter);
    if cfg.format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Colour codes only for a person at a terminal: a log written to a file, a pipe or the
/// journal carries none. `NO_COLOR` (any value) turns colour off everywhere.
pub fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    wants_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").is_some(),
    )
}

fn wants_colour(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

/// `sensor run`: a panic anywhere ends the process (after the panic message is printed and
/// logged) instead of leaving one pipeline task silently gone; systemd restarts the sensor and
/// the spool resends. The workspace's release profile keeps unwinding, so the collector's
/// per-connection tasks stay isolated from each other (docs/ARCHITECTURE.md#build-toolchain).
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        tracing::error!(panic = %info, "panic: stopping the sensor");
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal() {
        assert!(wants_colour(true, false));
        assert!(!wants_colour(false, false));
        assert!(!wants_colour(true, true));
    }

    #[test]
    fn validation_names_the_key() {
        LogConfig::default().validate().unwrap();
        let bad = LogConfig {
            format: "xml".into(),
            ..LogConfig::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("log.format"));
        let bad = LogConfig {
            level: "info,[".into(),
            ..LogConfig::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("log.level"));
        let per_module = LogConfig {
            level: "warn,sensor::sinks::grpc=debug".into(),
            ..LogConfig::default()
        };
        per_module.validate().unwrap();
    }
}
