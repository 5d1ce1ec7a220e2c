//! Privileged (real sensor): processes that fork without exec are attributed. A subshell's
//! redirection (`(echo x > f)`) and the workers of a pre-forked server (background subshells
//! that write and exit at once) are gone before /proc can be read; their file events must
//! still carry the forking shell's exe and argv, their own pid, the shell as parent and first
//! ancestor, and no `incomplete` marker for exe or argv. Runs in eBPF and in audit mode.
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn audit_available() -> bool {
    if sensor::runtime::AUDIT_IMPLEMENTED {
        return true;
    }
    eprintln!("skipped: this build has no audit source");
    false
}

fn file_events<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    of_kind(events, "file")
        .into_iter()
        .filter(|e| {
            e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("/{name}")))
        })
        .collect()
}

fn marked(ev: &Value, what: &str) -> bool {
    ev["process"]["incomplete"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == what))
}

fn forked_writers(mode: &str) {
    // On the root filesystem: the watched tree must not be on the /tmp tmpfs.
    let w = WatchedTree::new("fork");
    let sensor = Sensor::start(mode, &["--config", w.config.to_str().unwrap()]);
    let m = marker("fork");
    let tree = &w.tree;
    // The shell forks a subshell for `( ... )` and a worker per `&`; none of them execs.
    let script = format!(
        "cd '{t}'; (echo sub > sub-{m}); for i in 1 2 3; do (echo $i > worker-$i-{m}) & done; wait; true",
        t = tree.display()
    );
    let shell = Command::new("/bin/bash")
        .args(["-c", &script, &m])
        .spawn()
        .expect("spawn bash");
    let shell_pid = u64::from(shell.id());
    assert!(shell.wait_with_output().unwrap().status.success());
    std::thread::sleep(Duration::from_millis(300));
    let events = sensor.stop();

    let shell_exec = execs_with_arg(&events, &m);
    assert_eq!(shell_exec.len(), 1, "the shell's exec: {shell_exec:?}");
    let shell_exe = shell_exec[0]["process"]["exe"].clone();
    let shell_argv = shell_exec[0]["process"]["argv"].clone();
    let names: Vec<String> = std::iter::once(format!("sub-{m}"))
        .chain((1..=3).map(|i| format!("worker-{i}-{m}")))
        .collect();
    for name in &names {
        let evs = file_events(&events, name);
        assert!(!evs.is_empty(), "{mode}: no file event for {name}");
        for ev in evs {
            let p = &ev["process"];
            assert_ne!(
                p["pid"], shell_pid,
                "{mode}: written by a forked child: {ev}"
            );
            assert_eq!(p["ppid"], shell_pid, "{mode}: {ev}");
            assert_eq!(p["exe"], shell_exe, "{mode}: the shell's image: {ev}");
            assert_eq!(p["argv"], shell_argv, "{mode}: the shell's argv: {ev}");
            assert_eq!(p["comm"], "bash", "{mode}: {ev}");
            assert_eq!(
                p["ancestors"][0]["pid"], shell_pid,
                "{mode}: the shell is the first ancestor: {ev}"
            );
            for what in ["process", "exe", "argv"] {
                assert!(!marked(ev, what), "{mode}: {what} incomplete: {ev}");
            }
        }
    }
    let health = of_kind(&events, "sensor_health");
    let last = health.last().expect("a final health event");
    assert!(
        last["health"]["events"]["forks_seen"].as_u64().unwrap_or(0) >= 4,
        "{mode}: forks counted: {last}"
    );
}

#[test]
fn forked_children_are_attributed_ebpf() {
    if privileged() {
        forked_writers("ebpf");
    }
}

#[test]
fn forked_children_are_attributed_audit() {
    if privileged() && audit_available() {
        forked_writers("audit");
    }
}
