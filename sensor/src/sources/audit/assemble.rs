//! Groups audit records into events by serial.
//!
//! The kernel sends each record of an event as its own netlink message, all with the same
//! serial. Syscall events end with an EOE record (1320). Records written outside a syscall
//! (ANOM_ABEND from a core-dumping signal, USER_* / CRED_* from PAM) have no EOE: types known
//! to stand alone complete at once; anything else still open after `timeout_ms` is flushed as
//! an incomplete group. Records of different events interleave (several CPUs), so groups are
//! keyed by serial rather than closed when the serial changes.
//!
//! Memory is bounded: at most `max_open` open groups and a total byte budget; on overflow the
//! oldest open group is flushed (and counted). Within a group, EXECVE records beyond the
//! per-group budget are dropped and the group is marked `truncated` (argv is capped downstream
//! anyway); other records get a second budget so CWD/PATH/PROCTITLE still arrive.
//!
//! Serial gaps: a serial skipped over is remembered; if it has not arrived within `timeout_ms`
//! it is counted in `serial_gaps`. Gaps show records lost between the kernel and this reader
//! (e.g. kauditd's hold queue or a multicast socket buffer overflowing). The kernel does not
//! assign a serial to an event it drops for `backlog_limit` before its first record, so gaps are
//! a lower bound: the lead must also report deltas of the kernel's `lost` counter.
use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use super::record::{self, types, Record, RecordError};

/// Default byte budget for one group (EXECVE records beyond it are dropped).
pub const DEFAULT_MAX_GROUP_BYTES: usize = 256 * 1024;
/// Default byte budget for all open groups together.
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;
/// Serials remembered as missing at once; older ones are counted as gaps when this is exceeded.
const MAX_MISSING: usize = 4096;
/// A serial jump larger than this (either way) is a discontinuity, not a gap.
const SERIAL_RESET_WINDOW: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum AssembleError {
    #[error("audit record type {rtype}: {source}")]
    Record {
        rtype: u16,
        #[source]
        source: RecordError,
    },
}

/// The records of one event, in arrival order (the EOE record itself is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub serial: u64,
    /// Unix ms from the first record.
    pub time_ms: u64,
    pub records: Vec<Record>,
    /// Closed by EOE or a stand-alone record type, rather than by timeout or overflow.
    pub complete: bool,
    /// Records were dropped to stay within the per-group budget.
    pub truncated: bool,
}

impl Group {
    /// The first record of `rtype`.
    pub fn first(&self, rtype: u16) -> Option<&Record> {
        self.records.iter().find(|r| r.rtype == rtype)
    }

    /// All records of `rtype`, in order.
    pub fn all(&self, rtype: u16) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(move |r| r.rtype == rtype)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    /// Groups handed out, however they were closed.
    pub groups: u64,
    /// Groups flushed because `timeout_ms` passed without EOE (stand-alone records of types not
    /// known to stand alone land here too; a timed-out group with a SYSCALL record is also
    /// counted in `incomplete`).
    pub timeouts: u64,
    /// Timed-out, overflowed or force-flushed groups that held a SYSCALL record but no EOE.
    pub incomplete: u64,
    /// Groups flushed early because `max_open` or the byte budget was reached.
    pub overflow_flushes: u64,
    /// Serials never seen although later ones were.
    pub serial_gaps: u64,
    /// Serial discontinuities too large to be gaps (wrap, or garbage).
    pub serial_resets: u64,
    /// Records that arrived after their group was already handed out (EOE after a timeout, ...).
    pub late_records: u64,
    /// Records dropped by the per-group budget.
    pub records_dropped: u64,
    /// Payloads that failed to parse (only through [`Assembler::push_payload`]).
    pub parse_errors: u64,
}

struct Open {
    id: u64,
    first_seen_ms: u64,
    time_ms: u64,
    bytes: usize,
    records: Vec<Record>,
    truncated: bool,
}

pub struct Assembler {
    max_open: usize,
    timeout_ms: u64,
    max_group_bytes: usize,
    max_total_bytes: usize,
    open: HashMap<u64, Open>,
    /// Open groups by opening order (id -> serial); ids grow, so the first entry is the oldest.
    by_age: BTreeMap<u64, u64>,
    next_id: u64,
    total_bytes: usize,
    gaps: Gaps,
    stats: AssemblerStats,
}

