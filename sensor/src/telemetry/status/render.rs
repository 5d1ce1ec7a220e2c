//! `sensor status` as text.
use std::fmt::Write as _;

use super::{assess::Verdict, snapshot::Status};

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, m, sec) => format!("{m}m {sec:02}s"),
        (0, h, m, sec) => format!("{h}h {m:02}m {sec:02}s"),
        (d, h, m, _) => format!("{d}d {h:02}h {m:02}m"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// The report for a status file that was read (whatever the verdict).
pub fn text(s: &Status, verdict: &Verdict) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "sensor: {}", verdict.word());
    if let Verdict::NotRunning(why) = verdict {
        let _ = writeln!(o, "  {why}");
        let _ = writeln!(
            o,
            "  last status written at unix time {:.0}:",
            s.updated_unix
        );
    }
    let _ = writeln!(
        o,
        "  pid {}, version {}, up {}, nice {}",
        s.pid,
        s.version,
        duration(s.uptime_s),
        s.nice
    );
    let _ = writeln!(o, "mode: {}", s.mode);
    let _ = writeln!(o, "  reason: {}", s.reason);
    let budget = if s.cpu_budget_percent > 0.0 {
        format!("budget {:.1}%", s.cpu_budget_percent)
    } else {
        "no budget".into()
    };
    let ceiling = if s.memory_ceiling_bytes > 0 {
        format!("ceiling {}", mib(s.memory_ceiling_bytes))
    } else {
        "no ceiling".into()
    };
    let _ = writeln!(
        o,
        "cpu: {:.1}% of a core ({budget}), {:.2}s in all; rss {} ({ceiling})",
        s.cpu_percent,
        s.cpu_seconds,
        mib(s.rss_bytes)
    );
    let _ = writeln!(
        o,
        "load shedding: {}",
        if s.shed_level == 0 {
            "off".to_string()
        } else {
            format!("level {}", s.shed_level)
        }
    );
    match &s.output.collector {
        Some(c) => {
            let state = if c.connected {
                "connected".to_string()
            } else {
                format!("DISCONNECTED for {}", duration(c.disconnected_for_s))
            };
            let _ = writeln!(
                o,
                "output: collector {} {state} (connects {}, failures {}, {} events acknowledged)",
                c.address, c.connects, c.connect_failures, c.events_acked
            );
            if c.acks_unknown > 0 {
                let _ = writeln!(
                    o,
                    "  {} acks for batch ids never sent or already acknowledged (ignored)",
                    c.acks_unknown
                );
            }
            if !c.connected && !c.last_error.is_empty() {
                let _ = writeln!(o, "  last error: {}", c.last_error);
            }
            let oldest = c.spool_oldest_age_s.map_or("empty".to_string(), |a| {
                format!("oldest batch {} old", duration(a))
            });
            let _ = writeln!(
                o,
                "  spool: {}, {} events pending, {oldest}",
                mib(c.spool_bytes),
                c.spool_pending_events
            );
        }
        None => {
            let target = if s.output.target == "-" {
                "stdout"
            } else {
                &s.output.target
            };
            let _ = writeln!(o, "output: JSON lines to {target}");
        }
    }
    let _ = writeln!(o, "events by source:");
    if s.events_by_source.is_empty() {
        let _ = writeln!(o, "  none yet");
    }
    for (src, kinds) in &s.events_by_source {
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(o, "  {src:<10} {}", list.join(", "));
    }
    let lost: Vec<(&String, &u64)> = s.drops.iter().filter(|(_, n)| **n > 0).collect();
    if lost.is_empty() {
        let _ = writeln!(o, "drops: none");
    } else {
        let _ = writeln!(o, "drops:");
        for (k, n) in lost {
            let recent = s
                .drops_recent
                .get(k)
                .map_or(String::new(), |r| format!(" (+{r} recently)"));
            let _ = writeln!(o, "  {k:<40} {n}{recent}");
        }
    }
    if let Verdict::Degraded(why) = verdict {
        let _ = writeln!(o, "degraded because:");
        for w in why {
            let _ = writeln!(o, "  - {w}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::status::snapshot::{Collector, Output};
    use std::collections::BTreeMap;

    #[test]
    fn durations() {
        assert_eq!(duration(5.2), "5s");
        assert_eq!(duration(65.0), "1m 05s");
        assert_eq!(duration(3725.0), "1h 02m 05s");
        assert_eq!(duration(90_061.0), "1d 01h 01m");
    }

    #[test]
    fn report_names_every_part() {
        let s = Status {
            pid: 9,
            version: "0.1.0".into(),
            mode: "audit".into(),
            reason: "auto: eBPF failed to load".into(),
            uptime_s: 61.0,
            cpu_percent: 3.25,
            cpu_budget_percent: 25.0,
            rss_bytes: 27 << 20,
            memory_ceiling_bytes: 512 << 20,
            events_by_source: BTreeMap::from([(
                "audit".to_string(),
                BTreeMap::from([("process_exec".to_string(), 12)]),
            )]),
            drops: BTreeMap::from([("audit_lost".to_string(), 4), ("x".to_string(), 0)]),
            drops_recent: BTreeMap::from([("audit_lost".to_string(), 1)]),
            output: Output {
                target: "grpc".into(),
                collector: Some(Collector {
                    address: "127.0.0.1:4317".into(),
                    connected: false,
                    disconnected_for_s: 70.0,
                    last_error: "refused".into(),
                    spool_pending_events: 3,
                    spool_oldest_age_s: Some(70.0),
                    ..Collector::default()
                }),
            },
            ..Status::default()
        };
        let t = text(&s, &Verdict::Degraded(vec!["because".into()]));
        for want in [
            "sensor: degraded",
            "mode: audit",
            "eBPF failed to load",
            "up 1m 01s",
            "3.2% of a core (budget 25.0%)",
            "rss 27.0 MiB (ceiling 512.0 MiB)",
            "DISCONNECTED for 1m 10s",
            "last error: refused",
            "3 events pending, oldest batch 1m 10s old",
            "audit      process_exec 12",
            "audit_lost",
            "(+1 recently)",
            "- because",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(!t.contains(" x "), "zero counters are not listed:\n{t}");
    }
}
