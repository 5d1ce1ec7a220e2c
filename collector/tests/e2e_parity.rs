//! Privileged, end to end: every event kind goes through the real sensor binary and arrives
//! at the collector whole. The sensor ships over gRPC and, with `ship.json_copy`, writes
//! the JSON line of every event it ships (the same writer as `--output json`, seq
//! included). The collector's `query --json` of each event must equal that line field for
//! field. Run in eBPF mode and in audit mode, with the SQLite sink and with the JetStream
//! sink followed by `collector consume`. The test fails when any of the ten kinds is missing.
//!
//! The sensor binary is built by the test (`cargo build -p sensor`, a no-op when it is up
//! to date) next to the collector binary.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fleet, nats, Collector, TempDir};
use sensor::sources::logins::utmp::{self, UtmpRecord, DEAD_PROCESS, LOGIN_PROCESS, USER_PROCESS};
use serde_json::Value;

/// Every kind of the schema, by name: the test fails when any is missing.
fn kinds() -> impl Iterator<Item = &'static str> {
    sensor_proto::v1::Kind::ALL.into_iter().map(|k| k.as_str())
}

fn privileged() -> bool {
    if std::env::var("SENSOR_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set SENSOR_PRIVILEGED_TESTS=1 and run as root");
    false
}

/// The sensor binary of this workspace, built (or found up to date) by cargo.
fn sensor_bin() -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", "sensor", "--bin", "sensor"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build -p sensor");
    assert!(
        out.status.success(),
        "cargo build -p sensor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = Path::new(common::bin()).with_file_name("sensor");
    assert!(bin.exists(), "no sensor binary at {}", bin.display());
    bin
}

// utmp records (x86_64 glibc layout, 384 bytes), built by the sensor's own encoder.

