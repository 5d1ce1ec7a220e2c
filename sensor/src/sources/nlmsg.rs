//! Netlink message framing (pure): building requests and walking replies.

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NlError {
    #[error("netlink message truncated at byte {offset}: need {need}, have {have}")]
    Truncated {
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("netlink message at byte {offset} has invalid length {len}")]
    BadLength { offset: usize, len: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsg<'a> {
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

/// A request: header (host byte order) + payload, padded to 4 bytes.
pub fn build(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut b = Vec::with_capacity(len.next_multiple_of(4));
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&msg_type.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(payload);
    b.resize(len.next_multiple_of(4), 0);
    b
}

/// Walks the messages of one datagram by `nlmsg_len` (control replies).
pub fn messages(buf: &[u8]) -> Vec<Result<NlMsg<'_>, NlError>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < NLMSG_HDRLEN {
            out.push(Err(NlError::Truncated {
                offset: off,
                need: NLMSG_HDRLEN,
                have: rest.len(),
            }));
            break;
        }
        let len = u32_at(rest, 0);
        if (len as usize) < NLMSG_HDRLEN {
            out.push(Err(NlError::BadLength { offset: off, len }));
            break;
        }
        if len as usize > rest.len() {
            out.push(Err(NlError::Truncated {
                offset: off,
                need: len as usize,
                have: rest.len(),
            }));
            break;
        }
        out.push(Ok(NlMsg {
            msg_type: u16_at(rest, 4),
            flags: u16_at(rest, 6),
            seq: u32_at(rest, 8),
            payload: &rest[NLMSG_HDRLEN..len as usize],
        }));
        off += (len as usize).next_multiple_of(4);
    }
    out
}

/// An audit record datagram: exactly one message, whose payload is the rest of the datagram.
/// The kernel's `nlmsg_len` for audit records is not trusted
/// (docs/ARCHITECTURE.md#audit-netlink).
pub fn record(buf: &[u8]) -> Result<NlMsg<'_>, NlError> {
    if buf.len() < NLMSG_HDRLEN {
        return Err(NlError::Truncated {
            offset: 0,
            need: NLMSG_HDRLEN,
            have: buf.len(),
        });
    }
    let payload = &buf[NLMSG_HDRLEN..];
    // Records are text; drop trailing NUL padding.
    let end = payload.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    Ok(NlMsg {
        msg_type: u16_at(buf, 4),
        flags: u16_at(buf, 6),
        seq: u32_at(buf, 8),
        payload: &payload[..end],
    })
}

/// The errno of an NLMSG_ERROR payload (0 is an ack). A hostile or corrupt `i32::MIN` stays
/// `i32::MIN` (an error, never an ack) instead of overflowing (found by the audit_replies fuzz
/// target).
pub fn error_code(payload: &[u8]) -> Option<i32> {
    (payload.len() >= 4).then(|| (u32_at(payload, 0) as i32).wrapping_neg())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_walk() {
        let mut buf = build(1000, NLM_F_REQUEST, 7, b"abc");
        assert_eq!(buf.len(), 20);
        buf.extend(build(NLMSG_DONE, 0, 8, &[]));
        let msgs: Vec<_> = messages(&buf).into_iter().map(Result::unwrap).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            (msgs[0].msg_type, msgs[0].seq, msgs[0].payload),
            (1000, 7, &b"abc"[..])
        );
        assert_eq!(msgs[1].msg_type, NLMSG_DONE);
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            messages(&[1, 2, 3])[0],
            Err(NlError::Truncated { .. })
        ));
        let mut b = build(1, 0, 0, b"xxxx");
        b[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(matches!(messages(&b)[0], Err(NlError::BadLength { .. })));
        b[0..4].copy_from_slice(&400u32.to_ne_bytes());
        assert!(matches!(messages(&b)[0], Err(NlError::Truncated { .. })));
        assert!(record(&[0; 5]).is_err());
    }

    #[test]
    fn record_ignores_nlmsg_len_and_padding() {
        let mut b = build(1300, 0, 0, b"audit(1.2:3): x=1\0\0\0");
        b[0..4].copy_from_slice(&16u32.to_ne_bytes()); // a lying length
        let r = record(&b).unwrap();
        assert_eq!(r.payload, b"audit(1.2:3): x=1");
        assert_eq!(r.msg_type, 1300);
    }

    #[test]
    fn error_codes() {
        assert_eq!(error_code(&(-1i32).to_ne_bytes()), Some(1));
        assert_eq!(error_code(&0i32.to_ne_bytes()), Some(0));
        assert_eq!(error_code(&[1]), None);
        assert_eq!(error_code(&i32::MIN.to_ne_bytes()), Some(i32::MIN));
    }
}
