//! The conntrack capture (thin, kernel-facing): one thread reads ctnetlink event multicasts
//! from a `NETLINK_NETFILTER` socket bound to `NF_NETLINK_CONNTRACK_NEW | _DESTROY` and sends
//! `flow` events into the bounded channel. A full socket buffer (`ENOBUFS`) means the kernel
//! dropped events: counted as `conntrack_socket_overflows`. A datagram another socket sent
//! (not the kernel) is skipped on every NETLINK_NETFILTER socket of the sensor (capture,
//! tracking table, rule dump) and counted as `conntrack_netlink_forged`.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::msg::{self, CtEvent};
use super::tracking_table::{TableError, TrackingTable};
use super::ConntrackConfig;
use crate::config::Config;
use crate::event::{Event, Flow, Kind, Source};
use crate::sources::netlink::NetlinkSocket;
use crate::sources::source::{stop_blocking, SourceEnv, StartError, StopFuture};
use crate::sources::SourceCtx;
use crate::telemetry::fields::Telemetry;
use crate::timefmt::{monotonic_now_ns, unix_now_ns};

pub const NETLINK_NETFILTER: i32 = 12;
/// Legacy group bits for `bind` (NFNLGRP_CONNTRACK_NEW = 1, _UPDATE = 2, _DESTROY = 3).
pub const NF_NETLINK_CONNTRACK_NEW: u32 = 0x0000_0001;
pub const NF_NETLINK_CONNTRACK_UPDATE: u32 = 0x0000_0002;
pub const NF_NETLINK_CONNTRACK_DESTROY: u32 = 0x0000_0004;

/// How long `stop` keeps draining queued events before giving up.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("tracking table: {0}")]
    Table(#[from] TableError),
    #[error("spawning a thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl ConntrackError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            ConntrackError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> ConntrackError {
    move |source| ConntrackError::Io { op, source }
}

/// Datagrams from another socket skipped on the sensor's NETLINK_NETFILTER sockets
/// (reported as `conntrack_netlink_forged`): one counter for all of them, as the tracking
/// table's and the probe's sockets come and go.
pub static NETLINK_FORGED: AtomicU64 = AtomicU64::new(0);

/// A raw `NETLINK_NETFILTER` socket (shared with the tracking table and the probe).
pub struct NfnlSocket {
    sock: NetlinkSocket,
}

impl NfnlSocket {
    /// Opens a socket bound to the legacy multicast `groups` bitmask (0 for requests only).
    pub fn open(groups: u32) -> Result<Self, ConntrackError> {
        let mut sock = NetlinkSocket::open(libc::SOCK_RAW, NETLINK_NETFILTER, groups, 256 * 1024)
            .map_err(io("socket(NETLINK_NETFILTER)"))?;
        sock.count_forged_in(&NETLINK_FORGED);
        Ok(Self { sock })
    }

    /// Asks for a receive buffer of `bytes` (SO_RCVBUFFORCE when privileged).
    pub fn set_rcvbuf(&self, bytes: u32) {
        self.sock.set_rcvbuf(bytes);
    }

    pub fn set_timeout(&self, timeout: Duration) -> Result<(), ConntrackError> {
        self.sock
            .set_timeout(timeout)
            .map_err(io("setsockopt(SO_RCVTIMEO)"))
    }

    /// Sends one datagram to the kernel.
    pub fn send(&self, datagram: &[u8]) -> Result<(), ConntrackError> {
        self.sock
            .send(datagram)
            .map_err(io("sendto(NETLINK_NETFILTER)"))
    }

    /// One datagram the kernel sent (others are skipped and counted in [`NETLINK_FORGED`]);
    /// `Ok(None)` on timeout. `ENOBUFS` (lost multicasts) is returned as an error.
    pub fn recv(&mut self) -> Result<Option<&[u8]>, ConntrackError> {
        self.sock.recv().map_err(io("recv(NETLINK_NETFILTER)"))
    }
}

/// Counters of the conntrack path, reported in `sensor_health`.
#[derive(Debug, Default)]
pub struct ConntrackStats {
    pub new: AtomicU64,
    pub destroy: AtomicU64,
    /// Loopback flows skipped because `include_loopback = false`.
    pub loopback_skipped: AtomicU64,
    /// `ENOBUFS` on the socket: the kernel dropped events (how many is unknown).
    pub socket_overflows: AtomicU64,
    pub parse_errors: AtomicU64,
    /// Flow events not delivered because the pipeline was gone (at shutdown).
    pub channel_closed: AtomicU64,
    /// 1 while the sensor's own tracking table is installed.
    pub tracking_table: AtomicU64,
}

/// A running conntrack capture. `stop` drains what is queued and removes the tracking table.
pub struct ConntrackCapture {
    pub stats: Arc<ConntrackStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    table: Option<TrackingTable>,
}

