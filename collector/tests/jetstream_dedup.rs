//! JetStream de-duplication across stateless collectors, made deterministic: the same
//! batch sent through one collector and then through another (what a sensor does when its
//! collector dies after publishing but before acknowledging) is acknowledged both times,
//! the second time as duplicates, and the stream holds its events once. Both message
//! granularities ("batch" and "event") are checked. `collector consume` then skips a
//! message that is not a sensor batch instead of stopping on it.
mod common;

use common::fleet;
use common::nats::skip_without_server;
use common::{exec_event, raw, Collector};

#[test]
fn a_batch_resent_through_another_collector_is_stored_once() {
    if skip_without_server("a_batch_resent_through_another_collector_is_stored_once") {
        return;
    }
    let fleet::TestCluster {
        dir,
        cluster,
        urls,
        rt,
    } = fleet::TestCluster::start("js-dedup", 3, true);
    let mut cols = Vec::new();
    for (name, granularity) in [
        ("a", "batch"),
        ("b", "batch"),
        ("e1", "event"),
        ("e2", "event"),
    ] {
        let cfg = fleet::write_config(dir.path(), name, &urls);
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "granularity = \"batch\"",
            &format!("granularity = \"{granularity}\""),
        );
        std::fs::write(&cfg, text).unwrap();
        let d = dir.path().join(format!("col-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        cols.push(Collector::start(&d, &["--config", cfg.to_str().unwrap()]));
    }

    rt.block_on(async {
        // (first collector, second collector, first seq of the batch)
        for (first, second, seq0) in [(0usize, 1usize, 1u64), (2, 3, 1_000)] {
            let events: Vec<_> = (0..50)
                .map(|i| {
                    let marker = format!("fleet-mark-{}", seq0 + i);
                    exec_event(seq0 + i, "dedup-host", 100, Some(1), &["worker", &marker])
                })
                .collect();
            let batch = common::batch("dedup-sensor", "boot-1", 7, events);
            let mut acks = Vec::new();
            for c in [first, second] {
                let mut s = raw::open(raw::channel(&cols[c].grpc).await).await.unwrap();
                s.send_hello(common::hello("dedup-sensor", "boot-1", "dedup-host"))
                    .await;
                s.send_batch(batch.clone()).await;
                acks.push(s.next_ack().await.unwrap());
            }
            assert_eq!((acks[0].stored, acks[0].duplicates), (50, 0), "{acks:?}");
            assert_eq!((acks[1].stored, acks[1].duplicates), (0, 50), "{acks:?}");
        }
        let got = fleet::read_stream(&urls).await;
        assert_eq!(got.events, 100, "each event once in the stream");
        assert!(got.markers.values().all(|n| *n == 1), "{:?}", got.markers);
        assert_eq!(got.markers.len(), 100);

        // Something that is not a sensor batch on the stream's subjects.
        let j = fleet::jetstream_section(&urls);
        let client = collector::jetstream::connect(&j, "junk").await.unwrap();
        let js = collector::jetstream::context(client, &j);
        js.publish("sensor.junk.process_exec", vec![0xff, 0xff, 0xff].into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    // `collector consume` stores the 100 events once, skips (and counts) the junk instead of
    // stopping on it, and is caught up.
    let cfg = dir.path().join("a.toml");
    let db = dir.path().join("consumed.db");
    let r = fleet::consume(&cfg, &db, &["--until-caught-up"]);
    assert_eq!(r["events_stored"].as_u64(), Some(100), "{r}");
    assert_eq!(r["skipped"].as_u64(), Some(1), "{r}");
    assert_eq!(r["lag_messages"].as_u64(), Some(0), "{r}");
    assert_eq!(common::query(&db, &["--text", "fleet-mark-"]).len(), 100);
    for c in cols {
        c.stop();
    }
    drop(cluster);
}
