//! The audit reader thread: datagrams in batches, records grouped by serial into events,
//! the daemon-slot watch, and the counters of what was lost on the way.
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::assemble::{Assembler, Group};
use super::control::{AuditSocket, SetStatus, STATUS_PID};
use super::handover::{self, Dedup, HandoverState};
use super::normalize;
use super::privilege::CredTracker;
use super::record::{self, Record};
use super::session::{nr32, nr64};
use super::socket_types::{self, SocketTypes};
use crate::enrich::cgroup_reads::CgroupReads;
use crate::event::{Event, Kind};
use crate::sources::netlink::RecvBatch;
use crate::sources::nlmsg;
use crate::telemetry::counters::Counters;

use super::source::AuditStats;

const AUDIT_SYSCALL: u16 = 1300;
const AUDIT_REPLACE: u16 = 1329;

pub(super) struct RecordLoop {
    pub(super) assembler: Assembler,
    pub(super) creds: CredTracker,
    pub(super) sockets: Arc<Mutex<SocketTypes>>,
    pub(super) stats: Arc<AuditStats>,
    pub(super) tx: mpsc::Sender<Event>,
    /// Events handled but not sent yet, oldest first (see [`Self::send_pending`]).
    pub(super) pending: Vec<Event>,
    /// When the oldest of `pending` was queued.
    pub(super) pending_since: Option<Instant>,
    /// The socket's receive timeout is [`SEND_HOLD`] (events wait), not the idle one.
    pub(super) short_timeout: bool,
    /// Where each exec's `/proc/<pid>/cgroup` read goes for the process cache.
    pub(super) cgroup_reads: Arc<CgroupReads>,
    /// The pipeline is gone: nothing more is sent.
    pub(super) tx_closed: bool,
    pub(super) counters: Arc<Counters>,
    pub(super) host: String,
    pub(super) argv_bound: usize,
    /// Exits come from the proc connector; exit events derived from audit would be duplicates.
    pub(super) drop_exits: bool,
    pub(super) seen_gaps: u64,
    pub(super) seen_overflows: u64,
    pub(super) seen_timeouts: u64,
    /// Set while the sensor holds the daemon slot: watches for auditd and hands it over.
    pub(super) slot: Option<SlotWatch>,
}

pub(super) struct SlotWatch {
    pub(super) state: Arc<HandoverState>,
    pub(super) dedup: Dedup,
}

/// After a stop request, a reader keeps draining what the kernel already queued, but on a busy
/// host the queue never goes quiet: stop reading after this long regardless.
const STOP_DRAIN: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(super) struct StopDrain {
    deadline: Option<Instant>,
}

impl StopDrain {
    /// True once a stop was requested and the drain period is over.
    pub(super) fn expired(&mut self, stop: &AtomicBool) -> bool {
        if !stop.load(Relaxed) {
            return false;
        }
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + STOP_DRAIN);
        Instant::now() >= deadline
    }
}

/// Datagrams taken per `recvmmsg`, and the size of each slot (the size the control socket
/// receives with; an audit record is at most ~9 KiB).
const BATCH_SLOTS: usize = 32;
const DATAGRAM_MAX: usize = 64 * 1024;

