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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// The directories given an ignore mark, by (device, inode), and when: no event of
    /// theirs was dropped in the kernel before that time. Kept across table resets (the
    /// kernel keeps the marks), until the directory moves into a tree.
    marked: HashMap<(u64, u64), SystemTime>,
}

impl Ignorer {
    /// `group` must outlive the ignorer (both live in the reader thread).
    pub fn new(group: RawFd, mark_mask: u64, max: usize) -> Ignorer {
        Ignorer {
            group,
            mask: mark_mask,
            table: IgnoreTable::new(max),
            warned: false,
            marked: HashMap::new(),
        }
    }

    /// Adds `bits` to the events later ignore marks drop (the directory ops, once they moved
    /// onto the filesystem mark). Marks already placed get them when they are renewed.
    pub fn widen(&mut self, bits: u64) {
        self.mask |= bits;
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
        // Only a directory remembered in `marked` may carry a mark: a move into a tree must
        // be able to say since when its events were dropped.
        let Some(id) = dir_id(fd.as_raw_fd()) else {
            return;
        };
        if !self.marked.contains_key(&id) && self.marked.len() >= self.table.max {
            self.table.marked(key, now);
            return;
        }
        match mark(
            self.group,
            ADD_FLAGS,
            ignore_mask(self.mask),
            fd.as_raw_fd(),
        ) {
            Ok(()) => {
                self.marked.entry(id).or_insert_with(SystemTime::now);
                self.table.marked(key, now);
                stats.ignore_marks.store(self.marked.len() as u64, Relaxed);
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
    /// it and every directory below it (excluded and ignored subtrees keep theirs), and
    /// returns the files directly in a directory that had an ignore mark and changed since
    /// that mark was added (ctime at or after it). Changes between the move and this call had
    /// their events dropped by the kernel while the marks were on, so the caller reports them,
    /// without a process. The mark comes off a directory before its entries are read, so a
    /// change is either found here or delivered by the kernel. Files changed before the move,
    /// while still outside, are reported too: more than was missed, never less. At most
    /// [`CHANGED_MAX`]. The `files_ignore_marks` gauge drops by the marks taken off.
    pub fn moved_in(
        &mut self,
        path: &[u8],
        filter: &PathFilter,
        stats: &FileStats,
    ) -> Vec<Vec<u8>> {
        let mut changed = Vec::new();
        if self.marked.is_empty() {
            return changed;
        }
        let mut stack = vec![path.to_vec()];
        while let Some(dir) = stack.pop() {
            if ignorable(filter, &dir) {
                continue;
            }
            let Some(fd) = open_dir(&dir) else {
                continue;
            };
            let since = dir_id(fd.as_raw_fd())
                .and_then(|id| self.marked.remove(&id))
                .map(|t| {
                    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
                });
            remove(self.group, self.mask, fd.as_raw_fd());
            let Ok(rd) = std::fs::read_dir(std::ffi::OsStr::from_bytes(&dir)) else {
                continue;
            };
            for e in rd.flatten() {
                let mut child = dir.clone();
                child.push(b'/');
                child.extend_from_slice(e.file_name().as_bytes());
                let Ok(meta) = e.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(child);
                } else if since.is_some_and(|t| ctime_of(&meta) >= t) && changed.len() < CHANGED_MAX
                {
                    changed.push(child);
                }
            }
        }
        // Handle keys of the unmarked directories are not known here: the rate limit starts
        // over (the kernel keeps the other marks, and `marked` remembers them).
        self.table.clear();
        stats.ignore_marks.store(self.marked.len() as u64, Relaxed);
        changed
    }
}

/// Files [`Ignorer::moved_in`] reports at most for one move.
pub const CHANGED_MAX: usize = 4096;

/// (device, inode) of an open directory.
fn dir_id(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and pointer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// A file's ctime as (seconds, nanoseconds), ordered.
fn ctime_of(m: &std::fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (m.ctime(), m.ctime_nsec())
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

    #[test]
    fn a_directory_moved_in_reports_what_changed_since_the_move() {
        let root = crate::test_dir::TestDir::new("marks-moved-in");
        let (outside, tree) = (root.join("outside"), root.join("tree"));
        std::fs::create_dir_all(outside.join("d/sub")).unwrap();
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(outside.join("d/before"), b"x").unwrap();
        std::fs::write(outside.join("d/sub/before2"), b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut ig = Ignorer::new(-1, libc::FAN_MODIFY, 8);
        // No group: removing marks fails quietly. `d` and `d/sub` are ignored from now on.
        for sub in ["d", "d/sub"] {
            let fd = open_dir(outside.join(sub).as_os_str().as_bytes()).unwrap();
            let id = dir_id(fd.as_raw_fd()).unwrap();
            ig.marked.insert(id, SystemTime::now());
        }
        std::thread::sleep(Duration::from_millis(20));
        std::fs::rename(outside.join("d"), tree.join("d")).unwrap();
        std::fs::write(tree.join("d/after"), b"y").unwrap();
        std::fs::write(tree.join("d/sub/after2"), b"y").unwrap();
        // A later entry moves the directory's own ctime on; the first is still found.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(tree.join("d/later"), b"y").unwrap();
        let t = tree.to_str().unwrap();
        let none: [&str; 0] = [];
        let f = PathFilter::new(&[t], &none, &none);
        let stats = FileStats::default();
        stats.ignore_marks.store(2, Relaxed);
        let mut changed = Ignorer::new(-1, libc::FAN_MODIFY, 8).moved_in(
            tree.join("d").as_os_str().as_bytes(),
            &f,
            &stats,
        );
        assert!(changed.is_empty(), "nothing was ignored: nothing to report");
        assert_eq!(stats.ignore_marks.load(Relaxed), 2, "nothing taken off");
        changed = ig.moved_in(tree.join("d").as_os_str().as_bytes(), &f, &stats);
        changed.sort();
        let want: Vec<Vec<u8>> = ["d/after", "d/later", "d/sub/after2"]
            .iter()
            .map(|n| tree.join(n).as_os_str().as_bytes().to_vec())
            .collect();
        assert_eq!(changed, want);
        assert!(ig.marked.is_empty(), "the moved directories are forgotten");
        assert_eq!(stats.ignore_marks.load(Relaxed), 0, "and no longer counted");
    }
}
