//! Links planted by user `nobody` in every place the real sensor (as root) writes state or
//! output redirect nothing: the JSON output file, the status file and its temporary file,
//! the spool directory, the files in a spool directory `nobody` made, and a spool below a
//! directory `nobody` owns. Each victim file keeps its bytes and mode, and nothing appears
//! where a link points. A root-owned spool left with loose permissions is tightened: the
//! directory 0700, the id, seq and segment files 0600.
//!
//! Privileged: runs the sensor binary as root (eBPF mode) and plants the links as uid 65534.
mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

const NOBODY: u32 = 65534;

/// Runs `argv` as nobody and insists it succeeds (the attacker's move).
fn as_nobody(argv: &[&str]) {
    let st = Command::new(argv[0])
        .args(&argv[1..])
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .expect("spawn as nobody");
    assert!(st.success(), "as nobody: {argv:?} failed");
}

fn plant_link(target: &Path, link: &Path) {
    as_nobody(&[
        "/bin/ln",
        "-s",
        target.to_str().unwrap(),
        link.to_str().unwrap(),
    ]);
}

/// A root-owned, world-writable sticky directory, like /tmp.
fn shared_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// A directory owned by nobody.
fn nobody_dir(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
    d
}

/// A root-owned file the attacker wants overwritten; returns its path.
fn victim(base: &Path, name: &str) -> PathBuf {
    let p = base.join(name);
    std::fs::write(&p, format!("victim {name}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn assert_victim_intact(p: &Path) {
    let name = p.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(p).unwrap(),
        format!("victim {name}\n"),
        "{} was written through a link",
        p.display()
    );
    let md = std::fs::metadata(p).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o600, "{} was chmod'ed", p.display());
    assert_eq!(md.uid(), 0);
}

fn assert_empty_dir(d: &Path) {
    let n = std::fs::read_dir(d).unwrap().count();
    assert_eq!(n, 0, "something was created in {}", d.display());
}

struct Run {
    child: Option<Child>,
    log: PathBuf,
}

