//! Privileged: with Debian's auditd holding the audit pid, the sensor reads the multicast log
//! beside it, auditd keeps logging, and afterwards only the sensor's rules are gone. The test
//! starts auditd itself (its own config dir and log file) and stops it by pid.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const AUDITD_CONF: &str = "local_events = yes
write_logs = yes
log_format = ENRICHED
flush = INCREMENTAL_ASYNC
freq = 50
max_log_file = 8
num_logs = 2
priority_boost = 4
name_format = NONE
max_log_file_action = ROTATE
space_left = 75
space_left_action = SYSLOG
admin_space_left = 50
admin_space_left_action = SUSPEND
disk_full_action = SUSPEND
disk_error_action = SUSPEND
use_libwrap = no
tcp_listen_queue = 5
tcp_max_per_addr = 1
tcp_client_max_idle = 0
transport = TCP
distribute_network = no
q_depth = 2000
overflow_action = SYSLOG
max_restarts = 10
plugin_dir = /etc/audit/plugins.d
end_of_event_timeout = 2
";

fn auditctl(args: &[&str]) -> String {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .expect("auditctl");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `enabled` and `pid` from `auditctl -s`.
fn status() -> (String, String) {
    let s = auditctl(&["-s"]);
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    (get("enabled "), get("pid "))
}

struct Auditd {
    child: Child,
    dir: PathBuf,
    rule_added: bool,
    enabled_before: String,
}

impl Auditd {
    fn start() -> Auditd {
        let (enabled_before, pid) = status();
        assert_eq!(pid, "0", "no audit daemon may run before this test");
        let dir = std::env::temp_dir().join(marker("auditd-it"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.log");
        std::fs::write(
            dir.join("auditd.conf"),
            format!("log_file = {}\n{AUDITD_CONF}", log.display()),
        )
        .unwrap();
        let child = Command::new("auditd")
            .arg("-n")
            .arg("-c")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start auditd");
        let a = Auditd {
            child,
            dir,
            rule_added: false,
            enabled_before,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while status().1 != a.child.id().to_string() {
            assert!(Instant::now() < deadline, "auditd did not register");
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default()
    }

    fn log_path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        if self.rule_added {
            auditctl(&[
                "-d",
                "always,exit",
                "-F",
                "arch=b64",
                "-S",
                "execve",
                "-k",
                "auditd-it",
            ]);
        }
        // SAFETY: signalling the auditd this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        auditctl(&["-e", &self.enabled_before]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn sensor_reads_beside_auditd_and_auditd_keeps_working() {
    if !privileged() {
        return;
    }
    let mut auditd = Auditd::start();
    let out = auditctl(&[
        "-a",
        "always,exit",
        "-F",
        "arch=b64",
        "-S",
        "execve",
        "-k",
        "auditd-it",
    ]);
    assert!(!out.contains("Error"), "{out}");
    auditd.rule_added = true;
    let auditd_pid = auditd.child.id().to_string();

    let sensor = Sensor::start("audit", &[]);
    let reason = sensor.reason();
    assert!(
        reason.contains("multicast"),
        "sensor must not steal the audit pid: {reason}"
    );
    assert_eq!(status().1, auditd_pid, "auditd still holds the audit pid");

    let m = marker("cx");
    assert!(Command::new("/bin/true")
        .arg(&m)
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(1500));
    let events = sensor.stop();

    assert_eq!(
        execs_with_arg(&events, &m).len(),
        1,
        "sensor saw the exec via multicast"
    );
    assert_eq!(
        status().1,
        auditd_pid,
        "auditd still registered after the sensor stopped"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !auditd.log().contains(&m) {
        assert!(
            Instant::now() < deadline,
            "auditd did not log the marker ({})",
            auditd.log_path().display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rules = auditctl(&["-l"]);
    assert!(
        rules.contains("auditd-it"),
        "auditd's rule untouched: {rules}"
    );
    assert!(
        !rules.contains("key=sensor"),
        "sensor rules removed: {rules}"
    );
}
