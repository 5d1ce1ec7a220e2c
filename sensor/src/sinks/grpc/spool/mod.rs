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

pub const MAGIC: &[u8; 8] = b"SNSPOOL1";
pub const FRAME_HEADER: usize = 12;
/// The frame holds exit events rescued from an evicted segment.
pub const FLAG_RESCUED: u32 = 1;
/// Larger length fields are corruption.
pub const MAX_FRAME_PAYLOAD: u32 = 256 * 1024 * 1024;

/// One counter per `sensor.v1.Kind` value (the index is the enum value).
pub const KIND_SLOTS: usize = 11;

pub const EVICTED_NAMES: [&str; KIND_SLOTS] = [
    "spool_evicted_unspecified",
    "spool_evicted_process_exec",
    "spool_evicted_process_exit",
    "spool_evicted_net_connect",
    "spool_evicted_file",
    "spool_evicted_login",
    "spool_evicted_logout",
    "spool_evicted_login_failed",
    "spool_evicted_privilege_change",
    "spool_evicted_flow",
    "spool_evicted_sensor_health",
];

pub fn slot_of(kind: pb::Kind) -> usize {
    (kind as usize).min(KIND_SLOTS - 1)
}

fn slot_of_raw(kind: i32) -> usize {
    pb::Kind::try_from(kind).map(slot_of).unwrap_or(0)
}

/// Events per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts(pub [u64; KIND_SLOTS]);

