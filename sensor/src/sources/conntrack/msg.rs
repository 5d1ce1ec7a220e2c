//! ctnetlink event messages (pure): `NFNL_SUBSYS_CTNETLINK` `IPCTNL_MSG_CT_NEW` / `_DELETE`
//! as the kernel multicasts them to `NFNLGRP_CONNTRACK_NEW` / `_DESTROY` listeners.
//!
//! Layout of one message (after the 16-byte `nlmsghdr`):
//! ```text
//! nfgenmsg { family: u8, version: u8, res_id: be16 }
//! nlattr*  (4-byte aligned; nla_type & 0x3fff, NLA_F_NESTED = 0x8000)
//!   CTA_TUPLE_ORIG / CTA_TUPLE_REPLY { CTA_TUPLE_IP { V4_SRC/DST | V6_SRC/DST },
//!                                      CTA_TUPLE_PROTO { NUM u8, SRC_PORT be16, DST_PORT be16 } }
//!   CTA_STATUS be32, CTA_ID be32, CTA_MARK be32
//!   CTA_PROTOINFO { CTA_PROTOINFO_TCP { CTA_PROTOINFO_TCP_STATE u8 } }
//!   CTA_COUNTERS_ORIG / _REPLY { CTA_COUNTERS_PACKETS be64, CTA_COUNTERS_BYTES be64 }
//! ```
//! Hand-written (no netlink crate): the subset is small and every byte is bounds-checked, so
//! truncated or garbage input is an error, never a panic (see the fuzz target `conntrack_msg`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::sources::nlmsg;

pub const NFNL_SUBSYS_CTNETLINK: u8 = 1;
pub const IPCTNL_MSG_CT_NEW: u8 = 0;
pub const IPCTNL_MSG_CT_DELETE: u8 = 2;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

// enum ctattr_type
pub const CTA_TUPLE_ORIG: u16 = 1;
pub const CTA_TUPLE_REPLY: u16 = 2;
pub const CTA_STATUS: u16 = 3;
pub const CTA_PROTOINFO: u16 = 4;
pub const CTA_TIMEOUT: u16 = 7;
pub const CTA_MARK: u16 = 8;
pub const CTA_COUNTERS_ORIG: u16 = 9;
pub const CTA_COUNTERS_REPLY: u16 = 10;
pub const CTA_ID: u16 = 12;
pub const CTA_ZONE: u16 = 18;
// enum ctattr_tuple
pub const CTA_TUPLE_IP: u16 = 1;
pub const CTA_TUPLE_PROTO: u16 = 2;
// enum ctattr_ip
pub const CTA_IP_V4_SRC: u16 = 1;
pub const CTA_IP_V4_DST: u16 = 2;
pub const CTA_IP_V6_SRC: u16 = 3;
pub const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto
pub const CTA_PROTO_NUM: u16 = 1;
pub const CTA_PROTO_SRC_PORT: u16 = 2;
pub const CTA_PROTO_DST_PORT: u16 = 3;
pub const CTA_PROTO_ICMP_ID: u16 = 4;
pub const CTA_PROTO_ICMP_TYPE: u16 = 5;
pub const CTA_PROTO_ICMP_CODE: u16 = 6;
pub const CTA_PROTO_ICMPV6_ID: u16 = 7;
pub const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
pub const CTA_PROTO_ICMPV6_CODE: u16 = 9;
// enum ctattr_protoinfo / ctattr_protoinfo_tcp
pub const CTA_PROTOINFO_TCP: u16 = 1;
pub const CTA_PROTOINFO_TCP_STATE: u16 = 1;
// enum ctattr_counters
pub const CTA_COUNTERS_PACKETS: u16 = 1;
pub const CTA_COUNTERS_BYTES: u16 = 2;
pub const CTA_COUNTERS32_PACKETS: u16 = 3;
pub const CTA_COUNTERS32_BYTES: u16 = 4;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Nesting deeper than this is rejected (the kernel sends at most 3 levels here).
const MAX_DEPTH: u8 = 4;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CtParseError {
    #[error("netlink framing: {0}")]
    Framing(#[from] nlmsg::NlError),
    #[error("message of {len} bytes has no nfgenmsg header")]
    NoNfgenmsg { len: usize },
    #[error("attribute at byte {offset}: length {len} invalid (remaining {remaining})")]
    BadAttr {
        offset: usize,
        len: u16,
        remaining: usize,
    },
    #[error("attribute {attr}: payload of {len} bytes, expected {expected}")]
    BadSize {
        attr: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("no CTA_TUPLE_ORIG")]
    NoOrigTuple,
    #[error("tuple without {0}")]
    IncompleteTuple(&'static str),
    #[error("attributes nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// What happened to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtEventType {
    /// A new tracked connection (`IPCTNL_MSG_CT_NEW` with `NLM_F_CREATE`).
    New,
    /// A state change of a known connection (only sent to the UPDATE group; kept for
    /// completeness, the sensor does not subscribe to it).
    Update,
    /// The entry was removed (timeout, TCP close, `conntrack -D`, flush).
    Destroy,
}

impl CtEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            CtEventType::New => "new",
            CtEventType::Update => "update",
            CtEventType::Destroy => "destroy",
        }
    }
}

