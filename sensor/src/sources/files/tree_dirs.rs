//! The file handles of the watched trees' directories (and of those on the way to them), so
//! that an event whose directory is already gone can be told apart (see docs/ARCHITECTURE.md,
//! "Files"): a directory known to be in a tree is a lost event (`files_path_unresolved`, a
//! drop); one never in a tree (a compiler's temporary directory elsewhere on the disk, created
//! and removed before the read) is not (`files_outside_unresolved`, a count).
//!
//! The set learns every tree directory before any event inside it can be read: the
//! directories present at start are walked after the filesystem mark is placed; a directory
//! created in a tree is added from its create event (its own handle, `FAN_REPORT_TARGET_FID`),
//! which the kernel queues before anything inside it; a directory moved in from outside is
//! walked when its move is read. Entries are never removed: the kernel queues events on an
//! unlinked file still open in a removed directory (handle of that directory) after the
//! directory's own delete, and merges a directory's delete into its queued create.
//!
//! An unknown handle counts as outside only while the set is [`Trust::Complete`]:
//! - after a walk, events queued before it may name a directory it did not find (created
//!   before the mark and removed before the walk), and after a directory moved into a tree
//!   directory already gone (its subtree cannot be walked) events may name what was below it:
//!   they count as drops until a read that began after that has emptied the queue
//!   ([`TreeDirs::drain`], [`TreeDirs::batch_done`]);
//! - for good, once a tree directory could not be added (the bound, no handle for it), after
//!   a queue overflow (a lost create), or without `FAN_REPORT_TARGET_FID` (creates do not
//!   name the new directory).
//!
//! The set holds keyed 64-bit hashes of the handles: a collision can only make an outside
//! event count as a drop.
use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::ffi::CString;
use std::hash::BuildHasher;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;

use std::os::unix::ffi::OsStrExt;

use super::dir_marks::{top_of, walk};
use super::fanotify_parse::FidInfo;
use super::fid_resolver::HandleBuf;
use super::filter::PathFilter;
use super::roots::Tree;
use super::FileStats;

/// Tree directories remembered at most (8 bytes each, plus the table's slack).
pub const TREE_DIRS_MAX: usize = 65536;

/// Whether an unknown handle may be taken for a directory outside the trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Events queued before the last walk may still be read. `armed`: the next read begins
    /// after that walk.
    Draining { armed: bool },
    /// Every tree directory whose events may still be read is in the set.
    Complete,
    /// Not any more, for this reason.
    Lost(&'static str),
}

/// How to count an event whose directory handle did not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// Possibly a watched event: a drop (`files_path_unresolved`).
    Drop,
    /// Its directory is gone and was never in a tree: a count (`files_outside_unresolved`).
    Outside,
}

/// The set of tree directory handles, bounded.
#[derive(Debug)]
pub struct TreeDirs {
    hasher: RandomState,
    known: HashSet<u64>,
    max: usize,
    trust: Trust,
}

impl TreeDirs {
    /// An empty set, draining (the first walk comes before the first read).
    pub fn new(max: usize) -> TreeDirs {
        TreeDirs {
            hasher: RandomState::new(),
            known: HashSet::new(),
            max,
            trust: Trust::Draining { armed: true },
        }
    }

    pub fn trust(&self) -> Trust {
        self.trust
    }

    /// Puts the set's size and whether it lost trust into the health counters.
    pub fn publish(&self, stats: &FileStats) {
        stats.tree_dirs.store(self.known.len() as u64, Relaxed);
        let lost = matches!(self.trust, Trust::Lost(_));
        stats.tree_dirs_untrusted.store(u64::from(lost), Relaxed);
    }

