//! Privileged: the ways around syscall-level sensors that an attacker can choose, against the
//! real sensor in both modes. Each row of the attack table must be seen with the right process
//! and result:
//! - connect() through the ia32 entry (`int 0x80`, i386 `connect` and `socketcall`) from a
//!   64-bit process, to a listening port (result `success`) and to a closed one (`refused`);
//! - setuid32 through `int 0x80` (root -> nobody), reported at the call: the event arrives
//!   while the process is still alive;
//! - a connect, ia32 or native, killed while it waits for the handshake (`interrupted`);
//! - connect() through io_uring (IORING_OP_CONNECT, a raw ring, no liburing), listening and
//!   closed ports;
//! - exec of a memfd copy of /bin/echo with execveat(fd, "", AT_EMPTY_PATH);
//! - an argv padded with 6,000 spaces, or 60 arguments of 100 bytes, before the payload;
//! - an io_uring openat + write under a watched tree (fanotify sees it).
//!
//! The workloads are one C program (`tests/attacks/attacks.c`) built here with gcc.
mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The attack helper, built with gcc into a temp dir removed when the test ends.
struct Attacks {
    _dir: TempDir,
    bin: PathBuf,
}

fn build_attacks() -> Attacks {
    let dir = TempDir::new("attacks");
    let bin = dir.0.join("attacks");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/attacks/attacks.c");
    let out = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&bin)
        .arg(src)
        .output()
        .expect("gcc (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Attacks { _dir: dir, bin }
}

struct Ran {
    pid: u64,
    stdout: String,
}

fn run(attacks: &Attacks, args: &[&str]) -> Ran {
    let child = Command::new(&attacks.bin)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = u64::from(child.id());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ran { pid, stdout }
}

fn connects_of(events: &[Value], pid: u64, port: u16) -> Vec<&Value> {
    of_kind(events, "net_connect")
        .into_iter()
        .filter(|e| e["process"]["pid"] == pid && e["connect"]["dst_port"] == port)
        .collect()
}

/// `result`/`protocol`: what the mode knows on that path (`None` result: not asserted; `None`
/// protocol: `tcp` or `unknown`).
fn assert_connect_seen(
    events: &[Value],
    ran: &Ran,
    port: u16,
    what: &str,
    mode: &str,
    (result, protocol): (Option<&str>, Option<&str>),
) {
    let seen = connects_of(events, ran.pid, port);
    assert_eq!(
        seen.len(),
        1,
        "{mode}: {what} (pid {}, {}) not seen once: {:?}",
        ran.pid,
        ran.stdout.trim(),
        of_kind(events, "net_connect")
    );
    let c = &seen[0]["connect"];
    assert_eq!(c["dst_addr"], "127.0.0.1", "{mode} {what}");
    assert_eq!(c["family"], "ipv4", "{mode} {what}");
    if let Some(result) = result {
        assert_eq!(c["result"], result, "{mode} {what}: {seen:?}");
    }
    match protocol {
        Some(p) => assert_eq!(c["protocol"], p, "{mode} {what}"),
        None => assert!(
            c["protocol"] == "tcp" || c["protocol"] == "unknown",
            "{mode} {what}: {c}"
        ),
    }
}

