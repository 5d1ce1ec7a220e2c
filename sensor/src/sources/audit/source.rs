//! The audit capture path: one thread reads audit records and assembles them into events, one
//! reads process exits from the proc connector, and one checks the kernel's loss counter and
//! our rules. All three send normalized events into the same bounded channel as eBPF mode.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::assemble::Assembler;
use super::control::AuditSocket;
use super::handover::{Dedup, HandoverState};
use super::privilege::CredTracker;
use super::proc_connector::{self, ProcConnector};
use super::record_loop::{self, now_ms, StopDrain};
use super::session::{AuditSession, Role, SessionError};
use super::socket_types::SocketTypes;
use crate::config::Config;
use crate::event::{Event, Kind, Process, Source};
use crate::sources::kernel_values::exit_status;
use crate::sources::netlink::RecvBatch;
use crate::sources::source::{stop_blocking, SourceEnv, StartError, StopFuture};
use crate::sources::SourceCtx;
use crate::telemetry::counters::Counters;
use crate::telemetry::fields::Telemetry;
use crate::timefmt::Clocks;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Key tagging the sensor's audit rules (only rules with this key are ever removed).
    pub rule_key: String,
    /// Kernel backlog of records waiting for the reader; raised to at least this.
    pub backlog_limit: u32,
    /// Records of one event without an EOE are flushed after this long.
    pub group_timeout_ms: u64,
    /// Events being assembled at once; beyond it the oldest is flushed (counted).
    pub max_open_groups: usize,
    /// Seconds between checks of the kernel's lost counter and of our rules.
    pub check_interval_secs: u64,
    /// Exits from the proc connector arrive before kauditd delivers the same process's exec
    /// and connect records; holding them this long keeps each process's events in order.
    pub exit_delay_ms: u64,
    /// The argv bound, copied from `sensor.argv_max_bytes` (one setting for both modes).
    #[serde(skip)]
    pub argv_bound: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            rule_key: "sensor".into(),
            backlog_limit: 8192,
            group_timeout_ms: 500,
            max_open_groups: 4096,
            check_interval_secs: 5,
            exit_delay_ms: 300,
            argv_bound: crate::sources::argv::DEFAULT_BOUND,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditSourceError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("audit socket: {0}")]
    Control(#[from] super::control::ControlError),
    #[error("spawning a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Loss and repair counters of the audit path, reported in `sensor_health`.
#[derive(Debug, Default)]
pub struct AuditStats {
    pub kernel_lost: AtomicU64,
    pub serial_gaps: AtomicU64,
    pub group_overflows: AtomicU64,
    pub group_timeouts: AtomicU64,
    pub parse_errors: AtomicU64,
    pub socket_overflows: AtomicU64,
    pub proc_connector_overflows: AtomicU64,
    pub rules_repaired: AtomicU64,
    pub registration_lost: AtomicU64,
}

/// The audit path's counters and the daemon-slot handover, as health reports them.
pub struct AuditHealth {
    pub stats: Arc<AuditStats>,
    pub handover: Arc<HandoverState>,
}

/// A running audit capture. `stop` drains, removes our rules and restores the audit state.
pub struct AuditCapture {
    pub role: Role,
    /// The arrangement in words (daemon slot, multicast beside auditd, slot left free).
    pub arrangement: String,
    /// The daemon-slot handover, if one happened (live part of the health reason).
    pub handover: Arc<HandoverState>,
    /// What this kernel's audit cannot see (named in the health reason).
    pub blind_spots: Vec<String>,
    pub exits_from_proc_connector: bool,
    pub stats: Arc<AuditStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl AuditCapture {
    /// `feed` receives the proc connector's fork notices (new processes for the cache).
    pub fn start(
        cfg: &AuditConfig,
        ctx: SourceCtx,
        feed: &crate::enrich::ProcessFeed,
    ) -> Result<Self, AuditSourceError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(AuditStats::default());
        let sockets = Arc::new(Mutex::new(SocketTypes::new(65_536)));
        let clocks = Clocks::now();

        // Exits: the proc connector reports every death with its status, including signals.
        let proc_conn = match ProcConnector::open(Duration::from_millis(200)) {
            Ok(pc) => Some(pc),
            Err(e) => {
                tracing::warn!(error = %e, "proc connector unavailable; exits come from audit exit_group records (deaths by signal are not seen)");
                None
            }
        };
        let mut reader = AuditSocket::open()?;
        let session = AuditSession::start(
            &mut reader,
            &cfg.rule_key,
            cfg.backlog_limit,
            proc_conn.is_none(),
        )?;
        let role = session.role;
        let arrangement = session.arrangement.clone();
        let handover = session.handover.clone();
        let blind_spots = session.blind_spots.clone();
        if let Role::Multicast { daemon_pid } = role {
            tracing::warn!(daemon_pid, "another audit daemon holds the audit pid; reading the multicast log group alongside it");
            reader = AuditSocket::open_multicast()?;
        }
        reader.set_timeout(record_loop::IDLE_TIMEOUT)?;

        let mut threads = Vec::new();
        let exits_from_proc_connector = proc_conn.is_some();
        if let Some(pc) = proc_conn {
            let (stop, stats, sockets, tx, counters, host) = (
                stop.clone(),
                stats.clone(),
                sockets.clone(),
                ctx.tx.clone(),
                ctx.counters.clone(),
                ctx.host.clone(),
            );
            let delay = Duration::from_millis(cfg.exit_delay_ms);
            let feed = feed.producer();
            threads.push(
                std::thread::Builder::new()
                    .name("proc-connector".into())
                    .spawn(move || {
                        let out = ExitOut {
                            tx: &tx,
                            counters: &counters,
                            host: &host,
                            clocks,
                            feed: &feed,
                        };
                        exit_loop(pc, delay, &stop, &stats, &sockets, &out)
                    })
                    .map_err(AuditSourceError::Thread)?,
            );
        }
        {
            let (stop, stats, tx, counters, host, cfg) = (
                stop.clone(),
                stats.clone(),
                ctx.tx.clone(),
                ctx.counters.clone(),
                ctx.host.clone(),
                cfg.clone(),
            );
            let drop_exits = exits_from_proc_connector;
            let cgroup_reads = feed.cgroup_reads.clone();
            let slot = (role == Role::Daemon).then(|| record_loop::SlotWatch {
                state: handover.clone(),
                dedup: Dedup::default(),
            });
            threads.push(
                std::thread::Builder::new()
                    .name("audit-reader".into())
                    .spawn(move || {
                        let mut r = record_loop::RecordLoop {
                            assembler: Assembler::new(cfg.max_open_groups, cfg.group_timeout_ms),
                            creds: CredTracker::new(65_536),
                            sockets,
                            stats,
                            tx,
                            pending: Vec::new(),
                            pending_since: None,
                            short_timeout: false,
                            cgroup_reads,
                            tx_closed: false,
                            counters,
                            host,
                            argv_bound: cfg.argv_bound,
                            drop_exits,
                            seen_gaps: 0,
                            seen_overflows: 0,
                            seen_timeouts: 0,
                            slot,
                        };
                        r.run(reader, &stop);
                    })
                    .map_err(AuditSourceError::Thread)?,
            );
        }
        {
            let (stop, stats) = (stop.clone(), stats.clone());
            let interval = Duration::from_secs(cfg.check_interval_secs.max(1));
            threads.push(
                std::thread::Builder::new()
                    .name("audit-control".into())
                    .spawn(move || control_loop(session, interval, &stop, &stats))
                    .map_err(AuditSourceError::Thread)?,
            );
        }
        Ok(Self {
            role,
            arrangement,
            handover,
            blind_spots,
            exits_from_proc_connector,
            stats,
            stop,
            threads,
        })
    }

    /// Drains what the kernel already queued, restores the audit state, joins the threads.
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl crate::sources::Source for AuditCapture {
    fn enabled(_: &Config) -> bool {
        true
    }

    fn start(cfg: &Config, env: &SourceEnv) -> Result<Self, StartError> {
        let audit_cfg = AuditConfig {
            argv_bound: cfg.sensor.argv_max_bytes as usize,
            ..cfg.audit.clone()
        };
        Ok(AuditCapture::start(&audit_cfg, env.ctx(), &env.feed)?)
    }

    /// The arrangement, what this kernel's audit cannot see, and where exits come from.
    fn reason(&self) -> Option<String> {
        let mut note = self.arrangement.clone();
        for b in &self.blind_spots {
            note.push_str(&format!("; blind spot: {b}"));
        }
        if !self.exits_from_proc_connector {
            note.push_str(
                "; proc connector unavailable: exits from exit_group only, deaths by signal not seen",
            );
        }
        Some(note)
    }

    fn stats(&self) -> Arc<dyn Telemetry> {
        Arc::new(AuditHealth {
            stats: self.stats.clone(),
            handover: self.handover.clone(),
        })
    }

    fn stop(self: Box<Self>) -> StopFuture {
        stop_blocking(move || AuditCapture::stop(*self))
    }
}

fn control_loop(
    mut session: AuditSession,
    interval: Duration,
    stop: &AtomicBool,
    stats: &AuditStats,
) {
    let mut next = Instant::now() + interval;
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        // For a while after a handover, auditd loads its rule file (often starting with
        // `-D`, delete all): check every tick so our rules come back at once.
        let at = session.handover.at_ms.load(Relaxed);
        let recent = session.handover.happened() && now_ms().saturating_sub(at) < 30_000;
        if Instant::now() < next && !recent {
            continue;
        }
        next = Instant::now() + interval;
        match session.check() {
            Ok(r) => {
                stats.kernel_lost.fetch_add(r.lost_delta, Relaxed);
                if r.rules_repaired > 0 {
                    tracing::warn!(
                        repaired = r.rules_repaired,
                        "sensor audit rules were removed by someone else; added them back"
                    );
                    stats.rules_repaired.fetch_add(r.rules_repaired, Relaxed);
                }
                if r.lost_registration {
                    stats.registration_lost.fetch_add(1, Relaxed);
                    tracing::error!("the kernel no longer sends audit records to the sensor (another daemon registered?)");
                }
            }
            Err(e) => tracing::warn!(error = %e, "audit status check failed"),
        }
    }
    // Final loss figure, then leave the host as we found it.
    if let Ok(r) = session.check() {
        stats.kernel_lost.fetch_add(r.lost_delta, Relaxed);
    }
    if let Err(e) = session.restore() {
        tracing::error!(error = %e, "restoring the audit state failed");
    } else {
        tracing::info!("audit rules removed and audit state restored");
    }
}

/// Where the proc-connector thread sends exits (events) and forks (the process feed).
struct ExitOut<'a> {
    tx: &'a mpsc::Sender<Event>,
    counters: &'a Counters,
    host: &'a str,
    clocks: Clocks,
    feed: &'a crate::enrich::ProcessFeed,
}

