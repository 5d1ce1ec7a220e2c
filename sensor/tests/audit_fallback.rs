//! Privileged: with bpf() denied by seccomp, `--mode auto` must fall back to audit on its own
//! and report the same marker workload with the same fields as eBPF mode.
mod common;

use std::process::Command;

use common::*;

/// The host's audit state, to prove the sensor restored it.
fn audit_state() -> (String, usize) {
    let probe = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["probe", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let detail = v["capabilities"]["audit"]["detail"]
        .as_str()
        .unwrap_or("")
        .to_string();
    // "enabled=E pid=P backlog_limit=B lost=L": compare without the lost counter.
    let state = detail.split(" lost=").next().unwrap_or("").to_string();
    (state, 0)
}

#[test]
fn auto_falls_back_to_audit_without_bpf_and_reports_the_same_events() {
    if !privileged() {
        return;
    }
    let before = audit_state();
    let sensor = Sensor::start_without_bpf("auto", &[]);
    assert_eq!(
        sensor.mode(),
        "audit",
        "auto must choose audit when bpf() is denied"
    );
    let expected = workload::run_marker_workload();
    // audit delivers asynchronously (kauditd); give it a moment before stopping.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let events = sensor.stop();
    let health = of_kind(&events, "sensor_health");
    let reason = health[0]["health"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("bpf"), "reason names bpf(): {reason}");
    assert_eq!(health[0]["health"]["mode"], "audit");
    workload::assert_marker_events(&events, &expected, "audit");
    assert_eq!(final_drops(&events), 0, "{:?}", health.last());
    assert_eq!(
        audit_state(),
        before,
        "audit enabled/pid/backlog restored after stop"
    );
}

#[test]
fn audit_exec_storm_is_complete_or_counted() {
    if !privileged() {
        return;
    }
    // audit delivers asynchronously (kauditd): let it catch up before stopping.
    workload::exec_storm_is_complete_or_counted(
        "audit",
        1000,
        std::time::Duration::from_millis(500),
    );
}

#[test]
fn deleted_rules_are_detected_reported_and_repaired() {
    if !privileged() {
        return;
    }
    let dir = std::env::temp_dir().join(marker("audit-repair"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("sensor.toml");
    std::fs::write(&cfg, "[audit]\ncheck_interval_secs = 1\n").unwrap();
    let sensor = Sensor::start("audit", &["--config", cfg.to_str().unwrap()]);
    // Another tool wipes our rules.
    let out = Command::new("auditctl")
        .args(["-D", "-k", "sensor"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let listed =
        String::from_utf8_lossy(&Command::new("auditctl").arg("-l").output().unwrap().stdout)
            .into_owned();
    assert!(listed.contains("key=sensor"), "rules repaired: {listed}");
    // And the capture still works.
    let m = marker("rp");
    assert!(Command::new("/bin/true")
        .arg(&m)
        .status()
        .unwrap()
        .success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let events = sensor.stop();
    assert_eq!(execs_with_arg(&events, &m).len(), 1);
    let last = of_kind(&events, "sensor_health").pop().unwrap().clone();
    assert!(
        last["health"]["events"]["audit_rules_repaired"]
            .as_u64()
            .unwrap()
            >= 1,
        "{last}"
    );
    let listed =
        String::from_utf8_lossy(&Command::new("auditctl").arg("-l").output().unwrap().stdout)
            .into_owned();
    assert!(
        !listed.contains("key=sensor"),
        "rules removed at exit: {listed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn privilege_changes_in_audit_mode() {
    if !privileged() {
        return;
    }
    workload::privilege_workload("audit");
}

#[test]
fn capability_changes_in_audit_mode() {
    if !privileged() {
        return;
    }
    workload::capability_workload("audit");
}
