//! `FAN_MODIFY` and `FAN_ATTRIB` from inode marks on the directories of the watched trees,
//! not from the filesystem mark (see docs/ARCHITECTURE.md, "File activity"):
//! - every write(2) on the filesystem is a `FAN_MODIFY`. On a filesystem mark, each one
//!   makes the writer's kernel take the parent and name and run the group's handler, only
//!   for the ignore mark to drop it: a database writing outside the trees paid that on every
//!   write. With the directory marks, a write outside the trees finds no mark that wants it;
//! - every unlink and link changes a link count, which the kernel reports as an `FAN_ATTRIB`
//!   on the inode alone, with no directory or name: a filesystem mark receives one such event
//!   per unlink anywhere on the disk, and no ignore mark can stop it.
//!
//! Writes and named attribute changes (chmod, chown, utimes, setxattr) are reported to the
//! parent directory's marks, so marking each directory of the trees (`FAN_EVENT_ON_CHILD |
//! FAN_ONDIR`) sees them all. Create, delete, moves and `FAN_CLOSE_WRITE` stay on the
//! filesystem mark: a file written at once in a directory made a moment ago is still
//! reported (created, and written at its close) before the directory is marked.
//!
//! - A directory is marked first and listed after, so a subdirectory created meanwhile is
//!   either listed or reported (and then marked) by the filesystem mark.
//! - New directories under the trees are marked when their create or move is read; an
//!   attribute change or a `modify` inside one before that read is not seen (the file's
//!   create, its close after writing and its deletion are: they come from the filesystem
//!   mark). So a truncate(2) by path, in that moment, is the one write it can miss.
//! - At most `files.max_dir_marks` directories at start; past it the directory ops go on the
//!   filesystem mark. A directory that appears later and cannot be marked (the bound, a
//!   refused mark) moves them there too, for good. Refused marks (ENOSPC at
//!   `fs.fanotify.max_user_marks`, EACCES) are counted in `files_mark_failures`.
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use super::filter::PathFilter;
use super::roots::Tree;
use super::source::errno_text;
use super::{FileStats, OpSet};

/// The directory ops, each with its name and the reported op it needs (`EMPTY`: always): the
/// one table [`dir_ops`] and [`dir_ops_names`] read, so the mask and its description agree.
const DIR_OPS: [(u64, &str, OpSet); 2] = [
    (libc::FAN_MODIFY, "FAN_MODIFY", OpSet::EMPTY),
    (libc::FAN_ATTRIB, "FAN_ATTRIB", OpSet::ATTRIB),
];

fn dir_ops_of(ops: OpSet) -> impl Iterator<Item = &'static (u64, &'static str, OpSet)> {
    DIR_OPS
        .iter()
        .filter(move |(_, _, need)| ops.contains(*need))
}

/// The events the inode marks on the trees' directories carry, so that the filesystem mark
/// does not: `FAN_MODIFY` (every write(2) on the disk) and, when attrib is reported,
/// `FAN_ATTRIB` (every link-count change on the disk). See docs/ARCHITECTURE.md, "File
/// activity": create, delete, moves and close_write stay on the filesystem mark, so a file
/// written in a directory made a moment ago is still seen (its create, and its close_write).
pub fn dir_ops(ops: OpSet) -> u64 {
    dir_ops_of(ops).fold(0, |m, (bit, _, _)| m | bit)
}

/// The [`dir_ops`] by name, `|`-separated.
pub fn dir_ops_names(ops: OpSet) -> String {
    dir_ops_of(ops)
        .map(|(_, name, _)| *name)
        .collect::<Vec<_>>()
        .join("|")
}

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

