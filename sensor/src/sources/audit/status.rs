//! `struct audit_status` (include/uapi/linux/audit.h) and the AUDIT_GET exchange, pure: the
//! request bytes and the reply parser, on top of the netlink framing in
//! [`crate::sources::nlmsg`]. Used by the audit control socket and by the host probe.
use std::fmt;

use serde::Serialize;

use super::control::AUDIT_GET;
use crate::sources::nlmsg::{self, NlError, NLMSG_ERROR, NLM_F_REQUEST};

/// `mask` .. `lost` inclusive: the fields the detail line needs.
const AUDIT_STATUS_MIN_LEN: usize = 7 * 4;

/// Parsed `struct audit_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AuditStatus {
    pub mask: u32,
    pub enabled: u32,
    pub failure: u32,
    pub pid: u32,
    pub rate_limit: u32,
    pub backlog_limit: u32,
    pub lost: u32,
    pub backlog: u32,
    /// `version` / `feature_bitmap`; absent in replies from very old kernels.
    pub feature_bitmap: Option<u32>,
}

impl fmt::Display for AuditStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "enabled={} pid={} backlog_limit={} lost={}",
            self.enabled, self.pid, self.backlog_limit, self.lost
        )
    }
}

/// Errors of the status parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// A reply was shorter than its format requires.
    #[error("truncated {what}: need {need} bytes, got {got}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    /// A reply did not have the expected format.
    #[error("malformed {what}: {message}")]
    Malformed { what: &'static str, message: String },
    /// The kernel answered AUDIT_GET with an NLMSG_ERROR.
    #[error("AUDIT_GET: kernel answered {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel { errno: i32 },
}

fn ne_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// An AUDIT_GET request: a bare `nlmsghdr` (host byte order) with no payload; port id 0 lets
/// the kernel fill in ours.
pub fn build_audit_get_request(seq: u32) -> Vec<u8> {
    nlmsg::build(AUDIT_GET, NLM_F_REQUEST, seq, &[])
}

/// Parse the payload of an AUDIT_GET reply (`struct audit_status`).
pub fn parse_audit_status(payload: &[u8]) -> Result<AuditStatus, StatusError> {
    if payload.len() < AUDIT_STATUS_MIN_LEN {
        return Err(StatusError::Truncated {
            what: "audit_status",
            need: AUDIT_STATUS_MIN_LEN,
            got: payload.len(),
        });
    }
    let opt = |off: usize| (payload.len() >= off + 4).then(|| ne_u32(payload, off));
    Ok(AuditStatus {
        mask: ne_u32(payload, 0),
        enabled: ne_u32(payload, 4),
        failure: ne_u32(payload, 8),
        pid: ne_u32(payload, 12),
        rate_limit: ne_u32(payload, 16),
        backlog_limit: ne_u32(payload, 20),
        lost: ne_u32(payload, 24),
        backlog: opt(28).unwrap_or(0),
        feature_bitmap: opt(32),
    })
}

