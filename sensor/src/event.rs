//! The event (docs/ARCHITECTURE.md#event-model): ONE representation from normalization to
//! the output, the wire contract's `sensor_proto::v1::Event`. Every capture path builds that
//! message, every stage edits it in place, the gRPC sink ships it as is and the JSON and OCSF
//! writers read it (`sensor_proto::json`, `sensor_proto::ocsf`). The only thing the sensor
//! keeps beside the message is the kernel time of the event, for lag measurement, which is not
//! part of the record. Times are integer ns since the Unix epoch until a writer formats them.
//! Adding a kind: docs/ARCHITECTURE.md#event-model ("Adding an event kind").
use std::ops::{Deref, DerefMut};

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

impl Event {
    /// The one constructor: an event of `kind` from `source` with no payload yet; the
    /// caller fills the payload of its kind. `seq` is assigned by the output stage.
    pub fn new(kind: Kind, source: Source, time_unix_ns: i64, host: &str) -> Self {
        Self {
            msg: Box::new(sensor_proto::v1::Event {
                seq: 0,
                time_unix_ns,
                host: host.to_string(),
                source: source as i32,
                kind: kind as i32,
                ..Default::default()
            }),
            ktime_ns: None,
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
