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
mod tests {
    use super::super::record::{parse, tests::session};
    use super::*;

    fn records() -> Vec<Record> {
        session()
            .iter()
            .map(|(t, p)| parse(*t, p).unwrap())
            .collect()
    }

    fn run(asm: &mut Assembler, recs: impl IntoIterator<Item = Record>) -> Vec<Group> {
        let mut out = Vec::new();
        for (i, r) in recs.into_iter().enumerate() {
            out.extend(asm.push(r, i as u64));
        }
        out
    }

    #[test]
    fn real_session_groups_by_serial() {
        let mut asm = Assembler::new(64, 10_000);
        let mut groups = run(&mut asm, records());
        let open_at_end = asm.open_groups();
        groups.extend(asm.flush_all());
        // Serials 4..=71, each one group, except those closed early by a stand-alone record.
        let serials: Vec<u64> = groups.iter().map(|g| g.serial).collect();
        let mut sorted = serials.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, (4..=71).collect::<Vec<_>>());
        assert_eq!(serials.len(), 68);
        // Only the CONFIG_CHANGE of the rule itself (serial 4, no EOE) was still open.
        assert_eq!(open_at_end, 1);
        let s = asm.stats();
        assert_eq!((s.serial_gaps, s.incomplete, s.late_records), (0, 0, 0));
        assert_eq!((s.overflow_flushes, s.records_dropped), (0, 0));
        assert_eq!(s.groups, 68);