impl ConntrackCapture {
    /// Subscribes to new/destroy events (needs CAP_NET_ADMIN), then adds the tracking table if
    /// `cfg.add_tracking_table`. Whether events will actually arrive depends on the host's
    /// ruleset: see [`super::events_will_flow`].
    pub fn start(cfg: &ConntrackConfig, ctx: SourceCtx) -> Result<Self, ConntrackError> {
        let sock = NfnlSocket::open(NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_DESTROY)?;
        sock.set_rcvbuf(cfg.receive_buffer_bytes);
        sock.set_timeout(Duration::from_millis(100))?;
        let stats = Arc::new(ConntrackStats::default());
        let table = if cfg.add_tracking_table {
            let t = TrackingTable::add(super::tracking_table::TABLE_NAME)?;
            tracing::info!(
                table = super::tracking_table::TABLE_NAME,
                owned = t.owned(),
                "added the conntrack tracking table (removed on exit)"
            );
            stats.tracking_table.store(1, Relaxed);
            Some(t)
        } else {
            None
        };
        let stop = Arc::new(AtomicBool::new(false));
        let include_loopback = cfg.include_loopback;
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("conntrack".into())
                .spawn(move || read_loop(sock, &stop, &stats, &ctx, include_loopback))
                .map_err(ConntrackError::Thread)?
        };
        Ok(Self {
            stats,
            stop,
            thread: Some(thread),
            table,
        })
    }

    /// Drains queued events (bounded), joins the reader and removes the tracking table.
    pub fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.table.take() {
            match t.remove() {
                Ok(()) => tracing::info!("conntrack tracking table removed"),
                Err(e) => {
                    tracing::error!(error = %e, "removing the conntrack tracking table failed")
                }
            }
            self.stats.tracking_table.store(0, Relaxed);
        }
    }
}

impl Drop for ConntrackCapture {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // `TrackingTable`'s own Drop removes the table.
    }
}

