//! Arbitrary bytes as an inotify read buffer: the parser must never panic, every name it
//! returns lies inside the buffer and holds no NUL, and a complete parse accounts for every
//! byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sources::files::inotify::{ops_of_mask, parse_events};

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    let (events, complete) = parse_events(data);
    assert!(events.len() <= data.len() / 16);
    for ev in &events {
        let _ = ops_of_mask(ev.mask);
        assert!(
            ev.name.is_empty()
                || (range.start <= ev.name.as_ptr() && ev.name.as_ptr_range().end <= range.end)
        );
        assert!(!ev.name.contains(&0));
    }
    if data.is_empty() {
        assert!(complete && events.is_empty());
    }
});
