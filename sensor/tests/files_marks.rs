//! Privileged (real sensor): with in-kernel ignore marks on directories outside the watched
//! trees (fanotify-fid), nothing inside the trees is hidden:
//! - nested directories created and written at once (mkdir-then-write races) are all seen,
//!   with the writing process;
//! - a directory that was ignored outside the trees and is then moved in is seen again;
//! - attribute changes come from inode marks on the trees' directories, also on a directory
//!   made while running;
//! - the outside storm gets its directory ignored, and health says so.
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Writes `script` to a file and runs it with /bin/sh; returns the shell's pid.
fn sh(dir: &std::path::Path, name: &str, script: &str) -> u64 {
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    let out = Command::new("/bin/sh")
        .arg(&path)
        .output()
        .expect("run /bin/sh");
    assert!(out.status.success(), "{name}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .expect("the script prints $$")
}

fn file_events<'a>(events: &'a [Value], needle: &str) -> Vec<&'a Value> {
    of_kind(events, "file")
        .into_iter()
        .filter(|e| {
            e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.contains(needle))
        })
        .collect()
}

fn ops_of(events: &[&Value], path: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["file"]["path"] == path)
        .flat_map(|e| e["file"]["ops"].as_array().unwrap().iter())
        .map(|o| o.as_str().unwrap().to_string())
        .collect()
}

fn last_health(events: &[Value]) -> &Value {
    of_kind(events, "sensor_health")
        .into_iter()
        .last()
        .expect("a health event")
}

