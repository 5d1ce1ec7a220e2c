//! Privileged: an event whose directory was removed before the sensor read it counts as a
//! drop (`files_path_unresolved`) only when that directory may have been in a watched tree;
//! one removed outside every tree (a compiler's temporary directory elsewhere on the disk)
//! counts in `files_outside_unresolved`, which is not a drop. See docs/ARCHITECTURE.md#files.
//!
//! The sensor tells them apart by the file handles of the trees' directories
//! (`sources/files/tree_dirs.rs`), taken with `name_to_handle_at`; the first test checks that
//! those are the bytes fanotify reports in its FID records for the same directory.
mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use sensor::enrich::procfs;
use sensor::sources::files::fanotify_parse;
use sensor::sources::files::tree_dirs::handle_key;
use serde_json::Value;

#[test]
fn fid_records_carry_the_handle_name_to_handle_at_gives() {
    if !privileged() {
        return;
    }
    // On the root filesystem: the system temp dir may be a tmpfs.
    let t = TempDir::new_in(Path::new("/var/tmp"), "files-fid-handle");
    let root = std::fs::canonicalize(t.path()).unwrap();
    let dir = root.join("d");
    let name = format!("probe-{}", std::process::id());
    // SAFETY: plain flags.
    let raw = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF
                | libc::FAN_CLOEXEC
                | libc::FAN_NONBLOCK
                | libc::FAN_REPORT_DFID_NAME
                | libc::FAN_REPORT_FID
                | libc::FAN_REPORT_TARGET_FID,
            libc::O_RDONLY as u32,
        )
    };
    assert!(raw >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    let group = unsafe { OwnedFd::from_raw_fd(raw) };
    let anchor = std::ffi::CString::new(root.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid fd and C string.
    let r = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
            libc::FAN_CREATE | libc::FAN_ONDIR | libc::FAN_EVENT_ON_CHILD,
            libc::AT_FDCWD,
            anchor.as_ptr(),
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(&name), b"x").unwrap();
    let want = handle_key(dir.as_os_str().as_bytes()).expect("name_to_handle_at");
    let (mut as_dir, mut as_target) = (None, None);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while (as_dir.is_none() || as_target.is_none()) && Instant::now() < deadline {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(group.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        for ev in fanotify_parse::events(&buf[..n as usize]) {
            let ev = ev.unwrap();
            let Some(d) = ev.info.dfid else { continue };
            // The file's create names its directory by the directory's handle.
            if d.name == Some(name.as_bytes()) {
                as_dir = Some((d.fid.fsid, d.fid.handle.to_vec(), d.fid.key.to_vec()));
            }
            // The directory's own create names it by its handle (FAN_REPORT_TARGET_FID).
            if d.name == Some(&b"d"[..]) && ev.mask & libc::FAN_ONDIR != 0 {
                let c = ev.info.fid.expect("a target FID record");
                as_target = Some((c.fid.fsid, c.fid.handle.to_vec(), c.fid.key.to_vec()));
            }
        }
    }
    for (what, got) in [("directory", as_dir), ("target", as_target)] {
        let (fsid, handle, key) = got.unwrap_or_else(|| panic!("no {what} FID record"));
        // The handle bytes (after fsid, size and type) are the same, and so is the fsid.
        assert_eq!(handle, want[16..], "{what}: handle bytes");
        assert_eq!(fsid, want[..8], "{what}: fsid");
        assert_eq!(key, want, "{what}: the whole key");
    }
}

/// The last health event written so far.
fn health(sensor: &Sensor) -> Value {
    of_kind(&read_events(&sensor.output), "sensor_health")
        .last()
        .map(|h| h["health"].clone())
        .expect("a health event")
}

fn count(h: &Value, map: &str, name: &str) -> u64 {
    h[map][name].as_u64().unwrap_or(0)
}

/// Waits (health every second) until `done` holds for the last health event, or 15 s.
fn health_until(sensor: &Sensor, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let h = health(sensor);
        if done(&h) || Instant::now() > deadline {
            return h;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether every thread of `pid` is stopped (state `T` in its `stat`).
fn all_threads_stopped(pid: i32) -> bool {
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    let Ok(tids) = procfs::list_pids(&tasks) else {
        return false;
    };
    tids.into_iter()
        .all(|tid| procfs::read_stat(&tasks, tid).is_ok_and(|st| st.state == b'T'))
}

/// Stops the sensor's process for the length of `f`, so that every event `f` causes is queued
/// (and each directory it removes gone) before the sensor reads any of them. `kill` returns
/// before the threads stop (each stops when next it runs), so this waits until all of them
/// show as stopped: a reader thread still running could otherwise read the first events while
/// their directory is still there.
fn while_stopped(sensor: &Sensor, f: impl FnOnce()) {
    let pid = sensor.pid() as i32;
    // SAFETY: signalling our own child by pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !all_threads_stopped(pid) {
        assert!(
            Instant::now() < deadline,
            "the sensor's threads did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    f();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
}

#[test]
fn directories_removed_outside_the_trees_are_not_drops_and_inside_they_are() {
    if !privileged() {
        return;
    }
    const OUTSIDE: usize = 300;
    const INSIDE: usize = 40;
    let w = WatchedTree::new("files-unresolved");
    let outside = TempDir::new_in(Path::new("/var/tmp"), "files-unresolved-outside");
    let base = std::fs::canonicalize(outside.path()).unwrap();
    let tree = std::fs::canonicalize(&w.tree).unwrap();
    // Inside: directories that exist at start (the sensor walks them), never touched until
    // the sensor is stopped, so no path of theirs is cached.
    for i in 0..INSIDE {
        std::fs::create_dir(tree.join(format!("p{i}"))).unwrap();
    }
    let sensor = Sensor::start("ebpf", &["--config", w.config.to_str().unwrap()]);
    assert!(
        sensor.reason().contains("files: fanotify-fid"),
        "{}",
        sensor.reason()
    );
    // The outside directory gets its ignore mark (its own entries' events stop in the
    // kernel), as a long-lived /var/tmp would: the short-lived directories made in it are
    // then known to the sensor only by the events inside them.
    std::fs::write(base.join("warm"), b"x").unwrap();
    std::fs::remove_file(base.join("warm")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let before = health(&sensor);

    // 1. Outside: directories with files made and removed while the sensor cannot read.
    while_stopped(&sensor, || {
        for i in 0..OUTSIDE {
            let d = base.join(format!("c{i}"));
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/f"), b"x").unwrap();
            std::fs::write(d.join("g"), b"x").unwrap();
            std::fs::remove_dir_all(&d).unwrap();
        }
    });
    let outside_before = count(&before, "events", "files_outside_unresolved");
    let h = health_until(&sensor, |h| {
        count(h, "events", "files_outside_unresolved") >= outside_before + OUTSIDE as u64
    });
    eprintln!("after the outside churn: {h}");
    assert_eq!(count(&h, "drops", "files_path_unresolved"), 0, "{h}");
    assert_eq!(count(&h, "drops", "files_queue_overflows"), 0, "{h}");
    assert!(
        count(&h, "events", "files_outside_unresolved") >= outside_before + OUTSIDE as u64,
        "each removed outside directory's events are counted outside: {h}"
    );
    // The tree and its INSIDE directories are known (and the directories on the way to the
    // tree), and the set still tells outside from inside.
    assert!(
        count(&h, "events", "files_tree_dirs") > INSIDE as u64,
        "tree directories known: {h}"
    );
    assert_eq!(count(&h, "events", "files_tree_dirs_untrusted"), 0, "{h}");

    // 2. Inside: a file made in each tree directory, then the directory removed, before the
    // sensor reads: the files cannot be named any more, a real loss.
    while_stopped(&sensor, || {
        for i in 0..INSIDE {
            let d = tree.join(format!("p{i}"));
            std::fs::write(d.join("f"), b"x").unwrap();
            std::fs::remove_dir_all(&d).unwrap();
        }
    });
    let h = health_until(&sensor, |h| {
        count(h, "drops", "files_path_unresolved") >= INSIDE as u64
    });
    let events = sensor.stop();
    eprintln!("after the inside churn: {h}");
    assert_eq!(
        count(&h, "drops", "files_path_unresolved"),
        INSIDE as u64,
        "one lost file per removed tree directory: {h}"
    );
    // The removals themselves are reported (their directory, the tree, is still there).
    let paths: Vec<&str> = of_kind(&events, "file")
        .iter()
        .filter_map(|e| e["file"]["path"].as_str())
        .collect();
    for i in 0..INSIDE {
        let p = tree.join(format!("p{i}")).display().to_string();
        assert!(paths.contains(&p.as_str()), "{p} not reported: {paths:?}");
    }
    let base_s = base.display().to_string();
    assert!(
        !paths.iter().any(|p| p.starts_with(&base_s)),
        "an outside path was reported"
    );
}
