//! Privileged: the real sensor in eBPF mode against a workload of unique markers.
mod common;

use std::process::Command;

use common::*;

#[test]
fn exec_exit_connect_fields() {
    if !privileged() {
        return;
    }
    let sensor = Sensor::start("ebpf", &[]);
    assert_eq!(sensor.mode(), "ebpf");
    let expected = workload::run_marker_workload();
    let events = sensor.stop();
    workload::assert_marker_events(&events, &expected, "ebpf");
    // eBPF extras: the path as passed to execve, and nothing lost.
    let echo = execs_with_arg(&events, &expected.m);
    assert_eq!(echo[0]["process"]["filename"], "/bin/echo");
    let health = of_kind(&events, "sensor_health");
    assert!(health.len() >= 2);
    assert_eq!(final_drops(&events), 0, "{:?}", health.last());
}

#[test]
fn exec_storm_is_complete_or_counted() {
    if !privileged() {
        return;
    }
    workload::exec_storm_is_complete_or_counted("ebpf", 2000, std::time::Duration::ZERO);
}

#[test]
fn sigint_flushes_and_exits_cleanly() {
    if !privileged() {
        return;
    }
    let sensor = Sensor::start("ebpf", &[]);
    let m = marker("i");
    assert!(Command::new("/bin/true")
        .arg(&m)
        .status()
        .unwrap()
        .success());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGINT) };
    let events = sensor.stop();
    assert_eq!(execs_with_arg(&events, &m).len(), 1);
    assert_eq!(
        events.last().unwrap()["kind"],
        "sensor_health",
        "final health event last"
    );
}

#[test]
fn privilege_changes_by_syscall_and_setuid_exec() {
    if !privileged() {
        return;
    }
    workload::privilege_workload("ebpf");
}
