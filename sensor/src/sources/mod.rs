//! Capture sources. Each produces normalized events into a bounded channel.
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::Event;
use crate::telemetry::counters::Counters;

pub mod argv;
pub mod audit;
pub mod build;
pub mod conntrack;
pub mod ebpf;
pub mod files;
pub mod ia32_entry;
pub mod kernel_values;
pub mod logins;
pub mod netlink;
pub mod nlmsg;
pub mod source;

pub use source::{Source, SourceEnv, StartError};

/// What every source is given: where its events go, the shared per-kind counters and the
/// host name its events carry.
pub struct SourceCtx {
    pub tx: mpsc::Sender<Event>,
    pub counters: Arc<Counters>,
    pub host: String,
}
