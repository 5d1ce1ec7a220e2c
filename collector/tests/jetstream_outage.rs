//! Fleet mode with JetStream stopped entirely: the collector acknowledges nothing, the
//! sensor keeps its events in its spool, and once the cluster is back everything arrives,
//! each event exactly once in the stream.
mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::fleet::{self, Shipper};
use common::nats::skip_without_server;
use common::Collector;

const BEFORE: u64 = 3_000;
const DURING: u64 = 4_000;

#[test]
fn nothing_is_acknowledged_while_jetstream_is_down() {
    if skip_without_server("nothing_is_acknowledged_while_jetstream_is_down") {
        return;
    }
    let fleet::TestCluster {
        dir,
        mut cluster,
        urls,
        rt,
    } = fleet::TestCluster::start("js-outage", 3, true);
    let cfg = fleet::write_config(dir.path(), "c", &urls);
    let col_dir = dir.path().join("col");
    std::fs::create_dir_all(&col_dir).unwrap();
    let col = Collector::start(&col_dir, &["--config", cfg.to_str().unwrap()]);

    rt.block_on(async {
        let mut s = Shipper::start(&dir.path().join("spool"), &col.grpc, &[]);
        s.send(BEFORE).await;
        s.wait_all_acked(Duration::from_secs(60), || col.log())
            .await;

        // Stop every node; acks for publishes JetStream confirmed before that may still be
        // on their way, so the baseline is taken once the servers are gone.
        for n in &mut cluster.nodes {
            n.stop(libc::SIGTERM);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let acked_at_outage = s.acked();
        assert_eq!(acked_at_outage, BEFORE);
        let batches_acked = s.stats.batches_acked.load(Relaxed);

        s.send(DURING).await;
        // Observe long enough for several publish timeouts (2 s) and sensor retries.
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(
            s.acked(),
            acked_at_outage,
            "acknowledged while JetStream was down"
        );
        assert_eq!(s.stats.batches_acked.load(Relaxed), batches_acked);
        assert_eq!(
            s.stats.spool_pending_events.load(Relaxed),
            DURING,
            "the sensor keeps the unacknowledged events in its spool"
        );
        assert!(
            s.stats.batches_sent.load(Relaxed) > 0,
            "batches were offered to the collector"
        );
        let text = col.metrics_text();
        assert!(
            text.lines()
                .any(|l| l.starts_with("collector_store_errors_total ") && !l.ends_with(" 0")),
            "the collector counted failed batches: {text}"
        );

        for n in &mut cluster.nodes {
            n.start();
        }
        s.wait_all_acked(Duration::from_secs(180), || {
            format!("{}\n{}", col.log(), cluster.logs())
        })
        .await;
        assert_eq!(s.stats.spool_pending_events.load(Relaxed), 0);
        s.stop().await;

        let got = fleet::read_stream(&urls).await;
        let total = BEFORE + DURING;
        let missing: Vec<u64> = (0..total)
            .filter(|i| !got.markers.contains_key(i))
            .collect();
        let doubled: Vec<(&u64, &u32)> = got.markers.iter().filter(|(_, n)| **n != 1).collect();
        assert!(missing.is_empty(), "missing from the stream: {missing:?}");
        assert!(
            doubled.is_empty(),
            "more than once in the stream: {doubled:?}"
        );
        assert_eq!(got.events, total);
    });
    col.stop();
    drop(cluster);
}
