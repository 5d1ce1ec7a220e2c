//! glibc `struct utmp` records (x86_64: 384 bytes) from wtmp/btmp, parsed by hand (pure).
//!
//! Unlike utmp-rs, one bad record never fails the rest: a record is parsed field by field,
//! text may be any bytes (escaped later), unknown types are reported as such, and the IPv6
//! address is kept.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const RECORD_LEN: usize = 384;

pub const EMPTY: i16 = 0;
pub const RUN_LVL: i16 = 1;
pub const BOOT_TIME: i16 = 2;
pub const NEW_TIME: i16 = 3;
pub const OLD_TIME: i16 = 4;
pub const INIT_PROCESS: i16 = 5;
pub const LOGIN_PROCESS: i16 = 6;
pub const USER_PROCESS: i16 = 7;
pub const DEAD_PROCESS: i16 = 8;
pub const ACCOUNTING: i16 = 9;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UtmpError {
    #[error("utmp record is {0} bytes, expected {RECORD_LEN}")]
    Length(usize),
    #[error("utmp record has unknown type {0}")]
    UnknownType(i16),
    #[error("utmp record time {sec}.{usec:06} is not a valid timestamp")]
    BadTime { sec: i32, usec: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtmpRecord {
    pub ut_type: i16,
    pub pid: i32,
    /// Terminal line (`pts/3`), bytes up to the first NUL.
    pub line: Vec<u8>,
    pub id: Vec<u8>,
    pub user: Vec<u8>,
    pub host: Vec<u8>,
    pub exit_termination: i16,
    pub exit_status: i16,
    pub session: i32,
    pub tv_sec: i32,
    pub tv_usec: i32,
    /// None when all zero.
    pub addr: Option<IpAddr>,
}

fn cstr(b: &[u8]) -> Vec<u8> {
    crate::escape::until_nul(b).to_vec()
}

fn i16_at(b: &[u8], o: usize) -> i16 {
    i16::from_ne_bytes([b[o], b[o + 1]])
}

fn i32_at(b: &[u8], o: usize) -> i32 {
    i32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// `ut_addr_v6`: IPv4 in the first word (network order) when the other three are zero.
pub fn parse_addr(raw: &[u8; 16]) -> Option<IpAddr> {
    if raw.iter().all(|&b| b == 0) {
        return None;
    }
    if raw[4..].iter().all(|&b| b == 0) {
        return Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])));
    }
    Some(IpAddr::V6(Ipv6Addr::from(*raw)))
}

/// Parses one 384-byte record.
pub fn parse(b: &[u8]) -> Result<UtmpRecord, UtmpError> {
    if b.len() != RECORD_LEN {
        return Err(UtmpError::Length(b.len()));
    }
    let ut_type = i16_at(b, 0);
    if !(EMPTY..=ACCOUNTING).contains(&ut_type) {
        return Err(UtmpError::UnknownType(ut_type));
    }
    let tv_sec = i32_at(b, 340);
    let tv_usec = i32_at(b, 344);
    if !(0..1_000_000).contains(&tv_usec) || tv_sec < 0 {
        return Err(UtmpError::BadTime {
            sec: tv_sec,
            usec: tv_usec,
        });
    }
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&b[348..364]);
    Ok(UtmpRecord {
        ut_type,
        pid: i32_at(b, 4),
        line: cstr(&b[8..40]),
        id: cstr(&b[40..44]),
        user: cstr(&b[44..76]),
        host: cstr(&b[76..332]),
        exit_termination: i16_at(b, 332),
        exit_status: i16_at(b, 334),
        session: i32_at(b, 336),
        tv_sec,
        tv_usec,
        addr: parse_addr(&addr),
    })
}

/// Splits a byte stream into whole records; returns them and the length of the incomplete tail
/// (to keep for the next read).
pub fn split_records(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let whole = buf.len() / RECORD_LEN * RECORD_LEN;
    (
        buf[..whole].chunks_exact(RECORD_LEN).collect(),
        buf.len() - whole,
    )
}

impl UtmpRecord {
    /// A record of `ut_type` for `pid` on `line`, stamped now: what login, sshd or a failed
    /// login writes (the rest zero, `host` and `addr` optional). Tests and fixtures build
    /// their wtmp/btmp input with it and [`UtmpRecord::to_bytes`].
    pub fn now(ut_type: i16, pid: i32, line: &str, user: &str, host: &str) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            ut_type,
            pid,
            line: line.as_bytes().to_vec(),
            id: Vec::new(),
            user: user.as_bytes().to_vec(),
            host: host.as_bytes().to_vec(),
            exit_termination: 0,
            exit_status: 0,
            session: 0,
            tv_sec: i32::try_from(now.as_secs()).unwrap_or(i32::MAX),
            tv_usec: now.subsec_micros() as i32,
            addr: None,
        }
    }

    /// The same record from `addr` (`ut_addr_v6`).
    pub fn with_addr(mut self, addr: std::net::IpAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// The 384 bytes glibc writes for this record: the inverse of [`parse`]. Text longer
    /// than its field is cut to the field (no NUL then, as glibc does).
    pub fn to_bytes(&self) -> Vec<u8> {
        fn put(b: &mut [u8], text: &[u8]) {
            let n = text.len().min(b.len());
            b[..n].copy_from_slice(&text[..n]);
        }
        let mut b = vec![0u8; RECORD_LEN];
        b[0..2].copy_from_slice(&self.ut_type.to_ne_bytes());
        b[4..8].copy_from_slice(&self.pid.to_ne_bytes());
        put(&mut b[8..40], &self.line);
        put(&mut b[40..44], &self.id);
        put(&mut b[44..76], &self.user);
        put(&mut b[76..332], &self.host);
        b[332..334].copy_from_slice(&self.exit_termination.to_ne_bytes());
        b[334..336].copy_from_slice(&self.exit_status.to_ne_bytes());
        b[336..340].copy_from_slice(&self.session.to_ne_bytes());
        b[340..344].copy_from_slice(&self.tv_sec.to_ne_bytes());
        b[344..348].copy_from_slice(&self.tv_usec.to_ne_bytes());
        b[348..364].copy_from_slice(&addr_bytes(self.addr));
        b
    }
}

