//! Privileged: the real sensor's process cache. A grandchild's exec, connect and exit events
//! carry its ancestors, and its connect/exit events carry the exe and argv its exec gave the
//! cache; a process in a cgroup named like a container carries that container's id.
//! Each test runs in eBPF mode, and in audit mode when this build has the audit source.
mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn audit_available() -> bool {
    if sensor::runtime::AUDIT_IMPLEMENTED {
        return true;
    }
    eprintln!("skipped: this build has no audit source");
    false
}

fn pid(ev: &Value) -> u64 {
    ev["process"]["pid"].as_u64().expect("process.pid")
}

fn ancestor_pids(ev: &Value) -> Vec<u64> {
    ev["process"]["ancestors"]
        .as_array()
        .unwrap_or_else(|| panic!("no ancestors in {ev}"))
        .iter()
        .map(|a| a["pid"].as_u64().unwrap())
        .collect()
}

fn only<'a>(found: Vec<&'a Value>, what: &str) -> &'a Value {
    assert_eq!(found.len(), 1, "one {what}: {found:?}");
    found[0]
}

fn ancestry(mode: &str) {
    let sensor = Sensor::start(mode, &[]);
    let m = marker("anc");
    let (ms, mc, mg) = (
        format!("{m}-shell"),
        format!("{m}-child"),
        format!("{m}-grand"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // shell -> child -> grandchild; the grandchild (bash) connects and exits. `; true` keeps
    // each shell from exec'ing its last command in place.
    let grand = format!("/bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; true' {mg}");
    let child = format!("/bin/sh -c \"{grand}; true\" {mc}");
    let status = Command::new("/bin/sh")
        .args(["-c", &format!("{child}; true"), &ms])
        .status()
        .expect("spawn shell");
    assert!(status.success());
    drop(listener);
    let events = sensor.stop();

    let me = u64::from(std::process::id());
    let shell = only(execs_with_arg(&events, &ms), "shell exec");
    let child = only(execs_with_arg(&events, &mc), "child exec");
    let grand = only(execs_with_arg(&events, &mg), "grandchild exec");
    let (sp, cp, gp) = (pid(shell), pid(child), pid(grand));
    assert_eq!(shell["process"]["ppid"], me);
    assert_eq!(child["process"]["ppid"], sp);
    assert_eq!(grand["process"]["ppid"], cp);

    let connect = events
        .iter()
        .find(|e| e["kind"] == "net_connect" && pid(e) == gp && e["connect"]["dst_port"] == port)
        .unwrap_or_else(|| panic!("connect of the grandchild {gp} to port {port}"));
    let exit = exit_of(&events, gp).expect("grandchild exit");

    let my_exe = std::fs::read_link("/proc/self/exe").unwrap();
    let seq = |ev: &Value| ev["seq"].as_u64().unwrap();
    let incomplete = |ev: &Value, field: &str| {
        ev["process"]["incomplete"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == field))
    };
    for (what, ev) in [("exec", grand), ("connect", connect), ("exit", exit)] {
        let anc = ancestor_pids(ev);
        if seq(ev) < seq(grand) {
            // Audit delivers proc-connector exits ahead of the exec records of the same
            // processes (the ring buffer never does): by then the parents may be gone too.
            // What is there must be right, and what is missing must be said.
            assert_eq!(mode, "audit", "{what} before its exec in {mode} mode: {ev}");
            eprintln!("note: {what} delivered before the exec (audit ordering): {ev}");
            let want = [cp, sp, me];
            let n = anc.len().min(3);
            assert_eq!(anc[..n], want[..n], "{what}: ancestors in {ev}");
            assert!(n == 3 || incomplete(ev, "ancestors"), "{what}: {ev}");
            continue;
        }
        assert!(anc.len() >= 3, "{what}: ancestors {anc:?} in {ev}");
        assert_eq!(anc[..3], [cp, sp, me], "{what}: ancestors in {ev}");
        assert!(!incomplete(ev, "ancestors"), "{what}: {ev}");
        let a = &ev["process"]["ancestors"];
        assert_eq!(
            a[2]["exe"].as_str(),
            my_exe.to_str(),
            "{what}: the test process comes from the start-up /proc scan: {ev}"
        );
        // Delivered after the parents' execs: their exe as those execs gave it.
        if seq(ev) > seq(child) {
            assert_eq!(a[0]["comm"], "sh", "{what}: {ev}");
            assert_eq!(a[0]["exe"], child["process"]["exe"], "{what}: {ev}");
            assert_eq!(a[1]["exe"], shell["process"]["exe"], "{what}: {ev}");
        }
    }
    // connect and exit carry no exe/argv from the kernel: these come from the cache.
    for (what, ev) in [("connect", connect), ("exit", exit)] {
        if seq(ev) > seq(grand) {
            for key in ["exe", "argv", "cwd"] {
                assert_eq!(
                    ev["process"][key], grand["process"][key],
                    "{what}.{key}: {ev}"
                );
            }
        } else {
            // Delivered before the exec (audit, see above): no guessed image.
            assert!(
                ev["process"]["exe"] == grand["process"]["exe"]
                    || (ev["process"]["exe"].is_null() && incomplete(ev, "exe")),
                "{what}: {ev}"
            );
        }
    }
    assert!(grand["process"]["exe"]
        .as_str()
        .is_some_and(|e| e.ends_with("bash")));
}

#[test]
fn grandchild_events_carry_ancestors_ebpf() {
    if privileged() {
        ancestry("ebpf");
    }
}

#[test]
fn grandchild_events_carry_ancestors_audit() {
    if privileged() && audit_available() {
        ancestry("audit");
    }
}

/// The cgroup v2 mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        pre.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// A cgroup `<mount>/sensor-it-<marker>/docker-<id>.scope`, removed on drop (after the
/// processes in it have exited: rmdir is retried while the kernel reaps them).
struct ContainerCgroup {
    parent: PathBuf,
    leaf: PathBuf,
    id: String,
    /// On a hybrid host, the same cgroup in the v1 pids hierarchy (runtimes create a
    /// container's cgroup in every hierarchy; the sensor tracks v1 there).
    v1: Option<(PathBuf, PathBuf)>,
}

impl ContainerCgroup {
    fn create(mount: &Path, m: &str) -> Self {
        let x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            ^ (u64::from(std::process::id()) << 40);
        let id = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            x,
            x.rotate_left(13) ^ 0x5eed,
            x.rotate_left(29),
            x.rotate_left(47) ^ 0xc0ffee
        );
        let parent = mount.join(format!("sensor-it-{m}"));
        let leaf = parent.join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&leaf).expect("create test cgroup");
        let pids = Path::new("/sys/fs/cgroup/pids");
        let v1 = (mount != Path::new("/sys/fs/cgroup") && pids.join("cgroup.procs").exists()).then(
            || {
                let parent = pids.join(format!("sensor-it-{m}"));
                let leaf = parent.join(format!("docker-{id}.scope"));
                std::fs::create_dir_all(&leaf).expect("create v1 test cgroup");
                (parent, leaf)
            },
        );
        ContainerCgroup {
            parent,
            leaf,
            id,
            v1,
        }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.leaf.join("cgroup.procs"), pid.to_string()).expect("move to cgroup");
        if let Some((_, leaf)) = &self.v1 {
            std::fs::write(leaf.join("cgroup.procs"), pid.to_string()).expect("move to v1 cgroup");
        }
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let v1 = self.v1.iter().flat_map(|(p, l)| [l, p]);
        for dir in [&self.leaf, &self.parent].into_iter().chain(v1) {
            while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn container_id(mode: &str) {
    let Some(mount) = cgroup2_mount() else {
        eprintln!("skipped: no cgroup v2 mount on this host");
        return;
    };
    let m = marker("ctr");
    let cg = ContainerCgroup::create(&mount, &m);
    let sensor = Sensor::start(mode, &[]);
    // eBPF events carry the kernel's cgroup id: a /bin/true that is gone before the sensor
    // looks still resolves. Audit events carry no cgroup id, so the marked process must still
    // run when its exec is enriched (/proc/<pid>/cgroup).
    let last = if mode == "audit" {
        format!("/bin/sh -c 'sleep 2; true' {m}")
    } else {
        format!("/bin/true {m}")
    };
    let mut sh = Command::new("/bin/sh")
        .args(["-c", &format!("sleep 0.5; {last}")])
        .spawn()
        .expect("spawn sh");
    cg.add(sh.id());
    assert!(sh.wait().unwrap().success());
    let events = sensor.stop();
    let ev = only(execs_with_arg(&events, &m), "marked exec");
    assert_eq!(
        ev["process"]["container_id"].as_str(),
        Some(cg.id.as_str()),
        "{ev}"
    );
    drop(cg);
}

#[test]
fn cgroup_container_id_ebpf() {
    if privileged() {
        container_id("ebpf");
    }
}

#[test]
fn cgroup_container_id_audit() {
    if privileged() && audit_available() {
        container_id("audit");
    }
}
