//! Fuzzes the BTF parser and its lookups: they must return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::btf::Btf;

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = Btf::parse(data) {
        for (s, m) in [
            ("task_struct", "tgid"),
            ("mm_struct", "arg_start"),
            ("qstr", "name"),
        ] {
            let _ = btf.member_offset(s, m);
            let _ = btf.has_member(s, m);
            let _ = btf.struct_size(s);
        }
    }
});
