//! The collector's own counters and their Prometheus text rendering. Each internal event
//! both logs and counts (the log lines live next to the `Metrics` calls).
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Metrics {
    pub events_received: AtomicU64,
    pub events_stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches_acked: AtomicU64,
    pub store_errors: AtomicU64,
    pub streams_active: AtomicI64,
    pub streams_total: AtomicU64,
    /// `collector consume`: stream messages this consumer has not acknowledged yet.
    pub consume_lag_messages: AtomicU64,
    /// Connections closed at accept: over `server.max_connections`, or (local socket) a
    /// peer that is not root.
    pub connections_refused: AtomicU64,
    /// Plaintext connections closed because no HTTP/2 preface arrived in time (or something
    /// else did).
    pub connections_no_preface: AtomicU64,
    /// Events in batches refused because their host was not the stream's host.
    pub events_refused_host: AtomicU64,
    /// Stored batches of sensors beyond [`MAX_SENSORS`] (counted, not broken out).
    pub untracked_sensor_batches: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    sensors: Mutex<HashMap<String, SensorStats>>,
}

/// Most sensors with their own series; batches of further sensors only add to the totals
/// (and to `collector_untracked_sensor_batches_total`), so the map cannot grow without bound.
pub const MAX_SENSORS: usize = 10_000;

/// Per-sensor figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SensorStats {
    pub host: String,
    pub events: u64,
    pub duplicates: u64,
    pub batches: u64,
    /// Newest event time seen, ns since the epoch.
    pub newest_event_ns: i64,
    /// When its last batch was stored, ns since the epoch.
    pub last_batch_ns: i64,
    /// At the last batch: store time minus the batch's newest event time, seconds.
    pub lag_seconds: f64,
}

impl Metrics {
    pub fn reject(&self, reason: &'static str) {
        *lock(&self.rejected).entry(reason).or_default() += 1;
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        lock(&self.rejected).get(reason).copied().unwrap_or(0)
    }

    pub fn rejected_total(&self) -> u64 {
        lock(&self.rejected).values().sum()
    }

    /// Records a stored batch of `sensor_id`.
    pub fn batch_stored(
        &self,
        sensor_id: &str,
        host: &str,
        stored: u64,
        duplicates: u64,
        newest_event_ns: i64,
        now_ns: i64,
    ) {
        self.events_received.fetch_add(stored + duplicates, Relaxed);
        self.events_stored.fetch_add(stored, Relaxed);
        self.duplicates.fetch_add(duplicates, Relaxed);
        self.batches_acked.fetch_add(1, Relaxed);
        let mut sensors = lock(&self.sensors);
        if sensors.len() >= MAX_SENSORS && !sensors.contains_key(sensor_id) {
            self.untracked_sensor_batches.fetch_add(1, Relaxed);
            return;
        }
        let s = sensors.entry(sensor_id.to_string()).or_default();
        if !host.is_empty() {
            s.host = host.to_string();
        }
        s.events += stored;
        s.duplicates += duplicates;
        s.batches += 1;
        s.newest_event_ns = s.newest_event_ns.max(newest_event_ns);
        s.last_batch_ns = now_ns;
        s.lag_seconds = (now_ns - newest_event_ns).max(0) as f64 / 1e9;
    }

