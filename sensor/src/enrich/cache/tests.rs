//! The process cache through its public entry points, on fixture /proc and cgroup trees.
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::event::Source;

const ID: &str = "3f1ab8c4e2d9071b5a6c8e4f2d0b9a7c6e5f4d3c2b1a09f8e7d6c5b4a3928170";
const SEC: u64 = 1_000_000_000;

/// A directory laid out like /proc (and optionally a cgroup v2 tree); removed on drop.
struct Fixture {
    root: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let root =
            std::env::temp_dir().join(format!("enrich-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("cgroup")).unwrap();
        Fixture { root }
    }

    fn proc_dir(&self) -> PathBuf {
        self.root.join("proc")
    }

    fn cgroup_root(&self) -> Cgroup2Root {
        Cgroup2Root {
            path: self.root.join("cgroup"),
            pure: true,
            v1: None,
        }
    }

    /// A cgroup directory; returns its id (inode).
    fn cgroup(&self, rel: &str) -> u64 {
        let p = self.root.join("cgroup").join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::metadata(p).unwrap().ino()
    }

    fn stat_raw(&self, pid: u32, stat: &[u8]) {
        let d = self.proc_dir().join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("stat"), stat).unwrap();
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        pid: u32,
        comm: &str,
        ppid: u32,
        ticks: u64,
        exe: &str,
        cmdline: &[u8],
        cgroup: &str,
    ) {
        let stat = format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 34816 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {ticks} 0 0"
        );
        self.stat_raw(pid, stat.as_bytes());
        let d = self.proc_dir().join(pid.to_string());
        std::fs::write(
            d.join("status"),
            "Uid:\t1000\t1000\t1000\t1000\nGid:\t50\t50\t50\t50\n",
        )
        .unwrap();
        std::fs::write(d.join("cmdline"), cmdline).unwrap();
        std::fs::write(d.join("cgroup"), cgroup).unwrap();
        std::fs::write(d.join("loginuid"), "1000").unwrap();
        std::fs::write(d.join("sessionid"), "4294967295").unwrap();
        let _ = std::fs::remove_file(d.join("exe"));
        let _ = std::fs::remove_file(d.join("cwd"));
        std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
        std::os::unix::fs::symlink("/work", d.join("cwd")).unwrap();
    }

    fn remove(&self, pid: u32) {
        std::fs::remove_dir_all(self.proc_dir().join(pid.to_string())).unwrap();
    }

    fn cache(&self, cfg: EnrichConfig) -> ProcessCache {
        ProcessCache::new(&cfg)
            .with_proc_root(self.proc_dir())
            .with_cgroup_root(Some(self.cgroup_root()))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn tick_ns() -> u64 {
    ns_per_tick()
}

/// An eBPF-like event: credentials and comm from the kernel, start at `ticks`.
fn ev(kind: Kind, pid: u32, ppid: u32, ticks: u64, comm: &str) -> Event {
    let mut e = Event::new(kind, Source::Ebpf, 0, "h");
    e.process = Some(Process {
        pid,
        ppid,
        start_boottime_ns: ticks * tick_ns() + 1234,
        uid: 1,
        euid: 2,
        gid: 3,
        egid: 4,
        auid: Some(1000),
        session: Some(7),
        comm: comm.into(),
        ..Process::default()
    });
    e
}

fn exec(pid: u32, ppid: u32, ticks: u64, exe: &str, args: &[&str]) -> Event {
    let mut e = ev(
        Kind::ProcessExec,
        pid,
        ppid,
        ticks,
        exe.rsplit('/').next().unwrap(),
    );
    let p = e.process.as_mut().unwrap();
    p.exe = Some(exe.into());
    p.cwd = Some("/home/u".into());
    p.argv = Some(args.iter().map(|s| s.to_string()).collect());
    e
}

fn proc_of(e: &Event) -> &Process {
    e.process.as_ref().unwrap()
}

fn cfg() -> EnrichConfig {
    EnrichConfig::default()
}

fn init_fixture(f: &Fixture) {
    f.add(
        1,
        "systemd",
        0,
        1,
        "/usr/lib/systemd/systemd",
        b"/sbin/init\0",
        "0::/init.scope\n",
    );
}

#[test]
fn exec_fills_later_events_and_ancestors() {
    let f = Fixture::new("basic");
    init_fixture(&f);
    let mut c = f.cache(cfg());
    assert_eq!(c.scan_proc(&f.proc_dir()), 1);
    let mut sh = exec(100, 1, 500, "/bin/sh", &["sh", "-c", "x"]);
    c.enrich(&mut sh, SEC);
    let mut child = exec(101, 100, 501, "/usr/bin/curl", &["curl", "http://x"]);
    c.enrich(&mut child, SEC);
    let reads = c.stats().proc_reads;

    let mut conn = ev(Kind::NetConnect, 101, 100, 501, "curl");
    c.enrich(&mut conn, 2 * SEC);
    let p = proc_of(&conn);
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/curl"));
    assert_eq!(p.cwd.as_deref(), Some("/home/u"));
    assert_eq!(p.args().unwrap(), ["curl", "http://x"]);
    let anc: Vec<(u32, &str, &str)> = p
        .ancestors
        .iter()
        .map(|a| (a.pid, a.comm.as_str(), a.exe.as_str()))
        .collect();
    assert_eq!(
        anc,
        [
            (100, "sh", "/bin/sh"),
            (1, "systemd", "/usr/lib/systemd/systemd")
        ]
    );
    // No cgroup id in the event and no /proc entry: the container ("" from the parent) is
    // a guess, and said so.
    assert_eq!(p.incomplete, ["container_id"]);
    assert_eq!(p.container_id, "");
    // Everything came from the cache.
    assert_eq!(c.stats().proc_reads, reads);
    // The exec events themselves carry ancestors too.
    assert_eq!(proc_of(&child).ancestors[0].pid, 100);
    assert_eq!(proc_of(&sh).ancestors[0].pid, 1);
}

#[test]
fn ancestors_depth_is_configurable() {
    let f = Fixture::new("depth");
    init_fixture(&f);
    let mut c = f.cache(EnrichConfig {
        ancestors_depth: 2,
        ..cfg()
    });
    c.scan_proc(&f.proc_dir());
    for (pid, ppid) in [(10, 1), (11, 10), (12, 11), (13, 12)] {
        c.enrich(
            &mut exec(pid, ppid, 100 + u64::from(pid), "/bin/sh", &["sh"]),
            SEC,
        );
    }
    let mut e = ev(Kind::NetConnect, 13, 12, 113, "sh");
    c.enrich(&mut e, SEC);
    let pids: Vec<u32> = proc_of(&e).ancestors.iter().map(|a| a.pid).collect();
    assert_eq!(pids, [12, 11]);
    assert!(!proc_of(&e).is_incomplete("ancestors"));

    let mut c = f.cache(EnrichConfig {
        ancestors_depth: 0,
        ..cfg()
    });
    let mut e = exec(20, 1, 5, "/bin/true", &["true"]);
    c.enrich(&mut e, SEC);
    assert!(proc_of(&e).ancestors.is_empty());
}

#[test]
fn pid_reuse_keeps_the_two_processes_apart() {
    let f = Fixture::new("reuse");
    let mut c = f.cache(cfg());
    c.enrich(&mut exec(300, 1, 1000, "/usr/bin/old", &["old"]), SEC);
    // The old process's exit was lost; the pid comes back with a new start time.
    c.enrich(&mut exec(300, 1, 2000, "/usr/bin/new", &["new"]), 2 * SEC);
    assert_eq!(c.len(), 2);
    assert!(c.is_exit_pending(300, 1000 * tick_ns()));
    assert!(!c.is_exit_pending(300, 2000 * tick_ns()));

    let mut late_old = ev(Kind::NetConnect, 300, 1, 1000, "old");
    c.enrich(&mut late_old, 2 * SEC);
    assert_eq!(proc_of(&late_old).exe.as_deref(), Some("/usr/bin/old"));
    let mut new = ev(Kind::NetConnect, 300, 1, 2000, "new");
    c.enrich(&mut new, 2 * SEC);
    assert_eq!(proc_of(&new).exe.as_deref(), Some("/usr/bin/new"));
    // Unknown start (audit): the newest live process of the pid.
    let mut audit = ev(Kind::NetConnect, 300, 1, 0, "new");
    audit.process.as_mut().unwrap().start_boottime_ns = 0;
    c.enrich(&mut audit, 2 * SEC);
    assert_eq!(proc_of(&audit).exe.as_deref(), Some("/usr/bin/new"));

    // After the grace period the old one is gone and counted as a lost exit.
    c.enrich(&mut ev(Kind::NetConnect, 300, 1, 2000, "new"), 8 * SEC);
    assert_eq!(c.len(), 1);
    assert_eq!(c.stats().swept_lost, 1);
    assert!(c.get(300, 1000 * tick_ns()).is_none());
}

#[test]
fn late_events_after_exit_resolve_within_grace() {
    let f = Fixture::new("late");
    let mut c = f.cache(cfg());
    c.enrich(&mut exec(400, 0, 50, "/bin/sleep", &["sleep", "1"]), SEC);
    let mut exit = ev(Kind::ProcessExit, 400, 0, 50, "sleep");
    c.enrich(&mut exit, SEC);
    assert_eq!(proc_of(&exit).exe.as_deref(), Some("/bin/sleep"));
    assert!(c.is_exit_pending(400, 50 * tick_ns()));
    // A connect that was in flight on another CPU arrives 4 s later.
    let mut late = ev(Kind::NetConnect, 400, 0, 50, "sleep");
    c.enrich(&mut late, 5 * SEC);
    assert_eq!(proc_of(&late).exe.as_deref(), Some("/bin/sleep"));
    assert_eq!(proc_of(&late).args().unwrap(), ["sleep", "1"]);
    // A duplicate exit does not extend the grace period.
    c.enrich(&mut ev(Kind::ProcessExit, 400, 0, 50, "sleep"), 5 * SEC);
    // After the grace period: removed, and the process is gone -> incomplete, no panic.
    let mut too_late = ev(Kind::NetConnect, 400, 0, 50, "sleep");
    c.enrich(&mut too_late, 6 * SEC + 1);
    assert!(c.get(400, 50 * tick_ns()).is_none());
    let p = proc_of(&too_late);
    assert_eq!(p.exe, None);
    for m in ["exe", "cwd", "argv"] {
        assert!(p.is_incomplete(m), "{m} in {:?}", p.incomplete);
    }
    assert_eq!(c.stats().swept_lost, 0, "a seen exit is not a lost one");
}

#[test]
fn eviction_at_the_bound_is_counted_and_prefers_exited() {
    let f = Fixture::new("evict");
    let mut c = f.cache(EnrichConfig {
        max_entries: 3,
        ..cfg()
    });
    for pid in [1, 2, 3] {
        c.enrich(&mut exec(pid + 10, 0, 10, "/bin/a", &["a"]), SEC);
    }
    // Use 11 so that 12 is the least recently used.
    c.enrich(&mut ev(Kind::NetConnect, 11, 0, 10, "a"), SEC);
    c.enrich(&mut exec(14, 0, 10, "/bin/a", &["a"]), SEC);
    assert_eq!((c.len(), c.stats().evictions), (3, 1));
    assert!(c.get(12, 10 * tick_ns()).is_none());
    assert!(c.get(11, 10 * tick_ns()).is_some());
    // An exited entry goes before any live one, however recently used.
    c.enrich(&mut ev(Kind::ProcessExit, 14, 0, 10, "a"), SEC);
    c.enrich(&mut exec(15, 0, 10, "/bin/a", &["a"]), SEC);
    assert_eq!((c.len(), c.stats().evictions), (3, 2));
    assert!(c.get(14, 10 * tick_ns()).is_none());
    assert!(c.get(11, 10 * tick_ns()).is_some() && c.get(13, 10 * tick_ns()).is_some());
    // Many more inserts keep the bound.
    for pid in 100..1100 {
        c.enrich(&mut exec(pid, 0, 10, "/bin/a", &["a"]), SEC);
    }
    assert_eq!(c.len(), 3);
    assert_eq!(c.stats().evictions, 1002);
    assert!(c.store.slot_count() <= 3);
}

#[test]
fn sweep_clears_lost_exits() {
    let f = Fixture::new("sweep");
    init_fixture(&f);
    f.add(50, "daemon", 1, 40, "/usr/sbin/d", b"d\0", "0::/\n");
    f.add(60, "worker", 1, 41, "/usr/sbin/w", b"w\0", "0::/\n");
    f.add(70, "stay", 1, 42, "/usr/sbin/s", b"s\0", "0::/\n");
    let mut c = f.cache(cfg());
    assert_eq!(c.scan_proc(&f.proc_dir()), 4);
    assert_eq!(c.stats().scanned, 4);
    // 50 exits without an exit event; 60's pid is reused by a process we never saw.
    f.remove(50);
    f.add(60, "other", 1, 99, "/usr/bin/o", b"o\0", "0::/\n");
    assert_eq!(c.sweep(10 * SEC, &f.proc_dir()), 0);
    assert_eq!(c.stats().exit_pending, 2);
    // Still resolvable during the grace period.
    assert!(c.get(50, 40 * tick_ns()).is_some());
    assert_eq!(c.sweep(20 * SEC, &f.proc_dir()), 2);
    let s = c.stats();
    assert_eq!((s.entries, s.swept_lost, s.exit_pending), (2, 2, 0));
    assert!(c.get(70, 42 * tick_ns()).is_some());
    assert!(c.get(1, tick_ns()).is_some());
}

#[test]
fn exit_event_during_lost_grace_is_not_counted_lost() {
    let f = Fixture::new("latelost");
    let mut c = f.cache(cfg());
    c.enrich(&mut exec(500, 0, 10, "/bin/a", &["a"]), SEC);
    c.sweep(2 * SEC, &f.proc_dir()); // not in the fixture: suspected lost
    c.enrich(&mut ev(Kind::ProcessExit, 500, 0, 10, "a"), 3 * SEC);
    c.sweep(60 * SEC, &f.proc_dir());
    assert_eq!((c.len(), c.stats().swept_lost), (0, 0));
}

#[test]
fn proc_race_gives_incomplete_not_errors() {
    let f = Fixture::new("race");
    let mut c = f.cache(cfg());
    // Neither cache nor /proc knows pid 600 or its parent.
    let mut e = ev(Kind::NetConnect, 600, 599, 70, "ghost");
    c.enrich(&mut e, SEC);
    let p = proc_of(&e);
    for m in ["exe", "cwd", "argv", "ancestors", "container_id"] {
        assert!(p.is_incomplete(m), "{m} in {:?}", p.incomplete);
    }
    assert!(p.ancestors.is_empty());
    assert_eq!(c.stats().proc_misses, c.stats().proc_reads);
    // The pid exists in /proc but belongs to a younger process: not this one.
    f.add(601, "young", 1, 900, "/bin/young", b"young\0", "0::/\n");
    let mut e = ev(Kind::NetConnect, 601, 1, 80, "old");
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).exe, None);
    assert!(c.get(601, 900 * tick_ns()).is_none());
    // A truncated stat is a miss, not a panic.
    f.stat_raw(602, b"602 (x) S 1 602");
    let mut e = ev(Kind::NetConnect, 602, 1, 80, "x");
    c.enrich(&mut e, SEC);
    assert!(proc_of(&e).is_incomplete("exe"));
    // An exec whose process is already gone still caches the kernel's data.
    let mut e = exec(603, 1, 81, "/bin/true", &["true"]);
    c.enrich(&mut e, SEC);
    assert!(proc_of(&e).is_incomplete("ancestors"));
    assert_eq!(
        c.get(603, 81 * tick_ns()).unwrap().exe.as_deref(),
        Some("/bin/true")
    );
}

