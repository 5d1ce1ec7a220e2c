//! Unit tests of the `msg` module.
use super::build::*;
use super::*;

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn tcp_new() -> Vec<u8> {
    message(
        IPCTNL_MSG_CT_NEW,
        NLM_F_CREATE | NLM_F_EXCL,
        AF_INET,
        &[
            tuple(
                CTA_TUPLE_ORIG,
                v4([10, 0, 0, 1]),
                v4([93, 184, 216, 34]),
                IPPROTO_TCP,
                40000,
                443,
            ),
            tuple(
                CTA_TUPLE_REPLY,
                v4([93, 184, 216, 34]),
                v4([10, 0, 0, 1]),
                IPPROTO_TCP,
                443,
                40000,
            ),
            attr(CTA_STATUS, &8u32.to_be_bytes()),
            tcp_state(1),
            attr(CTA_ID, &0xdead_beefu32.to_be_bytes()),
        ],
    )
}

#[test]
fn tcp_new_event() {
    let evs = parse_datagram(&tcp_new());
    assert_eq!(evs.len(), 1);
    let ev = evs[0].as_ref().unwrap();
    assert_eq!(ev.event, CtEventType::New);
    assert_eq!(ev.family, AF_INET);
    assert_eq!(ev.orig.src, v4([10, 0, 0, 1]));
    assert_eq!(ev.orig.dst, v4([93, 184, 216, 34]));
    assert_eq!(
        (ev.orig.src_port, ev.orig.dst_port),
        (Some(40000), Some(443))
    );
    assert_eq!(ev.orig.proto, IPPROTO_TCP);
    assert_eq!(ev.reply.as_ref().unwrap().src_port, Some(443));
    assert_eq!(ev.status, Some(8));
    assert_eq!(ev.tcp_state.map(tcp_state_name), Some("syn_sent"));
    assert_eq!(ev.id, Some(0xdead_beef));
    assert_eq!(ev.counters_orig, None);
}

#[test]
fn destroy_with_counters_v6_udp() {
    let s: IpAddr = "fd00::1".parse().unwrap();
    let d: IpAddr = "fd00::53".parse().unwrap();
    let m = message(
        IPCTNL_MSG_CT_DELETE,
        0,
        AF_INET6,
        &[
            tuple(CTA_TUPLE_ORIG, s, d, IPPROTO_UDP, 5353, 53),
            tuple(CTA_TUPLE_REPLY, d, s, IPPROTO_UDP, 53, 5353),
            counters(CTA_COUNTERS_ORIG, 2, 120),
            counters(CTA_COUNTERS_REPLY, 3, u64::MAX),
        ],
    );
    let ev = parse_datagram(&m).remove(0).unwrap();
    assert_eq!(ev.event, CtEventType::Destroy);
    assert_eq!((ev.orig.src, ev.orig.dst), (s, d));
    assert_eq!(
        ev.counters_orig,
        Some(CtCounters {
            packets: 2,
            bytes: 120
        })
    );
    assert_eq!(ev.counters_reply.unwrap().bytes, u64::MAX);
    assert_eq!(ev.tcp_state, None);
}

#[test]
fn update_and_other_messages() {
    let m = message(
        IPCTNL_MSG_CT_NEW,
        0,
        AF_INET,
        &[tuple(CTA_TUPLE_ORIG, v4([1; 4]), v4([2; 4]), 6, 1, 2)],
    );
    assert_eq!(
        parse_datagram(&m)[0].as_ref().unwrap().event,
        CtEventType::Update
    );
    // NLMSG_DONE, an expectation message (subsys 2) and CT_GET (1) are not events.
    let mut buf = nlmsg::build(nlmsg::NLMSG_DONE, 0, 0, &[0; 4]);
    buf.extend(nlmsg::build(0x0200, 0, 0, &[2, 0, 0, 0]));
    buf.extend(nlmsg::build(ct_msg_type(1), 0, 0, &[2, 0, 0, 0]));
    assert!(parse_datagram(&buf).is_empty());
}

#[test]
fn several_messages_in_one_datagram() {
    let mut buf = tcp_new();
    buf.extend(tcp_new());
    assert_eq!(parse_datagram(&buf).len(), 2);
}

