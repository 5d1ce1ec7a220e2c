//! The process cache: (pid, start tick) -> what the sensor knows about a process.
//!
//! # Keys and matching
//! The key is `(pid, start tick since boot)`, the tick being `/proc/<pid>/stat` field 22; an
//! event's `start_boottime_ns` is converted with `ns / (1e9 / CLK_TCK)`, so kernel and /proc
//! starts compare at tick granularity and a reused pid can never resolve to the old process.
//! An event without a start time (`start_boottime_ns == 0`, e.g. audit) matches the newest
//! live entry of its pid; an event with one that no entry has takes the pid's newest live entry
//! if that has none (an audit exec whose /proc read found the process gone), which learns it.
//!
//! # One start per process
//! The sources know a process's start with different precision: eBPF records carry the
//! kernel's boottime ns, a /proc snapshot (file events, the start-up scan) only its tick, audit
//! records nothing. So that `(pid, start_boottime_ns)` names one process in every event, the
//! cache settles it once per entry (`start_ns`), at the first event that resolves to the
//! entry with the start known: that event's own start when an eBPF record gives it, else the
//! entry's tick (`ticks * ns per tick`, what a /proc snapshot gives). Every event of the
//! process then leaves with that start (and `start_time` leaves `incomplete`); an exec keeps
//! it. So a process the sensor first met in /proc (older than the sensor) keeps its tick start
//! even in the eBPF records that follow, and an audit-mode event carries the start its exec's
//! /proc read found.
//!
//! # Filling
//! - `process_exec` inserts or replaces the entry with the kernel's exe, argv and cwd. The
//!   event's own exe/argv/cwd are never overwritten; when the kernel could not give one, it is
//!   read from /proc (the new image) if the process is still there.
//! - Every kind (exec included) gets the fields it lacks from the entry: exe, cwd, argv (with
//!   `argv_truncated`), container_id and ancestors. The credentials an event carries are the
//!   kernel's and win; they refresh the entry. A *pid-only* event (empty `comm`: a source that
//!   knows only the pid, such as fanotify) gets ppid, comm, tty, uid/euid/gid/egid, auid and
//!   session from the entry; a source that put `"uid"` or `"session"` in `incomplete` gets
//!   those filled and the marker removed.
//! - On a miss, a non-exit event reads /proc once (and caches the result). When /proc has no
//!   such process (gone, or the pid now belongs to a younger process) and the parent is
//!   cached, the entry is inherited from the parent: a child forked without exec runs its
//!   parent's image. Exit events skip /proc (an exiting task has already released its mm and
//!   cwd). What is still unknown is named in `incomplete` (`exe`, `cwd`, `argv`,
//!   `container_id`, `ancestors`); nothing returns an error and nothing waits.
//! - `process_exit` marks the entry exit-pending; it stays resolvable for `exit_grace_ms` so
//!   late events (other CPUs, other sources) still resolve, then it is removed.
//!
//! # Containers
//! The container id comes from the cgroup path (see [`super::container`]). With a kernel
//! cgroup id in the event (eBPF), the answer is cached per cgroup id, so short-lived
//! processes in a known cgroup need no /proc read; an unknown id is resolved from
//! `/proc/<pid>/cgroup` while the process lives, else by finding the cgroup directory with that
//! inode number. On a hybrid cgroup host only positive answers are cached by cgroup id (a
//! runtime may use v1 hierarchies only).
//!
//! # Bounds
//! At `max_entries`, an insert evicts an exit-pending entry first (oldest exit first), else
//! the least recently used live entry; evictions are counted. A lost exit cannot grow the
//! cache: a new process with the same pid marks older live entries as exited, and
//! [`ProcessCache::sweep`] marks entries whose /proc directory is gone or holds another start
//! time. Both count in `swept_lost` when the grace period expires without an exit event.
//!
//! # Memory
//! Entries live in a slab with intrusive LRU links (u32 indexes); strings are interned
//! (`Arc<str>`), argv is one interned NUL-joined string. The interner is pruned on every sweep.
//!
//! # Files
//! - `store.rs`: slot storage, the LRU and exit-pending lists, per-pid chains, eviction;
//! - `intern.rs`: string interning and the interned argv;
//! - `from_proc.rs`: entries from /proc (misses, parents, the start-up scan) and the sweep;
//! - `containers.rs`: cgroup id -> container id;
//! - `ancestry.rs`: fork records, inheritance and the ancestor chain;
//! - `fill.rs`: what an exec stores, how a miss resolves, what an event gets back.
mod ancestry;
mod containers;
mod fill;
mod from_proc;
mod intern;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::container::{self, Cgroup2Root};
use super::EnrichConfig;
use crate::event::{Event, Kind, Process, Source};
use crate::timefmt::Clocks;
use containers::Cgroups;
pub use intern::Argv;
use intern::Interner;
use store::Store;

