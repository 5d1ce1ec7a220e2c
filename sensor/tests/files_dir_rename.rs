//! Privileged: the fanotify-fid rung caches directory paths by handle and puts in-kernel
//! ignore marks on directories outside the trees. A directory moved into a tree must have its
//! later entries reported under its new path, also when the move's old side cannot be
//! resolved any more (its old parent was removed before the sensor read the move): its cached
//! old path must go, and its ignore mark must come off. See docs/ARCHITECTURE.md#files.
//!
//! The capture runs in this process (whose own events it ignores), so every file operation
//! runs in a child `sh`. The channel holds one event and is not read while the directory
//! moves: the reader is stopped in the middle of its queue, with the directory's old path
//! cached and marked ignored, and the move, the removal of the old parent and the new entry
//! still queued behind it.
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sensor::event::Event;
use sensor::sources::files::{FileCapture, FileMode, FileModeRequest, FilesConfig};
use sensor::sources::SourceCtx;
use sensor::telemetry::counters::Counters;
use tokio::sync::mpsc;

fn sh(script: &str) {
    let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "{script}");
}

fn paths(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| e.file.as_ref())
        .flat_map(|f| [Some(f.path.clone()), f.new_path.clone()])
        .flatten()
        .collect()
}

#[test]
fn entries_of_a_directory_moved_in_from_a_removed_parent_get_its_new_path() {
    if !common::privileged() {
        return;
    }
    // On the root filesystem: the system temp dir may be a tmpfs without file handles.
    let t = common::TempDir::new_in(Path::new("/var/tmp"), "files-dir-rename");
    let root = std::fs::canonicalize(t.path()).unwrap();
    let (w, outside) = (root.join("watched"), root.join("outside"));
    let (p, q) = (outside.join("p"), w.join("q"));
    std::fs::create_dir_all(p.join("d")).unwrap();
    std::fs::create_dir_all(&q).unwrap();
    let cfg = FilesConfig {
        mode: FileModeRequest::FanotifyFid,
        watch: vec![w.display().to_string()],
        ..FilesConfig::default()
    };
    let (tx, mut rx) = mpsc::channel(1);
    let ctx = SourceCtx {
        tx,
        counters: std::sync::Arc::new(Counters::default()),
        host: "it".into(),
    };
    let mut cap = FileCapture::start(&cfg, ctx).expect("start file capture");
    assert_eq!(cap.mode, FileMode::FanotifyFid, "{}", cap.reason);
    assert!(
        cap.reason.contains("ignore marks (FAN_MARK"),
        "{}",
        cap.reason
    );
    // An entry in d, outside the tree: the reader resolves d (caching its path) and marks it
    // ignored.
    let d = p.join("d");
    sh(&format!(": > '{}'", d.join("x").display()));
    std::thread::sleep(Duration::from_millis(500));
    // Two entries in the tree: the first event fills the channel, the reader waits to send
    // the second.
    sh(&format!(
        ": > '{}'; : > '{}'",
        w.join("one").display(),
        w.join("two").display()
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!rx.is_empty(), "no event for {}/one", w.display());
    std::thread::sleep(Duration::from_millis(500));
    // Queued behind it: d moves into the tree, its old parent goes, an entry appears in it.
    sh(&format!(
        "mv '{}' '{}' && rmdir '{}' && : > '{}'",
        d.display(),
        q.join("d").display(),
        p.display(),
        q.join("d/three").display()
    ));
    let three = q.join("d/three").display().to_string();
    let mut evs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !paths(&evs).contains(&three) {
        match rx.try_recv() {
            Ok(e) => evs.push(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    cap.stop();
    while let Ok(e) = rx.try_recv() {
        evs.push(e);
    }
    let all = paths(&evs);
    eprintln!("{all:#?}");
    let old = d.display().to_string();
    assert!(
        !all.iter().any(|p| p.starts_with(&old)),
        "an entry of the moved directory was reported under its old path: {all:?}"
    );
    assert!(all.contains(&three), "{three} not reported: {all:?}");
}
