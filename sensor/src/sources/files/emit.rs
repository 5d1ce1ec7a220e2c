//! From a decoded file activity to a normalized [`Event`] in the bounded channel: op filter,
//! path filter, modify coalescing, process attribution from /proc, counting. Every capture
//! thread owns one [`Sink`] (no locks on the event path).
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::filter::{Decision, PathFilter};
use super::{FileStats, OpSet};
use crate::enrich::procfs;
use crate::escape::escape_bytes;
use crate::event::{Argv, Event, FileActivity, Kind, Process, Source};
use crate::telemetry::counters::Counters;
use crate::timefmt::{monotonic_now_ns, unix_now_ns, Clocks};

/// One observed activity, before filtering.
#[derive(Debug, Clone, Copy)]
pub struct Activity<'a> {
    pub path: &'a [u8],
    /// The new name of a rename.
    pub new_path: Option<&'a [u8]>,
    pub ops: OpSet,
    /// Acting pid where the kernel names it (fanotify); None for inotify.
    pub pid: Option<u32>,
}

/// What the sink did with an activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Filtered,
    Coalesced,
    /// The receiver is gone: the capture thread should stop.
    Closed,
}

pub struct Sink {
    tx: mpsc::Sender<Event>,
    counters: Arc<Counters>,
    host: String,
    source: Source,
    filter: Arc<PathFilter>,
    ops: OpSet,
    stats: Arc<FileStats>,
    coalesce: Coalescer,
    procs: ProcCache,
    clocks: Clocks,
}

/// What every sink shares; cloned per capture thread.
#[derive(Clone)]
pub struct SinkParts {
    pub tx: mpsc::Sender<Event>,
    pub counters: Arc<Counters>,
    pub host: String,
    pub filter: Arc<PathFilter>,
    pub stats: Arc<FileStats>,
    pub coalesce_window: Duration,
}

impl Sink {
    pub fn new(parts: SinkParts, source: Source, ops: OpSet) -> Sink {
        Sink {
            tx: parts.tx,
            counters: parts.counters,
            host: parts.host,
            source,
            filter: parts.filter,
            ops,
            stats: parts.stats,
            coalesce: Coalescer::new(parts.coalesce_window),
            procs: ProcCache::default(),
            clocks: Clocks::now(),
        }
    }

    pub fn stats(&self) -> &FileStats {
        &self.stats
    }

    pub fn filter(&self) -> &PathFilter {
        &self.filter
    }

    /// The path decision alone, for callers that want to skip work (process lookups, more
    /// path resolution) on events that will be dropped anyway.
    pub fn decide(&self, path: &[u8], new_path: Option<&[u8]>) -> Decision {
        match new_path {
            Some(n) => self.filter.decide_rename(path, n),
            None => self.filter.decide(path),
        }
    }

    pub fn emit(&mut self, a: Activity<'_>) -> Outcome {
        let ops = a.ops & self.ops;
        if ops.is_empty() || self.decide(a.path, a.new_path) != Decision::Report {
            self.stats.filtered_out.fetch_add(1, Relaxed);
            return Outcome::Filtered;
        }
        let now = Instant::now();
        if !self.coalesce.admit(a.pid.unwrap_or(0), a.path, ops, now) {
            self.stats.coalesced.fetch_add(1, Relaxed);
            return Outcome::Coalesced;
        }
        let process = a.pid.map(|pid| {
            let p = self.procs.lookup(pid, now, &self.clocks);
            if p.is_incomplete("process") {
                self.stats.process_gone.fetch_add(1, Relaxed);
            }
            p
        });
        let mut ev = Event::new(Kind::File, self.source, unix_now_ns(), &self.host);
        ev.process = process;
        ev.ktime_ns = Some(monotonic_now_ns());
        ev.file = Some(FileActivity {
            path: escape_bytes(a.path),
            ops: ops.names(),
            new_path: a.new_path.map(escape_bytes),
        });
        self.counters.count_event(Kind::File);
        if self.tx.blocking_send(ev).is_err() {
            return Outcome::Closed;
        }
        Outcome::Sent
    }
}

/// Lets the first `modify` of a (pid, path) through and swallows repeats within the window.
pub struct Coalescer {
    window: Duration,
    last: HashMap<(u32, Box<[u8]>), Instant>,
}

const COALESCE_MAX: usize = 16_384;

impl Coalescer {
    pub fn new(window: Duration) -> Coalescer {
        Coalescer {
            window,
            last: HashMap::new(),
        }
    }

