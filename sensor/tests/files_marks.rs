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
