//! Recursive inotify over the watched trees, for hosts where fanotify is unavailable (no
//! CAP_SYS_ADMIN, an old kernel) and for what fanotify's fd mode cannot report. inotify names
//! no process: events from here have `process: None`.
//!
//! - Every directory gets a watch; a new directory is watched and then scanned, and a
//!   `create` is synthesized for each entry found, so files created in it before the watch
//!   existed are not missed. A real `IN_CREATE` for an entry already synthesized is dropped.
//! - `IN_MOVED_FROM` / `IN_MOVED_TO` are paired by cookie into one rename. A move out of the
//!   watched trees is a rename without `new_path`; a move in is a `create` of the new path.
//! - `IN_Q_OVERFLOW` is counted as a drop (`files_queue_overflows`).
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::emit::{Activity, Outcome, Sink};
use super::filter::PathFilter;
use super::source::{errno_text, read_loop};
use super::{FileStats, OpSet};

const READ_BUF: usize = 64 * 1024;
const EVENT_HDR: usize = 16;
/// A move whose other half has not arrived within this long left (or entered) the trees.
const MOVE_PAIR_WAIT: Duration = Duration::from_millis(100);
const SYNTH_MAX: usize = 65_536;

/// One `struct inotify_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InotifyEvent<'a> {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    /// Entry name without NUL padding; empty for events on the watched object itself.
    pub name: &'a [u8],
}

/// Parses a read buffer. Stops (returning what it has and `false`) at a truncated record.
pub fn parse_events(buf: &[u8]) -> (Vec<InotifyEvent<'_>>, bool) {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < buf.len() {
        let Some(hdr) = buf.get(off..off + EVENT_HDR) else {
            return (out, false);
        };
        let word = |i: usize| u32::from_ne_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let len = word(12) as usize;
        let Some(name) = buf.get(off + EVENT_HDR..off + EVENT_HDR + len) else {
            return (out, false);
        };
        let name = match name.iter().position(|&b| b == 0) {
            Some(n) => &name[..n],
            None => name,
        };
        out.push(InotifyEvent {
            wd: word(0) as i32,
            mask: word(4),
            cookie: word(8),
            name,
        });
        off += EVENT_HDR + len;
    }
    (out, true)
}

/// The operations of an inotify mask (moves are handled separately).
pub fn ops_of_mask(mask: u32) -> OpSet {
    [
        (libc::IN_CREATE, OpSet::CREATE),
        (libc::IN_OPEN, OpSet::OPEN),
        (libc::IN_MODIFY, OpSet::MODIFY),
        (libc::IN_ATTRIB, OpSet::ATTRIB),
        (libc::IN_CLOSE_WRITE, OpSet::CLOSE_WRITE),
        (libc::IN_CLOSE_NOWRITE, OpSet::CLOSE),
        (libc::IN_DELETE, OpSet::DELETE),
    ]
    .iter()
    .filter(|(bit, _)| mask & bit != 0)
    .fold(OpSet::EMPTY, |acc, (_, op)| acc | *op)
}

fn watch_mask(ops: OpSet) -> u32 {
    // Structure is always followed (the watch tree depends on it); content ops only if asked.
    let mut m = libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF
        | libc::IN_DONT_FOLLOW
        | libc::IN_EXCL_UNLINK;
    for (op, bit) in [
        (OpSet::MODIFY, libc::IN_MODIFY),
        (OpSet::ATTRIB, libc::IN_ATTRIB),
        (OpSet::CLOSE_WRITE, libc::IN_CLOSE_WRITE),
        (OpSet::OPEN, libc::IN_OPEN),
        (OpSet::CLOSE, libc::IN_CLOSE_NOWRITE),
    ] {
        if ops.contains(op) {
            m |= bit;
        }
    }
    m
}

struct Dir {
    path: Vec<u8>,
    /// A configured tree root: its own (nameless) events are reported, since no watched
    /// parent reports them.
    root: bool,
}

struct PendingMove {
    cookie: u32,
    path: Vec<u8>,
    is_dir: bool,
    at: Instant,
}

/// A recursive watch over some trees.
pub struct Watcher {
    fd: OwnedFd,
    mask: u32,
    dirs: HashMap<i32, Dir>,
    filter: Arc<PathFilter>,
    stats: Arc<FileStats>,
    pending: Vec<PendingMove>,
    synthesized: HashSet<Vec<u8>>,
    warned_enospc: bool,
}

