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

/// Starts the sink `output.target` names: the collector over gRPC ("grpc"), else JSON lines.
/// The gRPC sink drains its spool when `stop` turns true.
pub fn spawn(
    cfg: &Config,
    rx: mpsc::Receiver<Event>,
    host: &str,
    counters: Arc<Counters>,
    ship_stats: Arc<grpc::ShipStats>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SinkError> {
    if cfg.output.target == "grpc" {
        // Fail fast on TLS files, spool directory and the plaintext policy.
        cfg.ship.check()?;
        let mut ship_cfg = cfg.ship.clone();
        ship_cfg.host = host.to_string();
        tracing::info!(address = %cfg.ship.address, "shipping to the collector");
        return Ok(tokio::spawn(async move {
            if let Err(e) = grpc::run_shipper(rx, ship_cfg, counters, ship_stats, stop).await {
                tracing::error!(error = %e, "shipper failed");
            }
        }));
    }
    let out = json::open(&cfg.output.target)?;
    let (format, _) = ocsf::split_target(&cfg.output.target);
    Ok(tokio::spawn(json::run_sink(rx, out, format, counters)))
}
