//! Command-line conventions: `--help` lists the allowed values of every closed choice,
//! `collector config --check FILE` validates like `serve`, `query --pid` is explained.
mod common;

use std::process::Command;

use common::*;

fn help(sub: &str) -> String {
    let out = Command::new(bin()).args([sub, "--help"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_allowed_values() {
    let q = help("query");
    assert!(q.contains("[possible values: table, json, ocsf]"), "{q}");
    assert!(
        q.contains("process_exec") && q.contains("sensor_health"),
        "{q}"
    );
    assert!(q.contains("Only events of this process id"), "{q}");
    let s = help("serve");
    assert!(s.contains("full") && s.contains("normal"), "{s}");
    assert!(
        s.contains("Possible values:") || s.contains("[possible values: full, normal]"),
        "{s}"
    );
    let out = Command::new(bin())
        .args(["serve", "--synchronous", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn config_check() {
    let dir = TempDir::new("cfg-check");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[storage]\nsynchronous = \"normal\"\n").unwrap();
    let out = Command::new(bin())
        .args(["config", "--check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
    for (name, body, needle) in [
        ("unknown.toml", "[storage]\nbogus = 1\n", "bogus"),
        (
            "value.toml",
            "[storage]\nsynchronous = \"off\"\n",
            "synchronous",
        ),
        ("syntax.toml", "[storage\n", "storage"),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        let out = Command::new(bin())
            .args(["config", "--check"])
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: {err}");
    }
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/collector.toml");
    if shipped.exists() {
        let out = Command::new(bin())
            .args(["config", "--check"])
            .arg(&shipped)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