#[test]
fn miss_reads_proc_once_and_caches_it() {
    let f = Fixture::new("miss");
    init_fixture(&f);
    f.add(
        700,
        "py (x) )",
        1,
        300,
        "/usr/bin/python3",
        b"python3\0a\xffb\0\0",
        "0::/\n",
    );
    let mut c = f.cache(cfg());
    let mut e = ev(Kind::NetConnect, 700, 1, 300, "py (x) )");
    c.enrich(&mut e, SEC);
    let p = proc_of(&e);
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/python3"));
    assert_eq!(p.cwd.as_deref(), Some("/work"));
    assert_eq!(p.args().unwrap(), ["python3", "a\\xffb", ""]);
    assert_eq!(p.ancestors[0].comm, "systemd");
    let reads = c.stats().proc_reads;
    assert!(reads >= 2); // the process and its parent
    let mut e = ev(Kind::NetConnect, 700, 1, 300, "py (x) )");
    c.enrich(&mut e, SEC);
    assert_eq!(c.stats().proc_reads, reads);
    assert_eq!(
        c.get(700, 300 * tick_ns()).unwrap().comm.as_ref(),
        "py (x) )"
    );
}

#[test]
fn scan_handles_odd_proc_contents() {
    let f = Fixture::new("odd");
    init_fixture(&f);
    f.add(800, ") ( x", 1, 5, "/bin/odd", b"\xff\xfe\0-x\0", "garbage");
    f.stat_raw(801, b"801 (trunc) S 1 801 801");
    f.stat_raw(802, b"");
    std::fs::create_dir_all(f.proc_dir().join("self")).unwrap();
    std::fs::create_dir_all(f.proc_dir().join("12x")).unwrap();
    let mut c = f.cache(cfg());
    assert_eq!(c.scan_proc(&f.proc_dir()), 2);
    let e = c.get(800, 5 * tick_ns()).unwrap();
    assert_eq!(e.comm.as_ref(), ") ( x");
    assert_eq!(e.argv.as_ref().unwrap().to_vec(), ["\\xff\\xfe", "-x"]);
    assert_eq!(e.container_id.as_deref(), Some(""));
    assert_eq!((e.uid, e.auid, e.session), (1000, Some(1000), None));
    assert_eq!(e.tty.as_deref(), Some("pts/0"));
    // Scanning twice adds nothing.
    assert_eq!(c.scan_proc(&f.proc_dir()), 0);
}

