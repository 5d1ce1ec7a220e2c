//! Pipeline throughput on loopback: decoded `Event` -> shipper (seq, protobuf, batch,
//! spool, gzip, gRPC) -> collector (validate, SQLite commit) -> Ack, in events/s; plus the
//! stages alone, to show where the time goes.
//!
//! `cargo bench -p collector --bench ship_pipeline` (BENCH_EVENTS=N to change the count).
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use collector::config::CollectorConfig;
use prost::Message as _;
use sensor::event::{Ancestor, Event, Exit, Kind, Process, Source};
use sensor::ship::{proto_conv::event_to_proto, ShipConfig, ShipStats};
use sensor::timefmt::{monotonic_now_ns, rfc3339_nanos, unix_now_ns};

fn event(i: u64) -> Event {
    let pid = 20_000 + (i / 2) as u32;
    let args = [
        "/usr/bin/python3".to_string(),
        "-m".into(),
        "http.server".into(),
        format!("--bind=127.0.0.{}", i % 200),
        format!("job-{i}"),
    ];
    let exec = i.is_multiple_of(2);
    Event {
        seq: 0,
        time: rfc3339_nanos(unix_now_ns()),
        host: "bench-host.example".into(),
        source: Source::Ebpf,
        kind: if exec {
            Kind::ProcessExec
        } else {
            Kind::ProcessExit
        },
        process: Some(Process {
            pid,
            ppid: 1234,
            start_time: rfc3339_nanos(unix_now_ns()),
            start_boottime_ns: 1_000_000 + i,
            uid: 1000,
            euid: 1000,
            gid: 1000,
            egid: 1000,
            auid: Some(1000),
            session: Some(7),
            tty: Some("pts/2".into()),
            comm: "python3".into(),
            exe: Some("/usr/bin/python3.11".into()),
            cwd: Some("/home/user/project".into()),
            argv: exec.then(|| args.to_vec()),
            cgroup_id: 4242,
            container_id: String::new(),
            ancestors: vec![
                Ancestor {
                    pid: 1234,
                    comm: "bash".into(),
                    exe: "/usr/bin/bash".into(),
                },
                Ancestor {
                    pid: 1200,
                    comm: "sshd".into(),
                    exe: "/usr/sbin/sshd".into(),
                },
            ],
            ..Default::default()
        }),
        exit: (!exec).then_some(Exit {
            code: Some(0),
            signal: None,
            core_dumped: false,
        }),
        connect: None,
        health: None,
        ktime_ns: Some(monotonic_now_ns()),
        extra: Default::default(),
    }
}

struct Collector {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: String,
}

