//! /proc reads for the process cache: an entry from a /proc snapshot (on a miss, a parent, the
//! start-up scan) and the sweep that finds processes whose exit the sensor never saw.
use std::collections::HashSet;
use std::path::Path;

use super::store::IdBuild;
use super::{CachedProcess, ProcessCache, SWEEP_STAT_BUDGET, UNKNOWN_START, UNSETTLED};
use crate::enrich::procfs::{self, ProcError, Snapshot};

fn unset(id: Option<u32>) -> Option<u32> {
    id.filter(|&v| v != u32::MAX)
}

impl ProcessCache {
    /// A snapshot of `pid` (which must have started at `ticks` unless unknown), counted.
    pub(super) fn read_proc(&mut self, pid: u32, ticks: u64) -> Option<Snapshot> {
        self.stats.proc_reads += 1;
        let expect = (ticks != UNKNOWN_START).then_some(ticks);
        match procfs::read_snapshot(&self.proc_root, pid, expect) {
            Ok(s) => Some(s),
            Err(e) => {
                self.stats.proc_misses += 1;
                if let ProcError::Io { .. } | ProcError::Malformed { .. } = e {
                    tracing::debug!(pid, error = %e, "reading /proc");
                }
                None
            }
        }
    }

    pub(super) fn entry_from_snapshot(&mut self, s: &Snapshot) -> CachedProcess {
        let ids = s.ids.unwrap_or_default();
        let (argv, argv_truncated) = match &s.argv {
            Some(a) => self.strings.argv(a, s.argv_truncated),
            None => (None, false),
        };
        let (container_id, cgroup_id) = match s.cgroup.as_deref() {
            Some(text) => {
                let (id, cg) = self.cgroups.resolve_text(&mut self.strings, text, None);
                (id, cg.unwrap_or(0))
            }
            None => (None, 0),
        };
        CachedProcess {
            pid: s.stat.pid,
            ppid: s.stat.ppid,
            start_ticks: s.stat.start_ticks,
            start_sub_ns: UNSETTLED,
            uid: ids.uid,
            euid: ids.euid,
            gid: ids.gid,
            egid: ids.egid,
            auid: unset(s.auid),
            session: unset(s.session),
            cgroup_id,
            comm: self.strings.get(&s.stat.comm),
            tty: procfs::tty_name(s.stat.tty_nr).map(|t| self.strings.get(&t)),
            exe: self.strings.opt(s.exe.as_deref()),
            cwd: self.strings.opt(s.cwd.as_deref()),
            argv,
            container_id,
            argv_truncated,
            forked: false,
            container_guessed: false,
        }
    }

    /// Reads a parent missing from the cache; a process that started after the child is not
    /// its parent (the parent is gone and the pid was reused).
    pub(super) fn load_parent(&mut self, ppid: u32, child_ticks: u64, now: u64) -> Option<u32> {
        let snap = self.read_proc(ppid, UNKNOWN_START)?;
        if child_ticks != UNKNOWN_START && snap.stat.start_ticks > child_ticks {
            self.stats.proc_misses += 1;
            return None;
        }
        let e = self.entry_from_snapshot(&snap);
        Some(self.store.insert(e, now))
    }

    /// Start-up fill from a /proc scan. Returns the number of entries added.
    pub fn scan_proc(&mut self, proc_root: &Path) -> usize {
        let Ok(pids) = procfs::list_pids(proc_root) else {
            return 0;
        };
        let now = crate::timefmt::monotonic_now_ns();
        let mut added = 0;
        for pid in pids {
            // A process that exits mid-scan, or a malformed stat, is skipped.
            let Ok(snap) = procfs::read_snapshot(proc_root, pid, None) else {
                continue;
            };
            if self.store.find(pid, snap.stat.start_ticks).is_some() {
                continue;
            }
            let entry = self.entry_from_snapshot(&snap);
            self.store.insert(entry, now);
            added += 1;
        }
        self.stats.scanned += added as u64;
        added
    }

    /// Removes expired exit-pending entries and marks entries whose process is gone from
    /// `proc_root` (or whose pid now has another start time) as exited without an exit event:
    /// they are removed, and counted in `swept_lost`, one grace period later unless their exit
    /// event arrives meanwhile. Presence is checked for every entry; start times for up to
    /// [`SWEEP_STAT_BUDGET`] entries per run, in rotation. Returns the entries removed.
    pub fn sweep(&mut self, now_mono_ns: u64, proc_root: &Path) -> usize {
        let removed = self.store.expire(now_mono_ns, usize::MAX);
        if let Ok(pids) = procfs::list_pids(proc_root) {
            let present: HashSet<u32, IdBuild> = pids.into_iter().collect();
            let mut lost: Vec<u32> = self
                .store
                .live()
                .filter(|&i| !present.contains(&self.store.entry(i).pid))
                .collect();
            let n = self.store.slot_count();
            let mut checked = 0;
            for _ in 0..n {
                if checked >= SWEEP_STAT_BUDGET {
                    break;
                }
                let i = (self.sweep_cursor % n) as u32;
                self.sweep_cursor = (self.sweep_cursor + 1) % n;
                let Some(e) = self.store.get(i) else {
                    continue;
                };
                if !self.store.is_live(i)
                    || e.start_ticks == UNKNOWN_START
                    || !present.contains(&e.pid)
                {
                    continue;
                }
                checked += 1;
                match procfs::read_stat(proc_root, e.pid) {
                    Ok(st) if st.start_ticks != e.start_ticks => lost.push(i),
                    Err(ProcError::Gone(_)) => lost.push(i),
                    _ => {}
                }
            }
            for i in lost {
                self.store.mark_exit(i, now_mono_ns, true);
            }
        }
        self.strings.prune();
        removed
    }
}
