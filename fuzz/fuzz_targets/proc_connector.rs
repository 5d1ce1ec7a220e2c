//! Arbitrary bytes as a NETLINK_CONNECTOR datagram: the proc connector parser must never
//! panic, and an exit it reports must come from a PROC_EVENT_EXIT message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sources::audit::proc_connector::{parse, PROC_EVENT_EXIT};

// nlmsghdr (16) + cn_msg (20): where struct proc_event starts.
const EVENT_AT: usize = 36;

fuzz_target!(|data: &[u8]| {
    if let Some(n) = parse(data) {
        let what = u32::from_ne_bytes(data[EVENT_AT..EVENT_AT + 4].try_into().unwrap());
        assert_eq!(what, PROC_EVENT_EXIT);
        assert!(data.len() >= EVENT_AT + 16 + 16);
        let _ = n;
    }
});
