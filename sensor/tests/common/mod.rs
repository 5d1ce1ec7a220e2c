//! Shared harness of the privileged integration tests: runs the real `sensor` binary and
//! reads back its JSON lines.
#![allow(dead_code)]

pub mod seccomp;
pub mod workload;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Privileged tests run when `SENSOR_PRIVILEGED_TESTS=1` (scripts/test sets it as root). When
/// set they must pass; when unset they are skipped with a message.
pub fn privileged() -> bool {
    if std::env::var("SENSOR_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set SENSOR_PRIVILEGED_TESTS=1 and run as root");
    false
}

/// A unique marker for this test run.
pub fn marker(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("mk{}{}{}", tag, std::process::id(), nanos % 1_000_000_000)
}

/// A running sensor writing to a temp file; stopped (by pid) and cleaned up on drop.
pub struct Sensor {
    child: Option<Child>,
    pub output: PathBuf,
    dir: PathBuf,
}

impl Sensor {
    pub fn start(mode: &str, extra: &[&str]) -> Sensor {
        Self::start_with(mode, extra, false, true)
    }

    /// Starts the sensor under a seccomp filter that denies bpf() with EPERM.
    pub fn start_without_bpf(mode: &str, extra: &[&str]) -> Sensor {
        Self::start_with(mode, extra, true, true)
    }

    /// Starts the sensor without `--output` (the config decides, e.g. gRPC) and waits for its
    /// status file instead of a health event.
    pub fn start_status_only(mode: &str, extra: &[&str]) -> Sensor {
        Self::start_with(mode, extra, false, false)
    }

    /// Starts the sensor writing OCSF lines (`--output ocsf:FILE`), optionally with bpf()
    /// denied; `read_events(&s.output)` then returns OCSF events.
    pub fn start_ocsf(mode: &str, extra: &[&str], deny_bpf: bool) -> Sensor {
        Self::spawn(mode, extra, deny_bpf, true, true)
    }

    fn start_with(mode: &str, extra: &[&str], deny_bpf: bool, to_file: bool) -> Sensor {
        Self::spawn(mode, extra, deny_bpf, to_file, false)
    }

    fn spawn(mode: &str, extra: &[&str], deny_bpf: bool, to_file: bool, ocsf: bool) -> Sensor {
        use std::os::unix::process::CommandExt;
        let dir = std::env::temp_dir().join(marker("sensor-it"));
        std::fs::create_dir_all(&dir).unwrap();
        let output = dir.join("events.jsonl");
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sensor"));
        if deny_bpf {
            // SAFETY: deny_bpf only calls prctl, which is async-signal-safe.
            unsafe { cmd.pre_exec(seccomp::deny_bpf) };
        }
        cmd.args(["run", "--mode", mode]);
        if to_file && ocsf {
            cmd.arg("--output")
                .arg(format!("ocsf:{}", output.display()));
        } else if to_file {
            cmd.arg("--output").arg(&output);
        }
        let child = cmd
            .args(["--health-interval", "1"])
            .arg("--status")
            .arg(dir.join("status.json"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sensor");
        let s = Sensor {
            child: Some(child),
            output,
            dir,
        };
        s.wait_attached(to_file);
        s
    }

    fn wait_attached(&self, to_file: bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = if to_file {
                read_events(&self.output).iter().any(|e| {
                    e["kind"] == "sensor_health" || e["metadata"]["event_code"] == "sensor_health"
                })
            } else {
                self.status_path().exists()
            };
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sensor did not start: {}", self.stderr());
    }

    /// The mode named by the first health event.
    pub fn mode(&self) -> String {
        self.first_health("mode")
    }

    /// The reason named by the first health event.
    pub fn reason(&self) -> String {
        self.first_health("reason")
    }

    fn first_health(&self, field: &str) -> String {
        read_events(&self.output)
            .iter()
            .find(|e| e["kind"] == "sensor_health")
            .map(|e| e["health"][field].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The status file this sensor writes (`run --status`).
    pub fn status_path(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    /// The private temp dir of this sensor (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// SIGKILL by pid and reap (a crash: nothing is cleaned up by the sensor itself).
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait for a clean exit, return every event written.
    pub fn stop(mut self) -> Vec<Value> {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "sensor exited with {status}: {}",
                    self.stderr()
                );
                // stderr went to a file: the log must carry no ANSI colour codes.
                assert!(
                    !self.stderr().contains('\u{1b}'),
                    "escape codes in a log written to a file: {:?}",
                    self.stderr()
                );
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sensor did not stop within 30 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        read_events(&self.output)
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first so the sensor removes its audit rules and detaches cleanly even
            // when a test assertion failed; SIGKILL only if it does not stop.
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

mod temp_dir;
#[allow(unused_imports)]
pub use temp_dir::TempDir;

/// A directory on the root filesystem (not the /tmp tmpfs) holding `tree/` and a
/// `sensor.toml` whose `[files]` section watches it; removed on drop.
pub struct WatchedTree {
    pub dir: TempDir,
    pub tree: PathBuf,
    pub config: PathBuf,
}

impl WatchedTree {
    pub fn new(tag: &str) -> WatchedTree {
        let dir = TempDir::new_in(Path::new("/var/tmp"), tag);
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        let config = dir.path().join("sensor.toml");
        std::fs::write(
            &config,
            format!("[files]\nwatch = [{:?}]\n", tree.display().to_string()),
        )
        .unwrap();
        WatchedTree { dir, tree, config }
    }
}

pub fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// Exec events whose argv contains `needle` exactly.
pub fn execs_with_arg<'a>(events: &'a [Value], needle: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "process_exec")
        .filter(|e| {
            e["process"]["argv"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == needle))
        })
        .collect()
}

pub fn exit_of(events: &[Value], pid: u64) -> Option<&Value> {
    events
        .iter()
        .find(|e| e["kind"] == "process_exit" && e["process"]["pid"] == pid)
}

/// The last health event's drop counters summed.
pub fn final_drops(events: &[Value]) -> u64 {
    events
        .iter()
        .rev()
        .find(|e| e["kind"] == "sensor_health")
        .and_then(|h| h["health"]["drops"].as_object())
        .map(|d| d.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}