#[test]
fn container_from_cgroup_id_proc_then_cache_then_walk() {
    let f = Fixture::new("ctr");
    init_fixture(&f);
    let scope = format!("/system.slice/docker-{ID}.scope");
    let cg = f.cgroup(&scope);
    let host_cg = f.cgroup("/user.slice");
    f.add(
        900,
        "nginx",
        1,
        10,
        "/usr/sbin/nginx",
        b"nginx\0",
        &format!("0::{scope}\n"),
    );
    let mut c = f.cache(cfg());
    let mut e = exec(900, 1, 10, "/usr/sbin/nginx", &["nginx"]);
    e.process.as_mut().unwrap().cgroup_id = cg;
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).container_id, ID);
    assert_eq!(c.stats().cgroups, 1);
    // A short-lived process in the same cgroup, already gone: answered from the cgroup map.
    let reads = c.stats().proc_reads;
    let mut e = exec(901, 900, 11, "/bin/true", &["true"]);
    e.process.as_mut().unwrap().cgroup_id = cg;
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).container_id, ID);
    assert_eq!(
        c.stats().proc_reads,
        reads,
        "no /proc read for a known cgroup"
    );
    // Later events of 901 use its entry.
    let mut e = ev(Kind::ProcessExit, 901, 900, 11, "true");
    e.process.as_mut().unwrap().cgroup_id = cg;
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).container_id, ID);
    // An unknown cgroup and a process that is gone: found by walking the cgroup tree.
    let other = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let pod = format!("/kubepods.slice/kubepods-pod1.slice/cri-containerd-{other}.scope");
    let cg2 = f.cgroup(&pod);
    let mut e = exec(902, 1, 12, "/bin/true", &["true"]);
    e.process.as_mut().unwrap().cgroup_id = cg2;
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).container_id, other);
    // Host processes (pure v2): "" and remembered.
    let mut e = exec(903, 1, 13, "/bin/true", &["true"]);
    e.process.as_mut().unwrap().cgroup_id = host_cg;
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).container_id, "");
    assert!(!proc_of(&e).is_incomplete("container_id"));
    assert_eq!(c.stats().cgroups, 3);
}