/// Walk the netlink messages in one datagram received on a NETLINK_AUDIT
/// socket, looking for the answer to the AUDIT_GET request with `seq`.
///
/// * `Ok(Some(status))`: the AUDIT_GET reply;
/// * `Ok(None)`: only acks, no-ops or messages for other sequence numbers
///   (keep receiving);
/// * `Err(Kernel{..})`: the kernel answered with an NLMSG_ERROR (e.g. EPERM);
/// * `Err(Truncated|Malformed)`: the bytes are not a valid netlink datagram.
pub fn parse_audit_get_reply(buf: &[u8], seq: u32) -> Result<Option<AuditStatus>, StatusError> {
    if buf.is_empty() {
        return Err(StatusError::Truncated {
            what: "netlink reply",
            need: nlmsg::NLMSG_HDRLEN,
            got: 0,
        });
    }
    for m in nlmsg::messages(buf) {
        let m = m.map_err(|e| match e {
            NlError::Truncated { need, have, .. } => StatusError::Truncated {
                what: if have < nlmsg::NLMSG_HDRLEN {
                    "nlmsghdr"
                } else {
                    "netlink message"
                },
                need,
                got: have,
            },
            NlError::BadLength { len, .. } => StatusError::Malformed {
                what: "nlmsghdr",
                message: format!("nlmsg_len {len} is smaller than the header"),
            },
        })?;
        if m.seq != seq {
            continue;
        }
        match m.msg_type {
            AUDIT_GET => return parse_audit_status(m.payload).map(Some),
            NLMSG_ERROR => match nlmsg::error_code(m.payload) {
                // An ack; the status message may follow.
                Some(0) => {}
                Some(errno) => return Err(StatusError::Kernel { errno }),
                None => {
                    return Err(StatusError::Truncated {
                        what: "nlmsgerr",
                        need: 4,
                        got: m.payload.len(),
                    })
                }
            },
            // NLMSG_NOOP, NLMSG_DONE and anything else: keep walking.
            _ => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(ty: u16, flags: u16, seq: u32, pid: u32, payload: &[u8]) -> Vec<u8> {
        let len = nlmsg::NLMSG_HDRLEN + payload.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&pid.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn ne_u16(b: &[u8], off: usize) -> u16 {
        u16::from_ne_bytes([b[off], b[off + 1]])
    }

    /// struct audit_status as a modern kernel sends it (11 u32 = 44 bytes).
    fn status_payload() -> Vec<u8> {
        let fields: [u32; 11] = [
            0,      // mask
            1,      // enabled
            1,      // failure
            4242,   // pid
            0,      // rate_limit
            8192,   // backlog_limit
            17,     // lost
            3,      // backlog
            0x7f,   // feature_bitmap
            60_000, // backlog_wait_time
            0,      // backlog_wait_time_actual
        ];
        fields.iter().flat_map(|f| f.to_ne_bytes()).collect()
    }

    #[test]
    fn request_layout() {
        let r = build_audit_get_request(7);
        assert_eq!(r.len(), 16);
        assert_eq!(ne_u32(&r, 0), 16);
        assert_eq!(ne_u16(&r, 4), 1000);
        assert_eq!(ne_u16(&r, 6), NLM_F_REQUEST);
        assert_eq!(ne_u32(&r, 8), 7);
        assert_eq!(ne_u32(&r, 12), 0);
    }

    #[test]
    fn audit_status_from_fixture() {
        let buf = nlmsg(AUDIT_GET, 0, 1, 0, &status_payload());
        let st = parse_audit_get_reply(&buf, 1).unwrap().unwrap();
        assert_eq!(
            st,
            AuditStatus {
                mask: 0,
                enabled: 1,
                failure: 1,
                pid: 4242,
                rate_limit: 0,
                backlog_limit: 8192,
                lost: 17,
                backlog: 3,
                feature_bitmap: Some(0x7f),
            }
        );
        assert_eq!(
            st.to_string(),
            "enabled=1 pid=4242 backlog_limit=8192 lost=17"
        );
    }

    #[test]
    fn audit_status_after_ack_and_old_short_struct() {
        // An ack (NLMSG_ERROR with error 0) followed by an old 32-byte status.
        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend_from_slice(&build_audit_get_request(1));
        let mut buf = nlmsg(NLMSG_ERROR, 0, 1, 0, &ack);
        buf.extend(nlmsg(AUDIT_GET, 0, 1, 0, &status_payload()[..32]));
        let st = parse_audit_get_reply(&buf, 1).unwrap().unwrap();
        assert_eq!(st.pid, 4242);
        assert_eq!(st.backlog, 3);
        assert_eq!(st.feature_bitmap, None);
    }

    #[test]
    fn audit_error_reply_is_errno() {
        let mut payload = (-libc::EPERM).to_ne_bytes().to_vec();
        payload.extend_from_slice(&build_audit_get_request(1));
        let buf = nlmsg(NLMSG_ERROR, 0, 1, 0, &payload);
        let e = parse_audit_get_reply(&buf, 1).unwrap_err();
        assert_eq!(e, StatusError::Kernel { errno: libc::EPERM });
    }

    #[test]
    fn audit_other_seq_and_ack_only_is_none() {
        let buf = nlmsg(AUDIT_GET, 0, 99, 0, &status_payload());
        assert_eq!(parse_audit_get_reply(&buf, 1).unwrap(), None);
        let buf = nlmsg(NLMSG_ERROR, 0, 1, 0, &0i32.to_ne_bytes());
        assert_eq!(parse_audit_get_reply(&buf, 1).unwrap(), None);
    }

    #[test]
    fn audit_truncated_and_garbage_are_errors() {
        let good = nlmsg(AUDIT_GET, 0, 1, 0, &status_payload());
        // Every strict prefix fails cleanly (never panics, never Ok(Some)).
        for cut in 0..good.len() {
            let r = parse_audit_get_reply(&good[..cut], 1);
            assert!(r.is_err(), "prefix {cut} gave {r:?}");
        }
        // Status payload too short for the fields we need.
        let short = nlmsg(AUDIT_GET, 0, 1, 0, &status_payload()[..20]);
        assert!(matches!(
            parse_audit_get_reply(&short, 1),
            Err(StatusError::Truncated { .. })
        ));
        // nlmsg_len smaller than the header.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            parse_audit_get_reply(&bad, 1),
            Err(StatusError::Malformed { .. })
        ));
        // nlmsg_len beyond the buffer.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_audit_get_reply(&bad, 1).is_err());
        // NLMSG_ERROR without room for the error code.
        let bad = nlmsg(NLMSG_ERROR, 0, 1, 0, &[1, 2]);
        assert!(parse_audit_get_reply(&bad, 1).is_err());
        // i32::MIN error code does not overflow.
        let bad = nlmsg(NLMSG_ERROR, 0, 1, 0, &i32::MIN.to_ne_bytes());
        assert!(parse_audit_get_reply(&bad, 1).is_err());
        // Pseudo-random garbage: any result, but no panic.
        let mut x: u32 = 0x1234_5678;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = parse_audit_get_reply(&junk, 1);
        }
    }
}
