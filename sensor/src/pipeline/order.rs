//! Ordered enrichment across sources: forks applied in capture order, and events of processes
//! the cache does not know yet held back (for a bounded time) until the fork or exec of their
//! process has been seen.
//!
//! - A fork from the ring-buffer reader names how many ring-buffer events the reader had sent
//!   before it (`after_events`); it is applied once the stage has taken that many, so a child
//!   inherits its parent's image as it was at fork time. Forks from other producers (the
//!   proc connector) are applied as soon as they arrive.
//! - An event that is not from the ring buffer (which is ordered by the above), is not an exec,
//!   and whose process the cache does not know (or knows from its fork only: an exec may be on
//!   its way, and the event must not get the parent's image) is held while it is newer than
//!   the producers' watermark. It leaves as soon as the cache learns the image of its process
//!   (its exec), the watermark passes it (everything before it was applied), or `hold_ms`
//!   elapses, and is then enriched with what is known.
//!
//! - A fork from an unordered producer (`in_order == false`: the proc connector in audit mode,
//!   whose forks can overtake the audit exec of the parent) waits in a bounded map and is
//!   applied just before an event of the child, or of one of its descendants, is enriched.
//!
//! Held events are kept in arrival order; at most [`MAX_HELD`] (the oldest is released early
//! beyond that, so holding cannot grow memory).
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::enrich::cache::{ForkOutcome, ProcessCache};
use crate::enrich::feed::{ProcessStart, Watermark};
use crate::event::{Event, Kind, Source};

/// Most events held at once.
pub const MAX_HELD: usize = 4096;
/// Most on-demand forks waiting (the oldest is forgotten beyond it, and counted).
pub const MAX_LAZY_FORKS: usize = 65_536;
/// Ancestors whose on-demand forks are applied before an event of a descendant.
const LAZY_DEPTH: usize = 16;

