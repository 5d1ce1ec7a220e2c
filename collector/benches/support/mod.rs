//! Shared by the collector benchmarks: a representative event, `collector serve` in this
//! process, and the real shipper pushing events through it until every one is acknowledged.
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use collector::config::CollectorConfig;
use sensor::event::{Ancestor, Event, Exit, Kind, Process, Source};
use sensor::sinks::grpc::{ShipConfig, ShipStats};
use sensor::timefmt::{monotonic_now_ns, unix_now_ns};

/// Event `i`: execs and exits of a python3 job with argv and two ancestors, alternating.
pub fn event(i: u64) -> Event {
    let pid = 20_000 + (i / 2) as u32;
    let args = [
        "/usr/bin/python3".to_string(),
        "-m".into(),
        "http.server".into(),
        format!("--bind=127.0.0.{}", i % 200),
        format!("job-{i}"),
    ];
    let exec = i.is_multiple_of(2);
    let kind = if exec {
        Kind::ProcessExec
    } else {
        Kind::ProcessExit
    };
    let mut ev = Event::new(kind, Source::Ebpf, unix_now_ns(), "bench-host.example");
    ev.ktime_ns = Some(monotonic_now_ns());
    ev.process = Some(Process {
        pid,
        ppid: 1234,
        start_time_unix_ns: Some(unix_now_ns()),
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
        argv: exec.then(|| args.to_vec().into()),
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
    });
    ev.exit = (!exec).then_some(Exit {
        code: Some(0),
        signal: None,
        core_dumped: false,
    });
    ev
}

/// `collector serve` in this process, on its own 2-thread runtime.
pub struct InProcessCollector {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: String,
}

impl InProcessCollector {
    pub fn start(cfg: CollectorConfig) -> InProcessCollector {
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
        InProcessCollector {
            stop: Some(stop_tx),
            thread: Some(thread),
            addr,
        }
    }
}

impl Drop for InProcessCollector {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

/// A fresh directory under the temp dir.
pub fn tmpdir(prefix: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// CPU time (user + system) of this whole process so far, in seconds: both ends of the
/// pipeline run here, so a difference is what a stage cost, whatever else the machine runs.
pub fn cpu_secs() -> f64 {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time (ns) spent so far by this process's threads named `name` (from each thread's
/// `schedstat`, which counts in nanoseconds): the SQLite writer's share of a stage.
pub fn thread_cpu_ns(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut ns = 0;
    for t in tasks.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns
}

/// The thread that owns the SQLite connection (`store::writer`).
pub const WRITER_THREAD: &str = "sqlite-writer";

/// What a timed run measured.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub events_per_sec: f64,
    /// Process CPU time per event over the same interval, microseconds.
    pub cpu_us_per_event: f64,
    /// The SQLite writer thread's CPU time per event over the same interval, microseconds.
    pub writer_us_per_event: f64,
}

/// Ships `events` with the real shipper (spool in `dir`) to the collector at `addr` and
/// returns events/s from the first send to the last acknowledgement (connection set-up is not
/// timed), and the CPU both ends spent per event meanwhile.
pub fn ship_all(addr: &str, dir: &Path, events: Vec<Event>, compression: &str) -> Rate {
    let n = events.len() as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = ShipConfig {
        address: addr.to_string(),
        allow_plaintext_loopback: true,
        spool_dir: dir.join("spool"),
        compression: compression.into(),
        ..Default::default()
    };
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(65_536);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stats = Arc::new(ShipStats::default());
        let h = tokio::spawn(sensor::sinks::grpc::run_shipper(
            rx,
            cfg,
            Default::default(),
            stats.clone(),
            stop_rx,
        ));
        while !stats.connected.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        let cpu = cpu_secs();
        let writer = thread_cpu_ns(WRITER_THREAD);
        for ev in events {
            tx.send(ev).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(600);
        while stats.events_acked.load(Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "not all acked: {}",
                stats.last_error()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu;
        let writer = thread_cpu_ns(WRITER_THREAD).saturating_sub(writer);
        let _ = stop_tx.send(true);
        drop(tx);
        h.await.unwrap().unwrap();
        Rate {
            events_per_sec: n as f64 / secs,
            cpu_us_per_event: cpu * 1e6 / n as f64,
            writer_us_per_event: writer as f64 / 1e3 / n as f64,
        }
    })
}
