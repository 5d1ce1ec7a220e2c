//! The process cache: (pid, start tick) -> what the sensor knows about a process.
//!
//! # Keys and matching
//! The key is `(pid, start tick since boot)`, the tick being `/proc/<pid>/stat` field 22; an
//! event's `start_boottime_ns` is converted with `ns / (1e9 / CLK_TCK)`, so kernel and /proc
//! starts compare at tick granularity and a reused pid can never resolve to the old process.
//! An event without a start time (`start_boottime_ns == 0`, e.g. audit) matches the newest
//! live entry of its pid.
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
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::container::{self, Cgroup2Root};
use super::procfs::{self, ProcError, Snapshot};
use super::EnrichConfig;
use crate::event::{Ancestor, Event, Kind, Process, Source};

const NIL: u32 = u32::MAX;
/// The start tick of an entry whose start time is unknown.
pub const UNKNOWN_START: u64 = u64::MAX;
/// Entries whose start time the sweep re-reads from /proc per run (presence is checked for all).
pub const SWEEP_STAT_BUDGET: usize = 1024;
/// Most cgroup ids remembered (cleared when full; cgroup ids are never reused).
const CGROUP_MAP_MAX: usize = 8192;
/// Exit-pending entries expired per enriched event (the sweep expires the rest).
const EXPIRE_PER_EVENT: usize = 8;

/// A multiplicative hasher for integer keys (pids, cgroup ids): keeps sequential pids in
/// distinct buckets and costs one multiply.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdBuild = BuildHasherDefault<IdHasher>;

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

/// argv as one interned string: the arguments joined by NUL (arguments never contain NUL).
#[derive(Debug, Clone)]
pub struct Argv {
    joined: Arc<str>,
    argc: u32,
}

impl Argv {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let n = self.argc as usize;
        self.joined.split('\0').take(n)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    pub fn len(&self) -> usize {
        self.argc as usize
    }

    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }
}

/// One cached process.
#[derive(Debug, Clone)]
pub struct CachedProcess {
    pub pid: u32,
    pub ppid: u32,
    /// Start time in clock ticks since boot, or [`UNKNOWN_START`].
    pub start_ticks: u64,
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

struct Slot {
    proc_: Option<CachedProcess>,
    /// Links in the live (LRU) or exit-pending list; `next` links the free list.
    prev: u32,
    next: u32,
    /// Next entry with the same pid (newest first).
    pid_next: u32,
    /// CLOCK_MONOTONIC ns after which an exited entry goes; 0 = live.
    exit_deadline: u64,
    /// Marked exited without an exit event (sweep or pid reuse).
    lost: bool,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };

    fn push_back(&mut self, slots: &mut [Slot], i: u32) {
        slots[i as usize].prev = self.tail;
        slots[i as usize].next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            slots[self.tail as usize].next = i;
        }
        self.tail = i;
        self.len += 1;
    }

    fn unlink(&mut self, slots: &mut [Slot], i: u32) {
        let (prev, next) = (slots[i as usize].prev, slots[i as usize].next);
        if prev == NIL {
            self.head = next;
        } else {
            slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            slots[next as usize].prev = prev;
        }
        self.len -= 1;
    }
}

#[derive(Default)]
struct Interner {
    set: HashSet<Arc<str>>,
}

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }

    /// Drops strings no entry uses any more.
    fn prune(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
        if self.set.capacity() > 4 * self.set.len().max(256) {
            self.set.shrink_to_fit();
        }
    }
}

/// The process cache. See the module documentation.
pub struct ProcessCache {
    max_entries: usize,
    grace_ns: u64,
    depth: usize,
    ns_per_tick: u64,
    proc_root: PathBuf,
    cgroup_root: Option<Cgroup2Root>,
    slots: Vec<Slot>,
    free: u32,
    by_pid: HashMap<u32, u32, IdBuild>,
    live: List,
    exiting: List,
    strings: Interner,
    /// cgroup id -> container id ("" = host).
    cgroups: HashMap<u64, Arc<str>, IdBuild>,
    /// cgroup ids a directory walk could not decide (not walked again).
    walked: HashSet<u64, IdBuild>,
    sweep_cursor: usize,
    stats: CacheStats,
}

fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    (1_000_000_000 / hz).max(1)
}

fn add_marker(p: &mut Process, name: &'static str) {
    if !p.incomplete.contains(&name) {
        p.incomplete.push(name);
    }
}

fn take_marker(p: &mut Process, name: &'static str) -> bool {
    let before = p.incomplete.len();
    p.incomplete.retain(|m| *m != name);
    p.incomplete.len() != before
}

fn unset(id: Option<u32>) -> Option<u32> {
    id.filter(|&v| v != u32::MAX)
}

