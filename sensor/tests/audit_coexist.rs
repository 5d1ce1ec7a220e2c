//! Privileged: with Debian's auditd holding the audit pid, the sensor reads the multicast log
//! beside it, auditd keeps logging, and afterwards only the sensor's rules are gone. When the
//! sensor holds the slot and auditd starts, the sensor hands it over and a marker workload
//! running across the handover is reported whole, each exec once. Without a multicast group
//! (joining it denied by seccomp) the sensor refuses to take the slot from a running auditd.
//! The tests start auditd themselves (own config dir and log file) and stop it by pid; they
//! share the one audit daemon slot, so they run one after another.
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

/// The value of `key` (e.g. `"pid"`) in `auditctl -s` output.
fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(' ')
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// `enabled` and `pid` from `auditctl -s`.
fn status() -> (String, String) {
    let s = auditctl(&["-s"]);
    (field(&s, "enabled"), field(&s, "pid"))
}

/// What the test restores when its auditd stops: `enabled` and `backlog_limit` as they were
/// before anything of the test ran (auditd and the sensor's handover raise the backlog limit).
#[derive(Clone)]
struct Before {
    enabled: String,
    backlog_limit: String,
}

fn before() -> Before {
    let s = auditctl(&["-s"]);
    Before {
        enabled: field(&s, "enabled"),
        backlog_limit: field(&s, "backlog_limit"),
    }
}

struct Auditd {
    child: Child,
    dir: PathBuf,
    rule_added: bool,
    before: Before,
}

/// One test at a time: they all use the kernel's one audit daemon slot.
static SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn slot() -> std::sync::MutexGuard<'static, ()> {
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

impl Auditd {
    fn start() -> Auditd {
        let before = before();
        assert_eq!(status().1, "0", "no audit daemon may run before this test");
        let a = Auditd::spawn(before);
        let deadline = Instant::now() + Duration::from_secs(20);
        while status().1 != a.child.id().to_string() {
            assert!(Instant::now() < deadline, "auditd did not register");
            std::thread::sleep(Duration::from_millis(100));
        }
        a
    }

    /// Starts auditd without waiting for it to register (the slot may be someone else's).
    fn spawn(before: Before) -> Auditd {
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
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("start auditd");
        Auditd {
            child,
            dir,
            rule_added: false,
            before,
        }
    }

