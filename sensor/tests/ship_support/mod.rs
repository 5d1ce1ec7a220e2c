//! Shared harness of the `ship_*` tests: an in-process collector (the real `collector`
//! library: gRPC server, SQLite, de-duplication), the shipper driven through its library
//! API, and synthetic events.
#![allow(dead_code)]

#[path = "../../../collector/tests/common/certs.rs"]
pub mod certs;
pub mod sockets;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use collector::config::{CollectorConfig, TlsSection};
use collector::store::{self, query::Filter, query::Stored};
use sensor::event::{Connect, Event, Exit, Health, Kind, Process, Source};
use sensor::sinks::grpc::{ShipConfig, ShipError, ShipStats};
use sensor::telemetry::counters::Counters;
use sensor::timefmt::unix_now_ns;
use tokio::sync::{mpsc, watch};

/// Every test that includes this harness also includes `common`.
#[allow(unused_imports)]
pub use crate::common::TempDir;

/// The real `sensor run --mode ebpf` shipping to `grpc://{collector}` with the config file
/// `cfg`, health every second into `status`, stderr into `dir/sensor.log`. Killed on drop;
/// `stop` sends SIGTERM and asserts a clean exit.
pub struct GrpcSensor {
    child: Option<Child>,
    log: PathBuf,
}

