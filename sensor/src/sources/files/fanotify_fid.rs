//! fanotify in FID mode: one filesystem mark per filesystem of the watched trees, events that
//! name the directory (by file handle) and the entry, resolved to paths with
//! `open_by_handle_at` + `readlink(/proc/self/fd/N)` + the name. Deleted and renamed entries
//! resolve through their directory, which still exists, not through the object.
//!
//! A filesystem mark sees the whole disk, so the work per event is kept small: the sensor's
//! own pid is dropped before anything else, directory handles are cached (invalidated when a
//! directory is moved or removed), the path filter runs before /proc is read, and a directory
//! whose events are all filtered out gets an in-kernel ignore mark ([`super::marks`]).
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::dir_marks::{self, dir_ops, dir_ops_names, DirMarks};
use super::emit::{Activity, Outcome, Sink};
use super::fanotify_parse;
use super::fid_resolver::{HandleBuf, Resolver};
use super::filter::PathFilter;
use super::marks::{self, Ignorer};
use super::roots::Tree;
use super::source::{batch_full, errno_text, read_loop, FANOTIFY_BATCH_PAUSE};
use super::tree_dirs::{self, TreeDirs, Unresolved};
use super::{FileStats, OpSet};

/// Size of one `read(2)` from the group.
const READ_BUF: usize = 256 * 1024;

/// An initialized, marked FID group.
pub struct FidGroup {
    fd: OwnedFd,
    /// fsid -> an open fd on that filesystem, for `open_by_handle_at`.
    mounts: Vec<([u8; 8], OwnedFd)>,
    /// `FAN_RENAME` (old and new name in one event) is in use.
    pub rename: bool,
    /// `FAN_REPORT_TARGET_FID` is in use.
    pub target_fid: bool,
    /// One anchor per marked filesystem.
    pub marked: Vec<PathBuf>,
    /// Index into the trees of those no filesystem mark covers, with the error.
    pub unmarked: Vec<(usize, String)>,
    /// The bound on directories with an ignore mark, or why there are none.
    pub ignore_marks: Result<usize, String>,
    /// Inode marks for the [`dir_ops`] on the trees' directories, or why those events are on
    /// the filesystem mark.
    pub dir_marks: Option<Result<DirMarks, String>>,
    /// The [`dir_ops`] are on the filesystem marks.
    dir_ops_on_fs: bool,
    ops: OpSet,
    /// The trees a filesystem mark covers, whose directory handles the reader takes first.
    covered: Vec<Tree>,
}

/// Bounds on the marks of one group (`files.max_ignore_marks`, `files.max_dir_marks`).
#[derive(Debug, Clone, Copy)]
pub struct MarkLimits {
    pub ignore: usize,
    pub dirs: usize,
}

impl FidGroup {
    pub fn describe(&self) -> String {
        let ignore = match &self.ignore_marks {
            Ok(max) => format!(
                "in-kernel ignore marks (FAN_MARK_IGNORE|FAN_MARK_EVICTABLE) on up to {max} directories outside the watched trees"
            ),
            Err(e) => format!(
                "no ignore marks ({e}): every event on the filesystem is read and filtered in userspace"
            ),
        };
        let names = dir_ops_names(self.ops);
        let attrib = match &self.dir_marks {
            Some(Ok(d)) => format!(", {names} from inode marks on {} directories", d.count),
            Some(Err(e)) => format!(", {names} on the filesystem mark ({e})"),
            None => String::new(),
        };
        format!(
            "FAN_REPORT_DFID_NAME|FAN_REPORT_FID{} with filesystem marks on {} ({}), {}, {ignore}{attrib}",
            if self.target_fid {
                "|FAN_REPORT_TARGET_FID"
            } else {
                ""
            },
            self.marked.len(),
            self.marked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if self.rename {
                "FAN_RENAME"
            } else {
                "moves as MOVED_FROM/MOVED_TO (no FAN_RENAME)"
            }
        )
    }
}