impl ProcessCache {
    pub fn new(cfg: &EnrichConfig) -> Self {
        Self {
            max_entries: cfg.max_entries.clamp(1, (NIL - 1) as usize),
            grace_ns: cfg.exit_grace_ms.saturating_mul(1_000_000),
            depth: cfg.ancestors_depth,
            ns_per_tick: ns_per_tick(),
            proc_root: PathBuf::from("/proc"),
            cgroup_root: container::find_tracked_root(),
            slots: Vec::new(),
            free: NIL,
            by_pid: HashMap::default(),
            live: List::EMPTY,
            exiting: List::EMPTY,
            strings: Interner::default(),
            cgroups: HashMap::default(),
            walked: HashSet::default(),
            sweep_cursor: 0,
            stats: CacheStats::default(),
        }
    }

    /// Reads missing process data from `root` instead of `/proc` (tests use fixture dirs).
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    /// Uses `root` as the cgroup v2 mount (or none) instead of the one found at start.
    pub fn with_cgroup_root(mut self, root: Option<Cgroup2Root>) -> Self {
        self.cgroup_root = root;
        self
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    pub fn len(&self) -> usize {
        self.live.len + self.exiting.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.len() as u64,
            exit_pending: self.exiting.len as u64,
            cgroups: self.cgroups.len() as u64,
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
        let i = self.find(pid, self.start_ticks(start_boottime_ns))?;
        self.slots[i as usize].proc_.as_ref()
    }

    /// Whether the cache knows the process's image (no /proc read): it has an entry that is
    /// not known from its fork only (a forked child may be about to exec).
    pub fn settled(&self, pid: u32, start_boottime_ns: u64) -> bool {
        self.find(pid, self.start_ticks(start_boottime_ns))
            .is_some_and(|i| !self.entry(i).forked)
    }

    /// Whether the entry exists and is exit-pending.
    pub fn is_exit_pending(&self, pid: u32, start_boottime_ns: u64) -> bool {
        self.find(pid, self.start_ticks(start_boottime_ns))
            .is_some_and(|i| self.slots[i as usize].exit_deadline != 0)
    }

    fn entry(&self, i: u32) -> &CachedProcess {
        self.slots[i as usize]
            .proc_
            .as_ref()
            .expect("linked slot holds a process")
    }

    fn entry_mut(&mut self, i: u32) -> &mut CachedProcess {
        self.slots[i as usize]
            .proc_
            .as_mut()
            .expect("linked slot holds a process")
    }

    fn chain(&self, pid: u32) -> impl Iterator<Item = u32> + '_ {
        let mut i = self.by_pid.get(&pid).copied().unwrap_or(NIL);
        std::iter::from_fn(move || {
            if i == NIL {
                return None;
            }
            let cur = i;
            i = self.slots[cur as usize].pid_next;
            Some(cur)
        })
    }

    fn is_live(&self, i: u32) -> bool {
        self.slots[i as usize].exit_deadline == 0
    }

    /// Exact key, or the newest live (else newest) entry of the pid when the start is unknown.
    fn find(&self, pid: u32, ticks: u64) -> Option<u32> {
        if ticks == UNKNOWN_START {
            return self
                .chain(pid)
                .find(|&i| self.is_live(i))
                .or_else(|| self.chain(pid).next());
        }
        self.chain(pid)
            .find(|&i| self.entry(i).start_ticks == ticks)
    }

