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
    const N: usize = 2000;
    let sensor = Sensor::start("ebpf", &[]);
    let m = marker("s");
    for i in 0..N {
        let status = Command::new("/bin/true")
            .arg(format!("{m}-{i}"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let events = sensor.stop();
    let prefix = format!("{m}-");
    let pids: std::collections::HashSet<u64> = events
        .iter()
        .filter(|e| e["kind"] == "process_exec")
        .filter(|e| {
            e["process"]["argv"][1]
                .as_str()
                .is_some_and(|a| a.starts_with(&prefix))
        })
        .map(|e| e["process"]["pid"].as_u64().unwrap())
        .collect();
    let execs = events
        .iter()
        .filter(|e| e["kind"] == "process_exec")
        .filter(|e| {
            e["process"]["argv"][1]
                .as_str()
                .is_some_and(|a| a.starts_with(&prefix))
        })
        .count();
    let exits = events
        .iter()
        .filter(|e| e["kind"] == "process_exit")
        .filter(|e| {
            e["process"]["pid"]
                .as_u64()
                .is_some_and(|p| pids.contains(&p))
        })
        .count();
    let drops = final_drops(&events);
    eprintln!("storm: {execs} exec, {exits} exit events of {N}; drops reported {drops}");
    assert!(execs <= N && exits <= execs);
    let shortfall = (N - execs) + (execs - exits);
    assert!(
        shortfall as u64 <= drops,
        "{shortfall} events missing but only {drops} drops reported"
    );
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
