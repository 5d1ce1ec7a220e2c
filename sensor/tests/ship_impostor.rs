//! The real sensor against collector impostors (an independent Python grpcio server, and a
//! socket planted by user `nobody`):
//! - acks for batch ids the sensor never sent delete nothing from its spool, and are counted
//!   (`acks_unknown` in its status);
//! - a Unix socket owned by `nobody` where the collector's should be receives nothing: the
//!   sensor refuses it (owner not root) before sending a byte, and keeps its events spooled;
//! - and the default local mode works: the real sensor delivers over root's socket.
//!
//! Privileged (the sensor runs as root; `nobody` via setpriv).
mod common;
mod ship_support;

#[path = "../../collector/tests/common/attack.rs"]
mod attack;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn status(s: &Sensor) -> Value {
    let text = std::fs::read_to_string(s.status_path()).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn collector_status(s: &Sensor) -> Value {
    status(s)["output"]["collector"].clone()
}

/// Runs `true` a few times so the sensor has events to ship.
fn workload(n: usize) {
    for _ in 0..n {
        let _ = std::process::Command::new("/bin/true").status();
    }
}

#[test]
fn fake_acks_for_batches_never_sent_empty_nothing_and_are_counted() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("fake-acks");
    let py = attack::Py::new(dir.0.as_path());
    let fake = py.hold(
        &[
            "fake-collector",
            "--stubs",
            py.stubs.to_str().unwrap(),
            "--per-batch",
            "200",
        ],
        false,
    );
    let port = fake.first["port"].as_u64().unwrap();
    let cfg = dir.0.as_path().join("sensor.toml");
    // One batch in flight: everything after batch 1 stays in the spool, unsent; the
    // impostor acks those ids (2..=201) without ever receiving them.
    std::fs::write(
        &cfg,
        format!(
            "[ship]\nallow_plaintext_loopback = true\nmax_in_flight = 1\nbatch_max_delay_ms = 20\nspool_dir = {:?}\n",
            dir.0.as_path().join("spool")
        ),
    )
    .unwrap();
    let s = Sensor::start_status_only(
        "auto",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--output",
            &format!("grpc://127.0.0.1:{port}"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let c = loop {
        workload(20);
        let c = collector_status(&s);
        if c["acks_unknown"].as_u64().unwrap_or(0) >= 200
            && c["spool_pending_events"].as_u64().unwrap_or(0) > 0
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no fake acks seen: {c} {}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("sensor status under fake acks: {c}");
    assert_eq!(c["events_acked"], 0, "nothing was really acknowledged: {c}");
    s.stop();
    let seen = fake.finish();
    eprintln!("impostor: {seen}");
    assert_eq!(seen["received"], serde_json::json!([1]), "{seen}");
    assert!(seen["faked"].as_u64().unwrap() >= 200, "{seen}");
    // Everything the sensor spooled is still there: no segment was emptied by a fake ack.
    let spooled: u64 = std::fs::read_dir(dir.0.as_path().join("spool/segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        spooled > 0,
        "the spool still holds the unacknowledged batches"
    );
}

#[test]
fn a_socket_planted_by_nobody_receives_nothing() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("impostor-sock");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.0.as_path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let py = attack::Py::new(dir.0.as_path());
    // nobody's own directory and listening socket (what an impostor controls).
    let planted = dir.0.as_path().join("nobody");
    std::fs::create_dir(&planted).unwrap();
    let ok = std::process::Command::new("chown")
        .args(["nobody:nogroup", planted.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
    let sock = planted.join("collector.sock");
    let listener = py.hold(&["listen", "--socket", sock.to_str().unwrap()], true);
    assert_eq!(listener.first["bound"], true, "{}", listener.first);

    let cfg = dir.0.as_path().join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ship]\nbatch_max_delay_ms = 20\nspool_dir = {:?}\n",
            dir.0.as_path().join("spool")
        ),
    )
    .unwrap();
    let s = Sensor::start_status_only(
        "auto",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--output",
            &format!("unix:{}", sock.display()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = loop {
        workload(10);
        let c = collector_status(&s);
        if c["connect_failures"].as_u64().unwrap_or(0) >= 2
            && c["spool_pending_events"].as_u64().unwrap_or(0) > 0
        {
            break c;
        }
        assert!(Instant::now() < deadline, "{c} {}", s.stderr());
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("sensor status against the planted socket: {c}");
    let err = c["last_error"].as_str().unwrap();
    assert!(err.contains("not root"), "{err}");
    assert_eq!(c["connected"], false);
    s.stop();
    let got = listener.finish();
    eprintln!("impostor listener: {got}");
    assert_eq!(got["connections"], 0, "{got}");
    assert_eq!(got["bytes"], 0, "{got}");
}

#[test]
fn local_mode_delivers_over_roots_socket() {
    if !privileged() {
        return;
    }
    let dir = TempDir::new("local-mode");
    let sock = dir.0.join("run/collector.sock");
    let col =
        ship_support::InProcCollector::start(&dir.0, &format!("unix:{}", sock.display()), None);
    let cfg = dir.0.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ship]\nbatch_max_delay_ms = 20\nspool_dir = {:?}\n",
            dir.0.join("spool")
        ),
    )
    .unwrap();
    let s = Sensor::start_status_only(
        "auto",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--output",
            &format!("unix:{}", sock.display()),
        ],
    );
    let m = marker("localmode");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = std::process::Command::new("/bin/echo")
            .arg(&m)
            .stdout(std::process::Stdio::null())
            .status();
        if !ship_support::stored_with(&col.db, &m).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing stored over the local socket: {} {}",
            collector_status(&s),
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let c = collector_status(&s);
    assert_eq!(c["connected"], true, "{c}");
    s.stop();
    let got = ship_support::stored_with(&col.db, &m);
    // The local root sensor keeps its own id (no identity suffix).
    assert!(!got[0].sensor_id.contains('@'), "{}", got[0].sensor_id);
    col.stop();
}