#[test]
fn container_changes_when_the_process_moves_cgroup() {
    let f = Fixture::new("move");
    init_fixture(&f);
    let host = f.cgroup("/user.slice");
    let scope = format!("/sensor-it-x/docker-{ID}.scope");
    let ctr = f.cgroup(&scope);
    f.add(950, "sh", 1, 20, "/bin/sh", b"sh\0", "0::/user.slice\n");
    let mut c = f.cache(cfg());
    let mut e = exec(950, 1, 20, "/bin/sh", &["sh"]);
    e.process.as_mut().unwrap().cgroup_id = host;
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).container_id, "");
    // Moved, then exec'd in place and gone before we look.
    f.remove(950);
    let mut e = exec(950, 1, 20, "/bin/true", &["true", "MARK"]);
    e.process.as_mut().unwrap().cgroup_id = ctr;
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).container_id, ID);
}

#[test]
fn audit_events_without_start_time_or_cgroup_id() {
    let f = Fixture::new("audit");
    init_fixture(&f);
    f.add(
        1000,
        "bash",
        1,
        77,
        "/usr/bin/bash",
        b"bash\0",
        &format!("12:pids:/docker/{ID}\n"),
    );
    let mut c = f.cache(cfg()).with_cgroup_root(None);
    let mut e = exec(1000, 1, 0, "/usr/bin/bash", &["bash"]);
    e.process.as_mut().unwrap().start_boottime_ns = 0;
    c.enrich(&mut e, SEC);
    // The start tick came from /proc; the container from the v1 line.
    assert!(c.get(1000, 77 * tick_ns()).is_some());
    assert_eq!(proc_of(&e).container_id, ID);
    f.remove(1000);
    let mut e = ev(Kind::ProcessExit, 1000, 1, 0, "bash");
    e.process.as_mut().unwrap().start_boottime_ns = 0;
    c.enrich(&mut e, SEC);
    let p = proc_of(&e);
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/bash"));
    assert_eq!(p.container_id, ID);
    assert!(c.is_exit_pending(1000, 77 * tick_ns()));
}

