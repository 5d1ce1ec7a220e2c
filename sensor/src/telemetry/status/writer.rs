//! The running sensor's side: gathers the figures and writes the status file periodically.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{
    file,
    snapshot::{degraded_reasons, grown, Collector, Output, Status},
    StatusConfig,
};
use crate::telemetry::{
    fields::{HealthFields, Telemetry},
    health::HealthReporter,
    selfstat,
};
use crate::{pipeline::shed::ShedStats, sinks::grpc::ShipStats};

/// Where the status figures come from.
pub struct StatusInputs {
    pub reporter: Arc<HealthReporter>,
    pub shed: Arc<ShedStats>,
    /// The collector address and the shipper's figures when shipping.
    pub ship: Option<(String, Arc<ShipStats>)>,
    pub output_target: String,
    pub cpu_budget_percent: f64,
    pub memory_ceiling_bytes: u64,
    pub nice: i32,
}

pub struct StatusWriter {
    cfg: StatusConfig,
    inputs: StatusInputs,
    path: PathBuf,
    pid: u32,
    pid_start_ticks: u64,
    started_unix: f64,
    prev_drops: BTreeMap<String, u64>,
    prev_cpu: (Instant, f64),
    disconnected_since: Option<Instant>,
    /// The status directory did not exist at start: remove it again at exit.
    created_dir: bool,
}

fn unix_now() -> f64 {
    crate::timefmt::unix_now_ns() as f64 / 1e9
}

impl StatusWriter {
    pub fn new(cfg: StatusConfig, inputs: StatusInputs) -> Self {
        let pid = std::process::id();
        let path = PathBuf::from(&cfg.path);
        let created_dir = path.parent().is_some_and(|d| !d.exists());
        Self {
            created_dir,
            path,
            cfg,
            pid,
            pid_start_ticks: file::live_start_ticks(pid).unwrap_or(0),
            started_unix: unix_now(),
            // Losses counted before the first write (at start-up) are "recent" in the first.
            prev_drops: BTreeMap::new(),
            prev_cpu: (Instant::now(), selfstat::read(None).cpu_seconds),
            disconnected_since: None,
            inputs,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The figures now; advances the "recent" baselines.
    pub fn snapshot(&mut self) -> Status {
        let usage = selfstat::read(None);
        let now = Instant::now();
        let wall = now.duration_since(self.prev_cpu.0).as_secs_f64();
        let cpu_percent =
            crate::limits::governor::cpu_percent(self.prev_cpu.1, usage.cpu_seconds, wall);
        self.prev_cpu = (now, usage.cpu_seconds);
        let r = &self.inputs.reporter;
        let mut fields = r.fields();
        self.inputs.shed.report(&mut fields);
        let HealthFields {
            drops,
            events: counters,
        } = fields;
        let drops_recent = grown(&self.prev_drops, &drops);
        self.prev_drops = drops.clone();
        let collector = self.inputs.ship.as_ref().map(|(address, st)| {
            let connected = st.connected.load(Relaxed);
            if connected {
                self.disconnected_since = None;
            } else if self.disconnected_since.is_none() {
                self.disconnected_since = Some(now);
            }
            let oldest = st.spool_oldest_unix_ms.load(Relaxed);
            Collector {
                address: address.clone(),
                connected,
                disconnected_for_s: self
                    .disconnected_since
                    .map_or(0.0, |t| now.duration_since(t).as_secs_f64()),
                last_error: st.last_error(),
                connects: st.connects.load(Relaxed),
                connect_failures: st.connect_failures.load(Relaxed),
                spool_bytes: st.spool_bytes.load(Relaxed),
                spool_pending_events: st.spool_pending_events.load(Relaxed),
                spool_oldest_age_s: (oldest > 0)
                    .then(|| (unix_now() - oldest as f64 / 1000.0).max(0.0)),
                events_acked: st.events_acked.load(Relaxed),
                acks_unknown: st.acks_unknown.load(Relaxed),
                spool_unwritten_events: st.spool_unwritten_events.load(Relaxed),
                spool_error: st.spool_error(),
            }
        });
        let mut s = Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: self.pid,
            pid_start_ticks: self.pid_start_ticks,
            started_unix: self.started_unix,
            updated_unix: unix_now(),
            interval_secs: self.cfg.interval_secs,
            mode: r.mode.clone(),
            reason: r.reason(),
            uptime_s: r.started.elapsed().as_secs_f64(),
            events_by_source: r.counters.by_source(),
            counters,
            drops,
            drops_recent,
            shed_level: self.inputs.shed.level(),
            output: Output {
                target: self.inputs.output_target.clone(),
                collector,
            },
            cpu_seconds: usage.cpu_seconds,
            cpu_percent,
            cpu_budget_percent: self.inputs.cpu_budget_percent,
            rss_bytes: usage.rss_bytes,
            memory_ceiling_bytes: self.inputs.memory_ceiling_bytes,
            nice: self.inputs.nice,
            degraded: Vec::new(),
        };
        s.degraded = degraded_reasons(&s, self.cfg.disconnected_degraded_secs);
        s
    }

    pub fn write(&mut self) {
        let s = self.snapshot();
        if let Err(e) = file::write_atomic(&self.path, &s) {
            tracing::warn!(error = %e, "status file not written");
        }
        if let Some(prom) = self.prometheus_path() {
            let text = super::prometheus::render(&s);
            if let Err(e) = file::write_bytes_atomic(&prom, text.as_bytes()) {
                tracing::warn!(error = %e, "prometheus textfile not written");
            }
        }
    }

    fn prometheus_path(&self) -> Option<PathBuf> {
        let p = &self.cfg.prometheus_textfile;
        (!p.is_empty()).then(|| PathBuf::from(p))
    }
}

/// Writes the status now and every `interval_secs` until `stop`, then removes the file.
pub async fn run(mut writer: StatusWriter, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(writer.cfg.interval_secs.max(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => writer.write(),
            _ = stop.changed() => break,
        }
    }
    file::remove(writer.path());
    if let Some(prom) = writer.prometheus_path() {
        // Stale figures would look like a live sensor: the file goes with the process.
        file::remove(&prom);
    }
    if writer.created_dir {
        if let Some(dir) = writer.path().parent() {
            // Only when empty: never remove anything but what this run created.
            let _ = std::fs::remove_dir(dir);
        }
    }
}
