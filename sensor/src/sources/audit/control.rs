//! The NETLINK_AUDIT socket (thin, kernel-facing): status, registration, rules, records.
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::rules::Rule;
use super::status::{parse_audit_status, AuditStatus};
use crate::sources::netlink::{NetlinkSocket, RecvBatch};
use crate::sources::nlmsg::{self, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};

pub const AUDIT_GET: u16 = 1000;
pub const AUDIT_SET: u16 = 1001;
pub const AUDIT_ADD_RULE: u16 = 1011;
pub const AUDIT_DEL_RULE: u16 = 1012;
pub const AUDIT_LIST_RULES: u16 = 1013;
/// Multicast group of the audit log (kernel 3.16+, needs CAP_AUDIT_READ).
pub const AUDIT_NLGRP_READLOG: u32 = 1;

pub const STATUS_ENABLED: u32 = 0x01;
pub const STATUS_PID: u32 = 0x04;
pub const STATUS_BACKLOG_LIMIT: u32 = 0x10;
pub const STATUS_BACKLOG_WAIT_TIME: u32 = 0x20;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: kernel answered {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel { op: &'static str, errno: i32 },
    #[error("{op}: malformed reply: {detail}")]
    Malformed { op: &'static str, detail: String },
    #[error("{op}: no reply within the timeout")]
    Timeout { op: &'static str },
}

impl ControlError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            ControlError::Kernel { errno, .. } => Some(*errno),
            ControlError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Values for AUDIT_SET; only the fields named in `mask` are applied.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetStatus {
    pub mask: u32,
    pub enabled: u32,
    pub pid: u32,
    pub backlog_limit: u32,
    pub backlog_wait_time: u32,
}

impl SetStatus {
    /// struct audit_status with the fields laid out as the kernel expects.
    pub fn to_bytes(self) -> Vec<u8> {
        let words = [
            self.mask,
            self.enabled,
            0, // failure
            self.pid,
            0, // rate_limit
            self.backlog_limit,
            0, // lost
            0, // backlog
            0, // feature_bitmap
            self.backlog_wait_time,
        ];
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }
}

/// Datagrams from another socket skipped on every audit socket (by either receive path) and
/// on the proc connector's: `audit_netlink_forged` in health.
pub static NETLINK_FORGED: AtomicU64 = AtomicU64::new(0);

pub struct AuditSocket {
    sock: NetlinkSocket,
    seq: u32,
    /// Datagrams that arrived while waiting for a control reply (records on the registered
    /// socket); handed out by `recv_record` first so none is lost.
    stash: std::collections::VecDeque<Vec<u8>>,
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> ControlError {
    move |source| ControlError::Io { op, source }
}

impl AuditSocket {
    /// A socket for control requests (and, after `register`, the unicast record stream).
    pub fn open() -> Result<Self, ControlError> {
        Self::open_groups(0)
    }

    /// A socket subscribed to the audit log multicast group (read-only coexistence).
    pub fn open_multicast() -> Result<Self, ControlError> {
        let s = Self::open()?;
        s.join_multicast()?;
        Ok(s)
    }

    /// Subscribes this socket to the audit log multicast group as well (the daemon-slot
    /// handover reads both streams for a moment; see docs/ARCHITECTURE.md, Audit netlink).
    /// Joined with NETLINK_ADD_MEMBERSHIP rather than at bind, one path for both uses.
    pub fn join_multicast(&self) -> Result<(), ControlError> {
        self.sock.add_membership(AUDIT_NLGRP_READLOG).map_err(io(
            "setsockopt(NETLINK_ADD_MEMBERSHIP, AUDIT_NLGRP_READLOG)",
        ))
    }

    fn open_groups(groups: u32) -> Result<Self, ControlError> {
        let mut sock = NetlinkSocket::open(libc::SOCK_RAW, libc::NETLINK_AUDIT, groups, 64 * 1024)
            .map_err(io("socket(NETLINK_AUDIT)"))?;
        sock.count_forged_in(&NETLINK_FORGED);
        // A big receive buffer absorbs storms while the reader is busy.
        sock.set_rcvbuf(8 * 1024 * 1024);
        Ok(Self {
            sock,
            seq: 1,
            stash: std::collections::VecDeque::new(),
        })
    }

    pub fn set_timeout(&self, timeout: Duration) -> Result<(), ControlError> {
        self.sock
            .set_timeout(timeout)
            .map_err(io("setsockopt(SO_RCVTIMEO)"))
    }

    fn send(&mut self, msg_type: u16, flags: u16, payload: &[u8]) -> Result<u32, ControlError> {
        self.seq = self.seq.wrapping_add(1);
        let msg = nlmsg::build(msg_type, flags, self.seq, payload);
        self.sock.send(&msg).map_err(io("sendto(NETLINK_AUDIT)"))?;
        Ok(self.seq)
    }

    /// Receives one datagram. `Ok(None)` on timeout; ENOBUFS (records lost) is an error the
    /// caller counts.
    pub fn recv(&mut self) -> Result<Option<&[u8]>, ControlError> {
        self.sock.recv().map_err(io("recv(NETLINK_AUDIT)"))
    }

    /// Sends a request and collects reply payloads of `reply_type` until an ack, NLMSG_DONE
    /// or (for single replies) the first matching message.
    fn request(
        &mut self,
        op: &'static str,
        msg_type: u16,
        payload: &[u8],
        reply_type: Option<u16>,
        dump: bool,
    ) -> Result<Vec<Vec<u8>>, ControlError> {
        self.set_timeout(Duration::from_secs(2))?;
        let seq = self.send(msg_type, NLM_F_REQUEST | NLM_F_ACK, payload)?;
        let mut replies = Vec::new();
        let mut acked = false;
        for _ in 0..10_000 {
            let Some(buf) = self.recv()? else {
                return Err(ControlError::Timeout { op });
            };
            let buf = buf.to_vec();
            if let Ok(first) = nlmsg::record(&buf) {
                if first.seq != seq && first.msg_type != NLMSG_ERROR && first.msg_type != NLMSG_DONE
                {
                    self.stash.push_back(buf);
                    continue;
                }
            }
            for m in nlmsg::messages(&buf) {
                let m = m.map_err(|e| ControlError::Malformed {
                    op,
                    detail: e.to_string(),
                })?;
                if m.seq != seq {
                    continue;
                }
                match m.msg_type {
                    NLMSG_ERROR => match nlmsg::error_code(m.payload) {
                        Some(0) => acked = true,
                        Some(errno) => return Err(ControlError::Kernel { op, errno }),
                        None => {
                            return Err(ControlError::Malformed {
                                op,
                                detail: "short NLMSG_ERROR".into(),
                            })
                        }
                    },
                    NLMSG_DONE => return Ok(replies),
                    t if Some(t) == reply_type => {
                        replies.push(m.payload.to_vec());
                        if !dump {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
            if acked && reply_type.is_none() {
                return Ok(replies);
            }
        }
        Err(ControlError::Timeout { op })
    }

    /// The next record datagram (stashed ones first); `Ok(None)` on timeout.
    pub fn recv_record(&mut self) -> Result<Option<Vec<u8>>, ControlError> {
        if let Some(d) = self.stash.pop_front() {
            return Ok(Some(d));
        }
        Ok(self.recv()?.map(<[u8]>::to_vec))
    }

    /// A record datagram stashed while a control request was waiting for its reply.
    pub fn pop_stashed(&mut self) -> Option<Vec<u8>> {
        self.stash.pop_front()
    }

    /// One batch of record datagrams from the socket (see [`NetlinkSocket::recv_batch`]);
    /// read [`Self::pop_stashed`] first. `Ok(0)` on timeout.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> Result<usize, ControlError> {
        self.sock
            .recv_batch(batch)
            .map_err(io("recvmmsg(NETLINK_AUDIT)"))
    }

    /// Status plus `backlog_wait_time` (word 9; absent before 3.14).
    pub fn status_with_wait_time(&mut self) -> Result<(AuditStatus, Option<u32>), ControlError> {
        let r = self.request("AUDIT_GET", AUDIT_GET, &[], Some(AUDIT_GET), false)?;
        let payload = r.first().ok_or(ControlError::Malformed {
            op: "AUDIT_GET",
            detail: "no status".into(),
        })?;
        let status = parse_audit_status(payload).map_err(|e| ControlError::Malformed {
            op: "AUDIT_GET",
            detail: e.to_string(),
        })?;
        let wait = payload
            .get(36..40)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        Ok((status, wait))
    }

    pub fn status(&mut self) -> Result<AuditStatus, ControlError> {
        let r = self.request("AUDIT_GET", AUDIT_GET, &[], Some(AUDIT_GET), false)?;
        let payload = r.first().ok_or(ControlError::Malformed {
            op: "AUDIT_GET",
            detail: "no status".into(),
        })?;
        parse_audit_status(payload).map_err(|e| ControlError::Malformed {
            op: "AUDIT_GET",
            detail: e.to_string(),
        })
    }

    /// AUDIT_SET. Setting `pid` makes this socket the receiver of all audit records.
    pub fn set(&mut self, s: SetStatus) -> Result<(), ControlError> {
        self.request("AUDIT_SET", AUDIT_SET, &s.to_bytes(), None, false)
            .map(|_| ())
    }

    pub fn add_rule(&mut self, rule: &Rule) -> Result<(), ControlError> {
        self.request(
            "AUDIT_ADD_RULE",
            AUDIT_ADD_RULE,
            &rule.to_bytes(),
            None,
            false,
        )
        .map(|_| ())
    }

    pub fn del_rule(&mut self, rule: &Rule) -> Result<(), ControlError> {
        self.request(
            "AUDIT_DEL_RULE",
            AUDIT_DEL_RULE,
            &rule.to_bytes(),
            None,
            false,
        )
        .map(|_| ())
    }

    pub fn list_rules(&mut self) -> Result<Vec<Rule>, ControlError> {
        let raw = self.request(
            "AUDIT_LIST_RULES",
            AUDIT_LIST_RULES,
            &[],
            Some(AUDIT_LIST_RULES),
            true,
        )?;
        raw.iter()
            .map(|b| {
                Rule::parse(b).map_err(|e| ControlError::Malformed {
                    op: "AUDIT_LIST_RULES",
                    detail: e.to_string(),
                })
            })
            .collect()
    }
}

/// Held by the tests that forge datagrams to an audit-mode socket, so each sees only its own
/// forgeries in [`NETLINK_FORGED`].
#[cfg(test)]
pub(crate) static FORGING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    /// A datagram another socket sends to an audit socket (a forged record or control reply)
    /// is skipped by the control path too, and counted for `audit_netlink_forged`.
    #[test]
    fn control_path_skips_and_counts_forged_datagrams() {
        let Ok(mut s) = AuditSocket::open() else {
            eprintln!("skipped: no NETLINK_AUDIT socket here");
            return;
        };
        s.set_timeout(Duration::from_millis(50)).unwrap();
        let _forging = FORGING.lock().unwrap_or_else(|e| e.into_inner());
        let before = NETLINK_FORGED.load(Relaxed);
        let forged = nlmsg::build(1300, 0, 1, b"audit(1.0:1): forged");
        if !crate::sources::netlink::send_forged(&s.sock, libc::NETLINK_AUDIT, &forged) {
            return;
        }
        assert_eq!(s.recv_record().unwrap(), None, "skipped, then the timeout");
        assert_eq!(NETLINK_FORGED.load(Relaxed), before + 1);
    }
}
