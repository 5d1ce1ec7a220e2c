//! Event and drop counters shared by the pipeline stages. Every loss has a named counter
//! that the health event reports.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::{Kind, Source};

/// Every event kind, in the order of [`Counters::by_kind`] (the proto enum's list).
const KINDS: [Kind; Kind::ALL.len()] = Kind::ALL;

fn kind_index(kind: Kind) -> usize {
    kind.index()
}

#[derive(Debug, Default)]
pub struct Counters {
    /// Events produced, by kind (indexed like [`KINDS`]).
    pub by_kind: [AtomicU64; KINDS.len()],
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
    /// Events entering the pipeline, by source and kind (indexed like `Source::ALL`, [`KINDS`]).
    pub by_source_kind: [[AtomicU64; KINDS.len()]; Source::ALL.len()],
}

impl Counters {
    pub fn count_event(&self, kind: Kind) {
        self.by_kind[kind_index(kind)].fetch_add(1, Relaxed);
    }

    /// Counts an event entering the pipeline (the enrichment stage's input).
    pub fn count_source(&self, source: Source, kind: Kind) {
        let s = source.index();
        self.by_source_kind[s][kind_index(kind)].fetch_add(1, Relaxed);
    }

    /// Non-zero counts by source, then kind.
    pub fn by_source(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for (src, row) in Source::ALL.iter().zip(self.by_source_kind.iter()) {
            let kinds: BTreeMap<String, u64> = KINDS
                .iter()
                .zip(row.iter())
                .map(|(k, n)| (k.as_str().to_string(), n.load(Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect();
            if !kinds.is_empty() {
                out.insert(src.as_str().to_string(), kinds);
            }
        }
        out
    }

    pub fn events_of(&self, kind: Kind) -> u64 {
        self.by_kind[kind_index(kind)].load(Relaxed)
    }

    pub fn observe_lag_us(&self, lag_us: u64) {
        self.max_lag_us.fetch_max(lag_us, Relaxed);
    }

    pub fn take_max_lag_us(&self) -> u64 {
        self.max_lag_us.swap(0, Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_kind() {
        let c = Counters::default();
        for k in KINDS {
            c.count_event(k);
        }
        c.count_event(Kind::File);
        c.count_source(Source::Audit, Kind::ProcessExit);
        c.count_source(Source::Audit, Kind::ProcessExit);
        c.count_source(Source::Fanotify, Kind::File);
        let by = c.by_source();
        assert_eq!(by["audit"]["process_exit"], 2);
        assert_eq!(by["fanotify"]["file"], 1);
        assert_eq!(by.len(), 2);
        let e = crate::telemetry::fields::fields_of(&c).events;
        assert_eq!(e["file"], 2);
        assert_eq!(e["process_exec"], 1);
        assert_eq!(e["sensor_health"], 1);
    }
}
