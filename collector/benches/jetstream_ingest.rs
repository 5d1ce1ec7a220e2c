//! Fleet-mode ingest throughput on this machine, in one run: the real shipper (seq,
//! protobuf, batch, spool, gzip or not, gRPC) -> one collector -> Ack, with the SQLite sink and
//! with the JetStream sink into a 3-replica stream on a local 3-node cluster of Debian's
//! nats-server (both message granularities), then `collector consume` from the stream
//! into SQLite.
//!
//! `cargo bench -p collector --bench jetstream_ingest` (BENCH_EVENTS=N; needs nats-server,
//! skipped with a message without it).
#[path = "../tests/common/nats.rs"]
#[allow(dead_code)]
mod nats;
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use collector::config::{CollectorConfig, JetStreamSection};
use support::{event, InProcessCollector};

fn collector_config(dir: &Path, js: Option<JetStreamSection>) -> CollectorConfig {
    let mut cfg = CollectorConfig::default();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.storage.path = dir.join("events.db");
    cfg.metrics.listen = String::new();
    if let Some(j) = js {
        cfg.storage.sink = "jetstream".into();
        cfg.jetstream = j;
    }
    cfg
}

fn js_section(urls: &[String], name: &str, granularity: &str) -> JetStreamSection {
    JetStreamSection {
        servers: urls.to_vec(),
        stream: name.to_uppercase(),
        subject_prefix: name.into(),
        replicas: 3,
        granularity: granularity.into(),
        ..Default::default()
    }
}

/// Shipper -> collector -> Ack; events/s and CPU per event (this process: both ends, not
/// the NATS servers).
fn pipeline(dir: &Path, cfg: CollectorConfig, n: u64, compression: &str) -> support::Rate {
    let col = InProcessCollector::start(cfg);
    let rate = support::ship_all(&col.addr, dir, (0..n).map(event).collect(), compression);
    drop(col);
    rate
}

/// `collector consume` of a stream into a fresh database; (events, events/s).
fn consume(dir: &Path, j: JetStreamSection) -> (u64, f64) {
    let mut cfg = collector_config(dir, Some(j));
    cfg.storage.path = dir.join("consumed.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(collector::jetstream::consume::run(
            &cfg,
            collector::jetstream::consume::Options {
                until_caught_up: true,
                report_every: Duration::from_secs(3600),
            },
            Default::default(),
            std::future::pending::<()>(),
        ))
        .unwrap();
    (r.events, r.events as f64 / r.seconds)
}

fn tmpdir(tag: &str) -> PathBuf {
    support::tmpdir("js-bench", tag)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if nats::server_binary().is_none() {
        println!("jetstream ingest benchmark SKIPPED: nats-server is not installed (scripts/setup installs it)");
        return;
    }
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let per_event_n = (n / 10).max(1000);
    let root = tmpdir("root");
    println!(
        "fleet ingest benchmark: shipper -> one collector -> Ack, loopback, \
         2 cores shared by everything (3 nats-servers included)"
    );
    println!("{:<72} {:>12} {:>14}", "sink", "events/s", "CPU us/event");
    for comp in ["gzip", "none"] {
        let d = root.join(format!("sqlite-{comp}"));
        std::fs::create_dir_all(&d).unwrap();
        let r = pipeline(&d, collector_config(&d, None), n, comp);
        println!(
            "{:<72} {:>12.0} {:>14.2}   (SQLite writer {:.2} us/event)",
            format!("SQLite synchronous=FULL, compression={comp} ({n} events)"),
            r.events_per_sec,
            r.cpu_us_per_event,
            r.writer_us_per_event
        );
    }

    let cluster = nats::Cluster::start(&root, 3);
    let urls = cluster.urls();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, granularity, count, comp) in [
        ("bench_batch", "batch", n, "gzip"),
        ("bench_batch_raw", "batch", n, "none"),
        ("bench_event", "event", per_event_n, "gzip"),
    ] {
        let j = js_section(&urls, name, granularity);
        // Create the stream first (the cluster may still be electing its meta leader).
        rt.block_on(async {
            let client = collector::jetstream::connect(&j, "bench").await.unwrap();
            let js = collector::jetstream::context(client, &j);
            let deadline = Instant::now() + Duration::from_secs(60);
            while let Err(e) = collector::jetstream::ensure_stream(&js, &j).await {
                assert!(Instant::now() < deadline, "stream: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let r = pipeline(&d, collector_config(&d, Some(j.clone())), count, comp);
        println!(
            "{:<72} {:>12.0} {:>14.2}",
            format!(
                "JetStream R3 file, message per {granularity}, compression={comp} ({count} events)"
            ),
            r.events_per_sec,
            r.cpu_us_per_event
        );
        if name == "bench_batch" {
            let (events, rate) = consume(&d, j);
            println!(
                "{:<72} {:>12.0}",
                format!("collector consume: R3 stream -> SQLite FULL ({events} events)"),
                rate
            );
        }
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&root);
    println!("target: >= 200000 events/s to ack through one collector");
}
