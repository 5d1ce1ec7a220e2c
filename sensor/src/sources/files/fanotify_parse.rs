//! Pure parser of what `read(2)` returns from a fanotify group: `fanotify_event_metadata`
//! records, each followed (in FID modes) by info records. No allocation, no alignment
//! assumptions (the kernel packs events on 4-byte boundaries, so the u64 `mask` of every
//! other event is unaligned), no panics on any input: it is fuzzed (`fuzz/fuzz_targets/
//! fanotify_parse.rs`).
//!
//! Written here rather than taken from a crate: fanotify-rs 0.3.1 misparses FID records
//! (docs/ARCHITECTURE.md#files), and the format is small and stable (uapi `linux/fanotify.h`):
//!
//! ```text
//! metadata  u32 event_len | u8 vers (3) | u8 reserved | u16 metadata_len | u64 mask | s32 fd | s32 pid
//! info hdr  u8 info_type | u8 pad | u16 len            (len covers the header and padding)
//! fid info  hdr | fsid [2 x s32] | u32 handle_bytes | s32 handle_type | handle | [name NUL] pad
//! pidfd     hdr | s32 pidfd
//! error     hdr | s32 error | u32 error_count
//! ```

/// `FANOTIFY_METADATA_VERSION`.
pub const METADATA_VERSION: u8 = 3;
/// `FAN_EVENT_METADATA_LEN`.
pub const METADATA_LEN: usize = 24;
/// `MAX_HANDLE_SZ`: the kernel never reports a larger handle.
pub const MAX_HANDLE_SZ: usize = 128;

pub const INFO_FID: u8 = 1;
pub const INFO_DFID_NAME: u8 = 2;
pub const INFO_DFID: u8 = 3;
pub const INFO_PIDFD: u8 = 4;
pub const INFO_ERROR: u8 = 5;
pub const INFO_OLD_DFID_NAME: u8 = 10;
pub const INFO_NEW_DFID_NAME: u8 = 12;

const INFO_HDR_LEN: usize = 4;
/// Header + fsid + handle_bytes + handle_type.
const FID_FIXED_LEN: usize = INFO_HDR_LEN + 8 + 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("truncated event: {have} bytes left, need {need}")]
    Truncated { need: usize, have: usize },
    #[error("fanotify metadata version {0}, expected {METADATA_VERSION}")]
    Version(u8),
    #[error("bad event_len {event_len} (metadata_len {metadata_len}, {remaining} bytes left)")]
    EventLen {
        event_len: u32,
        metadata_len: u16,
        remaining: usize,
    },
    #[error("info record type {info_type} at offset {offset}: bad length {len}")]
    InfoLen {
        info_type: u8,
        offset: usize,
        len: u16,
    },
    #[error("info record type {info_type}: file handle of {handle_bytes} bytes does not fit")]
    Handle { info_type: u8, handle_bytes: u32 },
    #[error("info record type {0} appears twice")]
    Duplicate(u8),
}

/// A file handle as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fid<'a> {
    pub fsid: [u8; 8],
    pub handle_type: i32,
    pub handle: &'a [u8],
    /// fsid through the end of the handle: a stable identity, usable as a cache key.
    pub key: &'a [u8],
}

/// A FID info record: an object (or its directory), plus the entry name for `*_DFID_NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FidInfo<'a> {
    pub fid: Fid<'a>,
    /// Entry name without the NUL (may be empty); None for FID / DFID records.
    pub name: Option<&'a [u8]>,
}

/// The info records of one event, by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Infos<'a> {
    /// `FAN_EVENT_INFO_TYPE_FID`: the object itself.
    pub fid: Option<FidInfo<'a>>,
    /// `DFID_NAME` (directory + entry name) or `DFID` (the directory, no name).
    pub dfid: Option<FidInfo<'a>>,
    /// `OLD_DFID_NAME` of a `FAN_RENAME`.
    pub old: Option<FidInfo<'a>>,
    /// `NEW_DFID_NAME` of a `FAN_RENAME`.
    pub new: Option<FidInfo<'a>>,
    pub pidfd: Option<i32>,
    /// `(error, error_count)` of a `FAN_FS_ERROR`.
    pub error: Option<(i32, u32)>,
    /// Records of types this parser does not know (skipped by their length).
    pub unknown: u16,
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    pub mask: u64,
    /// An open file descriptor in fd mode (the reader must close it); `FAN_NOFD` (-1) in FID
    /// modes and for overflow events.
    pub fd: i32,
    /// Acting process (thread-group id); 0 when it is outside our pid namespace.
    pub pid: i32,
    pub info: Infos<'a>,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Iterates the events of one `read(2)` buffer. A malformed info record fails only its own
