//! Arbitrary bytes as a spool segment: `scan_frames` must never panic, every frame it returns
//! must lie inside the good part, and the good part must end where the scan said.
//!
//! Input: the first byte picks raw bytes (magic included, so CRC-failing frames are tried) or
//! a list of `[flags][len: u16 le][payload]` pieces framed with valid CRCs after the magic, so
//! mutations reach the batch decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sensor::sinks::grpc::spool::{encode_frame, scan_frames, FRAME_HEADER, MAGIC};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let owned;
    let seg: &[u8] = if mode & 1 == 0 {
        rest
    } else {
        let mut s = MAGIC.to_vec();
        let mut r = rest;
        while r.len() >= 3 {
            let flags = u32::from(r[0] & 3);
            let len = usize::from(u16::from_le_bytes([r[1], r[2]])).min(r.len() - 3);
            s.extend_from_slice(&encode_frame(flags, &r[3..3 + len]));
            r = &r[3 + len..];
        }
        s.extend_from_slice(r);
        owned = s;
        &owned
    };
    let (frames, good, torn) = scan_frames(seg);
    assert!(good <= seg.len());
    assert_eq!(torn, good != seg.len());
    let mut end = MAGIC.len();
    for f in &frames {
        assert_eq!(f.offset as usize, end, "frames must be contiguous");
        end = f.offset as usize + FRAME_HEADER + f.len as usize;
        assert!(end <= good);
    }
    if !frames.is_empty() {
        assert_eq!(end, good);
    }
});