/// `e` as the audit source sends it: no start, and `start_time`/`cgroup_id` listed missing.
fn audit(mut e: Event) -> Event {
    let p = e.process.as_mut().unwrap();
    p.start_boottime_ns = 0;
    p.incomplete = vec!["start_time".into(), "cgroup_id".into()];
    e
}

#[test]
fn audit_event_with_a_cgroup_id_from_proc_does_not_list_it_as_incomplete() {
    let f = Fixture::new("audit-cg");
    init_fixture(&f);
    let cg = f.cgroup("/system.slice/x.service");
    f.add(
        1100,
        "sh",
        1,
        90,
        "/bin/sh",
        b"sh\0",
        "0::/system.slice/x.service\n",
    );
    let mut c = f.cache(cfg());
    let mut e = audit(exec(1100, 1, 0, "/bin/sh", &["sh"]));
    c.enrich(&mut e, SEC);
    let p = proc_of(&e);
    assert_eq!(p.cgroup_id, cg);
    assert!(!p.is_incomplete("cgroup_id"), "{:?}", p.incomplete);
    // The start the same read found, at tick resolution.
    assert_eq!(p.start_boottime_ns, 90 * tick_ns());
    assert!(p.start_time_unix_ns.is_some());
    assert!(!p.is_incomplete("start_time"), "{:?}", p.incomplete);
    // A later event of the process gets the same id and start from the entry.
    let mut conn = audit(ev(Kind::NetConnect, 1100, 1, 0, "sh"));
    c.enrich(&mut conn, SEC);
    assert_eq!(proc_of(&conn).cgroup_id, cg);
    assert!(!proc_of(&conn).is_incomplete("cgroup_id"));
    assert_eq!(proc_of(&conn).start_boottime_ns, 90 * tick_ns());
    assert!(proc_of(&conn).incomplete.is_empty());
    // Gone before the read: no id nor start, still listed.
    let mut gone = audit(exec(1101, 1, 0, "/bin/true", &["true"]));
    c.enrich(&mut gone, SEC);
    assert_eq!(proc_of(&gone).cgroup_id, 0);
    assert!(proc_of(&gone).is_incomplete("cgroup_id"));
    assert_eq!(proc_of(&gone).start_boottime_ns, 0);
    assert!(proc_of(&gone).is_incomplete("start_time"));
}

