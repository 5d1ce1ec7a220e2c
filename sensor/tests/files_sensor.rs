//! Privileged (real sensor): a write in a watched tree is a `file` event naming the process.
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn file_events_name_the_process() {
    if !privileged() {
        return;
    }
    // On the root filesystem (ext4 here): fanotify FID mode.
    let w = WatchedTree::new("files-bin");
    let sensor = Sensor::start("ebpf", &["--config", w.config.to_str().unwrap()]);
    let target = w.tree.join("dropped-binary");
    let child = Command::new("/bin/sh")
        .args([
            "-c",
            &format!(
                "echo x > '{}'; chmod +x '{}'",
                target.display(),
                target.display()
            ),
        ])
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    let _ = child.wait_with_output();
    std::thread::sleep(Duration::from_millis(500));
    let reason = sensor.reason();
    let events = sensor.stop();
    assert!(reason.contains("files: fanotify"), "{reason}");
    let files: Vec<&serde_json::Value> = of_kind(&events, "file")
        .into_iter()
        .filter(|e| {
            e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("dropped-binary"))
        })
        .collect();
    assert!(
        !files.is_empty(),
        "no file event in {:?}",
        of_kind(&events, "file")
    );
    let ops: Vec<&str> = files
        .iter()
        .flat_map(|e| {
            e["file"]["ops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap())
        })
        .collect();
    assert!(ops.contains(&"create"), "{ops:?}");
    assert!(files.iter().all(|e| e["source"] == "fanotify"));
    assert!(
        files
            .iter()
            .any(|e| e["process"]["pid"] == pid && e["process"]["comm"] == "sh"),
        "{files:?}"
    );
}

/// Every event of one process carries one start, whatever its source: the exec (eBPF or
/// audit), the fanotify event (whose process is a /proc snapshot, with a tick start) and the
/// exit. In audit mode it is the /proc tick; in eBPF mode the kernel's ns, in that tick.
fn every_event_of_a_process_carries_one_start(mode: &str) {
    let w = WatchedTree::new("files-start");
    let sensor = Sensor::start(mode, &["--config", w.config.to_str().unwrap()]);
    let target = w.tree.join("one-start");
    let child = Command::new("/bin/sh")
        .args([
            "-c",
            &format!("sleep 0.3; echo x > '{}'; sleep 0.3", target.display()),
        ])
        .spawn()
        .unwrap();
    let pid = child.id();
    let ticks = sensor::enrich::procfs::read_stat(std::path::Path::new("/proc"), pid)
        .unwrap()
        .start_ticks;
    let _ = child.wait_with_output();
    std::thread::sleep(Duration::from_millis(500));
    let events = sensor.stop();
    let mine: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["process"]["pid"] == pid)
        .collect();
    let kinds: Vec<&str> = mine.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for want in ["process_exec", "file", "process_exit"] {
        assert!(
            kinds.contains(&want),
            "{mode}: no {want} of {pid}: {mine:?}"
        );
    }
    // SAFETY: sysconf has no preconditions.
    let tick_ns = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let start = mine[0]["process"]["start_boottime_ns"].as_u64().unwrap();
    assert_eq!(start / tick_ns, ticks, "{mode}: {}", mine[0]);
    if mode == "audit" {
        assert_eq!(start, ticks * tick_ns, "{mode}: the /proc tick");
    }
    for e in &mine {
        let p = &e["process"];
        assert_eq!(p["start_boottime_ns"], start, "{mode}: {e}");
        assert_eq!(
            p["start_time"], mine[0]["process"]["start_time"],
            "{mode}: {e}"
        );
        let incomplete = p["incomplete"].as_array().cloned().unwrap_or_default();
        assert!(!incomplete.contains(&"start_time".into()), "{mode}: {e}");
    }
}

#[test]
fn ebpf_every_event_of_a_process_carries_one_start() {
    if privileged() {
        every_event_of_a_process_carries_one_start("ebpf");
    }
}

#[test]
fn audit_every_event_of_a_process_carries_one_start() {
    if privileged() {
        every_event_of_a_process_carries_one_start("audit");
    }
}
