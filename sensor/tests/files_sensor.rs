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
    let dir = std::path::PathBuf::from("/var/tmp").join(marker("files-bin"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[files]\nwatch = [{:?}]\n",
            dir.join("tree").display().to_string()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("tree")).unwrap();
    let sensor = Sensor::start("ebpf", &["--config", cfg.to_str().unwrap()]);
    let target = dir.join("tree").join("dropped-binary");
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
    let _ = std::fs::remove_dir_all(&dir);
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