/// Attribution counters for the health event.
#[derive(Debug, Default)]
pub struct AttribStats {
    /// Fork records received.
    pub forks_seen: AtomicU64,
    /// Forks whose parent was unknown (neither cached nor in /proc): nothing to inherit.
    pub forks_without_parent: AtomicU64,
    /// On-demand forks forgotten at the [`MAX_LAZY_FORKS`] bound before any event needed them.
    pub forks_forgotten: AtomicU64,
    /// Events held for the fork or exec of their process.
    pub held: AtomicU64,
    /// Of those, released because the exec of the process arrived.
    pub held_resolved: AtomicU64,
    /// Of those, released once everything before them was applied (the watermark).
    pub held_ordered: AtomicU64,
    /// Of those, released at the deadline (or the queue bound) with what was known.
    pub held_timed_out: AtomicU64,
    /// Events that left the stage with something in `process.incomplete`, by (kind, source).
    incomplete: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl AttribStats {
    /// Events that left incomplete, by (kind, source).
    pub fn incomplete(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.incomplete
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn count_incomplete(&self, kind: Kind, source: Source) {
        *self
            .incomplete
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((kind.as_str(), source.as_str()))
            .or_default() += 1;
    }
}

struct Held {
    deadline_ns: u64,
    /// The event's CLOCK_MONOTONIC time (its `ktime_ns`, else its arrival).
    at_ns: u64,
    ev: Event,
}

/// Pending forks and held events. Pure: time, watermark and cache come in as arguments.
pub struct Orderer {
    hold_ns: u64,
    forks: VecDeque<ProcessStart>,
    /// On-demand forks by child pid, and their arrival order (for the bound).
    lazy: HashMap<u32, ProcessStart>,
    lazy_order: VecDeque<(u32, u64)>,
    held: VecDeque<Held>,
    /// Ring-buffer events taken so far.
    taken: u64,
}

impl Orderer {
    pub fn new(hold_ms: u64) -> Self {
        Self {
            hold_ns: hold_ms.saturating_mul(1_000_000),
            forks: VecDeque::new(),
            lazy: HashMap::new(),
            lazy_order: VecDeque::new(),
            held: VecDeque::new(),
            taken: 0,
        }
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// The earliest deadline of a held event.
    pub fn next_deadline(&self) -> Option<u64> {
        self.held.iter().map(|h| h.deadline_ns).min()
    }

    /// Queues a fork and applies every fork that is due.
    pub fn push_fork(&mut self, f: ProcessStart, cache: &mut ProcessCache, st: &AttribStats) {
        st.forks_seen.fetch_add(1, Relaxed);
        if !f.in_order {
            self.push_lazy(f, st);
            return;
        }
        self.forks.push_back(f);
        self.apply_forks(cache, st);
    }

    fn push_lazy(&mut self, f: ProcessStart, st: &AttribStats) {
        let (pid, t) = (f.process.pid, f.ktime_ns);
        self.lazy.insert(pid, f);
        self.lazy_order.push_back((pid, t));
        while self.lazy_order.len() > MAX_LAZY_FORKS {
            let Some((old, t)) = self.lazy_order.pop_front() else {
                break;
            };
            // Only if that pid was not forked again since.
            if self.lazy.get(&old).is_some_and(|f| f.ktime_ns == t) {
                self.lazy.remove(&old);
                st.forks_forgotten.fetch_add(1, Relaxed);
            }
        }
        if self.lazy_order.len() > 2 * self.lazy.len() + 1024 {
            let lazy = &self.lazy;
            self.lazy_order
                .retain(|(p, t)| lazy.get(p).is_some_and(|f| f.ktime_ns == *t));
        }
    }

    /// Applies the on-demand forks of `ev`'s process and of its not-yet-applied ancestors,
    /// oldest ancestor first. Call just before enriching `ev`.
    pub fn prepare(&mut self, ev: &Event, cache: &mut ProcessCache, st: &AttribStats) {
        if self.lazy.is_empty() {
            return;
        }
        let Some(p) = ev.process.as_ref() else {
            return;
        };
        let mut chain = Vec::new();
        let mut pid = p.pid;
        while chain.len() < LAZY_DEPTH {
            let Some(f) = self.lazy.remove(&pid) else {
                break;
            };
            pid = f.process.ppid;
            chain.push(f);
        }
        if chain.is_empty() && p.ppid != 0 {
            // The process itself is known (an exec); its parent may still be pending.
            let mut pid = p.ppid;
            while chain.len() < LAZY_DEPTH {
                let Some(f) = self.lazy.remove(&pid) else {
                    break;
                };
                pid = f.process.ppid;
                chain.push(f);
            }
        }
        for f in chain.into_iter().rev() {
            if cache.has_exec_image(f.process.pid) {
                // The exec came first through the audit socket: the fork is older news.
                continue;
            }
            if cache.fork(&f.process, f.ktime_ns) == ForkOutcome::NoParent {
                st.forks_without_parent.fetch_add(1, Relaxed);
            }
        }
    }

    /// Applies the forks whose preceding ring-buffer events have all been taken.
    fn apply_forks(&mut self, cache: &mut ProcessCache, st: &AttribStats) {
        while self
            .forks
            .front()
            .is_some_and(|f| f.after_events <= self.taken)
        {
            let Some(f) = self.forks.pop_front() else {
                break;
            };
            if cache.fork(&f.process, f.ktime_ns) == ForkOutcome::NoParent {
                st.forks_without_parent.fetch_add(1, Relaxed);
            }
        }
    }

    /// Called for each event taken from the channel, in order. Returns the event when it may
    /// be enriched now; `None` when it is held (see [`Self::release`]).
    pub fn take(
        &mut self,
        ev: Event,
        cache: &mut ProcessCache,
        now_ns: u64,
        mark: &Watermark,
        st: &AttribStats,
    ) -> Option<Event> {
        if ev.source() == Source::Ebpf {
            // Forks sent before this event apply before it.
            self.apply_forks(cache, st);
            self.taken += 1;
            return Some(ev);
        }
        let Some(p) = ev.process.as_ref() else {
            return Some(ev);
        };
        if self.hold_ns == 0
            || ev.kind() == Kind::ProcessExec
            || p.pid == 0
            || (cache.settled(p.pid, p.start_boottime_ns) && !self.lazy.contains_key(&p.pid))
        {
            return Some(ev);
        }
        let at_ns = ev.ktime_ns.unwrap_or(now_ns);
        if mark.passed(at_ns, self.taken) {
            return Some(ev);
        }
        st.held.fetch_add(1, Relaxed);
        self.held.push_back(Held {
            deadline_ns: now_ns.saturating_add(self.hold_ns),
            at_ns,
            ev,
        });
        None
    }

    /// Moves the held events that may go now into `out`, in arrival order: their process is
    /// known, the watermark passed them, their deadline passed, or the queue is over its bound.
    pub fn release(
        &mut self,
        cache: &mut ProcessCache,
        now_ns: u64,
        mark: &Watermark,
        st: &AttribStats,
        out: &mut Vec<Event>,
    ) {
        if self.held.is_empty() {
            return;
        }
        self.apply_forks(cache, st);
        let mut over = self.held.len().saturating_sub(MAX_HELD);
        let mut keep = VecDeque::with_capacity(self.held.len());
        for h in self.held.drain(..) {
            let settled =
                h.ev.process
                    .as_ref()
                    .is_some_and(|p| cache.settled(p.pid, p.start_boottime_ns));
            if settled {
                st.held_resolved.fetch_add(1, Relaxed);
                out.push(h.ev);
            } else if mark.passed(h.at_ns, self.taken) {
                st.held_ordered.fetch_add(1, Relaxed);
                out.push(h.ev);
            } else if over > 0 || now_ns >= h.deadline_ns {
                over = over.saturating_sub(1);
                st.held_timed_out.fetch_add(1, Relaxed);
                out.push(h.ev);
            } else {
                keep.push_back(h);
            }
        }
        self.held = keep;
    }

    /// Everything still held, for shutdown.
    pub fn drain_all(&mut self, st: &AttribStats, out: &mut Vec<Event>) {
        for h in self.held.drain(..) {
            st.held_timed_out.fetch_add(1, Relaxed);
            out.push(h.ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::feed::process_feed;
    use crate::event::Process;

    const MS: u64 = 1_000_000;

    fn cache(tag: &str) -> (ProcessCache, crate::test_dir::TestDir) {
        ProcessCache::over_empty_proc(&format!("order-{tag}"))
    }

    fn event(source: Source, kind: Kind, pid: u32, ktime: u64) -> Event {
        let mut ev = Event::new(kind, source, 0, "h");
        ev.process = Some(Process {
            pid,
            ..Process::default()
        });
        ev.ktime_ns = Some(ktime);
        if source == Source::Ebpf {
            let p = ev.process.as_mut().unwrap();
            p.comm = "c".into();
            p.start_boottime_ns = u64::from(pid) * 1_000_000_000;
        }
        ev
    }

    fn exec(pid: u32, ppid: u32, exe: &str, ktime: u64) -> Event {
        let mut ev = event(Source::Ebpf, Kind::ProcessExec, pid, ktime);
        let p = ev.process.as_mut().unwrap();
        p.ppid = ppid;
        p.exe = Some(exe.into());
        p.cwd = Some("/".into());
        p.argv = Some(vec![exe.into(), "arg".into()].into());
        ev
    }

    fn fork(pid: u32, ppid: u32, ktime: u64, after: u64, in_order: bool) -> ProcessStart {
        ProcessStart {
            ktime_ns: ktime,
            after_events: after,
            in_order,
            process: Process {
                pid,
                ppid,
                comm: if in_order { "c".into() } else { String::new() },
                start_boottime_ns: if in_order {
                    u64::from(pid) * 1_000_000_000
                } else {
                    0
                },
                ..Process::default()
            },
        }
    }

    fn exe_of(ev: &Event) -> Option<&str> {
        ev.process.as_ref().unwrap().exe.as_deref()
    }

    #[test]
    fn a_fork_waits_for_the_ring_events_before_it() {
        let (mut c, _d) = cache("ring");
        let (_feed, input) = process_feed(4);
        let st = AttribStats::default();
        let mut o = Orderer::new(50);
        let now = 10 * MS;
        let mut shell = exec(100, 1, "/bin/sh", MS);
        let shell_ev = o.take(shell.clone(), &mut c, now, &input.watermark, &st);
        c.enrich(&mut shell, now);
        assert!(shell_ev.is_some());
        // The shell execs python (1 more ring event), then forks a child: the fork arrives
        // before the stage took the exec.
        o.push_fork(fork(101, 100, 3 * MS, 2, true), &mut c, &st);
        assert!(!c.settled(101, 101_000_000_000));
        assert!(c.get(101, 101_000_000_000).is_none(), "not applied yet");
        let mut py = o
            .take(
                exec(100, 1, "/usr/bin/python3", 2 * MS),
                &mut c,
                now,
                &input.watermark,
                &st,
            )
            .unwrap();
        c.enrich(&mut py, now);
        // The child's connect: the fork applies before it, from the python image.
        let mut conn = event(Source::Ebpf, Kind::NetConnect, 101, 4 * MS);
        conn.process.as_mut().unwrap().ppid = 100;
        let mut conn = o.take(conn, &mut c, now, &input.watermark, &st).unwrap();
        c.enrich(&mut conn, now);
        assert_eq!(exe_of(&conn), Some("/usr/bin/python3"));
        let p = conn.process.as_ref().unwrap();
        assert_eq!(p.ppid, 100);
        assert_eq!(p.args().unwrap(), ["/usr/bin/python3", "arg"]);
        assert_eq!(p.ancestors[0].pid, 100);
        for what in ["exe", "argv", "cwd"] {
            assert!(!p.is_incomplete(what), "{:?}", p.incomplete);
        }
        assert_eq!(st.forks_seen.load(Relaxed), 1);
    }

    #[test]
    fn a_file_event_waits_for_the_exec_of_its_process() {
        let (mut c, _d) = cache("hold");
        let (feed, input) = process_feed(4);
        let reader = feed.producer();
        let st = AttribStats::default();
        let mut o = Orderer::new(50);
        let mut out = Vec::new();
        let mut shell = exec(200, 1, "/bin/sh", MS);
        o.take(shell.clone(), &mut c, MS, &input.watermark, &st);
        c.enrich(&mut shell, MS);
        reader.delivered_through(MS, 1);
        // touch wrote /etc/x at 5 ms; its fork (3 ms) and exec (4 ms) are still in the ring.
        let file = event(Source::Fanotify, Kind::File, 201, 5 * MS);
        assert!(o
            .take(file, &mut c, 6 * MS, &input.watermark, &st)
            .is_none());
        o.release(&mut c, 7 * MS, &input.watermark, &st, &mut out);
        assert!(out.is_empty());
        // The drain: the fork, then the exec.
        o.push_fork(fork(201, 200, 3 * MS, 1, true), &mut c, &st);
        o.release(&mut c, 8 * MS, &input.watermark, &st, &mut out);
        assert!(
            out.is_empty(),
            "known from its fork only: the exec may follow"
        );
        let mut touch = exec(201, 200, "/usr/bin/touch", 4 * MS);
        o.take(touch.clone(), &mut c, 8 * MS, &input.watermark, &st);
        c.enrich(&mut touch, 8 * MS);
        o.release(&mut c, 8 * MS, &input.watermark, &st, &mut out);
        assert_eq!(out.len(), 1);
        let mut file = out.pop().unwrap();
        c.enrich(&mut file, 8 * MS);
        assert_eq!(exe_of(&file), Some("/usr/bin/touch"));
        assert_eq!(file.process.as_ref().unwrap().comm, "c");
        assert_eq!(st.held_resolved.load(Relaxed), 1);
    }

    #[test]
    fn a_held_event_leaves_at_the_watermark_or_the_deadline() {
        let (mut c, _d) = cache("deadline");
        let (feed, input) = process_feed(4);
        let reader = feed.producer();
        let st = AttribStats::default();
        let mut o = Orderer::new(50);
        let mut out = Vec::new();
        let a = event(Source::Fanotify, Kind::File, 300, 5 * MS);
        let b = event(Source::Fanotify, Kind::File, 301, 30 * MS);
        assert!(o.take(a, &mut c, 6 * MS, &input.watermark, &st).is_none());
        assert!(o.take(b, &mut c, 31 * MS, &input.watermark, &st).is_none());
        assert_eq!(o.next_deadline(), Some(56 * MS));
        // 56 ms would release `a`; the watermark does it earlier.
        // The ring drained through 10 ms and the stage took all of it: `a` cannot get better.
        reader.delivered_through(10 * MS, 0);
        o.release(&mut c, 32 * MS, &input.watermark, &st, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].process.as_ref().unwrap().pid, 300);
        assert_eq!(st.held_ordered.load(Relaxed), 1);
        out.clear();
        o.release(&mut c, 80 * MS, &input.watermark, &st, &mut out);
        assert!(out.is_empty(), "deadline (31 + 50 ms) not reached");
        o.release(&mut c, 81 * MS, &input.watermark, &st, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(st.held_timed_out.load(Relaxed), 1);
        assert_eq!(st.held.load(Relaxed), 2);
        assert_eq!(o.held_len(), 0);
        // A drain mark counts only once the stage took the events sent before it.
        reader.delivered_through(100 * MS, 5);
        let c2 = event(Source::Fanotify, Kind::File, 302, 90 * MS);
        assert!(o.take(c2, &mut c, 91 * MS, &input.watermark, &st).is_none());
        // Zero wait: nothing is held.
        let mut o0 = Orderer::new(0);
        let d = event(Source::Fanotify, Kind::File, 303, 90 * MS);
        assert!(o0.take(d, &mut c, 91 * MS, &input.watermark, &st).is_some());
    }

    #[test]
    fn the_held_queue_is_bounded() {
        let (mut c, _d) = cache("bound");
        let (feed, input) = process_feed(4);
        let _reader = feed.producer();
        let st = AttribStats::default();
        let mut o = Orderer::new(5_000);
        for i in 0..(MAX_HELD + 10) {
            let ev = event(Source::Fanotify, Kind::File, 400_000 + i as u32, MS);
            assert!(o.take(ev, &mut c, MS, &input.watermark, &st).is_none());
        }
        let mut out = Vec::new();
        o.release(&mut c, MS, &input.watermark, &st, &mut out);
        assert_eq!(out.len(), 10);
        assert_eq!(
            out[0].process.as_ref().unwrap().pid,
            400_000,
            "oldest first"
        );
        assert_eq!(o.held_len(), MAX_HELD);
    }

    #[test]
    fn an_unordered_fork_is_applied_when_an_event_needs_it() {
        let (mut c, _d) = cache("lazy");
        let st = AttribStats::default();
        let mut o = Orderer::new(50);
        // Audit: bash (pid 500) was forked by the test (known from the scan: here, an exec of
        // its parent), then bash forked a subshell (501) before its own exec record arrived.
        let mut parent = exec(499, 1, "/usr/bin/test-runner", MS);
        c.enrich(&mut parent, MS);
        o.push_fork(fork(500, 499, 2 * MS, 0, false), &mut c, &st);
        o.push_fork(fork(501, 500, 4 * MS, 0, false), &mut c, &st);
        let mut bash = exec(500, 499, "/usr/bin/bash", 3 * MS);
        bash.set_source(Source::Audit);
        bash.process.as_mut().unwrap().start_boottime_ns = 0;
        o.prepare(&bash, &mut c, &st);
        c.enrich(&mut bash, 5 * MS);
        // The subshell's file event: its fork is applied now, from bash's new image.
        let mut file = event(Source::Fanotify, Kind::File, 501, 6 * MS);
        o.prepare(&file, &mut c, &st);
        c.enrich(&mut file, 6 * MS);
        assert_eq!(exe_of(&file), Some("/usr/bin/bash"));
        let p = file.process.as_ref().unwrap();
        assert_eq!((p.ppid, p.comm.as_str()), (500, "c"));
        assert_eq!(p.ancestors[0].pid, 500);
        assert_eq!(p.ancestors[1].pid, 499);
        assert_eq!(st.forks_seen.load(Relaxed), 2);
    }

    #[test]
    fn a_fork_notice_after_the_exec_does_not_replace_the_exec_image() {
        let (mut c, _d) = cache("late-fork");
        let st = AttribStats::default();
        let mut o = Orderer::new(50);
        // Audit: sh (600) forked 601, which exec'd bash; the exec record came through the
        // audit socket before the proc connector's fork notice.
        let mut sh = exec(600, 1, "/usr/bin/dash", MS);
        c.enrich(&mut sh, MS);
        let mut bash = exec(601, 600, "/usr/bin/bash", 3 * MS);
        bash.set_source(Source::Audit);
        bash.process.as_mut().unwrap().start_boottime_ns = 0;
        o.prepare(&bash, &mut c, &st);
        c.enrich(&mut bash, 3 * MS);
        o.push_fork(fork(601, 600, 2 * MS, 0, false), &mut c, &st);
        // bash's connect (pid only): the late fork must not bring back sh's image.
        let mut conn = event(Source::Audit, Kind::NetConnect, 601, 4 * MS);
        conn.process.as_mut().unwrap().comm = "bash".into();
        o.prepare(&conn, &mut c, &st);
        c.enrich(&mut conn, 4 * MS);
        assert_eq!(exe_of(&conn), Some("/usr/bin/bash"));
        assert!(
            !conn.process.as_ref().unwrap().is_incomplete("exe"),
            "{:?}",
            conn.process
        );
    }
}
