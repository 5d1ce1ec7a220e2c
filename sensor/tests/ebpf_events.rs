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
    // A set-uid-root copy of `id` on the root filesystem (not a nosuid tmpfs).
    let dir = std::path::PathBuf::from("/var/tmp").join(marker("suid"));
    std::fs::create_dir_all(&dir).unwrap();
    let suid = dir.join("suid-id");
    std::fs::copy("/usr/bin/id", &suid).unwrap();
    std::os::unix::fs::chown(&suid, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&suid, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let sensor = Sensor::start("ebpf", &[]);
    let m = marker("pv");
    // root drops to nobody with setresuid/setresgid, then runs the set-uid binary.
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&suid)
        .arg(&m)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let events = sensor.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = status; // `id` rejects the extra argument; the exec is what matters

    // setpriv (argv has the marker too) then, in the same process, the set-uid binary.
    let exec: Vec<&serde_json::Value> = execs_with_arg(&events, &m)
        .into_iter()
        .filter(|e| e["process"]["comm"] == "suid-id")
        .collect();
    assert_eq!(exec.len(), 1);
    let pid = exec[0]["process"]["pid"].as_u64().unwrap();
    let changes: Vec<&serde_json::Value> = of_kind(&events, "privilege_change")
        .into_iter()
        .filter(|e| e["process"]["pid"] == pid)
        .collect();
    let drop = changes
        .iter()
        .find(|e| e["privilege"]["new_uid"] == 65534 && e["privilege"]["old_uid"] == 0)
        .unwrap_or_else(|| panic!("setresuid drop to nobody in {changes:?}"));
    assert_eq!(drop["privilege"]["via"], "setresuid");
    let up = changes
        .iter()
        .find(|e| e["privilege"]["via"] == "exec_setuid")
        .unwrap_or_else(|| panic!("exec of set-uid binary in {changes:?}"));
    assert_eq!((up["privilege"]["old_euid"].as_u64(), up["privilege"]["new_euid"].as_u64()), (Some(65534), Some(0)));
    assert_eq!(up["privilege"]["new_uid"], 65534);
    assert_eq!(exec[0]["process"]["euid"], 0);
    assert_eq!(exec[0]["process"]["uid"], 65534);
}
