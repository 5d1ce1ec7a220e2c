//! Arbitrary (type, payload) sequences through audit record parsing, grouping by serial and
//! normalization: none of it may panic, the assembler must stay within its bounds, and
//! `Record::get_many` must agree with `Record::get`.
//!
//! Input: repeated `[selector][len: u16 le][payload]`. A selector below 0xF0 picks one of the
//! known record types (so most inputs reach the strict parsers and the normalizer); otherwise
//! two more bytes give a raw type. The clock advances with each record so timeouts fire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sources::audit::{
    assemble::{Assembler, Group},
    normalize::try_to_events,
    record::parse,
};

const KNOWN: &[u16] = &[
    1300, 1302, 1303, 1304, 1305, 1306, 1307, 1309, 1320, 1321, 1327, 1701, 1100, 1101, 1103, 1105,
    1106, 1112, 1006, 1400,
];

fn check(groups: Vec<Group>) {
    for g in &groups {
        assert!(!g.records.is_empty());
        assert!(g.records.iter().all(|r| r.serial == g.serial));
        let resolver = |_pid: u32, fd: i32| u16::try_from(fd & 7).ok();
        let _ = try_to_events(g, "fuzz", &resolver);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut asm = Assembler::new(4, 50).with_byte_limits(4096, 16 * 1024);
    let mut now = 0u64;
    let mut rest = data;
    while let Some((&sel, tail)) = rest.split_first() {
        let (rtype, tail) = if sel < 0xF0 {
            (KNOWN[usize::from(sel) % KNOWN.len()], tail)
        } else if tail.len() >= 2 {
            (u16::from_le_bytes([tail[0], tail[1]]), &tail[2..])
        } else {
            break;
        };
        if tail.len() < 2 {
            break;
        }
        let len = usize::from(u16::from_le_bytes([tail[0], tail[1]])).min(tail.len() - 2);
        let payload = &tail[2..2 + len];
        rest = &tail[2 + len..];
        now += u64::from(sel & 0x1f);
        if let Ok(rec) = parse(rtype, payload) {
            // The one-pass lookup agrees with one lookup per key.
            let keys = ["pid", "arch", "syscall", "a0", "exe", "item", "msg"];
            for (k, v) in keys.iter().zip(rec.get_many(keys)) {
                assert_eq!(v, rec.get(k));
            }
            check(asm.push(rec, now));
        }
        assert!(asm.open_groups() <= 4);
    }
    check(asm.flush_expired(now + 10));
    check(asm.flush_all());
    assert_eq!(asm.open_groups(), 0);
});