/// A loopback TCP port with nothing listening (bound then closed).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Every row of the table, in one sensor run.
fn all_rows(mode: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = port.to_string();
    let closed = closed_port();
    let cp = closed.to_string();
    let m = marker("bs");
    let attacks = build_attacks();
    let sensor = Sensor::start(mode, &[]);

    let connects = [
        (
            "int 0x80 connect",
            "connect32",
            &p,
            port,
            "ret=0",
            "success",
        ),
        (
            "int 0x80 connect",
            "connect32",
            &cp,
            closed,
            "ret=-111",
            "refused",
        ),
        (
            "socketcall connect",
            "socketcall_connect",
            &p,
            port,
            "ret=0",
            "success",
        ),
        (
            "socketcall connect",
            "socketcall_connect",
            &cp,
            closed,
            "ret=-111",
            "refused",
        ),
        (
            "io_uring connect",
            "uring_connect",
            &p,
            port,
            "res=0",
            "success",
        ),
        (
            "io_uring connect",
            "uring_connect",
            &cp,
            closed,
            "res=-111",
            "refused",
        ),
    ];
    let ran: Vec<Ran> = connects
        .iter()
        .map(|(_, cmd, port, ..)| run(&attacks, &[cmd, "127.0.0.1", port]))
        .collect();
    let su32 = run(&attacks, &["setuid32", "65534"]);
    let memfd = run(&attacks, &["memfd_exec", "innocent", "/bin/echo", &m]);
    // sh -c '<6,000 spaces>true payload'
    let script = format!("{}true {m}-padded", " ".repeat(6000));
    let padded = Command::new("/bin/sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(padded.success());
    // 60 arguments of 100 bytes before the one that matters.
    let mut many: Vec<String> = (0..60).map(|i| format!("{i:0>100}")).collect();
    many.push(format!("{m}-last"));
    assert!(Command::new("/bin/true")
        .args(&many)
        .status()
        .unwrap()
        .success());

    if mode == "audit" {
        std::thread::sleep(Duration::from_millis(500));
    }
    let events = sensor.stop();
    drop(listener);

    for ((what, _, _, port, printed, result), ran) in connects.iter().zip(&ran) {
        assert!(ran.stdout.contains(printed), "{what}: {}", ran.stdout);
        // Audit records carry no socket type: audit mode looks the fd up in /proc after the
        // fact, which a process that exited at once (these do) no longer has, and io_uring
        // records name no fd at all. eBPF mode reads it from the socket.
        let protocol = if mode == "audit" { None } else { Some("tcp") };
        // Audit mode (README): a URINGOP record's exit is what the issue handler returned;
        // the retry of a connect after EAGAIN returns 0 whether it was made or refused, and
        // the real result goes only to the completion. Reported as `in_progress`, never as a
        // success it cannot know.
        let result = if mode == "audit" && what.starts_with("io_uring") {
            Some("in_progress")
        } else {
            Some(*result)
        };
        assert_connect_seen(&events, ran, *port, what, mode, (result, protocol));
    }

    assert!(su32.stdout.contains("ret=0"), "{}", su32.stdout);
    let changes: Vec<&Value> = of_kind(&events, "privilege_change")
        .into_iter()
        .filter(|e| e["process"]["pid"] == su32.pid)
        .collect();
    assert!(
        changes.iter().any(|e| e["privilege"]["old_uid"] == 0
            && e["privilege"]["new_uid"] == 65534
            && e["privilege"]["via"] == "setuid"),
        "{mode}: setuid32 via int 0x80 not seen at the call: {changes:?}"
    );

    let execs = execs_with_arg(&events, &m);
    let fileless: Vec<&&Value> = execs
        .iter()
        .filter(|e| e["process"]["pid"] == memfd.pid && e["process"]["argv"][0] == "/bin/echo")
        .collect();
    assert_eq!(fileless.len(), 1, "{mode}: memfd exec: {execs:?}");
    let p = &fileless[0]["process"];
    assert_eq!(p["exe"], "/memfd:innocent (deleted)", "{mode}");
    assert_eq!(p["exe_deleted"], true, "{mode}");
    assert_eq!(p["argv"][1], m.as_str(), "{mode}");

    let sh = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| {
            e["process"]["argv"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(Value::as_str)
                .is_some_and(|s| s.ends_with(&format!("true {m}-padded")))
        })
        .unwrap_or_else(|| panic!("{mode}: padded sh -c payload not seen whole"));
    assert_eq!(sh["process"]["argv"][2].as_str().unwrap(), script);
    assert_ne!(sh["process"]["argv_truncated"], true, "{mode}: fits 32 KiB");

    let last = format!("{m}-last");
    let t = execs_with_arg(&events, &last);
    assert_eq!(t.len(), 1, "{mode}: 61-argument exec");
    assert_eq!(t[0]["process"]["argv"].as_array().unwrap().len(), 62);
}

/// Which process makes the setuid32 call, and so where the kernel side's "before" comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    /// Exec'd after the sensor started (known from its exec).
    Execd,
    /// Running before the sensor started (known from /proc, read at the start).
    OlderThanTheSensor,
    /// Forked, never exec'd, by a process exec'd after the sensor started (known from the
    /// fork).
    ForkedChild,
}

