//! Privileged (real sensor): container ids on a cgroup-v1 / hybrid host. A shell moves itself
//! into a container-shaped cgroup of the v1 `pids` hierarchy (docker, containerd/kubepods and
//! podman paths) and execs a long-lived (`sleep 1.5`) or an instantly exiting (`true`)
//! program. In eBPF mode every exec and exit must carry the container id (the kernel reads the
//! v1 cgroup). In audit mode (no cgroup in the event) the long-lived process must carry it; the
//! instantly exiting one must carry it or say `container_id` in `incomplete`: never a silently
//! wrong answer. Skipped on a pure cgroup-v2 host.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const PIDS: &str = "/sys/fs/cgroup/pids";

/// A made-up container id, unique per call.
fn container_id(salt: u64) -> String {
    let x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ (u64::from(std::process::id()) << 40)
        ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:016x}{:016x}{:016x}{:016x}",
        x,
        x.rotate_left(13) ^ 0x5eed,
        x.rotate_left(29),
        x.rotate_left(47) ^ 0xc0ffee
    )
}

/// Cgroup directories created under the v1 pids hierarchy; removed (deepest first) on drop,
/// once the processes in them are gone.
struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    /// Creates `rel` (and its missing parents, remembered for removal).
    fn create(&mut self, rel: &str) -> PathBuf {
        let mut p = PathBuf::from(PIDS);
        for part in rel.trim_matches('/').split('/') {
            p.push(part);
            if !p.exists() {
                std::fs::create_dir(&p).expect("create cgroup");
                self.0.push(p.clone());
            }
        }
        p
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for dir in self.0.iter().rev() {
            while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn hybrid_or_v1() -> bool {
    if Path::new(PIDS).join("cgroup.procs").exists() {
        return true;
    }
    eprintln!("skipped: no cgroup v1 pids hierarchy on this host");
    false
}

fn incomplete(ev: &Value, what: &str) -> bool {
    ev["process"]["incomplete"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == what))
}

fn v1_container_ids(mode: &str) {
    let mut cgroups = Cgroups(Vec::new());
    let m = marker("v1");
    let mut cases = Vec::new();
    for (i, shape) in ["docker", "kubepods", "podman"].iter().enumerate() {
        let id = container_id(i as u64 + 1);
        let rel = match *shape {
            "docker" => format!("docker/{id}"),
            "kubepods" => format!(
                "kubepods/burstable/pod6b1b2d4a-9d1e-4f5a-8c3b-{m}/{id}",
                m = &m[m.len().saturating_sub(12)..]
            ),
            _ => format!("machine.slice/libpod-{id}.scope/container"),
        };
        let dir = cgroups.create(&rel);
        cases.push((shape.to_string(), id, dir));
    }
    let sensor = Sensor::start(mode, &[]);
    let mut children = Vec::new();
    for (shape, _, dir) in &cases {
        for (what, prog) in [("long", "/bin/sleep 1.5"), ("instant", "/bin/true")] {
            let tag = format!("{m}-{shape}-{what}");
            // The shell moves itself into the cgroup, then becomes the program (same pid).
            let script = format!(
                "echo $$ > '{}/cgroup.procs' && exec -a {tag} {prog}",
                dir.display()
            );
            let child = Command::new("/bin/bash")
                .args(["-c", &script])
                .spawn()
                .expect("spawn bash");
            children.push(child);
        }
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    std::thread::sleep(Duration::from_millis(300));
    let events = sensor.stop();
    for (shape, id, _) in &cases {
        for what in ["long", "instant"] {
            let tag = format!("{m}-{shape}-{what}");
            let execs = execs_with_arg(&events, &tag);
            assert_eq!(execs.len(), 1, "{mode} {shape} {what}: one exec: {execs:?}");
            let exec = execs[0];
            let pid = exec["process"]["pid"].as_u64().unwrap();
            let mut checked = vec![("exec", exec)];
            if let Some(exit) = exit_of(&events, pid) {
                checked.push(("exit", exit));
            }
            for (kind, ev) in checked {
                let got = ev["process"]["container_id"].as_str().unwrap_or("");
                let exact = mode == "ebpf" || what == "long";
                if exact {
                    assert_eq!(got, id, "{mode} {shape} {what} {kind}: {ev}");
                    assert!(!incomplete(ev, "container_id"), "{mode} {kind}: {ev}");
                } else {
                    assert!(
                        got == id || incomplete(ev, "container_id"),
                        "{mode} {shape} {what} {kind}: wrong without saying so: {ev}"
                    );
                }
            }
        }
    }
    drop(cgroups);
}

#[test]
fn v1_container_ids_ebpf() {
    if privileged() && hybrid_or_v1() {
        v1_container_ids("ebpf");
    }
}

#[test]
fn v1_container_ids_audit() {
    if privileged() && hybrid_or_v1() && sensor::runtime::AUDIT_IMPLEMENTED {
        v1_container_ids("audit");
    }
}
