//! `sensor config --check FILE` on the real binary: a valid file passes; an unknown key, a
//! wrong type, a syntax error and an out-of-range value fail with exit 1 and a message that
//! names the key and the line. Unprivileged.
mod common;

use std::process::Command;

use common::TempDir;

fn check(dir: &TempDir, name: &str, text: &str) -> (i32, String) {
    let path = dir.0.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["config", "--check"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn config_check_names_key_and_line() {
    let dir = TempDir::new("cfgcheck");

    let (code, out) = check(
        &dir,
        "valid.toml",
        "[sensor]\nmode = \"auto\"\n\n[limits]\ncpu_percent = 10.0\nnice = 5\n\n[log]\nformat = \"json\"\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"), "{out}");

    let (code, out) = check(
        &dir,
        "unknown.toml",
        "[sensor]\nmode = \"auto\"\n\n[health]\ninterval_sec = 5\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("interval_sec") && out.contains("line 5"),
        "{out}"
    );

    let (code, out) = check(
        &dir,
        "wrongtype.toml",
        "[limits]\ncpu_percent = 10.0\ncpu_window_secs = \"ten\"\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("line 3") && out.contains("invalid type"),
        "{out}"
    );

    let (code, out) = check(&dir, "syntax.toml", "[sensor]\nmode = \"auto\n");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 2"), "{out}");

    let (code, out) = check(
        &dir,
        "range.toml",
        "[status]\ninterval_secs = 2\n\n[limits]\n\nnice = 40\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("limits.nice") && out.contains("line 6"),
        "{out}"
    );

    let missing = dir.0.join("absent.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["config", "--check"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.toml"));
}