/// setuid32 through `int 0x80` is reported at the call: the event is in the output while the
/// process that made it is still alive (it waits on its stdin), with its pid and the ids.
fn setuid32_at_the_call(mode: &str, caller: Caller) {
    use std::io::{BufRead, BufReader, Write};
    let attacks = build_attacks();
    let sub = match caller {
        Caller::Execd => "setuid32_wait",
        Caller::OlderThanTheSensor => "setuid32_on_line",
        Caller::ForkedChild => "fork_setuid32_wait",
    };
    let spawn = || {
        Command::new(&attacks.bin)
            .args([sub, "65534"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (sensor, mut child) = if caller == Caller::OlderThanTheSensor {
        let child = spawn();
        (Sensor::start(mode, &[]), child)
    } else {
        let sensor = Sensor::start(mode, &[]);
        (sensor, spawn())
    };
    if caller == Caller::OlderThanTheSensor {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("ret=0"), "{line}");
    // The caller's pid, as it printed it (the forked child's is not the spawned one's).
    let pid: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    if caller != Caller::ForkedChild {
        assert_eq!(pid, u64::from(child.id()));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        let events = read_events(&sensor.output);
        let hit = of_kind(&events, "privilege_change")
            .into_iter()
            .find(|e| e["process"]["pid"] == pid)
            .cloned();
        if hit.is_some() || std::time::Instant::now() > deadline {
            break hit;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Still alive: the event did not wait for an exec or the exit.
    assert!(child.try_wait().unwrap().is_none(), "{mode}: exited early");
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    let events = sensor.stop();
    assert!(status.success());
    let e = found.unwrap_or_else(|| {
        panic!(
            "{mode} {caller:?}: setuid32 (pid {pid}) not reported before the exit: {:?}",
            of_kind(&events, "privilege_change")
        )
    });
    let p = &e["privilege"];
    assert_eq!(
        (&p["old_uid"], &p["new_uid"], &p["old_euid"], &p["new_euid"]),
        (
            &Value::from(0),
            &Value::from(65534),
            &Value::from(0),
            &Value::from(65534)
        ),
        "{mode} {caller:?}: {e}"
    );
    assert_eq!(p["via"], "setuid", "{mode} {caller:?}: {e}");
    assert_eq!(e["process"]["uid"], 65534, "{mode} {caller:?}: {e}");
    // Reported once: not again as an unexplained change at the exit.
    let reports = of_kind(&events, "privilege_change")
        .into_iter()
        .filter(|e| e["process"]["pid"] == pid)
        .count();
    assert_eq!(reports, 1, "{mode} {caller:?}");
    if mode == "ebpf" {
        let unknown = events
            .iter()
            .filter(|e| e["kind"] == "sensor_health")
            .filter_map(|e| e["health"]["drops"]["ia32_cred_call_before_unknown"].as_u64())
            .max();
        assert_eq!(
            unknown,
            Some(0),
            "{caller:?}: the credentials before were known"
        );
    }
}

/// A loopback listener whose accept queue is full (backlog 0, one connection never accepted):
/// the kernel drops every further SYN, so a connect to it blocks in SYN_SENT. Closed on drop.
struct FullListener {
    port: u16,
    _listener: std::os::fd::OwnedFd,
    _queued: std::net::TcpStream,
}

fn full_listener() -> FullListener {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on fds this function owns; the address is a valid sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let listener = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        assert_eq!(libc::bind(fd, (&raw const sa).cast(), len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        let mut len2 = len;
        assert_eq!(libc::getsockname(fd, (&raw mut sa).cast(), &mut len2), 0);
        let port = u16::from_be(sa.sin_port);
        let queued = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        FullListener {
            port,
            _listener: listener,
            _queued: queued,
        }
    }
}

/// Which entry a killed connect goes through.
#[derive(Debug, Clone, Copy)]
enum ConnectEntry {
    /// i386 `connect` through `int 0x80` (`attacks connect32`).
    Ia32,
    /// The native syscall, made by Python's socket module (an independent client).
    Native,
}

/// A process killed while blocked in a connect: the call still returns through its syscall exit
/// (with the kernel's ERESTARTSYS, 512, which audit records as EINTR, 4) before the thread dies,
/// and its connect is reported there, once, as `interrupted` with that errno: the handshake had
/// not ended, so it is not an `error`. (An ia32 entry whose exit is not taken at all is reported as `attempted` when its
/// thread exits; `compat_syscall::thread_exiting`.)
fn connect_killed_inside_the_call(mode: &str, entry: ConnectEntry) {
    let attacks = build_attacks();
    let full = full_listener();
    let sensor = Sensor::start(mode, &[]);
    let port = full.port.to_string();
    let mut cmd = match entry {
        ConnectEntry::Ia32 => {
            let mut c = Command::new(&attacks.bin);
            c.args(["connect32", "127.0.0.1", &port]);
            c
        }
        ConnectEntry::Native => {
            let mut c = Command::new("python3");
            c.args([
                "-c",
                "import socket, sys; socket.socket().connect(('127.0.0.1', int(sys.argv[1])))",
                &port,
            ]);
            c
        }
    };
    let mut child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id();
    // Wait until it sleeps in the connect (the SYN is dropped and retried for minutes).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan.contains("inet_wait_for_connect") || wchan.contains("wait_woken") {
            break;
        }
        if std::time::Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{mode} {entry:?}: the connect never blocked (wchan {wchan:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let events = read_events(&sensor.output);
        let seen: Vec<Value> = connects_of(&events, u64::from(pid), full.port)
            .into_iter()
            .cloned()
            .collect();
        if !seen.is_empty() || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let events = sensor.stop();
    assert_eq!(
        seen.len(),
        1,
        "{mode}: the killed {entry:?} connect (pid {pid}) not reported once: {:?}",
        of_kind(&events, "net_connect")
    );
    let c = &seen[0]["connect"];
    assert_eq!(c["result"], "interrupted", "{mode} {entry:?}: {}", seen[0]);
    // The audit kernel side records a restart code as EINTR (`__audit_syscall_exit`).
    let errno = if mode == "audit" { 4 } else { 512 };
    assert_eq!(c["errno"], errno, "{mode} {entry:?}: {}", seen[0]);
    assert_eq!(c["dst_addr"], "127.0.0.1");
}

#[test]
fn ebpf_reports_an_ia32_connect_killed_inside_the_call() {
    if privileged() {
        connect_killed_inside_the_call("ebpf", ConnectEntry::Ia32);
    }
}

#[test]
fn ebpf_reports_a_native_connect_killed_inside_the_call() {
    if privileged() {
        connect_killed_inside_the_call("ebpf", ConnectEntry::Native);
    }
}

#[test]
fn audit_reports_an_ia32_connect_killed_inside_the_call() {
    if privileged() {
        connect_killed_inside_the_call("audit", ConnectEntry::Ia32);
    }
}

#[test]
fn audit_reports_a_native_connect_killed_inside_the_call() {
    if privileged() {
        connect_killed_inside_the_call("audit", ConnectEntry::Native);
    }
}

#[test]
fn ebpf_reports_setuid32_at_the_call() {
    if !privileged() {
        return;
    }
    setuid32_at_the_call("ebpf", Caller::Execd);
}

#[test]
fn ebpf_reports_setuid32_of_a_process_older_than_the_sensor() {
    if !privileged() {
        return;
    }
    setuid32_at_the_call("ebpf", Caller::OlderThanTheSensor);
}

#[test]
fn ebpf_reports_setuid32_of_a_forked_child_at_the_call() {
    if !privileged() {
        return;
    }
    setuid32_at_the_call("ebpf", Caller::ForkedChild);
}

#[test]
fn audit_reports_setuid32_at_the_call() {
    if !privileged() {
        return;
    }
    setuid32_at_the_call("audit", Caller::Execd);
}

#[test]
fn ebpf_sees_every_row() {
    if !privileged() {
        return;
    }
    all_rows("ebpf");
}

#[test]
fn audit_sees_every_row() {
    if !privileged() {
        return;
    }
    all_rows("audit");
}

/// With the smallest bound (4 KiB) the head and the last 1 KiB are kept, and the count of
/// bytes left out is said: padding cannot hide the payload.
fn small_bound_keeps_the_tail(mode: &str) {
    let dir = TempDir::new("argv-bound");
    let cfg = dir.0.join("sensor.toml");
    std::fs::write(&cfg, "[sensor]\nargv_max_bytes = 4096\n").unwrap();
    let sensor = Sensor::start(mode, &["--config", cfg.to_str().unwrap()]);
    let m = marker("pad");
    let script = format!("{}true {m}", " ".repeat(6000));
    assert!(Command::new("/bin/sh")
        .args(["-c", &script])
        .status()
        .unwrap()
        .success());
    let mut many: Vec<String> = (0..60).map(|i| format!("{i:0>100}")).collect();
    many.push(format!("{m}-last"));
    assert!(Command::new("/bin/true")
        .args(&many)
        .status()
        .unwrap()
        .success());
    if mode == "audit" {
        std::thread::sleep(Duration::from_millis(500));
    }
    let events = sensor.stop();

    let area = |args: &[&str]| args.iter().map(|a| a.len() + 1).sum::<usize>();
    let sh = of_kind(&events, "process_exec")
        .into_iter()
        .find(|e| {
            e["process"]["argv"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(Value::as_str)
                .is_some_and(|s| s.ends_with(&format!("true {m}")))
        })
        .unwrap_or_else(|| panic!("{mode}: the padded payload is not in the kept tail"));
    let p = &sh["process"];
    assert_eq!(p["argv_truncated"], true);
    let total = area(&["/bin/sh", "-c", &script]);
    assert_eq!(
        p["argv_omitted_bytes"],
        (total - 4096) as u64,
        "{mode}: {p}"
    );
    assert_eq!(p["argv"][0], "/bin/sh");
    let marker_text = format!("[... {} bytes omitted ...]", total - 4096);
    assert!(p["argv"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == marker_text.as_str()));

    let last = format!("{m}-last");
    let t = execs_with_arg(&events, &last);
    assert_eq!(t.len(), 1, "{mode}: the last of 61 arguments is kept");
    assert_eq!(t[0]["process"]["argv"][0], "/bin/true");
    assert!(t[0]["process"]["argv_omitted_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn ebpf_small_argv_bound_keeps_head_and_tail() {
    if !privileged() {
        return;
    }
    small_bound_keeps_the_tail("ebpf");
}

#[test]
fn audit_small_argv_bound_keeps_head_and_tail() {
    if !privileged() {
        return;
    }
    small_bound_keeps_the_tail("audit");
}

/// io_uring openat + write in a watched tree: the file event names the process.
#[test]
fn io_uring_file_write_is_seen_by_fanotify() {
    if !privileged() {
        return;
    }
    let w = WatchedTree::new("uring-files");
    let cfg = w.config.clone();
    let attacks = build_attacks();
    let sensor = Sensor::start("ebpf", &["--config", cfg.to_str().unwrap()]);
    let target = w.tree.join("uring-dropped");
    let ran = run(
        &attacks,
        &["uring_write", target.to_str().unwrap(), "payload"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let reason = sensor.reason();
    let events = sensor.stop();
    assert!(reason.contains("files: fanotify"), "{reason}");
    let files: Vec<&Value> = of_kind(&events, "file")
        .into_iter()
        .filter(|e| {
            e["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("uring-dropped"))
        })
        .collect();
    let ops: Vec<&str> = files
        .iter()
        .flat_map(|e| e["file"]["ops"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    assert!(ops.contains(&"create"), "{ops:?} in {files:?}");
    assert!(
        ops.contains(&"modify") || ops.contains(&"close_write"),
        "{ops:?}"
    );
    assert!(
        files.iter().any(|e| e["process"]["pid"] == ran.pid),
        "pid {} in {files:?}",
        ran.pid
    );
}

/// `ebpf.ia32_hooks = "off"` on a kernel that has the ia32 entry: the `raw_syscalls` pair is
/// not attached, the health reason names the blind spot, and what the other hooks still see
/// is reported: the ia32 connect without its result (`attempted`, from the cgroup hook) and
/// setuid32 late, at the process's exit (`observed`, from the exit's credential check).
#[test]
fn ebpf_ia32_hooks_off_names_the_blind_spot() {
    if !privileged() {
        return;
    }
    use sensor::sources::ia32_entry::{probe, Ia32Entry};
    // The fact the "auto" default relies on: this kernel runs ia32 syscalls, and the probe
    // says so (from this threaded test process).
    assert_eq!(probe(), Ia32Entry::Present);
    let dir = TempDir::new("ia32-off");
    let cfg = dir.0.join("sensor.toml");
    std::fs::write(&cfg, "[ebpf]\nia32_hooks = \"off\"\n").unwrap();
    let attacks = build_attacks();
    let sensor = Sensor::start("ebpf", &["--config", cfg.to_str().unwrap()]);
    let closed = closed_port();
    let connect = run(&attacks, &["connect32", "127.0.0.1", &closed.to_string()]);
    assert!(connect.stdout.contains("ret=-111"), "{}", connect.stdout);
    let setuid = run(&attacks, &["setuid32", "65534"]);
    assert!(setuid.stdout.contains("ret=0"), "{}", setuid.stdout);
    std::thread::sleep(Duration::from_millis(300));
    let events = sensor.stop();

    let reasons: Vec<&str> = of_kind(&events, "sensor_health")
        .iter()
        .filter_map(|e| e["health"]["reason"].as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("blind spot: ia32") && r.contains("ebpf.ia32_hooks = \"off\"")),
        "{reasons:?}"
    );
    assert_connect_seen(
        &events,
        &connect,
        closed,
        "connect32 with the ia32 hooks off",
        "ebpf",
        (Some("attempted"), None),
    );
    let changes: Vec<&Value> = of_kind(&events, "privilege_change")
        .into_iter()
        .filter(|e| e["process"]["pid"] == setuid.pid)
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let p = &changes[0]["privilege"];
    assert_eq!(p["via"], "observed", "{p}");
    assert_eq!(
        (&p["old_uid"], &p["new_uid"]),
        (&Value::from(0), &Value::from(65534))
    );

    // `sensor probe` with the same config names the same blind spot in its ia32 rows.
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["probe", "--json", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["capabilities"]["coverage"].as_array().unwrap();
    for what in ["ebpf: ia32 connect", "ebpf: ia32 set*id/capset"] {
        let row = rows
            .iter()
            .find(|r| r["what"] == what)
            .unwrap_or_else(|| panic!("no {what} row: {rows:?}"));
        assert_eq!(
            (&row["seen"], &row["result"]),
            (&Value::from(true), &Value::from(false)),
            "{row}"
        );
        assert!(
            row["detail"]
                .as_str()
                .unwrap()
                .contains("blind spot: ebpf.ia32_hooks = \"off\""),
            "{row}"
        );
    }
}