/// event (the event length still tells where the next one starts); a malformed event header
/// ends the iteration after yielding its error, since nothing after it can be trusted.
pub fn events(buf: &[u8]) -> Events<'_> {
    Events { buf, done: false }
}

pub struct Events<'a> {
    buf: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<RawEvent<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.buf.is_empty() {
            return None;
        }
        let buf = self.buf;
        match event_len(buf) {
            Ok(len) => {
                self.buf = &buf[len..];
                Some(parse_event(&buf[..len]))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Validates the header at the start of `buf`; returns the event length.
fn event_len(buf: &[u8]) -> Result<usize, ParseError> {
    if buf.len() < METADATA_LEN {
        return Err(ParseError::Truncated {
            need: METADATA_LEN,
            have: buf.len(),
        });
    }
    let (Some(event_len), Some(vers), Some(metadata_len)) =
        (u32_at(buf, 0), buf.get(4).copied(), u16_at(buf, 6))
    else {
        return Err(ParseError::Truncated {
            need: METADATA_LEN,
            have: buf.len(),
        });
    };
    if vers != METADATA_VERSION {
        return Err(ParseError::Version(vers));
    }
    let len = event_len as usize;
    if (metadata_len as usize) < METADATA_LEN || len < metadata_len as usize || len > buf.len() {
        return Err(ParseError::EventLen {
            event_len,
            metadata_len,
            remaining: buf.len(),
        });
    }
    Ok(len)
}

/// Parses exactly one event (`ev.len()` must be its `event_len`).
pub fn parse_event(ev: &[u8]) -> Result<RawEvent<'_>, ParseError> {
    let len = event_len(ev)?;
    let ev = &ev[..len];
    let metadata_len = u16_at(ev, 6).unwrap_or(0) as usize;
    let (Some(mask), Some(fd), Some(pid)) = (u64_at(ev, 8), i32_at(ev, 16), i32_at(ev, 20)) else {
        return Err(ParseError::Truncated {
            need: METADATA_LEN,
            have: ev.len(),
        });
    };
    let mut info = Infos::default();
    let mut off = metadata_len;
    while off < ev.len() {
        let rec = &ev[off..];
        let (Some(&info_type), Some(rlen)) = (rec.first(), u16_at(rec, 2)) else {
            return Err(ParseError::Truncated {
                need: INFO_HDR_LEN,
                have: rec.len(),
            });
        };
        let bad_len = ParseError::InfoLen {
            info_type,
            offset: off,
            len: rlen,
        };
        if (rlen as usize) < INFO_HDR_LEN || rlen as usize > rec.len() {
            return Err(bad_len);
        }
        let rec = &rec[..rlen as usize];
        match info_type {
            INFO_FID | INFO_DFID | INFO_DFID_NAME | INFO_OLD_DFID_NAME | INFO_NEW_DFID_NAME => {
                let parsed = parse_fid(info_type, rec, off)?;
                let slot = match info_type {
                    INFO_FID => &mut info.fid,
                    INFO_OLD_DFID_NAME => &mut info.old,
                    INFO_NEW_DFID_NAME => &mut info.new,
                    _ => &mut info.dfid,
                };
                if slot.is_some() {
                    return Err(ParseError::Duplicate(info_type));
                }
                *slot = Some(parsed);
            }
            INFO_PIDFD => {
                let v = i32_at(rec, 4).ok_or(bad_len)?;
                if info.pidfd.replace(v).is_some() {
                    return Err(ParseError::Duplicate(info_type));
                }
            }
            INFO_ERROR => {
                let (Some(e), Some(n)) = (i32_at(rec, 4), u32_at(rec, 8)) else {
                    return Err(bad_len);
                };
                if info.error.replace((e, n)).is_some() {
                    return Err(ParseError::Duplicate(info_type));
                }
            }
            _ => info.unknown = info.unknown.saturating_add(1),
        }
        off += rlen as usize;
    }
    Ok(RawEvent {
        mask,
        fd,
        pid,
        info,
    })
}

fn parse_fid(info_type: u8, rec: &[u8], offset: usize) -> Result<FidInfo<'_>, ParseError> {
    if rec.len() < FID_FIXED_LEN {
        return Err(ParseError::InfoLen {
            info_type,
            offset,
            len: rec.len() as u16,
        });
    }
    let mut fsid = [0u8; 8];
    fsid.copy_from_slice(&rec[4..12]);
    let handle_bytes = u32_at(rec, 12).unwrap_or(0);
    let handle_type = i32_at(rec, 16).unwrap_or(0);
    let end = FID_FIXED_LEN.checked_add(handle_bytes as usize);
    let Some(end) = end.filter(|&e| e <= rec.len() && handle_bytes as usize <= MAX_HANDLE_SZ)
    else {
        return Err(ParseError::Handle {
            info_type,
            handle_bytes,
        });
    };
    let name = match info_type {
        INFO_DFID_NAME | INFO_OLD_DFID_NAME | INFO_NEW_DFID_NAME => {
            let tail = &rec[end..];
            Some(match tail.iter().position(|&b| b == 0) {
                Some(n) => &tail[..n],
                None => tail,
            })
        }
        _ => None,
    };
    Ok(FidInfo {
        fid: Fid {
            fsid,
            handle_type,
            handle: &rec[FID_FIXED_LEN..end],
            key: &rec[4..end],
        },
        name,
    })
}

