//! Event and drop counters shared by the pipeline stages. Every loss has a named counter
//! that the health event reports.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::Kind;

#[derive(Debug, Default)]
pub struct Counters {
    pub process_exec: AtomicU64,
    pub process_exit: AtomicU64,
    pub net_connect: AtomicU64,
    pub sensor_health: AtomicU64,
    /// Records the decoder rejected (malformed); they are lost and counted.
    pub decode_errors: AtomicU64,
    /// A second exit record for a process already reported (threads racing in do_exit).
    pub duplicate_exits: AtomicU64,
    /// Events written by the output stage.
    pub written: AtomicU64,
    /// Events the output stage failed to write.
    pub write_errors: AtomicU64,
    /// Largest kernel-to-output delay seen since the last health event, in microseconds.
    pub max_lag_us: AtomicU64,
}

impl Counters {
    pub fn count_event(&self, kind: Kind) {
        let c = match kind {
            Kind::ProcessExec => &self.process_exec,
            Kind::ProcessExit => &self.process_exit,
            Kind::NetConnect => &self.net_connect,
            Kind::SensorHealth => &self.sensor_health,
        };
        c.fetch_add(1, Relaxed);
    }

    pub fn events(&self) -> BTreeMap<String, u64> {
        [
            ("process_exec", &self.process_exec),
            ("process_exit", &self.process_exit),
            ("net_connect", &self.net_connect),
            ("sensor_health", &self.sensor_health),
            ("duplicate_exits", &self.duplicate_exits),
            ("written", &self.written),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.load(Relaxed)))
        .collect()
    }

    /// Userspace losses.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        [
            ("decode_errors", &self.decode_errors),
            ("write_errors", &self.write_errors),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.load(Relaxed)))
        .collect()
    }

    pub fn observe_lag_us(&self, lag_us: u64) {
        self.max_lag_us.fetch_max(lag_us, Relaxed);
    }

    pub fn take_max_lag_us(&self) -> u64 {
        self.max_lag_us.swap(0, Relaxed)
    }
}
