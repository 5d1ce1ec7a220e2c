//! In-kernel filtering for the FID rung (see docs/ARCHITECTURE.md, "File activity"): the
//! filesystem mark stays (it sees a directory the moment it is created, so a mkdir followed at
//! once by a write inside it is never missed), and every directory that cannot hold anything
//! reported gets an evictable *ignore* mark (`FAN_MARK_IGNORE | FAN_MARK_EVICTABLE`) the
//! first time one of its events is read. After that the kernel drops the events of that
//! directory's entries before they are queued, so a write storm outside the watched trees
//! costs the sensor one event per directory instead of one per write.
//!
//! - Which directories: those [`PathFilter::descend`] would not enter (outside every tree and
//!   not on the way to one, or excluded, or the sensor's own paths). A tree's ancestors are
//!   never ignored, so a tree that is created, removed or renamed is still seen.
//! - The path is read from the directory itself (not a cache) just before the mark is added.
//! - A directory moved into a tree has its ignore marks, and those of every directory below
//!   it, removed when the move is read.
//! - `FAN_RENAME` is never ignored (it concerns two directories).
//! - Evictable marks do not pin inodes: an evicted directory's events arrive again and it is
//!   marked again. The number of directories is bounded by `files.max_ignore_marks`; past the
//!   bound, events are filtered in userspace as before. Failures are counted, never silent.
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::filter::PathFilter;
use super::source::errno_text;
use super::FileStats;

/// An ignore mark is added again after this long, in case the kernel evicted it (events
/// already queued before the mark also arrive within this window, and are not re-marked).
const REMARK_AFTER: Duration = Duration::from_secs(1);

/// The flags of an added ignore mark on a directory (`FAN_MARK_IGNORE` on a directory needs
/// `FAN_MARK_IGNORED_SURV_MODIFY`).
const ADD_FLAGS: libc::c_uint =
    libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORE_SURV | libc::FAN_MARK_EVICTABLE;

/// What to do with a directory whose event was filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Add (or renew) its ignore mark.
    Mark,
    /// Marked less than [`REMARK_AFTER`] ago.
    Recent,
    /// The bound is reached.
    Full,
}

/// Directories given an ignore mark (by handle key), bounded.
#[derive(Debug)]
pub struct IgnoreTable {
    max: usize,
    at: HashMap<Box<[u8]>, Instant>,
}

impl IgnoreTable {
    pub fn new(max: usize) -> IgnoreTable {
        IgnoreTable {
            max,
            at: HashMap::new(),
        }
    }

    pub fn admit(&self, key: &[u8], now: Instant) -> Admit {
        match self.at.get(key) {
            Some(t) if now.duration_since(*t) < REMARK_AFTER => Admit::Recent,
            Some(_) => Admit::Mark,
            None if self.at.len() >= self.max => Admit::Full,
            None => Admit::Mark,
        }
    }

    pub fn marked(&mut self, key: &[u8], now: Instant) {
        if let Some(t) = self.at.get_mut(key) {
            *t = now;
        } else if self.at.len() < self.max {
            self.at.insert(key.into(), now);
        }
    }