/// The operations named by an event mask. Without `FAN_RENAME` a move arrives as two events:
/// `FAN_MOVED_FROM` reads as a rename of the old path (the new one is not in that event) and
/// `FAN_MOVED_TO` as a create of the new path. The kernel merges events on one object, so a
/// mask often names several operations.
pub fn ops_of_mask(mask: u64) -> super::OpSet {
    use super::OpSet;
    const MAP: [(u64, OpSet); 10] = [
        (libc::FAN_CREATE, OpSet::CREATE),
        (libc::FAN_MOVED_TO, OpSet::CREATE),
        (libc::FAN_OPEN, OpSet::OPEN),
        (libc::FAN_MODIFY, OpSet::MODIFY),
        (libc::FAN_ATTRIB, OpSet::ATTRIB),
        (libc::FAN_CLOSE_WRITE, OpSet::CLOSE_WRITE),
        (libc::FAN_CLOSE_NOWRITE, OpSet::CLOSE),
        (libc::FAN_RENAME, OpSet::RENAME),
        (libc::FAN_MOVED_FROM, OpSet::RENAME),
        (libc::FAN_DELETE, OpSet::DELETE),
    ];
    MAP.iter()
        .filter(|(bit, _)| mask & bit != 0)
        .fold(OpSet::EMPTY, |acc, (_, op)| acc | *op)
}

/// Builds event bytes for tests, benchmarks and fuzz seeds: metadata + the given info records
/// (each `(type, fsid, handle_type, handle, name)`), padded like the kernel pads them.
pub fn encode_event(mask: u64, fd: i32, pid: i32, infos: &[EncodeInfo<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(METADATA_VERSION);
    out.push(0);
    out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
    out.extend_from_slice(&mask.to_ne_bytes());
    out.extend_from_slice(&fd.to_ne_bytes());
    out.extend_from_slice(&pid.to_ne_bytes());
    for i in infos {
        let start = out.len();
        out.push(i.info_type);
        out.push(0);
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&i.fsid);
        out.extend_from_slice(&(i.handle.len() as u32).to_ne_bytes());
        out.extend_from_slice(&i.handle_type.to_ne_bytes());
        out.extend_from_slice(i.handle);
        if let Some(name) = i.name {
            out.extend_from_slice(name);
            out.push(0);
        }
        while (out.len() - start) % 4 != 0 {
            out.push(0);
        }
        let rlen = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&rlen.to_ne_bytes());
    }
    let len = out.len() as u32;
    out[0..4].copy_from_slice(&len.to_ne_bytes());
    out
}