pub(super) fn fsid_of(fd: RawFd) -> Result<[u8; 8], String> {
    // SAFETY: statfs is plain data; fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return Err(errno_text("fstatfs"));
    }
    const _: () = assert!(std::mem::size_of::<libc::fsid_t>() == 8);
    // SAFETY: fsid_t is two c_ints (checked above); its fields are private in libc.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [u8; 8]>(st.f_fsid) })
}

fn cstring(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{} holds a NUL", p.display()))
}

/// `open_by_handle_at` works here (needs CAP_DAC_READ_SEARCH and a filesystem that exports
/// handles): checked on the anchor itself before relying on it.
fn check_handles(mount_fd: RawFd, anchor: &Path) -> Result<(), String> {
    let c = cstring(anchor)?;
    let Ok(mut h) = HandleBuf::of(libc::AT_FDCWD, &c, 0) else {
        return Err(errno_text("name_to_handle_at"));
    };
    // SAFETY: the handle was filled by the kernel above.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount_fd,
            (&mut h as *mut HandleBuf).cast(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(errno_text("open_by_handle_at"));
    }
    // SAFETY: fresh fd we own.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// The filesystem mark's mask. The [`dir_ops`] only when no inode marks on the trees'
/// directories carry them (`dir_ops_on_fs`).
fn mark_mask(ops: OpSet, rename: bool, dir_ops_on_fs: bool) -> u64 {
    let mut m = libc::FAN_CREATE
        | libc::FAN_DELETE
        | libc::FAN_CLOSE_WRITE
        | libc::FAN_ONDIR
        | libc::FAN_EVENT_ON_CHILD;
    // Moves are always subscribed: the directory cache depends on seeing them.
    m |= if rename {
        libc::FAN_RENAME
    } else {
        libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO
    };
    if dir_ops_on_fs {
        m |= dir_ops(ops);
    }
    if ops.contains(OpSet::OPEN) {
        m |= libc::FAN_OPEN;
    }
    if ops.contains(OpSet::CLOSE) {
        m |= libc::FAN_CLOSE_NOWRITE;
    }
    m
}

/// Initializes the group and marks the filesystem of every tree. Errors when nothing could
/// be marked; trees on filesystems that refused the mark are listed in `unmarked`. Up to
/// `limits.ignore` directories outside the trees get ignore marks (0: none); up to
/// `limits.dirs` directories of the trees get inode marks for `FAN_ATTRIB`.
pub fn open(
    trees: &[Tree],
    ops: OpSet,
    unlimited_queue: bool,
    limits: MarkLimits,
    filter: &PathFilter,
    stats: &FileStats,
) -> Result<FidGroup, String> {
    let base = libc::FAN_CLASS_NOTIF
        | libc::FAN_CLOEXEC
        | libc::FAN_NONBLOCK
        | libc::FAN_REPORT_DFID_NAME
        | libc::FAN_REPORT_FID
        | if unlimited_queue {
            libc::FAN_UNLIMITED_QUEUE
        } else {
            0
        };
    let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
    let init = |flags| {
        // SAFETY: plain integer flags.
        let fd = unsafe { libc::fanotify_init(flags, event_flags) };
        // SAFETY: a fresh fd we own.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let (fd, target_fid) = match init(base | libc::FAN_REPORT_TARGET_FID) {
        Some(fd) => (fd, true),
        None => match init(base) {
            Some(fd) => (fd, false),
            None => {
                return Err(errno_text(
                    "fanotify_init(FAN_CLASS_NOTIF|FAN_REPORT_DFID_NAME|FAN_REPORT_FID)",
                ))
            }
        },
    };
    // Checked before any other mark exists, so the probe mark on `/` can hide nothing.
    let ignore_marks = if limits.ignore == 0 {
        Err("files.max_ignore_marks = 0".into())
    } else {
        marks::supported(fd.as_raw_fd(), mark_mask(ops, target_fid, true)).map(|()| limits.ignore)
    };
    let want_dirs = limits.dirs > 0;
    let mut g = FidGroup {
        fd,
        mounts: Vec::new(),
        rename: target_fid,
        target_fid,
        marked: Vec::new(),
        unmarked: Vec::new(),
        ignore_marks,
        dir_marks: None,
        dir_ops_on_fs: !want_dirs,
        ops,
        covered: Vec::new(),
    };
    for (i, tree) in trees.iter().enumerate() {
        if let Err(e) = g.mark_tree(tree, ops) {
            g.unmarked.push((i, e));
        }
    }
    if g.marked.is_empty() {
        let why: Vec<String> = g
            .unmarked
            .iter()
            .map(|(i, e)| format!("{}: {e}", trees[*i].anchor.display()))
            .collect();
        return Err(format!(
            "no filesystem could be marked ({})",
            why.join("; ")
        ));
    }
    // Only the trees a filesystem mark covers: the others get inotify.
    let covered: Vec<&Tree> = (0..trees.len())
        .filter(|i| !g.unmarked.iter().any(|(u, _)| u == i))
        .map(|i| &trees[i])
        .collect();
    g.covered = covered.iter().map(|t| (*t).clone()).collect();
    if want_dirs {
        let d = dir_marks::for_trees(g.fd.as_raw_fd(), &covered, limits.dirs, ops, filter, stats);
        // Where the directory ops go if the marks cannot be placed, now or for a directory
        // that appears later: onto the filesystem marks (adding to a mark ORs the mask).
        let fs_mask = mark_mask(g.ops, g.rename, true);
        g.dir_marks = Some(match d {
            Ok(d) => Ok(d.falling_back_to(g.marked.clone(), fs_mask)),
            Err(e) => {
                g.dir_ops_on_fs = true;
                Err(
                    match dir_marks::to_fs(g.fd.as_raw_fd(), &g.marked, fs_mask, stats) {
                        Ok(()) => e,
                        Err(f) => format!("{e}; {f}"),
                    },
                )
            }
        });
    } else {
        g.dir_marks = Some(Err("files.max_dir_marks = 0".into()));
    }
    Ok(g)
}

impl FidGroup {
    /// Whether the [`dir_ops`] belong on the filesystem mark.
    fn dir_ops_on_fs(&self) -> bool {
        self.dir_ops_on_fs
    }

    fn mark_tree(&mut self, tree: &Tree, ops: OpSet) -> Result<(), String> {
        let anchor = &tree.anchor;
        let c = cstring(anchor)?;
        // SAFETY: valid C string.
        let raw = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(errno_text("open"));
        }
        // SAFETY: fresh fd we own.
        let mount_fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let fsid = fsid_of(mount_fd.as_raw_fd())?;
        if self.mounts.iter().any(|(f, _)| *f == fsid) {
            return Ok(());
        }
        check_handles(mount_fd.as_raw_fd(), anchor)?;
        let mark = |mask: u64| {
            // SAFETY: valid group fd and C string.
            unsafe {
                libc::fanotify_mark(
                    self.fd.as_raw_fd(),
                    libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                    mask,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                )
            }
        };
        let on_fs = self.dir_ops_on_fs();
        if mark(mark_mask(ops, self.rename, on_fs)) != 0 {
            let err = std::io::Error::last_os_error();
            if !(self.rename && err.raw_os_error() == Some(libc::EINVAL)) {
                return Err(errno_text("fanotify_mark(FAN_MARK_FILESYSTEM)"));
            }
            // A kernel with TARGET_FID but without FAN_RENAME: fall back to moves.
            if mark(mark_mask(ops, false, on_fs)) != 0 {
                return Err(errno_text("fanotify_mark(FAN_MARK_FILESYSTEM)"));
            }
            self.rename = false;
        }
        self.mounts.push((fsid, mount_fd));
        self.marked.push(anchor.clone());
        Ok(())
    }
}

