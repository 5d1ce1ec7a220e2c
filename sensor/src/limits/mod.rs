//! Self-limits: a CPU budget enforced by shedding load in a fixed, counted order, a memory
//! ceiling applied to the process cache and queues, and a lower scheduling priority.
//!
//! Shedding order (each level includes the ones before it):
//! 1. coalesce exact repeats within one second: an exec with the same parent, executable and
//!    argv; a connect by the same process to the same destination; a file event by the same
//!    process on the same path with the same operations;
//! 2. drop `flow` events and read-only file events (only `open`/`close`);
//! 3. drop every `file` and `net_connect` event;
//! 4. coalesce execs by parent and executable within one second (argv may differ).
//!
//! `process_exit`, `login`, `logout`, `login_failed`, `privilege_change` and `sensor_health`
//! are never shed. Every shed event is counted by kind and reason (`shed_<reason>_<kind>` in
//! health drops and `sensor status`).
pub mod governor;
pub mod memory;
pub mod priority;
pub mod task;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// CPU budget in percent of one core, averaged over `cpu_window_secs`. Above it the sensor
    /// sheds load in the documented order; 0 disables the budget.
    pub cpu_percent: f64,
    /// Averaging window of the CPU budget, in seconds.
    pub cpu_window_secs: u64,
    /// Memory ceiling in MiB: sizes the process cache and the event queues at start, and when
    /// resident memory goes above it the sensor sheds at the highest level until it is back
    /// under. 0 disables the ceiling.
    pub memory_mb: u64,
    /// Scheduling priority (nice value, -20..19) the sensor sets for itself at start; 0 keeps
    /// the inherited one.
    pub nice: i32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            cpu_percent: 25.0,
            cpu_window_secs: 10,
            memory_mb: 512,
            nice: 10,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.cpu_percent.is_finite() && (0.0..=800.0).contains(&self.cpu_percent)) {
            return Err(format!(
                "limits.cpu_percent = {}: must be between 0 and 800",
                self.cpu_percent
            ));
        }
        if self.cpu_window_secs == 0 || self.cpu_window_secs > 3600 {
            return Err(format!(
                "limits.cpu_window_secs = {}: must be between 1 and 3600",
                self.cpu_window_secs
            ));
        }
        if self.memory_mb != 0 && self.memory_mb < memory::MIN_CEILING_MB {
            return Err(format!(
                "limits.memory_mb = {}: at least {} (or 0 for no ceiling)",
                self.memory_mb,
                memory::MIN_CEILING_MB
            ));
        }
        if !(-20..=19).contains(&self.nice) {
            return Err(format!(
                "limits.nice = {}: must be between -20 and 19",
                self.nice
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_key() {
        LimitsConfig::default().validate().unwrap();
        let bad = |f: fn(&mut LimitsConfig)| {
            let mut c = LimitsConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.cpu_percent = -1.0).starts_with("limits.cpu_percent"));
        assert!(bad(|c| c.cpu_percent = f64::NAN).starts_with("limits.cpu_percent"));
        assert!(bad(|c| c.cpu_window_secs = 0).starts_with("limits.cpu_window_secs"));
        assert!(bad(|c| c.memory_mb = 1).starts_with("limits.memory_mb"));
        assert!(bad(|c| c.nice = 20).starts_with("limits.nice"));
        let off = LimitsConfig {
            cpu_percent: 0.0,
            memory_mb: 0,
            ..LimitsConfig::default()
        };
        off.validate().unwrap();
    }
}
