//! Sinks: JSON lines (the event model, or OCSF 1.5.0) to stdout or a file, and gRPC to the
//! collector through a disk spool (`grpc/`).
pub mod grpc;
pub mod json;
pub mod ocsf;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::event::Event;
use crate::telemetry::counters::Counters;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Output(#[from] json::OutputError),
    #[error(transparent)]
    Ship(#[from] grpc::ShipError),
}

/// Where the pipeline task hands its events (docs/ARCHITECTURE.md#pipeline).
pub enum Output {
    /// JSON or OCSF lines, written by the pipeline task itself.
    Lines(json::LineSink),
    /// A sink running as its own task (the gRPC shipper), fed through a bounded channel.
    Task(mpsc::Sender<Event>),
}

impl Output {
    /// Hands over one event; `now` (CLOCK_MONOTONIC ns) is for lag measurement. Waits while
    /// a sink task's channel is full (backpressure); false once that task is gone.
    pub async fn send(&mut self, ev: Event, now: u64) -> bool {
        match self {
            Output::Lines(sink) => {
                sink.push(ev, now);
                true
            }
            Output::Task(tx) => tx.send(ev).await.is_ok(),
        }
    }

    /// After each batch of events.
    pub fn end_batch(&mut self) {
        if let Output::Lines(sink) = self {
            sink.end_batch();
        }
    }

    /// Whether lines wait for the flush timer.
    pub fn waiting(&self) -> bool {
        matches!(self, Output::Lines(sink) if sink.waiting())
    }

    /// The flush timer fired: write what waits.
    pub fn flush(&mut self) {
        if let Output::Lines(sink) = self {
            sink.write_out();
        }
    }
}

impl Drop for Output {
    /// The final flush (the sink task's channel closes with the sender).
    fn drop(&mut self) {
        self.flush();
    }
}

/// Opens the sink `output.target` names: the collector over gRPC ("grpc", a task of its own,
/// whose handle is returned; it drains its spool when `stop` turns true), else JSON lines.
pub fn open(
    cfg: &Config,
    capacity: usize,
    host: &str,
    counters: Arc<Counters>,
    ship_stats: Arc<grpc::ShipStats>,
    stop: watch::Receiver<bool>,
) -> Result<(Output, Option<tokio::task::JoinHandle<()>>), SinkError> {
    if cfg.output.target == "grpc" {
        // Fail fast on TLS files, spool directory and the plaintext policy.
        cfg.ship.check()?;
        let mut ship_cfg = cfg.ship.clone();
        ship_cfg.host = host.to_string();
        tracing::info!(address = %cfg.ship.address, "shipping to the collector");
        let (tx, rx) = mpsc::channel(capacity);
        let task = tokio::spawn(async move {
            if let Err(e) = grpc::run_shipper(rx, ship_cfg, counters, ship_stats, stop).await {
                tracing::error!(error = %e, "shipper failed");
            }
        });
        return Ok((Output::Task(tx), Some(task)));
    }
    let out = json::open(&cfg.output.target)?;
    let (format, _) = ocsf::split_target(&cfg.output.target);
    Ok((
        Output::Lines(json::LineSink::new(out, format, counters)),
        None,
    ))
}
