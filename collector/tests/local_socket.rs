//! Local mode on the real `collector` binary: its Unix socket is root's (socket 0600 in a
//! 0700 directory) and a peer must be root by SO_PEERCRED. User `nobody`, with an
//! independent client (Python grpcio), cannot write a single event, even when an admin
//! opens the socket's permissions by mistake, and cannot bind the collector's socket path
//! to receive events in its place. Root (the sensor) is served. Privileged (root, setpriv).
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::attack::{privileged, Py};
use common::*;

fn metric(c: &Collector, prefix: &str) -> u64 {
    c.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn nobody_cannot_write_to_or_pose_as_the_local_collector() {
    if !privileged("nobody_cannot_write_to_or_pose_as_the_local_collector") {
        return;
    }
    let dir = TempDir::new("local");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let py = Py::new(dir.path());
    let sock_dir = dir.path().join("run");
    let sock = sock_dir.join("collector.sock");
    let target = format!("unix:{}", sock.display());
    let c = Collector::start_on(dir.path(), &target, &[]);
    assert_eq!(c.grpc, target);

    // What the collector made: root's 0700 directory, root's 0600 socket.
    let d = std::fs::metadata(&sock_dir).unwrap();
    assert_eq!((d.uid(), d.mode() & 0o777), (0, 0o700));
    let s = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!((s.uid(), s.mode() & 0o777), (0, 0o600));

    let marker = format!("local-{}", std::process::id());
    let send = |nobody: bool, m: &str| {
        py.client(
            "send",
            &target,
            &["--host", "localhost-test", "--marker", m, "--timeout", "10"],
            nobody,
        )
    };

    // nobody: cannot even reach the socket.
    let r = py.run(&["connect", "--socket", sock.to_str().unwrap()], true);
    assert_eq!(r["connected"], false, "{r}");
    assert_eq!(r["errno"], libc::EACCES, "{r}");
    let r = send(true, &format!("{marker}-nobody1"));
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");

    // An admin opens the directory and the socket to everyone: the peer check still
    // refuses nobody, at accept, before a byte is read.
    std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let r = py.run(&["connect", "--socket", sock.to_str().unwrap()], true);
    assert_eq!(r["connected"], true, "the socket is reachable now: {r}");
    let r = send(true, &format!("{marker}-nobody2"));
    assert_ne!(r["code"], "OK", "{r}");
    assert!(r["acks"].as_array().unwrap().is_empty(), "{r}");
    assert!(metric(&c, "collector_connections_refused_total ") >= 2);

    // Root (what the sensor runs as) is served.
    let r = send(false, &format!("{marker}-root"));
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(r["acks"][0]["stored"], 10, "{r}");
    let stored = query(&c.db, &["--text", &marker]);
    assert_eq!(stored.len(), 10, "only root's events: {stored:#?}");
    assert!(stored
        .iter()
        .all(|e| e["process"]["argv"][0].as_str().unwrap().ends_with("-root")));
    // The local root sensor keeps its own id (no identity suffix).
    assert_eq!(stored[0]["sensor_id"], "attack-sensor");
    c.stop();

    // Collector down: nobody cannot take the socket path to receive events in its place.
    std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let _ = std::fs::remove_file(&sock);
    let r = py.run(&["bind", "--socket", sock.to_str().unwrap()], true);
    assert_eq!(r["bound"], false, "{r}");
    assert_eq!(r["errno"], libc::EACCES, "{r}");
    // A directory left open by mistake is refused by the collector at start, not used.
    std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", &target, "--metrics-listen", ""])
        .arg("--db")
        .arg(dir.path().join("x.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lets group or others in"), "{err}");
}

/// Socket activation as the package's collector.socket does it: the socket arrives bound as
/// fd 3 with LISTEN_FDS/LISTEN_PID, and the collector serves on it instead of binding its own.
#[test]
fn the_collector_serves_on_a_socket_passed_by_systemd() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("activation");
    let py = Py::new(dir.path());
    let sock = dir.path().join("passed.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ino = std::fs::symlink_metadata(&sock).unwrap().ino();
    let fd = listener.as_raw_fd();
    let target = format!("unix:{}", sock.display());
    let log = dir.path().join("collector.log");
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["serve", "--listen", &target, "--metrics-listen", ""])
        .arg("--db")
        .arg(dir.path().join("e.db"))
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, getpid, setenv on
    // the child's own copy of the environment, which nothing else touches there).
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself keeps close-on-exec: clear it.
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) != 3 {
                return Err(std::io::Error::last_os_error());
            }
            // The pid in decimal without allocating (we are between fork and exec).
            let mut buf = [0u8; 16];
            let mut n = libc::getpid() as u32;
            let mut i = buf.len() - 1; // buf[15] stays 0: the terminator
            loop {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            libc::setenv(c"LISTEN_FDS".as_ptr(), c"1".as_ptr(), 1);
            libc::setenv(c"LISTEN_PID".as_ptr(), buf[i..].as_ptr().cast(), 1);
            Ok(())
        })
    };
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let r = loop {
        let r = py.client(
            "send",
            &target,
            &["--host", "activated", "--timeout", "5"],
            false,
        );
        if r["code"] == "OK" || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(r["code"], "OK", "{r} {text}");
    assert_eq!(r["acks"][0]["stored"], 10, "{r}");
    assert!(
        text.contains("using the socket passed by systemd"),
        "{text}"
    );
    // The same socket file: not unlinked and bound again.
    assert_eq!(std::fs::symlink_metadata(&sock).unwrap().ino(), ino);
}