/// One direction of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TCP/UDP/SCTP/DCCP ports; `None` for protocols without ports.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// ICMP / ICMPv6 type, code and id.
    pub icmp: Option<(u8, u8, u16)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// A parsed conntrack event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEvent {
    pub event: CtEventType,
    /// `AF_INET` or `AF_INET6` (from nfgenmsg).
    pub family: u8,
    pub orig: Tuple,
    pub reply: Option<Tuple>,
    /// `IPS_*` status bits.
    pub status: Option<u32>,
    /// `TCP_CONNTRACK_*` state when the protocol is TCP.
    pub tcp_state: Option<u8>,
    /// Present only with `net.netfilter.nf_conntrack_acct = 1`.
    pub counters_orig: Option<CtCounters>,
    pub counters_reply: Option<CtCounters>,
    pub id: Option<u32>,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    pub timeout: Option<u32>,
}

/// `TCP_CONNTRACK_*` names (include/uapi/linux/netfilter/nf_conntrack_tcp.h).
pub fn tcp_state_name(s: u8) -> &'static str {
    match s {
        0 => "none",
        1 => "syn_sent",
        2 => "syn_recv",
        3 => "established",
        4 => "fin_wait",
        5 => "close_wait",
        6 => "last_ack",
        7 => "time_wait",
        8 => "close",
        9 => "syn_sent2",
        _ => "unknown",
    }
}

/// Protocol name as the `connect` and `flow` payloads spell it.
pub fn proto_name(p: u8) -> String {
    match p {
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        33 => "dccp".into(),
        47 => "gre".into(),
        IPPROTO_ICMPV6 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}

/// One netlink attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Type without the NESTED / NET_BYTEORDER flags.
    pub kind: u16,
    pub nested: bool,
    pub payload: &'a [u8],
    /// Offset of the attribute header within the buffer walked.
    pub offset: usize,
}

/// Walks a run of netlink attributes. Stops at the first malformed one (yielding its error).
/// Fewer than 4 trailing bytes are treated as padding.
pub struct Attrs<'a> {
    buf: &'a [u8],
    off: usize,
    failed: bool,
}

pub fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs {
        buf,
        off: 0,
        failed: false,
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, CtParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.off..)?;
        if rest.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([rest[0], rest[1]]);
        let ty = u16::from_ne_bytes([rest[2], rest[3]]);
        if (len as usize) < 4 || len as usize > rest.len() {
            self.failed = true;
            return Some(Err(CtParseError::BadAttr {
                offset: self.off,
                len,
                remaining: rest.len(),
            }));
        }
        let a = Attr {
            kind: ty & NLA_TYPE_MASK,
            nested: ty & NLA_F_NESTED != 0,
            payload: &rest[4..len as usize],
            offset: self.off,
        };
        self.off = self.off.saturating_add((len as usize).next_multiple_of(4));
        Some(Ok(a))
    }
}

fn fixed<const N: usize>(attr: &'static str, b: &[u8]) -> Result<[u8; N], CtParseError> {
    b.try_into().map_err(|_| CtParseError::BadSize {
        attr,
        len: b.len(),
        expected: N,
    })
}

fn be16(attr: &'static str, b: &[u8]) -> Result<u16, CtParseError> {
    fixed::<2>(attr, b).map(u16::from_be_bytes)
}

fn be32(attr: &'static str, b: &[u8]) -> Result<u32, CtParseError> {
    fixed::<4>(attr, b).map(u32::from_be_bytes)
}

fn u8_of(attr: &'static str, b: &[u8]) -> Result<u8, CtParseError> {
    b.first().copied().ok_or(CtParseError::BadSize {
        attr,
        len: 0,
        expected: 1,
    })
}

/// The message type of a ctnetlink event (`subsys << 8 | msg`).
pub fn ct_msg_type(msg: u8) -> u16 {
    (u16::from(NFNL_SUBSYS_CTNETLINK) << 8) | u16::from(msg)
}

