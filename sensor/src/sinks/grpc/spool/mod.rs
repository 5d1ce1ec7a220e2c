//! The disk spool: every batch is written here before it is sent, and deleted only after
//! the collector acknowledged it.
//!
//! Layout: `<dir>/segments/<20-digit id>.seg`, each starting with the magic `SNSPOOL1`,
//! followed by frames:
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of (flags ++ payload) | u32 LE flags | payload
//! ```
//!
//! The payload is an encoded `sensor.v1.Batch` (its `batch_id` is the spool's id for it).
//! Frames are appended with one `write` each; the newest segment is the only one written.
//!
//! - Acknowledgements are kept in memory only. A segment is deleted once all its batches
//!   are acknowledged; after a restart the remaining batches of a partly acknowledged
//!   segment are sent again and the collector de-duplicates them.
//! - Recovery (at open) scans every segment, stops at the first frame that is short, fails
//!   its CRC or does not decode, and truncates the file there (a torn tail).
//! - fsync policy ([`FsyncPolicy`]): the page cache survives `kill -9`, so every policy
//!   loses nothing on a process crash; they differ on power loss. `interval` (default)
//!   fdatasyncs the active segment at most once per interval and when it is sealed,
//!   `always` after every batch, `never` leaves it to the kernel.
//! - Bounded by bytes: when a new batch does not fit, the oldest segments are evicted and
//!   their unacknowledged events counted as drops per kind. Exit events are not preferred
//!   for eviction: those of an evicted segment are copied into a "rescued" batch at the
//!   tail (process trees depend on them). A rescued batch evicted again is dropped.
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use sensor_proto::v1 as pb;

mod frame;
mod kinds;
mod recover;
#[cfg(test)]
mod tests;

pub use frame::{
    encode_frame, scan_frames, Frame, FLAG_RESCUED, FRAME_HEADER, MAGIC, MAX_FRAME_PAYLOAD,
};
use frame::{frame_crc, segment_name};
use kinds::slot_of_raw;
pub use kinds::{slot_of, KindCounts, EVICTED_NAMES, KIND_SLOTS};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool: batch {0} is not in the spool")]
    Unknown(u64),
    #[error("spool: batch {batch_id} in {path} is corrupt: {reason}")]
    Corrupt {
        batch_id: u64,
        path: PathBuf,
        reason: String,
    },
    #[error("spool: a batch of {0} bytes can never fit")]
    TooLarge(u64),
    #[error("spool: {0}")]
    Fs(#[from] crate::safefs::SafeFsError),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    Always,
    Interval(Duration),
    Never,
}