impl KindCounts {
    pub fn of(events: &[pb::Event]) -> Self {
        let mut c = Self::default();
        for e in events {
            c.0[slot_of_raw(e.kind)] += 1;
        }
        c
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    pub fn get(&self, k: pb::Kind) -> u64 {
        self.0[slot_of(k)]
    }
    pub fn add(&mut self, o: &KindCounts) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
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

fn segment_name(id: u64) -> String {
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

fn frame_crc(flags: u32, payload: &[u8]) -> u32 {
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

impl Spool {
    /// Opens `dir` (creating it), recovering what an earlier run left.
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<(Spool, Recovery), SpoolError> {
        let seg_dir = dir.join("segments");
        crate::safefs::ensure_dir(dir, 0o700)?;
        crate::safefs::ensure_dir(&seg_dir, 0o700)?;
        let mut ids: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(&seg_dir).map_err(io("read", &seg_dir))? {
            let entry = entry.map_err(io("read", &seg_dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
                ids.push(id);
            } else if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        ids.sort_unstable();
        let mut spool = Spool {
            dir: seg_dir,
            opts,
            segments: VecDeque::new(),
            next_segment_id: ids.last().map_or(1, |l| l + 1),
            next_batch_id: 1,
            total_bytes: 0,
            pending_events: 0,
            pending_batches: 0,
            dirty: false,
            last_sync: Instant::now(),
            boots: Vec::new(),
        };
        let mut rec = Recovery::default();
        for id in ids {
            spool.recover_segment(id, &mut rec)?;
        }
        Ok((spool, rec))
    }

    fn intern_boot(&mut self, boot: &str) -> Arc<str> {
        if let Some(b) = self.boots.iter().find(|b| &***b == boot) {
            return b.clone();
        }
        let b: Arc<str> = Arc::from(boot);
        self.boots.push(b.clone());
        b
    }

    fn recover_segment(&mut self, id: u64, rec: &mut Recovery) -> Result<(), SpoolError> {
        let path = self.dir.join(segment_name(id));
        let data = crate::safefs::read(&path)?;
        let (frames, good, torn) = scan_frames(&data);
        if torn {
            rec.truncated_bytes += (data.len() - good) as u64;
            rec.corrupt_batches += 1;
            tracing::warn!(path = %path.display(), at = good, cut = data.len() - good,
                "spool segment has a torn or corrupt tail; truncating");
        }
        if frames.is_empty() {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
            return Ok(());
        }
        if torn {
            let f = crate::safefs::open_existing(&path, true)?;
            f.set_len(good as u64).map_err(io("truncate", &path))?;
            f.sync_all().map_err(io("fsync", &path))?;
        }
        let written_unix_ms = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(system_time_ms)
            .unwrap_or_else(|_| now_unix_ms());
        let mut seg = Segment {
            id,
            path,
            bytes: good as u64,
            batches: Vec::with_capacity(frames.len()),
            unacked: 0,
            file: None,
        };
        for Frame {
            offset, len, batch, ..
        } in frames
        {
            let kinds = KindCounts::of(&batch.events);
            let boot = self.intern_boot(&batch.boot_id);
            seg.batches.push(BatchMeta {
                batch_id: batch.batch_id,
                offset,
                len,
                boot,
                last_seq: batch.events.iter().map(|e| e.seq).max().unwrap_or(0),
                kinds,
                acked: false,
                written_unix_ms,
            });
            seg.unacked += 1;
            self.pending_batches += 1;
            self.pending_events += kinds.total();
            rec.batches += 1;
            rec.events += kinds.total();
            self.next_batch_id = self.next_batch_id.max(batch.batch_id + 1);
        }
        // Batch ids must increase through the spool; a segment that breaks this (hand
        // edited, or from a foreign spool) is renumbered in memory only by refusing to mix:
        // sort within the segment to keep lookups valid.
        seg.batches.sort_by_key(|b| b.batch_id);
        self.total_bytes += seg.bytes;
        rec.segments += 1;
        self.segments.push_back(seg);
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    /// A temp dir removed on drop (also when the test panics).
    struct Tmp(PathBuf);

    impl std::ops::Deref for Tmp {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("ship-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    fn opts(max: u64, seg: u64) -> SpoolOptions {
        SpoolOptions {
            max_bytes: max,
            segment_bytes: seg,
            fsync: FsyncPolicy::Never,
        }
    }

    fn ev(seq: u64, kind: pb::Kind) -> pb::Event {
        pb::Event {
            seq,
            kind: kind as i32,
            host: "h".repeat(100),
            ..Default::default()
        }
    }

    /// Batch of `n` events starting at `seq`, alternating exec and exit.
    fn batch(seq: u64, n: u64) -> pb::Batch {
        pb::Batch {
            sensor_id: "s".into(),
            boot_id: "b".into(),
            first_seq: seq,
            events: (seq..seq + n)
                .map(|s| {
                    let k = if s % 2 == 0 {
                        pb::Kind::ProcessExit
                    } else {
                        pb::Kind::ProcessExec
                    };
                    ev(s, k)
                })
                .collect(),
            batch_id: 0,
            sent_unix_ns: 0,
        }
    }

    #[test]
    fn frames_scan_and_torn_tails() {
        let p1 = batch(1, 2).encode_to_vec();
        let p2 = batch(3, 1).encode_to_vec();
        let mut data = MAGIC.to_vec();
        data.extend(encode_frame(0, &p1));
        let good = data.len();
        data.extend(encode_frame(FLAG_RESCUED, &p2));
        let (f, end, torn) = scan_frames(&data);
        assert_eq!((f.len(), end, torn), (2, data.len(), false));
        assert_eq!(f[1].flags, FLAG_RESCUED);
        // Every truncation inside the second frame is a torn tail at `good`.
        for cut in good + 1..data.len() {
            let (f, end, torn) = scan_frames(&data[..cut]);
            assert_eq!((f.len(), end, torn), (1, good, true), "cut {cut}");
        }
        // A flipped bit fails the CRC.
        let mut bad = data.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(scan_frames(&bad).1, good);
        // Bad magic: nothing is trusted.
        assert_eq!(scan_frames(b"garbage!xx").0.len(), 0);
        assert!(!scan_frames(&[]).2);
    }

    #[test]
    fn append_read_ack_delete() {
        let d = tmp("ack");
        let (mut s, rec) = Spool::open(&d, opts(1 << 20, 16 << 10)).unwrap();
        assert_eq!(rec, Recovery::default());
        let mut ids = Vec::new();
        for i in 0..50 {
            let mut b = batch(i * 10 + 1, 10);
            let a = s.append(&mut b).unwrap();
            assert_eq!(a.eviction, Eviction::default());
            assert_eq!(b.batch_id, a.batch_id);
            assert_eq!(a.payload, b.encode_to_vec());
            assert_eq!(s.read_payload(a.batch_id).unwrap(), a.payload);
            ids.push(a.batch_id);
        }
        assert!(s.segment_count() > 1, "rotated");
        assert_eq!(s.pending_events(), 500);
        let oldest = s
            .oldest_pending_unix_ms()
            .expect("pending batches have an age");
        assert!(oldest > 0 && oldest <= now_unix_ms());
        assert_eq!(s.read(ids[7]).unwrap(), {
            let mut b = batch(71, 10);
            b.batch_id = ids[7];
            b
        });
        assert_eq!(s.next_pending(None).unwrap().batch_id, ids[0]);
        assert_eq!(s.next_pending(Some(ids[3])).unwrap().batch_id, ids[4]);
        for id in &ids[..49] {
            assert_eq!(s.ack(*id).unwrap(), Some(10));
        }
        assert_eq!(s.ack(ids[0]).unwrap(), None, "twice");
        assert_eq!(s.segment_count(), 1, "fully acked segments are deleted");
        assert_eq!(s.next_pending(None).unwrap().batch_id, ids[49]);
        s.ack(ids[49]).unwrap();
        assert_eq!(s.segment_count(), 0);
        assert_eq!(s.oldest_pending_unix_ms(), None);
        assert_eq!(s.total_bytes(), 0);
        assert_eq!(
            std::fs::read_dir(s.dir()).unwrap().count(),
            0,
            "no files left"
        );
    }

    #[test]
    fn recovery_after_crash_keeps_unacked_and_cuts_torn_tail() {
        let d = tmp("rec");
        let (mut s, _) = Spool::open(&d, opts(1 << 20, 64 << 10)).unwrap();
        let mut ids = Vec::new();
        for i in 0..30 {
            ids.push(s.append(&mut batch(i * 10 + 1, 10)).unwrap().batch_id);
        }
        for id in &ids[..5] {
            s.ack(*id).unwrap();
        }
        let last_seg = s.segments.back().unwrap().path.clone();
        drop(s); // like kill -9: nothing flushed or closed explicitly
                 // A torn frame at the end of the newest segment.
        let mut f = OpenOptions::new().append(true).open(&last_seg).unwrap();
        let frame = encode_frame(0, &batch(1000, 3).encode_to_vec());
        f.write_all(&frame[..frame.len() / 2]).unwrap();
        drop(f);
        let (s, rec) = Spool::open(&d, opts(1 << 20, 64 << 10)).unwrap();
        assert_eq!(rec.corrupt_batches, 1);
        assert_eq!(rec.truncated_bytes, (frame.len() / 2) as u64);
        // Acks were in memory: the first segment's acked batches come back (the collector
        // de-duplicates them); nothing unacked is lost.
        assert!(rec.events >= 250, "{rec:?}");
        let mut seen = Vec::new();
        let mut cur = None;
        while let Some(p) = s.next_pending(cur) {
            let b = s.read(p.batch_id).unwrap();
            seen.extend(b.events.iter().map(|e| e.seq));
            cur = Some(p.batch_id);
        }
        for seq in 51..=300 {
            assert!(seen.contains(&seq), "seq {seq} lost");
        }
        assert_eq!(s.max_seq_for_boot("b"), 300);
        assert_eq!(s.max_seq_for_boot("other"), 0);
        // New appends continue with fresh batch ids and a new segment.
        let mut s = s;
        let id = s.append(&mut batch(301, 1)).unwrap().batch_id;
        assert!(id > *ids.last().unwrap());
        let on_disk = std::fs::metadata(&last_seg).unwrap().len();
        assert_eq!(on_disk, s.segments[s.segments.len() - 2].bytes);
    }

    #[test]
    fn full_spool_evicts_oldest_and_rescues_exits() {
        let d = tmp("evict");
        // ~130 bytes per event: a 10-event batch is ~1.3 KB; 64 KiB segments, 256 KiB max.
        let (mut s, _) = Spool::open(&d, opts(256 << 10, 64 << 10)).unwrap();
        let mut total = KindCounts::default();
        let mut lost = KindCounts::default();
        let mut rescued = 0;
        for i in 0..1000u64 {
            let mut b = batch(i * 10 + 1, 10);
            total.add(&KindCounts::of(&b.events));
            let ev = s.append(&mut b).unwrap().eviction;
            lost.add(&ev.lost);
            rescued += ev.rescued_exits;
            assert!(s.total_bytes() <= 256 << 10, "bounded: {}", s.total_bytes());
        }
        assert!(lost.total() > 0);
        // Exits are rescued before they are lost: far fewer exits than execs are lost.
        assert!(rescued > 0);
        assert!(
            lost.get(pb::Kind::ProcessExit) < lost.get(pb::Kind::ProcessExec),
            "{lost:?}"
        );
        // Conservation: every event is pending or counted as lost.
        assert_eq!(s.pending_events() + lost.total(), total.total());
        // What is pending can be read, and includes rescued exits older than the rest.
        let mut cur = None;
        let mut n = 0;
        while let Some(p) = s.next_pending(cur) {
            let b = s.read(p.batch_id).unwrap();
            assert_eq!(b.batch_id, p.batch_id, "the frame's batch id is its index");
            n += b.events.len() as u64;
            cur = Some(p.batch_id);
        }
        assert_eq!(n, s.pending_events());
    }

    #[test]
    fn fsync_policies_parse() {
        let d = Duration::from_millis(5);
        assert_eq!(
            FsyncPolicy::parse("always").unwrap()(d),
            FsyncPolicy::Always
        );
        assert_eq!(
            FsyncPolicy::parse("interval").unwrap()(d),
            FsyncPolicy::Interval(d)
        );
        assert_eq!(FsyncPolicy::parse("never").unwrap()(d), FsyncPolicy::Never);
        assert!(FsyncPolicy::parse("x").is_none());
    }
}
