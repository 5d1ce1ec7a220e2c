//! The CPU budget's decision: one observation per window moves the shedding level up by one
//! while the sensor is over budget, and down by one after two calm windows (under half the
//! budget). A memory ceiling breach jumps straight to the highest level.

/// The highest shedding level (see the module docs of `limits` for what each level sheds).
pub const MAX_LEVEL: u8 = 4;

/// Calm windows needed before stepping a level down.
const CALM_WINDOWS: u32 = 2;

#[derive(Debug, Clone)]
pub struct CpuGovernor {
    budget_percent: f64,
    level: u8,
    calm: u32,
}

impl CpuGovernor {
    /// `budget_percent` of one core; 0 means no CPU budget.
    pub fn new(budget_percent: f64) -> Self {
        Self {
            budget_percent,
            level: 0,
            calm: 0,
        }
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    /// Feeds the CPU used over the last window (percent of one core) and whether resident
    /// memory is above the ceiling; returns the new level.
    pub fn observe(&mut self, cpu_percent: f64, memory_over: bool) -> u8 {
        if memory_over {
            self.level = MAX_LEVEL;
            self.calm = 0;
            return self.level;
        }
        if self.budget_percent <= 0.0 {
            // No CPU budget: only the memory ceiling can hold a level; release it stepwise.
            return self.step_down_when_calm(true);
        }
        if cpu_percent > self.budget_percent {
            self.level = (self.level + 1).min(MAX_LEVEL);
            self.calm = 0;
            self.level
        } else {
            self.step_down_when_calm(cpu_percent < self.budget_percent / 2.0)
        }
    }

    fn step_down_when_calm(&mut self, calm: bool) -> u8 {
        if !calm {
            self.calm = 0;
        } else if self.level > 0 {
            self.calm += 1;
            if self.calm >= CALM_WINDOWS {
                self.level -= 1;
                self.calm = 0;
            }
        }
        self.level
    }
}

/// CPU percent of one core between two readings of the process's CPU seconds.
pub fn cpu_percent(cpu_before: f64, cpu_now: f64, wall_secs: f64) -> f64 {
    if wall_secs <= 0.0 {
        return 0.0;
    }
    ((cpu_now - cpu_before).max(0.0) / wall_secs) * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_one_level_per_hot_window_and_caps() {
        let mut g = CpuGovernor::new(10.0);
        assert_eq!(g.observe(5.0, false), 0);
        assert_eq!(g.observe(11.0, false), 1);
        assert_eq!(g.observe(50.0, false), 2);
        for _ in 0..10 {
            g.observe(90.0, false);
        }
        assert_eq!(g.level(), MAX_LEVEL);
    }

    #[test]
    fn falls_only_after_two_calm_windows() {
        let mut g = CpuGovernor::new(10.0);
        g.observe(20.0, false);
        g.observe(20.0, false);
        assert_eq!(g.level(), 2);
        // Between half the budget and the budget: hold.
        assert_eq!(g.observe(7.0, false), 2);
        assert_eq!(g.observe(4.0, false), 2);
        assert_eq!(g.observe(4.0, false), 1);
        // A hot window resets the calm count.
        assert_eq!(g.observe(4.0, false), 1);
        assert_eq!(g.observe(8.0, false), 1);
        assert_eq!(g.observe(4.0, false), 1);
        assert_eq!(g.observe(4.0, false), 0);
        assert_eq!(g.observe(0.0, false), 0);
    }

    #[test]
    fn memory_breach_jumps_to_the_top_even_without_a_cpu_budget() {
        let mut g = CpuGovernor::new(0.0);
        assert_eq!(g.observe(500.0, false), 0, "no CPU budget: CPU never sheds");
        assert_eq!(g.observe(0.0, true), MAX_LEVEL);
        assert_eq!(g.observe(0.0, false), MAX_LEVEL);
        assert_eq!(g.observe(0.0, false), MAX_LEVEL - 1);
    }

    #[test]
    fn percent_of_a_core() {
        assert_eq!(cpu_percent(1.0, 1.5, 2.0), 25.0);
        assert_eq!(cpu_percent(1.0, 0.5, 2.0), 0.0);
        assert_eq!(cpu_percent(1.0, 3.0, 0.0), 0.0);
    }
}