/// The start tick of an entry whose start time is unknown.
pub const UNKNOWN_START: u64 = u64::MAX;
/// [`CachedProcess::start_sub_ns`] before the process's start is settled.
pub const UNSETTLED: u32 = u32::MAX;
/// Entries whose start time the sweep re-reads from /proc per run (presence is checked for all).
pub const SWEEP_STAT_BUDGET: usize = 1024;
/// Exit-pending entries expired per enriched event (the sweep expires the rest).
const EXPIRE_PER_EVENT: usize = 8;

/// Counters and sizes, published to the health event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Cached processes (live and exit-pending).
    pub entries: u64,
    /// Of those, exited and waiting out the grace period.
    pub exit_pending: u64,
    /// Entries dropped because the cache was full.
    pub evictions: u64,
    /// Entries removed without an exit event (gone from /proc, or the pid was reused).
    pub swept_lost: u64,
    /// /proc reads on the event path (misses, and fields the event lacked).
    pub proc_reads: u64,
    /// Of those, the process was already gone (or the pid held another process).
    pub proc_misses: u64,
    /// Processes added by the start-up /proc scan.
    pub scanned: u64,
    /// cgroup ids with a known container id.
    pub cgroups: u64,
    /// Processes added from fork records.
    pub forks: u64,
}

/// What [`ProcessCache::fork`] did with a fork record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkOutcome {
    /// The child was added, inheriting its parent's image.
    Added,
    /// The child was already cached (its exec came first, or the start-up scan saw it).
    Known,
    /// The parent is neither cached nor in /proc: nothing to inherit, nothing added.
    NoParent,
}

/// One cached process.
#[derive(Debug, Clone)]
pub struct CachedProcess {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks since boot, or [`UNKNOWN_START`].
    pub start_ticks: u64,
    /// With `start_ticks`, the start every event of the process carries (see "One start per
    /// process" above): `start_ticks * ns per tick + start_sub_ns`, [`UNSETTLED`] until the
    /// first event settles it (a u32: the slot stays small).
    pub start_sub_ns: u32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub auid: Option<u32>,
    pub session: Option<u32>,
    /// cgroup v2 id the container id was resolved for (0 = not known).
    pub cgroup_id: u64,
    pub comm: Arc<str>,
    pub tty: Option<Arc<str>>,
    pub exe: Option<Arc<str>>,
    pub cwd: Option<Arc<str>>,
    pub argv: Option<Argv>,
    /// `None` until resolved; empty for the host.
    pub container_id: Option<Arc<str>>,
    pub argv_truncated: bool,
    /// Known from a fork record only: the image is the parent's and an exec may be on its way.
    pub forked: bool,
    /// `container_id` is a guess (the value before exec, or the parent's): events say so.
    pub container_guessed: bool,
}

/// The process cache. See the module documentation.
pub struct ProcessCache {
    depth: usize,
    ns_per_tick: u64,
    /// Turns a start settled here into the event's `start_time` (as the sources do).
    clocks: Clocks,
    proc_root: PathBuf,
    store: Store,
    strings: Interner,
    cgroups: Cgroups,
    sweep_cursor: usize,
    /// The /proc, scan and fork counters (the store counts evictions and lost exits).
    stats: CacheStats,
}

fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    (1_000_000_000 / hz).max(1)
}

fn add_marker(p: &mut Process, name: &str) {
    if !p.is_incomplete(name) {
        p.incomplete.push(name.to_string());
    }
}

fn take_marker(p: &mut Process, name: &'static str) -> bool {
    let before = p.incomplete.len();
    p.incomplete.retain(|m| *m != name);
    p.incomplete.len() != before
}

impl ProcessCache {
    pub fn new(cfg: &EnrichConfig) -> Self {
        Self {
            depth: cfg.ancestors_depth,
            ns_per_tick: ns_per_tick(),
            clocks: Clocks::now(),
            proc_root: PathBuf::from("/proc"),
            store: Store::new(cfg.max_entries, cfg.exit_grace_ms.saturating_mul(1_000_000)),
            strings: Interner::default(),
            cgroups: Cgroups::new(container::find_tracked_root()),
            sweep_cursor: 0,
            stats: CacheStats::default(),
        }
    }

