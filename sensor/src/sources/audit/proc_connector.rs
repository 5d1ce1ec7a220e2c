//! Process exit notifications from the kernel's proc connector (NETLINK_CONNECTOR,
//! CONFIG_PROC_EVENTS, since 2.6.15): the exact wait(2) status of every exit, including deaths by
//! signal, which audit cannot report (a SIGKILLed process never calls exit_group).
use std::time::Duration;

use crate::sources::netlink::{NetlinkSocket, RecvBatch};
use crate::sources::nlmsg::{self, NLMSG_HDRLEN};

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const CN_MSG_LEN: usize = 20;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;
pub const PROC_EVENT_FORK: u32 = 0x0000_0001;
pub const PROC_EVENT_EXIT: u32 = 0x8000_0000;

#[derive(Debug, thiserror::Error)]
pub enum ProcConnError {
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One `PROC_EVENT_EXIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitNotice {
    /// CLOCK_MONOTONIC ns.
    pub timestamp_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    /// wait(2) status.
    pub exit_code: u32,
    pub exit_signal: u32,
    /// Present on 5.x+ kernels (0 otherwise).
    pub parent_tgid: u32,
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// Parses one datagram; `None` for other event kinds or short messages.
pub fn parse(datagram: &[u8]) -> Option<ExitNotice> {
    let ev = datagram.get(NLMSG_HDRLEN + CN_MSG_LEN..)?;
    // struct proc_event { what u32, cpu u32, timestamp_ns u64 (packed), event_data ... }
    if u32_at(ev, 0)? != PROC_EVENT_EXIT {
        return None;
    }
    let ts = u64::from_ne_bytes(ev.get(8..16)?.try_into().ok()?);
    let d = &ev[16..];
    Some(ExitNotice {
        timestamp_ns: ts,
        pid: u32_at(d, 0)?,
        tgid: u32_at(d, 4)?,
        exit_code: u32_at(d, 8)?,
        exit_signal: u32_at(d, 12)?,
        parent_tgid: u32_at(d, 20).unwrap_or(0),
    })
}

/// One `PROC_EVENT_FORK` (a new process or a new thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkNotice {
    /// CLOCK_MONOTONIC ns.
    pub timestamp_ns: u64,
    pub parent_pid: u32,
    pub parent_tgid: u32,
    pub child_pid: u32,
    pub child_tgid: u32,
}

impl ForkNotice {
    /// A new process, not a new thread of an existing one.
    pub fn is_process(&self) -> bool {
        self.child_pid == self.child_tgid
    }
}

/// Parses one datagram as a fork; `None` for other event kinds or short messages.
pub fn parse_fork(datagram: &[u8]) -> Option<ForkNotice> {
    let ev = datagram.get(NLMSG_HDRLEN + CN_MSG_LEN..)?;
    if u32_at(ev, 0)? != PROC_EVENT_FORK {
        return None;
    }
    let ts = u64::from_ne_bytes(ev.get(8..16)?.try_into().ok()?);
    let d = &ev[16..];
    Some(ForkNotice {
        timestamp_ns: ts,
        parent_pid: u32_at(d, 0)?,
        parent_tgid: u32_at(d, 4)?,
        child_pid: u32_at(d, 8)?,
        child_tgid: u32_at(d, 12)?,
    })
}

fn control_message(op: u32) -> Vec<u8> {
    connector_message(&op.to_ne_bytes())
}

/// `struct proc_input { mcast_op; event_type }`: a subscription the kernel filters by event
/// type (Linux 6.6 and later; earlier kernels ignore a message of this length).
fn filtered_listen_message(event_types: u32) -> Vec<u8> {
    let mut data = [0u8; 8];
    data[..4].copy_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    data[4..].copy_from_slice(&event_types.to_ne_bytes());
    connector_message(&data)
}

fn connector_message(data: &[u8]) -> Vec<u8> {
    let mut cn = Vec::with_capacity(CN_MSG_LEN + data.len());
    cn.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    cn.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    cn.extend_from_slice(&0u32.to_ne_bytes()); // seq
    cn.extend_from_slice(&0u32.to_ne_bytes()); // ack
    cn.extend_from_slice(&(data.len() as u16).to_ne_bytes()); // len
    cn.extend_from_slice(&0u16.to_ne_bytes()); // flags
    cn.extend_from_slice(data);
    nlmsg::build(libc::NLMSG_DONE as u16, 0, 0, &cn)
}

pub struct ProcConnector {
    sock: NetlinkSocket,
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> ProcConnError {
    move |source| ProcConnError::Io { op, source }
}

impl ProcConnector {
    /// Subscribes to process events (needs CAP_NET_ADMIN).
    pub fn open(timeout: Duration) -> Result<Self, ProcConnError> {
        let mut sock =
            NetlinkSocket::open(libc::SOCK_DGRAM, libc::NETLINK_CONNECTOR, CN_IDX_PROC, 4096)
                .map_err(io("socket(NETLINK_CONNECTOR)"))?;
        // A forged fork or exit notice counts as `audit_netlink_forged` (the proc connector
        // serves audit mode only).
        sock.count_forged_in(&super::control::NETLINK_FORGED);
        sock.set_rcvbuf(8 * 1024 * 1024);
        let _ = sock.set_timeout(timeout);
        let pc = Self { sock };
        pc.send(&control_message(PROC_CN_MCAST_LISTEN))?;
        // Only forks and exits: without the filter every exec, uid, gid, sid, comm, ptrace and
        // coredump change of every task is also sent (allocated in the task's own context)
        // and read here only to be thrown away. The unfiltered listen above stays in force on
        // kernels before 6.6, which ignore this message; 6.6 and later replace it
        // (docs/ARCHITECTURE.md, Audit netlink).
        if let Err(e) = pc.send(&filtered_listen_message(PROC_EVENT_FORK | PROC_EVENT_EXIT)) {
            tracing::debug!(error = %e, "proc connector event filter not set");
        }
        Ok(pc)
    }

    fn send(&self, msg: &[u8]) -> Result<(), ProcConnError> {
        self.sock.send(msg).map_err(io("send(PROC_CN_MCAST)"))
    }

    /// Waits up to the timeout for one datagram, then takes those queued behind it in the same
    /// system call (up to the batch's slots); 0 on timeout. `Err` with ENOBUFS means
    /// notifications were lost.
    pub fn recv_batch(&mut self, batch: &mut RecvBatch) -> Result<usize, ProcConnError> {
        self.sock
            .recv_batch(batch)
            .map_err(io("recvmmsg(NETLINK_CONNECTOR)"))
    }
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        let _ = self.send(&control_message(PROC_CN_MCAST_IGNORE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit_datagram(pid: u32, tgid: u32, code: u32, sig: u32) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&PROC_EVENT_EXIT.to_ne_bytes());
        ev.extend_from_slice(&1u32.to_ne_bytes());
        ev.extend_from_slice(&123u64.to_ne_bytes());
        for v in [pid, tgid, code, sig, 1, 1] {
            ev.extend_from_slice(&v.to_ne_bytes());
        }
        let mut cn = vec![0u8; CN_MSG_LEN];
        cn.extend(ev);
        nlmsg::build(3, 0, 0, &cn)
    }

    fn fork_datagram(parent: u32, child_pid: u32, child_tgid: u32) -> Vec<u8> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&PROC_EVENT_FORK.to_ne_bytes());
        ev.extend_from_slice(&0u32.to_ne_bytes());
        ev.extend_from_slice(&456u64.to_ne_bytes());
        for v in [parent, parent, child_pid, child_tgid] {
            ev.extend_from_slice(&v.to_ne_bytes());
        }
        let mut cn = vec![0u8; CN_MSG_LEN];
        cn.extend(ev);
        nlmsg::build(3, 0, 0, &cn)
    }

    #[test]
    fn parses_fork_and_tells_threads_apart() {
        let n = parse_fork(&fork_datagram(10, 11, 11)).unwrap();
        assert_eq!(
            (n.timestamp_ns, n.parent_tgid, n.child_pid, n.child_tgid),
            (456, 10, 11, 11)
        );
        assert!(n.is_process());
        assert!(!parse_fork(&fork_datagram(10, 12, 10)).unwrap().is_process());
        assert_eq!(
            parse(&fork_datagram(10, 11, 11)),
            None,
            "a fork is not an exit"
        );
        assert_eq!(parse_fork(&exit_datagram(1, 1, 0, 0)), None);
        let d = fork_datagram(10, 11, 11);
        assert_eq!(parse_fork(&d[..d.len() - 2]), None, "short");
    }

    #[test]
    fn parses_exit() {
        let d = exit_datagram(10, 10, 7 << 8, 17);
        let n = parse(&d).unwrap();
        assert_eq!(
            (
                n.pid,
                n.tgid,
                n.exit_code,
                n.exit_signal,
                n.timestamp_ns,
                n.parent_tgid
            ),
            (10, 10, 0x700, 17, 123, 1)
        );
    }

    #[test]
    fn ignores_other_events_and_garbage() {
        let mut d = exit_datagram(1, 1, 0, 0);
        d[NLMSG_HDRLEN + CN_MSG_LEN] = 2; // PROC_EVENT_EXEC
        d[NLMSG_HDRLEN + CN_MSG_LEN + 3] = 0;
        assert_eq!(parse(&d), None);
        for n in 0..60 {
            let d = exit_datagram(1, 1, 0, 0);
            let _ = parse(&d[..n]);
        }
        assert_eq!(parse(&[]), None);
    }

    /// A fork notice another socket sends to the proc connector's socket is skipped by the
    /// batch path, counted and reported in health as `audit_netlink_forged`.
    #[test]
    fn forged_notices_are_skipped_and_reported() {
        use crate::sources::audit::handover::HandoverState;
        use crate::sources::audit::source::{AuditHealth, AuditStats};
        use crate::telemetry::fields::{HealthFields, Telemetry};
        use std::sync::atomic::Ordering::Relaxed;
        let Ok(mut pc) = ProcConnector::open(Duration::from_millis(50)) else {
            eprintln!("skipped: no proc connector here");
            return;
        };
        let _forging = super::super::control::FORGING
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = super::super::control::NETLINK_FORGED.load(Relaxed);
        let forged = fork_datagram(1, 4_000_000, 4_000_000);
        if !crate::sources::netlink::send_forged(&pc.sock, libc::NETLINK_CONNECTOR, &forged) {
            return;
        }
        // Real fork and exit notices of the host arrive too: read until the timeout.
        let mut batch = RecvBatch::new(8, 512);
        loop {
            let n = pc.recv_batch(&mut batch).unwrap();
            if n == 0 {
                break;
            }
            for i in 0..n {
                if let Some(d) = batch.get(i) {
                    let fork = parse_fork(d);
                    assert!(
                        fork.is_none_or(|f| f.child_pid != 4_000_000),
                        "the forged notice was handed out"
                    );
                }
            }
        }
        assert_eq!(
            super::super::control::NETLINK_FORGED.load(Relaxed),
            before + 1,
            "counted once"
        );
        let mut health = HealthFields::default();
        AuditHealth {
            stats: std::sync::Arc::new(AuditStats::default()),
            handover: std::sync::Arc::new(HandoverState::default()),
        }
        .report(&mut health);
        assert_eq!(health.events["audit_netlink_forged"], before + 1);
    }

    #[test]
    fn listen_messages_have_the_kernels_layout() {
        // nlmsghdr (16) + cn_msg (20) + data: the plain op is 4 bytes, the filtered one is
        // `struct proc_input` (8 bytes), which is how the kernel tells them apart.
        let plain = control_message(PROC_CN_MCAST_LISTEN);
        assert_eq!(plain.len(), NLMSG_HDRLEN + CN_MSG_LEN + 4);
        let filtered = filtered_listen_message(PROC_EVENT_FORK | PROC_EVENT_EXIT);
        assert_eq!(filtered.len(), NLMSG_HDRLEN + CN_MSG_LEN + 8);
        let cn = &filtered[NLMSG_HDRLEN..];
        assert_eq!(u32_at(cn, 0), Some(CN_IDX_PROC));
        assert_eq!(u32_at(cn, 4), Some(CN_VAL_PROC));
        assert_eq!(u16::from_ne_bytes([cn[16], cn[17]]), 8, "cn_msg len");
        assert_eq!(u32_at(cn, CN_MSG_LEN), Some(PROC_CN_MCAST_LISTEN));
        assert_eq!(u32_at(cn, CN_MSG_LEN + 4), Some(0x8000_0001));
        assert_eq!(
            u32::from_ne_bytes(filtered[..4].try_into().unwrap()) as usize,
            filtered.len()
        );
    }
}