    /// Forgets every directory (after marks were removed below a moved directory).
    pub fn clear(&mut self) {
        self.at.clear();
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// The ignore mask for a group whose filesystem mark has `mark_mask`: everything but
/// `FAN_RENAME`, on the directory's entries and on the directory itself.
pub fn ignore_mask(mark_mask: u64) -> u64 {
    (mark_mask & !libc::FAN_RENAME) | libc::FAN_ONDIR | libc::FAN_EVENT_ON_CHILD
}

/// May a directory at `dir` be ignored: nothing at or below it can be reported.
pub fn ignorable(filter: &PathFilter, dir: &[u8]) -> bool {
    !filter.descend(dir)
}

fn mark(group: RawFd, flags: libc::c_uint, mask: u64, dir: RawFd) -> Result<(), String> {
    // SAFETY: valid fds; a NULL path marks the object `dir` refers to.
    let r = unsafe { libc::fanotify_mark(group, flags, mask, dir, std::ptr::null()) };
    if r != 0 {
        return Err(errno_text(
            "fanotify_mark(FAN_MARK_IGNORE|FAN_MARK_EVICTABLE)",
        ));
    }
    Ok(())
}

fn open_dir(path: &[u8]) -> Option<OwnedFd> {
    let c = CString::new(path).ok()?;
    // SAFETY: valid C string.
    let raw = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a fresh fd we own.
    (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Whether this kernel takes evictable ignore marks on directories: added on `/` and removed
/// again, before the group has any other mark (so no event can be lost meanwhile).
pub fn supported(group: RawFd, mask: u64) -> Result<(), String> {
    let root = open_dir(b"/").ok_or_else(|| errno_text("open(/)"))?;
    mark(group, ADD_FLAGS, ignore_mask(mask), root.as_raw_fd())?;
    remove(group, mask, root.as_raw_fd());
    Ok(())
}

fn remove(group: RawFd, mask: u64, dir: RawFd) {
    // A directory without an ignore mark gives ENOENT: nothing to undo.
    // SAFETY: valid fds; a NULL path names `dir` itself.
    unsafe {
        libc::fanotify_mark(
            group,
            libc::FAN_MARK_REMOVE | libc::FAN_MARK_IGNORE,
            ignore_mask(mask),
            dir,
            std::ptr::null(),
        )
    };
}

/// The ignore marks of one FID group.
pub struct Ignorer {
    group: RawFd,
    mask: u64,
    table: IgnoreTable,
    warned: bool,
}

impl Ignorer {
    /// `group` must outlive the ignorer (both live in the reader thread).
    pub fn new(group: RawFd, mark_mask: u64, max: usize) -> Ignorer {
        Ignorer {
            group,
            mask: mark_mask,
            table: IgnoreTable::new(max),
            warned: false,
        }
    }

    /// A filtered event came from the directory `key`: opens it (`open_dir`, by handle), and
    /// if its current path may be ignored, adds the ignore mark.
    pub fn consider(
        &mut self,
        key: &[u8],
        filter: &PathFilter,
        stats: &FileStats,
        open_dir: impl FnOnce() -> Option<(OwnedFd, Vec<u8>)>,
    ) {
        let now = Instant::now();
        match self.table.admit(key, now) {
            Admit::Recent => return,
            Admit::Full => {
                if !self.warned {
                    self.warned = true;
                    stats.ignore_marks_full.store(1, Relaxed);
                    tracing::warn!(
                        max = self.table.max,
                        "files.max_ignore_marks reached: events of further directories outside the watched trees are filtered in userspace"
                    );
                }
                return;
            }
            Admit::Mark => {}
        }
        let Some((fd, path)) = open_dir() else {
            return;
        };
        if !ignorable(filter, &path) {
            return;
        }
        match mark(
            self.group,
            ADD_FLAGS,
            ignore_mask(self.mask),
            fd.as_raw_fd(),
        ) {
            Ok(()) => {
                self.table.marked(key, now);
                stats.ignore_marks.store(self.table.len() as u64, Relaxed);
            }
            Err(e) => {
                if stats.mark_failures.fetch_add(1, Relaxed) < 10 {
                    tracing::warn!(dir = %String::from_utf8_lossy(&path), error = %e, "ignore mark refused (counted in files_mark_failures; that directory's events are filtered in userspace)");
                }
                // Not retried for a while: a refused mark costs a syscall per event otherwise.
                self.table.marked(key, now);
            }
        }
    }

    /// A directory was moved to `path`, which may be reported: removes the ignore marks from
    /// it and every directory below it (excluded and ignored subtrees keep theirs).
    pub fn moved_in(&mut self, path: &[u8], filter: &PathFilter) {
        if self.table.is_empty() {
            return;
        }
        let mut stack = vec![path.to_vec()];
        while let Some(dir) = stack.pop() {
            if ignorable(filter, &dir) {
                continue;
            }
            let Some(fd) = open_dir(&dir) else {
                continue;
            };
            remove(self.group, self.mask, fd.as_raw_fd());
            let Ok(rd) = std::fs::read_dir(std::ffi::OsStr::from_bytes(&dir)) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let mut child = dir.clone();
                    child.push(b'/');
                    child.extend_from_slice(e.file_name().as_bytes());
                    stack.push(child);
                }
            }
        }
        // Handle keys of the unmarked directories are not known here: start over.
        self.table.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_bounds_and_renews() {
        let t0 = Instant::now();
        let mut t = IgnoreTable::new(2);
        assert_eq!(t.admit(b"a", t0), Admit::Mark);
        t.marked(b"a", t0);
        assert_eq!(t.admit(b"a", t0 + Duration::from_millis(10)), Admit::Recent);
        assert_eq!(t.admit(b"a", t0 + REMARK_AFTER * 2), Admit::Mark);
        t.marked(b"b", t0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.admit(b"c", t0), Admit::Full, "the bound holds");
        t.marked(b"c", t0);
        assert_eq!(t.len(), 2);
        // A known directory is still renewed at the bound.
        assert_eq!(t.admit(b"b", t0 + REMARK_AFTER * 2), Admit::Mark);
        t.clear();
        assert!(t.is_empty());
        assert_eq!(IgnoreTable::new(0).admit(b"a", t0), Admit::Full);
    }

    #[test]
    fn only_directories_that_hold_nothing_reported_are_ignorable() {
        let f = PathFilter::new(
            &["/srv/w", "/home/*/.ssh", "/etc/passwd"],
            &["/srv/w/cache"],
            &["/var/lib/sensor"],
        );
        for keep in [
            "/",
            "/srv",
            "/srv/w",
            "/srv/w/sub",
            "/home",
            "/home/al",
            "/home/al/.ssh/d",
            "/etc",
        ] {
            assert!(!ignorable(&f, keep.as_bytes()), "{keep}");
        }
        for drop in [
            "/srv/other",
            "/srv/w/cache",
            "/srv/w/cache/x",
            "/home/al/docs",
            "/home/.hidden",
            "/var/lib/sensor",
            "/tmp",
            "/etc/passwd.d",
        ] {
            assert!(ignorable(&f, drop.as_bytes()), "{drop}");
        }
    }

    #[test]
    fn ignore_mask_keeps_rename_and_covers_children() {
        let m = libc::FAN_CREATE | libc::FAN_MODIFY | libc::FAN_RENAME | libc::FAN_ONDIR;
        let i = ignore_mask(m);
        assert_eq!(i & libc::FAN_RENAME, 0);
        assert_ne!(i & libc::FAN_EVENT_ON_CHILD, 0);
        assert_ne!(i & libc::FAN_ONDIR, 0);
        assert_ne!(i & libc::FAN_MODIFY, 0);
    }
}