        let exec = groups.iter().find(|g| g.serial == 6).unwrap();
        let types: Vec<u16> = exec.records.iter().map(|r| r.rtype).collect();
        assert_eq!(types, vec![1300, 1321, 1309, 1307, 1302, 1302, 1327]);
        assert!(exec.complete && !exec.truncated);
        assert_eq!(exec.time_ms, 1_795_805_362_236);
        // The split argv: 12 EXECVE records in one group.
        let long = groups.iter().find(|g| g.serial == 8).unwrap();
        assert_eq!(long.all(types::EXECVE).count(), 12);
        // ANOM_ABEND stands alone and completes at once.
        let abend = groups.iter().find(|g| g.serial == 15).unwrap();
        assert!(abend.complete);
        assert_eq!(abend.records.len(), 1);
        // LOGIN shares serial 31 with the SYSCALL of the write that set loginuid.
        let login = groups.iter().find(|g| g.serial == 31).unwrap();
        assert_eq!(
            login.records.iter().map(|r| r.rtype).collect::<Vec<_>>(),
            vec![1006, 1300, 1327]
        );
    }

    #[test]
    fn interleaved_serials_still_group() {
        let recs = records();
        let a: Vec<Record> = recs.iter().filter(|r| r.serial == 6).cloned().collect();
        let b: Vec<Record> = recs.iter().filter(|r| r.serial == 7).cloned().collect();
        let mut mixed = Vec::new();
        let mut bi = b.into_iter();
        for r in a {
            mixed.push(r);
            if let Some(x) = bi.next() {
                mixed.push(x);
            }
        }
        mixed.extend(bi);
        let mut asm = Assembler::new(8, 1000);
        let groups = run(&mut asm, mixed);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].serial, 7); // EOE of 7 arrives first
        assert_eq!(groups[1].records.len(), 7);
        assert_eq!(asm.stats().serial_gaps, 0);
    }

    #[test]
    fn missing_eoe_is_flushed_on_timeout() {
        let recs: Vec<Record> = records()
            .into_iter()
            .filter(|r| r.serial == 6 && r.rtype != types::EOE)
            .collect();
        let mut asm = Assembler::new(8, 500);
        for r in recs {
            assert!(asm.push(r, 100).is_empty());
        }
        assert!(asm.flush_expired(599).is_empty());
        let g = asm.flush_expired(600);
        assert_eq!(g.len(), 1);
        assert!(!g[0].complete);
        assert_eq!(g[0].records.len(), 7);
        let s = asm.stats();
        assert_eq!((s.timeouts, s.incomplete, s.groups), (1, 1, 1));
        // The EOE arriving after the flush is late, not a new group.
        let eoe = parse(types::EOE, b"audit(1795805362.236:6): ").unwrap();
        assert!(asm.push(eoe, 700).is_empty());
        assert_eq!(asm.stats().late_records, 1);
        assert_eq!(asm.open_groups(), 0);
    }

    #[test]
    fn push_also_flushes_expired_groups() {
        let mut asm = Assembler::new(8, 50);
        let r = |s: u64| {
            parse(
                types::CONFIG_CHANGE,
                format!("audit(1.000:{s}): op=x").as_bytes(),
            )
            .unwrap()
        };
        assert!(asm.push(r(1), 0).is_empty());
        let out = asm.push(r(2), 60);
        assert_eq!(out.iter().map(|g| g.serial).collect::<Vec<_>>(), vec![1]);
        assert_eq!(asm.stats().incomplete, 0); // no SYSCALL: not counted as incomplete
        assert_eq!(asm.stats().timeouts, 1);
    }

    #[test]
    fn overflow_flushes_oldest() {
        let mut asm = Assembler::new(2, 10_000);
        let sys = |s: u64| {
            parse(
                types::SYSCALL,
                format!("audit(1.000:{s}): arch=c000003e syscall=59 pid=1").as_bytes(),
            )
            .unwrap()
        };
        assert!(asm.push(sys(1), 0).is_empty());
        assert!(asm.push(sys(2), 0).is_empty());
        let out = asm.push(sys(3), 0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].serial, 1);
        assert!(!out[0].complete);
        let s = asm.stats();
        assert_eq!((s.overflow_flushes, s.incomplete, s.timeouts), (1, 1, 0));
        assert_eq!(asm.open_groups(), 2);
        let rest = asm.flush_all();
        assert_eq!(
            rest.iter().map(|g| g.serial).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(asm.stats().groups, 3);
    }

    #[test]
    fn byte_budgets_bound_memory() {
        // Per-group budget: the 12 EXECVE records of serial 8 (~100 KiB) under a 20 KiB cap.
        let recs: Vec<Record> = records().into_iter().filter(|r| r.serial == 8).collect();
        let mut asm = Assembler::new(8, 1000).with_byte_limits(20 * 1024, 1 << 30);
        let groups = run(&mut asm, recs);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert!(g.truncated && g.complete);
        assert!(g.all(types::EXECVE).count() < 12);
        // CWD, PATH and PROCTITLE still made it.
        for t in [types::CWD, types::PATH, types::PROCTITLE] {
            assert!(g.first(t).is_some(), "{t}");
        }
        assert!(asm.stats().records_dropped > 0);

        // Total budget: two big groups cannot both stay open.
        let mut asm = Assembler::new(64, 1000).with_byte_limits(1 << 20, 16 * 1024);
        let big: Vec<Record> = records()
            .into_iter()
            .filter(|r| r.serial == 8 && r.rtype == types::EXECVE)
            .collect();
        let mut out = Vec::new();
        for r in big.iter().take(3).cloned() {
            out.extend(asm.push(r, 0));
        }
        for r in big.iter().take(3).cloned() {
            let mut r = r;
            r.serial = 9;
            out.extend(asm.push(r, 0));
        }
        assert_eq!(out.first().map(|g| g.serial), Some(8));
        assert!(asm.stats().overflow_flushes >= 1);
        assert!(asm.total_bytes <= 16 * 1024);
    }

    #[test]
    fn a_record_larger_than_the_budget_still_opens_a_non_empty_group() {
        // Found by the fuzz target: the first record was dropped and an empty group came out.
        let big = records()
            .into_iter()
            .find(|r| r.serial == 8 && r.rtype == types::EXECVE)
            .unwrap();
        let mut asm = Assembler::new(4, 10).with_byte_limits(1024, 1 << 20);
        assert!(asm.push(big.clone(), 0).is_empty());
        let mut second = big;
        second.truncate_fields(1);
        asm.push(second, 0);
        let g = asm.flush_all();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].records.len(), 1);
        assert!(g[0].truncated);
    }

    #[test]
    fn serial_gaps_are_counted_after_timeout() {
        // Drop every record of serials 10 and 11 (a lost exec and its exit) from the capture.
        let recs: Vec<Record> = records()
            .into_iter()
            .filter(|r| r.serial != 10 && r.serial != 11)
            .collect();
        let mut asm = Assembler::new(64, 100);
        for r in recs {
            asm.push(r, 0);
        }
        assert_eq!(asm.stats().serial_gaps, 0); // still within the reorder window
        asm.flush_expired(100);
        assert_eq!(asm.stats().serial_gaps, 2);

        // A late serial inside the window is not a gap.
        let mut asm = Assembler::new(64, 100);
        let r = |s: u64| {
            parse(
                types::CONFIG_CHANGE,
                format!("audit(1.000:{s}): a=1").as_bytes(),
            )
            .unwrap()
        };
        asm.push(r(1), 0);
        asm.push(r(3), 0);
        asm.push(r(2), 10);
        asm.flush_all();
        assert_eq!(asm.stats().serial_gaps, 0);

        // A huge jump is a reset, not four billion gaps; so is a huge step back.
        let mut asm = Assembler::new(64, 100);
        asm.push(r(5), 0);
        asm.push(r(5 + (1 << 32)), 0);
        asm.push(r(6), 0);
        asm.flush_all();
        let s = asm.stats();
        assert_eq!((s.serial_gaps, s.serial_resets), (0, 2));

        // A large but plausible jump counts every missing serial, with bounded memory.
        let mut asm = Assembler::new(64, 100);
        asm.push(r(1), 0);
        asm.push(r(10_002), 0);
        assert!(asm.gaps.missing.len() <= MAX_MISSING);
        asm.flush_all();
        assert_eq!(asm.stats().serial_gaps, 10_000);
    }

    #[test]
    fn push_payload_counts_parse_errors() {
        let mut asm = Assembler::new(4, 100);
        let err = asm.push_payload(1300, b"garbage", 0).unwrap_err();
        assert!(err.to_string().contains("1300"));
        assert_eq!(asm.stats().parse_errors, 1);
        let ok = asm
            .push_payload(
                types::USER_ACCT,
                b"audit(1.000:1): pid=1 msg='op=x res=success'",
                0,
            )
            .unwrap();
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn unknown_types_group_without_error() {
        let mut asm = Assembler::new(4, 100);
        let a = parse(9999, b"audit(1.000:1): whatever text=1").unwrap();
        let b = parse(types::EOE, b"audit(1.000:1): ").unwrap();
        assert!(asm.push(a, 0).is_empty());
        let g = asm.push(b, 0);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].records[0].rtype, 9999);
    }
}