impl GrpcSensor {
    pub fn spawn(dir: &Path, cfg: &Path, status: &Path, collector: &str) -> GrpcSensor {
        let log = dir.join("sensor.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args([
                "run",
                "--mode",
                "ebpf",
                "--health-interval",
                "1",
                "--config",
            ])
            .arg(cfg)
            .arg("--status")
            .arg(status)
            .args(["--output", &format!("grpc://{collector}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn sensor");
        GrpcSensor {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait up to `secs` for a successful exit.
    pub fn stop(mut self, secs: u64) {
        let mut c = self.child.take().unwrap();
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "sensor exited with {st}: {}", self.log());
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("sensor did not stop: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GrpcSensor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The collector library serving on its own thread and runtime (so tests can stop and
/// restart it while the shipper runs on the test's runtime).
pub struct InProcCollector {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: String,
    pub db: PathBuf,
}

impl InProcCollector {
    pub fn start(dir: &Path, listen: &str, tls: Option<TlsSection>) -> InProcCollector {
        let mut cfg = CollectorConfig::default();
        cfg.server.listen = listen.to_string();
        cfg.storage.path = dir.join("events.db");
        cfg.metrics.listen = String::new();
        if let Some(t) = tls {
            cfg.tls = t;
        }
        let db = cfg.storage.path.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let r = rt.block_on(collector::serve::serve(
                cfg,
                async move {
                    let _ = stop_rx.await;
                },
                |b| {
                    let _ = ready_tx.send(b.grpc.to_string());
                },
            ));
            if let Err(e) = r {
                eprintln!("collector failed: {e}");
            }
        });
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("collector did not start");
        InProcCollector {
            stop: Some(stop_tx),
            thread: Some(thread),
            addr,
            db,
        }
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit_once(':').unwrap().1.parse().unwrap()
    }
}

impl Drop for InProcCollector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Events stored in `db` matching `f`.
pub fn stored(db: &Path, f: &Filter) -> Vec<Stored> {
    match store::open_ro(db) {
        Ok(conn) => store::query::fetch(&conn, f).unwrap(),
        Err(_) => Vec::new(),
    }
}

/// Stored events whose argv/exe contains `marker`.
pub fn stored_with(db: &Path, marker: &str) -> Vec<Stored> {
    stored(
        db,
        &Filter {
            text: Some(marker.to_string()),
            ..Default::default()
        },
    )
}

/// Polls until `n` events with `marker` are stored (or panics after `secs`).
pub fn wait_stored(db: &Path, marker: &str, n: usize, secs: u64) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = stored_with(db, marker);
        if v.len() >= n {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events with {marker} stored after {secs} s",
            v.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Test defaults: plaintext loopback, quick retries, small batches' delay.
pub fn ship_cfg(spool: &Path, addr: &str) -> ShipConfig {
    ShipConfig {
        address: addr.to_string(),
        allow_plaintext_loopback: true,
        spool_dir: spool.to_path_buf(),
        backoff_initial_ms: 50,
        backoff_max_ms: 500,
        batch_max_delay_ms: 20,
        drain_timeout_secs: 10,
        keepalive_interval_secs: 2,
        keepalive_timeout_secs: 2,
        ..Default::default()
    }
}

/// The shipper running on the current runtime.
pub struct Shipper {
    pub tx: Option<mpsc::Sender<Event>>,
    stop: watch::Sender<bool>,
    handle: Option<tokio::task::JoinHandle<Result<(), ShipError>>>,
    pub stats: Arc<ShipStats>,
    pub counters: Arc<Counters>,
}

impl Shipper {
    pub fn start(cfg: ShipConfig) -> Shipper {
        let (tx, rx) = mpsc::channel(65_536);
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(ShipStats::default());
        let counters = Arc::new(Counters::default());
        let handle = tokio::spawn(sensor::sinks::grpc::run_shipper(
            rx,
            cfg,
            counters.clone(),
            stats.clone(),
            stop_rx,
        ));
        Shipper {
            tx: Some(tx),
            stop,
            handle: Some(handle),
            stats,
            counters,
        }
    }

    pub async fn send(&self, ev: Event) {
        self.tx.as_ref().unwrap().send(ev).await.unwrap();
    }

    /// Signals shutdown, closes the input, waits for the drain.
    pub async fn stop(mut self) -> Result<(), ShipError> {
        let _ = self.stop.send(true);
        self.tx.take();
        let h = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("shipper did not stop")
            .expect("shipper panicked")
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

pub fn process(pid: u32, argv: &[&str]) -> Process {
    Process {
        pid,
        tid: None,
        ppid: 1,
        start_time_unix_ns: Some(1_700_000_000_000_000_000 + i64::from(pid)),
        start_boottime_ns: u64::from(pid) * 1000,
        uid: 1000,
        euid: 1000,
        gid: 1000,
        egid: 1000,
        auid: Some(1000),
        session: Some(3),
        tty: Some("pts/1".into()),
        comm: argv.first().copied().unwrap_or("x").into(),
        exe: Some(format!("/usr/bin/{}", argv.first().copied().unwrap_or("x"))),
        cwd: Some("/tmp".into()),
        argv: Some(argv.iter().map(|s| s.to_string()).collect()),
        cgroup_id: 77,
        container_id: String::new(),
        ..Default::default()
    }
}

/// Event `i` of a synthetic stream: execs with the marker in argv, exits, connects, and a
/// health event now and then. Every event carries the marker (argv or comm).
pub fn synth(marker: &str, i: u64) -> Event {
    let idx = i.to_string();
    let pid = 10_000 + i as u32;
    let mut ev = Event::new(
        Kind::ProcessExec,
        Source::Ebpf,
        unix_now_ns(),
        "synthetic-host",
    );
    ev.process = Some(process(pid, &[marker, &idx, "two words", "bad\\xffbyte"]));
    ev.ktime_ns = Some(sensor::timefmt::monotonic_now_ns());
    match i % 4 {
        1 => {
            ev.set_kind(Kind::ProcessExit);
            ev.exit = Some(Exit {
                code: Some((i % 256) as i32),
                signal: None,
                core_dumped: false,
            });
        }
        2 => {
            ev.set_kind(Kind::NetConnect);
            ev.connect = Some(Connect {
                family: "ipv4".into(),
                protocol: "tcp".into(),
                dst_addr: "127.0.0.1".into(),
                dst_port: (i % 65_536) as u32,
                result: "refused".into(),
                errno: 111,
                ..Default::default()
            });
        }
        _ => {}
    }
    if i % 1000 == 999 {
        ev.health = Some(Health {
            mode: "ebpf".into(),
            reason: format!("{marker} health"),
            ..Default::default()
        });
        ev.set_kind(Kind::SensorHealth);
        ev.set_source(Source::Sensor);
        ev.process = Some(process(pid, &[marker, &idx]));
    }
    ev
}

/// The argv index of a stored synthetic event.
pub fn index_of(s: &Stored) -> u64 {
    s.event
        .process
        .as_ref()
        .unwrap()
        .argv
        .as_ref()
        .unwrap()
        .args[1]
        .parse()
        .unwrap()
}

/// Asserts that exactly the events `0..n` with `marker` are stored, once each.
pub fn assert_exactly_once(db: &Path, marker: &str, n: u64) {
    let v = stored_with(db, marker);
    let mut seen = vec![0u32; n as usize];
    for s in &v {
        let i = index_of(s);
        assert!(i < n, "unexpected index {i}");
        seen[i as usize] += 1;
    }
    let missing: Vec<usize> = (0..n as usize).filter(|&i| seen[i] == 0).collect();
    let dup: Vec<usize> = (0..n as usize).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && dup.is_empty(),
        "{} stored; missing {:?}...; duplicated {:?}...",
        v.len(),
        &missing[..missing.len().min(10)],
        &dup[..dup.len().min(10)]
    );
    assert_eq!(v.len() as u64, n);
}