impl Collector {
    fn start(db: &Path, sync: &str) -> Collector {
        let mut cfg = CollectorConfig::default();
        cfg.server.listen = "127.0.0.1:0".into();
        cfg.storage.path = db.to_path_buf();
        cfg.storage.synchronous = sync.into();
        cfg.metrics.listen = String::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(collector::serve::serve(
                cfg,
                async move {
                    let _ = stop_rx.await;
                },
                |b| {
                    let _ = ready_tx.send(b.grpc.to_string());
                },
            ))
            .unwrap();
        });
        let addr = ready_rx.recv().unwrap();
        Collector {
            stop: Some(stop_tx),
            thread: Some(thread),
            addr,
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ship-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// End to end; returns (events/s, ack lag p50/p99 of batches is not measured here).
fn pipeline(n: u64, compression: &str, sync: &str) -> f64 {
    let dir = tmpdir("e2e");
    let col = Collector::start(&dir.join("events.db"), sync);
    let events: Vec<Event> = (0..n).map(event).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = ShipConfig {
        address: col.addr.clone(),
        allow_plaintext_loopback: true,
        spool_dir: dir.join("spool"),
        compression: compression.into(),
        ..Default::default()
    };
    let rate = rt.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stats = Arc::new(ShipStats::default());
        let h = tokio::spawn(sensor::ship::run_shipper(
            rx,
            cfg,
            Default::default(),
            stats.clone(),
            stop_rx,
        ));
        // Wait for the stream so connection setup is not timed.
        while !stats.connected.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        for ev in events {
            tx.send(ev).await.unwrap();
        }
        while stats.events_acked.load(Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        let _ = stop_tx.send(true);
        drop(tx);
        h.await.unwrap().unwrap();
        n as f64 / secs
    });
    drop(col);
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

fn conversion(n: u64) -> f64 {
    let events: Vec<Event> = (0..n).map(event).collect();
    let t = Instant::now();
    let mut bytes = 0usize;
    for ev in &events {
        bytes += event_to_proto(ev).encode_to_vec().len();
    }
    std::hint::black_box(bytes);
    n as f64 / t.elapsed().as_secs_f64()
}

fn spool_only(n: u64) -> f64 {
    use sensor::ship::spool::{FsyncPolicy, Spool, SpoolOptions};
    let dir = tmpdir("spool");
    let (mut s, _) = Spool::open(
        &dir,
        SpoolOptions {
            max_bytes: 1 << 30,
            segment_bytes: 4 << 20,
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
        },
    )
    .unwrap();
    let protos: Vec<_> = (0..n).map(|i| event_to_proto(&event(i))).collect();
    let t = Instant::now();
    for (k, chunk) in protos.chunks(2000).enumerate() {
        let mut b = sensor_proto::v1::Batch {
            sensor_id: "s".into(),
            boot_id: "b".into(),
            first_seq: k as u64 * 2000 + 1,
            events: chunk.to_vec(),
            batch_id: 0,
            sent_unix_ns: 0,
        };
        let id = s.append(&mut b).unwrap().batch_id;
        s.ack(id).unwrap();
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

fn store_only(n: u64, sync: &str) -> f64 {
    use collector::store::{self, writer::Writer, Synchronous};
    let dir = tmpdir("store");
    let conn = store::open_rw(&dir.join("e.db"), Synchronous::parse(sync).unwrap()).unwrap();
    let (w, th) = Writer::spawn(conn, 50_000, dir.join("e.db")).unwrap();
    let protos: Vec<_> = (0..n)
        .map(|i| {
            let mut p = event_to_proto(&event(i));
            p.seq = i + 1;
            p
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rate = rt.block_on(async move {
        let t = Instant::now();
        let mut pending = Vec::new();
        for chunk in protos.chunks(2000) {
            pending.push(
                w.submit_batch("s".into(), "b".into(), chunk.to_vec(), 0)
                    .await
                    .unwrap(),
            );
            if pending.len() >= 8 {
                pending.remove(0).await.unwrap().unwrap();
            }
        }
        for p in pending {
            p.await.unwrap().unwrap();
        }
        n as f64 / t.elapsed().as_secs_f64()
    });
    let _ = th.join();
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

fn main() {
    // `cargo test` runs benches with --bench absent; only run on `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    println!("ship pipeline benchmark: {n} events, loopback, 2 cores shared by both ends");
    println!("{:<52} {:>12}", "stage", "events/s");
    println!(
        "{:<52} {:>12.0}",
        "Event -> protobuf (convert + encode)",
        conversion(n)
    );
    println!(
        "{:<52} {:>12.0}",
        "spool append + ack (2000-event batches)",
        spool_only(n)
    );
    println!(
        "{:<52} {:>12.0}",
        "collector store, synchronous=FULL",
        store_only(n, "full")
    );
    println!(
        "{:<52} {:>12.0}",
        "collector store, synchronous=NORMAL",
        store_only(n, "normal")
    );
    for (comp, sync) in [("gzip", "full"), ("none", "full"), ("gzip", "normal")] {
        let r = pipeline(n, comp, sync);
        println!(
            "{:<52} {:>12.0}",
            format!("end to end to ack: compression={comp}, synchronous={sync}"),
            r
        );
    }
    println!("target: >= 200000 events/s end to end");
}