#[test]
fn icmp_tuple() {
    let ip = nested(
        CTA_TUPLE_IP,
        &[
            attr(CTA_IP_V4_SRC, &[127, 0, 0, 1]),
            attr(CTA_IP_V4_DST, &[127, 0, 0, 1]),
        ],
    );
    let proto = nested(
        CTA_TUPLE_PROTO,
        &[
            attr(CTA_PROTO_NUM, &[IPPROTO_ICMP]),
            attr(CTA_PROTO_ICMP_ID, &7u16.to_be_bytes()),
            attr(CTA_PROTO_ICMP_TYPE, &[8]),
            attr(CTA_PROTO_ICMP_CODE, &[0]),
        ],
    );
    let m = message(
        IPCTNL_MSG_CT_NEW,
        NLM_F_CREATE,
        AF_INET,
        &[nested(CTA_TUPLE_ORIG, &[ip, proto])],
    );
    let ev = parse_datagram(&m).remove(0).unwrap();
    assert_eq!(ev.orig.icmp, Some((8, 0, 7)));
    assert_eq!(ev.orig.src_port, None);
    assert_eq!(proto_name(ev.orig.proto), "icmp");
}

#[test]
fn errors_not_panics() {
    // No nfgenmsg.
    let m = nlmsg::build(ct_msg_type(0), NLM_F_CREATE, 0, &[2]);
    assert!(matches!(
        parse_datagram(&m)[0],
        Err(CtParseError::NoNfgenmsg { .. })
    ));
    // No orig tuple.
    let m = message(
        IPCTNL_MSG_CT_NEW,
        NLM_F_CREATE,
        AF_INET,
        &[attr(CTA_STATUS, &[0; 4])],
    );
    assert_eq!(parse_datagram(&m)[0], Err(CtParseError::NoOrigTuple));
    // A 3-byte status.
    let m = message(
        IPCTNL_MSG_CT_NEW,
        NLM_F_CREATE,
        AF_INET,
        &[attr(CTA_STATUS, &[0; 3])],
    );
    assert!(matches!(
        parse_datagram(&m)[0],
        Err(CtParseError::BadSize { .. })
    ));
    // A tuple without addresses.
    let m = message(
        IPCTNL_MSG_CT_NEW,
        NLM_F_CREATE,
        AF_INET,
        &[nested(
            CTA_TUPLE_ORIG,
            &[nested(CTA_TUPLE_PROTO, &[attr(CTA_PROTO_NUM, &[6])])],
        )],
    );
    assert!(matches!(
        parse_datagram(&m)[0],
        Err(CtParseError::IncompleteTuple(_))
    ));
    // An IPv4 address of 3 bytes.
    let m = message(
        IPCTNL_MSG_CT_NEW,
        NLM_F_CREATE,
        AF_INET,
        &[nested(
            CTA_TUPLE_ORIG,
            &[nested(CTA_TUPLE_IP, &[attr(CTA_IP_V4_SRC, &[1, 2, 3])])],
        )],
    );
    assert!(matches!(
        parse_datagram(&m)[0],
        Err(CtParseError::BadSize { .. })
    ));
}

#[test]
fn truncated_everywhere() {
    // Every prefix of a valid message, and every prefix with nlmsg_len patched to fit:
    // always an error or nothing, never a panic or a wrong success.
    let full = tcp_new();
    for n in 0..full.len() {
        let _ = parse_datagram(&full[..n]);
        let mut cut = full[..n].to_vec();
        if cut.len() >= 4 {
            cut[0..4].copy_from_slice(&(n as u32).to_ne_bytes());
            for ev in parse_datagram(&cut).into_iter().flatten() {
                // Only possible once the orig tuple is complete.
                assert_eq!(ev.orig.dst_port, Some(443));
            }
        }
    }
}

#[test]
fn bad_attribute_lengths() {
    let mut m = tcp_new();
    // First attribute after nlmsghdr (16) + nfgenmsg (4): claim a length of 2.
    m[20..22].copy_from_slice(&2u16.to_ne_bytes());
    assert!(matches!(
        parse_datagram(&m)[0],
        Err(CtParseError::BadAttr { .. })
    ));
    let mut m = tcp_new();
    m[20..22].copy_from_slice(&0xfff0u16.to_ne_bytes());
    assert!(matches!(
        parse_datagram(&m)[0],
        Err(CtParseError::BadAttr { .. })
    ));
}

#[test]
fn garbage() {
    let mut x: u32 = 0x1234_5678;
    for len in [0usize, 1, 15, 16, 20, 64, 300] {
        for _ in 0..200 {
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b.push(x as u8);
            }
            if b.len() >= 8 {
                // Make some of them look like ctnetlink.
                b[4] = (x & 3) as u8;
                b[5] = NFNL_SUBSYS_CTNETLINK;
            }
            let _ = parse_datagram(&b);
        }
    }
}

#[test]
fn attribute_walk_skips_padding() {
    let mut b = attr(1, &[1]);
    b.extend([0, 0]);
    let v: Vec<_> = attrs(&b).collect();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].as_ref().unwrap().payload, &[1]);
}
