//! Classic fanotify (kernels before FID reporting, back to 2.6.37): mount marks, and every
//! event carries an open fd of the object; its path is `readlink(/proc/self/fd/N)`, then the
//! fd is closed. The kernel accepts only open / modify / close on mount marks (create,
//! delete, moves and attrib are EINVAL), so those come from inotify alongside (see
//! [`super::source`]).
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::emit::{Activity, Outcome, Sink};
use super::fanotify_parse;
use super::fid_resolver::path_of_fd;
use super::roots::Tree;
use super::source::{errno_text, read_loop, FANOTIFY_BATCH_PAUSE};
use super::OpSet;

const READ_BUF: usize = 64 * 1024;

/// The operations fd mode can report.
pub const FD_OPS: OpSet =
    OpSet(OpSet::MODIFY.0 | OpSet::CLOSE_WRITE.0 | OpSet::OPEN.0 | OpSet::CLOSE.0);

pub struct FdGroup {
    fd: OwnedFd,
    /// Marked mount anchors.
    pub marked: Vec<PathBuf>,
    pub unmarked: Vec<(usize, String)>,
}

impl FdGroup {
    pub fn describe(&self) -> String {
        format!(
            "mount marks on {} ({})",
            self.marked.len(),
            self.marked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn mark_mask(ops: OpSet) -> u64 {
    let mut m = 0;
    for (op, bit) in [
        (OpSet::MODIFY, libc::FAN_MODIFY),
        (OpSet::CLOSE_WRITE, libc::FAN_CLOSE_WRITE),
        (OpSet::OPEN, libc::FAN_OPEN),
        (OpSet::CLOSE, libc::FAN_CLOSE_NOWRITE),
    ] {
        if ops.contains(op) {
            m |= bit;
        }
    }
    m
}

pub fn open(trees: &[Tree], ops: OpSet, unlimited_queue: bool) -> Result<FdGroup, String> {
    let mask = mark_mask(ops);
    if mask == 0 {
        return Err("none of the configured ops (modify, close_write, open, close) can be reported by fd mode".into());
    }
    let flags = libc::FAN_CLASS_NOTIF
        | libc::FAN_CLOEXEC
        | libc::FAN_NONBLOCK
        | if unlimited_queue {
            libc::FAN_UNLIMITED_QUEUE
        } else {
            0
        };
    // O_NONBLOCK: the kernel opens the object for us; a FIFO must not block that open.
    let event_flags =
        (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC | libc::O_NONBLOCK) as libc::c_uint;
    // SAFETY: plain integer flags.
    let raw = unsafe { libc::fanotify_init(flags, event_flags) };
    if raw < 0 {
        return Err(errno_text("fanotify_init(FAN_CLASS_NOTIF)"));
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut g = FdGroup {
        fd,
        marked: Vec::new(),
        unmarked: Vec::new(),
    };
    for (i, tree) in trees.iter().enumerate() {
        if g.marked.contains(&tree.anchor) {
            continue;
        }
        let Ok(c) = CString::new(tree.anchor.as_os_str().as_bytes()) else {
            g.unmarked.push((i, "path holds a NUL".into()));
            continue;
        };
        // Marking a mount twice (two trees on one mount) only ORs the masks.
        // SAFETY: valid group fd and C string.
        let r = unsafe {
            libc::fanotify_mark(
                g.fd.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_MOUNT,
                mask,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if r != 0 {
            g.unmarked
                .push((i, errno_text("fanotify_mark(FAN_MARK_MOUNT)")));
        } else {
            g.marked.push(tree.anchor.clone());
        }
    }
    if g.marked.is_empty() {
        let why: Vec<String> = g
            .unmarked
            .iter()
            .map(|(i, e)| format!("{}: {e}", trees[*i].anchor.display()))
            .collect();
        return Err(format!("no mount could be marked ({})", why.join("; ")));
    }
    Ok(g)
}

pub fn run(group: FdGroup, mut sink: Sink, stop: &AtomicBool) {
    let me = std::process::id() as i32;
    read_loop(
        group.fd.as_raw_fd(),
        READ_BUF,
        FANOTIFY_BATCH_PAUSE,
        stop,
        || true,
        |buf| {
            for ev in fanotify_parse::events(buf) {
                let Some(ev) = sink.stats().parsed(ev) else {
                    continue;
                };
                // Own the fd first so every path below closes it.
                // SAFETY: the kernel gave us this fd; nothing else owns it.
                let obj = (ev.fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(ev.fd) });
                let stats = sink.stats();
                if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
                    stats.queue_overflows.fetch_add(1, Relaxed);
                    tracing::warn!("fanotify queue overflowed; file events were lost");
                    continue;
                }
                if ev.pid == me {
                    stats.own_events.fetch_add(1, Relaxed);
                    continue;
                }
                let Some(path) = obj.as_ref().and_then(|fd| path_of_fd(fd.as_raw_fd()).ok()) else {
                    stats.unresolved.fetch_add(1, Relaxed);
                    continue;
                };
                drop(obj);
                let out = sink.emit(Activity {
                    path: &path,
                    new_path: None,
                    ops: fanotify_parse::ops_of_mask(ev.mask),
                    pid: Some(ev.pid.max(0) as u32),
                });
                if out == Outcome::Closed {
                    return false;
                }
            }
            true
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_only_has_what_mount_marks_accept() {
        assert_eq!(
            mark_mask(OpSet::DEFAULT),
            libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE
        );
        assert_eq!(
            mark_mask(OpSet::ALL),
            libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE | libc::FAN_OPEN | libc::FAN_CLOSE_NOWRITE
        );
        assert_eq!(mark_mask(OpSet::CREATE | OpSet::DELETE), 0);
        assert!(FD_OPS.contains(OpSet::MODIFY) && !FD_OPS.intersects(OpSet::CREATE));
    }
}
