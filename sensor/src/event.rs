//! The event (docs/ARCHITECTURE.md#event-model): ONE representation from normalization to
//! the output, the wire contract's `sensor_proto::v1::Event`. Every capture path builds that
//! message, every stage edits it in place, the gRPC sink ships it as is and the JSON and OCSF
//! writers read it (`sensor_proto::json`, `sensor_proto::ocsf`). The only thing the sensor
//! keeps beside the message is the kernel time of the event, for lag measurement, which is not
//! part of the record. Times are integer ns since the Unix epoch until a writer formats them.
//! Adding a kind: docs/ARCHITECTURE.md#event-model ("Adding an event kind").
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

pub use sensor_proto::v1::{
    Ancestor, Argv, Connect, Exit, File as FileActivity, Flow, Health, Kind, Login, Privilege,
    Process, Source,
};

/// The wire message plus the sensor-only kernel time. Derefs to the message, so stages read
/// and write `ev.process`, `ev.file`, ... directly; `ev.kind()` and `ev.source()` give the
/// enums. The message is boxed: an event moves through three channels between capture and
/// output, and each move copies 24 bytes instead of the 1.2 KB message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub msg: Box<sensor_proto::v1::Event>,
    /// CLOCK_MONOTONIC ns of the kernel event (for lag measurement); not on the output.
    pub ktime_ns: Option<u64>,
}

/// Emptied message boxes the JSON lines sink gave back ([`Event::recycle`]), taken by
/// [`Event::new`]. The message is 1.2 KB: too large for glibc's per-thread cache, so each
/// fresh box costs a search of the shared bins (and a consolidation of its fast bins);
/// reusing boxes avoids that on the exec path (docs/ARCHITECTURE.md#event-model).
// The boxes themselves are what is kept: `Event` holds a box.
#[allow(clippy::vec_box)]
static SPARE: Mutex<Vec<Box<sensor_proto::v1::Event>>> = Mutex::new(Vec::new());
/// Most boxes kept (about one drain of the ring buffer in an exec storm; 160 KB).
const SPARE_MAX: usize = 128;

impl Event {
    /// The one constructor: an event of `kind` from `source` with no payload yet; the
    /// caller fills the payload of its kind. `seq` is assigned by the output stage.
    pub fn new(kind: Kind, source: Source, time_unix_ns: i64, host: &str) -> Self {
        let spare = SPARE.lock().ok().and_then(|mut s| s.pop());
        // A spare is the default message but for the host's emptied buffer (`recycle` is the
        // only way in), as a fresh box is: set the header fields in place.
        let mut msg = spare.unwrap_or_default();
        debug_assert!(
            msg.host.is_empty()
                && *msg
                    == sensor_proto::v1::Event {
                        host: String::new(),
                        ..Default::default()
                    }
        );
        msg.host.push_str(host);
        msg.time_unix_ns = time_unix_ns;
        msg.source = source as i32;
        msg.kind = kind as i32;
        Self {
            msg,
            ktime_ns: None,
        }
    }

    /// Frees the event's contents and keeps its box, and the host's emptied buffer, for the
    /// next [`Event::new`].
    pub fn recycle(self) {
        let mut msg = self.msg;
        let mut host = std::mem::take(&mut msg.host);
        host.clear();
        *msg = sensor_proto::v1::Event::default();
        msg.host = host;
        if let Ok(mut s) = SPARE.lock() {
            if s.len() < SPARE_MAX {
                s.push(msg);
            }
        }
    }

    /// The event's JSON object, from the one writer (for tests and diagnostics; the output
    /// stages write bytes directly).
    pub fn to_json(&self) -> serde_json::Value {
        sensor_proto::json::event_to_json(&self.msg)
    }

    /// The wire message, for the sinks.
    pub fn into_msg(self) -> sensor_proto::v1::Event {
        *self.msg
    }
}

impl Deref for Event {
    type Target = sensor_proto::v1::Event;
    fn deref(&self) -> &Self::Target {
        &self.msg
    }
}

impl DerefMut for Event {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_box_carries_nothing_into_the_next_event() {
        for i in 0..2 * SPARE_MAX as i64 {
            let mut e = Event::new(Kind::ProcessExec, Source::Ebpf, i, "old-host");
            e.seq = 7;
            e.process = Some(Process {
                pid: 42,
                argv: Some(vec!["secret".to_string()].into()),
                ..Process::default()
            });
            e.ktime_ns = Some(1);
            e.recycle();
        }
        for i in 0..2 * SPARE_MAX as i64 {
            let e = Event::new(Kind::ProcessExit, Source::Audit, i, "h");
            let want = sensor_proto::v1::Event {
                time_unix_ns: i,
                host: "h".into(),
                source: Source::Audit as i32,
                kind: Kind::ProcessExit as i32,
                ..Default::default()
            };
            assert_eq!(*e.msg, want);
            assert_eq!(e.ktime_ns, None);
        }
        assert!(SPARE.lock().unwrap().len() <= SPARE_MAX);
    }
}
