//! The collector goes away for 10 s while events flow, then comes back on the same address:
//! every event arrives exactly once (de-duplicated replays), nothing is lost meanwhile.
mod common;
mod ship_support;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use ship_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_outage_of_10s() {
    let dir = TempDir::new("outage");
    let col = InProcCollector::start(dir.path(), "127.0.0.1:0", None);
    let port = col.port();
    let spool = dir.path().join("spool");
    let shipper = Shipper::start(ship_cfg(&spool, &col.addr));
    let marker = format!("out{}", std::process::id());
    let stats = shipper.stats.clone();

    // ~500 events/s for ~18 s.
    let tx = shipper.tx.clone().unwrap();
    let m = marker.clone();
    let feeder = tokio::spawn(async move {
        let start = Instant::now();
        let mut i = 0u64;
        while start.elapsed() < Duration::from_secs(18) {
            for _ in 0..25 {
                tx.send(synth(&m, i)).await.unwrap();
                i += 1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        i
    });

    tokio::time::sleep(Duration::from_secs(3)).await;
    let acked_before = stats.events_acked.load(Relaxed);
    assert!(acked_before > 0, "shipping before the outage");
    tokio::task::spawn_blocking(move || col.stop())
        .await
        .unwrap();
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // While it was down: nothing acknowledged, everything spooled, retries counted.
    let pending = stats.spool_pending_events.load(Relaxed);
    assert!(pending > 3_000, "events pile up in the spool: {pending}");
    assert!(stats.connect_failures.load(Relaxed) > 0);
    assert!(!stats.connected.load(Relaxed));
    let db_dir = dir.path().to_path_buf();
    let col = tokio::task::spawn_blocking(move || {
        InProcCollector::start(&db_dir, &format!("127.0.0.1:{port}"), None)
    })
    .await
    .unwrap();
    eprintln!("collector down for {:?}", down_at.elapsed());

    let n = feeder.await.unwrap();
    let s = tokio::time::timeout(Duration::from_secs(60), shipper.stop())
        .await
        .unwrap();
    s.unwrap();
    assert_eq!(stats.events_acked.load(Relaxed), n);
    assert_eq!(stats.spool_pending_events.load(Relaxed), 0);
    assert_eq!(stats.evicted_total(), 0);
    let db = col.db.clone();
    tokio::task::spawn_blocking(move || {
        assert_exactly_once(&db, &marker, n);
        col.stop();
    })
    .await
    .unwrap();
}
