//! Process cache benchmark (plain `harness = false`): memory per cached process, counted by a
//! counting global allocator, and insert / lookup / enrich / evict timings.
//!
//! `cargo bench -p sensor --bench process_cache` (env: BENCH_CACHE_N, default 100000).
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Instant;

use sensor::enrich::{container::Cgroup2Root, EnrichConfig, ProcessCache};
use sensor::event::{Event, Kind, Process, Source};

/// Counts the bytes currently allocated through the global allocator.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Relaxed)
}

const TICK_NS: u64 = 10_000_000; // CLK_TCK = 100
const CONTAINERS: usize = 10;

struct Dirs {
    root: PathBuf,
    /// cgroup ids: index 0 is the host, 1.. are containers.
    cgroups: Vec<u64>,
}

impl Dirs {
    fn new() -> Self {
        let root = std::env::temp_dir().join(format!("bench-cache-{}", std::process::id()));
        std::fs::create_dir_all(root.join("proc")).unwrap();
        let mut cgroups = Vec::new();
        let mut mk = |rel: String| {
            let p = root.join("cgroup").join(rel);
            std::fs::create_dir_all(&p).unwrap();
            cgroups.push(std::fs::metadata(&p).unwrap().ino());
        };
        mk("user.slice".into());
        for c in 0..CONTAINERS {
            mk(format!("system.slice/docker-{:064x}.scope", c + 1));
        }
        Dirs { root, cgroups }
    }

