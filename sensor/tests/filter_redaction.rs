//! Privileged (real sensor): routine noise is dropped and counted, its exits go with it, a
//! secret in argv never reaches the output, and conntrack flows are off by default.
mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn noise_is_dropped_and_counted_and_secrets_are_redacted() {
    if !privileged() {
        return;
    }
    // A ruleset that makes the kernel track connections, so flows *would* be available.
    let table = format!("sensor_it_off_{}", std::process::id());
    let nft = |args: &[&str]| {
        Command::new("nft")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(nft(&["add", "table", "inet", &table]));
    assert!(nft(&[
        "add",
        "chain",
        "inet",
        &table,
        "c",
        "{ type filter hook output priority 0; policy accept; }"
    ]));
    assert!(nft(&[
        "add", "rule", "inet", &table, "c", "ct", "state", "new"
    ]));
    let sensor = Sensor::start("ebpf", &[]);
    let m = marker("nr");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    drop(std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    let date = Command::new("/bin/date")
        .arg("+%s")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let date_pid = date.id() as u64;
    let _ = date.wait_with_output();
    assert!(Command::new("/bin/echo")
        .args([m.as_str(), "--password=hunter2", "-u", "admin"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let output = sensor.output.clone();
    let events = sensor.stop();
    let _ = nft(&["delete", "table", "inet", &table]);
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    // the file is removed with the sensor; `events` holds its content
    let _ = text;

    let echo = execs_with_arg(&events, &m);
    assert_eq!(echo.len(), 1);
    let argv: Vec<&str> = echo[0]["process"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(argv.iter().any(|a| a.contains("[REDACTED]")), "{argv:?}");
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("hunter2"), "secret leaked");

    assert!(
        !events.iter().any(|e| e["process"]["pid"] == date_pid
            && (e["kind"] == "process_exec" || e["kind"] == "process_exit")),
        "date's exec and exit are dropped together"
    );
    let last = of_kind(&events, "sensor_health").pop().unwrap().clone();
    let filtered = last["health"]["events"]["filtered_routine_info"]
        .as_u64()
        .unwrap_or(0);
    assert!(filtered >= 1, "filtered count reported: {last}");
    assert!(
        of_kind(&events, "flow").is_empty(),
        "conntrack is off by default"
    );
}