    /// False when this is a repeated modify inside the window. Anything but a pure modify is
    /// always admitted.
    pub fn admit(&mut self, pid: u32, path: &[u8], ops: OpSet, now: Instant) -> bool {
        if self.window.is_zero() || ops != OpSet::MODIFY {
            return true;
        }
        let key = (pid, Box::<[u8]>::from(path));
        if let Some(t) = self.last.get(&key) {
            if now.duration_since(*t) < self.window {
                return false;
            }
        }
        if self.last.len() >= COALESCE_MAX {
            let w = self.window;
            self.last.retain(|_, t| now.duration_since(*t) < w);
            if self.last.len() >= COALESCE_MAX {
                self.last.clear();
            }
        }
        self.last.insert(key, now);
        true
    }
}

/// Process identity from /proc at event time, cached briefly per pid. A cached entry is
/// reused only while the pid's start time and comm are unchanged (a re-used pid or an exec
/// refreshes it).
#[derive(Default)]
pub struct ProcCache {
    entries: HashMap<u32, Cached>,
    tick_ns: u64,
}

struct Cached {
    /// When the identity was read in full.
    at: Instant,
    /// When it was last read or confirmed by `/proc/<pid>/stat`.
    checked: Instant,
    start_ticks: u64,
    process: Process,
}

/// Within this window after a read or a confirmation a cached identity is reused without
/// touching /proc at all (a burst of events from one process costs one read per window).
const PROC_FRESH: Duration = Duration::from_millis(250);
/// Beyond it and up to this age, reused if /proc/<pid>/stat shows the same start time and
/// comm (one small read instead of four).
const PROC_TTL: Duration = Duration::from_secs(2);
const PROC_MAX: usize = 4096;

impl ProcCache {
    pub fn lookup(&mut self, pid: u32, now: Instant, clocks: &Clocks) -> Process {
        if let Some(c) = self.entries.get(&pid) {
            // Just read or confirmed: the same process (a pid is not reused within this
            // window).
            if now.duration_since(c.checked) < PROC_FRESH {
                return c.process.clone();
            }
        }
        let root = Path::new("/proc");
        let Ok(stat) = procfs::read_stat(root, pid) else {
            self.entries.remove(&pid);
            return Process {
                pid,
                incomplete: vec!["process".into()],
                ..Process::default()
            };
        };
        if let Some(c) = self.entries.get_mut(&pid) {
            if c.start_ticks == stat.start_ticks
                && c.process.comm == stat.comm
                && now.duration_since(c.at) < PROC_TTL
            {
                c.checked = now;
                c.process.ppid = stat.ppid;
                return c.process.clone();
            }
        }
        if self.tick_ns == 0 {
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
            self.tick_ns = 1_000_000_000 / if hz > 0 { hz as u64 } else { 100 };
        }
        let start_boottime_ns = stat.start_ticks.saturating_mul(self.tick_ns);
        let mut p = Process {
            pid,
            ppid: stat.ppid,
            comm: stat.comm.clone(),
            start_boottime_ns,
            start_time_unix_ns: Some(clocks.boottime_to_unix(start_boottime_ns)),
            tty: procfs::tty_name(stat.tty_nr),
            ..Process::default()
        };
        match std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| procfs::parse_status(&s))
        {
            Some(ids) => (p.uid, p.euid, p.gid, p.egid) = (ids.uid, ids.euid, ids.gid, ids.egid),
            None => p.incomplete.push("uid".into()),
        }
        p.exe = procfs::read_link(root, pid, "exe");
        if p.exe.is_none() {
            p.incomplete.push("exe".into());
        }
        match procfs::read_cmdline(root, pid) {
            Some((args, truncated)) => {
                p.argv = Some(Argv {
                    args,
                    truncated,
                    omitted_bytes: 0,
                })
            }
            None => p.incomplete.push("argv".into()),
        }
        if self.entries.len() >= PROC_MAX {
            self.entries
                .retain(|_, c| now.duration_since(c.at) < PROC_TTL);
            if self.entries.len() >= PROC_MAX {
                self.entries.clear();
            }
        }
        self.entries.insert(
            pid,
            Cached {
                at: now,
                checked: now,
                start_ticks: stat.start_ticks,
                process: p.clone(),
            },
        );
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(filter: PathFilter) -> (SinkParts, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(16);
        (
            SinkParts {
                tx,
                counters: Arc::new(Counters::default()),
                host: "h".into(),
                filter: Arc::new(filter),
                stats: Arc::new(FileStats::default()),
                coalesce_window: Duration::from_secs(60),
            },
            rx,
        )
    }

