//! Exit consistency: an exit is dropped only when every exec of its process was (see the
//! module documentation of [`super`]).
use std::collections::{HashMap, VecDeque};

use super::fnv::FnvBuild;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExecState {
    /// At least one exec of this process was shipped: its exit always passes.
    Shipped,
    /// Every exec seen was dropped (by this rule index): drop its exit.
    Dropped(u32),
    /// Its exit came first (audit ordering) and was dropped by a comm rule.
    ExitDropped(u32),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u64,
    state: ExecState,
    gen: u64,
}

fn same_process(a: u64, b: u64) -> bool {
    a == b || a == 0 || b == 0
}

/// Counters of the tracker (totals since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerCounts {
    pub exits_dropped: u64,
    pub evictions: u64,
    pub inconsistencies: u64,
    pub tracked: u64,
}

/// Remembers, per live pid, whether its exec was shipped or dropped. Bounded: the oldest
/// entry is evicted first.
#[derive(Debug)]
pub struct ExitTracker {
    map: HashMap<u32, Entry, FnvBuild>,
    order: VecDeque<(u32, u64)>,
    cap: usize,
    gen: u64,
    counts: TrackerCounts,
}

/// What the tracker says about an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitDecision {
    Keep,
    /// Drop: its exec was dropped by this rule.
    Drop(u32),
}

impl ExitTracker {
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
            gen: 0,
            counts: TrackerCounts::default(),
        }
    }

    pub fn counts(&self) -> TrackerCounts {
        TrackerCounts {
            tracked: self.map.len() as u64,
            ..self.counts
        }
    }

    fn put(&mut self, pid: u32, start: u64, state: ExecState) {
        self.gen += 1;
        let gen = self.gen;
        if self.map.insert(pid, Entry { start, state, gen }).is_none() {
            while self.map.len() > self.cap {
                let Some((old, g)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&old).is_some_and(|e| e.gen == g) {
                    self.map.remove(&old);
                    self.counts.evictions += 1;
                }
            }
        }
        self.order.push_back((pid, gen));
        // Drop stale order records (replaced or removed entries) now and then.
        if self.order.len() > self.cap.saturating_mul(2).max(64) {
            let map = &self.map;
            self.order
                .retain(|(p, g)| map.get(p).is_some_and(|e| e.gen == *g));
        }
    }

    /// An exec of (pid, start) was shipped (`dropped_by == None`) or dropped by a rule.
    pub fn on_exec(&mut self, pid: u32, start: u64, dropped_by: Option<u32>) {
        let prev = self
            .map
            .get(&pid)
            .filter(|e| same_process(e.start, start))
            .map(|e| e.state);
        let start = if start == 0 {
            self.map.get(&pid).map_or(0, |e| e.start)
        } else {
            start
        };
        match (prev, dropped_by) {
            (Some(ExecState::ExitDropped(_)), d) => {
                // The process is already gone; its exit was dropped.
                if d.is_none() {
                    self.counts.inconsistencies += 1;
                }
                self.map.remove(&pid);
            }
            (Some(ExecState::Shipped), _) => {}
            (_, None) => self.put(pid, start, ExecState::Shipped),
            (_, Some(r)) => self.put(pid, start, ExecState::Dropped(r)),
        }
    }

    /// An exit of (pid, start). `comm_rule`: the comm-only exec rule matching the exit's comm,
    /// used when no exec of the process was seen.
    pub fn on_exit(&mut self, pid: u32, start: u64, comm_rule: Option<u32>) -> ExitDecision {
        match self.map.get(&pid).copied() {
            Some(e) if same_process(e.start, start) => match e.state {
                ExecState::Shipped => {
                    self.map.remove(&pid);
                    ExitDecision::Keep
                }
                ExecState::Dropped(r) => {
                    self.map.remove(&pid);
                    self.counts.exits_dropped += 1;
                    ExitDecision::Drop(r)
                }
                ExecState::ExitDropped(r) => {
                    // A duplicate exit: same decision.
                    self.counts.exits_dropped += 1;
                    ExitDecision::Drop(r)
                }
            },
            // An older process's late exit: the entry belongs to a younger one.
            Some(_) => ExitDecision::Keep,
            None => match comm_rule {
                Some(r) => {
                    self.put(pid, start, ExecState::ExitDropped(r));
                    self.counts.exits_dropped += 1;
                    ExitDecision::Drop(r)
                }
                None => ExitDecision::Keep,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_is_bounded() {
        let mut t = ExitTracker::new(100);
        for pid in 0..10_000u32 {
            t.on_exec(pid, 1, Some(0));
        }
        let c = t.counts();
        assert_eq!(c.tracked, 100);
        assert_eq!(c.evictions, 9_900);
        assert!(t.order.len() <= 300, "{}", t.order.len());
        // Evicted: its exit is shipped. Still tracked: dropped.
        assert_eq!(t.on_exit(5, 1, None), ExitDecision::Keep);
        assert_eq!(t.on_exit(9_999, 1, None), ExitDecision::Drop(0));
        // Re-exec of the same pid (in place) does not grow the order without bound.
        for _ in 0..10_000 {
            t.on_exec(42, 1, Some(0));
        }
        assert!(t.order.len() <= 300);
    }
}
