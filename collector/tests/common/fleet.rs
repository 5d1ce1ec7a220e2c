//! Fleet-mode test helpers: collector configs for a JetStream cluster, the real sensor
//! shipper fed with marked events, and a reader that counts what the stream itself holds.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, pull};
use collector::config::{CollectorConfig, JetStreamSection};
use prost::Message as _;
use sensor::event::{Event, Kind, Process, Source};
use sensor::sinks::grpc::{ShipConfig, ShipStats};
use sensor::timefmt::unix_now_ns;
use sensor_proto::v1 as pb;
use tokio_stream::StreamExt as _;

pub const STREAM: &str = "TEST_EVENTS";

/// A 2-worker runtime for a test's async steps.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A cluster of `nodes` nats-servers in a new temp dir, its URLs and a runtime, with the test
/// stream created when asked. Destructure it as `{ dir, cluster, urls, rt }` so the cluster
/// stops before its directory is removed.
pub struct TestCluster {
    pub dir: super::TempDir,
    pub cluster: super::nats::Cluster,
    pub urls: Vec<String>,
    pub rt: tokio::runtime::Runtime,
}

impl TestCluster {
    pub fn start(tag: &str, nodes: usize, with_stream: bool) -> TestCluster {
        let dir = super::TempDir::new(tag);
        let cluster = super::nats::Cluster::start(dir.path(), nodes);
        let urls = cluster.urls();
        let rt = runtime();
        if with_stream {
            rt.block_on(create_stream(&urls));
        }
        TestCluster {
            dir,
            cluster,
            urls,
            rt,
        }
    }
}

pub fn jetstream_section(urls: &[String]) -> JetStreamSection {
    JetStreamSection {
        servers: urls.to_vec(),
        stream: STREAM.into(),
        subject_prefix: "sensor".into(),
        replicas: 3,
        publish_timeout_secs: 2,
        ..Default::default()
    }
}

/// Writes a `collector serve` config with the JetStream sink; returns its path.
pub fn write_config(dir: &Path, name: &str, urls: &[String]) -> PathBuf {
    write_config_with(dir, name, jetstream_section(urls))
}

pub fn write_config_with(dir: &Path, name: &str, j: JetStreamSection) -> PathBuf {
    let mut cfg = CollectorConfig::default();
    cfg.storage.sink = "jetstream".into();
    cfg.storage.path = dir.join(format!("{name}.db"));
    cfg.jetstream = j;
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, toml::to_string(&cfg).unwrap()).unwrap();
    p
}

