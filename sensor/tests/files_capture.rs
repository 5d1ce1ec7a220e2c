//! Privileged: file activity through the library API (`FileCapture`), in each mode.
//!
//! The sensor ignores its own pid, and in these tests the capture runs inside the test
//! process, so the file operations run in a child: this test binary re-executed with
//! `SENSOR_FILES_IT_WORKLOAD` set (see `workload_child`). Every fanotify event must name that
//! child's pid and comm; inotify events must carry no process.
mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sensor::event::{Event, Kind, Source};
use sensor::sources::files::{FileCapture, FileMode, FileModeRequest, FilesConfig};
use sensor::sources::SourceCtx;
use sensor::telemetry::counters::Counters;
use sensor::telemetry::fields::fields_of;
use tokio::sync::mpsc;

const CHILD_ENV: &str = "SENSOR_FILES_IT_WORKLOAD";

/// A temp tree `<base>/sensor-files-it-<tag>-<pid>-<n>/{watched,outside}`, removed on drop.
struct TempTree {
    root: PathBuf,
    watched: PathBuf,
    outside: PathBuf,
}

impl TempTree {
    fn new(base: &Path, tag: &str) -> TempTree {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let root = base.join(format!(
            "sensor-files-it-{tag}-{}-{nanos}",
            std::process::id()
        ));
        let watched = root.join("watched");
        let outside = root.join("outside");
        std::fs::create_dir_all(&watched).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        TempTree {
            watched: root.join("watched"),
            outside: root.join("outside"),
            root,
        }
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn config(mode: FileModeRequest, watch: &Path, ignore: &[&Path]) -> FilesConfig {
    FilesConfig {
        mode,
        watch: vec![watch.display().to_string()],
        ignore_paths: ignore.iter().map(|p| p.display().to_string()).collect(),
        ..FilesConfig::default()
    }
}

fn start(cfg: &FilesConfig) -> (FileCapture, mpsc::Receiver<Event>, Arc<Counters>) {
    let (tx, rx) = mpsc::channel(65_536);
    let counters = Arc::new(Counters::default());
    let ctx = SourceCtx {
        tx,
        counters: counters.clone(),
        host: "it".into(),
    };
    let cap = FileCapture::start(cfg, ctx).expect("start file capture");
    eprintln!("mode {} — {}", cap.mode, cap.reason);
    (cap, rx, counters)
}

/// The workload child, stopped at its end until the parent closes its stdin (so /proc
/// still shows it while its events are read).
struct Workload {
    child: Child,
    /// Kept open (and drained in `finish`): libtest in the child still prints its summary.
    out: BufReader<std::process::ChildStdout>,
    pid: u32,
    comm: String,
}

impl Workload {
    fn run(t: &TempTree) -> Workload {
        Self::spawn(format!("{}\n{}", t.watched.display(), t.outside.display()))
    }

    /// `n` creates and `n` deletes of distinct empty files in the watched dir.
    fn storm(t: &TempTree, n: usize) -> Workload {
        Self::spawn(format!("storm\n{}\n{n}", t.watched.display()))
    }

    fn spawn(spec: String) -> Workload {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "workload_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn workload child");
        let pid = child.id();
        // Watchdog: a child that never reports is killed (by its pid), so the read below
        // ends instead of hanging the test.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "workload child ended early"
            );
            // libtest prints "test workload_child ... " on the same line.
            if line.contains("WORKLOAD-DONE") {
                break;
            }
        }
        let _ = done_tx.send(());
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim()
            .to_string();
        Workload {
            child,
            out,
            pid,
            comm,
        }
    }

    fn finish(mut self) {
        let status = self.reap();
        assert!(status.success(), "workload child failed: {status}");
    }

    fn reap(&mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        self.child.wait().unwrap()
    }
}

impl Drop for Workload {
    /// A failed assertion still lets the child finish (and removes it from the process table).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.reap();
        }
    }
}

