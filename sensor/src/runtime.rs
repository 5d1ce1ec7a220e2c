//! `sensor run`: choose the mode, start capture, health and output, stop cleanly on
//! SIGINT/SIGTERM after flushing everything already read.
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::{
    config::Config,
    counters::Counters,
    health::HealthReporter,
    hostname::kernel_hostname,
    output::json,
    probe::{self, Mode, RequestedMode},
    sources::ebpf::{self, reader::ReaderCtx},
    timefmt::Clocks,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no usable capture mode: {0}")]
    NoMode(String),
    #[error("mode {0} is not implemented in this build")]
    NotImplemented(Mode),
    #[error("eBPF capture failed: {0}")]
    Ebpf(#[from] ebpf::EbpfError),
    #[error(transparent)]
    Output(#[from] json::OutputError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub struct RunOptions {
    pub config: Config,
    pub requested: RequestedMode,
}

/// Whether this build can capture through audit (the audit source lands with its own issue).
pub const AUDIT_IMPLEMENTED: bool = false;

pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    let cfg = opts.config;
    let caps = probe::probe();
    let decision = probe::choose_mode(
        &caps,
        ebpf::check_offsets(),
        AUDIT_IMPLEMENTED,
        opts.requested,
    );
    for rung in &decision.rungs {
        tracing::info!(mode = %rung.mode, usable = rung.usable, reason = %rung.reason, "probe");
    }
    let mode = decision
        .mode
        .ok_or_else(|| RunError::NoMode(decision.reason.clone()))?;
    if mode != Mode::Ebpf {
        return Err(RunError::NotImplemented(mode));
    }
    let host = if cfg.sensor.host.is_empty() {
        kernel_hostname()
    } else {
        cfg.sensor.host.clone()
    };
    let counters = Arc::new(Counters::default());
    let out = json::open(&cfg.output.target)?;
    let (tx, rx) = mpsc::channel(cfg.sensor.channel_capacity);
    let sink = tokio::spawn(json::run_sink(rx, out, counters.clone()));

    let capture = ebpf::load(cfg.ebpf.ring_buffer_bytes)?;
    release_startup_memory();
    tracing::info!(reason = %decision.reason, "eBPF programs attached");
    let ebpf::EbpfCapture {
        ebpf: loaded,
        ring,
        drops,
    } = capture;
    let drops = Arc::new(drops);
    let drops_for_health = drops.clone();
    let reporter = HealthReporter {
        mode: mode.to_string(),
        reason: decision.reason.clone(),
        host: host.clone(),
        started: Instant::now(),
        counters: counters.clone(),
        kernel_drops: Some(Box::new(move || drops_for_health.snapshot())),
    };
    let _ = tx.send(reporter.event()).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let reader = tokio::spawn(ebpf::run_reader(
        ring,
        ReaderCtx {
            tx: tx.clone(),
            counters: counters.clone(),
            shutdown: stop_rx.clone(),
            host,
            clocks: Clocks::now(),
        },
    ));

    let interval = Duration::from_secs(cfg.health.interval_secs);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = ticker.tick() => { let _ = tx.send(reporter.event()).await; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
        }
    }
    let _ = stop_tx.send(true);
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "ring buffer reader failed"),
        Err(e) => tracing::error!(error = %e, "ring buffer reader panicked"),
    }
    // Everything read is queued; report the final counts, then let the sink drain and flush.
    let _ = tx.send(reporter.event()).await;
    drop(tx);
    let _ = sink.await;
    drop(loaded);
    Ok(())
}

/// Loading parsed ~5 MB of kernel BTF; hand the freed heap back to the OS so it does not
/// count against the sensor's resident memory for the rest of its life.
fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