fn utmp(ut_type: i16, pid: i32, line: &str, user: &str, host: &str, addr: [u8; 16]) -> Vec<u8> {
    let mut r = UtmpRecord::now(ut_type, pid, line, user, host);
    r.addr = utmp::parse_addr(&addr);
    r.to_bytes()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The real sensor shipping to `grpc`, with its JSON copy, logins from files the test
/// owns, a watched tree and conntrack flows (loopback included).
struct Sensor {
    child: Option<Child>,
    dir: PathBuf,
}

impl Sensor {
    fn start(bin: &Path, mode: &str, dir: &Path, grpc: &str) -> Sensor {
        let cfg = dir.join("sensor.toml");
        std::fs::write(
            &cfg,
            format!(
                "[ship]\nallow_plaintext_loopback = true\nspool_dir = {:?}\n\
                 batch_max_delay_ms = 20\ndrain_timeout_secs = 30\njson_copy = {:?}\n\
                 [logins]\nwtmp = {:?}\nbtmp = {:?}\npoll_interval_ms = 100\n\
                 [files]\nwatch = [{:?}]\n\
                 [conntrack]\nenabled = true\nadd_tracking_table = true\ninclude_loopback = true\n",
                dir.join("spool"),
                dir.join("copy.jsonl"),
                dir.join("wtmp"),
                dir.join("btmp"),
                dir.join("tree"),
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("tree")).unwrap();
        std::fs::write(dir.join("wtmp"), b"").unwrap();
        std::fs::write(dir.join("btmp"), b"").unwrap();
        let child = Command::new(bin)
            .args(["run", "--mode", mode, "--health-interval", "1", "--config"])
            .arg(&cfg)
            .arg("--status")
            .arg(dir.join("status.json"))
            .args(["--output", &format!("grpc://{grpc}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sensor.log")).unwrap())
            .spawn()
            .expect("spawn sensor");
        let s = Sensor {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        s.wait_for(Duration::from_secs(60), "the first sensor_health", |evs| {
            evs.iter().any(|e| e["kind"] == "sensor_health")
        });
        s
    }

    fn copy(&self) -> Vec<Value> {
        read_lines(&self.dir.join("copy.jsonl"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sensor.log")).unwrap_or_default()
    }

    fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done(&self.copy()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sensor: no {what} within {limit:?}: {}", self.log());
    }

    /// SIGTERM (by pid) and wait for a clean exit: the spool is drained first.
    fn stop(mut self) -> Vec<Value> {
        let mut c = self.child.take().unwrap();
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "sensor exited with {st}: {}", self.log());
                break;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("sensor did not stop: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.copy()
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by pid (SIGTERM: audit rules, nft table and
            // fanotify marks are removed by the sensor itself).
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The marked workload: one of every kind, each tied to `m` (argv, path or user).
fn workload(dir: &Path, m: &str) {
    let run = |prog: &str, args: &[&str]| {
        let st = Command::new(prog)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let _ = st; // some programs reject the marker argument; the exec is what counts
    };
    // process_exec + process_exit
    run("/bin/echo", &[m]);
    // file
    run(
        "/usr/bin/touch",
        &[dir.join("tree").join(m).to_str().unwrap()],
    );
    // net_connect + flow: a TCP connection over loopback from a marked process.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        drop(s);
    });
    run(
        "/bin/bash",
        &[
            "-c",
            &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; exec 3>&-"),
            m,
        ],
    );
    accept.join().unwrap();
    // Also from this process (a connect the conntrack NEW of which is certain).
    drop(TcpStream::connect(("127.0.0.1", port)).err());
    // privilege_change: root drops to nobody.
    run(
        "/usr/bin/setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/true",
            m,
        ],
    );
    // login, logout, login_failed
    let user = &m[..m.len().min(30)];
    let pid = std::process::id() as i32;
    let v4 = [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    append(
        &dir.join("wtmp"),
        &utmp(USER_PROCESS, pid, "pts/77", user, "192.0.2.1", v4),
    );
    std::thread::sleep(Duration::from_millis(300));
    append(
        &dir.join("wtmp"),
        &utmp(DEAD_PROCESS, pid, "pts/77", "", "", [0; 16]),
    );
    append(
        &dir.join("btmp"),
        &utmp(LOGIN_PROCESS, 0, "ssh:notty", user, "192.0.2.1", v4),
    );
}

/// Kinds the workload's events were seen with, by marker: argv, path, login user, or a
/// flow/privilege change/connect of a marked process (or of a loopback flow).
fn marked_kinds(events: &[Value], m: &str) -> BTreeSet<String> {
    let user = &m[..m.len().min(30)];
    let marked_pids: BTreeSet<u64> = events
        .iter()
        .filter(|e| {
            e["process"]["argv"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == m))
        })
        .filter_map(|e| e["process"]["pid"].as_u64())
        .collect();
    let mut kinds = BTreeSet::new();
    for e in events {
        let kind = e["kind"].as_str().unwrap_or("").to_string();
        let pid = e["process"]["pid"].as_u64();
        let marked = match kind.as_str() {
            "file" => e["file"]["path"].as_str().is_some_and(|p| p.ends_with(m)),
            "login" | "logout" | "login_failed" => {
                e["login"]["tty"] == "pts/77" || e["login"]["user"] == user
            }
            "flow" => e["flow"]["dst_addr"] == "127.0.0.1" && e["flow"]["protocol"] == "tcp",
            "privilege_change" => {
                pid.is_some_and(|p| marked_pids.contains(&p)) && e["privilege"]["new_uid"] == 65534
            }
            "net_connect" => {
                pid.is_some_and(|p| marked_pids.contains(&p))
                    && e["connect"]["dst_addr"] == "127.0.0.1"
            }
            "sensor_health" => e["health"]["mode"].is_string(),
            _ => pid.is_some_and(|p| marked_pids.contains(&p)),
        };
        if marked {
            kinds.insert(kind);
        }
    }
    kinds
}

/// Each line of the sensor's JSON copy equals the collector's line of the same seq, field
/// for field; both hold the same set of events; every kind is among them.
fn assert_parity(copy: &[Value], stored: &[Value], m: &str, what: &str) {
    let sensor_id = stored
        .first()
        .and_then(|e| e["sensor_id"].as_str())
        .unwrap_or_else(|| panic!("{what}: nothing stored"))
        .to_string();
    let mut from_collector = BTreeMap::new();
    for e in stored {
        let mut e = e.clone();
        let o = e.as_object_mut().unwrap();
        assert_eq!(o.remove("sensor_id"), Some(Value::from(sensor_id.clone())));
        assert!(o.remove("boot_id").is_some_and(|b| b.is_string()));
        let seq = e["seq"].as_u64().unwrap();
        assert!(
            from_collector.insert(seq, e).is_none(),
            "{what}: seq {seq} stored twice"
        );
    }
    let mut from_sensor = BTreeMap::new();
    for e in copy {
        from_sensor.insert(e["seq"].as_u64().unwrap(), e.clone());
    }
    assert_eq!(
        from_sensor.keys().collect::<Vec<_>>(),
        from_collector.keys().collect::<Vec<_>>(),
        "{what}: the same events on both sides"
    );
    for (seq, s) in &from_sensor {
        assert_eq!(&from_collector[seq], s, "{what}: event seq {seq}");
    }
    let kinds = marked_kinds(copy, m);
    let missing: Vec<&str> = self::kinds().filter(|k| !kinds.contains(*k)).collect();
    assert!(missing.is_empty(), "{what}: kinds missing: {missing:?}");
    eprintln!(
        "{what}: {} events equal on both sides, every kind present",
        from_sensor.len()
    );
}

/// Runs the workload under a sensor shipping to `grpc`; returns the sensor's JSON copy.
fn capture(bin: &Path, mode: &str, dir: &Path, grpc: &str, m: &str) -> Vec<Value> {
    let sensor = Sensor::start(bin, mode, dir, grpc);
    workload(dir, m);
    sensor.wait_for(Duration::from_secs(30), "event of every kind", |evs| {
        marked_kinds(evs, m).len() == kinds().count()
    });
    let copy = sensor.stop();
    assert!(!copy.is_empty());
    copy
}

fn sqlite_parity(mode: &str) {
    let bin = sensor_bin();
    let dir = TempDir::new(&format!("parity-{mode}"));
    let col = Collector::start(dir.path(), &[]);
    let m = format!("parity{mode}{}", std::process::id());
    let copy = capture(&bin, mode, dir.path(), &col.grpc, &m);
    let stored = common::query(&col.db, &["--limit", "1000000"]);
    assert_parity(&copy, &stored, &m, &format!("{mode} gRPC -> SQLite"));
    col.stop();
}

fn jetstream_parity(mode: &str) {
    if nats::skip_without_server("jetstream_parity") {
        return;
    }
    let bin = sensor_bin();
    let fleet::TestCluster {
        dir,
        cluster,
        urls,
        rt,
    } = fleet::TestCluster::start(&format!("parity-js-{mode}"), 3, true);
    let cfg = fleet::write_config(dir.path(), "a", &urls);
    let col = Collector::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let m = format!("parityjs{mode}{}", std::process::id());
    let copy = capture(&bin, mode, dir.path(), &col.grpc, &m);
    col.stop();
    let db = dir.path().join("consumed.db");
    let r = fleet::consume(&cfg, &db, &["--until-caught-up"]);
    assert_eq!(r["lag_messages"].as_u64(), Some(0), "{r}");
    let stored = common::query(&db, &["--limit", "1000000"]);
    assert_parity(
        &copy,
        &stored,
        &m,
        &format!("{mode} gRPC -> JetStream -> consume"),
    );
    drop(rt);
    drop(cluster);
}

#[test]
fn every_kind_equal_through_grpc_ebpf() {
    if privileged() {
        sqlite_parity("ebpf");
    }
}

#[test]
fn every_kind_equal_through_grpc_audit() {
    if privileged() {
        sqlite_parity("audit");
    }
}

#[test]
fn every_kind_equal_through_jetstream_ebpf() {
    if privileged() {
        jetstream_parity("ebpf");
    }
}

#[test]
fn every_kind_equal_through_jetstream_audit() {
    if privileged() {
        jetstream_parity("audit");
    }
}