    fn cache(&self, max_entries: usize) -> ProcessCache {
        let cfg = EnrichConfig {
            max_entries,
            ..EnrichConfig::default()
        };
        ProcessCache::new(&cfg)
            .with_proc_root(self.root.join("proc"))
            .with_cgroup_root(Some(Cgroup2Root {
                path: self.root.join("cgroup"),
                pure: true,
                v1: None,
            }))
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A process tree under init (pid 1): process i's parent is process i / 4 (an earlier one),
/// so ancestors resolve from the cache; the first 64 are children of init.
fn ppid_of(i: u32) -> u32 {
    if i < 64 {
        1
    } else {
        pid_of(i / 4)
    }
}

fn pid_of(i: u32) -> u32 {
    i + 2
}

const EXES: [&str; 12] = [
    "/usr/bin/python3.11",
    "/usr/bin/bash",
    "/usr/sbin/nginx",
    "/usr/bin/node",
    "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
    "/usr/bin/curl",
    "/usr/local/bin/app-server",
    "/usr/bin/sleep",
    "/usr/sbin/sshd",
    "/usr/bin/git",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/lib/postgresql/15/bin/postgres",
];

fn process(i: u32, dirs: &Dirs) -> Process {
    let exe = EXES[i as usize % EXES.len()];
    let comm = exe.rsplit('/').next().unwrap();
    Process {
        pid: pid_of(i),
        ppid: ppid_of(i),
        start_boottime_ns: (1000 + u64::from(i)) * TICK_NS + 12345,
        uid: 1000 + i % 7,
        euid: 1000 + i % 7,
        gid: 100,
        egid: 100,
        auid: Some(1000),
        session: Some(3 + i % 5),
        tty: i.is_multiple_of(3).then(|| format!("pts/{}", i % 9)),
        comm: comm[..comm.len().min(15)].to_string(),
        cgroup_id: dirs.cgroups[i as usize % (CONTAINERS + 1)],
        ..Process::default()
    }
}

/// An exec event with a realistic, per-process unique argv (~70 bytes).
fn exec_event(i: u32, dirs: &Dirs) -> Event {
    let mut p = process(i, dirs);
    let exe = EXES[i as usize % EXES.len()];
    p.exe = Some(exe.to_string());
    p.cwd = Some(format!("/srv/app{}", i % 20));
    p.argv = Some(
        vec![
            p.comm.clone(),
            "--worker".into(),
            format!("--id={i}"),
            format!("--config=/etc/app/service-{}.toml", i % 50),
        ]
        .into(),
    );
    event(Kind::ProcessExec, p)
}

fn connect_event(i: u32, dirs: &Dirs) -> Event {
    event(Kind::NetConnect, process(i, dirs))
}

fn event(kind: Kind, p: Process) -> Event {
    let mut ev = Event::new(kind, Source::Ebpf, 0, "bench");
    ev.process = Some(p);
    ev
}

fn init(cache: &mut ProcessCache, dirs: &Dirs) {
    let mut p = process(0, dirs);
    p.pid = 1;
    p.ppid = 0;
    p.start_boottime_ns = TICK_NS;
    p.exe = Some("/usr/lib/systemd/systemd".into());
    p.argv = Some(vec!["/sbin/init".into()].into());
    p.cwd = Some("/".into());
    p.comm = "systemd".into();
    cache.enrich(&mut event(Kind::ProcessExec, p), 1);
}

fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Wall-clock and thread CPU time (the latter is what a busy machine does not inflate).
struct Timer {
    wall: Instant,
    cpu: u128,
}

impl Timer {
    fn start() -> Self {
        Timer {
            wall: Instant::now(),
            cpu: thread_cpu_ns(),
        }
    }

    fn per_op(&self, n: usize) -> String {
        let wall = self.wall.elapsed().as_nanos() as f64 / n as f64;
        let cpu = (thread_cpu_ns() - self.cpu) as f64 / n as f64;
        format!("{cpu:.0} ns/op CPU ({wall:.0} ns/op wall)")
    }
}

/// Clears what enrich fills, as if the event had been written and a new one read.
fn reset(ev: &mut Event) {
    let p = ev.process.as_mut().unwrap();
    p.exe = None;
    p.cwd = None;
    p.argv = None;
    p.container_id = String::new();
    p.ancestors = Vec::new();
    p.incomplete = Vec::new();
}

fn main() {
    let n: u32 = std::env::var("BENCH_CACHE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dirs = Dirs::new();
    let now = 1_000_000_000;
    println!("process cache benchmark: {n} processes, ancestors depth 4");

    // --- memory: events are built and dropped one by one, so only the cache remains.
    let before = live();
    let mut cache = dirs.cache(n as usize + 1024);
    init(&mut cache, &dirs);
    for i in 1..n {
        let mut ev = exec_event(i, &dirs);
        cache.enrich(&mut ev, now);
        drop(black_box(ev));
    }
    cache.sweep(now, Path::new("/nonexistent-proc-root")); // prunes the interner only
    let bytes = (live() - before) as f64;
    assert_eq!(cache.len(), n as usize);
    let per = bytes / f64::from(n);
    println!(
        "memory: {:.1} MiB for {n} cached processes = {per:.0} bytes/process \
         -> 100,000 processes = {:.1} MiB (target <= 64 MiB)",
        bytes / 1048576.0,
        per * 100_000.0 / 1048576.0
    );
    drop(cache);

    // --- insert: exec events built beforehand.
    let mut cache = dirs.cache(n as usize + 1024);
    init(&mut cache, &dirs);
    let mut events: Vec<Event> = (1..n).map(|i| exec_event(i, &dirs)).collect();
    let t = Timer::start();
    for ev in events.iter_mut() {
        cache.enrich(ev, now);
    }
    println!(
        "insert (enrich of an exec event, new entry): {}",
        t.per_op(events.len())
    );
    drop(events);

    // --- lookup: a pseudo-random walk over the cached keys.
    let keys: Vec<(u32, u64)> = (0..1_000_000u64)
        .map(|k| {
            let i = (k.wrapping_mul(2_654_435_761) % u64::from(n - 1)) as u32 + 1;
            (pid_of(i), (1000 + u64::from(i)) * TICK_NS + 12345)
        })
        .collect();
    let t = Timer::start();
    let mut hits = 0usize;
    for &(pid, start) in &keys {
        hits += usize::from(black_box(cache.get(pid, start)).is_some());
    }
    println!(
        "lookup (get by pid + start, random): {} ({hits} hits of {})",
        t.per_op(keys.len()),
        keys.len()
    );

    // --- enrich of a cache hit: a connect event gets exe, cwd, argv, container and 4
    // ancestors (allocating the event's strings); events are recycled like the pipeline's.
    let m = 200_000;
    for (label, span) in [
        ("random over all processes", n - 1),
        ("1,024 hot processes", 1024),
    ] {
        let mut pool: Vec<Event> = (0..4096u32)
            .map(|k| connect_event(k.wrapping_mul(7919) % span.min(n - 1) + 1, &dirs))
            .collect();
        let t = Timer::start();
        for k in 0..m {
            let ev = &mut pool[k % 4096];
            reset(ev);
            cache.enrich(ev, now);
        }
        let timing = t.per_op(m);
        let depth: usize = pool
            .iter()
            .map(|e| {
                let p = e.process.as_ref().unwrap();
                assert!(p.exe.is_some() && p.argv.is_some() && p.incomplete.is_empty());
                p.ancestors.len()
            })
            .sum();
        println!(
            "enrich of a cache hit (connect, {label}, {:.1} ancestors): {timing}",
            depth as f64 / pool.len() as f64
        );
    }
    drop(cache);

    // --- eviction: a cache of 10% of n, every insert past the bound evicts the LRU entry.
    let bound = (n as usize / 10).max(16);
    let mut cache = dirs.cache(bound);
    init(&mut cache, &dirs);
    let mut events: Vec<Event> = (1..n).map(|i| exec_event(i, &dirs)).collect();
    let t = Timer::start();
    for ev in events.iter_mut() {
        cache.enrich(ev, now);
    }
    let s = cache.stats();
    println!(
        "insert with eviction (bound {bound}): {}, {} evictions, {} entries",
        t.per_op(events.len()),
        s.evictions,
        s.entries
    );
    // Exit-pending first: mark the newest processes exited, then insert past the bound.
    for ev in events.iter_mut().rev().take(1000) {
        ev.set_kind(Kind::ProcessExit);
        cache.enrich(ev, now);
    }
    let before = cache.stats().exit_pending;
    for i in n..n + 1000 {
        cache.enrich(&mut exec_event(i, &dirs), now);
    }
    let after = cache.stats();
    println!(
        "exit-pending entries are evicted first: {before} pending -> {} after 1000 inserts, \
         live entries kept: {}",
        after.exit_pending,
        after.entries - after.exit_pending
    );
    assert_eq!(after.exit_pending, 0);
}