/// A file event's process is a /proc snapshot: its start has tick resolution.
fn file_event(pid: u32, ticks: u64) -> Event {
    let mut e = Event::new(Kind::File, Source::Fanotify, 0, "h");
    e.process = Some(Process {
        pid,
        start_boottime_ns: ticks * tick_ns(),
        start_time_unix_ns: Some(1),
        ..Process::default()
    });
    e
}

#[test]
fn every_event_of_a_process_carries_one_start() {
    let f = Fixture::new("one-start");
    init_fixture(&f);
    let mut c = f.cache(cfg());
    // Met first through an eBPF exec: the kernel's exact start, also on its file events.
    let mut e = exec(1200, 1, 300, "/bin/sh", &["sh"]);
    c.enrich(&mut e, SEC);
    let exact = 300 * tick_ns() + 1234;
    assert_eq!(proc_of(&e).start_boottime_ns, exact);
    let mut file = file_event(1200, 300);
    c.enrich(&mut file, SEC);
    assert_eq!(proc_of(&file).start_boottime_ns, exact);
    assert_ne!(
        proc_of(&file).start_time_unix_ns,
        Some(1),
        "start_time follows"
    );
    assert_eq!(
        proc_of(&file).start_time_unix_ns,
        proc_of(&e).start_time_unix_ns
    );
    let mut exit = ev(Kind::ProcessExit, 1200, 1, 300, "sh");
    c.enrich(&mut exit, SEC);
    assert_eq!(
        proc_of(&exit).start_time_unix_ns,
        proc_of(&e).start_time_unix_ns
    );
    assert_eq!(proc_of(&exit).start_boottime_ns, exact);
    // Met first through /proc (a file event, as for a process older than the sensor): its
    // tick start, kept by the eBPF records that follow, an exec included.
    f.add(1300, "bash", 1, 310, "/bin/bash", b"bash\0", "0::/\n");
    let mut file = file_event(1300, 310);
    c.enrich(&mut file, SEC);
    assert_eq!(proc_of(&file).start_boottime_ns, 310 * tick_ns());
    let mut conn = ev(Kind::NetConnect, 1300, 1, 310, "bash");
    c.enrich(&mut conn, SEC);
    assert_eq!(proc_of(&conn).start_boottime_ns, 310 * tick_ns());
    let mut again = exec(1300, 1, 310, "/usr/bin/env", &["env"]);
    c.enrich(&mut again, SEC);
    assert_eq!(proc_of(&again).start_boottime_ns, 310 * tick_ns());
    // Another process with the same pid (reused): its own start.
    let mut reused = exec(1300, 1, 900, "/bin/true", &["true"]);
    c.enrich(&mut reused, SEC);
    assert_eq!(proc_of(&reused).start_boottime_ns, 900 * tick_ns() + 1234);
}

#[test]
fn a_file_event_names_the_audit_exec_whose_proc_read_came_too_late() {
    let f = Fixture::new("late-read");
    init_fixture(&f);
    f.add(1500, "sh", 1, 400, "/bin/sh", b"sh\0", "0::/\n");
    let mut c = f.cache(cfg());
    c.enrich(
        &mut audit(exec(1500, 1, 0, "/bin/sh", &["sh", "-c", "x"])),
        SEC,
    );
    // The child execs mv and is gone before the exec's /proc read: no start.
    let mut mv = audit(exec(1501, 1500, 0, "/usr/bin/mv", &["mv", "a", "b"]));
    c.enrich(&mut mv, SEC);
    assert!(proc_of(&mv).is_incomplete("start_time"));
    // Its file event carries the start of the snapshot taken while it ran.
    let mut file = file_event(1501, 410);
    file.process.as_mut().unwrap().ppid = 1500;
    file.process.as_mut().unwrap().comm = "mv".into();
    c.enrich(&mut file, SEC);
    let p = proc_of(&file);
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/mv"));
    assert_eq!(p.args().unwrap(), ["mv", "a", "b"]);
    assert_eq!(p.start_boottime_ns, 410 * tick_ns());
    // The exit (no start) finds the same entry, with the start learned.
    let mut exit = audit(ev(Kind::ProcessExit, 1501, 1500, 0, "mv"));
    c.enrich(&mut exit, SEC);
    assert_eq!(proc_of(&exit).exe.as_deref(), Some("/usr/bin/mv"));
    assert_eq!(proc_of(&exit).start_boottime_ns, 410 * tick_ns());
}

