//! Arbitrary bytes as ctnetlink / nftables netlink messages: parsing must never panic, and a
//! parsed event must convert to a flow event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sources::nlmsg;
use sensor::sources::conntrack::{msg, source::flow_event, tracking_table::parse_rule};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let datagram;
    let buf = match mode % 4 {
        // Raw datagram, framing included.
        0 => rest,
        // A well-framed NEW / DELETE / UPDATE message around fuzzed nfgenmsg + attributes, so
        // the attribute parser is reached quickly.
        m => {
            let (ty, flags) = match m {
                1 => (msg::IPCTNL_MSG_CT_NEW, msg::NLM_F_CREATE | msg::NLM_F_EXCL),
                2 => (msg::IPCTNL_MSG_CT_DELETE, 0),
                _ => (msg::IPCTNL_MSG_CT_NEW, 0),
            };
            datagram = nlmsg::build(msg::ct_msg_type(ty), flags, 0, rest);
            &datagram[..]
        }
    };
    for ev in msg::parse_datagram(buf).into_iter().flatten() {
        let _ = flow_event(&ev, "fuzz", 0, 0);
    }
    let _ = parse_rule(rest);
});
