//! Event counts per `sensor.v1.Kind`, and the health names of the evicted counters.
use sensor_proto::v1 as pb;

/// One counter per `sensor.v1.Kind` value (the index is the enum value).
pub const KIND_SLOTS: usize = 11;

pub const EVICTED_NAMES: [&str; KIND_SLOTS] = [
    "spool_evicted_unspecified",
    "spool_evicted_process_exec",
    "spool_evicted_process_exit",
    "spool_evicted_net_connect",
    "spool_evicted_file",
    "spool_evicted_login",
    "spool_evicted_logout",
    "spool_evicted_login_failed",
    "spool_evicted_privilege_change",
    "spool_evicted_flow",
    "spool_evicted_sensor_health",
];

pub fn slot_of(kind: pb::Kind) -> usize {
    (kind as usize).min(KIND_SLOTS - 1)
}

pub(super) fn slot_of_raw(kind: i32) -> usize {
    pb::Kind::try_from(kind).map(slot_of).unwrap_or(0)
}

/// Events per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts(pub [u64; KIND_SLOTS]);

impl KindCounts {
    pub fn of(events: &[pb::Event]) -> Self {
        let mut c = Self::default();
        for e in events {
            c.0[slot_of_raw(e.kind)] += 1;
        }
        c
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    pub fn get(&self, k: pb::Kind) -> u64 {
        self.0[slot_of(k)]
    }
    pub fn add(&mut self, o: &KindCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
    }
}
