//! The filter stage: noise rules ([`noise`]) then argv redaction ([`redact`]), between
//! enrichment and output/shipping, so nothing dropped is shipped and nothing shipped or
//! written carries a recognised secret.
//!
//! ```text
//! capture -> enrich -> filter (noise rules, exit consistency, redaction) -> output / ship
//! ```
//! The hottest rule (exec by exact comm) can also run in the kernel: [`kernel_comm_filter`]
//! lists the comms whose execs may be dropped before they reach the ring buffer.
pub mod noise;
pub mod redact;
pub mod stage;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

pub use noise::{
    default_rules, kernel_comm_filter, kernel_comm_rules, FilterError, NoiseConfig, NoiseFilter,
    NoiseRule, Verdict,
};
pub use redact::{RedactionConfig, Redactor, ToolRule};
pub use stage::Filter;

/// `[filter]` in the TOML configuration; `sensor config --defaults` prints the default rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    pub noise: NoiseConfig,
    pub redaction: RedactionConfig,
}

impl FilterConfig {
    /// Compiles both halves (validates every rule and pattern).
    pub fn build(&self) -> Result<(NoiseFilter, Redactor), FilterError> {
        Ok((
            NoiseFilter::new(&self.noise)?,
            Redactor::new(&self.redaction)?,
        ))
    }
}

/// Counters of the filter stage, reported in `sensor_health` (as counts: filtered events are
/// intentional, not losses).
#[derive(Debug)]
pub struct FilterStats {
    names: Vec<String>,
    /// Events dropped in userspace, per rule index.
    user: Vec<AtomicU64>,
    /// Execs dropped in the kernel, per rule index (set from the kernel's counters).
    kernel: Vec<AtomicU64>,
    /// Exits dropped because their exec was dropped (userspace).
    pub exits_dropped: AtomicU64,
    /// Exits dropped in the kernel because their exec was dropped there.
    pub kernel_exits_dropped: AtomicU64,
    pub tracking_evictions: AtomicU64,
    pub exit_inconsistencies: AtomicU64,
    /// Events with at least one redacted argument, and redacted arguments.
    pub redacted_events: AtomicU64,
    pub redacted_args: AtomicU64,
    pub passed: AtomicU64,
}

impl FilterStats {
    pub fn new(rule_names: Vec<String>) -> Self {
        let n = rule_names.len();
        Self {
            names: rule_names,
            user: (0..n).map(|_| AtomicU64::new(0)).collect(),
            kernel: (0..n).map(|_| AtomicU64::new(0)).collect(),
            exits_dropped: AtomicU64::new(0),
            kernel_exits_dropped: AtomicU64::new(0),
            tracking_evictions: AtomicU64::new(0),
            exit_inconsistencies: AtomicU64::new(0),
            redacted_events: AtomicU64::new(0),
            redacted_args: AtomicU64::new(0),
            passed: AtomicU64::new(0),
        }
    }

    pub fn for_filter(f: &NoiseFilter) -> Self {
        Self::new(f.rule_names())
    }

    /// The rule names, in rule order.
    pub fn rule_names(&self) -> &[String] {
        &self.names
    }

    pub fn count_rule(&self, rule: usize) {
        if let Some(c) = self.user.get(rule) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The kernel's running total for a rule (sum over CPUs of its drop counter).
    pub fn set_kernel_drops(&self, rule: usize, total: u64) {
        if let Some(c) = self.kernel.get(rule) {
            c.store(total, Relaxed);
        }
    }

    pub fn set_kernel_exit_drops(&self, total: u64) {
        self.kernel_exits_dropped.store(total, Relaxed);
    }

    /// Events dropped by a rule (userspace + kernel).
    pub fn filtered(&self, rule: usize) -> u64 {
        self.user.get(rule).map_or(0, |c| c.load(Relaxed))
            + self.kernel.get(rule).map_or(0, |c| c.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let cfg = FilterConfig::default();
        let text = toml::to_string_pretty(&cfg).unwrap();
        assert!(text.contains("[[noise.rules]]"), "{text}");
        assert!(text.contains("marker = \"[REDACTED]\""), "{text}");
        assert_eq!(toml::from_str::<FilterConfig>(&text).unwrap(), cfg);
        assert_eq!(toml::from_str::<FilterConfig>("").unwrap(), cfg);
        assert!(toml::from_str::<FilterConfig>("[noise]\nbogus = 1\n").is_err());
        cfg.build().unwrap();
    }

    #[test]
    fn nested_in_a_parent_config() {
        // As the lead's Config holds it: `[filter.noise]`, `[[filter.noise.rules]]`.
        #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
        #[serde(default)]
        struct Parent {
            other: u32,
            filter: FilterConfig,
        }
        let p = Parent::default();
        let text = toml::to_string_pretty(&p).unwrap();
        assert!(text.contains("[[filter.noise.rules]]"), "{text}");
        assert_eq!(toml::from_str::<Parent>(&text).unwrap(), p);
    }

    #[test]
    fn notes_name_every_rule() {
        let f = NoiseFilter::new(&NoiseConfig::default()).unwrap();
        let s = FilterStats::for_filter(&f);
        s.count_rule(0);
        s.set_kernel_drops(0, 10);
        s.count_rule(99); // out of range: ignored
        let n = crate::telemetry::fields::fields_of(&s).events;
        assert_eq!(n["filtered_routine_info"], 11);
        assert_eq!(n["filtered_shell_prompt"], 0);
        assert_eq!(n["filter_exits_dropped"], 0);
        assert!(n.contains_key("redacted_args"));
    }
}