impl Watcher {
    /// Creates the inotify instance and watches every directory under `roots` (existing
    /// directories or files; excluded and ignored subtrees are not entered).
    pub fn open(
        roots: &[PathBuf],
        ops: OpSet,
        filter: Arc<PathFilter>,
        stats: Arc<FileStats>,
    ) -> Result<Watcher, String> {
        // SAFETY: plain flags.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            return Err(errno_text("inotify_init1"));
        }
        let mut w = Watcher {
            // SAFETY: a fresh fd we own.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            mask: watch_mask(ops),
            dirs: HashMap::new(),
            filter,
            stats,
            pending: Vec::new(),
            synthesized: HashSet::new(),
            warned_enospc: false,
        };
        for r in roots {
            w.add_tree(r.as_os_str().as_bytes(), true, None);
        }
        if w.dirs.is_empty() {
            return Err(format!("no watch could be added ({} trees)", roots.len()));
        }
        Ok(w)
    }

    pub fn watches(&self) -> usize {
        self.dirs.len()
    }

    fn add_watch(&mut self, path: &[u8], root: bool) -> Option<i32> {
        let c = CString::new(path).ok()?;
        let is_dir = std::fs::symlink_metadata(Path::new(std::ffi::OsStr::from_bytes(path)))
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let mask = if is_dir {
            self.mask | libc::IN_ONLYDIR
        } else {
            self.mask
        };
        // SAFETY: valid fd and C string.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                // Gone or replaced by a non-directory since we saw it: nothing to watch.
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
                Some(libc::ENOSPC) => {
                    self.stats.watch_failures.fetch_add(1, Relaxed);
                    if !self.warned_enospc {
                        self.warned_enospc = true;
                        tracing::warn!(
                            watches = self.dirs.len(),
                            "inotify watch limit reached; raise fs.inotify.max_user_watches (further directories are not watched, counted in files_watch_failures)"
                        );
                    }
                }
                _ => {
                    self.stats.watch_failures.fetch_add(1, Relaxed);
                    tracing::debug!(path = %String::from_utf8_lossy(path), error = %err, "inotify_add_watch failed");
                }
            }
            return None;
        }
        self.dirs.entry(wd).or_insert_with(|| Dir {
            path: path.to_vec(),
            root,
        });
        self.stats.watches.store(self.dirs.len() as u64, Relaxed);
        is_dir.then_some(wd)
    }

    /// Watches `top` and every directory below it. With `synth`, every entry found below
    /// `top` is pushed there (a create to synthesize) — the watch on a directory is added
    /// before it is listed, so an entry is either listed or reported by the kernel.
    fn add_tree(&mut self, top: &[u8], root: bool, mut synth: Option<&mut Vec<Vec<u8>>>) {
        let mut stack = vec![top.to_vec()];
        let mut first = true;
        while let Some(dir) = stack.pop() {
            // A configured root is watched even when it is, say, a file; anything below it
            // only when the filter lets a walk in (excluded and ignored subtrees are skipped).
            let is_root = first && root;
            first = false;
            if !is_root && !self.filter.descend(&dir) {
                continue;
            }
            if self.add_watch(&dir, is_root).is_none() {
                continue;
            }
            let Ok(rd) = std::fs::read_dir(Path::new(std::ffi::OsStr::from_bytes(&dir))) else {
                continue;
            };
            for entry in rd.flatten() {
                let mut child = dir.clone();
                if child.last() != Some(&b'/') {
                    child.push(b'/');
                }
                child.extend_from_slice(entry.file_name().as_bytes());
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if let Some(s) = synth.as_deref_mut() {
                    s.push(child.clone());
                }
                if is_dir {
                    stack.push(child);
                }
            }
        }
    }

    /// Rewrites the paths of watches at or below `old` after a directory rename.
    fn rename_prefix(&mut self, old: &[u8], new: &[u8]) {
        for d in self.dirs.values_mut() {
            if under(&d.path, old) {
                let mut p = new.to_vec();
                p.extend_from_slice(&d.path[old.len()..]);
                d.path = p;
            }
        }
    }

    /// Drops the watches at or below `prefix` (moved out of the trees).
    fn forget_prefix(&mut self, prefix: &[u8]) {
        let fd = self.fd.as_raw_fd();
        self.dirs.retain(|wd, d| {
            if under(&d.path, prefix) {
                // SAFETY: valid fd; a stale wd only yields EINVAL.
                unsafe { libc::inotify_rm_watch(fd, *wd) };
                false
            } else {
                true
            }
        });
        self.stats.watches.store(self.dirs.len() as u64, Relaxed);
    }

    /// Moves whose pair did not come: out of the trees.
    fn flush_moves(&mut self, sink: &mut Sink, all: bool) -> Outcome {
        let now = Instant::now();
        let mut out = Outcome::Sent;
        let mut i = 0;
        while i < self.pending.len() {
            if !all && now.duration_since(self.pending[i].at) < MOVE_PAIR_WAIT {
                i += 1;
                continue;
            }
            let m = self.pending.swap_remove(i);
            if m.is_dir {
                self.forget_prefix(&m.path);
            }
            if sink.emit(Activity {
                path: &m.path,
                new_path: None,
                ops: OpSet::RENAME,
                pid: None,
            }) == Outcome::Closed
            {
                out = Outcome::Closed;
            }
        }
        out
    }

    fn handle(&mut self, ev: &InotifyEvent<'_>, sink: &mut Sink) -> Outcome {
        if ev.mask & libc::IN_Q_OVERFLOW != 0 {
            self.stats.queue_overflows.fetch_add(1, Relaxed);
            tracing::warn!("inotify queue overflowed; file events were lost");
            return Outcome::Filtered;
        }
        if ev.mask & libc::IN_IGNORED != 0 {
            self.dirs.remove(&ev.wd);
            self.stats.watches.store(self.dirs.len() as u64, Relaxed);
            return Outcome::Filtered;
        }
        let Some(dir) = self.dirs.get(&ev.wd) else {
            return Outcome::Filtered;
        };
        if ev.name.is_empty() {
            // The watched object itself; a watched parent reports it unless it is a root.
            if !dir.root {
                return Outcome::Filtered;
            }
            let ops = if ev.mask & libc::IN_DELETE_SELF != 0 {
                OpSet::DELETE
            } else if ev.mask & libc::IN_MOVE_SELF != 0 {
                OpSet::RENAME
            } else {
                ops_of_mask(ev.mask)
            };
            let path = dir.path.clone();
            return sink.emit(Activity {
                path: &path,
                new_path: None,
                ops,
                pid: None,
            });
        }
        let mut full = dir.path.clone();
        if full.last() != Some(&b'/') {
            full.push(b'/');
        }
        full.extend_from_slice(ev.name);
        let is_dir = ev.mask & libc::IN_ISDIR != 0;

        if ev.mask & libc::IN_MOVED_FROM != 0 {
            self.pending.push(PendingMove {
                cookie: ev.cookie,
                path: full,
                is_dir,
                at: Instant::now(),
            });
            return Outcome::Filtered;
        }
        if ev.mask & libc::IN_MOVED_TO != 0 {
            if let Some(i) = self.pending.iter().position(|m| m.cookie == ev.cookie) {
                let from = self.pending.swap_remove(i);
                if is_dir {
                    self.rename_prefix(&from.path, &full);
                }
                return sink.emit(Activity {
                    path: &from.path,
                    new_path: Some(&full),
                    ops: OpSet::RENAME,
                    pid: None,
                });
            }
            // Moved in from outside the trees: it appeared here.
            let out = sink.emit(Activity {
                path: &full,
                new_path: None,
                ops: OpSet::CREATE,
                pid: None,
            });
            if is_dir {
                self.add_tree(&full, false, None);
            }
            return out;
        }
        if ev.mask & libc::IN_CREATE != 0 {
            if self.synthesized.remove(&full) {
                // Already reported (and, for a directory, watched) by a scan.
                return Outcome::Filtered;
            }
            let mut out = sink.emit(Activity {
                path: &full,
                new_path: None,
                ops: OpSet::CREATE,
                pid: None,
            });
            if is_dir {
                let mut found = Vec::new();
                self.add_tree(&full, false, Some(&mut found));
                for p in found {
                    self.stats.synthesized.fetch_add(1, Relaxed);
                    if sink.emit(Activity {
                        path: &p,
                        new_path: None,
                        ops: OpSet::CREATE,
                        pid: None,
                    }) == Outcome::Closed
                    {
                        out = Outcome::Closed;
                    }
                    if self.synthesized.len() < SYNTH_MAX {
                        self.synthesized.insert(p);
                    }
                }
            }
            return out;
        }
        let ops = ops_of_mask(ev.mask);
        if ops.is_empty() {
            return Outcome::Filtered;
        }
        sink.emit(Activity {
            path: &full,
            new_path: None,
            ops,
            pid: None,
        })
    }

    /// Reads events until `stop`.
    pub fn run(mut self, mut sink: Sink, stop: &AtomicBool) {
        let fd = self.fd.as_raw_fd();
        let me = std::cell::RefCell::new((&mut self, &mut sink));
        read_loop(
            fd,
            READ_BUF,
            Duration::ZERO,
            stop,
            || {
                // Idle: nothing queued, so every pending move lost its pair and every
                // synthesized create that a real one could duplicate has been seen.
                let mut g = me.borrow_mut();
                let (w, s) = &mut *g;
                w.synthesized.clear();
                w.flush_moves(s, true) != Outcome::Closed
            },
            |buf| {
                let mut g = me.borrow_mut();
                let (w, s) = &mut *g;
                let (events, complete) = parse_events(buf);
                if !complete {
                    w.stats.parse_errors.fetch_add(1, Relaxed);
                }
                for ev in &events {
                    if w.handle(ev, s) == Outcome::Closed {
                        return false;
                    }
                }
                if w.flush_moves(s, false) == Outcome::Closed {
                    return false;
                }
                if queued(fd) == 0 {
                    w.synthesized.clear();
                }
                true
            },
        );
    }
}

