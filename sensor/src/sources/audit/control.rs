//! The NETLINK_AUDIT socket (thin, kernel-facing): status, registration, rules, records.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::nlmsg::{self, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};
use super::rules::Rule;
use crate::probe::{parse_audit_status, AuditStatus};

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

pub struct AuditSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
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
        Self::open_groups(1 << (AUDIT_NLGRP_READLOG - 1))
    }

    fn open_groups(groups: u32) -> Result<Self, ControlError> {
        // SAFETY: plain socket(2); the fd is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_AUDIT,
            )
        };
        if raw < 0 {
            return Err(io("socket(NETLINK_AUDIT)")(std::io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh, valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = groups;
        // SAFETY: valid sockaddr of the stated length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io("bind(NETLINK_AUDIT)")(std::io::Error::last_os_error()));
        }
        let s = Self {
            fd,
            seq: 1,
            buf: vec![0u8; 64 * 1024],
            stash: std::collections::VecDeque::new(),
        };
        // A big receive buffer absorbs storms while the reader is busy.
        s.set_rcvbuf(8 * 1024 * 1024);
        Ok(s)
    }

    fn set_rcvbuf(&self, bytes: i32) {
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: valid int option.
            let rc = unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&bytes as *const i32).cast(),
                    4,
                )
            };
            if rc == 0 {
                return;
            }
        }
    }

    pub fn set_timeout(&self, timeout: Duration) -> Result<(), ControlError> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: valid timeval option.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc < 0 {
            return Err(io("setsockopt(SO_RCVTIMEO)")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn send(&mut self, msg_type: u16, flags: u16, payload: &[u8]) -> Result<u32, ControlError> {
        self.seq = self.seq.wrapping_add(1);
        let msg = nlmsg::build(msg_type, flags, self.seq, payload);
        // SAFETY: sockaddr_nl for the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io("sendto(NETLINK_AUDIT)")(std::io::Error::last_os_error()));
        }
        Ok(self.seq)
    }

    /// Receives one datagram. `Ok(None)` on timeout.
    pub fn recv(&mut self) -> Result<Option<&[u8]>, ControlError> {
        loop {
            // SAFETY: buf is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(None),
                    Some(libc::EINTR) => continue,
                    // The socket buffer overflowed: records were lost (the caller counts it).
                    Some(libc::ENOBUFS) => return Err(io("recv(NETLINK_AUDIT)")(e)),
                    _ => return Err(io("recv(NETLINK_AUDIT)")(e)),
                }
            }
            return Ok(Some(&self.buf[..n as usize]));
        }
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