#[test]
fn audit_exit_delivered_before_exec_is_not_guessed() {
    let f = Fixture::new("ooo");
    let mut c = f.cache(cfg()).with_cgroup_root(None);
    let unknown = |mut e: Event| {
        e.process.as_mut().unwrap().start_boottime_ns = 0;
        e
    };
    c.enrich(
        &mut unknown(exec(1400, 1, 0, "/bin/sh", &["sh", "-c", "x"])),
        SEC,
    );
    // The child's exit overtakes its exec: no image is invented for it.
    let mut exit = unknown(ev(Kind::ProcessExit, 1401, 1400, 0, "bash"));
    c.enrich(&mut exit, SEC);
    let p = proc_of(&exit);
    assert_eq!(p.exe, None);
    assert!(p.is_incomplete("exe"));
    assert_eq!(p.ancestors[0].exe, "/bin/sh");
    // The late exec fills the tombstone; events after it resolve; it still expires.
    let mut e = unknown(exec(1401, 1400, 0, "/bin/bash", &["bash", "MK"]));
    c.enrich(&mut e, SEC);
    assert_eq!(c.len(), 2);
    let mut conn = unknown(ev(Kind::NetConnect, 1401, 1400, 0, "bash"));
    c.enrich(&mut conn, SEC);
    assert_eq!(proc_of(&conn).exe.as_deref(), Some("/bin/bash"));
    assert_eq!(proc_of(&conn).args().unwrap(), ["bash", "MK"]);
    c.enrich(&mut ev(Kind::NetConnect, 1400, 1, 0, "sh"), 7 * SEC);
    assert_eq!((c.len(), c.stats().swept_lost), (1, 0));
}

#[test]
fn pid_only_events_get_credentials_from_the_cache() {
    let f = Fixture::new("bare");
    let mut c = f.cache(cfg());
    c.enrich(&mut exec(1100, 1, 5, "/usr/bin/vim", &["vim", "f"]), SEC);
    let mut e = ev(Kind::NetConnect, 1100, 0, 0, "");
    let p = e.process.as_mut().unwrap();
    (p.start_boottime_ns, p.uid, p.euid, p.auid, p.session) = (0, 0, 0, None, None);
    c.enrich(&mut e, SEC);
    let p = proc_of(&e);
    assert_eq!((p.ppid, p.comm.as_str(), p.uid, p.euid), (1, "vim", 1, 2));
    assert_eq!((p.auid, p.session), (Some(1000), Some(7)));
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/vim"));
    // A pid-only event that already carries its audit identity (a login record's
    // process, read from /proc after the process set its loginuid) keeps it.
    let mut e = ev(Kind::Login, 1100, 0, 0, "");
    let p = e.process.as_mut().unwrap();
    (p.auid, p.session) = (Some(2000), Some(99));
    c.enrich(&mut e, SEC);
    assert_eq!(
        (proc_of(&e).auid, proc_of(&e).session),
        (Some(2000), Some(99))
    );
    // A source that names "uid" incomplete gets it filled and the marker removed.
    let mut e = ev(Kind::NetConnect, 1100, 1, 5, "vim");
    let p = e.process.as_mut().unwrap();
    p.uid = 0;
    p.incomplete.push("uid".into());
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).uid, 1);
    assert!(!proc_of(&e).is_incomplete("uid"));
}

#[test]
fn forked_child_inherits_the_parent_image() {
    let f = Fixture::new("fork");
    let mut c = f.cache(cfg());
    c.enrich(
        &mut exec(1200, 1, 5, "/usr/sbin/sshd", &["sshd", "-D"]),
        SEC,
    );
    // A child forked without exec, already gone: its exit still names the image.
    let mut e = ev(Kind::ProcessExit, 1201, 1200, 6, "sshd");
    c.enrich(&mut e, SEC);
    let p = proc_of(&e);
    assert_eq!(p.exe.as_deref(), Some("/usr/sbin/sshd"));
    assert_eq!(p.args().unwrap(), ["sshd", "-D"]);
    assert_eq!(p.ancestors[0].pid, 1200);
    // The explicit fork API does the same.
    let child = proc_of(&ev(Kind::NetConnect, 1202, 1200, 7, "sshd")).clone();
    assert_eq!(c.fork(&child, SEC), ForkOutcome::Added);
    assert_eq!(c.fork(&child, SEC), ForkOutcome::Known);
    assert_eq!(
        c.get(1202, 7 * tick_ns()).unwrap().exe.as_deref(),
        Some("/usr/sbin/sshd")
    );
}

