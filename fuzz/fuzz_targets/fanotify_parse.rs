//! Arbitrary bytes as a fanotify read buffer: the parser must never panic, never loop, and
//! every record it returns must lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sources::files::fanotify_parse::{events, ops_of_mask};

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    let inside =
        |s: &[u8]| s.is_empty() || (range.start <= s.as_ptr() && s.as_ptr_range().end <= range.end);
    let mut n = 0usize;
    for ev in events(data) {
        n += 1;
        assert!(
            n <= data.len() / 24 + 1,
            "more events than the input can hold"
        );
        let Ok(ev) = ev else { continue };
        let _ = ops_of_mask(ev.mask);
        for fi in [ev.info.fid, ev.info.dfid, ev.info.old, ev.info.new]
            .into_iter()
            .flatten()
        {
            assert!(inside(fi.fid.handle) && inside(fi.fid.key));
            assert!(fi.fid.handle.len() <= 128);
            if let Some(name) = fi.name {
                assert!(inside(name));
                assert!(!name.contains(&0));
            }
        }
    }
});
