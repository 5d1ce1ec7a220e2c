//! Unprivileged: `--help` lists the allowed modes, and `sensor status` exits 4 (not 1, which
//! means degraded) when it cannot read its status file or its config.
use std::process::Command;

fn sensor(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_help_lists_modes() {
    let out = sensor(&["run", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("auto") && text.contains("ebpf") && text.contains("audit"),
        "{text}"
    );
    assert!(text.contains("ocsf:FILE"), "{text}");
    let bad = sensor(&["run", "--mode", "kprobe"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values: auto, ebpf, audit"));
}

#[test]
fn status_exits_4_when_unreadable() {
    let dir = std::env::temp_dir().join(format!("sensor-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A directory where the file should be: cannot be read.
    let out = sensor(&["status", "--path", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    // Not a status file.
    let garbage = dir.join("status.json");
    std::fs::write(&garbage, "{not json").unwrap();
    let out = sensor(&["status", "--path", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid"));
    // A config that does not parse.
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[status\n").unwrap();
    let out = sensor(&["status", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("config"));
    // A missing file is still "not running".
    let out = sensor(&["status", "--path", dir.join("none.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    std::fs::remove_dir_all(&dir).unwrap();
}