    /// Events queued before the last walk may still be read.
    pub fn draining(&self) -> bool {
        matches!(self.trust, Trust::Draining { .. })
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Unknown handles count as drops from now on, for good (logged once).
    pub fn lose(&mut self, why: &'static str) {
        if !matches!(self.trust, Trust::Lost(_)) {
            tracing::warn!(
                why,
                "events in removed directories are all counted as drops (files_path_unresolved) from now on"
            );
            self.trust = Trust::Lost(why);
        }
    }

    /// A directory known to be in a tree, by its handle key ([`super::fanotify_parse::Fid`]
    /// `key`: fsid, handle size and type, handle).
    pub fn insert(&mut self, key: &[u8]) {
        let h = self.hasher.hash_one(key);
        if self.known.len() >= self.max && !self.known.contains(&h) {
            self.lose("the tree directory handles reached their bound");
            return;
        }
        self.known.insert(h);
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.known.contains(&self.hasher.hash_one(key))
    }

    /// An event whose directory `key` did not resolve; `gone`: the kernel said the handle is
    /// stale (the directory was removed), not that it could not look.
    pub fn classify(&self, key: &[u8], gone: bool) -> Unresolved {
        if gone && self.trust == Trust::Complete && !self.contains(key) {
            Unresolved::Outside
        } else {
            Unresolved::Drop
        }
    }

    /// What is queued now may name a tree directory the set does not hold: a walk just ended
    /// (it cannot find a directory already removed), or a directory moved into a tree is
    /// gone before its subtree could be walked.
    pub fn drain(&mut self) {
        if !matches!(self.trust, Trust::Lost(_)) {
            self.trust = Trust::Draining { armed: false };
        }
    }

    /// The events of one read were handled; `emptied`: that read took the last queued event.
    pub fn batch_done(&mut self, emptied: bool) {
        if let Trust::Draining { armed } = self.trust {
            self.trust = match (armed, emptied) {
                (true, true) => Trust::Complete,
                _ => Trust::Draining { armed: true },
            };
        }
    }

    /// Counts an event whose directory handles did not all resolve (`Err(gone)` beside each): a
    /// drop unless every side that failed is a directory removed outside the trees.
    pub fn count_unresolved(
        &self,
        stats: &FileStats,
        sides: &[(Result<(), bool>, &FidInfo<'_>)],
    ) -> Unresolved {
        let drop = sides.iter().any(|(r, dir)| {
            r.is_err_and(|gone| self.classify(dir.fid.key, gone) == Unresolved::Drop)
        });
        if drop {
            stats.unresolved.fetch_add(1, Relaxed);
            Unresolved::Drop
        } else {
            stats.outside_unresolved.fetch_add(1, Relaxed);
            Unresolved::Outside
        }
    }

    /// A directory was created or moved to `path`: if that is in a tree (or on the way to one),
    /// its handle (`child`, the event's own FID) joins the tree directories, and with `walk`
    /// (moved in from outside, or a move while draining) every directory below it too.
    pub fn appeared(
        &mut self,
        filter: &PathFilter,
        child: Option<&FidInfo<'_>>,
        path: &[u8],
        walk: bool,
    ) {
        if !filter.descend(path) {
            return;
        }
        if let Some(c) = child {
            self.insert(c.fid.key);
        }
        if walk {
            self.add_tree(path, filter);
        }
    }

    /// A directory was created or `moved` into a directory that may be in a tree but is gone: it
    /// may be a tree directory too, so its handle joins them. What is below a created one came
    /// after it and has its own create; below a moved one nothing can be walked (it is gone
    /// too), so unknown handles are drops until the queue has been drained.
    pub fn unplaced(&mut self, child: Option<&FidInfo<'_>>, moved: bool) {
        if let Some(c) = child {
            self.insert(c.fid.key);
        }
        if moved {
            self.drain();
        }
    }

    /// Walks `top` (as [`walk`] enters it) and adds each directory's handle. A directory
    /// without one (other than gone) loses the set's completeness.
    pub fn add_tree(&mut self, top: &[u8], filter: &PathFilter) {
        let _ = walk(top, filter, |dir| -> Result<bool, ()> {
            match handle_key(dir) {
                Ok(key) => {
                    self.insert(&key);
                    Ok(true)
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    Ok(false)
                }
                Err(_) => {
                    self.lose("a tree directory has no file handle");
                    Ok(true)
                }
            }
        });
        self.drain();
    }
}

/// The set for the `trees` a filesystem mark covers (placed before this walk): each tree's
/// directories and those on the way to it. `target_fid`: creates name the new directory
/// (`FAN_REPORT_TARGET_FID`); without it the set can never be complete.
pub fn for_trees(trees: &[Tree], filter: &PathFilter, target_fid: bool) -> TreeDirs {
    let started = std::time::Instant::now();
    let mut t = TreeDirs::new(TREE_DIRS_MAX);
    if !target_fid {
        t.lose("no FAN_REPORT_TARGET_FID: a new directory's create does not name it");
        return t;
    }
    for tree in trees {
        let top = top_of(tree);
        for up in top.ancestors().skip(1) {
            let up = up.as_os_str().as_bytes();
            if filter.descend(up) {
                if let Ok(key) = handle_key(up) {
                    t.insert(&key);
                }
            }
        }
        t.add_tree(top.as_os_str().as_bytes(), filter);
    }
    tracing::debug!(
        dirs = t.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "tree directory handles taken"
    );
    // Taken before the reader's first read: that read begins after the walk.
    if t.draining() {
        t.trust = Trust::Draining { armed: true };
    }
    t
}

/// The key fanotify's FID records give the directory at `path`: its filesystem's fsid, then
/// `struct file_handle` (size, type, bytes) as `name_to_handle_at` fills it. The directory is
/// opened first (not following a link) so that both come from one object.
pub fn handle_key(path: &[u8]) -> std::io::Result<Vec<u8>> {
    let c = CString::new(path).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C string.
    let raw = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    key_of_fd(fd.as_raw_fd())
}

fn key_of_fd(fd: RawFd) -> std::io::Result<Vec<u8>> {
    let h = HandleBuf::of(fd, c"", libc::AT_EMPTY_PATH)?;
    let fsid = super::fanotify_fid::fsid_of(fd).map_err(std::io::Error::other)?;
    let len = (h.handle_bytes as usize).min(h.f_handle.len());
    Ok(key_from_parts(
        &fsid,
        h.handle_bytes,
        h.handle_type,
        &h.f_handle[..len],
    ))
}

/// fsid, handle size, handle type and handle bytes, laid out as in a FID info record.
pub fn key_from_parts(fsid: &[u8; 8], bytes: u32, kind: i32, handle: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + handle.len());
    k.extend_from_slice(fsid);
    k.extend_from_slice(&bytes.to_ne_bytes());
    k.extend_from_slice(&kind.to_ne_bytes());
    k.extend_from_slice(handle);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::files::fanotify_parse;

    fn key(n: u8) -> Vec<u8> {
        key_from_parts(&[7; 8], 8, 1, &[n; 8])
    }

    fn dir(key: &[u8]) -> FidInfo<'_> {
        FidInfo {
            fid: fanotify_parse::Fid {
                fsid: [0; 8],
                handle_type: 1,
                handle: key,
                key,
            },
            name: Some(b"x"),
        }
    }

    #[test]
    fn unresolved_directories_count_as_drops_unless_gone_and_never_in_a_tree() {
        let stats = FileStats::default();
        let mut tree = TreeDirs::new(8);
        tree.insert(b"tree");
        let (t, o) = (dir(b"tree"), dir(b"other"));
        let gone = Err(true);
        // Draining: nothing is outside yet.
        assert_eq!(
            tree.count_unresolved(&stats, &[(gone, &o)]),
            Unresolved::Drop
        );
        tree.batch_done(true);
        assert_eq!(tree.trust(), Trust::Complete);
        let cases = [
            (vec![(gone, &o)], Unresolved::Outside),
            (vec![(gone, &t)], Unresolved::Drop),
            // Not known to be gone (an unknown fsid, a failed readlink): a drop.
            (vec![(Err(false), &o)], Unresolved::Drop),
            // A rename: a drop when either side that failed may be in a tree.
            (vec![(gone, &o), (Ok(()), &t)], Unresolved::Outside),
            (vec![(gone, &o), (gone, &t)], Unresolved::Drop),
        ];
        for (sides, want) in &cases {
            assert_eq!(tree.count_unresolved(&stats, sides), *want, "{sides:?}");
        }
        assert_eq!(stats.unresolved.load(Relaxed), 4);
        assert_eq!(stats.outside_unresolved.load(Relaxed), 2);
    }

    #[test]
    fn directories_join_the_tree_set_only_inside_the_trees() {
        let f = PathFilter::new(&["/srv/w"], &["/srv/w/skip"], &[] as &[&str]);
        let mut tree = TreeDirs::new(8);
        tree.batch_done(true);
        for (path, key) in [
            (&b"/srv/w/a"[..], &b"a"[..]),
            (b"/srv", b"on-the-way"),
            (b"/srv/w/skip/b", b"excluded"),
            (b"/var/tmp/cc1", b"outside"),
        ] {
            tree.appeared(&f, Some(&dir(key)), path, false);
        }
        assert!(tree.contains(b"a") && tree.contains(b"on-the-way"));
        assert!(!tree.contains(b"excluded") && !tree.contains(b"outside"));
        assert_eq!(tree.trust(), Trust::Complete, "a create needs no walk");
        // Created in a tree directory that is gone: joins, nothing to drain.
        tree.unplaced(Some(&dir(b"c")), false);
        assert!(tree.contains(b"c"));
        assert_eq!(tree.trust(), Trust::Complete);
        // Moved into one: what was below it is unknown until the queue is drained.
        tree.unplaced(Some(&dir(b"m")), true);
        assert!(tree.contains(b"m"));
        assert!(tree.draining());
    }

    #[test]
    fn the_walk_at_start_takes_every_directory_of_the_trees() {
        let d = crate::test_dir::TestDir::new("tree-dirs-start");
        std::fs::create_dir_all(d.join("w/a/b")).unwrap();
        std::fs::create_dir_all(d.join("w/skip/c")).unwrap();
        std::fs::create_dir_all(d.join("other")).unwrap();
        let w = d.join("w");
        let bytes = |p: &std::path::Path| p.as_os_str().as_bytes().to_vec();
        let Ok(top) = handle_key(&bytes(&w)) else {
            return; // a filesystem without file handles
        };
        let f = PathFilter::new(&[bytes(&w)], &[bytes(&w.join("skip"))], &[] as &[&str]);
        let tree = Tree {
            pattern: w.display().to_string(),
            paths: vec![w.clone()],
            anchor: w.clone(),
        };
        let t = for_trees(std::slice::from_ref(&tree), &f, true);
        assert_eq!(
            t.trust(),
            Trust::Draining { armed: true },
            "the first read ends it"
        );
        assert!(t.contains(&top));
        for p in ["w/a", "w/a/b"] {
            assert!(t.contains(&handle_key(&bytes(&d.join(p))).unwrap()), "{p}");
        }
        for p in ["w/skip", "w/skip/c", "other"] {
            assert!(!t.contains(&handle_key(&bytes(&d.join(p))).unwrap()), "{p}");
        }
        // The way to the tree: its parent (the temp dir) is on it.
        assert!(t.contains(&handle_key(&bytes(&d)).unwrap()));
        let t = for_trees(std::slice::from_ref(&tree), &f, false);
        assert!(matches!(t.trust(), Trust::Lost(_)));
    }

    #[test]
    fn publish_reports_the_size_and_a_lost_trust() {
        let stats = FileStats::default();
        let mut t = TreeDirs::new(2);
        t.insert(&key(1));
        t.insert(&key(2));
        t.publish(&stats);
        assert_eq!(stats.tree_dirs.load(Relaxed), 2);
        assert_eq!(stats.tree_dirs_untrusted.load(Relaxed), 0);
        // Over the bound: the set keeps what it has and stops being trusted.
        t.insert(&key(3));
        t.publish(&stats);
        assert_eq!(stats.tree_dirs.load(Relaxed), 2);
        assert_eq!(stats.tree_dirs_untrusted.load(Relaxed), 1);
    }

    #[test]
    fn unknown_and_gone_is_outside_only_when_complete() {
        let mut t = TreeDirs::new(8);
        t.insert(&key(1));
        // Draining (start): nothing is outside yet.
        assert_eq!(t.classify(&key(2), true), Unresolved::Drop);
        t.batch_done(true);
        assert_eq!(t.trust(), Trust::Complete);
        assert_eq!(t.classify(&key(2), true), Unresolved::Outside);
        assert_eq!(t.classify(&key(1), true), Unresolved::Drop, "a tree dir");
        // Not resolvable for another reason than being gone: never outside.
        assert_eq!(t.classify(&key(2), false), Unresolved::Drop);
    }

    #[test]
    fn a_walk_drains_until_a_later_read_empties_the_queue() {
        let mut t = TreeDirs::new(8);
        t.batch_done(true);
        t.drain();
        assert_eq!(t.trust(), Trust::Draining { armed: false });
        // The read in which the walk happened began before it: not enough.
        t.batch_done(true);
        assert_eq!(t.trust(), Trust::Draining { armed: true });
        // A later read that did not empty the queue: still draining.
        t.batch_done(false);
        assert_eq!(t.trust(), Trust::Draining { armed: true });
        assert_eq!(t.classify(&key(3), true), Unresolved::Drop);
        t.batch_done(true);
        assert_eq!(t.trust(), Trust::Complete);
    }

    #[test]
    fn the_bound_and_a_loss_are_for_good() {
        let mut t = TreeDirs::new(2);
        t.insert(&key(1));
        t.insert(&key(2));
        t.insert(&key(2));
        t.batch_done(true);
        assert_eq!(t.trust(), Trust::Complete, "a known key at the bound");
        t.insert(&key(3));
        assert!(matches!(t.trust(), Trust::Lost(_)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.classify(&key(4), true), Unresolved::Drop);
        t.drain();
        t.batch_done(true);
        t.batch_done(true);
        assert!(matches!(t.trust(), Trust::Lost(_)), "no way back");
        let mut t = TreeDirs::new(2);
        t.batch_done(true);
        t.lose("a queue overflow");
        assert_eq!(t.classify(&key(4), true), Unresolved::Drop);
    }

    #[test]
    fn keys_are_laid_out_as_the_fid_record_of_a_fixture() {
        // A recorded FAN_CREATE|FAN_ONDIR event (fixtures/fid_target_rename.bin holds FID
        // records with FAN_REPORT_TARGET_FID): its keys are what key_from_parts builds from
        // the record's fields.
        let buf = include_bytes!("fixtures/fid_target_rename.bin");
        let mut seen = 0;
        for ev in fanotify_parse::events(buf) {
            let ev = ev.unwrap();
            for fid in [&ev.info.dfid, &ev.info.fid, &ev.info.old, &ev.info.new]
                .into_iter()
                .flatten()
            {
                let f = &fid.fid;
                let k = key_from_parts(&f.fsid, f.handle.len() as u32, f.handle_type, f.handle);
                assert_eq!(k, f.key);
                seen += 1;
            }
        }
        assert!(seen > 0);
    }

    #[test]
    fn handle_key_of_a_directory_and_of_what_is_not_one() {
        let d = crate::test_dir::TestDir::new("tree-dirs-key");
        let p = d.join("sub");
        std::fs::create_dir(&p).unwrap();
        let path = |p: &std::path::Path| {
            use std::os::unix::ffi::OsStrExt;
            p.as_os_str().as_bytes().to_vec()
        };
        match handle_key(&path(&p)) {
            // A filesystem without handles (some tmpfs): nothing more to check here.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            r => {
                let k = r.unwrap();
                assert_eq!(k, handle_key(&path(&p)).unwrap(), "stable");
                assert_ne!(k, handle_key(&path(&d)).unwrap());
                let bytes = u32::from_ne_bytes(k[8..12].try_into().unwrap());
                assert_eq!(k.len(), 16 + bytes as usize);
            }
        }
        std::fs::write(d.join("f"), b"x").unwrap();
        let e = handle_key(&path(&d.join("f"))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
        let e = handle_key(&path(&d.join("none"))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
