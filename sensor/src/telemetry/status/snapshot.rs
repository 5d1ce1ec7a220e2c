//! What the status file holds.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22), so a
    /// reused pid is not mistaken for the sensor.
    pub pid_start_ticks: u64,
    pub started_unix: f64,
    pub updated_unix: f64,
    /// Seconds between writes: a file much older than this means a hung sensor.
    pub interval_secs: u64,
    pub mode: String,
    pub reason: String,
    pub uptime_s: f64,
    /// Events that entered the pipeline, by source and kind.
    pub events_by_source: BTreeMap<String, BTreeMap<String, u64>>,
    /// The health event's counters (events by kind and the figures of each stage).
    pub counters: BTreeMap<String, u64>,
    /// Every loss counter by name (source and kind are in the names).
    pub drops: BTreeMap<String, u64>,
    /// Loss counters that grew since the previous write, with how much.
    pub drops_recent: BTreeMap<String, u64>,
    pub shed_level: u8,
    pub output: Output,
    pub cpu_seconds: f64,
    /// CPU used since the previous write, in percent of one core.
    pub cpu_percent: f64,
    pub cpu_budget_percent: f64,
    pub rss_bytes: u64,
    pub memory_ceiling_bytes: u64,
    pub nice: i32,
    /// Why the sensor considers itself degraded; empty when healthy.
    pub degraded: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Output {
    /// "-" (stdout), a file path, or "grpc".
    pub target: String,
    pub collector: Option<Collector>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Collector {
    pub address: String,
    pub connected: bool,
    /// Seconds since the connection was lost (0 while connected).
    pub disconnected_for_s: f64,
    pub last_error: String,
    pub connects: u64,
    pub connect_failures: u64,
    pub spool_bytes: u64,
    pub spool_pending_events: u64,
    /// Age of the oldest batch not yet acknowledged (none when the spool is drained).
    pub spool_oldest_age_s: Option<f64>,
    pub events_acked: u64,
    /// Acks for batch ids the sensor did not have in flight (ignored).
    pub acks_unknown: u64,
    /// Events held in memory because the spool cannot be written (disk full), and why.
    pub spool_unwritten_events: u64,
    pub spool_error: String,
}

/// Loss counters that grew between two readings.
pub fn grown(prev: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .filter_map(|(k, &v)| {
            let before = prev.get(k).copied().unwrap_or(0);
            (v > before).then(|| (k.clone(), v - before))
        })
        .collect()
}

/// Why a sensor in this state is degraded (empty: healthy). Pure, from the snapshot alone.
pub fn degraded_reasons(s: &Status, disconnected_degraded_secs: u64) -> Vec<String> {
    let mut why = Vec::new();
    if !s.drops_recent.is_empty() {
        let list: Vec<String> = s
            .drops_recent
            .iter()
            .map(|(k, v)| format!("{k} +{v}"))
            .collect();
        why.push(format!(
            "events lost in the last {}s: {}",
            s.interval_secs,
            list.join(", ")
        ));
    }
    if s.shed_level > 0 {
        why.push(format!(
            "shedding load at level {} (CPU {:.1}% of a core, budget {:.1}%)",
            s.shed_level, s.cpu_percent, s.cpu_budget_percent
        ));
    }
    if s.memory_ceiling_bytes > 0 && s.rss_bytes > s.memory_ceiling_bytes {
        why.push(format!(
            "resident memory {} MiB above the ceiling of {} MiB",
            s.rss_bytes >> 20,
            s.memory_ceiling_bytes >> 20
        ));
    }
    if let Some(c) = &s.output.collector {
        if !c.spool_error.is_empty() {
            why.push(format!(
                "the spool cannot be written ({} events held in memory, retrying): {}",
                c.spool_unwritten_events, c.spool_error
            ));
        }
        if !c.connected && c.disconnected_for_s >= disconnected_degraded_secs as f64 {
            why.push(format!(
                "not connected to the collector {} for {:.0}s ({} events spooled){}",
                c.address,
                c.disconnected_for_s,
                c.spool_pending_events,
                if c.last_error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.last_error)
                }
            ));
        }
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: &[(&str, u64)]) -> BTreeMap<String, u64> {
        v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn grown_counts_only_increases() {
        let g = grown(
            &map(&[("a", 1), ("b", 5)]),
            &map(&[("a", 1), ("b", 7), ("c", 2)]),
        );
        assert_eq!(g, map(&[("b", 2), ("c", 2)]));
        assert!(grown(&map(&[("a", 3)]), &map(&[("a", 3)])).is_empty());
    }

    #[test]
    fn healthy_sensor_has_no_reasons() {
        let s = Status {
            interval_secs: 5,
            output: Output {
                target: "grpc".into(),
                collector: Some(Collector {
                    connected: true,
                    ..Collector::default()
                }),
            },
            ..Status::default()
        };
        assert!(degraded_reasons(&s, 60).is_empty());
    }

    #[test]
    fn each_degradation_is_named() {
        let s = Status {
            interval_secs: 5,
            drops_recent: map(&[("ebpf_ring_full_exec", 3)]),
            shed_level: 2,
            cpu_percent: 40.0,
            cpu_budget_percent: 25.0,
            rss_bytes: 600 << 20,
            memory_ceiling_bytes: 512 << 20,
            output: Output {
                target: "grpc".into(),
                collector: Some(Collector {
                    address: "10.0.0.1:4317".into(),
                    connected: false,
                    disconnected_for_s: 61.0,
                    last_error: "connection refused".into(),
                    spool_pending_events: 10,
                    ..Collector::default()
                }),
            },
            ..Status::default()
        };
        let why = degraded_reasons(&s, 60);
        assert_eq!(why.len(), 4, "{why:?}");
        assert!(why[0].contains("ebpf_ring_full_exec +3"));
        assert!(why[1].contains("level 2"));
        assert!(why[2].contains("600 MiB"));
        assert!(why[3].contains("connection refused") && why[3].contains("10 events"));
        let mut brief = s.clone();
        brief.output.collector.as_mut().unwrap().disconnected_for_s = 5.0;
        assert_eq!(
            degraded_reasons(&brief, 60).len(),
            3,
            "a short outage is not degraded"
        );
    }
}
