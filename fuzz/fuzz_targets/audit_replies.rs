//! Arbitrary bytes as a NETLINK_AUDIT control reply datagram (AUDIT_GET status, the
//! AUDIT_LIST_RULES dump, acks and errors) and as a record datagram: walking the messages and
//! parsing the status, the rules and the error codes must never panic, and every message
//! payload lies inside the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sources::audit::status::{parse_audit_get_reply, parse_audit_status};
use sensor::sources::nlmsg::{self, NLMSG_ERROR};
use sensor::sources::audit::rules::Rule;

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    for m in nlmsg::messages(data).into_iter().flatten() {
        assert!(
            m.payload.is_empty()
                || (range.start <= m.payload.as_ptr() && m.payload.as_ptr_range().end <= range.end)
        );
        if m.msg_type == NLMSG_ERROR {
            let _ = nlmsg::error_code(m.payload);
        }
        let _ = parse_audit_status(m.payload);
        if let Ok(rule) = Rule::parse(m.payload) {
            let _ = Rule::parse(&rule.to_bytes());
        }
    }
    let seq = data
        .get(8..12)
        .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap()));
    let _ = parse_audit_get_reply(data, seq);
    if let Ok(rec) = nlmsg::record(data) {
        let _ = sensor::sources::audit::record::parse(rec.msg_type, rec.payload);
    }
});