impl FsyncPolicy {
    /// "always" | "interval" | "never" (interval length set separately).
    pub fn parse(s: &str) -> Option<fn(Duration) -> FsyncPolicy> {
        match s {
            "always" => Some(|_| FsyncPolicy::Always),
            "interval" => Some(FsyncPolicy::Interval),
            "never" => Some(|_| FsyncPolicy::Never),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SpoolOptions {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

#[derive(Debug, Clone)]
struct BatchMeta {
    batch_id: u64,
    offset: u64,
    len: u32,
    boot: Arc<str>,
    last_seq: u64,
    kinds: KindCounts,
    acked: bool,
    /// When it was written (ms since the epoch); for recovered batches, the segment file's
    /// modification time, so their age is a lower bound.
    written_unix_ms: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    bytes: u64,
    batches: Vec<BatchMeta>,
    unacked: usize,
    /// Open for append: only the newest segment, until sealed.
    file: Option<File>,
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    pub batches: u64,
    pub events: u64,
    /// Bytes cut from torn or corrupt tails.
    pub truncated_bytes: u64,
    /// Frames lost to corruption or a torn write.
    pub corrupt_batches: u64,
}

/// What an append evicted to make room.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub segments: usize,
    /// Unacknowledged events lost, by kind (rescued exits are not in here).
    pub lost: KindCounts,
    /// Exit events copied to the tail instead of being lost.
    pub rescued_exits: u64,
}

/// A batch just written.
#[derive(Debug)]
pub struct Appended {
    pub batch_id: u64,
    pub eviction: Eviction,
    /// The encoded `sensor.v1.Batch`.
    pub payload: Vec<u8>,
}

/// A batch waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub batch_id: u64,
    pub events: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    opts: SpoolOptions,
    segments: VecDeque<Segment>,
    next_segment_id: u64,
    next_batch_id: u64,
    total_bytes: u64,
    pending_events: u64,
    pending_batches: u64,
    dirty: bool,
    last_sync: Instant,
    boots: Vec<Arc<str>>,
}

impl Spool {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
    pub fn pending_events(&self) -> u64 {
        self.pending_events
    }
    pub fn pending_batches(&self) -> u64 {
        self.pending_batches
    }
    /// When the oldest unacknowledged batch was written (ms since the epoch).
    pub fn oldest_pending_unix_ms(&self) -> Option<u64> {
        self.segments
            .iter()
            .flat_map(|s| s.batches.iter())
            .find(|b| !b.acked)
            .map(|b| b.written_unix_ms)
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Highest seq of `boot` still in the spool (0 when none).
    pub fn max_seq_for_boot(&self, boot: &str) -> u64 {
        self.segments
            .iter()
            .flat_map(|s| s.batches.iter())
            .filter(|b| &*b.boot == boot)
            .map(|b| b.last_seq)
            .max()
            .unwrap_or(0)
    }

    /// Writes `batch` (setting its `batch_id`), evicting old segments when it does not fit.
    /// Returns the encoded batch too: it is what goes on the wire.
    pub fn append(&mut self, batch: &mut pb::Batch) -> Result<Appended, SpoolError> {
        // Room first (evicting may append rescued batches, which take batch ids), with the
        // size bounded by the longest batch id encoding.
        batch.batch_id = u64::MAX;
        let need = (FRAME_HEADER + batch.encoded_len()) as u64;
        if need > self.opts.max_bytes / 2 {
            return Err(SpoolError::TooLarge(need));
        }
        let eviction = self.make_room(need)?;
        batch.batch_id = self.next_batch_id;
        let payload = batch.encode_to_vec();
        let kinds = KindCounts::of(&batch.events);
        let last_seq = batch.events.iter().map(|e| e.seq).max().unwrap_or(0);
        let batch_id = self.write_frame(0, &payload, &batch.boot_id, kinds, last_seq)?;
        debug_assert_eq!(
            batch_id, batch.batch_id,
            "the frame's batch id is its index"
        );
        Ok(Appended {
            batch_id,
            eviction,
            payload,
        })
    }

    fn write_frame(
        &mut self,
        flags: u32,
        payload: &[u8],
        boot: &str,
        kinds: KindCounts,
        last_seq: u64,
    ) -> Result<u64, SpoolError> {
        let frame = encode_frame(flags, payload);
        let need = frame.len() as u64;
        let rotate = self.segments.back().is_none_or(|s| {
            s.file.is_none() || (s.bytes + need > self.opts.segment_bytes && !s.batches.is_empty())
        });
        if rotate {
            self.seal_active()?;
            self.new_segment()?;
        }
        let boot = self.intern_boot(boot);
        let batch_id = self.next_batch_id;
        let policy = self.opts.fsync;
        let seg = self.segments.back_mut().expect("active segment exists");
        let file = seg.file.as_mut().expect("active segment is open");
        let written = file.write_all(&frame).map_err(io("write", &seg.path));
        let written = match written {
            Ok(()) if policy == FsyncPolicy::Always => {
                file.sync_data().map_err(io("fdatasync", &seg.path))
            }
            other => other,
        };
        if let Err(e) = written {
            // A short write (disk full) leaves part of a frame: cut the file back to the
            // last whole frame, so the next frame lands where the index says it is. If even
            // that fails, the segment is closed (recovery cuts its torn tail) and the next
            // frame starts a new one.
            if file.set_len(seg.bytes).is_err() {
                tracing::error!(path = %seg.path.display(), "cannot cut a partial frame; closing the segment");
                seg.file = None;
            }
            return Err(e);
        }
        if policy != FsyncPolicy::Always {
            self.dirty = true;
        }
        seg.batches.push(BatchMeta {
            batch_id,
            offset: seg.bytes,
            len: payload.len() as u32,
            boot,
            last_seq,
            kinds,
            acked: false,
            written_unix_ms: now_unix_ms(),
        });
        seg.unacked += 1;
        seg.bytes += need;
        self.total_bytes += need;
        self.pending_batches += 1;
        self.pending_events += kinds.total();
        self.next_batch_id += 1;
        Ok(batch_id)
    }

    fn new_segment(&mut self) -> Result<(), SpoolError> {
        let id = self.next_segment_id;
        self.next_segment_id += 1;
        let path = self.dir.join(segment_name(id));
        // O_EXCL | O_NOFOLLOW, 0600: spooled events are nobody else's to read.
        let mut file = crate::safefs::create_new(&path, 0o600)?;
        if let Err(e) = file.write_all(MAGIC) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(io("write", &path)(e));
        }
        if self.opts.fsync != FsyncPolicy::Never {
            // The new name must survive a power loss too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        self.total_bytes += MAGIC.len() as u64;
        self.segments.push_back(Segment {
            id,
            path,
            bytes: MAGIC.len() as u64,
            batches: Vec::new(),
            unacked: 0,
            file: Some(file),
        });
        Ok(())
    }

    /// Closes the active segment for writing (fsyncing it unless the policy is `never`).
    fn seal_active(&mut self) -> Result<(), SpoolError> {
        let policy = self.opts.fsync;
        if let Some(seg) = self.segments.back_mut() {
            if let Some(f) = seg.file.take() {
                if policy != FsyncPolicy::Never {
                    f.sync_data().map_err(io("fdatasync", &seg.path))?;
                }
            }
        }
        self.dirty = false;
        Ok(())
    }

    /// Evicts oldest segments until `need` more bytes fit.
    fn make_room(&mut self, need: u64) -> Result<Eviction, SpoolError> {
        let mut ev = Eviction::default();
        let mut rescue: Vec<pb::Batch> = Vec::new();
        let mut rescue_bytes = 0u64;
        while self.total_bytes + need + rescue_bytes + MAGIC.len() as u64 > self.opts.max_bytes {
            if self.segments.is_empty() {
                break;
            }
            if self.segments.len() == 1 {
                self.seal_active()?;
            }
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            let (lost, exits) = self.evict(seg)?;
            ev.segments += 1;
            ev.lost.add(&lost);
            for b in exits {
                let n = b.events.len() as u64;
                // A rescue frame may open a new segment: count its header too.
                let bytes = (FRAME_HEADER + MAGIC.len() + b.encoded_len()) as u64;
                // Rescue only while it costs at most a quarter of the spool; beyond that
                // the exits are lost like everything else (and counted).
                if rescue_bytes + bytes <= self.opts.max_bytes / 4 {
                    rescue_bytes += bytes;
                    ev.rescued_exits += n;
                    rescue.push(b);
                } else {
                    ev.lost.0[slot_of(pb::Kind::ProcessExit)] += n;
                }
            }
        }
        for mut b in rescue {
            b.batch_id = self.next_batch_id;
            let payload = b.encode_to_vec();
            let kinds = KindCounts::of(&b.events);
            let last_seq = b.events.iter().map(|e| e.seq).max().unwrap_or(0);
            self.write_frame(FLAG_RESCUED, &payload, &b.boot_id, kinds, last_seq)?;
        }
        if ev.segments > 0 {
            tracing::warn!(
                segments = ev.segments,
                lost_events = ev.lost.total(),
                lost_exits = ev.lost.get(pb::Kind::ProcessExit),
                rescued_exits = ev.rescued_exits,
                "spool full: evicted the oldest unacknowledged events"
            );
        }
        Ok(ev)
    }

    /// Deletes `seg`; returns its unacknowledged events by kind (minus exits that are to be
    /// rescued) and the rescue batches of those exits.
    fn evict(&mut self, seg: Segment) -> Result<(KindCounts, Vec<pb::Batch>), SpoolError> {
        let mut lost = KindCounts::default();
        let mut rescue = Vec::new();
        let data = if seg.unacked > 0 {
            std::fs::read(&seg.path).unwrap_or_default()
        } else {
            Vec::new()
        };
        for b in seg.batches.iter().filter(|b| !b.acked) {
            self.pending_batches -= 1;
            self.pending_events -= b.kinds.total();
            let start = b.offset as usize;
            let frame = data.get(start..start + FRAME_HEADER + b.len as usize);
            let flags = frame.map_or(0, |f| u32::from_le_bytes([f[8], f[9], f[10], f[11]]));
            let decoded = frame.and_then(|f| pb::Batch::decode(&f[FRAME_HEADER..]).ok());
            match decoded {
                Some(mut batch) if flags & FLAG_RESCUED == 0 => {
                    let exit = pb::Kind::ProcessExit as i32;
                    batch.events.retain(|e| {
                        if e.kind == exit {
                            true
                        } else {
                            lost.0[slot_of_raw(e.kind)] += 1;
                            false
                        }
                    });
                    if !batch.events.is_empty() {
                        batch.first_seq = batch.events[0].seq;
                        rescue.push(batch);
                    }
                }
                _ => lost.add(&b.kinds),
            }
        }
        self.total_bytes -= seg.bytes;
        drop(seg.file);
        std::fs::remove_file(&seg.path).map_err(io("remove", &seg.path))?;
        Ok((lost, rescue))
    }

    fn locate(&self, batch_id: u64) -> Option<(usize, usize)> {
        // Batch ids increase through the segments.
        let si = self
            .segments
            .partition_point(|s| s.batches.first().is_some_and(|b| b.batch_id <= batch_id));
        let si = si.checked_sub(1)?;
        let bi = self.segments[si]
            .batches
            .binary_search_by_key(&batch_id, |b| b.batch_id)
            .ok()?;
        Some((si, bi))
    }

    /// Marks `batch_id` acknowledged; deletes its segment when nothing in it is pending.
    /// Returns the number of events acknowledged, `None` when the batch is unknown (evicted,
    /// or acknowledged before).
    pub fn ack(&mut self, batch_id: u64) -> Result<Option<u64>, SpoolError> {
        let Some((si, bi)) = self.locate(batch_id) else {
            return Ok(None);
        };
        let seg = &mut self.segments[si];
        let b = &mut seg.batches[bi];
        if b.acked {
            return Ok(None);
        }
        b.acked = true;
        let n = b.kinds.total();
        seg.unacked -= 1;
        self.pending_batches -= 1;
        self.pending_events -= n;
        if seg.unacked == 0 {
            let seg = self.segments.remove(si).expect("index is valid");
            self.total_bytes -= seg.bytes;
            drop(seg.file);
            std::fs::remove_file(&seg.path).map_err(io("remove", &seg.path))?;
        }
        Ok(Some(n))
    }

    /// The oldest pending batch with an id above `after` (`None`: from the start).
    pub fn next_pending(&self, after: Option<u64>) -> Option<Pending> {
        let start = match after {
            None => 0,
            Some(a) => self
                .segments
                .partition_point(|s| s.batches.last().is_some_and(|b| b.batch_id <= a)),
        };
        self.segments
            .iter()
            .skip(start)
            .flat_map(|s| s.batches.iter())
            .find(|b| !b.acked && after.is_none_or(|a| b.batch_id > a))
            .map(|b| Pending {
                batch_id: b.batch_id,
                events: b.kinds.total(),
            })
    }

    pub fn is_pending(&self, batch_id: u64) -> bool {
        self.locate(batch_id)
            .is_some_and(|(si, bi)| !self.segments[si].batches[bi].acked)
    }

    /// Reads a pending batch back from disk, still encoded (CRC checked).
    pub fn read_payload(&self, batch_id: u64) -> Result<Vec<u8>, SpoolError> {
        let (si, bi) = self.locate(batch_id).ok_or(SpoolError::Unknown(batch_id))?;
        let seg = &self.segments[si];
        let meta = &seg.batches[bi];
        let mut buf = vec![0u8; FRAME_HEADER + meta.len as usize];
        match &seg.file {
            Some(f) => f.read_exact_at(&mut buf, meta.offset),
            None => crate::safefs::open_existing(&seg.path, false)
                .map_err(crate::safefs::SafeFsError::into_io)
                .and_then(|f| f.read_exact_at(&mut buf, meta.offset)),
        }
        .map_err(io("read", &seg.path))?;
        let flags = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if frame_crc(flags, &buf[FRAME_HEADER..]) != crc {
            return Err(SpoolError::Corrupt {
                batch_id,
                path: seg.path.clone(),
                reason: "CRC mismatch".into(),
            });
        }
        buf.drain(..FRAME_HEADER);
        Ok(buf)
    }

    /// Reads a pending batch back from disk, decoded.
    pub fn read(&self, batch_id: u64) -> Result<pb::Batch, SpoolError> {
        let payload = self.read_payload(batch_id)?;
        pb::Batch::decode(payload.as_slice()).map_err(|e| SpoolError::Corrupt {
            batch_id,
            path: self.dir.clone(),
            reason: e.to_string(),
        })
    }

    /// When the interval policy wants the next fdatasync (`None`: nothing to sync).
    pub fn sync_due(&self) -> Option<Instant> {
        match self.opts.fsync {
            FsyncPolicy::Interval(d) if self.dirty => Some(self.last_sync + d),
            _ => None,
        }
    }

    /// fdatasyncs the active segment if something was written since the last sync.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.dirty {
            if let Some(seg) = self.segments.back() {
                if let Some(f) = &seg.file {
                    f.sync_data().map_err(io("fdatasync", &seg.path))?;
                }
            }
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Ids of the segment files, oldest first (tests and diagnostics).
    pub fn segment_ids(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.id).collect()
    }
}

fn system_time_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_unix_ms() -> u64 {
    (crate::timefmt::unix_now_ns() / 1_000_000) as u64
}