/// A directory event after which its cached path (and those below it) is stale.
const DIR_MOVED_OR_GONE: u64 =
    libc::FAN_RENAME | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO | libc::FAN_DELETE;

/// Reads events until `stop`, sending what the filter keeps.
pub fn run(group: FidGroup, mut sink: Sink, stop: &AtomicBool) {
    let me = std::process::id() as i32;
    let mut res = Resolver {
        mounts: group.mounts,
        cache: HashMap::new(),
    };
    let (mut path, mut new_path) = (Vec::with_capacity(256), Vec::with_capacity(256));
    let fd = group.fd;
    let mut ignorer = group.ignore_marks.ok().map(|max| {
        // Only what the filesystem mark carries: an ignore mark's events become the
        // directory's interest, so with `FAN_MODIFY` in it every write below the directory
        // would take the parent and a name in the writer's kernel only to be dropped. The
        // directory ops are added if they move onto the filesystem mark (`dir_appeared`).
        Ignorer::new(
            fd.as_raw_fd(),
            mark_mask(group.ops, group.rename, group.dir_ops_on_fs),
            max,
        )
    });
    let mut dirs = group.dir_marks.and_then(Result::ok);
    // After the marks, before the first read (a directory made meanwhile is walked or its
    // create is queued), in this thread: a large tree takes a while (see tree_dirs.rs).
    let mut tree = tree_dirs::for_trees(&group.covered, sink.filter(), group.target_fid);
    tree.publish(sink.stats());
    read_loop(
        fd.as_raw_fd(),
        READ_BUF,
        FANOTIFY_BATCH_PAUSE,
        stop,
        || true,
        |buf| {
            for ev in fanotify_parse::events(buf) {
                let Some(ev) = sink.stats().parsed(ev) else {
                    continue;
                };
                if ev.fd >= 0 {
                    // SAFETY: the kernel gave us this fd; nothing else owns it.
                    drop(unsafe { OwnedFd::from_raw_fd(ev.fd) });
                }
                let bufs = (&mut path, &mut new_path);
                let marks = (ignorer.as_mut(), dirs.as_mut());
                let out = handle(&ev, me, (&mut res, &mut tree), &mut sink, bufs, marks);
                if out == Outcome::Closed {
                    return false;
                }
            }
            tree.batch_done(!batch_full(buf.len(), READ_BUF));
            tree.publish(sink.stats());
            true
        },
    );
}