    /// The parent of a child that started at `child_ticks`: the entry of `ppid` that started
    /// last, but not after the child.
    fn find_parent(&self, ppid: u32, child_ticks: u64) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for i in self.chain(ppid) {
            let st = self.entry(i).start_ticks;
            let rank = if st == UNKNOWN_START {
                0
            } else if child_ticks == UNKNOWN_START || st <= child_ticks {
                st.saturating_add(1)
            } else {
                continue;
            };
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, i));
            }
        }
        best.map(|(_, i)| i)
    }

    fn alloc(&mut self, p: CachedProcess) -> u32 {
        let slot = Slot {
            proc_: Some(p),
            prev: NIL,
            next: NIL,
            pid_next: NIL,
            exit_deadline: 0,
            lost: false,
        };
        if self.free != NIL {
            let i = self.free;
            self.free = self.slots[i as usize].next;
            self.slots[i as usize] = slot;
            return i;
        }
        if self.slots.len() == self.slots.capacity() {
            // Grow by a quarter (not double): the slab is most of the cache's memory.
            let room = self.max_entries.saturating_sub(self.slots.len()).max(1);
            self.slots
                .reserve_exact((self.slots.len() / 4).clamp(64, room.max(64)).min(room));
        }
        self.slots.push(slot);
        (self.slots.len() - 1) as u32
    }

    fn insert(&mut self, p: CachedProcess, now: u64) -> u32 {
        let (pid, ticks) = (p.pid, p.start_ticks);
        if ticks != UNKNOWN_START {
            // A pid names one live process: older live entries of it missed their exit.
            loop {
                let stale = self.chain(pid).find(|&i| {
                    let st = self.entry(i).start_ticks;
                    self.is_live(i) && st != UNKNOWN_START && st < ticks
                });
                let Some(stale) = stale else { break };
                self.mark_exit(stale, now, true);
            }
        }
        while self.len() >= self.max_entries && self.evict_one() {}
        let i = self.alloc(p);
        self.slots[i as usize].pid_next = self.by_pid.insert(pid, i).unwrap_or(NIL);
        self.live.push_back(&mut self.slots, i);
        i
    }

    fn evict_one(&mut self) -> bool {
        let i = if self.exiting.head != NIL {
            self.exiting.head
        } else if self.live.head != NIL {
            self.live.head
        } else {
            return false;
        };
        self.remove(i);
        self.stats.evictions += 1;
        true
    }

    fn remove(&mut self, i: u32) {
        if self.is_live(i) {
            self.live.unlink(&mut self.slots, i);
        } else {
            self.exiting.unlink(&mut self.slots, i);
        }
        let pid = self.entry(i).pid;
        let next = self.slots[i as usize].pid_next;
        match self.by_pid.get(&pid).copied() {
            Some(head) if head == i => {
                if next == NIL {
                    self.by_pid.remove(&pid);
                } else {
                    self.by_pid.insert(pid, next);
                }
            }
            Some(head) => {
                let mut j = head;
                while j != NIL {
                    if self.slots[j as usize].pid_next == i {
                        self.slots[j as usize].pid_next = next;
                        break;
                    }
                    j = self.slots[j as usize].pid_next;
                }
            }
            None => {}
        }
        let slot = &mut self.slots[i as usize];
        slot.proc_ = None;
        slot.pid_next = NIL;
        slot.next = self.free;
        self.free = i;
    }

    /// Exit-pending until `now + grace`. An exit event for an entry the sweep had marked lost
    /// clears the mark (the exit was late, not lost).
    fn mark_exit(&mut self, i: u32, now: u64, lost: bool) {
        let slot = &mut self.slots[i as usize];
        if slot.exit_deadline != 0 {
            if !lost {
                slot.lost = false;
            }
            return;
        }
        self.live.unlink(&mut self.slots, i);
        let slot = &mut self.slots[i as usize];
        slot.exit_deadline = now.saturating_add(self.grace_ns).max(1);
        slot.lost = lost;
        self.exiting.push_back(&mut self.slots, i);
    }

    fn touch(&mut self, i: u32) {
        if self.is_live(i) && self.live.tail != i {
            self.live.unlink(&mut self.slots, i);
            self.live.push_back(&mut self.slots, i);
        }
    }

    /// Removes up to `max` exit-pending entries whose grace period ended.
    fn expire(&mut self, now: u64, max: usize) -> usize {
        let mut n = 0;
        while n < max && self.exiting.head != NIL {
            let i = self.exiting.head;
            if self.slots[i as usize].exit_deadline > now {
                break;
            }
            if self.slots[i as usize].lost {
                self.stats.swept_lost += 1;
            }
            self.remove(i);
            n += 1;
        }
        n
    }

    fn argv_of(&mut self, args: &[String], truncated: bool) -> (Option<Argv>, bool) {
        let joined = args.join("\0");
        let argv = Argv {
            joined: self.strings.get(&joined),
            argc: args.len() as u32,
        };
        (Some(argv), truncated)
    }

    fn opt(&mut self, s: Option<&str>) -> Option<Arc<str>> {
        s.map(|s| self.strings.get(s))
    }

    fn read_proc(&mut self, pid: u32, ticks: u64) -> Option<Snapshot> {
        self.stats.proc_reads += 1;
        let expect = (ticks != UNKNOWN_START).then_some(ticks);
        match procfs::read_snapshot(&self.proc_root, pid, expect) {
            Ok(s) => Some(s),
            Err(e) => {
                self.stats.proc_misses += 1;
                if let ProcError::Io { .. } | ProcError::Malformed { .. } = e {
                    tracing::debug!(pid, error = %e, "reading /proc");
                }
                None
            }
        }
    }

    fn entry_from_snapshot(&mut self, s: &Snapshot) -> CachedProcess {
        let ids = s.ids.unwrap_or_default();
        let (argv, argv_truncated) = match &s.argv {
            Some(a) => self.argv_of(a, s.argv_truncated),
            None => (None, false),
        };
        let (container_id, cgroup_id) = match s.cgroup.as_deref() {
            Some(text) => {
                let (id, cg) = self.container_from_text(text, None);
                (id, cg.unwrap_or(0))
            }
            None => (None, 0),
        };
        CachedProcess {
            pid: s.stat.pid,
            ppid: s.stat.ppid,
            start_ticks: s.stat.start_ticks,
            uid: ids.uid,
            euid: ids.euid,
            gid: ids.gid,
            egid: ids.egid,
            auid: unset(s.auid),
            session: unset(s.session),
            cgroup_id,
            comm: self.strings.get(&s.stat.comm),
            tty: procfs::tty_name(s.stat.tty_nr).map(|t| self.strings.get(&t)),
            exe: self.opt(s.exe.as_deref()),
            cwd: self.opt(s.cwd.as_deref()),
            argv,
            container_id,
            argv_truncated,
            forked: false,
            container_guessed: false,
        }
    }

    /// An entry built from the event's own fields (credentials, comm, tty).
    fn entry_from_event(&mut self, p: &Process, ticks: u64) -> CachedProcess {
        CachedProcess {
            pid: p.pid,
            ppid: p.ppid,
            start_ticks: ticks,
            uid: p.uid,
            euid: p.euid,
            gid: p.gid,
            egid: p.egid,
            auid: p.auid,
            session: p.session,
            cgroup_id: 0,
            comm: self.strings.get(&p.comm),
            tty: self.opt(p.tty.as_deref()),
            exe: None,
            cwd: None,
            argv: None,
            container_id: None,
            argv_truncated: false,
            forked: false,
            container_guessed: false,
        }
    }

    /// Start-up fill from a /proc scan. Returns the number of entries added.
    pub fn scan_proc(&mut self, proc_root: &Path) -> usize {
        let Ok(pids) = procfs::list_pids(proc_root) else {
            return 0;
        };
        let now = crate::timefmt::monotonic_now_ns();
        let mut added = 0;
        for pid in pids {
            // A process that exits mid-scan, or a malformed stat, is skipped.
            let Ok(snap) = procfs::read_snapshot(proc_root, pid, None) else {
                continue;
            };
            if self.find(pid, snap.stat.start_ticks).is_some() {
                continue;
            }
            let entry = self.entry_from_snapshot(&snap);
            self.insert(entry, now);
            added += 1;
        }
        self.stats.scanned += added as u64;
        added
    }

    /// Learns of a new process (a fork record): the child runs its parent's image (exe, argv,
    /// cwd, container, ancestry) until it execs. A child with a `comm` carries the kernel's
    /// credentials for it; a pid-only child (the proc connector) takes comm and credentials
    /// from the parent too. The parent is looked up in the cache, else read from /proc once.
    /// True when a live entry for `pid` came from an exec or /proc rather than a fork. An
    /// audit-mode fork notice reaches the stage through another socket than the exec records,
    /// so it can arrive after the child's exec: it is then older news and must not replace the
    /// exec'd image (it would be dropped again as "exec'd unseen" and the image lost).
    pub fn has_exec_image(&self, pid: u32) -> bool {
        self.chain(pid)
            .any(|i| self.is_live(i) && !self.entry(i).forked)
    }

    pub fn fork(&mut self, child: &Process, now_mono_ns: u64) -> ForkOutcome {
        let ticks = self.start_ticks(child.start_boottime_ns);
        if ticks != UNKNOWN_START && self.find(child.pid, ticks).is_some() {
            return ForkOutcome::Known;
        }
        if child.ppid == 0 || child.ppid == child.pid {
            return ForkOutcome::NoParent;
        }
        let parent = match self.find_parent(child.ppid, ticks) {
            Some(i) => i,
            None => match self.load_parent(child.ppid, ticks, now_mono_ns) {
                Some(i) => i,
                None => return ForkOutcome::NoParent,
            },
        };
        let mut e = self.entry(parent).clone();
        e.forked = true;
        e.pid = child.pid;
        e.ppid = child.ppid;
        e.start_ticks = ticks;
        if !child.comm.is_empty() {
            let from_event = self.entry_from_event(child, ticks);
            (e.uid, e.euid, e.gid, e.egid) = (
                from_event.uid,
                from_event.euid,
                from_event.gid,
                from_event.egid,
            );
            (e.auid, e.session) = (from_event.auid, from_event.session);
            (e.comm, e.tty) = (from_event.comm, from_event.tty);
        }
        if child.cgroup_id != 0 && child.cgroup_id != e.cgroup_id {
            // Forked into another cgroup (clone3 CLONE_INTO_CGROUP): resolve it afresh.
            e.cgroup_id = child.cgroup_id;
            e.container_id = self.cgroups.get(&child.cgroup_id).cloned();
        }
        self.insert(e, now_mono_ns);
        self.stats.forks += 1;
        ForkOutcome::Added
    }

    fn inherit(&mut self, p: &Process, ticks: u64, now: u64) -> Option<u32> {
        if p.ppid == 0 || p.comm.is_empty() {
            return None;
        }
        let parent = self.find_parent(p.ppid, ticks)?;
        let mut e = self.entry_from_event(p, ticks);
        let par = self.entry(parent);
        e.exe = par.exe.clone();
        e.cwd = par.cwd.clone();
        e.argv = par.argv.clone();
        e.argv_truncated = par.argv_truncated;
        e.container_id = par.container_id.clone();
        e.cgroup_id = par.cgroup_id;
        Some(self.insert(e, now))
    }

    /// Enriches `ev` in place and updates the cache from it. See the module documentation.
    pub fn enrich(&mut self, ev: &mut Event, now_mono_ns: u64) {
        self.expire(now_mono_ns, EXPIRE_PER_EVENT);
        let kind = ev.kind;
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
                // A file event's process fields are a /proc snapshot the file source took after
                // the fact (empty argv and no exe once the process is a zombie, the new image
                // after an exec): the cache's, from the kernel's records, are preferred.
                let snapshot = matches!(ev.source, Source::Fanotify | Source::Inotify);
                self.fill_process(i, p, snapshot);
                self.touch(i);
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
        if p.ancestors.is_empty() {
            self.fill_ancestors(p, idx, ticks, now_mono_ns);
        }
        if kind == Kind::ProcessExit {
            if let Some(i) = idx {
                self.mark_exit(i, now_mono_ns, false);
            }
        }
    }

    fn apply_exec(&mut self, p: &mut Process, ticks: u64, now: u64) -> u32 {
        let mut ticks = ticks;
        let existing = if ticks == UNKNOWN_START {
            // exec keeps pid and start time: the pid's newest entry is this process. It may
            // already be exit-pending: audit delivers proc-connector exits ahead of the
            // exec records of the same process.
            let newest = self.find(p.pid, UNKNOWN_START);
            match newest {
                Some(i) => ticks = self.entry(i).start_ticks,
                None => {
                    self.stats.proc_reads += 1;
                    match procfs::read_stat(&self.proc_root, p.pid) {
                        Ok(st) => ticks = st.start_ticks,
                        Err(_) => self.stats.proc_misses += 1,
                    }
                }
            }
            newest
        } else {
            self.find(p.pid, ticks)
        };
        let mut e = self.entry_from_event(p, ticks);
        e.exe = self.opt(p.exe.as_deref());
        e.cwd = self.opt(p.cwd.as_deref());
        if let Some(a) = &p.argv {
            (e.argv, e.argv_truncated) = self.argv_of(a, p.argv_truncated);
        }
        if e.exe.is_none() || e.cwd.is_none() || e.argv.is_none() {
            // The kernel could not give them: the new image is in /proc while it runs.
            if let Some(s) = self.read_proc(p.pid, ticks) {
                if e.exe.is_none() {
                    e.exe = self.opt(s.exe.as_deref());
                }
                if e.cwd.is_none() {
                    e.cwd = self.opt(s.cwd.as_deref());
                }
                if e.argv.is_none() {
                    if let Some(a) = &s.argv {
                        (e.argv, e.argv_truncated) = self.argv_of(a, s.argv_truncated);
                    }
                }
            }
        }
        match existing {
            Some(i) => {
                // The cgroup does not change at exec: keep what was resolved for it.
                let old = self.entry_mut(i);
                e.cgroup_id = old.cgroup_id;
                e.container_id = old.container_id.take();
                e.container_guessed = old.container_guessed;
                *old = e;
                i
            }
            None => self.insert(e, now),
        }
    }

    fn resolve(&mut self, p: &Process, ticks: u64, kind: Kind, now: u64) -> Option<u32> {
        if let Some(i) = self.find(p.pid, ticks) {
            return Some(i);
        }
        if kind != Kind::ProcessExit {
            if let Some(snap) = self.read_proc(p.pid, ticks) {
                let e = self.entry_from_snapshot(&snap);
                return Some(self.insert(e, now));
            }
        }
        if kind == Kind::ProcessExit && ticks == UNKNOWN_START && !p.comm.is_empty() {
            // Without a start time the exit may have overtaken the exec (audit): do not guess
            // the parent's image; leave a tombstone the late exec fills in.
            let e = self.entry_from_event(p, ticks);
            return Some(self.insert(e, now));
        }
        self.inherit(p, ticks, now)
    }

    /// The event's kernel credentials are current: keep the entry up to date for pid-only
    /// events and ancestors.
    ///
    /// A child known from its fork whose comm changed has exec'd without its exec reaching the
    /// cache (the in-kernel noise filter drops some, a ring buffer can overflow): the inherited
    /// image is dropped and read from /proc while the process lives, else marked incomplete.
    fn refresh(&mut self, i: u32, p: &Process) {
        if p.comm.is_empty() {
            return;
        }
        if self.entry(i).forked && *self.entry(i).comm != *p.comm {
            let ticks = self.entry(i).start_ticks;
            let snap = self.read_proc(p.pid, ticks);
            let (exe, cwd) = match &snap {
                Some(s) => (self.opt(s.exe.as_deref()), self.opt(s.cwd.as_deref())),
                None => (None, None),
            };
            let (argv, truncated) = match snap.as_ref().and_then(|s| s.argv.as_ref()) {
                Some(a) if !a.is_empty() => {
                    self.argv_of(a, snap.as_ref().is_some_and(|s| s.argv_truncated))
                }
                _ => (None, false),
            };
            let e = self.entry_mut(i);
            (e.exe, e.cwd, e.argv, e.argv_truncated) = (exe, cwd, argv, truncated);
            e.forked = false;
        }
        let comm_changed = *self.entry(i).comm != *p.comm;
        let comm = comm_changed.then(|| self.strings.get(&p.comm));
        let has_uid = !p.incomplete.contains(&"uid");
        let has_session = !p.incomplete.contains(&"session");
        let e = self.entry_mut(i);
        if p.ppid != 0 {
            e.ppid = p.ppid;
        }
        if has_uid {
            (e.uid, e.euid, e.gid, e.egid) = (p.uid, p.euid, p.gid, p.egid);
        }
        if has_session {
            (e.auid, e.session) = (p.auid, p.session);
        }
        if let Some(c) = comm {
            e.comm = c;
        }
    }

    fn fill_process(&mut self, i: u32, p: &mut Process, prefer_cache: bool) {
        let e = self.entry(i);
        if p.comm.is_empty() {
            // A pid-only event (the source found no process): the cache names it.
            take_marker(p, "process");
            p.ppid = e.ppid;
            p.comm = e.comm.to_string();
            p.tty = e.tty.as_deref().map(str::to_string);
            (p.uid, p.euid, p.gid, p.egid) = (e.uid, e.euid, e.gid, e.egid);
            // A source that read the audit identity itself (a login record's process, from
            // /proc at the time of the login) is fresher than the cache: the process may
            // have set its loginuid after its exec, as pam_loginuid does.
            if p.auid.is_none() && p.session.is_none() {
                (p.auid, p.session) = (e.auid, e.session);
            }
        } else {
            if p.incomplete.contains(&"uid") {
                (p.uid, p.euid, p.gid, p.egid) = (e.uid, e.euid, e.gid, e.egid);
            }
            if p.incomplete.contains(&"session") {
                (p.auid, p.session) = (e.auid, e.session);
            }
        }
        take_marker(p, "uid");
        take_marker(p, "session");
        let e = self.entry(i);
        if prefer_cache {
            if e.exe.is_some() {
                p.exe = None;
            }
            if e.cwd.is_some() {
                p.cwd = None;
            }
            if e.argv.as_ref().is_some_and(|a| !a.is_empty()) {
                p.argv = None;
            }
        }
        if p.exe.is_none() {
            if let Some(x) = e.exe.as_deref() {
                p.exe = Some(x.to_string());
                take_marker(p, "exe");
            }
        }
        if p.cwd.is_none() {
            if let Some(c) = e.cwd.as_deref() {
                p.cwd = Some(c.to_string());
                take_marker(p, "cwd");
            }
        }
        if p.argv.is_none() {
            if let Some(a) = &e.argv {
                p.argv = Some(a.to_vec());
                p.argv_truncated = e.argv_truncated;
                take_marker(p, "argv");
            }
        }
        for (missing, name) in [
            (p.exe.is_none(), "exe"),
            (p.cwd.is_none(), "cwd"),
            (p.argv.is_none(), "argv"),
        ] {
            if missing {
                add_marker(p, name);
            }
        }
    }

    fn remember_cgroup(&mut self, cgroup_id: u64, container: Arc<str>) {
        if self.cgroups.len() >= CGROUP_MAP_MAX {
            self.cgroups.clear();
        }
        self.walked.remove(&cgroup_id);
        self.cgroups.insert(cgroup_id, container);
    }

    /// Container id from `/proc/<pid>/cgroup` text, and the v2 cgroup id when the mount is
    /// known. With `event_cgroup`, an answer for another cgroup (the process moved since the
    /// event) is not an answer for the event.
    fn container_from_text(
        &mut self,
        text: &str,
        event_cgroup: Option<u64>,
    ) -> (Option<Arc<str>>, Option<u64>) {
        let c = container::container_from_cgroup_file(text);
        let id = self.strings.get(&c.id);
        let Some(root) = &self.cgroup_root else {
            return (Some(id), None);
        };
        let pure = root.pure;
        // The line of the tracked hierarchy, and whether it alone gives this answer (then every
        // process in that cgroup has it).
        let (path, decided) = match &root.v1 {
            None => (c.v2_path.clone(), c.decided_by_v2),
            Some(v1) => {
                let p = container::controller_path(text, &v1.name);
                let alone = p.map(|p| container::container_id_from_path(p).unwrap_or(""));
                (p.map(str::to_string), alone == Some(c.id.as_str()))
            }
        };
        let Some(cg) = path
            .as_deref()
            .and_then(|p| container::cgroup_id_of(&root.path, p))
        else {
            return (Some(id), None);
        };
        if decided && (pure || !c.id.is_empty()) {
            self.remember_cgroup(cg, id.clone());
        }
        match event_cgroup {
            Some(want) if want != cg => (None, None),
            _ => (Some(id), Some(cg)),
        }
    }

    fn container_via_proc(
        &mut self,
        pid: u32,
        ticks: u64,
        event_cgroup: Option<u64>,
    ) -> (Option<Arc<str>>, Option<u64>) {
        self.stats.proc_reads += 1;
        // The file must be this process's (not a younger one's with the same pid), read
        // while it was alive.
        let expect = (ticks != UNKNOWN_START).then_some(ticks);
        let Some(text) = procfs::read_cgroup_alive(&self.proc_root, pid, expect) else {
            self.stats.proc_misses += 1;
            return (None, None);
        };
        self.container_from_text(&text, event_cgroup)
    }

    fn container_via_walk(&mut self, cgroup_id: u64) -> Option<Arc<str>> {
        let root = self.cgroup_root.as_ref()?;
        if self.walked.contains(&cgroup_id) {
            return None;
        }
        let pure = root.pure;
        let found = container::find_cgroup_path(&root.path, cgroup_id);
        let answer = match found.as_deref().map(container::container_id_from_path) {
            Some(Some(id)) => Some(id.to_string()),
            Some(None) if pure => Some(String::new()),
            _ => None,
        };
        match answer {
            Some(id) => {
                let id = self.strings.get(&id);
                self.remember_cgroup(cgroup_id, id.clone());
                Some(id)
            }
            None => {
                if self.walked.len() >= CGROUP_MAP_MAX {
                    self.walked.clear();
                }
                self.walked.insert(cgroup_id);
                None
            }
        }
    }

    fn fill_container(&mut self, p: &mut Process, idx: Option<u32>, ticks: u64, kind: Kind) {
        let cg = p.cgroup_id;
        let (entry_cg, entry_id, entry_guessed) = match idx {
            Some(i) => {
                let e = self.entry(i);
                (e.cgroup_id, e.container_id.clone(), e.container_guessed)
            }
            None => (0, None, false),
        };
        let ticks = match idx {
            Some(i) => self.entry(i).start_ticks,
            None => ticks,
        };
        let mut learned = None;
        let mut guessed = false;
        let mut found = if cg != 0 {
            if entry_cg == cg && entry_id.is_some() && !entry_guessed {
                entry_id.clone()
            } else if let Some(c) = self.cgroups.get(&cg) {
                Some(c.clone())
            } else {
                let (id, _) = self.container_via_proc(p.pid, ticks, Some(cg));
                id.or_else(|| self.container_via_walk(cg))
            }
        } else if kind != Kind::ProcessExec && entry_id.is_some() {
            guessed = entry_guessed;
            entry_id.clone()
        } else {
            // No cgroup id (audit, pid-only sources): ask /proc while the process lives.
            let (id, got) = self.container_via_proc(p.pid, ticks, None);
            learned = got;
            id
        };
        if found.is_none() {
            // Best effort: what this process had before exec, else its parent's. A guess (the
            // process may have moved to another cgroup since): said so in `incomplete`.
            found = entry_id.or_else(|| {
                let parent = self.find_parent(p.ppid, ticks)?;
                self.entry(parent).container_id.clone()
            });
            guessed = found.is_some();
        }
        match found {
            Some(id) => {
                p.container_id = id.to_string();
                if guessed {
                    add_marker(p, "container_id");
                } else {
                    take_marker(p, "container_id");
                }
                if let Some(i) = idx {
                    let e = self.entry_mut(i);
                    e.container_id = Some(id);
                    e.container_guessed = guessed;
                    if !guessed {
                        if cg != 0 {
                            e.cgroup_id = cg;
                        } else if let Some(l) = learned {
                            e.cgroup_id = l;
                        }
                    }
                }
            }
            None => {
                p.container_id.clear();
                add_marker(p, "container_id");
            }
        }
        if p.cgroup_id == 0 {
            if let Some(i) = idx {
                p.cgroup_id = self.entry(i).cgroup_id;
            }
        }
    }

    fn fill_ancestors(&mut self, p: &mut Process, idx: Option<u32>, ticks: u64, now: u64) {
        if self.depth == 0 {
            return;
        }
        let (mut ppid, mut child_ticks) = match idx {
            Some(i) => {
                let e = self.entry(i);
                (if p.ppid != 0 { p.ppid } else { e.ppid }, e.start_ticks)
            }
            None => (p.ppid, ticks),
        };
        let mut out = Vec::with_capacity(self.depth.min(8));
        let mut complete = true;
        let mut prev_pid = p.pid;
        while out.len() < self.depth && ppid != 0 && ppid != prev_pid {
            let parent = match self.find_parent(ppid, child_ticks) {
                Some(i) => Some(i),
                None => self.load_parent(ppid, child_ticks, now),
            };
            let Some(i) = parent else {
                complete = false;
                break;
            };
            self.touch(i);
            let e = self.entry(i);
            out.push(Ancestor {
                pid: e.pid,
                comm: e.comm.to_string(),
                exe: e.exe.as_deref().unwrap_or("").to_string(),
            });
            prev_pid = e.pid;
            ppid = e.ppid;
            child_ticks = e.start_ticks;
        }
        p.ancestors = out;
        if !complete {
            add_marker(p, "ancestors");
        }
    }

    /// Reads a parent missing from the cache; a process that started after the child is not
    /// its parent (the parent is gone and the pid was reused).
    fn load_parent(&mut self, ppid: u32, child_ticks: u64, now: u64) -> Option<u32> {
        let snap = self.read_proc(ppid, UNKNOWN_START)?;
        if child_ticks != UNKNOWN_START && snap.stat.start_ticks > child_ticks {
            self.stats.proc_misses += 1;
            return None;
        }
        let e = self.entry_from_snapshot(&snap);
        Some(self.insert(e, now))
    }

    /// Removes expired exit-pending entries and marks entries whose process is gone from
    /// `proc_root` (or whose pid now has another start time) as exited without an exit event:
    /// they are removed, and counted in `swept_lost`, one grace period later unless their exit
    /// event arrives meanwhile. Presence is checked for every entry; start times for up to
    /// [`SWEEP_STAT_BUDGET`] entries per run, in rotation. Returns the entries removed.
    pub fn sweep(&mut self, now_mono_ns: u64, proc_root: &Path) -> usize {
        let removed = self.expire(now_mono_ns, usize::MAX);
        if let Ok(pids) = procfs::list_pids(proc_root) {
            let present: HashSet<u32, IdBuild> = pids.into_iter().collect();
            let mut lost = Vec::new();
            let mut i = self.live.head;
            while i != NIL {
                if !present.contains(&self.entry(i).pid) {
                    lost.push(i);
                }
                i = self.slots[i as usize].next;
            }
            let n = self.slots.len();
            let mut checked = 0;
            for _ in 0..n {
                if checked >= SWEEP_STAT_BUDGET {
                    break;
                }
                let i = (self.sweep_cursor % n) as u32;
                self.sweep_cursor = (self.sweep_cursor + 1) % n;
                let slot = &self.slots[i as usize];
                let Some(e) = slot.proc_.as_ref() else {
                    continue;
                };
                if slot.exit_deadline != 0
                    || e.start_ticks == UNKNOWN_START
                    || !present.contains(&e.pid)
                {
                    continue;
                }
                checked += 1;
                match procfs::read_stat(proc_root, e.pid) {
                    Ok(st) if st.start_ticks != e.start_ticks => lost.push(i),
                    Err(ProcError::Gone(_)) => lost.push(i),
                    _ => {}
                }
            }
            for i in lost {
                self.mark_exit(i, now_mono_ns, true);
            }
        }
        self.strings.prune();
        removed
    }
}

