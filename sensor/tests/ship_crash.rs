//! kill -9 of the shipping process with unacknowledged batches in its spool: after a
//! restart every spooled event is delivered, exactly once.
//!
//! The shipping process is this test binary re-executed in "child" mode (the `crash_child`
//! test, inert without its environment variables): it runs the shipper on synthetic events
//! and reports on stdout how many are safely in the spool.
mod common;
mod ship_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use ship_support::*;

const ENV_SPOOL: &str = "SHIP_CRASH_CHILD_SPOOL";
const ENV_ADDR: &str = "SHIP_CRASH_CHILD_ADDR";
const ENV_MARKER: &str = "SHIP_CRASH_CHILD_MARKER";
const ENV_N: &str = "SHIP_CRASH_CHILD_N";

/// Child mode: ship N events, printing `SPOOLED <k>` as they reach the spool, then wait
/// to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(spool) = std::env::var(ENV_SPOOL) else {
        return; // not the child
    };
    let addr = std::env::var(ENV_ADDR).unwrap();
    let marker = std::env::var(ENV_MARKER).unwrap();
    let n: u64 = std::env::var(ENV_N).unwrap().parse().unwrap();
    let mut cfg = ship_cfg(std::path::Path::new(&spool), &addr);
    cfg.fsync = "never".into(); // kill -9 must not lose anything even so
    let s = Shipper::start(cfg);
    let mut last = 0;
    for i in 0..n {
        s.send(synth(&marker, i)).await;
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let k = s.stats.events_spooled.load(Relaxed);
        if k >= last + 200 {
            println!("SPOOLED {k}");
            last = k;
        }
    }
    loop {
        let k = s.stats.events_spooled.load(Relaxed);
        if k != last {
            println!("SPOOLED {k}");
            last = k;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Child9(Option<Child>);

impl Child9 {
    fn spawn(spool: &std::path::Path, addr: &str, marker: &str, n: u64) -> Child9 {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(ENV_SPOOL, spool)
            .env(ENV_ADDR, addr)
            .env(ENV_MARKER, marker)
            .env(ENV_N, n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Child9(Some(child))
    }

    /// Reads progress until `want` events are spooled; returns the count last reported.
    fn wait_spooled(&mut self, want: u64) -> u64 {
        let out = self.0.as_mut().unwrap().stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(k) = line.strip_prefix("SPOOLED ") {
                    if tx.send(k.parse::<u64>().unwrap()).is_err() {
                        return;
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut k = 0;
        while k < want {
            k = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("child stopped reporting");
        }
        k
    }

    fn kill9(&mut self) {
        let mut c = self.0.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        let st = c.wait().unwrap();
        assert!(!st.success());
    }
}

impl Drop for Child9 {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn segment_bytes(spool: &std::path::Path) -> u64 {
    std::fs::read_dir(spool.join("segments"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Collector down the whole time: everything is in the spool when the process dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_with_collector_down_then_restart_delivers_all() {
    let dir = TempDir::new("crash1");
    let spool = dir.path().join("spool");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let marker = format!("cr{}", std::process::id());
    const N: u64 = 3_000;
    let mut child = Child9::spawn(&spool, &addr, &marker, N);
    assert_eq!(child.wait_spooled(N), N);
    child.kill9();
    assert!(segment_bytes(&spool) > 0, "batches are in the spool");

    let db_dir = dir.path().to_path_buf();
    let col = tokio::task::spawn_blocking(move || InProcCollector::start(&db_dir, &addr, None))
        .await
        .unwrap();
    let s = Shipper::start(ship_cfg(&spool, &col.addr));
    // New events after the restart continue the numbering.
    for i in N..N + 10 {
        s.send(synth(&marker, i)).await;
    }
    let stats = s.stats.clone();
    s.stop().await.unwrap();
    assert!(stats.recovered_batches.load(Relaxed) > 0);
    let db = col.db.clone();
    tokio::task::spawn_blocking(move || {
        assert_exactly_once(&db, &marker, N + 10);
        let mut v = stored_with(&db, &marker);
        v.sort_by_key(index_of);
        assert!(v[N as usize].event.seq > v[N as usize - 1].event.seq);
        col.stop();
    })
    .await
    .unwrap();
}

/// Collector up, events flowing: killed mid-stream with batches in flight and segments
/// partly acknowledged. After the restart every event the child had spooled is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_stream_then_restart_delivers_all() {
    let dir = TempDir::new("crash2");
    let spool = dir.path().join("spool");
    let db_dir = dir.path().to_path_buf();
    let col =
        tokio::task::spawn_blocking(move || InProcCollector::start(&db_dir, "127.0.0.1:0", None))
            .await
            .unwrap();
    let marker = format!("cm{}", std::process::id());
    let mut child = Child9::spawn(&spool, &col.addr, &marker, 1_000_000);
    let spooled = child.wait_spooled(5_000);
    child.kill9();

    let s = Shipper::start(ship_cfg(&spool, &col.addr));
    let stats = s.stats.clone();
    s.stop().await.unwrap();
    assert_eq!(stats.spool_pending_events.load(Relaxed), 0);
    let db = col.db.clone();
    tokio::task::spawn_blocking(move || {
        let v = stored_with(&db, &marker);
        let mut seen = std::collections::HashMap::new();
        for e in &v {
            *seen.entry(index_of(e)).or_insert(0u32) += 1;
        }
        assert!(seen.values().all(|&c| c == 1), "duplicates stored");
        let missing: Vec<u64> = (0..spooled).filter(|i| !seen.contains_key(i)).collect();
        assert!(
            missing.is_empty(),
            "{} of the {spooled} spooled events missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        col.stop();
    })
    .await
    .unwrap();
}