impl Run {
    /// `sensor run --mode ebpf` with these extra arguments, stderr to `dir/<tag>.log`.
    fn start(dir: &Path, tag: &str, args: &[&str]) -> Run {
        let log = dir.join(format!("{tag}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["run", "--mode", "ebpf", "--health-interval", "1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn sensor");
        Run {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the sensor ends within `secs`.
    fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let c = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Insists the sensor refuses to start, naming `path` in its error.
    fn assert_refused(mut self, path: &Path) {
        let st = self.wait_exit(60).expect("sensor kept running");
        assert!(!st.success(), "sensor accepted it: {}", self.log());
        let log = self.log();
        assert!(
            log.contains(path.to_str().unwrap()) && log.contains("refusing"),
            "error does not name {}: {log}",
            path.display()
        );
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ship_config(dir: &Path, tag: &str, spool: &Path) -> PathBuf {
    let cfg = dir.join(format!("{tag}.toml"));
    std::fs::write(
        &cfg,
        format!("[ship]\nallow_plaintext_loopback = true\nspool_dir = {spool:?}\n"),
    )
    .unwrap();
    cfg
}

#[test]
fn output_file_links_fifos_and_foreign_files_are_refused() {
    if !common::privileged() {
        return;
    }
    let d = TempDir::new("symout");
    let base = &d.0;
    let shared = shared_dir(base, "shared");
    let status = base.join("status.json");

    let v = victim(base, "victim-out");
    let out = shared.join("events.jsonl");
    plant_link(&v, &out);
    Run::start(
        base,
        "out-link",
        &[
            "--output",
            out.to_str().unwrap(),
            "--status",
            status.to_str().unwrap(),
        ],
    )
    .assert_refused(&out);
    assert_victim_intact(&v);

    let fifo = shared.join("fifo.jsonl");
    as_nobody(&["/usr/bin/mkfifo", fifo.to_str().unwrap()]);
    Run::start(
        base,
        "out-fifo",
        &[
            "--output",
            fifo.to_str().unwrap(),
            "--status",
            status.to_str().unwrap(),
        ],
    )
    .assert_refused(&fifo);

    // A file nobody made (and can read) gets no events.
    let theirs = shared.join("theirs.jsonl");
    as_nobody(&["/usr/bin/touch", theirs.to_str().unwrap()]);
    Run::start(
        base,
        "out-theirs",
        &[
            "--output",
            theirs.to_str().unwrap(),
            "--status",
            status.to_str().unwrap(),
        ],
    )
    .assert_refused(&theirs);
    assert_eq!(std::fs::metadata(&theirs).unwrap().len(), 0);

    // Output into a directory nobody owns: refused before anything is created there.
    let ndir = nobody_dir(base, "nobody-out");
    let into = ndir.join("events.jsonl");
    Run::start(
        base,
        "out-nobody-dir",
        &[
            "--output",
            into.to_str().unwrap(),
            "--status",
            status.to_str().unwrap(),
        ],
    )
    .assert_refused(&into);
    assert_empty_dir(&ndir);
}

#[test]
fn status_file_links_redirect_nothing() {
    if !common::privileged() {
        return;
    }
    let d = TempDir::new("symstatus");
    let base = &d.0;
    let shared = shared_dir(base, "shared");
    let v1 = victim(base, "victim-status");
    let v2 = victim(base, "victim-status-tmp");
    let status = shared.join("status.json");
    plant_link(&v1, &status);
    plant_link(&v2, &shared.join("status.json.tmp"));
    let out = base.join("events.jsonl");
    let run = Run::start(
        base,
        "status",
        &[
            "--output",
            out.to_str().unwrap(),
            "--status",
            status.to_str().unwrap(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let md = std::fs::symlink_metadata(&status).unwrap();
        if md.is_file() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status file never replaced the link: {}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Two more status writes with the links re-planted at the temporary name.
    plant_link(&v2, &shared.join("status.json.tmp"));
    std::thread::sleep(Duration::from_millis(2500));
    let md = std::fs::symlink_metadata(&status).unwrap();
    assert!(md.is_file());
    assert_eq!(md.uid(), 0);
    assert_eq!(
        md.mode() & 0o7777,
        0o644,
        "status file stays world-readable"
    );
    let text = std::fs::read_to_string(&status).unwrap();
    assert!(text.contains("\"pid\""), "{text}");
    assert_victim_intact(&v1);
    assert_victim_intact(&v2);
    // The JSON output file it created is private.
    assert_eq!(std::fs::metadata(&out).unwrap().mode() & 0o7777, 0o600);
    drop(run);
}

#[test]
fn spool_links_and_foreign_spools_are_refused() {
    if !common::privileged() {
        return;
    }
    let d = TempDir::new("symspool");
    let base = &d.0;
    let shared = shared_dir(base, "shared");
    let status = base.join("status.json");
    let grpc = format!("grpc://127.0.0.1:{}", closed_port());
    let start = |tag: &str, spool: &Path| {
        let cfg = ship_config(base, tag, spool);
        Run::start(
            base,
            tag,
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--output",
                &grpc,
                "--status",
                status.to_str().unwrap(),
            ],
        )
    };

    // The spool directory itself is a link to a directory nobody owns.
    let theirs = nobody_dir(base, "nobody-target");
    let spool = shared.join("spool-link");
    plant_link(&theirs, &spool);
    start("spool-link", &spool).assert_refused(&spool);
    assert_empty_dir(&theirs);

    // Nobody made the spool directory first and filled it with links.
    let spool = shared.join("spool-theirs");
    as_nobody(&["/bin/mkdir", spool.to_str().unwrap()]);
    let v = victim(base, "victim-spool");
    for name in ["sensor_id", "sensor_id.tmp", "seq", "seq.tmp"] {
        plant_link(&v, &spool.join(name));
    }
    plant_link(&theirs, &spool.join("segments"));
    start("spool-theirs", &spool).assert_refused(&spool);
    assert_victim_intact(&v);
    assert_empty_dir(&theirs);

    // A spool below a directory nobody owns (nobody could swap it at any time).
    let parent = nobody_dir(base, "nobody-parent");
    let spool = parent.join("spool");
    start("spool-parent", &spool).assert_refused(&spool);
    assert_empty_dir(&parent);
}

#[test]
fn loose_root_spool_is_tightened() {
    if !common::privileged() {
        return;
    }
    let d = TempDir::new("symtight");
    let base = &d.0;
    let spool = base.join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let grpc = format!("grpc://127.0.0.1:{}", closed_port());
    let cfg = ship_config(base, "tight", &spool);
    let status = base.join("status.json");
    let run = Run::start(
        base,
        "tight",
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--output",
            &grpc,
            "--status",
            status.to_str().unwrap(),
        ],
    );
    // Health events reach the spool within a few seconds (the collector is down).
    let segs = spool.join("segments");
    let deadline = Instant::now() + Duration::from_secs(60);
    let seg = loop {
        let found = std::fs::read_dir(&segs)
            .ok()
            .and_then(|mut r| r.next())
            .and_then(Result::ok)
            .map(|e| e.path());
        if let Some(p) = found {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no segment written: {}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&spool), 0o700);
    assert_eq!(mode(&segs), 0o700);
    assert_eq!(mode(&spool.join("sensor_id")), 0o600);
    assert_eq!(mode(&spool.join("seq")), 0o600);
    assert_eq!(mode(&seg), 0o600);
    drop(run);
}
