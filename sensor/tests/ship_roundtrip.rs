//! Events -> shipper (library API) -> collector (library, in-process) -> query: every field
//! intact, each event exactly once, spool empty after the drain.
mod common;
mod ship_support;

use collector::render::stored_json;
use ship_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_fields_intact() {
    let dir = TempDir::new("rt");
    let col = InProcCollector::start(dir.path(), "127.0.0.1:0", None);
    let spool = dir.path().join("spool");
    let shipper = Shipper::start(ship_cfg(&spool, &col.addr));
    let marker = format!("rt{}", std::process::id());
    const N: u64 = 5_000;
    let mut sent = Vec::new();
    for i in 0..N {
        let ev = synth(&marker, i);
        sent.push(ev.clone());
        shipper.send(ev).await;
    }
    let stats = shipper.stats.clone();
    let counters = shipper.counters.clone();
    shipper.stop().await.unwrap();

    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        stats.events_acked.load(Relaxed),
        N,
        "all acknowledged before exit"
    );
    assert_eq!(stats.spool_pending_events.load(Relaxed), 0);
    assert_eq!(stats.duplicates.load(Relaxed), 0);
    assert_eq!(stats.evicted_total(), 0);
    assert_eq!(counters.written.load(Relaxed), N);
    let segs = std::fs::read_dir(spool.join("segments")).unwrap().count();
    assert_eq!(segs, 0, "acknowledged segments are deleted");

    assert_exactly_once(&col.db, &marker, N);
    // Field for field: the stored event's JSON is the sensor's own JSON of that event, with
    // the seq the shipper assigned (1.. in order on a fresh spool) and the origin added.
    let mut stored = stored_with(&col.db, &marker);
    stored.sort_by_key(index_of);
    let sensor_id = std::fs::read_to_string(spool.join("sensor_id")).unwrap();
    for (i, s) in stored.iter().enumerate() {
        let mut expected = sent[i].to_json();
        expected["seq"] = serde_json::Value::from(i as u64 + 1);
        // Plaintext loopback TCP: the collector stores it under the unauthenticated identity.
        expected["sensor_id"] =
            serde_json::Value::from(format!("{}@unauthenticated:", sensor_id.trim()));
        expected["boot_id"] = serde_json::Value::from(sensor::sinks::grpc::ids::boot_id());
        assert_eq!(stored_json(s), expected, "event {i}");
    }
    col.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_continues_across_shipper_restarts() {
    let dir = TempDir::new("seq");
    let col = InProcCollector::start(dir.path(), "127.0.0.1:0", None);
    let spool = dir.path().join("spool");
    let marker = format!("sq{}", std::process::id());
    for round in 0..2u64 {
        let s = Shipper::start(ship_cfg(&spool, &col.addr));
        for i in 0..100 {
            s.send(synth(&marker, round * 100 + i)).await;
        }
        s.stop().await.unwrap();
    }
    // Nothing was de-duplicated away: a restarted sensor does not reuse seq numbers.
    assert_exactly_once(&col.db, &marker, 200);
    let mut v = stored_with(&col.db, &marker);
    v.sort_by_key(index_of);
    assert!(v[100].event.seq > v[99].event.seq);
    assert!(v.iter().all(|s| s.sensor_id == v[0].sensor_id));
    col.stop();
}
