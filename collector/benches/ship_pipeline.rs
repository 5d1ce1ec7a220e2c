//! Pipeline throughput on loopback: decoded `Event` -> shipper (seq, protobuf, batch,
//! spool, gzip, gRPC) -> collector (validate, SQLite commit) -> Ack, in events/s; plus the
//! stages alone, to show where the time goes. The SQLite writer acknowledges once rows are in
//! `events_hot` and moves them into `events_indexed` when idle; both costs are printed (the
//! writer thread's CPU per event on the ack path, and the move).
//!
//! `cargo bench -p collector --bench ship_pipeline` (BENCH_EVENTS=N to change the count).
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use collector::config::CollectorConfig;
use prost::Message as _;
use sensor::event::Event;
use support::{cpu_secs, event, thread_cpu_ns, InProcessCollector, Rate, WRITER_THREAD};

/// `collector serve` in this process with the SQLite sink at `db`.
fn start_collector(db: &Path, sync: &str) -> InProcessCollector {
    let mut cfg = CollectorConfig::default();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.storage.path = db.to_path_buf();
    cfg.storage.synchronous = sync.into();
    cfg.metrics.listen = String::new();
    InProcessCollector::start(cfg)
}

fn tmpdir(tag: &str) -> PathBuf {
    support::tmpdir("ship-bench", tag)
}

/// End to end: events/s and CPU per event of both ends, then the writer's CPU per event for
/// moving the rows into the indexed table once the stream is idle.
fn pipeline(n: u64, compression: &str, sync: &str) -> (Rate, f64) {
    let dir = tmpdir("e2e");
    let db = dir.join("events.db");
    let col = start_collector(&db, sync);
    let rate = support::ship_all(&col.addr, &dir, (0..n).map(event).collect(), compression);
    let writer = thread_cpu_ns(WRITER_THREAD);
    wait_until_indexed(&db);
    let moved = thread_cpu_ns(WRITER_THREAD).saturating_sub(writer) as f64 / 1e3 / n as f64;
    drop(col);
    let _ = std::fs::remove_dir_all(&dir);
    (rate, moved)
}

/// Waits until the writer has moved every row out of `events_hot`.
fn wait_until_indexed(db: &Path) {
    let conn = collector::store::open_ro(db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let hot: i64 = conn
            .query_row("SELECT count(*) FROM events_hot", [], |r| r.get(0))
            .unwrap();
        if hot == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{hot} rows still hot");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn conversion(n: u64) -> f64 {
    let events: Vec<Event> = (0..n).map(event).collect();
    let t = Instant::now();
    let mut bytes = 0usize;
    for ev in events {
        bytes += ev.into_msg().encode_to_vec().len();
    }
    std::hint::black_box(bytes);
    n as f64 / t.elapsed().as_secs_f64()
}

fn spool_only(n: u64) -> f64 {
    use sensor::sinks::grpc::spool::{FsyncPolicy, Spool, SpoolOptions};
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
    let protos: Vec<_> = (0..n).map(|i| event(i).into_msg()).collect();
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

/// The SQLite writer alone, fed as `collector serve` feeds it (decoded events plus their
/// bytes as received); then the move of those rows into the indexed table, timed alone.
fn store_only(n: u64, sync: &str) -> (Rate, f64) {
    use collector::store::{self, writer::Writer, Synchronous};
    let dir = tmpdir("store");
    let db = dir.join("e.db");
    let opened = store::open_rw(&db, Synchronous::parse(sync).unwrap()).unwrap();
    let (w, th) = Writer::spawn(opened, 50_000, db.clone()).unwrap();
    let protos: Vec<_> = (0..n)
        .map(|i| {
            let mut p = event(i).into_msg();
            p.seq = i + 1;
            let body = prost::bytes::Bytes::from(p.encode_to_vec());
            (p, body)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rate = rt.block_on(async move {
        let t = Instant::now();
        let cpu = cpu_secs();
        let writer = thread_cpu_ns(WRITER_THREAD);
        let mut pending = Vec::new();
        for chunk in protos.chunks(2000) {
            let (events, bodies) = chunk.iter().cloned().unzip();
            pending.push(
                w.submit_batch("s".into(), "b".into(), events, bodies, 0)
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
        Rate {
            events_per_sec: n as f64 / t.elapsed().as_secs_f64(),
            cpu_us_per_event: (cpu_secs() - cpu) * 1e6 / n as f64,
            writer_us_per_event: thread_cpu_ns(WRITER_THREAD).saturating_sub(writer) as f64
                / 1e3
                / n as f64,
        }
    });
    let _ = th.join();
    // The move, on this thread, in the writer's chunks.
    let mut opened = store::open_rw(&db, Synchronous::parse(sync).unwrap()).unwrap();
    let cpu = cpu_secs();
    while store::writer::move_hot(&mut opened.conn, store::writer::MOVE_CHUNK).unwrap() > 0 {}
    let moved = (cpu_secs() - cpu) * 1e6 / n as f64;
    let _ = std::fs::remove_dir_all(&dir);
    (rate, moved)
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
    println!(
        "{:<52} {:>12} {:>14} {:>12} {:>12}",
        "stage", "events/s", "CPU us/event", "writer us", "move us"
    );
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
    let row = |what: String, (r, moved): (Rate, f64)| {
        println!(
            "{:<52} {:>12.0} {:>14.2} {:>12.2} {:>12.2}",
            what, r.events_per_sec, r.cpu_us_per_event, r.writer_us_per_event, moved
        )
    };
    for sync in ["full", "normal"] {
        row(
            format!("collector store, synchronous={}", sync.to_uppercase()),
            store_only(n, sync),
        );
    }
    for (comp, sync) in [("gzip", "full"), ("none", "full"), ("gzip", "normal")] {
        row(
            format!("end to end to ack: compression={comp}, synchronous={sync}"),
            pipeline(n, comp, sync),
        );
    }
    println!(
        "CPU us/event: the whole process (both ends); writer us: the SQLite writer thread on \
         the way to the ack; move us: the writer moving the rows into the indexed table later"
    );
    println!("target: >= 200000 events/s end to end");
}
