//! Out of space: a stream at its byte limit refuses new messages (`discard = "new"`). The
//! collector then acknowledges nothing and ends the sensor's stream with UNAVAILABLE, so
//! the sensor keeps the batch in its spool; what was acknowledged before is in the stream.
mod common;

use common::fleet;
use common::nats::skip_without_server;
use common::{exec_event, raw, Collector};

#[test]
fn a_full_stream_acknowledges_nothing() {
    if skip_without_server("a_full_stream_acknowledges_nothing") {
        return;
    }
    let fleet::TestCluster {
        dir,
        cluster,
        urls,
        rt,
    } = fleet::TestCluster::start("js-full", 1, false);
    let mut j = fleet::jetstream_section(&urls);
    j.replicas = 1;
    j.max_bytes = 64 * 1024;
    j.discard = "new".into();
    let cfg = fleet::write_config_with(dir.path(), "full", j);
    let col_dir = dir.path().join("col");
    std::fs::create_dir_all(&col_dir).unwrap();
    let col = Collector::start(&col_dir, &["--config", cfg.to_str().unwrap()]);
    rt.block_on(async {
        let events = |from: u64, n: u64| -> Vec<_> {
            (from..from + n)
                .map(|i| {
                    let m = format!("fleet-mark-{i}");
                    exec_event(i, "full-host", 7, None, &["worker", &m, &"x".repeat(200)])
                })
                .collect()
        };
        // The collector creates the stream in the background; retry the first batch until
        // it exists (each failed try ends that stream without an ack).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let ack = loop {
            let mut s = raw::open(raw::channel(&col.grpc).await).await.unwrap();
            s.send_hello(common::hello("full-sensor", "boot", "full-host"))
                .await;
            s.send_batch(common::batch("full-sensor", "boot", 1, events(1, 20)))
                .await;
            match s.next_ack().await {
                Ok(a) => break a,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "{e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        };
        assert_eq!(ack.stored, 20);

        // ~300 KB of events into a 64 KiB stream: refused, not acknowledged.
        let mut s = raw::open(raw::channel(&col.grpc).await).await.unwrap();
        s.send_hello(common::hello("full-sensor", "boot", "full-host"))
            .await;
        s.send_batch(common::batch("full-sensor", "boot", 2, events(21, 1000)))
            .await;
        let err = s
            .next_ack()
            .await
            .expect_err("a batch JetStream refused was acknowledged");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        // JetStream's own reason reaches the sensor's log.
        assert!(err.message().contains("storage failed"), "{err}");
        assert!(err.message().contains("maximum bytes"), "{err}");

        let got = fleet::read_stream(&urls).await;
        assert_eq!(
            got.events, 20,
            "only the acknowledged batch is in the stream"
        );
    });
    let text = col.metrics_text();
    let errors: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("collector_store_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(errors >= 1, "the refused batch is counted: {text}");
    col.stop();
    drop(cluster);
}