#[test]
fn a_forked_child_whose_comm_changed_drops_the_inherited_image() {
    let f = Fixture::new("forkexec");
    let mut c = f.cache(cfg());
    c.enrich(
        &mut exec(1300, 1, 5, "/bin/bash", &["bash", "-c", "x"]),
        SEC,
    );
    let child = proc_of(&ev(Kind::NetConnect, 1301, 1300, 6, "bash")).clone();
    assert_eq!(c.fork(&child, SEC), ForkOutcome::Added);
    // Its exec never arrived (filtered in the kernel); the connect says comm "date".
    let mut e = ev(Kind::NetConnect, 1301, 1300, 6, "date");
    c.enrich(&mut e, SEC);
    let p = proc_of(&e);
    assert_eq!(p.exe, None, "not bash's image: {p:?}");
    assert!(p.is_incomplete("exe") && p.is_incomplete("argv"));
    // Still running: /proc gives the new image.
    f.add(
        1302,
        "date",
        1300,
        7,
        "/usr/bin/date",
        b"date\0+%s\0",
        "0::/\n",
    );
    let child = proc_of(&ev(Kind::NetConnect, 1302, 1300, 7, "bash")).clone();
    assert_eq!(c.fork(&child, SEC), ForkOutcome::Added);
    let mut e = ev(Kind::NetConnect, 1302, 1300, 7, "date");
    c.enrich(&mut e, SEC);
    let p = proc_of(&e);
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/date"));
    assert_eq!(p.args().unwrap(), ["date", "+%s"]);
}

#[test]
fn exec_without_cwd_reads_it_from_proc() {
    let f = Fixture::new("cwd");
    init_fixture(&f);
    f.add(1300, "make", 1, 9, "/usr/bin/make", b"make\0", "0::/\n");
    let mut c = f.cache(cfg());
    let mut e = exec(1300, 1, 9, "/usr/bin/make", &["make"]);
    let p = e.process.as_mut().unwrap();
    p.cwd = None;
    p.incomplete.push("cwd".into());
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).cwd.as_deref(), Some("/work"));
    assert!(
        proc_of(&e).incomplete.is_empty(),
        "{:?}",
        proc_of(&e).incomplete
    );
}

#[test]
fn strings_are_shared_and_pruned() {
    let f = Fixture::new("intern");
    let mut c = f.cache(cfg());
    for pid in 1..=100 {
        c.enrich(
            &mut exec(2000 + pid, 0, 5, "/usr/bin/same", &["same", "x"]),
            SEC,
        );
    }
    let a = c.get(2001, 5 * tick_ns()).unwrap();
    let b = c.get(2100, 5 * tick_ns()).unwrap();
    assert!(Arc::ptr_eq(
        a.exe.as_ref().unwrap(),
        b.exe.as_ref().unwrap()
    ));
    assert!(Arc::ptr_eq(
        &a.argv.as_ref().unwrap().joined,
        &b.argv.as_ref().unwrap().joined
    ));
    for pid in 1..=100 {
        c.enrich(&mut ev(Kind::ProcessExit, 2000 + pid, 0, 5, "same"), SEC);
    }
    c.sweep(100 * SEC, &f.proc_dir());
    assert!(c.is_empty());
    assert_eq!(c.strings.len(), 0);
}

/// An audit exec takes the cgroup read its source kept (the process is gone from /proc by the
/// time the cache sees the exec): container id and start tick from that read, no /proc read.
/// A kept "gone" is a miss, and a read of another process (other start tick) is not used.
#[test]
fn audit_exec_takes_the_cgroup_read_its_source_kept() {
    use crate::enrich::cgroup_reads::{CgroupRead, CgroupReads};
    let f = Fixture::new("kept");
    init_fixture(&f);
    let reads = Arc::new(CgroupReads::default());
    let mut c = f.cache(cfg()).with_cgroup_root(None);
    c.use_cgroup_reads(reads.clone());
    let audit_exec = |pid| {
        let mut e = exec(pid, 1, 0, "/usr/bin/true", &["true"]);
        e.process.as_mut().unwrap().start_boottime_ns = 0;
        e
    };
    reads.put(
        1500,
        CgroupRead::Alive {
            text: format!("12:pids:/docker/{ID}\n"),
            start_ticks: 88,
        },
    );
    let mut e = audit_exec(1500);
    c.enrich(&mut e, SEC);
    assert_eq!(proc_of(&e).container_id, ID);
    assert!(!proc_of(&e).is_incomplete("container_id"));
    assert!(
        c.get(1500, 88 * tick_ns()).is_some(),
        "start tick from the read"
    );
    assert!(reads.is_empty(), "taken");
    assert_eq!(c.stats().proc_misses, 0);

    reads.put(1501, CgroupRead::Gone);
    let mut e = audit_exec(1501);
    c.enrich(&mut e, SEC);
    assert!(proc_of(&e).is_incomplete("container_id"));
    assert_eq!(c.stats().proc_misses, 1);

    // A second exec of 1500 (start tick 88 known now) with a read of a younger process.
    reads.put(
        1500,
        CgroupRead::Alive {
            text: "12:pids:/\n".into(),
            start_ticks: 99,
        },
    );
    let mut e = audit_exec(1500);
    c.enrich(&mut e, SEC);
    assert_eq!(c.stats().proc_misses, 2, "not this process's read");
    assert_eq!(proc_of(&e).container_id, ID, "kept from the first exec");
}