/// What the child does, in the watched dir W and the outside dir O.
#[test]
#[ignore = "run by the other tests as a child process"]
fn workload_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    if let Some(rest) = spec.strip_prefix("storm\n") {
        let (dir, n) = rest.split_once('\n').unwrap();
        let n: usize = n.parse().unwrap();
        for i in 0..n {
            let p = Path::new(dir).join(format!("s{i}"));
            drop(std::fs::File::create(&p).unwrap());
            std::fs::remove_file(&p).unwrap();
        }
        println!("WORKLOAD-DONE");
        std::io::stdout().flush().unwrap();
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
        return;
    }
    let (w, o) = spec.split_once('\n').unwrap();
    let (w, o) = (Path::new(w), Path::new(o));
    let step = || std::thread::sleep(Duration::from_millis(30));
    // create, then write
    drop(std::fs::File::create(w.join("a.txt")).unwrap());
    step();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(w.join("a.txt"))
        .unwrap();
    f.write_all(b"hello").unwrap();
    drop(f);
    step();
    // chmod, rename, delete
    std::fs::set_permissions(w.join("a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    step();
    std::fs::rename(w.join("a.txt"), w.join("b.txt")).unwrap();
    step();
    std::fs::remove_file(w.join("b.txt")).unwrap();
    step();
    // a new subdirectory with a file created in it right away
    std::fs::create_dir(w.join("sub")).unwrap();
    std::fs::write(w.join("sub/inner.txt"), b"x").unwrap();
    step();
    // a non-UTF-8 name
    std::fs::write(w.join(OsStr::from_bytes(b"bad\xffname.txt")), b"y").unwrap();
    step();
    // a directory renamed, then a file created in it under its new name
    std::fs::rename(w.join("sub"), w.join("sub2")).unwrap();
    std::fs::write(w.join("sub2/after.txt"), b"x").unwrap();
    // ignored (the sensor's own files) and outside the watched tree
    std::fs::create_dir_all(w.join("ignored")).unwrap();
    std::fs::write(w.join("ignored/own.log"), b"z").unwrap();
    std::fs::write(o.join("o.txt"), b"z").unwrap();
    std::fs::remove_file(o.join("o.txt")).unwrap();
    println!("WORKLOAD-DONE");
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

fn file_of(e: &Event) -> &sensor::event::FileActivity {
    e.file.as_ref().unwrap()
}

/// Receives until `done(events)` or the timeout.
fn collect(
    rx: &mut mpsc::Receiver<Event>,
    timeout: Duration,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut evs = Vec::new();
    while Instant::now() < deadline {
        match rx.try_recv() {
            Ok(e) => evs.push(e),
            Err(_) => {
                if done(&evs) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    evs
}

fn ops_on(evs: &[Event], path: &Path) -> BTreeSet<String> {
    let p = path.display().to_string();
    evs.iter()
        .filter(|e| file_of(e).path == p)
        .flat_map(|e| file_of(e).ops.iter().cloned())
        .collect()
}

fn has_rename(evs: &[Event], from: &Path, to: &Path) -> bool {
    let (from, to) = (from.display().to_string(), to.display().to_string());
    evs.iter().any(|e| {
        let f = file_of(e);
        f.path == from
            && f.new_path.as_deref() == Some(to.as_str())
            && f.ops.contains(&"rename".into())
    })
}

fn bad_name(w: &Path) -> PathBuf {
    w.join("bad\\xffname.txt")
}

/// What every mode reports from the structure of the workload (creates, rename, delete).
fn structure_seen(evs: &[Event], w: &Path) -> bool {
    ops_on(evs, &w.join("a.txt")).contains("create")
        && has_rename(evs, &w.join("a.txt"), &w.join("b.txt"))
        && ops_on(evs, &w.join("b.txt")).contains("delete")
        && ops_on(evs, &w.join("sub")).contains("create")
        && ops_on(evs, &w.join("sub/inner.txt")).contains("create")
        && ops_on(evs, &bad_name(w)).contains("create")
        && has_rename(evs, &w.join("sub"), &w.join("sub2"))
        && ops_on(evs, &w.join("sub2/after.txt")).contains("create")
}

fn assert_common(evs: &[Event], t: &TempTree) {
    let dump = || {
        evs.iter()
            .map(|e| {
                format!(
                    "{:?} {:?} pid={:?}",
                    e.source(),
                    file_of(e),
                    e.process.as_ref().map(|p| p.pid)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(structure_seen(evs, &t.watched), "events:\n{}", dump());
    let stale = t.watched.join("sub/after.txt").display().to_string();
    assert!(
        !evs.iter().any(|e| file_of(e).path == stale),
        "a path under the old directory name: {}",
        dump()
    );
    let outside = t.outside.display().to_string();
    let ignored = t.watched.join("ignored").display().to_string();
    for e in evs {
        assert_eq!(e.kind(), Kind::File);
        let f = file_of(e);
        assert!(
            !f.path.starts_with(&outside),
            "outside path reported: {f:?}"
        );
        assert!(
            !f.path.starts_with(&ignored),
            "ignored path reported: {f:?}"
        );
        assert!(
            f.path.starts_with(&t.watched.display().to_string()),
            "{f:?}"
        );
        assert!(!f.ops.is_empty());
        assert!(
            !f.ops.iter().any(|o| o == "open" || o == "close"),
            "open/close are off by default: {f:?}"
        );
    }
}

fn assert_attributed(e: &Event, w: &Workload) {
    let p = e
        .process
        .as_ref()
        .unwrap_or_else(|| panic!("no process on {:?}", file_of(e)));
    assert_eq!(p.pid, w.pid, "{:?}", file_of(e));
    assert_eq!(p.comm, w.comm);
    assert!(p.incomplete.is_empty(), "{:?}", p.incomplete);
    assert_eq!(
        p.exe.as_deref(),
        Some(
            std::fs::canonicalize(std::env::current_exe().unwrap())
                .unwrap()
                .to_str()
                .unwrap()
        )
    );
    assert!(p
        .argv
        .as_ref()
        .unwrap()
        .args
        .iter()
        .any(|a| a == "workload_child"));
    assert_eq!((p.uid, p.euid), (0, 0));
    assert!(p.ppid == std::process::id());
}

fn stop_and_drain(mut cap: FileCapture, rx: &mut mpsc::Receiver<Event>, evs: &mut Vec<Event>) {
    let f = fields_of(&*cap.stats);
    let drops: u64 = f.drops.values().sum();
    eprintln!("drops {:?} counts {:?}", f.drops, f.events);
    cap.stop();
    while let Ok(e) = rx.try_recv() {
        evs.push(e);
    }
    // Path resolution failures can come from other activity on the disk (a filesystem mark
    // sees all of it), so only the queue is held to zero here.
    let _ = drops;
}

#[test]
fn fanotify_fid_names_the_process_for_every_operation() {
    if !common::privileged() {
        return;
    }
    // The ext4 root (FID-capable here), not /tmp, which may be tmpfs elsewhere.
    let t = TempTree::new(Path::new("/var/tmp"), "fid");
    let ignored = t.watched.join("ignored");
    let cfg = config(FileModeRequest::FanotifyFid, &t.watched, &[&ignored]);
    let (cap, mut rx, counters) = start(&cfg);
    assert_eq!(cap.mode, FileMode::FanotifyFid);
    assert_eq!(cap.mode.to_string(), "fanotify-fid");
    let w = Workload::run(&t);
    let wd = t.watched.clone();
    let mut evs = collect(&mut rx, Duration::from_secs(20), |evs| {
        structure_seen(evs, &wd)
            && ops_on(evs, &wd.join("a.txt"))
                .is_superset(&["modify", "attrib", "close_write"].map(String::from).into())
    });
    stop_and_drain(cap, &mut rx, &mut evs);
    w_check(&evs, &t, &w);
    assert!(counters.events_of(Kind::File) >= evs.len() as u64);
    w.finish();
}

fn w_check(evs: &[Event], t: &TempTree, w: &Workload) {
    assert_common(evs, t);
    let a = ops_on(evs, &t.watched.join("a.txt"));
    for op in ["create", "modify", "attrib", "close_write"] {
        assert!(a.contains(op), "a.txt lacks {op}: {a:?}");
    }
    for e in evs {
        assert_eq!(e.source(), Source::Fanotify);
        assert_attributed(e, w);
    }
}

#[test]
fn fanotify_fd_reports_writes_with_pid_and_structure_from_inotify() {
    if !common::privileged() {
        return;
    }
    let t = TempTree::new(Path::new("/var/tmp"), "fd");
    let ignored = t.watched.join("ignored");
    let cfg = config(FileModeRequest::FanotifyFd, &t.watched, &[&ignored]);
    let (cap, mut rx, _) = start(&cfg);
    assert_eq!(cap.mode, FileMode::FanotifyFd);
    assert!(cap.reason.contains("inotify"), "{}", cap.reason);
    let w = Workload::run(&t);
    let wd = t.watched.clone();
    let written = |evs: &[Event]| {
        evs.iter()
            .filter(|e| e.source() == Source::Fanotify)
            .flat_map(|e| file_of(e).ops.clone())
            .collect::<BTreeSet<String>>()
    };
    let mut evs = collect(&mut rx, Duration::from_secs(20), |evs| {
        structure_seen(evs, &wd)
            && written(evs).contains("modify")
            && written(evs).contains("close_write")
    });
    stop_and_drain(cap, &mut rx, &mut evs);
    assert_common(&evs, &t);
    for e in &evs {
        let f = file_of(e);
        match e.source() {
            // What the fd names at read time: the file may have been renamed since.
            Source::Fanotify => {
                assert_attributed(e, &w);
                assert!(
                    f.ops.iter().all(|o| o == "modify" || o == "close_write"),
                    "{f:?}"
                );
            }
            Source::Inotify => {
                assert!(e.process.is_none());
                assert!(
                    f.ops
                        .iter()
                        .all(|o| ["create", "delete", "rename", "attrib"].contains(&o.as_str())),
                    "{f:?}"
                );
            }
            other => panic!("unexpected source {other:?}"),
        }
    }
    assert!(ops_on(&evs, &t.watched.join("a.txt")).contains("attrib"));
    let modified: Vec<&Event> = evs
        .iter()
        .filter(|e| e.source() == Source::Fanotify && file_of(e).ops.contains(&"modify".into()))
        .collect();
    let names = [t.watched.join("a.txt"), t.watched.join("b.txt")].map(|p| p.display().to_string());
    assert!(
        modified.iter().any(|e| names.contains(&file_of(e).path)),
        "{modified:?}"
    );
    w.finish();
}

#[test]
fn inotify_reports_the_same_operations_without_pid() {
    if !common::privileged() {
        return;
    }
    let t = TempTree::new(Path::new("/var/tmp"), "ino");
    let ignored = t.watched.join("ignored");
    let cfg = config(FileModeRequest::Inotify, &t.watched, &[&ignored]);
    let (cap, mut rx, _) = start(&cfg);
    assert_eq!(cap.mode, FileMode::Inotify);
    let w = Workload::run(&t);
    let wd = t.watched.clone();
    let mut evs = collect(&mut rx, Duration::from_secs(20), |evs| {
        structure_seen(evs, &wd)
            && ops_on(evs, &wd.join("a.txt"))
                .is_superset(&["modify", "attrib", "close_write"].map(String::from).into())
    });
    stop_and_drain(cap, &mut rx, &mut evs);
    assert_common(&evs, &t);
    let a = ops_on(&evs, &t.watched.join("a.txt"));
    for op in ["create", "modify", "attrib", "close_write"] {
        assert!(a.contains(op), "a.txt lacks {op}: {a:?}");
    }
    for e in &evs {
        assert_eq!(e.source(), Source::Inotify);
        assert!(e.process.is_none(), "inotify cannot name a process");
    }
    // The file created right after its directory is reported exactly once.
    let inner = t.watched.join("sub/inner.txt").display().to_string();
    let creates = evs
        .iter()
        .filter(|e| file_of(e).path == inner && file_of(e).ops.contains(&"create".into()))
        .count();
    assert_eq!(creates, 1);
    w.finish();
}

#[test]
fn auto_mode_on_the_temp_dir() {
    if !common::privileged() {
        return;
    }
    // /tmp may be tmpfs: FID marks need a filesystem with an fsid and exportable handles.
    let tmp = std::env::temp_dir();
    // SAFETY: statfs is plain data.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(tmp.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string and out pointer.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
    let tmpfs = st.f_type == libc::TMPFS_MAGIC;
    let t = TempTree::new(&tmp, "auto");
    let ignored = t.watched.join("ignored");
    let cfg = config(FileModeRequest::Auto, &t.watched, &[&ignored]);
    let (probe_mode, probe_reason) = FileCapture::probe(&cfg).unwrap();
    let (cap, mut rx, _) = start(&cfg);
    eprintln!(
        "temp dir {} tmpfs={tmpfs}: probe says {probe_mode} ({probe_reason})",
        tmp.display()
    );
    assert_eq!(probe_mode, cap.mode);
    if !tmpfs {
        assert_eq!(cap.mode, FileMode::FanotifyFid);
    }
    let w = Workload::run(&t);
    let wd = t.watched.clone();
    let mut evs = collect(&mut rx, Duration::from_secs(20), |evs| {
        structure_seen(evs, &wd)
    });
    let mode = cap.mode;
    stop_and_drain(cap, &mut rx, &mut evs);
    assert_common(&evs, &t);
    if mode == FileMode::FanotifyFid {
        for e in &evs {
            assert_attributed(e, &w);
        }
    }
    w.finish();
}

#[test]
fn trees_fid_cannot_mark_fall_back_to_inotify_for_those_trees_only() {
    if !common::privileged() {
        return;
    }
    // procfs has no exportable file handles: its filesystem mark is refused, so that tree
    // gets inotify while the temp tree keeps FID with the pid.
    let t = TempTree::new(Path::new("/var/tmp"), "mixed");
    let ignored = t.watched.join("ignored");
    let mut cfg = config(FileModeRequest::Auto, &t.watched, &[&ignored]);
    cfg.watch.push("/proc/sys/fs".into());
    let (cap, mut rx, _) = start(&cfg);
    assert_eq!(cap.mode, FileMode::FanotifyFid);
    assert!(
        cap.reason.contains("/proc/sys/fs") && cap.reason.contains("inotify"),
        "{}",
        cap.reason
    );
    let w = Workload::run(&t);
    let wd = t.watched.clone();
    let mut evs = collect(&mut rx, Duration::from_secs(20), |evs| {
        structure_seen(evs, &wd)
    });
    stop_and_drain(cap, &mut rx, &mut evs);
    assert_common(&evs, &t);
    for e in &evs {
        assert_eq!(e.source(), Source::Fanotify);
        assert_attributed(e, &w);
    }
    w.finish();
}

/// Runs `n` creates + `n` deletes and returns (paths seen created, seen deleted, overflows).
fn storm_in(mode: FileModeRequest, unlimited_queue: bool, n: usize) -> (usize, usize, u64) {
    let t = TempTree::new(Path::new("/var/tmp"), "storm");
    let mut cfg = config(mode, &t.watched, &[]);
    cfg.unlimited_queue = unlimited_queue;
    let (mut cap, mut rx, _) = start(&cfg);
    let t0 = Instant::now();
    let w = Workload::storm(&t, n);
    let ops_time = t0.elapsed();
    let prefix = format!("{}/s", t.watched.display());
    let (mut created, mut deleted) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = Instant::now();
    while Instant::now() < deadline && (created.len() < n || deleted.len() < n) {
        match rx.try_recv() {
            Ok(e) => {
                last = Instant::now();
                let f = file_of(&e);
                if let Some(i) = f.path.strip_prefix(&prefix) {
                    if f.ops.iter().any(|o| o == "create") {
                        created.insert(i.to_string());
                    }
                    if f.ops.iter().any(|o| o == "delete") {
                        deleted.insert(i.to_string());
                    }
                }
            }
            Err(_) => {
                if cap
                    .stats
                    .queue_overflows
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
                    && last.elapsed() > Duration::from_secs(2)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let all_time = t0.elapsed();
    let f = fields_of(&*cap.stats);
    let overflows = f.drops["files_queue_overflows"];
    eprintln!(
        "storm {mode} unlimited_queue={unlimited_queue}: {n} creates + {n} deletes in {:.0} ms, all events in {:.0} ms; seen {} created, {} deleted; drops {:?} counts {:?}",
        ops_time.as_secs_f64() * 1e3,
        all_time.as_secs_f64() * 1e3,
        created.len(),
        deleted.len(),
        f.drops,
        f.events
    );
    cap.stop();
    w.finish();
    (created.len(), deleted.len(), overflows)
}

#[test]
fn storm_of_creates_and_deletes_arrives_or_is_counted() {
    if !common::privileged() {
        return;
    }
    let n = 50_000;
    // Unlimited kernel queue: nothing may be lost.
    let (c, d, o) = storm_in(FileModeRequest::FanotifyFid, true, n);
    assert_eq!((c, d, o), (n, n, 0));
    // Default queue (16384 events): everything arrives, or an overflow is counted.
    let (c, d, o) = storm_in(FileModeRequest::FanotifyFid, false, n);
    assert!(
        (c, d) == (n, n) || o > 0,
        "{c} {d} lost without an overflow"
    );
    let (c, d, o) = storm_in(FileModeRequest::Inotify, false, n);
    assert!(
        (c, d) == (n, n) || o > 0,
        "{c} {d} lost without an overflow"
    );
}

#[test]
fn forced_mode_that_cannot_work_is_an_error() {
    if !common::privileged() {
        return;
    }
    // No operation fd mode can report: forced fd mode fails instead of falling back.
    let t = TempTree::new(Path::new("/var/tmp"), "forced");
    let mut cfg = config(FileModeRequest::FanotifyFd, &t.watched, &[]);
    cfg.ops = vec!["create".into()];
    let (tx, _rx) = mpsc::channel(4);
    let ctx = SourceCtx {
        tx,
        counters: Arc::new(Counters::default()),
        host: "it".into(),
    };
    let err = FileCapture::start(&cfg, ctx).err().expect("must fail");
    assert!(err.to_string().contains("fanotify-fd"), "{err}");
    // auto skips it and says why.
    cfg.mode = FileModeRequest::Auto;
    let (m, reason) = FileCapture::probe(&cfg).unwrap();
    assert_eq!(m, FileMode::FanotifyFid, "{reason}");
}

#[test]
fn recursive_inotify_setup_time_on_etc() {
    if !common::privileged() {
        return;
    }
    let cfg = FilesConfig {
        mode: FileModeRequest::Inotify,
        watch: vec!["/etc".into()],
        ..FilesConfig::default()
    };
    let (tx, _rx) = mpsc::channel(1024);
    let ctx = SourceCtx {
        tx,
        counters: Arc::new(Counters::default()),
        host: "it".into(),
    };
    let t0 = Instant::now();
    let mut cap = FileCapture::start(&cfg, ctx).unwrap();
    let took = t0.elapsed();
    let watches = fields_of(&*cap.stats).events["files_inotify_watches"];
    eprintln!(
        "recursive inotify on /etc: {watches} directories watched in {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    assert!(watches > 10);
    cap.stop();
}