    pub fn sensor(&self, sensor_id: &str) -> Option<SensorStats> {
        lock(&self.sensors).get(sensor_id).cloned()
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "collector_events_received_total",
            "Events received in accepted batches (stored or duplicate).",
            self.events_received.load(Relaxed),
        );
        counter(
            "collector_events_stored_total",
            "Events newly stored.",
            self.events_stored.load(Relaxed),
        );
        counter(
            "collector_events_duplicate_total",
            "Events already stored (replays), de-duplicated by (sensor id, boot id, seq).",
            self.duplicates.load(Relaxed),
        );
        counter(
            "collector_batches_acked_total",
            "Batches committed and acknowledged.",
            self.batches_acked.load(Relaxed),
        );
        counter(
            "collector_store_errors_total",
            "Batches not stored (SQLite commit or JetStream publish failed; not acknowledged, the sensor resends).",
            self.store_errors.load(Relaxed),
        );
        counter(
            "collector_connections_refused_total",
            "Connections closed at accept (over server.max_connections, or a local peer that is not root).",
            self.connections_refused.load(Relaxed),
        );
        counter(
            "collector_connections_no_preface_total",
            "Plaintext connections closed because no HTTP/2 preface arrived within server.tls_handshake_timeout_secs.",
            self.connections_no_preface.load(Relaxed),
        );
        counter(
            "collector_events_refused_host_total",
            "Events in batches refused because their host differs from the authenticated one.",
            self.events_refused_host.load(Relaxed),
        );
        counter(
            "collector_untracked_sensor_batches_total",
            "Stored batches of sensors beyond the per-sensor series limit.",
            self.untracked_sensor_batches.load(Relaxed),
        );
        counter(
            "collector_streams_total",
            "Sensor streams opened.",
            self.streams_total.load(Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP collector_consume_lag_messages Stream messages `collector consume` has not \
             acknowledged yet (fleet mode).\n# TYPE collector_consume_lag_messages gauge\n\
             collector_consume_lag_messages {}",
            self.consume_lag_messages.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP collector_streams_active Sensor streams open now.\n\
             # TYPE collector_streams_active gauge\ncollector_streams_active {}",
            self.streams_active.load(Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP collector_batches_rejected_total Batches or messages rejected, by reason.\n\
             # TYPE collector_batches_rejected_total counter"
        );
        let rejected = lock(&self.rejected).clone();
        if rejected.is_empty() {
            let _ = writeln!(o, "collector_batches_rejected_total{{reason=\"none\"}} 0");
        }
        for (reason, n) in rejected {
            let _ = writeln!(
                o,
                "collector_batches_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let mut sensors: Vec<(String, SensorStats)> = lock(&self.sensors)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sensors.sort_by(|a, b| a.0.cmp(&b.0));
        let per = [
            (
                "collector_sensor_events_total",
                "counter",
                "Events stored per sensor.",
            ),
            (
                "collector_sensor_duplicates_total",
                "counter",
                "Duplicate events per sensor.",
            ),
            (
                "collector_sensor_lag_seconds",
                "gauge",
                "Store time minus the newest event time of the sensor's last batch.",
            ),
            (
                "collector_sensor_last_batch_timestamp_seconds",
                "gauge",
                "When the sensor's last batch was stored (Unix time).",
            ),
        ];
        for (i, (name, kind, help)) in per.iter().enumerate() {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (id, s) in &sensors {
                let v = match i {
                    0 => s.events.to_string(),
                    1 => s.duplicates.to_string(),
                    2 => format!("{:.6}", s.lag_seconds),
                    _ => format!("{:.3}", s.last_batch_ns as f64 / 1e9),
                };
                let _ = writeln!(
                    o,
                    "{name}{{sensor_id=\"{}\",host=\"{}\"}} {v}",
                    label(id),
                    label(&s.host)
                );
            }
        }
        o
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Escapes a Prometheus label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_per_sensor_lag() {
        let m = Metrics::default();
        m.batch_stored("s1", "h\"1", 10, 2, 1_000_000_000, 1_500_000_000);
        m.reject("bad_seq");
        let text = m.render();
        assert!(
            text.contains("collector_events_received_total 12\n"),
            "{text}"
        );
        assert!(
            text.contains("collector_events_duplicate_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("collector_batches_rejected_total{reason=\"bad_seq\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "collector_sensor_lag_seconds{sensor_id=\"s1\",host=\"h\\\"1\"} 0.500000"
            ),
            "{text}"
        );
        assert_eq!(m.sensor("s1").unwrap().events, 10);
        assert_eq!(m.rejected_total(), 1);
    }

    #[test]
    fn the_per_sensor_map_is_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_SENSORS + 5 {
            m.batch_stored(&format!("s{i}"), "h", 1, 0, 0, 0);
        }
        assert_eq!(lock(&m.sensors).len(), MAX_SENSORS);
        assert_eq!(m.untracked_sensor_batches.load(Relaxed), 5);
        assert_eq!(m.events_stored.load(Relaxed), MAX_SENSORS as u64 + 5);
        // A known sensor keeps being counted.
        m.batch_stored("s0", "h", 1, 0, 0, 0);
        assert_eq!(m.sensor("s0").unwrap().events, 2);
    }
}