/// Record types that never share a serial with later records of interest.
fn standalone(rtype: u16) -> bool {
    // USER_* (1100..=1199, 2100..=2999) come from user space; ANOM_ABEND is written while a
    // signal is delivered, outside any syscall.
    matches!(rtype, 1100..=1199 | 2100..=2999 | types::ANOM_ABEND)
}

impl Assembler {
    /// `max_open` is clamped to at least 1.
    pub fn new(max_open: usize, timeout_ms: u64) -> Self {
        Self {
            max_open: max_open.max(1),
            timeout_ms,
            max_group_bytes: DEFAULT_MAX_GROUP_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            open: HashMap::new(),
            by_age: BTreeMap::new(),
            next_id: 0,
            total_bytes: 0,
            gaps: Gaps::default(),
            stats: AssemblerStats::default(),
        }
    }

    /// Overrides the byte budgets (per group, and for all open groups).
    pub fn with_byte_limits(mut self, per_group: usize, total: usize) -> Self {
        self.max_group_bytes = per_group.max(1);
        self.max_total_bytes = total.max(1);
        self
    }

    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Number of groups still open.
    pub fn open_groups(&self) -> usize {
        self.open.len()
    }

    /// Parses a payload and pushes it. A parse error is counted and returned; the caller keeps
    /// going.
    pub fn push_payload(
        &mut self,
        rtype: u16,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Vec<Group>, AssembleError> {
        match record::parse(rtype, payload) {
            Ok(rec) => Ok(self.push(rec, now_ms)),
            Err(source) => {
                self.stats.parse_errors += 1;
                Err(AssembleError::Record { rtype, source })
            }
        }
    }

    /// Adds one record. Returns the groups it completed plus any that expired or overflowed.
    pub fn push(&mut self, rec: Record, now_ms: u64) -> Vec<Group> {
        let mut out = self.flush_expired(now_ms);
        self.gaps.observe(rec.serial, now_ms, &mut self.stats);
        let serial = rec.serial;

        if rec.rtype == types::EOE {
            match self.take(serial) {
                Some(open) => out.push(self.finish(serial, open, true)),
                None => self.stats.late_records += 1,
            }
            return out;
        }
        if standalone(rec.rtype) && !self.open.contains_key(&serial) {
            self.stats.groups += 1;
            out.push(Group {
                serial,
                time_ms: rec.time_ms,
                records: vec![rec],
                complete: true,
                truncated: false,
            });
            return out;
        }

        let size = rec.approx_bytes();
        if !self.open.contains_key(&serial) {
            while self.open.len() >= self.max_open {
                if !self.flush_oldest(&mut out) {
                    break;
                }
            }
            let id = self.next_id;
            self.next_id += 1;
            self.by_age.insert(id, serial);
            self.open.insert(
                serial,
                Open {
                    id,
                    first_seen_ms: now_ms,
                    time_ms: rec.time_ms,
                    bytes: 0,
                    records: Vec::new(),
                    truncated: false,
                },
            );
        }
        let max_group = self.max_group_bytes;
        let Some(open) = self.open.get_mut(&serial) else {
            return out;
        };
        // The first record is always kept (one record is bounded by the netlink message size),
        // so no group is empty. Once one EXECVE record is dropped, later ones are too, so argv
        // stays a prefix.
        let fits = if open.records.is_empty() {
            true
        } else if rec.rtype == types::EXECVE {
            !open.truncated && open.bytes.saturating_add(size) <= max_group
        } else {
            open.bytes.saturating_add(size) <= max_group.saturating_mul(2)
        };
        if !fits {
            open.truncated = true;
            self.stats.records_dropped += 1;
            return out;
        }
        open.bytes += size;
        open.records.push(rec);
        self.total_bytes += size;
        while self.total_bytes > self.max_total_bytes {
            if !self.flush_oldest(&mut out) {
                break;
            }
        }
        out
    }

    /// Flushes groups open for at least `timeout_ms`, and counts long-missing serials as gaps.
    pub fn flush_expired(&mut self, now_ms: u64) -> Vec<Group> {
        self.gaps.expire(now_ms, self.timeout_ms, &mut self.stats);
        let mut out = Vec::new();
        while let Some((_, &serial)) = self.by_age.first_key_value() {
            let Some(open) = self.open.get(&serial) else {
                self.by_age.pop_first();
                continue;
            };
            if now_ms.saturating_sub(open.first_seen_ms) < self.timeout_ms {
                break;
            }
            if let Some(open) = self.take(serial) {
                self.stats.timeouts += 1;
                out.push(self.finish(serial, open, false));
            }
        }
        out
    }

    /// Flushes every open group (shutdown). Missing serials are counted as gaps.
    pub fn flush_all(&mut self) -> Vec<Group> {
        self.gaps.expire(u64::MAX, 0, &mut self.stats);
        let mut out = Vec::new();
        while self.flush_oldest_inner(&mut out) {}
        out
    }

    fn flush_oldest(&mut self, out: &mut Vec<Group>) -> bool {
        let flushed = self.flush_oldest_inner(out);
        if flushed {
            self.stats.overflow_flushes += 1;
        }
        flushed
    }

    fn flush_oldest_inner(&mut self, out: &mut Vec<Group>) -> bool {
        while let Some((_, serial)) = self.by_age.pop_first() {
            if let Some(open) = self.open.remove(&serial) {
                self.total_bytes = self.total_bytes.saturating_sub(open.bytes);
                out.push(self.finish(serial, open, false));
                return true;
            }
        }
        false
    }

    fn take(&mut self, serial: u64) -> Option<Open> {
        let open = self.open.remove(&serial)?;
        self.by_age.remove(&open.id);
        self.total_bytes = self.total_bytes.saturating_sub(open.bytes);
        Some(open)
    }

    fn finish(&mut self, serial: u64, open: Open, complete: bool) -> Group {
        self.stats.groups += 1;
        if !complete && open.records.iter().any(|r| r.rtype == types::SYSCALL) {
            self.stats.incomplete += 1;
        }
        Group {
            serial,
            time_ms: open.time_ms,
            records: open.records,
            complete,
            truncated: open.truncated,
        }
    }
}

/// Serial bookkeeping: the highest serial seen and the skipped ones still expected.
#[derive(Default)]
struct Gaps {
    max_seen: Option<u64>,
    /// Missing serial -> when it was first noticed missing.
    missing: BTreeMap<u64, u64>,
}

impl Gaps {
    fn observe(&mut self, serial: u64, now_ms: u64, stats: &mut AssemblerStats) {
        let Some(max) = self.max_seen else {
            self.max_seen = Some(serial);
            return;
        };
        if serial > max {
            let skipped = serial - max - 1;
            if skipped >= SERIAL_RESET_WINDOW {
                self.reset(serial, stats);
                return;
            }
            // Remember at most MAX_MISSING of them; anything beyond counts at once.
            let tracked = skipped.min(MAX_MISSING as u64);
            stats.serial_gaps += skipped - tracked;
            for s in serial - tracked..serial {
                self.missing.insert(s, now_ms);
            }
            while self.missing.len() > MAX_MISSING {
                self.missing.pop_first();
                stats.serial_gaps += 1;
            }
            self.max_seen = Some(serial);
        } else if serial < max
            && self.missing.remove(&serial).is_none()
            && max - serial >= SERIAL_RESET_WINDOW
        {
            self.reset(serial, stats);
        }
    }

    fn reset(&mut self, serial: u64, stats: &mut AssemblerStats) {
        stats.serial_resets += 1;
        self.missing.clear();
        self.max_seen = Some(serial);
    }

    fn expire(&mut self, now_ms: u64, timeout_ms: u64, stats: &mut AssemblerStats) {
        self.missing.retain(|_, noticed| {
            let expired = now_ms.saturating_sub(*noticed) >= timeout_ms;
            if expired {
                stats.serial_gaps += 1;
            }
            !expired
        });
    }
}

#[cfg(test)]
mod tests;
