//! `FAN_ATTRIB` from inode marks on the directories of the watched trees, not from the
//! filesystem mark (see docs/ARCHITECTURE.md, "File activity"). Every unlink and link on
//! the filesystem changes a link count, which the kernel reports as an `FAN_ATTRIB` on the
//! inode alone, with no directory or name: a filesystem mark receives one such event per
//! unlink anywhere on the disk, and no ignore mark can stop it (no directory is involved).
//! Named attribute changes (chmod, chown, utimes, setxattr) are reported to the parent
//! directory's marks, so marking each directory of the trees (`FAN_EVENT_ON_CHILD |
//! FAN_ONDIR`) sees them all and none of the link-count noise.
//!
//! - A directory is marked first and listed after, so a subdirectory created meanwhile is
//!   either listed or reported (and then marked) by the filesystem mark.
//! - New directories under the trees are marked when their create or move is read; an
//!   attribute change inside one before that read is not seen (the file's create, writes
//!   and deletion are: they come from the filesystem mark).
//! - At most `files.max_dir_marks` directories at start; past it `FAN_ATTRIB` stays on the
//!   filesystem mark. Refused marks (ENOSPC at `fs.fanotify.max_user_marks`, EACCES) are
//!   counted in `files_mark_failures`.
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use super::filter::PathFilter;
use super::roots::Tree;
use super::source::errno_text;
use super::FileStats;

/// The mask of a directory mark.
pub const DIR_MASK: u64 = libc::FAN_ATTRIB | libc::FAN_EVENT_ON_CHILD | libc::FAN_ONDIR;

/// Why marking stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `files.max_dir_marks` reached.
    Bound(usize),
    /// The kernel refused a mark (first error).
    Refused(String),
}

/// The directories to mark below `top` (itself included), for a walk: entered only where
/// `filter.descend` says something reportable may be.
pub fn enter(filter: &PathFilter, dir: &[u8]) -> bool {
    filter.descend(dir)
}

/// Inode marks on the directories of the trees.
pub struct DirMarks {
    group: RawFd,
    max: usize,
    /// Marks added (directories removed since are not subtracted).
    pub count: usize,
    warned: bool,
}

impl DirMarks {
    /// `group` must outlive this (both live in the reader thread).
    pub fn new(group: RawFd, max: usize) -> DirMarks {
        DirMarks {
            group,
            max,
            count: 0,
            warned: false,
        }
    }

    fn mark(&self, dir: &[u8]) -> Result<bool, String> {
        let Ok(c) = CString::new(dir) else {
            return Ok(false);
        };
        // SAFETY: valid group fd and C string; FAN_MARK_ONLYDIR refuses a non-directory.
        let r = unsafe {
            libc::fanotify_mark(
                self.group,
                libc::FAN_MARK_ADD | libc::FAN_MARK_ONLYDIR | libc::FAN_MARK_DONT_FOLLOW,
                DIR_MASK,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if r == 0 {
            return Ok(true);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            // Gone or not a directory (any more): nothing to mark.
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Ok(false),
            _ => Err(errno_text("fanotify_mark(inode, FAN_ATTRIB)")),
        }
    }

    /// Marks `top` and every directory below it that a walk enters. Errs at the bound or at
    /// the first refused mark (also counted in `stats`); what was marked stays marked.
    pub fn add_tree(
        &mut self,
        top: &[u8],
        filter: &PathFilter,
        stats: &FileStats,
    ) -> Result<(), Stop> {
        let mut stack = vec![top.to_vec()];
        while let Some(dir) = stack.pop() {
            if !enter(filter, &dir) {
                continue;
            }
            if self.count >= self.max {
                return Err(Stop::Bound(self.max));
            }
            match self.mark(&dir) {
                Ok(true) => {
                    self.count += 1;
                    stats.dir_marks.store(self.count as u64, Relaxed);
                }
                Ok(false) => continue,
                Err(e) => {
                    stats.mark_failures.fetch_add(1, Relaxed);
                    return Err(Stop::Refused(format!(
                        "{}: {e}",
                        String::from_utf8_lossy(&dir)
                    )));
                }
            }
            let Ok(rd) = std::fs::read_dir(std::ffi::OsStr::from_bytes(&dir)) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let mut child = dir.clone();
                    if child.last() != Some(&b'/') {
                        child.push(b'/');
                    }
                    child.extend_from_slice(e.file_name().as_bytes());
                    stack.push(child);
                }
            }
        }
        Ok(())
    }

