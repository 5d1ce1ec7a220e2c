//! Enrichment: a process cache keyed by (pid, start time) that fills what events lack
//! (exe, cwd, argv, credentials of pid-only events, container id, ancestors), reading /proc
//! only when neither the event nor the cache has the answer.
//!
//! - [`cache`]: the bounded cache and the enrichment rules.
//! - [`procfs`]: pure parsers of /proc files and a thin reader over a proc root.
//! - [`container`]: cgroup path -> container id.
//! - [`feed`]: forks and delivery watermarks from the process-record sources.
//! - [`cgroup_reads`]: `/proc/<pid>/cgroup` read by a source at capture, for the cache.
use serde::{Deserialize, Serialize};

pub mod cache;
pub mod cgroup_reads;
pub mod container;
pub mod feed;
pub mod procfs;

pub use cache::{CacheStats, CachedProcess, ForkOutcome, ProcessCache};
pub use feed::{process_feed, FeedInput, ProcessFeed, ProcessStart};

/// `[enrich]` in the config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichConfig {
    /// Most processes cached (live and recently exited); beyond it the least recently used
    /// are evicted (exited ones first) and counted.
    pub max_entries: usize,
    /// How long an exited process stays resolvable for late events, in milliseconds.
    pub exit_grace_ms: u64,
    /// Seconds between sweeps for processes whose exit event was lost.
    pub sweep_interval_secs: u64,
    /// Ancestors (pid, comm, exe) put in every event, nearest first.
    pub ancestors_depth: usize,
    /// Longest an event of a process the cache does not know yet (a file event that overtook
    /// the fork or exec record of its process) waits for that record, in milliseconds; 0
    /// never waits.
    pub process_wait_ms: u64,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            max_entries: 65_536,
            exit_grace_ms: 5_000,
            sweep_interval_secs: 30,
            ancestors_depth: 4,
            process_wait_ms: 50,
        }
    }
}

/// Largest accepted `max_entries` (entries are indexed by u32).
pub const MAX_ENTRIES_LIMIT: usize = 1 << 24;
/// Largest accepted `ancestors_depth`.
pub const MAX_ANCESTORS_DEPTH: usize = 64;

impl EnrichConfig {
    /// Checks the values; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_entries == 0 || self.max_entries > MAX_ENTRIES_LIMIT {
            return Err(format!(
                "enrich.max_entries = {}: must be between 1 and {MAX_ENTRIES_LIMIT}",
                self.max_entries
            ));
        }
        if self.sweep_interval_secs == 0 {
            return Err("enrich.sweep_interval_secs must be > 0".into());
        }
        if self.ancestors_depth > MAX_ANCESTORS_DEPTH {
            return Err(format!(
                "enrich.ancestors_depth = {}: at most {MAX_ANCESTORS_DEPTH}",
                self.ancestors_depth
            ));
        }
        if self.process_wait_ms > MAX_PROCESS_WAIT_MS {
            return Err(format!(
                "enrich.process_wait_ms = {}: at most {MAX_PROCESS_WAIT_MS}",
                self.process_wait_ms
            ));
        }
        Ok(())
    }
}

/// Largest accepted `process_wait_ms` (held events delay the output).
pub const MAX_PROCESS_WAIT_MS: u64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial_section() {
        let c: EnrichConfig = toml::from_str("").unwrap();
        assert_eq!(c, EnrichConfig::default());
        assert_eq!(
            (
                c.max_entries,
                c.exit_grace_ms,
                c.sweep_interval_secs,
                c.ancestors_depth
            ),
            (65_536, 5_000, 30, 4)
        );
        let c: EnrichConfig = toml::from_str("ancestors_depth = 2").unwrap();
        assert_eq!((c.ancestors_depth, c.max_entries), (2, 65_536));
        assert!(c.validate().is_ok());
        let text = toml::to_string(&EnrichConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<EnrichConfig>(&text).unwrap(),
            EnrichConfig::default()
        );
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        assert!(toml::from_str::<EnrichConfig>("bogus = 1").is_err());
        let bad = |c: EnrichConfig| c.validate().unwrap_err();
        assert!(bad(EnrichConfig {
            max_entries: 0,
            ..Default::default()
        })
        .contains("max_entries"));
        assert!(bad(EnrichConfig {
            sweep_interval_secs: 0,
            ..Default::default()
        })
        .contains("sweep_interval_secs"));
        assert!(bad(EnrichConfig {
            ancestors_depth: 1000,
            ..Default::default()
        })
        .contains("ancestors_depth"));
    }
}
