//! The segment file format: the magic, the frame header, and the pure scan that finds where
//! the good frames of a segment end (see the module note in `mod.rs`).
use prost::Message as _;
use sensor_proto::v1 as pb;

pub const MAGIC: &[u8; 8] = b"SNSPOOL1";
pub const FRAME_HEADER: usize = 12;
/// The frame holds exit events rescued from an evicted segment.
pub const FLAG_RESCUED: u32 = 1;
/// Larger length fields are corruption.
pub const MAX_FRAME_PAYLOAD: u32 = 256 * 1024 * 1024;

pub(super) fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// One good frame found by [`scan_frames`].
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub offset: u64,
    pub len: u32,
    pub flags: u32,
    pub batch: pb::Batch,
}

/// Parses frames from a segment's bytes: the good frames, where the good part ends, and
/// whether anything after it was torn or corrupt. Pure, so torn and corrupt tails are
/// unit-tested without files.
pub fn scan_frames(data: &[u8]) -> (Vec<Frame>, usize, bool) {
    let mut out = Vec::new();
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return (out, 0, !data.is_empty());
    }
    let mut off = MAGIC.len();
    loop {
        if off == data.len() {
            return (out, off, false);
        }
        let Some(h) = data.get(off..off + FRAME_HEADER) else {
            return (out, off, true);
        };
        let len = u32::from_le_bytes(h[0..4].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(h[4..8].try_into().unwrap_or_default());
        let flags = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
        if len > MAX_FRAME_PAYLOAD {
            return (out, off, true);
        }
        let start = off + FRAME_HEADER;
        let Some(payload) = data.get(start..start + len as usize) else {
            return (out, off, true);
        };
        if frame_crc(flags, payload) != crc {
            return (out, off, true);
        }
        let Ok(batch) = pb::Batch::decode(payload) else {
            return (out, off, true);
        };
        out.push(Frame {
            offset: off as u64,
            len,
            flags,
            batch,
        });
        off = start + len as usize;
    }
}

pub(super) fn frame_crc(flags: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&flags.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Header and payload of one frame, ready for a single write.
pub fn encode_frame(flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEADER + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&frame_crc(flags, payload).to_le_bytes());
    f.extend_from_slice(&flags.to_le_bytes());
    f.extend_from_slice(payload);
    f
}