fn handle(
    ev: &fanotify_parse::RawEvent<'_>,
    me: i32,
    (res, tree): (&mut Resolver, &mut TreeDirs),
    sink: &mut Sink,
    (path, new_path): (&mut Vec<u8>, &mut Vec<u8>),
    (mut ignorer, dirs): (Option<&mut Ignorer>, Option<&mut DirMarks>),
) -> Outcome {
    let stats = sink.stats();
    if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
        stats.queue_overflows.fetch_add(1, Relaxed);
        tracing::warn!("fanotify queue overflowed; file events were lost");
        // A lost directory move would leave a cached path naming the wrong place, and a lost
        // create a tree directory unknown.
        res.cache.clear();
        tree.lose("a fanotify queue overflow");
        return Outcome::Filtered;
    }
    let ondir = ev.mask & libc::FAN_ONDIR != 0;
    let dir_moved = ondir && ev.mask & DIR_MOVED_OR_GONE != 0;
    if dir_moved {
        // Whoever moved or removed it, and whether or not the event's own paths resolve
        // below: the directory's cached path and those under it go first. Without the
        // object's handle (no FAN_REPORT_TARGET_FID), by path after resolving, or all of them
        // when that fails.
        match &ev.info.fid {
            Some(child) => res.forget_dir(&child.fid),
            None if ev.pid == me => res.cache.clear(),
            None => {}
        }
    }
    if ev.pid == me {
        stats.own_events.fetch_add(1, Relaxed);
        // The sensor's own spool and output directories are ignored paths: no need to read
        // their events at all.
        if let (Some(ig), Some(d)) = (ignorer, &ev.info.dfid) {
            ig.consider(d.fid.key, sink.filter(), stats, || res.open_dir(&d.fid));
        }
        return Outcome::Filtered;
    }
    let ops = fanotify_parse::ops_of_mask(ev.mask);
    let pid = Some(ev.pid.max(0) as u32);
    let info = &ev.info;

    if let (Some(old), Some(new)) = (&info.old, &info.new) {
        let (a, b) = (res.join(old, path), res.join(new, new_path));
        if a.is_err() || b.is_err() {
            let v = tree.count_unresolved(stats, &[(a, old), (b, new)]);
            if dir_moved && info.fid.is_none() {
                res.cache.clear();
            }
            if b.is_err() {
                if ondir && v == Unresolved::Drop {
                    tree.unplaced(info.fid.as_ref(), true);
                }
                return Outcome::Filtered;
            }
        }
        if a.is_err() {
            // The old side cannot be named any more (its directory was removed before this
            // read): reported as what arrived at the new path, as a kernel without
            // FAN_RENAME reports MOVED_TO, and a directory counts as moved in from outside.
            let out = sink.emit(Activity {
                path: new_path,
                new_path: None,
                ops: fanotify_parse::ops_of_mask(libc::FAN_MOVED_TO),
                pid,
            });
            if ondir {
                if let Some(child) = &info.fid {
                    res.remember(&child.fid, new_path);
                }
                let moved_in = sink.filter().descend(new_path);
                tree.appeared(sink.filter(), info.fid.as_ref(), new_path, true);
                dir_arrived(sink, (ignorer, dirs), new_path, moved_in);
            }
            return out;
        }
        let out = sink.emit(Activity {
            path,
            new_path: Some(new_path),
            ops,
            pid,
        });
        if ondir {
            res.invalidate(path);
            if let Some(child) = &info.fid {
                res.remember(&child.fid, new_path);
            }
            let f = sink.filter();
            let moved_in = f.descend(new_path) && !f.descend(path);
            let walk = moved_in || tree.draining();
            tree.appeared(f, info.fid.as_ref(), new_path, walk);
            dir_arrived(sink, (ignorer, dirs), new_path, moved_in);
        }
        return out;
    }

    let (resolved, dfid) = match (&info.dfid, &info.fid) {
        (Some(d), _) => (res.join(d, path), d),
        (None, Some(_)) => {
            // No directory, no name: the kernel had no dentry for the object. That is the
            // link-count ATTRIB every unlink produces (the delete itself was reported with
            // its name), or activity on an unlinked-but-open file. There is no path to
            // report, and resolving the handle would cost a syscall per unlink for nothing.
            stats.nameless.fetch_add(1, Relaxed);
            return Outcome::Filtered;
        }
        (None, None) => {
            stats.parse_errors.fetch_add(1, Relaxed);
            return Outcome::Filtered;
        }
    };
    if resolved.is_err() {
        let v = tree.count_unresolved(stats, &[(resolved, dfid)]);
        if dir_moved && info.fid.is_none() {
            res.cache.clear();
        }
        let arrived = ev.mask & (libc::FAN_CREATE | libc::FAN_MOVED_TO) != 0;
        if ondir && arrived && v == Unresolved::Drop {
            let moved = ev.mask & libc::FAN_MOVED_TO != 0;
            tree.unplaced(info.fid.as_ref(), moved);
        }
        return Outcome::Filtered;
    }
    let out = sink.emit(Activity {
        path,
        new_path: None,
        ops,
        pid,
    });
    if ondir {
        if ev.mask & (libc::FAN_MOVED_FROM | libc::FAN_DELETE) != 0 {
            res.invalidate(path);
        }
        if ev.mask & (libc::FAN_CREATE | libc::FAN_MOVED_TO) != 0 {
            if let Some(child) = &info.fid {
                res.remember(&child.fid, path);
            }
            // Without FAN_RENAME a move's old side is unknown: walked as if from outside.
            let walk = ev.mask & libc::FAN_MOVED_TO != 0;
            tree.appeared(sink.filter(), info.fid.as_ref(), path, walk);
            dir_appeared(sink, (ignorer.as_deref_mut(), dirs), path);
        }
        // Without FAN_RENAME the old side is unknown: any directory moved into the trees.
        if ev.mask & libc::FAN_MOVED_TO != 0 && sink.filter().descend(path) {
            if let Some(ig) = ignorer.as_deref_mut() {
                let changed = ig.moved_in(path, sink.filter(), sink.stats());
                report_changed_while_ignored(sink, &changed);
            }
        }
    }
    if out == Outcome::Filtered {
        if let (Some(ig), Some(d)) = (ignorer, &info.dfid) {
            ig.consider(d.fid.key, sink.filter(), sink.stats(), || {
                res.open_dir(&d.fid)
            });
        }
    }
    out
}