    #[test]
    fn emits_filters_and_coalesces() {
        let (p, mut rx) = parts(PathFilter::new(&["/etc"], &["/etc/skip"], &[] as &[&str]));
        let stats = p.stats.clone();
        let counters = p.counters.clone();
        let mut s = Sink::new(p, Source::Fanotify, OpSet::DEFAULT);
        let me = std::process::id();
        let act = |path: &'static [u8], ops| Activity {
            path,
            new_path: None,
            ops,
            pid: Some(me),
        };
        assert_eq!(s.emit(act(b"/etc/a\xff", OpSet::CREATE)), Outcome::Sent);
        assert_eq!(s.emit(act(b"/tmp/a", OpSet::CREATE)), Outcome::Filtered);
        assert_eq!(
            s.emit(act(b"/etc/skip/x", OpSet::CREATE)),
            Outcome::Filtered
        );
        assert_eq!(s.emit(act(b"/etc/a", OpSet::OPEN)), Outcome::Filtered);
        assert_eq!(s.emit(act(b"/etc/a", OpSet::MODIFY)), Outcome::Sent);
        assert_eq!(s.emit(act(b"/etc/a", OpSet::MODIFY)), Outcome::Coalesced);
        // Open is not reported, so modify|open is a pure modify after the op filter.
        assert_eq!(
            s.emit(act(b"/etc/a", OpSet::MODIFY | OpSet::OPEN)),
            Outcome::Coalesced
        );
        assert_eq!(
            s.emit(act(b"/etc/a", OpSet::MODIFY | OpSet::CLOSE_WRITE)),
            Outcome::Sent
        );
        let rename = Activity {
            path: b"/tmp/x",
            new_path: Some(b"/etc/x"),
            ops: OpSet::RENAME,
            pid: None,
        };
        assert_eq!(s.emit(rename), Outcome::Sent);

        let ev = rx.try_recv().unwrap();
        assert_eq!(ev.kind(), Kind::File);
        assert_eq!(ev.source(), Source::Fanotify);
        let f = ev.msg.file.unwrap();
        assert_eq!(
            (f.path.as_str(), f.ops),
            ("/etc/a\\xff", vec!["create".into()])
        );
        let p = ev.msg.process.unwrap();
        assert_eq!(p.pid, me);
        assert!(p.incomplete.is_empty(), "{:?}", p.incomplete);
        assert!(p.exe.is_some() && p.argv.is_some() && !p.comm.is_empty());
        assert!(p.start_boottime_ns > 0);
        let _modify = rx.try_recv().unwrap();
        let both = rx.try_recv().unwrap().msg.file.unwrap();
        assert_eq!(both.ops, ["modify", "close_write"]);
        let r = rx.try_recv().unwrap();
        assert!(r.process.is_none());
        assert_eq!(r.msg.file.unwrap().new_path.as_deref(), Some("/etc/x"));
        assert!(rx.try_recv().is_err());
        assert_eq!(stats.filtered_out.load(Relaxed), 3);
        assert_eq!(stats.coalesced.load(Relaxed), 2);
        assert_eq!(counters.events_of(Kind::File), 4);
        drop(rx);
        assert_eq!(s.emit(act(b"/etc/z", OpSet::CREATE)), Outcome::Closed);
    }

    #[test]
    fn gone_process_is_marked_incomplete() {
        let mut c = ProcCache::default();
        let clocks = Clocks::now();
        let p = c.lookup(u32::MAX - 7, Instant::now(), &clocks);
        assert_eq!(p.pid, u32::MAX - 7);
        assert_eq!(p.incomplete, vec!["process"]);
        // The cache returns the same identity for a live pid.
        let me = std::process::id();
        let a = c.lookup(me, Instant::now(), &clocks);
        let b = c.lookup(me, Instant::now(), &clocks);
        assert_eq!(
            (a.comm, a.exe, a.start_boottime_ns),
            (b.comm, b.exe, b.start_boottime_ns)
        );
    }

    #[test]
    fn coalescer_window() {
        let mut c = Coalescer::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert!(c.admit(1, b"/a", OpSet::MODIFY, t0));
        assert!(!c.admit(1, b"/a", OpSet::MODIFY, t0 + Duration::from_millis(50)));
        assert!(c.admit(2, b"/a", OpSet::MODIFY, t0), "other pid");
        assert!(c.admit(1, b"/b", OpSet::MODIFY, t0), "other path");
        assert!(c.admit(1, b"/a", OpSet::CREATE, t0), "never a create");
        assert!(c.admit(1, b"/a", OpSet::MODIFY, t0 + Duration::from_millis(150)));
        let mut off = Coalescer::new(Duration::ZERO);
        assert!(off.admit(1, b"/a", OpSet::MODIFY, t0));
        assert!(off.admit(1, b"/a", OpSet::MODIFY, t0));
    }
}