    /// Reads missing process data from `root` instead of `/proc` (tests use fixture dirs).
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    /// For tests: a default cache over an empty proc root (nothing is found in /proc) and no
    /// cgroup mount; the root is removed when the returned guard drops.
    #[cfg(test)]
    pub(crate) fn over_empty_proc(tag: &str) -> (Self, crate::test_dir::TestDir) {
        let dir = crate::test_dir::TestDir::new(&format!("empty-proc-{tag}"));
        let cache = Self::new(&super::EnrichConfig::default())
            .with_proc_root(&*dir)
            .with_cgroup_root(None);
        (cache, dir)
    }

    /// Uses `root` as the cgroup v2 mount (or none) instead of the one found at start.
    pub fn with_cgroup_root(mut self, root: Option<Cgroup2Root>) -> Self {
        self.cgroups.root = root;
        self
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.len() as u64,
            exit_pending: self.store.exit_pending() as u64,
            cgroups: self.cgroups.len() as u64,
            evictions: self.store.evictions,
            swept_lost: self.store.swept_lost,
            ..self.stats
        }
    }

    /// The tick an event's `start_boottime_ns` falls in ([`UNKNOWN_START`] for 0).
    pub fn start_ticks(&self, start_boottime_ns: u64) -> u64 {
        if start_boottime_ns == 0 {
            UNKNOWN_START
        } else {
            start_boottime_ns / self.ns_per_tick
        }
    }

    /// The entry for a process, without touching its recency.
    pub fn get(&self, pid: u32, start_boottime_ns: u64) -> Option<&CachedProcess> {
        let i = self.store.find(pid, self.start_ticks(start_boottime_ns))?;
        self.store.get(i)
    }

    /// Whether the cache knows the process's image (no /proc read): it has an entry that is
    /// not known from its fork only (a forked child may be about to exec).
    pub fn settled(&self, pid: u32, start_boottime_ns: u64) -> bool {
        self.store
            .find(pid, self.start_ticks(start_boottime_ns))
            .is_some_and(|i| !self.store.entry(i).forked)
    }

    /// Whether the entry exists and is exit-pending.
    pub fn is_exit_pending(&self, pid: u32, start_boottime_ns: u64) -> bool {
        self.store
            .find(pid, self.start_ticks(start_boottime_ns))
            .is_some_and(|i| !self.store.is_live(i))
    }

    /// Enriches `ev` in place and updates the cache from it. See the module documentation.
    pub fn enrich(&mut self, ev: &mut Event, now_mono_ns: u64) {
        self.store.expire(now_mono_ns, EXPIRE_PER_EVENT);
        let kind = ev.kind();
        // A file event's process fields are a /proc snapshot the file source took after the
        // fact (empty argv and no exe once the process is a zombie, the new image after an
        // exec): the cache's, from the kernel's records, are preferred.
        let snapshot = matches!(ev.source(), Source::Fanotify | Source::Inotify);
        // Only the eBPF records carry the kernel's exact start; /proc has ticks, audit nothing.
        let ev_source_exact = ev.source() == Source::Ebpf;
        let Some(p) = ev.process.as_mut() else {
            return;
        };
        if p.pid == 0 {
            return;
        }
        let ticks = self.start_ticks(p.start_boottime_ns);
        let idx = if kind == Kind::ProcessExec {
            Some(self.apply_exec(p, ticks, now_mono_ns))
        } else {
            self.resolve(p, ticks, kind, now_mono_ns)
        };
        match idx {
            Some(i) => {
                if kind != Kind::ProcessExec {
                    self.refresh(i, p);
                }
                self.fill_process(i, p, snapshot);
                self.store.touch(i);
            }
            None => {
                if p.exe.is_none() {
                    add_marker(p, "exe");
                }
                if p.cwd.is_none() {
                    add_marker(p, "cwd");
                }
                if p.argv.is_none() {
                    add_marker(p, "argv");
                }
            }
        }
        self.fill_container(p, idx, ticks, kind);
        self.settle_start(p, idx, ticks, ev_source_exact);
        if p.ancestors.is_empty() {
            self.fill_ancestors(p, idx, ticks, now_mono_ns);
        }
        if kind == Kind::ProcessExit {
            if let Some(i) = idx {
                self.store.mark_exit(i, now_mono_ns, false);
            }
        }
    }
}

#[cfg(test)]
mod tests;