/// A directory arrived at `path` by a move; `moved_in`: from outside the trees, so its ignore
/// marks (and those below it) come off, what changed under them is reported, and it gets its
/// attribute marks.
fn dir_arrived(
    sink: &mut Sink,
    (mut ignorer, dirs): (Option<&mut Ignorer>, Option<&mut DirMarks>),
    path: &[u8],
    moved_in: bool,
) {
    if !moved_in {
        return;
    }
    let changed = match ignorer.as_deref_mut() {
        Some(ig) => ig.moved_in(path, sink.filter(), sink.stats()),
        None => Vec::new(),
    };
    dir_appeared(sink, (ignorer, dirs), path);
    report_changed_while_ignored(sink, &changed);
}

/// A directory appeared at `path` (created or moved in): its directory marks, and the
/// ignore marks' events widened if the directory ops had to move onto the filesystem mark.
fn dir_appeared(
    sink: &Sink,
    (ignorer, dirs): (Option<&mut Ignorer>, Option<&mut DirMarks>),
    path: &[u8],
) {
    let Some(d) = dirs else {
        return;
    };
    d.appeared(path, sink.filter(), sink.stats());
    if let (Some(bits), Some(ig)) = (d.ops_on_fs(), ignorer) {
        ig.widen(bits);
    }
}

