//! The independent attack client: `tests/attack/grpc_attack.py` run with the Python venv
//! scripts/setup installs (grpcio, grpcio-tools; `SENSOR_TEST_VENV` overrides its path),
//! with stubs generated from sensor-proto/sensor.proto at test time. Optionally as user `nobody`
//! (setpriv), from copies in a directory `nobody` can read.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub fn venv_python() -> PathBuf {
    let venv = std::env::var("SENSOR_TEST_VENV").unwrap_or("/var/lib/sensor-test/venv".into());
    let py = Path::new(&venv).join("bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/setup (it installs grpcio for the attack tests)",
        py.display()
    );
    py
}

pub struct Py {
    pub python: PathBuf,
    pub script: PathBuf,
    pub stubs: PathBuf,
}

pub fn open_to_all(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Py {
    /// Copies the script into `dir/py` and generates the stubs there.
    pub fn new(dir: &Path) -> Py {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let base = dir.join("py");
        let stubs = base.join("stubs");
        std::fs::create_dir_all(&stubs).unwrap();
        // `nobody` must reach the script and stubs: every directory up to them is traversable.
        let mut d = Some(base.as_path());
        while let Some(p) = d {
            if p == Path::new("/") || p == std::env::temp_dir() {
                break;
            }
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            open_to_all(p, mode | 0o755);
            d = p.parent();
        }
        open_to_all(&stubs, 0o755);
        let script = base.join("grpc_attack.py");
        std::fs::copy(
            here.join("../collector/tests/attack/grpc_attack.py"),
            &script,
        )
        .unwrap();
        open_to_all(&script, 0o644);
        let proto = here.join("../sensor-proto/sensor.proto");
        let py = Py {
            python: venv_python(),
            script,
            stubs,
        };
        let out = py.run(
            &[
                "stubs",
                py.stubs.to_str().unwrap(),
                "--proto",
                proto.to_str().unwrap(),
            ],
            false,
        );
        assert_eq!(out["rc"], 0, "stub generation: {out}");
        for e in std::fs::read_dir(&py.stubs).unwrap() {
            open_to_all(&e.unwrap().path(), 0o644);
        }
        py
    }

    fn command(&self, args: &[&str], nobody: bool) -> Command {
        let mut c = if nobody {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(&self.python);
            c
        } else {
            Command::new(&self.python)
        };
        c.arg(&self.script).args(args);
        c
    }

    /// Runs a subcommand to its end; its JSON line.
    pub fn run(&self, args: &[&str], nobody: bool) -> Value {
        let o = self
            .command(args, nobody)
            .stdin(Stdio::null())
            .output()
            .expect("run python");
        let stdout = String::from_utf8_lossy(&o.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|_| {
            panic!(
                "python {args:?}: no JSON ({}): {stdout}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    /// `cmd` with the stubs and target every client subcommand takes, then `extra`.
    fn client_args<'a>(&'a self, cmd: &'a str, target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            cmd,
            "--stubs",
            self.stubs.to_str().unwrap(),
            "--target",
            target,
        ];
        args.extend_from_slice(extra);
        args
    }

    /// A client subcommand with its stubs and target.
    pub fn client(&self, cmd: &str, target: &str, extra: &[&str], nobody: bool) -> Value {
        self.run(&self.client_args(cmd, target, extra), nobody)
    }

    /// A long-running client subcommand (streams) with its stubs and target; see [`Py::hold`].
    pub fn hold_client(&self, cmd: &str, target: &str, extra: &[&str]) -> Held {
        self.hold(&self.client_args(cmd, target, extra), false)
    }

    /// Starts a long-running subcommand (idle, fake-collector); its first JSON line and the
    /// child, which ends when [`Held::finish`] closes its stdin.
    pub fn hold(&self, args: &[&str], nobody: bool) -> Held {
        let mut child = self
            .command(args, nobody)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let mut line = String::new();
        use std::io::BufRead as _;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let first = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("python {args:?}: no JSON line: {line:?}"));
        Held { child, first }
    }
}

pub struct Held {
    child: Child,
    pub first: Value,
}

impl Held {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin and returns the JSON summary the subcommand prints on stderr.
    pub fn finish(mut self) -> Value {
        drop(self.child.stdin.take());
        let o = self.child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|_| panic!("no summary: {err}"))
    }
}

/// Peak resident set size of a process (VmHWM), in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Raises this process's soft open-file limit (children inherit it).
pub fn raise_nofile(want: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = want.min(r.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

/// Root-only tests (user switching, root-owned sockets) run when `SENSOR_PRIVILEGED_TESTS=1`.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && std::env::var("SENSOR_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("SKIPPED {test}: set SENSOR_PRIVILEGED_TESTS=1 and run as root");
    false
}