fn under(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// Bytes waiting in the inotify queue.
fn queued(fd: RawFd) -> libc::c_int {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } != 0 {
        return 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(wd: i32, mask: u32, cookie: u32, name: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let padded = if name.is_empty() {
            0
        } else {
            (name.len() + 1).div_ceil(16) * 16
        };
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&cookie.to_ne_bytes());
        v.extend_from_slice(&(padded as u32).to_ne_bytes());
        v.extend_from_slice(name);
        v.resize(EVENT_HDR + padded, 0);
        v
    }

    #[test]
    fn parses_records_and_stops_at_truncation() {
        let mut buf = rec(1, libc::IN_CREATE, 0, b"a.txt");
        buf.extend(rec(1, libc::IN_MOVED_FROM, 7, b"bad\xffname-that-is-long"));
        buf.extend(rec(2, libc::IN_DELETE_SELF, 0, b""));
        let (evs, ok) = parse_events(&buf);
        assert!(ok);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].name, b"a.txt");
        assert_eq!(
            (evs[1].cookie, evs[1].name),
            (7, &b"bad\xffname-that-is-long"[..])
        );
        assert_eq!((evs[2].wd, evs[2].name), (2, &b""[..]));
        for cut in 1..buf.len() {
            let (evs, ok) = parse_events(&buf[..cut]);
            assert!(evs.len() <= 3);
            let boundary = [32usize, 32 + 48, 32 + 48 + 16].contains(&cut);
            assert_eq!(ok, boundary, "cut {cut}");
        }
    }

    #[test]
    fn masks() {
        assert_eq!(
            ops_of_mask(libc::IN_MODIFY | libc::IN_CLOSE_WRITE),
            OpSet::MODIFY | OpSet::CLOSE_WRITE
        );
        assert_eq!(ops_of_mask(libc::IN_ATTRIB | libc::IN_ISDIR), OpSet::ATTRIB);
        let m = watch_mask(OpSet::CREATE | OpSet::DELETE);
        assert_eq!(m & (libc::IN_MODIFY | libc::IN_OPEN), 0);
        assert_ne!(m & libc::IN_MOVED_TO, 0);
        assert_ne!(watch_mask(OpSet::ALL) & libc::IN_CLOSE_NOWRITE, 0);
    }

    #[test]
    fn prefix_helpers() {
        assert!(under(b"/a/b", b"/a"));
        assert!(under(b"/a", b"/a"));
        assert!(!under(b"/ab", b"/a"));
    }
}