/// Visits `top` and every directory below it that [`enter`] admits, each before what is
/// below it. `visit` says whether to list the directory (`Ok(false)`: gone, skip it) or
/// stops the walk with its error.
pub fn walk<E>(
    top: &[u8],
    filter: &PathFilter,
    mut visit: impl FnMut(&[u8]) -> Result<bool, E>,
) -> Result<(), E> {
    let mut stack = vec![top.to_vec()];
    while let Some(dir) = stack.pop() {
        if !enter(filter, &dir) || !visit(&dir)? {
            continue;
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

/// Inode marks on the directories of the trees.
pub struct DirMarks {
    group: RawFd,
    max: usize,
    /// The [`dir_ops`] the marks carry.
    ops: u64,
    /// The filesystem marks' anchors and full mask, for [`DirMarks::appeared`]'s fallback.
    fallback: Option<(Vec<PathBuf>, u64)>,
    /// The directory ops went onto the filesystem marks: no more marks are needed.
    on_fs: bool,
    /// Marks added (directories removed since are not subtracted).
    pub count: usize,
    warned: bool,
}

impl DirMarks {
    /// `group` must outlive this (both live in the reader thread).
    pub fn new(group: RawFd, max: usize, ops: OpSet) -> DirMarks {
        DirMarks {
            group,
            max,
            ops: dir_ops(ops),
            fallback: None,
            on_fs: false,
            count: 0,
            warned: false,
        }
    }

    /// The directory ops, once they moved onto the filesystem marks (None before).
    pub fn ops_on_fs(&self) -> Option<u64> {
        self.on_fs.then_some(self.ops)
    }

    /// Where the directory ops go when a directory that appears cannot be marked.
    pub fn falling_back_to(mut self, anchors: Vec<PathBuf>, fs_mask: u64) -> DirMarks {
        self.fallback = Some((anchors, fs_mask));
        self
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
                self.ops | libc::FAN_EVENT_ON_CHILD | libc::FAN_ONDIR,
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
            _ => Err(errno_text("fanotify_mark(inode, directory ops)")),
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
        walk(top, filter, |dir| {
            if self.count >= self.max {
                return Err(Stop::Bound(self.max));
            }
            match self.mark(dir) {
                Ok(true) => {
                    self.count += 1;
                    stats.dir_marks.store(self.count as u64, Relaxed);
                    Ok(true)
                }
                Ok(false) => Ok(false),
                Err(e) => {
                    stats.mark_failures.fetch_add(1, Relaxed);
                    Err(Stop::Refused(format!(
                        "{}: {e}",
                        String::from_utf8_lossy(dir)
                    )))
                }
            }
        })
    }

    /// A directory appeared at `path` (created or moved in) while running: marks it and what
    /// is below it. When that stops short (the bound, a refused mark), the directory ops
    /// move onto the filesystem marks for good, so nothing below it goes unseen; logged
    /// (first ten) and counted, never silent.
    pub fn appeared(&mut self, path: &[u8], filter: &PathFilter, stats: &FileStats) {
        if self.on_fs {
            return;
        }
        let Err(stop) = self.add_tree(path, filter, stats) else {
            return;
        };
        stats.dir_marks_full.store(
            u64::from(matches!(stop, Stop::Bound(_))) | stats.dir_marks_full.load(Relaxed),
            Relaxed,
        );
        let moved = match &self.fallback {
            Some((anchors, mask)) => to_fs(self.group, anchors, *mask, stats),
            None => Err("no filesystem mark to fall back to".into()),
        };
        self.on_fs = moved.is_ok();
        if !self.warned || matches!(stop, Stop::Refused(_)) {
            self.warned = true;
            if stats.mark_failures.load(Relaxed) < 10 {
                match moved {
                    Ok(()) => {
                        tracing::warn!(dir = %String::from_utf8_lossy(path), why = ?stop, "a new directory in the watched trees could not be marked: writes and attribute changes now come from the filesystem mark (costlier outside the trees)")
                    }
                    Err(e) => {
                        tracing::warn!(dir = %String::from_utf8_lossy(path), why = ?stop, error = %e, "a new directory in the watched trees is not fully marked: writes (modify) and attribute changes below it are seen only at close")
                    }
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

/// Where a walk of a tree's directories starts: its anchor, or for a tree that is a single
/// file the directory that holds it (which reports its attribute changes).
pub fn top_of(t: &Tree) -> &std::path::Path {
    match t.anchor.parent() {
        Some(parent) if !t.anchor.is_dir() => parent,
        _ => &t.anchor,
    }
}

/// Marks the directories of every tree for the directory ops (walking from each tree's
/// anchor); at the bound or a refused mark, removes them all again and says why.
pub fn for_trees(
    group: RawFd,
    trees: &[&Tree],
    max: usize,
    ops: OpSet,
    filter: &PathFilter,
    stats: &FileStats,
) -> Result<DirMarks, String> {
    if max == 0 {
        return Err("files.max_dir_marks = 0".into());
    }
    let mut d = DirMarks::new(group, max, ops);
    for t in trees {
        if let Err(stop) = d.add_tree(top_of(t).as_os_str().as_bytes(), filter, stats) {
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

/// Adds the directory ops (in `mask`) to the filesystem marks of `anchors`, after the
/// directory marks could not be placed. Adding to an existing mark ORs the mask.
pub fn to_fs(
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
                "modify and attrib NOT reported: {}",
                errno_text("fanotify_mark(FAN_MARK_FILESYSTEM, directory ops)")
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
        let mut m = DirMarks::new(-1, 10, OpSet::DEFAULT);
        match m.add_tree(&top, &f, &stats) {
            Err(Stop::Refused(e)) => assert!(e.contains("fanotify_mark"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(stats.mark_failures.load(Relaxed), 1);
        assert_eq!(m.count, 0);
        let mut m = DirMarks::new(-1, 0, OpSet::DEFAULT);
        assert_eq!(m.add_tree(&top, &f, &stats), Err(Stop::Bound(0)));
        m.appeared(&top, &f, &stats);
        assert_eq!(stats.dir_marks_full.load(Relaxed), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