#[cfg(test)]
mod tests {
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
        Event {
            seq: 0,
            time_unix_ns: 0,
            host: "h".into(),
            source: Source::Ebpf,
            kind,
            process: Some(Process {
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
            }),
            exit: None,
            connect: None,
            health: None,
            ktime_ns: None,
            extra: Default::default(),
        }
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
        assert_eq!(p.argv.as_deref().unwrap(), ["curl", "http://x"]);
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
        assert!(!proc_of(&e).incomplete.contains(&"ancestors"));

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
        assert_eq!(proc_of(&late).argv.as_deref().unwrap(), ["sleep", "1"]);
        // A duplicate exit does not extend the grace period.
        c.enrich(&mut ev(Kind::ProcessExit, 400, 0, 50, "sleep"), 5 * SEC);
        // After the grace period: removed, and the process is gone -> incomplete, no panic.
        let mut too_late = ev(Kind::NetConnect, 400, 0, 50, "sleep");
        c.enrich(&mut too_late, 6 * SEC + 1);
        assert!(c.get(400, 50 * tick_ns()).is_none());
        let p = proc_of(&too_late);
        assert_eq!(p.exe, None);
        for m in ["exe", "cwd", "argv"] {
            assert!(p.incomplete.contains(&m), "{m} in {:?}", p.incomplete);
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
        assert!(c.slots.len() <= 3);
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
            assert!(p.incomplete.contains(&m), "{m} in {:?}", p.incomplete);
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
        assert!(proc_of(&e).incomplete.contains(&"exe"));
        // An exec whose process is already gone still caches the kernel's data.
        let mut e = exec(603, 1, 81, "/bin/true", &["true"]);
        c.enrich(&mut e, SEC);
        assert!(proc_of(&e).incomplete.contains(&"ancestors"));
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
        assert_eq!(p.argv.as_deref().unwrap(), ["python3", "a\\xffb", ""]);
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
        assert!(!proc_of(&e).incomplete.contains(&"container_id"));
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
        assert!(p.incomplete.contains(&"exe"));
        assert_eq!(p.ancestors[0].exe, "/bin/sh");
        // The late exec fills the tombstone; events after it resolve; it still expires.
        let mut e = unknown(exec(1401, 1400, 0, "/bin/bash", &["bash", "MK"]));
        c.enrich(&mut e, SEC);
        assert_eq!(c.len(), 2);
        let mut conn = unknown(ev(Kind::NetConnect, 1401, 1400, 0, "bash"));
        c.enrich(&mut conn, SEC);
        assert_eq!(proc_of(&conn).exe.as_deref(), Some("/bin/bash"));
        assert_eq!(proc_of(&conn).argv.as_deref().unwrap(), ["bash", "MK"]);
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
        p.incomplete.push("uid");
        c.enrich(&mut e, SEC);
        assert_eq!(proc_of(&e).uid, 1);
        assert!(!proc_of(&e).incomplete.contains(&"uid"));
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
        assert_eq!(p.argv.as_deref().unwrap(), ["sshd", "-D"]);
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
        assert!(p.incomplete.contains(&"exe") && p.incomplete.contains(&"argv"));
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
        assert_eq!(p.argv.as_deref().unwrap(), ["date", "+%s"]);
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
        p.incomplete.push("cwd");
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
        assert!(c.strings.set.is_empty());
    }

    #[test]
    fn slot_stays_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 192,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }
}
