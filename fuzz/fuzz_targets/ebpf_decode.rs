//! Arbitrary bytes as a ring-buffer record: decode and normalize must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sources::ebpf::{decode::decode, normalize::normalize};
use sensor::timefmt::Clocks;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = decode(data) {
        let clocks = Clocks {
            mono_to_unix: 0,
            boot_to_unix: 0,
        };
        let _ = normalize(&record, &clocks, "fuzz");
    }
});
