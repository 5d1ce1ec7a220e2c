//! The status figures in Prometheus text format, for node_exporter's textfile collector
//! (`[status] prometheus_textfile`): the sensor keeps no listening port; node_exporter serves
//! the file. Written next to the status file, from the same snapshot, by the status writer.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::snapshot::Status;

/// A label value with `\`, `"` and newlines escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    family(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {v}");
}

fn labelled(out: &mut String, name: &str, key: &str, values: &BTreeMap<String, u64>) {
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{key}=\"{}\"}} {v}", label(k));
    }
}

/// Renders `s` as Prometheus text. Every metric is prefixed `sensor_`.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    family(
        &mut o,
        "sensor_info",
        "gauge",
        "Always 1; the labels name the version and the capture mode.",
    );
    let _ = writeln!(
        o,
        "sensor_info{{version=\"{}\",mode=\"{}\"}} 1",
        label(&s.version),
        label(&s.mode)
    );
    family(
        &mut o,
        "sensor_events_total",
        "counter",
        "Events that entered the pipeline, by source and kind.",
    );
    for (source, kinds) in &s.events_by_source {
        for (kind, v) in kinds {
            let _ = writeln!(
                o,
                "sensor_events_total{{source=\"{}\",kind=\"{}\"}} {v}",
                label(source),
                label(kind)
            );
        }
    }
    family(
        &mut o,
        "sensor_drops_total",
        "counter",
        "Every loss counter by name (the name carries the source and kind).",
    );
    labelled(&mut o, "sensor_drops_total", "name", &s.drops);
    family(
        &mut o,
        "sensor_counter",
        "untyped",
        "The health event's other counters (events by kind, figures of each stage).",
    );
    labelled(&mut o, "sensor_counter", "name", &s.counters);
    gauge(
        &mut o,
        "sensor_shed_level",
        "Load-shedding level (0 = none).",
        f64::from(s.shed_level),
    );
    family(
        &mut o,
        "sensor_cpu_seconds_total",
        "counter",
        "CPU seconds (user + system) since start.",
    );
    let _ = writeln!(o, "sensor_cpu_seconds_total {}", s.cpu_seconds);
    gauge(
        &mut o,
        "sensor_cpu_percent",
        "CPU used since the previous write, percent of one core.",
        s.cpu_percent,
    );
    gauge(
        &mut o,
        "sensor_cpu_budget_percent",
        "CPU budget, percent of one core (0 = none).",
        s.cpu_budget_percent,
    );
    gauge(
        &mut o,
        "sensor_rss_bytes",
        "Resident memory.",
        s.rss_bytes as f64,
    );
    gauge(
        &mut o,
        "sensor_memory_ceiling_bytes",
        "Memory ceiling the sensor plans within.",
        s.memory_ceiling_bytes as f64,
    );
    gauge(
        &mut o,
        "sensor_uptime_seconds",
        "Seconds since start.",
        s.uptime_s,
    );
    gauge(
        &mut o,
        "sensor_degraded",
        "1 when the sensor reports itself degraded (see `sensor status`).",
        if s.degraded.is_empty() { 0.0 } else { 1.0 },
    );
    gauge(
        &mut o,
        "sensor_status_updated_timestamp_seconds",
        "When these figures were taken (Unix seconds).",
        s.updated_unix,
    );
    if let Some(c) = &s.output.collector {
        gauge(
            &mut o,
            "sensor_collector_connected",
            "1 while connected to the collector.",
            if c.connected { 1.0 } else { 0.0 },
        );
        gauge(
            &mut o,
            "sensor_spool_bytes",
            "Bytes in the spool.",
            c.spool_bytes as f64,
        );
        gauge(
            &mut o,
            "sensor_spool_pending_events",
            "Events spooled and not yet acknowledged.",
            c.spool_pending_events as f64,
        );
        gauge(
            &mut o,
            "sensor_spool_oldest_age_seconds",
            "Age of the oldest unacknowledged batch (0 when drained).",
            c.spool_oldest_age_s.unwrap_or(0.0),
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::status::snapshot::{Collector, Output};

    #[test]
    fn renders_every_figure_with_escaped_labels() {
        let s = Status {
            version: "1.2.3".into(),
            mode: "audit".into(),
            events_by_source: [(
                "ebpf".to_string(),
                [("process_exec".to_string(), 5u64)].into(),
            )]
            .into(),
            drops: [("weird\"na\\me\n".to_string(), 2u64)].into(),
            counters: [("cache_hits".to_string(), 9u64)].into(),
            shed_level: 2,
            cpu_seconds: 1.5,
            rss_bytes: 4096,
            degraded: vec!["x".into()],
            output: Output {
                target: "grpc".into(),
                collector: Some(Collector {
                    spool_bytes: 777,
                    spool_oldest_age_s: Some(3.5),
                    ..Default::default()
                }),
            },
            ..Default::default()
        };
        let t = render(&s);
        for line in [
            "sensor_info{version=\"1.2.3\",mode=\"audit\"} 1",
            "sensor_events_total{source=\"ebpf\",kind=\"process_exec\"} 5",
            "sensor_drops_total{name=\"weird\\\"na\\\\me\\n\"} 2",
            "sensor_counter{name=\"cache_hits\"} 9",
            "sensor_shed_level 2",
            "sensor_cpu_seconds_total 1.5",
            "sensor_rss_bytes 4096",
            "sensor_degraded 1",
            "sensor_spool_bytes 777",
            "sensor_spool_oldest_age_seconds 3.5",
        ] {
            assert!(t.lines().any(|l| l == line), "{line:?} missing in\n{t}");
        }
        // One value line per sample, no raw newline inside a label.
        assert!(t
            .lines()
            .all(|l| l.starts_with('#') || l.starts_with("sensor_")));
    }

    #[test]
    fn no_spool_figures_without_shipping() {
        let t = render(&Status::default());
        assert!(!t.contains("sensor_spool_bytes"));
        assert!(t.contains("sensor_shed_level 0"));
    }
}
