//! `/proc/<pid>/cgroup` read by a source at the moment it captures an exec, handed to the
//! process cache. The audit reader reads it when the exec's record group ends (its EOE), before
//! the event crosses the channel to the pipeline task; the cache takes that read instead of
//! reading /proc itself, later, when a short-lived process is more often gone
//! (docs/ARCHITECTURE.md, Audit netlink). The read happens once either way; it moves earlier.
//!
//! Keyed by pid. The source stores a read (or that the process was gone) just before it sends
//! the exec, so the exec finds the read of its own process, or a newer one of the same pid: a
//! second exec of the same process that overwrote it. A read no exec takes (the event was shed)
//! is overwritten by the next exec of that pid before that exec reaches the cache. Bounded:
//! when full, everything is forgotten, and the execs in flight read /proc themselves.
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::procfs;

/// Most reads kept (in flight between the source and the cache).
const MAX_READS: usize = 1024;

/// What the source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupRead {
    /// The cgroup text, read while the process was alive, and its start tick (stat field 22).
    Alive { text: String, start_ticks: u64 },
    /// Gone, a zombie, or unreadable when the source looked.
    Gone,
}

/// The reads in flight; shared by the sources and the cache (through the process feed).
#[derive(Debug, Default)]
pub struct CgroupReads {
    reads: Mutex<HashMap<u32, CgroupRead>>,
}

impl CgroupReads {
    /// Reads `/proc/<pid>/cgroup` under `proc_root` now (with the liveness check of
    /// [`procfs::read_cgroup_alive_since`]) and keeps the answer for the cache.
    pub fn read_now(&self, proc_root: &Path, pid: u32) {
        let read = match procfs::read_cgroup_alive_since(proc_root, pid, None) {
            Some((text, start_ticks)) => CgroupRead::Alive { text, start_ticks },
            None => CgroupRead::Gone,
        };
        self.put(pid, read);
    }

    pub fn put(&self, pid: u32, read: CgroupRead) {
        let mut reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        if reads.len() >= MAX_READS && !reads.contains_key(&pid) {
            reads.clear();
        }
        reads.insert(pid, read);
    }

    /// The read kept for `pid`, if any (removed).
    pub fn take(&self, pid: u32) -> Option<CgroupRead> {
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid)
    }

    pub fn len(&self) -> usize {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_taken_once_and_a_newer_one_replaces_it() {
        let r = CgroupReads::default();
        assert_eq!(r.take(7), None);
        r.put(7, CgroupRead::Gone);
        r.put(
            7,
            CgroupRead::Alive {
                text: "0::/\n".into(),
                start_ticks: 5,
            },
        );
        assert_eq!(
            r.take(7),
            Some(CgroupRead::Alive {
                text: "0::/\n".into(),
                start_ticks: 5
            })
        );
        assert_eq!(r.take(7), None);
    }

    #[test]
    fn bounded() {
        let r = CgroupReads::default();
        for pid in 0..MAX_READS as u32 {
            r.put(pid, CgroupRead::Gone);
        }
        assert_eq!(r.len(), MAX_READS);
        r.put(0, CgroupRead::Gone);
        assert_eq!(r.len(), MAX_READS, "replacing does not clear");
        r.put(u32::MAX, CgroupRead::Gone);
        assert_eq!(r.len(), 1, "full: forgotten, then the new one kept");
    }

    /// A live process (this test) is read with its start tick; a pid with no process is Gone.
    #[test]
    fn reads_this_process_and_a_missing_one() {
        let r = CgroupReads::default();
        let me = std::process::id();
        r.read_now(Path::new("/proc"), me);
        let start = procfs::read_stat(Path::new("/proc"), me)
            .unwrap()
            .start_ticks;
        match r.take(me) {
            Some(CgroupRead::Alive { text, start_ticks }) => {
                assert_eq!(start_ticks, start);
                assert!(!text.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let dir = crate::test_dir::TestDir::new("cgroup-reads-empty");
        r.read_now(&dir, 42);
        assert_eq!(r.take(42), Some(CgroupRead::Gone));
    }
}