    /// A directory appeared at `path` (created or moved in) while running: marks it and what
    /// is below it. A failure is logged (first ten) and counted, never silent.
    pub fn appeared(&mut self, path: &[u8], filter: &PathFilter, stats: &FileStats) {
        if let Err(stop) = self.add_tree(path, filter, stats) {
            stats.dir_marks_full.store(
                u64::from(matches!(stop, Stop::Bound(_))) | stats.dir_marks_full.load(Relaxed),
                Relaxed,
            );
            if !self.warned || matches!(stop, Stop::Refused(_)) {
                self.warned = true;
                if stats.mark_failures.load(Relaxed) < 10 {
                    tracing::warn!(dir = %String::from_utf8_lossy(path), why = ?stop, "a new directory in the watched trees is not fully marked: attribute changes (chmod, chown) below it are not seen");
                }
            }
        }
    }

    /// Removes every inode mark of the group (after a walk stopped at start).
    pub fn flush(&mut self, stats: &FileStats) {
        // SAFETY: valid group fd; FAN_MARK_FLUSH alone removes the group's inode marks.
        unsafe {
            libc::fanotify_mark(
                self.group,
                libc::FAN_MARK_FLUSH,
                0,
                libc::AT_FDCWD,
                std::ptr::null(),
            )
        };
        self.count = 0;
        stats.dir_marks.store(0, Relaxed);
    }
}

/// Marks the directories of every tree for `FAN_ATTRIB` (walking from each tree's anchor);
/// at the bound or a refused mark, removes them all again and says why.
pub fn for_trees(
    group: RawFd,
    trees: &[&Tree],
    max: usize,
    filter: &PathFilter,
    stats: &FileStats,
) -> Result<DirMarks, String> {
    if max == 0 {
        return Err("files.max_dir_marks = 0".into());
    }
    let mut d = DirMarks::new(group, max);
    for t in trees {
        // A tree that is a single file: its directory reports its attribute changes.
        let top = match t.anchor.parent() {
            Some(parent) if !t.anchor.is_dir() => parent,
            _ => &t.anchor,
        };
        if let Err(stop) = d.add_tree(top.as_os_str().as_bytes(), filter, stats) {
            d.flush(stats);
            return Err(match stop {
                Stop::Bound(n) => {
                    format!("the trees hold more than files.max_dir_marks = {n} directories")
                }
                Stop::Refused(e) => e,
            });
        }
    }
    Ok(d)
}

/// Adds `FAN_ATTRIB` (in `mask`) to the filesystem marks of `anchors`, after the directory
/// marks could not be placed. Adding to an existing mark ORs the mask.
pub fn attrib_to_fs(
    group: RawFd,
    anchors: &[PathBuf],
    mask: u64,
    stats: &FileStats,
) -> Result<(), String> {
    for anchor in anchors {
        let Ok(c) = CString::new(anchor.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: valid group fd and C string.
        let r = unsafe {
            libc::fanotify_mark(
                group,
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                mask,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if r != 0 {
            stats.mark_failures.fetch_add(1, Relaxed);
            return Err(format!(
                "attrib NOT reported: {}",
                errno_text("fanotify_mark(FAN_MARK_FILESYSTEM, FAN_ATTRIB)")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("files-dirmarks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn walk_enters_trees_and_the_way_to_them_only() {
        let f = PathFilter::new(&["/home/*/.ssh", "/etc"], &["/etc/skip"], &[] as &[&str]);
        for yes in [
            "/home",
            "/home/al",
            "/home/al/.ssh",
            "/home/al/.ssh/d",
            "/etc/x",
        ] {
            assert!(enter(&f, yes.as_bytes()), "{yes}");
        }
        for no in ["/home/al/docs", "/etc/skip", "/etc/skip/y", "/var"] {
            assert!(!enter(&f, no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn bound_stops_the_walk_and_refusals_are_counted() {
        let d = tmp("bound");
        for sub in ["a/b", "c"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let top = d.as_os_str().as_bytes().to_vec();
        let f = PathFilter::new(std::slice::from_ref(&top), &[] as &[&str], &[] as &[&str]);
        let stats = FileStats::default();
        // Not a fanotify group: every mark is refused (EBADF/EINVAL), counted, reported.
        let mut m = DirMarks::new(-1, 10);
        match m.add_tree(&top, &f, &stats) {
            Err(Stop::Refused(e)) => assert!(e.contains("fanotify_mark"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(stats.mark_failures.load(Relaxed), 1);
        assert_eq!(m.count, 0);
        let mut m = DirMarks::new(-1, 0);
        assert_eq!(m.add_tree(&top, &f, &stats), Err(Stop::Bound(0)));
        m.appeared(&top, &f, &stats);
        assert_eq!(stats.dir_marks_full.load(Relaxed), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
