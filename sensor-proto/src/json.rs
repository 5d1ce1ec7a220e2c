//! The one JSON writer for events: an [`Event`] as the JSON object of the event model
//! (docs/ARCHITECTURE.md#event-model).
//! The sensor's `--output json` and the collector's `query --json` both write through
//! [`write_event`], so a JSON consumer cannot tell whether an event came through the
//! collector or straight from the sensor. Times are integers until here and become RFC 3339
//! text only in this writer.
//!
//! What is written is generated from `sensor.proto` (`gen/json_writer.rs`, by
//! `sensor-proto/generate/run`): every field of every message an event holds, by
//! construction, following the schema's JSON conventions and its `json:` annotations (null
//! for an unknown optional, omitted details, bools only when true, key order). This file
//! holds the object writer those functions use and the entry points.
use std::collections::BTreeMap;

use serde_json::Value;

use crate::json_value::{put_str, Put};
use crate::time::rfc3339_nanos;
// Every message type: the generated writers below name each one an event holds.
use crate::v1::*;

// The generated writers: one `<message>_fields` per message (and a `write_<message>` for
// those written as an object), over `Obj` below.
include!("gen/json_writer.rs");

/// Appends `ev` as one JSON object (no newline) to `out`.
pub fn write_event(ev: &Event, out: &mut Vec<u8>) {
    write_event_with(ev, &[], out);
}

/// [`write_event`] followed by extra top-level string fields (the collector adds
/// `sensor_id` and `boot_id`).
pub fn write_event_with(ev: &Event, extra: &[(&'static str, &str)], out: &mut Vec<u8>) {
    let mut o = Obj::open(out);
    event_fields(&mut o, ev);
    for (k, v) in extra {
        o.str(k, v);
    }
    o.close();
}

/// The event as a JSON line (object plus `\n`).
pub fn event_to_line(ev: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_event(ev, &mut out);
    out.push(b'\n');
    out
}

/// The event as a [`Value`] (for code that adds fields or compares), parsed from
/// [`write_event`]'s output so there is still only one writer.
pub fn event_to_json(ev: &Event) -> Value {
    let mut out = Vec::with_capacity(512);
    write_event(ev, &mut out);
    // The writer emits only strings, integers, finite-or-null floats, arrays and objects.
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}

/// A JSON object being written: keys in call order, values as serde_json writes them
/// (`crate::json_value`). The small methods are inlined into the generated writers, so each
/// key, a constant, is copied with its known length.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Writes `"k":` and hands back the buffer for the value. Keys are this file's own
    /// constants (plain ASCII names), so they are copied, not escaped.
    #[inline(always)]
    fn key(&mut self, k: &'static str) -> &mut Vec<u8> {
        debug_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    #[inline(always)]
    fn str(&mut self, k: &'static str, v: &str) {
        let out = self.key(k);
        put_str(out, v);
    }

    /// Any other plain value: numbers, bools, lists, maps.
    #[inline(always)]
    fn num<T: Put + ?Sized>(&mut self, k: &'static str, v: &T) {
        let out = self.key(k);
        v.put(out);
    }

    /// `null`: an optional the schema writes as unknown when absent.
    #[inline(always)]
    fn null(&mut self, k: &'static str) {
        self.key(k).extend_from_slice(b"null");
    }

    /// A list of objects, each written by `write`.
    fn list<T>(&mut self, k: &'static str, items: &[T], write: fn(&mut Vec<u8>, &T)) {
        let out = self.key(k);
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write(out, item);
        }
        out.push(b']');
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exec_event_shape() {
        let ev = Event {
            seq: 7,
            time_unix_ns: 1_000_000_001,
            host: "h".into(),
            source: Source::Ebpf as i32,
            kind: Kind::ProcessExec as i32,
            process: Some(Process {
                pid: 10,
                argv: Some(Argv {
                    args: vec!["a".into(), "b c".into()],
                    truncated: false,
                    omitted_bytes: 0,
                }),
                auid: None,
                session: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = event_to_json(&ev);
        assert_eq!(v["time"], "1970-01-01T00:00:01.000000001Z");
        assert_eq!(v["kind"], "process_exec");
        assert_eq!(v["source"], "ebpf");
        assert_eq!(v["process"]["argv"], json!(["a", "b c"]));
        assert_eq!(v["process"]["auid"], Value::Null);
        assert_eq!(v["process"]["session"], 3);
        assert_eq!(v["process"]["start_time"], "");
        assert!(v["process"].get("argv_truncated").is_none());
        assert!(v["process"].get("tid").is_none());
        assert!(v.get("exit").is_none());
    }

    #[test]
    fn other_kinds_shape() {
        let ev = Event {
            kind: Kind::File as i32,
            file: Some(File {
                path: "/etc/x".into(),
                ops: vec!["rename".into()],
                new_path: Some("/etc/y".into()),
            }),
            login: Some(Login {
                user: "root".into(),
                ..Default::default()
            }),
            flow: Some(Flow {
                bytes_in: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = event_to_json(&ev);
        assert_eq!(v["kind"], "file");
        assert_eq!(v["file"]["new_path"], "/etc/y");
        assert_eq!(v["login"]["user"], "root");
        assert_eq!(v["login"]["tty"], Value::Null);
        assert!(v["login"].get("pid").is_none());
        assert_eq!(v["flow"]["bytes_in"], 5);
        assert_eq!(v["flow"]["bytes_out"], Value::Null);
    }

    #[test]
    fn escapes_and_key_order() {
        let ev = Event {
            host: "a\"b\\c\n\u{1}é".into(),
            kind: 999,
            ..Default::default()
        };
        let line = event_to_line(&ev);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with("}\n"));
        assert!(text.starts_with("{\"seq\":0,\"time\":\"1970-01-01T00:00:00.000000000Z\""));
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["host"], "a\"b\\c\n\u{1}é");
        assert_eq!(v["kind"], "unspecified");
        let mut with = Vec::new();
        write_event_with(&ev, &[("sensor_id", "s")], &mut with);
        assert!(with.ends_with(b",\"sensor_id\":\"s\"}"));
    }
}