/// Creates the 3-replica stream, retrying while the cluster elects its leaders.
pub async fn create_stream(urls: &[String]) {
    let j = jetstream_section(urls);
    let client = collector::jetstream::connect(&j, "test").await.unwrap();
    let js = collector::jetstream::context(client, &j);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match collector::jetstream::ensure_stream(&js, &j).await {
            Ok(mut s) => {
                let info = s.info().await.unwrap();
                assert_eq!(info.config.num_replicas, 3);
                return;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "stream not created: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The name of the server leading the stream's replica group.
pub async fn stream_leader(urls: &[String]) -> Option<String> {
    let j = jetstream_section(urls);
    let client = collector::jetstream::connect(&j, "test").await.ok()?;
    let js = collector::jetstream::context(client, &j);
    let mut s = js.get_stream(STREAM).await.ok()?;
    let info = s.info().await.ok()?;
    info.cluster.as_ref().and_then(|c| c.leader.clone())
}

/// What the stream holds, read from the stream itself (not from SQLite).
#[derive(Debug, Default)]
pub struct StreamContents {
    pub messages: u64,
    pub hellos: u64,
    /// Marker -> how many times an event with it is in the stream.
    pub markers: BTreeMap<u64, u32>,
    pub events: u64,
}

/// Reads every message of the stream with an ephemeral consumer.
pub async fn read_stream(urls: &[String]) -> StreamContents {
    let j = jetstream_section(urls);
    let client = collector::jetstream::connect(&j, "test-reader")
        .await
        .unwrap();
    let js = collector::jetstream::context(client, &j);
    let deadline = Instant::now() + Duration::from_secs(60);
    let stream = loop {
        match js.get_stream(STREAM).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "get stream: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    // A node that was just restarted may still be catching up: retry API calls (reads
    // of messages are never retried, so nothing is counted twice).
    let mut c = loop {
        match stream
            .create_consumer(pull::Config {
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "create consumer: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let mut out = StreamContents::default();
    loop {
        let mut batch = match c
            .fetch()
            .max_messages(500)
            .expires(Duration::from_secs(2))
            .messages()
            .await
        {
            Ok(b) => b,
            Err(e) => {
                assert!(Instant::now() < deadline, "fetch: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let mut got = 0;
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            got += 1;
            out.messages += 1;
            if m.subject.as_str().ends_with(".sensor_hello") {
                out.hellos += 1;
                continue;
            }
            let b = pb::Batch::decode(m.payload.as_ref()).unwrap();
            for e in b.events {
                out.events += 1;
                if let Some(k) = marker_of(&e) {
                    *out.markers.entry(k).or_default() += 1;
                }
            }
        }
        if got == 0 {
            match c.info().await {
                Ok(i) if i.num_pending == 0 => return out,
                Ok(_) => {}
                Err(e) => assert!(Instant::now() < deadline, "consumer info: {e}"),
            }
        }
    }
}

fn marker_of(e: &pb::Event) -> Option<u64> {
    let args = &e.process.as_ref()?.argv.as_ref()?.args;
    args.get(1)?.strip_prefix("fleet-mark-")?.parse().ok()
}

/// An exec event carrying marker `i` in argv[1].
pub fn marked_event(i: u64) -> Event {
    let kind = if i.is_multiple_of(3) {
        Kind::ProcessExit
    } else {
        Kind::ProcessExec
    };
    let mut ev = Event::new(kind, Source::Ebpf, unix_now_ns(), "fleet-test.example");
    ev.process = Some(Process {
        pid: 10_000 + i as u32,
        ppid: 1,
        comm: "worker".into(),
        exe: Some("/usr/bin/worker".into()),
        argv: Some(vec!["/usr/bin/worker".into(), format!("fleet-mark-{i}")].into()),
        ..Default::default()
    });
    ev
}

/// The real sensor shipper (spool, batches, one gRPC stream, failover) in this process.
pub struct Shipper {
    pub stats: Arc<ShipStats>,
    tx: Option<tokio::sync::mpsc::Sender<Event>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<(), sensor::sinks::grpc::ShipError>>>,
    next: u64,
}

impl Shipper {
    pub fn start(spool: &Path, address: &str, fallbacks: &[String]) -> Shipper {
        let cfg = ShipConfig {
            address: address.into(),
            fallback_addresses: fallbacks.to_vec(),
            allow_plaintext_loopback: true,
            spool_dir: spool.to_path_buf(),
            compression: "none".into(),
            batch_max_events: 500,
            backoff_initial_ms: 50,
            backoff_max_ms: 1000,
            keepalive_interval_secs: 2,
            keepalive_timeout_secs: 2,
            connect_timeout_secs: 2,
            ..Default::default()
        };
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let stats = Arc::new(ShipStats::default());
        let task = tokio::spawn(sensor::sinks::grpc::run_shipper(
            rx,
            cfg,
            Default::default(),
            stats.clone(),
            stop_rx,
        ));
        Shipper {
            stats,
            tx: Some(tx),
            stop,
            task: Some(task),
            next: 0,
        }
    }

    /// Sends the next `n` marked events.
    pub async fn send(&mut self, n: u64) {
        let tx = self.tx.as_ref().unwrap();
        for _ in 0..n {
            tx.send(marked_event(self.next)).await.unwrap();
            self.next += 1;
        }
    }

    pub fn sent(&self) -> u64 {
        self.next
    }

    pub fn acked(&self) -> u64 {
        self.stats.events_acked.load(Relaxed)
    }

    /// Waits until every sent event is acknowledged; panics after `limit`.
    pub async fn wait_all_acked(&self, limit: Duration, why: impl Fn() -> String) {
        let deadline = Instant::now() + limit;
        while self.acked() < self.next {
            assert!(
                Instant::now() < deadline,
                "only {} of {} events acknowledged; last error: {}\n{}",
                self.acked(),
                self.next,
                self.stats.last_error(),
                why()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        drop(self.tx.take());
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// `collector consume` (the binary) against `config`; returns its JSON report.
pub fn consume(config: &Path, db: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "consume",
        "--config",
        config.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = super::run_cli(&args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}
