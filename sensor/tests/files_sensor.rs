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