/// Parses one netlink message. `Ok(None)` for messages that are not conntrack events
/// (another subsystem, `NLMSG_ERROR`, `NLMSG_DONE`, expectation messages).
pub fn parse_message(
    msg_type: u16,
    flags: u16,
    payload: &[u8],
) -> Result<Option<CtEvent>, CtParseError> {
    if (msg_type >> 8) as u8 != NFNL_SUBSYS_CTNETLINK {
        return Ok(None);
    }
    let event = match (msg_type & 0xff) as u8 {
        IPCTNL_MSG_CT_NEW if flags & (NLM_F_CREATE | NLM_F_EXCL) != 0 => CtEventType::New,
        IPCTNL_MSG_CT_NEW => CtEventType::Update,
        IPCTNL_MSG_CT_DELETE => CtEventType::Destroy,
        _ => return Ok(None),
    };
    if payload.len() < 4 {
        return Err(CtParseError::NoNfgenmsg { len: payload.len() });
    }
    let family = payload[0];
    let mut orig = None;
    let mut ev = CtEvent {
        event,
        family,
        orig: Tuple {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            proto: 0,
            src_port: None,
            dst_port: None,
            icmp: None,
        },
        reply: None,
        status: None,
        tcp_state: None,
        counters_orig: None,
        counters_reply: None,
        id: None,
        mark: None,
        zone: None,
        timeout: None,
    };
    for a in attrs(&payload[4..]) {
        let a = a?;
        match a.kind {
            CTA_TUPLE_ORIG => orig = Some(parse_tuple(a.payload, 1)?),
            CTA_TUPLE_REPLY => ev.reply = Some(parse_tuple(a.payload, 1)?),
            CTA_STATUS => ev.status = Some(be32("CTA_STATUS", a.payload)?),
            CTA_ID => ev.id = Some(be32("CTA_ID", a.payload)?),
            CTA_MARK => ev.mark = Some(be32("CTA_MARK", a.payload)?),
            CTA_TIMEOUT => ev.timeout = Some(be32("CTA_TIMEOUT", a.payload)?),
            CTA_ZONE => ev.zone = Some(be16("CTA_ZONE", a.payload)?),
            CTA_PROTOINFO => ev.tcp_state = parse_protoinfo(a.payload, 1)?,
            CTA_COUNTERS_ORIG => ev.counters_orig = Some(parse_counters(a.payload)?),
            CTA_COUNTERS_REPLY => ev.counters_reply = Some(parse_counters(a.payload)?),
            _ => {}
        }
    }
    ev.orig = orig.ok_or(CtParseError::NoOrigTuple)?;
    Ok(Some(ev))
}

