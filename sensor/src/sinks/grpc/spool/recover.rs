//! Opening the spool: every segment is scanned, torn or corrupt tails are cut, and what is
//! still unacknowledged is listed for sending.
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::*;

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

    pub(super) fn intern_boot(&mut self, boot: &str) -> Arc<str> {
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
}