/// Longest an event waits in `pending` for others to go with it to the pipeline task (one
/// wake-up of the task per this many ms at most, instead of one per exec).
const SEND_HOLD: Duration = Duration::from_millis(10);
/// Events that go at once, however young (the pipeline task takes up to 256 per batch).
const SEND_MAX: usize = 256;
/// The socket's receive timeout while nothing waits in `pending`.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_millis(100);

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RecordLoop {
    /// Reads records in batches (`recvmmsg`): what queued while the previous batch was handled
    /// comes in one system call. It never sleeps between batches: the container id of an exec
    /// is read from /proc here while the process lives, so latency costs attribution (see
    /// `docs/ARCHITECTURE.md#audit-netlink`). Events are sent in bursts ([`Self::send_due`]).
    pub(super) fn run(&mut self, mut reader: AuditSocket, stop: &AtomicBool) {
        let mut idle_after_stop = false;
        let mut drain = StopDrain::default();
        let mut batch = RecvBatch::new(BATCH_SLOTS, DATAGRAM_MAX);
        loop {
            if drain.expired(stop) {
                break;
            }
            while let Some(d) = reader.pop_stashed() {
                self.handle_datagram(&d, &mut reader, now_ms());
            }
            self.send_due(&reader);
            match reader.recv_batch(&mut batch) {
                Ok(0) => {
                    let groups = self.assembler.flush_expired(now_ms());
                    self.handle_groups(groups);
                    // Quiet: what waits goes now; with nothing waiting, the idle timeout.
                    if self.pending.is_empty() && self.short_timeout {
                        self.set_timeout(&reader, IDLE_TIMEOUT);
                    }
                    self.send_pending();
                    if stop.load(Relaxed) {
                        if idle_after_stop {
                            break;
                        }
                        idle_after_stop = true;
                    }
                }
                Ok(n) => {
                    // One clock read per batch: its datagrams arrived together.
                    let now = now_ms();
                    for i in 0..n {
                        if let Some(d) = batch.get(i) {
                            self.handle_datagram(d, &mut reader, now);
                        }
                    }
                    self.send_due(&reader);
                }
                Err(e) => {
                    if e.errno() == Some(libc::ENOBUFS) {
                        self.stats.socket_overflows.fetch_add(1, Relaxed);
                        tracing::warn!("audit socket buffer overflowed; records were lost");
                        continue;
                    }
                    tracing::error!(error = %e, "reading audit records failed");
                    std::thread::sleep(Duration::from_millis(100));
                    if stop.load(Relaxed) {
                        break;
                    }
                }
            }
        }
        let groups = self.assembler.flush_all();
        self.handle_groups(groups);
        self.send_pending();
    }

    /// Queues one event for [`Self::send_pending`] (counted now, as it is captured). An exec's
    /// `/proc/<pid>/cgroup` is read here, at the end of its record group, for the process cache:
    /// the event may wait [`SEND_HOLD`] before the pipeline task sees it, the process not.
    fn emit(&mut self, ev: Event) {
        if self.tx_closed {
            return;
        }
        if ev.kind() == Kind::ProcessExec {
            if let Some(p) = ev.process.as_ref().filter(|p| p.pid != 0) {
                self.cgroup_reads
                    .read_now(std::path::Path::new("/proc"), p.pid);
            }
        }
        self.counters.count_event(ev.kind());
        self.pending.push(ev);
        self.pending_since.get_or_insert_with(Instant::now);
    }

    /// After a batch: sends what waits once the oldest has waited [`SEND_HOLD`] (or
    /// [`SEND_MAX`] wait), so the pipeline task wakes once for many events instead of once per
    /// exec (docs/ARCHITECTURE.md, Audit netlink). While events wait, the socket's receive
    /// timeout is `SEND_HOLD`, so a quiet socket does not keep them longer.
    fn send_due(&mut self, reader: &AuditSocket) {
        let Some(since) = self.pending_since else {
            return;
        };
        if self.pending.len() >= SEND_MAX || since.elapsed() >= SEND_HOLD {
            self.send_pending();
        } else if !self.short_timeout {
            self.set_timeout(reader, SEND_HOLD);
        }
    }

    fn set_timeout(&mut self, reader: &AuditSocket, t: Duration) {
        match reader.set_timeout(t) {
            Ok(()) => self.short_timeout = t == SEND_HOLD,
            Err(e) => tracing::warn!(error = %e, "audit reader timeout"),
        }
    }

    /// Sends every waiting event, back to back: the pipeline task finds them all in the
    /// channel. A closed channel stops sending.
    fn send_pending(&mut self) {
        self.pending_since = None;
        for ev in self.pending.drain(..) {
            if self.tx_closed || self.tx.blocking_send(ev).is_err() {
                self.tx_closed = true;
            }
        }
    }

    /// While we hold the daemon slot: auditd's exec (or a refused claim of the slot) hands it
    /// over: join the multicast group on this socket first, then release the slot, then drop
    /// the second copies for a while (docs/ARCHITECTURE.md, Audit netlink).
    fn watch_for_auditd(&mut self, rec: &Record, reader: &mut AuditSocket) {
        let Some(w) = self.slot.as_mut() else {
            return;
        };
        if w.state.happened() {
            return;
        }
        let Some(pid) = handover::auditd_exec(rec).or_else(|| handover::failed_pid_claim(rec))
        else {
            return;
        };
        w.state.at_ms.store(now_ms(), Relaxed);
        w.state.to_pid.store(pid, Relaxed);
        let joined = reader.join_multicast();
        match &joined {
            Ok(()) => w.dedup.start(u64::MAX),
            Err(e) => {
                w.state.multicast_failed.store(true, Relaxed);
                tracing::error!(error = %e, auditd_pid = pid, "auditd is starting and the audit multicast group cannot be joined: handing it the daemon slot; audit capture stops");
            }
        }
        let release = reader.set(SetStatus {
            mask: STATUS_PID,
            pid: 0,
            ..SetStatus::default()
        });
        if let Err(e) = &release {
            w.state.release_failed.store(true, Relaxed);
            tracing::error!(error = %e, auditd_pid = pid, "releasing the audit daemon slot for auditd failed");
        }
        // The request set its own timeout: back to the idle one (`send_due` shortens it again
        // while events wait).
        if let Err(e) = reader.set_timeout(IDLE_TIMEOUT) {
            tracing::warn!(error = %e, "audit reader timeout");
        }
        if joined.is_ok() {
            w.dedup.start(now_ms() + handover::DEDUP_WINDOW_MS);
        }
        if joined.is_ok() && release.is_ok() {
            tracing::warn!(auditd_pid = pid, "auditd is starting: handed it the audit daemon slot; reading the audit multicast group beside it from now on");
        }
        self.short_timeout = false;
    }

    fn handle_datagram(&mut self, datagram: &[u8], reader: &mut AuditSocket, now: u64) {
        let Ok(msg) = nlmsg::record(datagram) else {
            self.stats.parse_errors.fetch_add(1, Relaxed);
            return;
        };
        // Control replies and non-record messages (< 1100) are not part of the log, nor is
        // AUDIT_REPLACE (1329): the kernel's binary "are you alive" probe to the daemon.
        if msg.msg_type < 1100 || msg.msg_type == AUDIT_REPLACE {
            return;
        }
        if let Some(w) = self.slot.as_mut() {
            if w.dedup.active() && !w.dedup.fresh(msg.msg_type, msg.payload, now) {
                w.state.duplicates_dropped.fetch_add(1, Relaxed);
                return;
            }
        }
        match record::parse(msg.msg_type, msg.payload) {
            Ok(rec) => {
                self.watch_for_auditd(&rec, reader);
                let groups = self.assembler.push(rec, now);
                self.handle_groups(groups);
            }
            Err(e) => {
                let n = self.stats.parse_errors.fetch_add(1, Relaxed);
                if n < 10 {
                    tracing::warn!(error = %e, msg_type = msg.msg_type, "malformed audit record skipped");
                }
            }
        }
    }

    fn sync_assembler_stats(&mut self) {
        let s = self.assembler.stats();
        let gaps = s.serial_gaps;
        self.stats
            .serial_gaps
            .fetch_add(gaps.saturating_sub(self.seen_gaps), Relaxed);
        self.seen_gaps = gaps;
        let o = s.overflow_flushes;
        self.stats
            .group_overflows
            .fetch_add(o.saturating_sub(self.seen_overflows), Relaxed);
        self.seen_overflows = o;
        let t = s.timeouts;
        self.stats
            .group_timeouts
            .fetch_add(t.saturating_sub(self.seen_timeouts), Relaxed);
        self.seen_timeouts = t;
    }

    fn handle_groups(&mut self, groups: Vec<Group>) {
        if groups.is_empty() || self.tx_closed {
            return;
        }
        self.sync_assembler_stats();
        for g in groups {
            if g.records.iter().any(|r| matches!(r.rtype, 1100 | 1105)) {
                let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
                if let Some(ev) = super::pam::to_event(&g, &self.host, &passwd) {
                    self.emit(ev);
                }
                continue;
            }
            if let Some(ev) = self.creds.observe(&g, &self.host) {
                self.emit(ev);
            }
            if self.learn_socket(&g) {
                continue;
            }
            let sockets = self.sockets.clone();
            let resolver = move |pid: u32, fd: i32| -> Option<u16> {
                let known = sockets.lock().ok().and_then(|s| s.get(pid, fd));
                known.or_else(|| socket_types::from_proc(pid, fd))
            };
            for ev in normalize::to_events_bounded(&g, &self.host, &resolver, self.argv_bound) {
                if self.drop_exits && ev.kind() == Kind::ProcessExit {
                    continue;
                }
                self.emit(ev);
            }
        }
    }

    /// A successful socket(2) group: remember the fd's type. Returns true if it was one.
    fn learn_socket(&self, g: &Group) -> bool {
        let Some(sys) = g.records.iter().find(|r| r.rtype == AUDIT_SYSCALL) else {
            return false;
        };
        let [syscall, arch, a0, a1, pid, exit] =
            sys.get_many(["syscall", "arch", "a0", "a1", "pid", "exit"]);
        let syscall = record::dec::<u64>(syscall);
        let arch32 = arch.is_some_and(|a| a.eq_ignore_ascii_case(b"40000003"));
        let is_socket = match syscall {
            Some(n) if !arch32 => n == u64::from(nr64::SOCKET),
            Some(n) => n == u64::from(nr32::SOCKET),
            None => false,
        };
        if !is_socket {
            return false;
        }
        // The socket rules let a few rare families through beside AF_INET and AF_INET6.
        if !record::hex_u64(a0).is_some_and(super::session::internet_family) {
            return true;
        }
        let (Some(pid), Some(fd)) = (record::dec::<u64>(pid), record::dec::<i64>(exit)) else {
            return true;
        };
        let ty = a1
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| u64::from_str_radix(a, 16).ok());
        if let (true, Some(ty)) = (fd >= 0, ty) {
            if let Ok(mut s) = self.sockets.lock() {
                // SOCK_NONBLOCK / SOCK_CLOEXEC are flag bits above the type.
                s.insert(pid as u32, fd as i32, (ty & 0xf) as u16);
            }
        }
        true
    }
}
