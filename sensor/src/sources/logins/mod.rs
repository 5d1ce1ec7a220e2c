//! Logins, logouts and failed logins from wtmp/btmp.
pub mod map;
pub mod source;
pub mod tail;
pub mod utmp;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoginsConfig {
    pub enabled: bool,
    /// Successful logins and logouts.
    pub wtmp: String,
    /// Failed logins.
    pub btmp: String,
    /// Replay the records already in the files at start (history), instead of only new ones.
    pub read_existing: bool,
    /// Fallback poll period when no inotify event arrives, in milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for LoginsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            wtmp: "/var/log/wtmp".into(),
            btmp: "/var/log/btmp".into(),
            read_existing: false,
            poll_interval_ms: 1000,
        }
    }
}