fn parse_tuple(buf: &[u8], depth: u8) -> Result<Tuple, CtParseError> {
    if depth > MAX_DEPTH {
        return Err(CtParseError::TooDeep);
    }
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut sport, mut dport) = (None, None);
    let (mut itype, mut icode, mut iid) = (None, None, None);
    for a in attrs(buf) {
        let a = a?;
        match a.kind {
            CTA_TUPLE_IP => {
                for ip in attrs(a.payload) {
                    let ip = ip?;
                    match ip.kind {
                        CTA_IP_V4_SRC => {
                            src = Some(IpAddr::V4(Ipv4Addr::from(fixed::<4>(
                                "CTA_IP_V4_SRC",
                                ip.payload,
                            )?)))
                        }
                        CTA_IP_V4_DST => {
                            dst = Some(IpAddr::V4(Ipv4Addr::from(fixed::<4>(
                                "CTA_IP_V4_DST",
                                ip.payload,
                            )?)))
                        }
                        CTA_IP_V6_SRC => {
                            src = Some(IpAddr::V6(Ipv6Addr::from(fixed::<16>(
                                "CTA_IP_V6_SRC",
                                ip.payload,
                            )?)))
                        }
                        CTA_IP_V6_DST => {
                            dst = Some(IpAddr::V6(Ipv6Addr::from(fixed::<16>(
                                "CTA_IP_V6_DST",
                                ip.payload,
                            )?)))
                        }
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in attrs(a.payload) {
                    let p = p?;
                    match p.kind {
                        CTA_PROTO_NUM => proto = Some(u8_of("CTA_PROTO_NUM", p.payload)?),
                        CTA_PROTO_SRC_PORT => sport = Some(be16("CTA_PROTO_SRC_PORT", p.payload)?),
                        CTA_PROTO_DST_PORT => dport = Some(be16("CTA_PROTO_DST_PORT", p.payload)?),
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            itype = Some(u8_of("CTA_PROTO_ICMP_TYPE", p.payload)?)
                        }
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                            icode = Some(u8_of("CTA_PROTO_ICMP_CODE", p.payload)?)
                        }
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                            iid = Some(be16("CTA_PROTO_ICMP_ID", p.payload)?)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let icmp = match (itype, icode, iid) {
        (None, None, None) => None,
        (t, c, i) => Some((t.unwrap_or(0), c.unwrap_or(0), i.unwrap_or(0))),
    };
    Ok(Tuple {
        src: src.ok_or(CtParseError::IncompleteTuple("source address"))?,
        dst: dst.ok_or(CtParseError::IncompleteTuple("destination address"))?,
        proto: proto.ok_or(CtParseError::IncompleteTuple("protocol"))?,
        src_port: sport,
        dst_port: dport,
        icmp,
    })
}

fn parse_protoinfo(buf: &[u8], depth: u8) -> Result<Option<u8>, CtParseError> {
    if depth > MAX_DEPTH {
        return Err(CtParseError::TooDeep);
    }
    for a in attrs(buf) {
        let a = a?;
        if a.kind == CTA_PROTOINFO_TCP {
            for t in attrs(a.payload) {
                let t = t?;
                if t.kind == CTA_PROTOINFO_TCP_STATE {
                    return Ok(Some(u8_of("CTA_PROTOINFO_TCP_STATE", t.payload)?));
                }
            }
        }
    }
    Ok(None)
}

fn parse_counters(buf: &[u8]) -> Result<CtCounters, CtParseError> {
    let mut c = CtCounters::default();
    for a in attrs(buf) {
        let a = a?;
        match a.kind {
            CTA_COUNTERS_PACKETS => {
                c.packets = u64::from_be_bytes(fixed("CTA_COUNTERS_PACKETS", a.payload)?)
            }
            CTA_COUNTERS_BYTES => {
                c.bytes = u64::from_be_bytes(fixed("CTA_COUNTERS_BYTES", a.payload)?)
            }
            CTA_COUNTERS32_PACKETS => {
                c.packets = u64::from(be32("CTA_COUNTERS32_PACKETS", a.payload)?)
            }
            CTA_COUNTERS32_BYTES => c.bytes = u64::from(be32("CTA_COUNTERS32_BYTES", a.payload)?),
            _ => {}
        }
    }
    Ok(c)
}

/// Parses every message of one datagram. Messages that are not conntrack events are skipped;
/// a framing error ends the walk (the rest of the datagram cannot be located).
pub fn parse_datagram(buf: &[u8]) -> Vec<Result<CtEvent, CtParseError>> {
    let mut out = Vec::new();
    for m in nlmsg::messages(buf) {
        match m {
            Ok(m) => match parse_message(m.msg_type, m.flags, m.payload) {
                Ok(Some(ev)) => out.push(Ok(ev)),
                Ok(None) => {}
                Err(e) => out.push(Err(e)),
            },
            Err(e) => {
                out.push(Err(e.into()));
                break;
            }
        }
    }
    out
}

/// Test and fuzz helpers that build ctnetlink messages the way the kernel lays them out.
pub mod build {
    use super::*;

    /// One attribute (header + payload + padding).
    pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 4 + payload.len();
        let mut b = Vec::with_capacity(len.next_multiple_of(4));
        b.extend_from_slice(&(len as u16).to_ne_bytes());
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(payload);
        b.resize(len.next_multiple_of(4), 0);
        b
    }

    pub fn nested(kind: u16, children: &[Vec<u8>]) -> Vec<u8> {
        attr(kind | NLA_F_NESTED, &children.concat())
    }

    pub fn tuple(
        kind: u16,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        sport: u16,
        dport: u16,
    ) -> Vec<u8> {
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => vec![
                attr(CTA_IP_V4_SRC, &s.octets()),
                attr(CTA_IP_V4_DST, &d.octets()),
            ],
            (IpAddr::V6(s), IpAddr::V6(d)) => vec![
                attr(CTA_IP_V6_SRC, &s.octets()),
                attr(CTA_IP_V6_DST, &d.octets()),
            ],
            _ => panic!("mixed families"),
        };
        nested(
            kind,
            &[
                nested(CTA_TUPLE_IP, &ip),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        attr(CTA_PROTO_NUM, &[proto]),
                        attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
                        attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    pub fn counters(kind: u16, packets: u64, bytes: u64) -> Vec<u8> {
        nested(
            kind,
            &[
                attr(CTA_COUNTERS_PACKETS, &packets.to_be_bytes()),
                attr(CTA_COUNTERS_BYTES, &bytes.to_be_bytes()),
            ],
        )
    }

    pub fn tcp_state(state: u8) -> Vec<u8> {
        nested(
            CTA_PROTOINFO,
            &[nested(
                CTA_PROTOINFO_TCP,
                &[attr(CTA_PROTOINFO_TCP_STATE, &[state])],
            )],
        )
    }

    /// A whole netlink message: header, nfgenmsg, attributes.
    pub fn message(msg: u8, flags: u16, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![family, 0, 0, 0];
        payload.extend(attrs.concat());
        nlmsg::build(ct_msg_type(msg), flags, 0, &payload)
    }
}

#[cfg(test)]
mod tests;