/// Files changed in a directory moved into a tree before its ignore marks came off (see
/// `marks::Ignorer::moved_in`): the kernel named no process for them, so none is reported.
fn report_changed_while_ignored(sink: &mut Sink, changed: &[Vec<u8>]) {
    for p in changed {
        sink.stats().changed_while_ignored.fetch_add(1, Relaxed);
        sink.emit(Activity {
            path: p,
            new_path: None,
            ops: OpSet::MODIFY,
            pid: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_follows_ops() {
        let m = mark_mask(OpSet::DEFAULT, true, true);
        assert_ne!(m & libc::FAN_ATTRIB, 0);
        assert_ne!(m & libc::FAN_MODIFY, 0);
        // With the directory marks, the filesystem mark carries neither writes nor attribute
        // changes, and still every create, delete, move and close after writing.
        let fs = mark_mask(OpSet::DEFAULT, true, false);
        assert_eq!(fs & (libc::FAN_ATTRIB | libc::FAN_MODIFY), 0);
        for bit in [
            libc::FAN_CREATE,
            libc::FAN_DELETE,
            libc::FAN_RENAME,
            libc::FAN_CLOSE_WRITE,
            libc::FAN_EVENT_ON_CHILD,
            libc::FAN_ONDIR,
        ] {
            assert_ne!(fs & bit, 0, "{bit:#x}");
        }
        assert_eq!(fs | dir_ops(OpSet::DEFAULT), m);
        assert_eq!(dir_ops(OpSet::CREATE), libc::FAN_MODIFY);
        assert_eq!(dir_ops_names(OpSet::CREATE), "FAN_MODIFY");
        assert_eq!(dir_ops_names(OpSet::DEFAULT), "FAN_MODIFY|FAN_ATTRIB");
        assert_ne!(m & libc::FAN_RENAME, 0);
        assert_eq!(
            m & (libc::FAN_MOVED_FROM | libc::FAN_OPEN | libc::FAN_CLOSE_NOWRITE),
            0
        );
        assert_eq!(mark_mask(OpSet::CREATE, true, true) & libc::FAN_ATTRIB, 0);
        let m = mark_mask(OpSet::ALL, false, true);
        assert_eq!(m & libc::FAN_RENAME, 0);
        assert_ne!(m & libc::FAN_MOVED_TO, 0);
        assert_ne!(m & libc::FAN_OPEN, 0);
        assert_ne!(m & libc::FAN_CLOSE_NOWRITE, 0);
    }
}