#[test]
fn ignore_marks_hide_nothing_inside_the_trees() {
    if !privileged() {
        return;
    }
    // The ext4 root (FID-capable here), not /tmp.
    let t = TempDir(PathBuf::from("/var/tmp").join(marker("files-marks")));
    let (tree, outside) = (t.0.join("tree"), t.0.join("outside"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::create_dir_all(outside.join("mv")).unwrap();
    for i in 0..10 {
        std::fs::create_dir_all(outside.join(format!("r{i}"))).unwrap();
    }
    // A tree that is one file, in a directory of its own.
    let single = t.0.join("lone").join("single.conf");
    std::fs::create_dir_all(single.parent().unwrap()).unwrap();
    std::fs::write(&single, b"x").unwrap();
    let cfg = t.0.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[files]\nwatch = [{:?}, {:?}]\n[limits]\ncpu_percent = 0\n",
            tree.display().to_string(),
            single.display().to_string()
        ),
    )
    .unwrap();
    let sensor = Sensor::start("ebpf", &["--config", cfg.to_str().unwrap()]);
    let tag = marker("race");
    let (tree_s, out_s, single_s) = (tree.display(), outside.display(), single.display());
    // 1. Outside: a storm in `outside` and in `outside/mv`, so both get ignore marks.
    sh(
        &t.0,
        "outside.sh",
        &format!(
            "i=0; while [ $i -lt 300 ]; do echo x > {out_s}/o$i; rm {out_s}/o$i; \
             echo y > {out_s}/mv/m$i; echo z > {out_s}/r$((i % 10))/o; i=$((i+1)); done; \
             echo $$\n"
        ),
    );
    std::thread::sleep(Duration::from_millis(700));
    // 2. mkdir-then-write, nested, at once: every file must be seen with this shell's pid.
    let race_pid = sh(
        &t.0,
        "race.sh",
        &format!(
            "i=0; while [ $i -lt 40 ]; do d={tree_s}/d$i/e/f; mkdir -p $d; \
             echo {tag} > $d/file-{tag}-$i; echo {tag} > {tree_s}/d$i/top-{tag}-$i; \
             i=$((i+1)); done; sleep 0.3; chmod 600 {tree_s}/d7/e/f/file-{tag}-7; \
             mkdir {tree_s}/d7/e/f/g; sleep 0.3; touch {tree_s}/d7/e/f/g/t-{tag}; \
             sleep 0.3; chmod 600 {tree_s}/d7/e/f/g/t-{tag}; chmod 600 {single_s}; echo $$\n"
        ),
    );
    // 3. The ignored directory moved into the tree, then written.
    std::thread::sleep(Duration::from_millis(300));
    let mv_pid = sh(
        &t.0,
        "move.sh",
        &format!(
            "mv {out_s}/mv {tree_s}/mv; sleep 0.3; echo {tag} > {tree_s}/mv/after-{tag}; \
             mkdir {tree_s}/mv/new; echo {tag} > {tree_s}/mv/new/deeper-{tag}; echo $$\n"
        ),
    );
    // 4. Ignored directories moved in and written at once, before the sensor can have read
    //    the move: the kernel drops those writes while the ignore marks are on, and the walk
    //    that takes them off must find every one.
    sh(
        &t.0,
        "race_in.sh",
        &format!(
            "i=0; while [ $i -lt 10 ]; do mv {out_s}/r$i {tree_s}/r$i; \
             echo {tag} > {tree_s}/r$i/now-{tag}-$i; i=$((i+1)); done; echo $$\n"
        ),
    );
    // Wait for the last file and a health event after it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = format!("deeper-{tag}");
    while Instant::now() < deadline {
        let evs = read_events(&sensor.output);
        if !file_events(&evs, &want).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let reason = sensor.reason();
    let events = sensor.stop();
    assert!(
        reason.contains("files: fanotify-fid") || reason.contains("files: fanotify"),
        "{reason}"
    );

    let files = file_events(&events, &tag);
    let dump = || {
        files
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["file"]["path"], e["file"]["ops"], e["process"]["pid"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut missing = Vec::new();
    for i in 0..40 {
        for path in [
            format!("{tree_s}/d{i}/e/f/file-{tag}-{i}"),
            format!("{tree_s}/d{i}/top-{tag}-{i}"),
        ] {
            let ops = ops_of(&files, &path);
            if !(ops.iter().any(|o| o == "create") && ops.iter().any(|o| o == "close_write")) {
                missing.push(format!("{path}: {ops:?}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missed {missing:?}\nevents:\n{}",
        dump()
    );
    // Attribute changes come from inode marks on the trees' directories (also on one made
    // while running).
    for path in [
        format!("{tree_s}/d7/e/f/file-{tag}-7"),
        format!("{tree_s}/d7/e/f/g/t-{tag}"),
    ] {
        let ops = ops_of(&files, &path);
        assert!(ops.iter().any(|o| o == "attrib"), "{path}: {ops:?}");
    }
    let lone = of_kind(&events, "file")
        .into_iter()
        .filter(|e| e["file"]["path"] == single_s.to_string())
        .cloned()
        .collect::<Vec<_>>();
    let lone_refs: Vec<&Value> = lone.iter().collect();
    let ops = ops_of(&lone_refs, &single_s.to_string());
    assert!(ops.iter().any(|o| o == "attrib"), "{single_s}: {ops:?}");
    for e in files.iter().filter(|e| {
        e["file"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("/d") && !p.contains("/mv/"))
    }) {
        // The shell wrote (echo); chmod and touch are its children.
        let p = &e["process"];
        assert!(
            p["pid"] == race_pid || p["ancestors"][0]["pid"] == race_pid,
            "{e}"
        );
    }
    for name in [format!("mv/after-{tag}"), format!("mv/new/deeper-{tag}")] {
        let path = format!("{tree_s}/{name}");
        let ops = ops_of(&files, &path);
        assert!(
            ops.iter().any(|o| o == "create") && ops.iter().any(|o| o == "close_write"),
            "{path}: {ops:?}\nevents:\n{}",
            dump()
        );
    }
    // Events that name a process name the mover. (The walk after the move reports files
    // it finds changed without one: the kernel named none.)
    assert!(
        files
            .iter()
            .filter(|e| e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.contains("/mv/"))
                && e["process"].is_object())
            .all(|e| e["process"]["pid"] == mv_pid),
        "{}",
        dump()
    );
    let unseen: Vec<String> = (0..10)
        .map(|i| format!("{tree_s}/r{i}/now-{tag}-{i}"))
        .filter(|p| ops_of(&files, p).is_empty())
        .collect();
    assert!(
        unseen.is_empty(),
        "written right after the move in, never reported: {unseen:?}\nevents:\n{}",
        dump()
    );
    // Nothing outside is reported (the move in is reported as a rename from outside), and
    // the outside directories were ignored in the kernel.
    let out_prefix = out_s.to_string();
    for e in of_kind(&events, "file") {
        let p = e["file"]["path"].as_str().unwrap();
        let n = e["file"]["new_path"].as_str().unwrap_or(p);
        assert!(
            !(p.starts_with(&out_prefix) && n.starts_with(&out_prefix)),
            "an outside path was reported: {e}"
        );
    }
    let h = last_health(&events);
    let notes = &h["health"]["events"];
    eprintln!(
        "dir marks {} ignore marks {} filtered {} nameless {} mark failures {} changed while ignored {}",
        notes["files_dir_marks"],
        notes["files_ignore_marks"],
        notes["files_filtered_out"],
        notes["files_nameless_events"],
        notes["files_mark_failures"],
        notes["files_changed_while_ignored"]
    );
    assert!(
        notes["files_ignore_marks"].as_u64().unwrap_or(0) >= 1,
        "{h}"
    );
    assert!(notes["files_dir_marks"].as_u64().unwrap_or(0) >= 80, "{h}");
    assert_eq!(notes["files_mark_failures"], 0, "{h}");
    assert_eq!(h["health"]["drops"]["files_queue_overflows"], 0);
}

/// Writes (`modify`) come from inode marks on the trees' directories, not from the filesystem
/// mark (which keeps create, delete, moves and close_write):
/// - in a directory made while running, a write after the sensor read its creation is a
///   `modify` with the writer's pid;
/// - when a new directory cannot be marked (`files.max_dir_marks` reached), the writes move
///   onto the filesystem mark, so a write below it is still a `modify`, and health says the
///   bound was reached.
#[test]
fn writes_come_from_directory_marks_or_the_filesystem_mark() {
    if !privileged() {
        return;
    }
    for bound in [8192, 3] {
        let t = TempDir(PathBuf::from("/var/tmp").join(marker("files-dirops")));
        let tree = t.0.join("tree");
        for sub in ["a", "b"] {
            std::fs::create_dir_all(tree.join(sub)).unwrap();
        }
        let cfg = t.0.join("sensor.toml");
        std::fs::write(
            &cfg,
            format!(
                "[files]\nwatch = [{:?}]\nmax_dir_marks = {bound}\n[limits]\ncpu_percent = 0\n",
                tree.display().to_string()
            ),
        )
        .unwrap();
        let sensor = Sensor::start("ebpf", &["--config", cfg.to_str().unwrap()]);
        let tag = marker("dirops");
        let tree_s = tree.display();
        let file = format!("{tree_s}/n/m/f-{tag}");
        // Opened (created) at once in the new directory, written twice while open, then
        // closed: the writes are `modify` only if a mark that wants them covers `n/m`.
        let pid = sh(
            &t.0,
            "w.sh",
            &format!(
                "mkdir -p {tree_s}/n/m; exec 3>{file}; sleep 0.5; echo one >&3; sleep 0.3; \
                 echo two >&3; sleep 0.3; exec 3>&-; echo $$\n"
            ),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let evs = read_events(&sensor.output);
            if ops_of(&file_events(&evs, &tag), &file).contains(&"close_write".to_string()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1500));
        let events = sensor.stop();
        let files = file_events(&events, &tag);
        let ops = ops_of(&files, &file);
        for op in ["create", "modify", "close_write"] {
            assert!(
                ops.iter().any(|o| o == op),
                "bound {bound}: {op} missing for {file}: {ops:?}"
            );
        }
        assert!(
            files
                .iter()
                .filter(|e| e["file"]["ops"].to_string().contains("modify"))
                .all(|e| e["process"]["pid"] == pid),
            "bound {bound}: {files:?}"
        );
        let h = last_health(&events);
        let notes = &h["health"]["events"];
        let full = if bound == 3 { 1 } else { 0 };
        assert_eq!(notes["files_dir_marks_full"], full, "bound {bound}: {h}");
        assert_eq!(notes["files_mark_failures"], 0, "bound {bound}: {h}");
        if bound == 3 {
            assert_eq!(notes["files_dir_marks"], 3, "{h}");
        } else {
            // tree, a, b at start; n and n/m when their creation was read.
            assert!(notes["files_dir_marks"].as_u64().unwrap_or(0) >= 5, "{h}");
        }
    }
}
