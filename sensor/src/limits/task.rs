//! The governor's loop: one CPU and memory reading per window, the shedding level published
//! to the pipeline.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{governor::CpuGovernor, LimitsConfig};
use crate::pipeline::shed::ShedStats;
use crate::telemetry::selfstat;

pub async fn run_governor(
    cfg: LimitsConfig,
    ceiling_bytes: u64,
    shed: Arc<ShedStats>,
    mut stop: watch::Receiver<bool>,
) {
    if cfg.cpu_percent <= 0.0 && ceiling_bytes == 0 {
        return;
    }
    let period = Duration::from_secs(cfg.cpu_window_secs.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gov = CpuGovernor::new(cfg.cpu_percent);
    let mut prev = (Instant::now(), selfstat::read(None).cpu_seconds);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let usage = selfstat::read(None);
        let now = Instant::now();
        let pct = super::governor::cpu_percent(
            prev.1,
            usage.cpu_seconds,
            now.duration_since(prev.0).as_secs_f64(),
        );
        prev = (now, usage.cpu_seconds);
        let memory_over = ceiling_bytes > 0 && usage.rss_bytes > ceiling_bytes;
        let level = gov.observe(pct, memory_over);
        if level != shed.level() {
            tracing::debug!(cpu_percent = pct, rss = usage.rss_bytes, level, "governor");
        }
        shed.set_level(level);
    }
}