    /// Still running (not exited with "Unable to set audit pid").
    fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default()
    }

    /// What auditd printed (why it exited).
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
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
        auditctl(&["-e", &self.before.enabled]);
        if !self.before.backlog_limit.is_empty() {
            auditctl(&["-b", &self.before.backlog_limit]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn sensor_reads_beside_auditd_and_auditd_keeps_working() {
    if !privileged() {
        return;
    }
    let _slot = slot();
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

/// The last health event's reason.
fn last_reason(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .rev()
        .find(|e| e["kind"] == "sensor_health")
        .map(|e| e["health"]["reason"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Runs `/bin/true <m>-<i>` every 15 ms until `stop`; returns how many ran.
fn marker_execs(m: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> usize {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        assert!(Command::new("/bin/true")
            .arg(format!("{m}-{n}"))
            .status()
            .unwrap()
            .success());
        n += 1;
        std::thread::sleep(Duration::from_millis(15));
    }
    n
}

#[test]
fn sensor_hands_the_slot_to_auditd_and_loses_no_exec() {
    if !privileged() {
        return;
    }
    let _slot = slot();
    let before = before();
    assert_eq!(status().1, "0", "no audit daemon may run before this test");
    let sensor = Sensor::start("audit", &[]);
    let reason = sensor.reason();
    assert!(
        reason.contains("registered as the audit daemon") && reason.contains("handed to auditd"),
        "the sensor takes the free slot, ready to hand it over: {reason}"
    );
    assert_eq!(status().1, sensor.pid().to_string());

    // A marker workload running before, across and after the handover.
    let m = marker("ho");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workload = {
        let (m, stop) = (m.clone(), stop.clone());
        std::thread::spawn(move || marker_execs(m, stop))
    };
    std::thread::sleep(Duration::from_millis(1000));
    let mut auditd = Auditd::spawn(before.clone());
    let first_pid = auditd.child.id().to_string();
    let mut auditd_pid = first_pid.clone();
    let mut restarted = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while status().1 != auditd_pid {
        if !auditd.alive() {
            // auditd claims the slot right after its exec; when the sensor reads that exec a
            // moment too late, the kernel refuses the claim and auditd exits. The sensor then
            // releases the slot on the refused claim, and Debian's auditd.service
            // (Restart=on-failure) starts auditd again, which must then register. Once.
            let released = Instant::now() + Duration::from_secs(2);
            while status().1 != "0" && Instant::now() < released {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                !restarted && status().1 == "0",
                "auditd exited and the sensor kept the slot (auditd: {}; sensor: {})",
                auditd.stderr(),
                sensor.stderr()
            );
            eprintln!(
                "auditd lost the race for the slot ({}); started again, as systemd would",
                auditd.stderr().trim()
            );
            restarted = true;
            auditd = Auditd::spawn(before.clone());
            auditd_pid = auditd.child.id().to_string();
        }
        assert!(Instant::now() < deadline, "auditd did not register");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ran = workload.join().unwrap();
    // auditd logs a marker exec of its own (the sensor's rules are in the kernel's list).
    let after = format!("{m}-{}", ran - 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !auditd.log().contains(&after) {
        assert!(
            Instant::now() < deadline,
            "auditd did not log the marker exec {after}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(auditd.alive(), "auditd still running");
    // `sensor status` (status file written every 5 s by default) names the new arrangement.
    // The sensor names the auditd whose exec or refused claim it handed the slot to.
    let handed = format!("handed to auditd (pid {first_pid})");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status_text = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["status", "--path"])
            .arg(sensor.status_path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(&handed) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let events = sensor.stop();

    let mut missing = Vec::new();
    for i in 0..ran {
        let n = execs_with_arg(&events, &format!("{m}-{i}")).len();
        if n != 1 {
            missing.push((i, n));
        }
    }
    let dups = events
        .iter()
        .rev()
        .find(|e| e["kind"] == "sensor_health")
        .map(|e| e["health"]["events"]["audit_handover_duplicates_dropped"].clone());
    eprintln!(
        "handover: {ran} marker execs, auditd pid {auditd_pid}, second copies dropped {dups:?}, reason: {}",
        last_reason(&events)
    );
    assert!(
        missing.is_empty(),
        "every marker exec reported exactly once across the handover; (index, count) off: {missing:?}"
    );
    let reason = last_reason(&events);
    assert!(
        reason.contains(&handed) && reason.contains("now reading the audit multicast group"),
        "health names the new arrangement: {reason}"
    );
    assert!(
        status_text.contains(&handed),
        "sensor status names the new arrangement: {status_text}"
    );
    assert_eq!(
        status().1,
        auditd_pid,
        "auditd keeps the slot after the sensor stops"
    );
    assert_eq!(status().0, "1", "audit stays enabled for auditd");
    let rules = auditctl(&["-l"]);
    assert!(
        !rules.contains("key=sensor"),
        "sensor rules removed: {rules}"
    );
}

/// `sensor` with joining a netlink multicast group denied (a kernel without the audit log's
/// multicast group, before 3.16).
/// `deny_bpf` as well leaves audit the only rung for `--mode auto`.
fn sensor_without_multicast(args: &[&str], deny_bpf: bool) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sensor"));
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: the filters only call prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if deny_bpf {
                common::seccomp::deny_bpf()?;
            }
            common::seccomp::deny_netlink_membership()
        })
    };
    cmd
}

#[test]
fn without_multicast_the_sensor_refuses_to_steal_the_slot_from_auditd() {
    if !privileged() {
        return;
    }
    let _slot = slot();
    let auditd = Auditd::start();
    let auditd_pid = auditd.child.id().to_string();
    let impossible = "reading beside a running auditd is impossible on this kernel";

    let probe = sensor_without_multicast(&["probe"], false)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout).into_owned();
    let beside = text
        .lines()
        .find(|l| l.starts_with("audit beside"))
        .unwrap_or_default();
    assert!(
        beside.contains("FAIL") && beside.contains(impossible) && beside.contains(&auditd_pid),
        "probe names the missing multicast group and auditd's pid:\n{text}"
    );
    let rung = text
        .lines()
        .find(|l| l.starts_with("rung audit"))
        .unwrap_or_default();
    assert!(
        rung.contains("skipped") && rung.contains(impossible),
        "{text}"
    );

    for mode in ["audit", "auto"] {
        let dir = std::env::temp_dir().join(marker("nomc"));
        std::fs::create_dir_all(&dir).unwrap();
        // Under auto, eBPF is denied too: audit would be the only rung.
        let mut child =
            sensor_without_multicast(&["run", "--mode", mode, "--output"], mode == "auto")
                .arg(dir.join("events.jsonl"))
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                // SAFETY: signalling our own child by pid; it cleans up on SIGTERM.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            exit.is_some_and(|st| !st.success()),
            "--mode {mode} must refuse, not run: {stderr}"
        );
        assert!(
            stderr.contains(impossible) && stderr.contains("does not take the slot"),
            "--mode {mode} says why: {stderr}"
        );
        assert_eq!(status().1, auditd_pid, "auditd keeps the slot");
    }
    let rules = auditctl(&["-l"]);
    assert!(
        !rules.contains("key=sensor"),
        "no sensor rules left: {rules}"
    );
}