/// One info record for [`encode_event`].
#[derive(Debug, Clone, Copy)]
pub struct EncodeInfo<'a> {
    pub info_type: u8,
    pub fsid: [u8; 8],
    pub handle_type: i32,
    pub handle: &'a [u8],
    pub name: Option<&'a [u8]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on this project's test VM (kernel 6.18, ext4): a child did
    /// open(O_CREAT)+write+close, chmod, rename a.txt -> b.txt, mkdir sub, unlink b.txt,
    /// rmdir sub, under a group with FAN_REPORT_DFID_NAME|FAN_REPORT_FID (no TARGET_FID, no
    /// FAN_RENAME; MOVED_FROM/TO subscribed). Shows the kernel merging events on one name.
    const NO_TARGET: &[u8] = include_bytes!("fixtures/fid_no_target.bin");
    /// Same workload with FAN_REPORT_TARGET_FID and FAN_RENAME.
    const TARGET_RENAME: &[u8] = include_bytes!("fixtures/fid_target_rename.bin");

    const FSID: [u8; 8] = [0xa4, 0xd0, 0x24, 0xb5, 0xf9, 0x3a, 0xa8, 0x77];
    const DIR_HANDLE: [u8; 8] = [0x03, 0x00, 0x21, 0x00, 0x9e, 0xb1, 0x68, 0xc0];

    fn all(buf: &[u8]) -> Vec<RawEvent<'_>> {
        events(buf).map(|e| e.unwrap()).collect()
    }

    #[test]
    fn kernel_fixture_without_target_fid() {
        let evs = all(NO_TARGET);
        assert_eq!(evs.len(), 5);
        let masks: Vec<u64> = evs.iter().map(|e| e.mask).collect();
        // CREATE|MOVED_FROM a.txt; MODIFY|ATTRIB|CLOSE_WRITE a.txt; MOVED_TO|DELETE b.txt;
        // CREATE|DELETE|ONDIR sub; ATTRIB (link count) on the unlinked inode.
        assert_eq!(masks, [0x140, 0x0e, 0x280, 0x4000_0300, 0x04]);
        assert!(evs.iter().all(|e| e.fd == -1 && e.pid == 0x0a2d));
        let d = evs[0].info.dfid.unwrap();
        assert_eq!(d.name, Some(&b"a.txt"[..]));
        assert_eq!(d.fid.fsid, FSID);
        assert_eq!(d.fid.handle_type, 1);
        assert_eq!(d.fid.handle, DIR_HANDLE);
        assert_eq!(d.fid.key.len(), 8 + 8 + 8);
        assert!(evs[0].info.fid.is_none(), "no child fid for dirent events");
        assert!(
            evs[1].info.fid.is_some(),
            "child fid for events on the file"
        );
        assert_eq!(evs[2].info.dfid.unwrap().name, Some(&b"b.txt"[..]));
        assert_eq!(evs[3].info.dfid.unwrap().name, Some(&b"sub"[..]));
        assert!(evs[4].info.dfid.is_none() && evs[4].info.fid.is_some());
        assert_eq!(evs[4].info.fid.unwrap().fid, evs[1].info.fid.unwrap().fid);
    }

    #[test]
    fn kernel_fixture_with_rename_records() {
        let evs = all(TARGET_RENAME);
        assert_eq!(evs.len(), 5);
        let r = &evs[1];
        assert_eq!(r.mask, 0x1000_0000, "FAN_RENAME");
        assert_eq!(r.info.old.unwrap().name, Some(&b"a.txt"[..]));
        assert_eq!(r.info.new.unwrap().name, Some(&b"b.txt"[..]));
        assert_eq!(r.info.old.unwrap().fid.handle, DIR_HANDLE);
        assert!(r.info.dfid.is_none());
        let child = r.info.fid.unwrap().fid;
        // With TARGET_FID the create event carries the child's fid too, the same object.
        assert_eq!(evs[0].info.fid.unwrap().fid, child);
        assert_eq!(evs[0].mask, 0x14e);
        // mkdir+rmdir merged, with the directory's own fid.
        assert_eq!(evs[3].mask, 0x4000_0300);
        assert_ne!(evs[3].info.fid.unwrap().fid.handle, child.handle);
    }

    #[test]
    fn encode_round_trips() {
        let bytes = encode_event(
            0x100,
            -1,
            42,
            &[
                EncodeInfo {
                    info_type: INFO_DFID_NAME,
                    fsid: FSID,
                    handle_type: 1,
                    handle: &DIR_HANDLE,
                    name: Some(b"bad\xffname"),
                },
                EncodeInfo {
                    info_type: INFO_FID,
                    fsid: FSID,
                    handle_type: 1,
                    handle: &[1, 2, 3, 4, 5, 6, 7, 8],
                    name: None,
                },
            ],
        );
        assert_eq!(bytes.len() % 4, 0);
        let ev = parse_event(&bytes).unwrap();
        assert_eq!((ev.mask, ev.fd, ev.pid), (0x100, -1, 42));
        assert_eq!(ev.info.dfid.unwrap().name, Some(&b"bad\xffname"[..]));
        assert_eq!(ev.info.fid.unwrap().fid.handle, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn fd_mode_events_have_no_infos() {
        let mut buf = encode_event(0x2, 7, 100, &[]);
        buf.extend(encode_event(0x8, 8, 100, &[]));
        let evs = all(&buf);
        assert_eq!(evs.len(), 2);
        assert_eq!((evs[1].fd, evs[1].info), (8, Infos::default()));
    }

    #[test]
    fn truncated_and_corrupt_buffers_fail_without_panic() {
        let good = TARGET_RENAME;
        for cut in 0..good.len() {
            let _ = events(&good[..cut]).count();
        }
        // A header cut short ends the iteration with one error.
        let r: Vec<_> = events(&good[..10]).collect();
        assert!(matches!(r[..], [Err(ParseError::Truncated { .. })]));
        // Wrong version.
        let mut v = good.to_vec();
        v[4] = 2;
        assert_eq!(events(&v).next().unwrap(), Err(ParseError::Version(2)));
        // event_len beyond the buffer / below the header.
        let mut v = good.to_vec();
        v[1] = 0xff;
        assert!(matches!(
            events(&v).next().unwrap(),
            Err(ParseError::EventLen { .. })
        ));
        v[1] = 0;
        v[0] = 4;
        assert!(matches!(
            events(&v).next().unwrap(),
            Err(ParseError::EventLen { .. })
        ));
    }

    #[test]
    fn bad_info_fails_only_its_event() {
        let mut bad = encode_event(
            0x100,
            -1,
            1,
            &[EncodeInfo {
                info_type: INFO_DFID_NAME,
                fsid: FSID,
                handle_type: 1,
                handle: &DIR_HANDLE,
                name: Some(b"x"),
            }],
        );
        // handle_bytes larger than the record.
        bad[METADATA_LEN + 12] = 200;
        let mut buf = bad.clone();
        buf.extend(encode_event(0x2, -1, 2, &[]));
        let r: Vec<_> = events(&buf).collect();
        assert!(matches!(r[0], Err(ParseError::Handle { .. })));
        assert_eq!(r[1].as_ref().unwrap().pid, 2);
        // Info length 0 would loop forever if accepted.
        let mut zero = bad.clone();
        zero[METADATA_LEN + 2] = 0;
        zero[METADATA_LEN + 3] = 0;
        assert!(matches!(
            parse_event(&zero),
            Err(ParseError::InfoLen { len: 0, .. })
        ));
        // Duplicate records.
        let info = EncodeInfo {
            info_type: INFO_FID,
            fsid: FSID,
            handle_type: 1,
            handle: &DIR_HANDLE,
            name: None,
        };
        let dup = encode_event(0x2, -1, 1, &[info, info]);
        assert_eq!(parse_event(&dup), Err(ParseError::Duplicate(INFO_FID)));
    }

    #[test]
    fn masks_to_ops() {
        use crate::sources::files::OpSet;
        assert_eq!(
            ops_of_mask(0x14e),
            OpSet::CREATE | OpSet::MODIFY | OpSet::ATTRIB | OpSet::CLOSE_WRITE | OpSet::RENAME
        );
        assert_eq!(ops_of_mask(0x4000_0300), OpSet::CREATE | OpSet::DELETE);
        assert_eq!(ops_of_mask(0x1000_0000), OpSet::RENAME);
        assert_eq!(ops_of_mask(0x30), OpSet::OPEN | OpSet::CLOSE);
        assert_eq!(ops_of_mask(libc::FAN_Q_OVERFLOW), OpSet::EMPTY);
        assert_eq!(ops_of_mask(0x80), OpSet::CREATE);
    }

    #[test]
    fn unknown_pidfd_and_error_records() {
        let mut ev = encode_event(0x8000, -1, 0, &[]);
        // pidfd record
        ev.extend_from_slice(&[INFO_PIDFD, 0, 8, 0]);
        ev.extend_from_slice(&5i32.to_ne_bytes());
        // error record
        ev.extend_from_slice(&[INFO_ERROR, 0, 12, 0]);
        ev.extend_from_slice(&(-5i32).to_ne_bytes());
        ev.extend_from_slice(&3u32.to_ne_bytes());
        // unknown record type 99
        ev.extend_from_slice(&[99, 0, 8, 0, 0, 0, 0, 0]);
        let len = ev.len() as u32;
        ev[0..4].copy_from_slice(&len.to_ne_bytes());
        let e = parse_event(&ev).unwrap();
        assert_eq!(e.info.pidfd, Some(5));
        assert_eq!(e.info.error, Some((-5, 3)));
        assert_eq!(e.info.unknown, 1);
    }
}
