//! The real sensor streaming to a collector over gRPC: a marker workload is captured,
//! stored and found with its fields intact; the sensor holds exactly one TCP connection and
//! no listening socket; a clean stop leaves nothing unacknowledged in the spool.
//!
//! Privileged, and enabled once the runtime wires the shipper (`--output grpc://HOST:PORT`
//! plus the `[ship]` config section): set `WIRED` to true then.
mod common;
mod ship_support;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use collector::store::query::Filter;
use ship_support::sockets::{report, TCP_ESTABLISHED};
use ship_support::*;

/// Flip when `sensor run` supports gRPC output.
const WIRED: bool = true;

/// The sensor with a plaintext-loopback `[ship]` config spooling under `dir`.
fn start_sensor(dir: &Path, collector: &str) -> GrpcSensor {
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ship]\nallow_plaintext_loopback = true\nspool_dir = {:?}\nbatch_max_delay_ms = 20\n",
            dir.join("spool")
        ),
    )
    .unwrap();
    GrpcSensor::spawn(dir, &cfg, &dir.join("status.json"), collector)
}

fn wait_for(db: &Path, f: &Filter, what: &str) -> Vec<collector::store::query::Stored> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = stored(db, f);
        if !v.is_empty() {
            return v;
        }
        assert!(Instant::now() < deadline, "no {what} stored");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sensor_ships_marker_workload_over_one_connection() {
    if !WIRED || !common::privileged() {
        return;
    }
    let dir = TempDir::new("sensor");
    let col = InProcCollector::start(dir.path(), "127.0.0.1:0", None);
    let sensor = start_sensor(dir.path(), &col.addr);
    wait_for(
        &col.db,
        &Filter {
            kinds: vec!["sensor_health".into()],
            ..Default::default()
        },
        "health event",
    );

    let m = common::marker("ship");
    let odd = [
        std::ffi::OsStr::new(&m),
        std::ffi::OsStr::new("two words"),
        std::ffi::OsStr::new(""),
        std::ffi::OsStr::from_bytes(b"bad\xffbyte"),
    ];
    assert!(Command::new("/bin/echo")
        .args(odd)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    // A secret in argv: redacted before the spool and the wire.
    let secret_marker = format!("{m}-secret");
    assert!(Command::new("/bin/echo")
        .args([secret_marker.as_str(), "--password=hunter2"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let m7 = format!("{m}-exit7");
    assert_eq!(
        Command::new("/bin/sh")
            .args(["-c", "exit 7", &m7])
            .status()
            .unwrap()
            .code(),
        Some(7)
    );

    let execs = wait_for(
        &col.db,
        &Filter {
            kinds: vec!["process_exec".into()],
            text: Some(m.clone()),
            ..Default::default()
        },
        "marker exec",
    );
    let echo = execs
        .iter()
        .find(|s| s.event.process.as_ref().unwrap().comm == "echo")
        .expect("echo exec");
    let p = echo.event.process.as_ref().unwrap();
    assert_eq!(
        p.argv.as_ref().unwrap().args,
        ["/bin/echo", m.as_str(), "two words", "", "bad\\xffbyte"]
    );
    assert_eq!(p.uid, 0);
    assert!(p.exe.as_deref().unwrap_or("").ends_with("echo"));
    assert!(echo.event.time_unix_ns > 0);

    let sh = wait_for(
        &col.db,
        &Filter {
            kinds: vec!["process_exec".into()],
            text: Some(m7.clone()),
            ..Default::default()
        },
        "exit-7 exec",
    );
    let sh_pid = sh[0].event.process.as_ref().unwrap().pid;
    let exit = wait_for(
        &col.db,
        &Filter {
            kinds: vec!["process_exit".into()],
            pid: Some(sh_pid),
            ..Default::default()
        },
        "exit event",
    );
    assert!(exit
        .iter()
        .any(|e| e.event.exit.as_ref().unwrap().code == Some(7)));

    let secret = wait_for(
        &col.db,
        &Filter {
            kinds: vec!["process_exec".into()],
            text: Some(secret_marker.clone()),
            ..Default::default()
        },
        "secret exec",
    );
    let args = &secret[0]
        .event
        .process
        .as_ref()
        .unwrap()
        .argv
        .as_ref()
        .unwrap()
        .args;
    assert!(args.iter().any(|a| a.contains("[REDACTED]")), "{args:?}");
    fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return false;
        };
        rd.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                files_contain(&p, needle)
            } else {
                std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            }
        })
    }
    assert!(
        !files_contain(&dir.path().join("spool"), b"hunter2"),
        "secret in the spool"
    );
    assert!(!files_contain(&col.db, b"hunter2"), "secret stored");

    // Exactly one outbound TCP connection, to the collector; nothing listening.
    let r = report(sensor.pid());
    assert!(r.listening.is_empty(), "listening: {:?}", r.listening);
    assert_eq!(r.tcp.len(), 1, "tcp sockets: {:?}", r.tcp);
    assert_eq!(r.tcp[0].state, TCP_ESTABLISHED);
    assert_eq!(r.tcp[0].remote_port, col.port());

    sensor.stop(30);
    let segs = std::fs::read_dir(dir.path().join("spool").join("segments"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(segs, 0, "a clean stop drains the spool");
    col.stop();
}