/// `ut_addr_v6` for an address: the inverse of [`parse_addr`].
pub fn addr_bytes(addr: Option<IpAddr>) -> [u8; 16] {
    let mut raw = [0u8; 16];
    match addr {
        None => {}
        Some(IpAddr::V4(a)) => raw[..4].copy_from_slice(&a.octets()),
        Some(IpAddr::V6(a)) => raw = a.octets(),
    }
    raw
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Builds a record the way glibc lays it out.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        ut_type: i16,
        pid: i32,
        line: &[u8],
        user: &[u8],
        host: &[u8],
        sec: i32,
        usec: i32,
        addr: [u8; 16],
    ) -> Vec<u8> {
        UtmpRecord {
            ut_type,
            pid,
            line: line.to_vec(),
            id: b"ts".to_vec(),
            user: user.to_vec(),
            host: host.to_vec(),
            exit_termination: 0,
            exit_status: 0,
            session: 7,
            tv_sec: sec,
            tv_usec: usec,
            addr: parse_addr(&addr),
        }
        .to_bytes()
    }

    pub fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut r = [0u8; 16];
        r[..4].copy_from_slice(&a);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn user_process_ipv4() {
        let b = record(
            USER_PROCESS,
            1234,
            b"pts/3",
            b"alice",
            b"10.0.0.5",
            1_795_804_496,
            5,
            v4([10, 0, 0, 5]),
        );
        let r = parse(&b).unwrap();
        assert_eq!((r.ut_type, r.pid, r.session), (USER_PROCESS, 1234, 7));
        assert_eq!(
            (r.line.as_slice(), r.user.as_slice(), r.host.as_slice()),
            (&b"pts/3"[..], &b"alice"[..], &b"10.0.0.5"[..])
        );
        assert_eq!(r.addr, Some("10.0.0.5".parse().unwrap()));
        assert_eq!((r.tv_sec, r.tv_usec), (1_795_804_496, 5));
    }

    #[test]
    fn ipv6_and_no_address() {
        let v6: Ipv6Addr = "2001:db8::42".parse().unwrap();
        let b = record(
            USER_PROCESS,
            1,
            b"pts/0",
            b"bob",
            b"2001:db8::42",
            1,
            0,
            v6.octets(),
        );
        assert_eq!(parse(&b).unwrap().addr, Some(IpAddr::V6(v6)));
        let b = record(DEAD_PROCESS, 1, b"pts/0", b"", b"", 1, 0, [0; 16]);
        assert_eq!(parse(&b).unwrap().addr, None);
    }

    #[test]
    fn full_width_fields_without_nul_and_non_utf8() {
        let user = [b'u'; 32];
        let mut host = vec![0xffu8; 256];
        host[0] = b'h';
        let b = record(USER_PROCESS, 1, &[b'l'; 32], &user, &host, 1, 0, [0; 16]);
        let r = parse(&b).unwrap();
        assert_eq!(r.user.len(), 32);
        assert_eq!(r.line.len(), 32);
        assert_eq!(r.host.len(), 256);
        assert_eq!(r.host[1], 0xff);
    }

    #[test]
    fn to_bytes_is_the_inverse_of_parse() {
        let mut r = UtmpRecord::now(USER_PROCESS, 4242, "pts/9", "alice", "example.net");
        r.id = b"ts/9".to_vec();
        r.session = 77;
        r.tv_usec = 123_456;
        r.exit_status = 3;
        for addr in [
            None,
            Some("192.0.2.44".parse().unwrap()),
            Some("2001:db8::1".parse().unwrap()),
        ] {
            r.addr = addr;
            assert_eq!(parse(&r.to_bytes()), Ok(r.clone()));
        }
        let long = UtmpRecord::now(USER_PROCESS, 1, &"l".repeat(40), "u", "");
        assert_eq!(parse(&long.to_bytes()).unwrap().line, vec![b'l'; 32]);
    }

    #[test]
    fn bad_records_are_errors() {
        assert_eq!(parse(&[0u8; 100]), Err(UtmpError::Length(100)));
        let b = record(42, 1, b"", b"", b"", 1, 0, [0; 16]);
        assert_eq!(parse(&b), Err(UtmpError::UnknownType(42)));
        let b = record(USER_PROCESS, 1, b"", b"", b"", 1, 2_000_000, [0; 16]);
        assert!(matches!(parse(&b), Err(UtmpError::BadTime { .. })));
    }

    #[test]
    fn split_keeps_the_partial_tail() {
        let mut buf = record(USER_PROCESS, 1, b"a", b"b", b"c", 1, 0, [0; 16]);
        buf.extend(record(DEAD_PROCESS, 1, b"a", b"", b"", 2, 0, [0; 16]));
        buf.extend_from_slice(&[1, 2, 3]);
        let (recs, tail) = split_records(&buf);
        assert_eq!((recs.len(), tail), (2, 3));
    }
}
