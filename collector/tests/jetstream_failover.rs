//! Fleet mode under failures: a 3-node JetStream cluster (Debian's nats-server on
//! 127.0.0.1) with a 3-replica stream, two stateless collectors, and the real sensor
//! shipper streaming to the first. Midway the first collector is killed (-9) and the
//! sensor moves to the second; then the node leading the stream is killed and brought
//! back. Every event must then be in the stream exactly once (counted from the stream
//! itself, so JetStream's de-duplication is what is proven), and `collector consume` must
//! store each once, resume where it stopped, and report no lag.
mod common;

use std::time::Duration;

use common::fleet::{self, Shipper};
use common::nats::skip_without_server;
use common::Collector;

const TOTAL: u64 = 12_000;

#[test]
fn collector_and_node_failures_lose_and_duplicate_nothing() {
    if skip_without_server("collector_and_node_failures_lose_and_duplicate_nothing") {
        return;
    }
    let fleet::TestCluster {
        dir,
        mut cluster,
        urls,
        rt,
    } = fleet::TestCluster::start("js-failover", 3, true);

    let cfg_a = fleet::write_config(dir.path(), "a", &urls);
    let cfg_b = fleet::write_config(dir.path(), "b", &urls);
    let dir_a = dir.path().join("col-a");
    let dir_b = dir.path().join("col-b");
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let mut a = Collector::start(&dir_a, &["--config", cfg_a.to_str().unwrap()]);
    let b = Collector::start(&dir_b, &["--config", cfg_b.to_str().unwrap()]);

    let spool = dir.path().join("spool");
    rt.block_on(async {
        let mut s = Shipper::start(&spool, &a.grpc, std::slice::from_ref(&b.grpc));
        // Phase 1: to collector A, paced so batches are in flight when it dies.
        while s.sent() < TOTAL / 3 {
            s.send(200).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Kill A once it has acknowledged some of it (the rest is in flight or spooled).
        while s.acked() < TOTAL / 6 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.kill9();
        // Phase 2: the sensor moves to B on its own.
        while s.sent() < 2 * TOTAL / 3 {
            s.send(200).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.wait_all_acked(Duration::from_secs(120), || b.log()).await;
        assert!(
            s.stats.connects.load(std::sync::atomic::Ordering::Relaxed) >= 2,
            "the sensor never reconnected"
        );
        assert!(
            b.log().contains("sensor stream opened"),
            "collector B never served the sensor: {}",
            b.log()
        );

        // Phase 3: kill the node leading the stream, keep sending, bring it back.
        let leader = fleet::stream_leader(&urls).await.expect("stream leader");
        let k = cluster.index_of(&leader).expect("leader is one of ours");
        cluster.nodes[k].stop(libc::SIGKILL);
        while s.sent() < TOTAL {
            s.send(200).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.nodes[k].start();
        s.wait_all_acked(Duration::from_secs(180), || {
            format!("{}\n{}", b.log(), cluster.logs())
        })
        .await;
        println!(
            "sensor: {} connects, {} events acknowledged as JetStream duplicates (resends)",
            s.stats.connects.load(std::sync::atomic::Ordering::Relaxed),
            s.stats
                .duplicates
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        s.stop().await;

        // The stream itself holds every event exactly once.
        let got = fleet::read_stream(&urls).await;
        let missing: Vec<u64> = (0..TOTAL)
            .filter(|i| !got.markers.contains_key(i))
            .collect();
        let doubled: Vec<(&u64, &u32)> = got.markers.iter().filter(|(_, n)| **n != 1).collect();
        assert!(missing.is_empty(), "missing from the stream: {missing:?}");
        assert!(
            doubled.is_empty(),
            "more than once in the stream: {doubled:?}"
        );
        assert_eq!(got.events, TOTAL, "events in the stream");
        assert!(got.hellos >= 1, "the sensor's Hello was published");
    });

    // The consumer stores each event once, resumes, and reports no lag.
    let db = dir.path().join("consumed.db");
    let r = fleet::consume(&cfg_b, &db, &["--until-caught-up"]);
    assert_eq!(r["events"].as_u64(), Some(TOTAL), "{r}");
    assert_eq!(r["events_stored"].as_u64(), Some(TOTAL), "{r}");
    assert_eq!(r["duplicates"].as_u64(), Some(0), "{r}");
    assert_eq!(r["lag_messages"].as_u64(), Some(0), "{r}");
    let rows = common::query(&db, &["--text", "fleet-mark-"]);
    assert_eq!(rows.len() as u64, TOTAL);
    let again = fleet::consume(&cfg_b, &db, &["--until-caught-up"]);
    assert_eq!(
        again["messages"].as_u64(),
        Some(0),
        "resumed, nothing re-read: {again}"
    );
    let status = fleet::consume(&cfg_b, &db, &["--status"]);
    assert_eq!(status["lag_messages"].as_u64(), Some(0), "{status}");
    assert_eq!(
        status["ack_floor_stream_seq"], status["stream_last_seq"],
        "{status}"
    );

    drop(b);
    drop(a);
    drop(cluster);
}
