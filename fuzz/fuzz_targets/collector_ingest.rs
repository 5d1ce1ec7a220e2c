//! Arbitrary bytes as what a sensor sends the collector: the gRPC message is decoded,
//! validated as the stream's batch, turned into the stored row's columns and rendered as the
//! query table. None of it may panic, and the table may hold no control character but the
//! line ends it writes itself.
//!
//! Input: the first byte picks how the rest is decoded (`SensorMessage` as on the wire, first
//! through the collector's bounded wire scan as the server does, or a bare `Batch` so
//! mutations reach the events sooner). A message the scan passes never decodes to more events
//! than the scan counted.
#![no_main]

use collector::render;
use collector::store::{query::Stored, row::columns};
use collector::validate::{validate_batch, Limits};
use collector::wire_scan::{scan, ScanLimits};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use sensor_proto::v1::{sensor_message, Batch, SensorMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let batch = if mode & 1 == 0 {
        let limits = ScanLimits {
            max_events: 20_000,
            max_elements: 320_000,
        };
        let Ok(counts) = scan(rest, limits) else {
            return;
        };
        let decoded = SensorMessage::decode(rest);
        if let Ok(SensorMessage {
            msg: Some(sensor_message::Msg::Batch(b)),
        }) = &decoded
        {
            assert!(b.events.len() <= counts.events, "scan undercounted events");
        }
        match decoded {
            Ok(SensorMessage {
                msg: Some(sensor_message::Msg::Batch(b)),
            }) => b,
            _ => return,
        }
    } else {
        match Batch::decode(rest) {
            Ok(b) => b,
            Err(_) => return,
        }
    };
    let limits = Limits {
        max_batch_events: 20_000,
    };
    let hello = batch.sensor_id.clone();
    if validate_batch(&batch, Some(&hello), limits).is_err() {
        return;
    }
    for ev in &batch.events {
        let c = columns(ev);
        assert_eq!(c.host, ev.host);
    }
    let rows: Vec<Stored> = batch
        .events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Stored {
            id: i as i64,
            sensor_id: hello.clone(),
            boot_id: batch.boot_id.clone(),
            received_ns: 0,
            event,
        })
        .collect();
    let table = render::table(&rows);
    assert!(
        !table.chars().any(|c| c != '\n' && c.is_control()),
        "control character in table output"
    );
    for r in &rows {
        let _ = render::stored_json(r);
    }
});
