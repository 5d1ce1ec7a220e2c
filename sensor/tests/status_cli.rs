//! `sensor status` against the real sensor: healthy while it runs (exit 0, mode, events by
//! source, CPU and RSS), degraded while it cannot reach its collector (exit 1), not running
//! after a crash (SIGKILL: exit 3, the pid is gone) and after a clean stop (exit 3, the status
//! file is removed). Privileged (loads eBPF).
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{privileged, Sensor};

fn status(path: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["status", "--path"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Waits until `sensor status` exits with `code`; returns its output.
fn wait_status(path: &Path, code: i32, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (c, out) = status(path);
        if c == code {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "sensor status did not exit {code} within {secs}s; last exit {c}:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn config(dir: &Path, body: &str) -> String {
    let path = dir.join("sensor.toml");
    std::fs::write(&path, format!("[status]\ninterval_secs = 1\n{body}")).unwrap();
    path.display().to_string()
}

#[test]
fn status_of_a_running_then_crashed_sensor() {
    if !privileged() {
        return;
    }
    let tmp = common::TempDir::new("status-cfg");
    let dir = tmp.0.clone();
    let cfg = config(&dir, "");
    let mut sensor = Sensor::start("ebpf", &["--config", &cfg]);
    let path = sensor.status_path();
    // Some activity to count.
    for _ in 0..5 {
        Command::new("/bin/true").status().unwrap();
    }
    // The file is rewritten every second: wait for one that counts the execs above (all
    // five: a file written while the reader had counted only some of them says
    // `process_exec` too).
    let execs = |path: &Path| {
        let json = Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["status", "--json", "--path"])
            .arg(path)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&json.stdout)
            .ok()
            .and_then(|v| v["events_by_source"]["ebpf"]["process_exec"].as_u64())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = wait_status(&path, 0, 20);
    while !(out.contains("process_exec") && execs(&path) >= 5) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        out = wait_status(&path, 0, 20);
    }
    for want in [
        "sensor: running",
        &format!("pid {}", sensor.pid()),
        "mode: ebpf",
        "cpu: ",
        "rss ",
        "events by source:",
        "process_exec",
        "output: JSON lines to",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    let json = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["status", "--json", "--path"])
        .arg(&path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["mode"], "ebpf");
    assert!(
        v["events_by_source"]["ebpf"]["process_exec"]
            .as_u64()
            .unwrap()
            >= 5
    );
    assert!(v["rss_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["nice"], 10, "the default nice value is applied");

    sensor.kill_hard();
    let out = wait_status(&path, 3, 5);
    assert!(out.contains("not running") && out.contains("gone"), "{out}");
    drop(sensor);
}

#[test]
fn status_after_a_clean_stop_is_not_running() {
    if !privileged() {
        return;
    }
    let sensor = Sensor::start("ebpf", &[]);
    let path = sensor.status_path();
    wait_status(&path, 0, 20);
    sensor.stop();
    let (code, out) = status(&path);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no status file"), "{out}");
}

#[test]
fn status_is_degraded_while_the_collector_is_unreachable() {
    if !privileged() {
        return;
    }
    let tmp = common::TempDir::new("status-deg");
    let dir = tmp.0.clone();
    // A loopback port with nothing listening: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(
        &dir,
        &format!(
            "disconnected_degraded_secs = 2\n[output]\ntarget = \"grpc\"\n[ship]\naddress = \"127.0.0.1:{port}\"\nallow_plaintext_loopback = true\nspool_dir = {:?}\n",
            dir.join("spool")
        ),
    );
    let sensor = Sensor::start_status_only("ebpf", &["--config", &cfg]);
    let out = wait_status(&sensor.status_path(), 1, 30);
    assert!(out.contains("sensor: degraded"), "{out}");
    assert!(out.contains("DISCONNECTED"), "{out}");
    assert!(out.contains("not connected to the collector"), "{out}");
    assert!(out.contains("events pending"), "{out}");
    drop(sensor);
}