/// A new process from a proc-connector fork notice: pids only (the cache copies the rest
/// from the parent), no start time (the child may already be gone).
fn fork_start(n: &proc_connector::ForkNotice) -> crate::enrich::ProcessStart {
    crate::enrich::ProcessStart {
        ktime_ns: n.timestamp_ns,
        after_events: 0,
        in_order: false,
        process: Process {
            pid: n.child_tgid,
            ppid: n.parent_tgid,
            ..Process::default()
        },
    }
}

/// Proc-connector notices taken per `recvmmsg`, and the size of each slot (a notice is 76
/// bytes with its netlink and connector headers).
const PROC_BATCH_SLOTS: usize = 64;
const PROC_DATAGRAM_MAX: usize = 512;
/// Pause after a batch that did not fill every slot, so the next one carries more.
const PROC_PAUSE: Duration = Duration::from_millis(10);
/// How long past `exit_delay_ms` an exit may wait so that exits are released together.
const EXIT_COALESCE: Duration = Duration::from_millis(50);

fn exit_loop(
    mut pc: ProcConnector,
    delay: Duration,
    stop: &AtomicBool,
    stats: &AuditStats,
    sockets: &Mutex<SocketTypes>,
    out: &ExitOut<'_>,
) {
    let ExitOut {
        tx,
        counters,
        host,
        clocks,
        feed,
    } = out;
    let mut idle_after_stop = false;
    let mut drain = StopDrain::default();
    let mut batch = RecvBatch::new(PROC_BATCH_SLOTS, PROC_DATAGRAM_MAX);
    // Exits held back for `delay` (reorder window), oldest first.
    let mut held: std::collections::VecDeque<(Instant, Event)> = std::collections::VecDeque::new();
    let release = |held: &mut std::collections::VecDeque<(Instant, Event)>, all: bool| -> bool {
        // Exits leave in bursts: only once the oldest has waited `delay` plus the coalescing
        // window, then every one that has waited `delay`. One wake-up of the stages downstream
        // then carries many exits instead of one each (docs/ARCHITECTURE.md, Audit netlink).
        if !all
            && held
                .front()
                .is_none_or(|(at, _)| at.elapsed() < delay + EXIT_COALESCE)
        {
            return true;
        }
        while let Some((at, _)) = held.front() {
            if !all && at.elapsed() < delay {
                break;
            }
            let Some((_, ev)) = held.pop_front() else {
                break;
            };
            // Forget the process's sockets only now, not when the exit notice arrives: its last
            // audit groups (a connect whose socket type was learned) can still be queued in
            // kauditd then, and would be reported with protocol "unknown".
            if let (Some(p), Ok(mut s)) = (ev.process.as_ref(), sockets.lock()) {
                s.forget_pid(p.pid);
            }
            counters.count_event(ev.kind());
            if tx.blocking_send(ev).is_err() {
                return false;
            }
        }
        true
    };
    loop {
        if !release(&mut held, false) {
            return;
        }
        if drain.expired(stop) {
            release(&mut held, true);
            return;
        }
        // Nothing queued when a receive times out: every fork before it was sent.
        let before_recv = crate::timefmt::monotonic_now_ns();
        let n = match pc.recv_batch(&mut batch) {
            Ok(0) => {
                feed.delivered_through(before_recv, 0);
                if stop.load(Relaxed) {
                    if idle_after_stop {
                        release(&mut held, true);
                        return;
                    }
                    idle_after_stop = true;
                }
                continue;
            }
            Ok(n) => n,
            Err(e) => {
                if matches!(&e, proc_connector::ProcConnError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOBUFS))
                {
                    stats.proc_connector_overflows.fetch_add(1, Relaxed);
                    tracing::warn!(
                        "proc connector buffer overflowed; exit notifications were lost"
                    );
                    continue;
                }
                tracing::error!(error = %e, "proc connector read failed");
                if stop.load(Relaxed) {
                    release(&mut held, true);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        for d in (0..n).filter_map(|i| batch.get(i)) {
            if let Some(f) = proc_connector::parse_fork(d) {
                if f.is_process() && !feed.fork_blocking(fork_start(&f)) {
                    return;
                }
                continue;
            }
            // One exit per process: the thread-group leader's.
            if let Some(n) = proc_connector::parse(d).filter(|n| n.pid == n.tgid) {
                held.push_back((Instant::now(), exit_event(&n, host, clocks)));
            }
        }
        // Let notices queue up rather than wake for each fork and exit: exits wait
        // `exit_delay_ms` anyway, and a fork only has to reach the cache before an event of
        // the child is enriched, which waits `enrich.process_wait_ms` for it
        // (docs/ARCHITECTURE.md, Audit netlink).
        if !batch.full() && !stop.load(Relaxed) {
            std::thread::sleep(PROC_PAUSE);
        }
    }
}

/// A `process_exit` from a proc-connector notice: pid and ppid only. The notice is read
/// after the parent has usually reaped the task already, so /proc is not asked; the process
/// cache names the process (comm, ids) from its exec or fork (docs/ARCHITECTURE.md, Audit
/// netlink).
fn exit_event(n: &proc_connector::ExitNotice, host: &str, clocks: &Clocks) -> Event {
    let mut p = Process {
        pid: n.tgid,
        ppid: n.parent_tgid,
        ..Process::default()
    };
    p.incomplete.push("process".into());
    let time = clocks.monotonic_to_unix(n.timestamp_ns);
    let mut ev = Event::new(Kind::ProcessExit, Source::Audit, time, host);
    ev.process = Some(p);
    ev.exit = Some(exit_status(n.exit_code));
    ev.ktime_ns = Some(n.timestamp_ns);
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_event_from_notice() {
        let n = proc_connector::ExitNotice {
            timestamp_ns: 0,
            pid: u32::MAX - 1,
            tgid: u32::MAX - 1,
            exit_code: 9,
            exit_signal: 17,
            parent_tgid: 1,
        };
        let ev = exit_event(
            &n,
            "h",
            &Clocks {
                mono_to_unix: 0,
                boot_to_unix: 0,
            },
        );
        assert_eq!(ev.exit.as_ref().unwrap().signal, Some(9));
        assert_eq!(ev.process.as_ref().unwrap().incomplete, vec!["process"]);
        assert_eq!(ev.source(), Source::Audit);
    }
}