fn read_loop(
    mut sock: NfnlSocket,
    stop: &AtomicBool,
    stats: &ConntrackStats,
    ctx: &SourceCtx,
    include_loopback: bool,
) {
    let mut stop_seen: Option<Instant> = None;
    loop {
        if stop.load(Relaxed) {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if since.elapsed() > DRAIN_LIMIT {
                return;
            }
        }
        let parsed = match sock.recv() {
            Ok(Some(buf)) => msg::parse_datagram(buf),
            Ok(None) => {
                if stop_seen.is_some() {
                    return;
                }
                continue;
            }
            Err(e) if e.errno() == Some(libc::ENOBUFS) => {
                let n = stats.socket_overflows.fetch_add(1, Relaxed);
                if n < 10 || n.is_power_of_two() {
                    tracing::warn!(
                        overflows = n + 1,
                        "conntrack socket buffer overflowed; flow events were lost"
                    );
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading conntrack events failed");
                if stop.load(Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let mono = monotonic_now_ns();
        let unix = unix_now_ns();
        for r in parsed {
            let ct = match r {
                Ok(ct) => ct,
                Err(e) => {
                    let n = stats.parse_errors.fetch_add(1, Relaxed);
                    if n < 10 {
                        tracing::warn!(error = %e, "malformed conntrack message skipped");
                    }
                    continue;
                }
            };
            if !include_loopback && ct.orig.src.is_loopback() && ct.orig.dst.is_loopback() {
                stats.loopback_skipped.fetch_add(1, Relaxed);
                continue;
            }
            match ct.event {
                msg::CtEventType::New => stats.new.fetch_add(1, Relaxed),
                msg::CtEventType::Destroy => stats.destroy.fetch_add(1, Relaxed),
                msg::CtEventType::Update => 0,
            };
            let ev = flow_event(&ct, &ctx.host, unix, mono);
            ctx.counters.count_event(ev.kind());
            if ctx.tx.blocking_send(ev).is_err() {
                stats.channel_closed.fetch_add(1, Relaxed);
                return;
            }
        }
    }
}

/// The `flow` event of a conntrack event, from the originating direction's point of view:
/// `src` is the initiator; `bytes_out`/`packets_out` are the original direction's counters
/// (initiator -> responder), `*_in` the reply direction's. The kernel sends counters with
/// DESTROY only (final totals), and only when `nf_conntrack_acct = 1`; otherwise they are
/// null. `state` is `new` or `destroy`.
pub fn flow_event(ct: &CtEvent, host: &str, unix_ns: i64, mono_ns: u64) -> Event {
    let o = &ct.orig;
    let mut ev = Event::new(Kind::Flow, Source::Conntrack, unix_ns, host);
    ev.ktime_ns = Some(mono_ns);
    ev.flow = Some(Flow {
        protocol: msg::proto_name(o.proto),
        src_addr: o.src.to_string(),
        src_port: u32::from(o.src_port.unwrap_or(0)),
        dst_addr: o.dst.to_string(),
        dst_port: u32::from(o.dst_port.unwrap_or(0)),
        state: ct.event.as_str().to_string(),
        bytes_in: ct.counters_reply.map(|c| c.bytes),
        bytes_out: ct.counters_orig.map(|c| c.bytes),
        packets_in: ct.counters_reply.map(|c| c.packets),
        packets_out: ct.counters_orig.map(|c| c.packets),
    });
    ev
}

impl crate::sources::Source for ConntrackCapture {
    fn enabled(cfg: &Config) -> bool {
        cfg.conntrack.enabled
    }

    fn start(cfg: &Config, env: &SourceEnv) -> Result<Self, StartError> {
        let (will, why) = super::probe().will_flow(cfg.conntrack.add_tracking_table);
        if !will {
            tracing::warn!(reason = %why, "conntrack enabled but flow events may not arrive");
        }
        let c = ConntrackCapture::start(&cfg.conntrack, env.ctx())?;
        tracing::info!("conntrack flows enabled");
        Ok(c)
    }

    fn stats(&self) -> Arc<dyn Telemetry> {
        self.stats.clone()
    }

    fn stop(mut self: Box<Self>) -> StopFuture {
        stop_blocking(move || ConntrackCapture::stop(&mut self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::conntrack::msg::build::*;
    use crate::sources::conntrack::msg::*;
    use std::net::IpAddr;

    /// A conntrack event another socket sends to a NETLINK_NETFILTER socket of the sensor is
    /// skipped, counted and reported in health as `conntrack_netlink_forged`.
    #[test]
    fn forged_datagrams_are_skipped_and_counted() {
        use crate::telemetry::fields::{HealthFields, Telemetry};
        let Ok(mut sock) = NfnlSocket::open(0) else {
            eprintln!("skipped: no NETLINK_NETFILTER socket here");
            return;
        };
        sock.set_timeout(Duration::from_millis(50)).unwrap();
        let s: IpAddr = "10.0.0.1".parse().unwrap();
        let forged = message(
            IPCTNL_MSG_CT_NEW,
            NLM_F_CREATE,
            AF_INET,
            &[tuple(CTA_TUPLE_ORIG, s, s, IPPROTO_TCP, 1, 2)],
        );
        let before = NETLINK_FORGED.load(Relaxed);
        if !crate::sources::netlink::send_forged(&sock.sock, NETLINK_NETFILTER, &forged) {
            return;
        }
        assert!(sock.recv().unwrap().is_none(), "skipped, then the timeout");
        assert_eq!(NETLINK_FORGED.load(Relaxed), before + 1);
        let mut health = HealthFields::default();
        ConntrackStats::default().report(&mut health);
        assert!(health.events["conntrack_netlink_forged"] > before);
    }

    #[test]
    fn flow_from_destroy_with_counters() {
        let s: IpAddr = "127.0.0.1".parse().unwrap();
        let d: IpAddr = "127.0.0.2".parse().unwrap();
        let m = message(
            IPCTNL_MSG_CT_DELETE,
            0,
            AF_INET,
            &[
                tuple(CTA_TUPLE_ORIG, s, d, IPPROTO_TCP, 5000, 80),
                tuple(CTA_TUPLE_REPLY, d, s, IPPROTO_TCP, 80, 5000),
                counters(CTA_COUNTERS_ORIG, 6, 400),
                counters(CTA_COUNTERS_REPLY, 5, 9000),
            ],
        );
        let ct = parse_datagram(&m).remove(0).unwrap();
        let ev = flow_event(&ct, "h", 1_700_000_000_000_000_000, 5);
        assert_eq!(ev.kind(), Kind::Flow);
        assert_eq!(ev.source(), Source::Conntrack);
        let f = ev.msg.flow.unwrap();
        assert_eq!(
            f,
            Flow {
                protocol: "tcp".into(),
                src_addr: "127.0.0.1".into(),
                src_port: 5000,
                dst_addr: "127.0.0.2".into(),
                dst_port: 80,
                state: "destroy".into(),
                bytes_in: Some(9000),
                bytes_out: Some(400),
                packets_in: Some(5),
                packets_out: Some(6),
            }
        );
    }

    #[test]
    fn flow_without_accounting_has_null_counters() {
        let s: IpAddr = "::1".parse().unwrap();
        let m = message(
            IPCTNL_MSG_CT_NEW,
            NLM_F_CREATE | NLM_F_EXCL,
            AF_INET6,
            &[tuple(CTA_TUPLE_ORIG, s, s, IPPROTO_UDP, 1, 2)],
        );
        let ct = parse_datagram(&m).remove(0).unwrap();
        let ev = flow_event(&ct, "h", 0, 0);
        let f = ev.flow.as_ref().unwrap();
        assert_eq!((f.state.as_str(), f.protocol.as_str()), ("new", "udp"));
        assert_eq!((f.bytes_in, f.packets_out), (None, None));
        let json = ev.to_json();
        assert_eq!(json["kind"], "flow");
        assert_eq!(json["source"], "conntrack");
        assert_eq!(json["flow"]["dst_addr"], "::1");
    }
}
