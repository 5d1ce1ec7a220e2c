//! The one shape every capture source has: start from the config, stop after draining, and
//! stats that stay readable after the stop (see docs/ARCHITECTURE.md, "Sources").
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::SourceCtx;
use crate::config::Config;
use crate::enrich::ProcessFeed;
use crate::event::Event;
use crate::filter::FilterStats;
use crate::pipeline::shed::ShedStats;
use crate::telemetry::{counters::Counters, fields::Telemetry};

/// What a stopping source is waiting for.
pub type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source that failed to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no usable capture mode: {0}")]
    NoMode(String),
    #[error("eBPF capture failed: {0}")]
    Ebpf(#[from] super::ebpf::EbpfError),
    #[error("audit capture failed: {0}")]
    Audit(#[from] super::audit::source::AuditSourceError),
    #[error(transparent)]
    Files(#[from] super::files::source::FilesError),
    #[error(transparent)]
    Logins(#[from] super::logins::source::LoginsError),
    #[error(transparent)]
    Conntrack(#[from] super::conntrack::source::ConntrackError),
}

impl StartError {
    /// What the health reason says about a side source that did not start (`None`: only
    /// logged).
    pub fn reason(&self) -> Option<String> {
        match self {
            StartError::Files(e) => Some(format!("files: unavailable ({e})")),
            _ => None,
        }
    }
}

/// Everything a source may need at start: where its events go, the shared counters, the host
/// name, and the pipeline parts a process capture feeds (fork notices, the kernel's noise
/// counts, the shedding level).
pub struct SourceEnv {
    pub tx: mpsc::Sender<Event>,
    pub counters: Arc<Counters>,
    pub host: String,
    /// Fork notices and delivery watermarks for the process cache.
    pub feed: ProcessFeed,
    pub filter_stats: Arc<FilterStats>,
    pub shed_stats: Arc<ShedStats>,
    /// The kernel offsets the eBPF programs need, or why they could not be resolved.
    pub offsets: Result<sensor_common::KernelOffsets, String>,
}

impl SourceEnv {
    /// The part every source gets.
    pub fn ctx(&self) -> SourceCtx {
        SourceCtx {
            tx: self.tx.clone(),
            counters: self.counters.clone(),
            host: self.host.clone(),
        }
    }
}

/// A capture source: eBPF, audit, files, logins, conntrack.
pub trait Source: Send + 'static {
    /// Whether the config asks for this source (the process capture is chosen by mode).
    fn enabled(cfg: &Config) -> bool
    where
        Self: Sized;

    /// Starts capturing into `env.tx`.
    fn start(cfg: &Config, env: &SourceEnv) -> Result<Self, StartError>
    where
        Self: Sized;

    /// What the source chose at start, for the health reason (`None`: nothing to say).
    fn reason(&self) -> Option<String> {
        None
    }

    /// Its counters; health keeps reading them after `stop`, so the final health event
    /// includes what was counted while draining.
    fn stats(&self) -> Arc<dyn Telemetry>;

    /// Stops after draining what the kernel already handed over.
    fn stop(self: Box<Self>) -> StopFuture;
}

/// Runs a blocking stop off the async workers.
pub fn stop_blocking(f: impl FnOnce() + Send + 'static) -> StopFuture {
    Box::pin(async move {
        let _ = tokio::task::spawn_blocking(f).await;
    })
}
