//! Shared helpers of the collector's integration tests: a temp dir, the real `collector`
//! binary as a child process, synthetic events, a raw gRPC client, and test certificates.
#![allow(dead_code)]

pub mod attack;
pub mod certs;
pub mod fleet;
pub mod nats;
pub mod raw;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sensor_proto::v1 as pb;
use serde_json::Value;

#[path = "../../../sensor/tests/common/temp_dir.rs"]
mod temp_dir;
#[allow(unused_imports)]
pub use temp_dir::TempDir;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_collector")
}

/// A running `collector serve`, stopped with SIGTERM (by pid) on drop.
pub struct Collector {
    child: Option<Child>,
    pub grpc: String,
    pub metrics: Option<String>,
    pub db: PathBuf,
    log: PathBuf,
}

impl Collector {
    /// Starts on a free loopback port with its database in `dir`.
    pub fn start(dir: &Path, extra: &[&str]) -> Collector {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> Collector {
        let db = dir.join("events.db");
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = dir.join(format!(
            "collector-{}.log",
            Instant::now().elapsed().as_nanos() ^ u128::from(rand_u32())
        ));
        let child = Command::new(bin())
            .args([
                "serve",
                "--listen",
                listen,
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--db")
            .arg(&db)
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn collector");
        let mut c = Collector {
            child: Some(child),
            grpc: String::new(),
            metrics: None,
            db,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let v: Value = serde_json::from_str(&text).unwrap();
                c.grpc = v["grpc"].as_str().unwrap().to_string();
                c.metrics = v["metrics"].as_str().map(String::from);
                return c;
            }
            if let Some(st) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("collector exited with {st}: {}", c.log());
            }
            assert!(
                Instant::now() < deadline,
                "collector did not start: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL by pid (a crash) and wait.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; panics when it does not stop cleanly.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "collector exited with {st}: {}", self.log());
                return self.log();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("collector did not stop within 20 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET /metrics.
    pub fn metrics_text(&self) -> String {
        use std::io::{Read, Write};
        let addr = self.metrics.as_ref().expect("metrics enabled");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        out
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// `collector <args>`; returns stdout, panics on failure.
pub fn run_cli(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run collector");
    assert!(
        out.status.success(),
        "collector {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `collector query --db DB --json <args>` as JSON values.
pub fn query(db: &Path, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["query", "--db", db.to_str().unwrap(), "--json"];
    a.extend_from_slice(args);
    run_cli(&a)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub const T0: i64 = 1_795_804_496_000_000_000;

pub fn exec_event(
    seq: u64,
    host: &str,
    pid: u32,
    session: Option<u32>,
    argv: &[&str],
) -> pb::Event {
    pb::Event {
        seq,
        time_unix_ns: T0 + seq as i64 * 1_000_000,
        host: host.into(),
        source: pb::Source::Ebpf as i32,
        kind: pb::Kind::ProcessExec as i32,
        process: Some(pb::Process {
            pid,
            ppid: 1,
            start_time_unix_ns: Some(T0),
            start_boottime_ns: 99,
            uid: 1000,
            euid: 1000,
            gid: 1000,
            egid: 1000,
            auid: Some(1000),
            session,
            tty: Some("pts/0".into()),
            comm: argv.first().copied().unwrap_or("x").into(),
            exe: Some(format!("/usr/bin/{}", argv.first().copied().unwrap_or("x"))),
            argv: Some(pb::Argv {
                args: argv.iter().map(|s| s.to_string()).collect(),
                truncated: false,
                omitted_bytes: 0,
            }),
            container_id: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn batch(sensor: &str, boot: &str, batch_id: u64, events: Vec<pb::Event>) -> pb::Batch {
    pb::Batch {
        sensor_id: sensor.into(),
        boot_id: boot.into(),
        first_seq: events.first().map_or(0, |e| e.seq),
        events,
        batch_id,
        sent_unix_ns: 0,
    }
}

pub fn hello(sensor: &str, boot: &str, host: &str) -> pb::Hello {
    pb::Hello {
        sensor_id: sensor.into(),
        boot_id: boot.into(),
        version: "test".into(),
        host: host.into(),
        kernel: "6.0-test".into(),
        mode: "ebpf".into(),
        capabilities: vec!["btf".into()],
        protocol_version: 1,
        sent_unix_ns: 0,
    }
}
