//! File activity on configured trees: fanotify with process attribution, inotify without.
//!
//! The capture ladder, chosen by probing (see [`source`]):
//! 1. `fanotify-fid`: `FAN_REPORT_DFID_NAME | FAN_REPORT_FID` (+ `FAN_REPORT_TARGET_FID` and
//!    `FAN_RENAME` where the kernel has them) with one filesystem mark per filesystem of the
//!    watched trees. Create, delete, modify, attrib, close_write, rename (old and new path in
//!    one event), optionally open/close; every event carries the acting pid. Directories
//!    outside the trees get in-kernel ignore marks ([`marks`]); modify and attrib come from
//!    inode marks on the trees' directories ([`dir_marks`]), so writes outside the trees
//!    never reach the group.
//! 2. `fanotify-fd`: classic mode, mount marks, modify / close_write (+ open / close), with the
//!    pid; the kernel refuses create/delete/move/attrib on mount marks, so recursive inotify
//!    reports those (without a pid) alongside, unless `fd_mode_inotify = false`.
//! 3. `inotify`: recursive watches over the trees. The kernel gives no pid: file events from
//!    this rung have `process: None` (the event carries no process at all, so consumers can
//!    tell "unknown actor" from an attributed event).
//!
//! Paths are reported canonically (symlinks in the configured trees resolved: on merged-/usr
//! systems `/bin/x` is reported as `/usr/bin/x`) and bytes that are not UTF-8 are escaped with
//! [`crate::escape::escape_bytes`], never replaced.
//!
//! Pure pieces: [`filter`] (path decisions), [`fanotify_parse`] (the event buffer),
//! `inotify::parse_events`. Kernel-facing: [`fanotify_fid`], [`fanotify_fd`], [`inotify`].
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

pub mod dir_marks;
pub mod emit;
pub mod fanotify_fd;
pub mod fanotify_fid;
pub mod fanotify_parse;
mod fid_resolver;
pub mod filter;
pub mod inotify;
pub mod marks;
pub mod roots;
pub mod source;
pub mod tree_dirs;

pub use source::{FileCapture, FileMode, FilesError};

/// Which rung to use. `auto` probes FID, then fd, then inotify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FileModeRequest {
    #[default]
    Auto,
    FanotifyFid,
    FanotifyFd,
    Inotify,
}

impl FileModeRequest {
    pub fn as_str(self) -> &'static str {
        match self {
            FileModeRequest::Auto => "auto",
            FileModeRequest::FanotifyFid => "fanotify-fid",
            FileModeRequest::FanotifyFd => "fanotify-fd",
            FileModeRequest::Inotify => "inotify",
        }
    }
}

impl fmt::Display for FileModeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FileModeRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "fanotify-fid" => Ok(Self::FanotifyFid),
            "fanotify-fd" => Ok(Self::FanotifyFd),
            "inotify" => Ok(Self::Inotify),
            other => Err(format!(
                "files mode {other:?}: expected auto, fanotify-fid, fanotify-fd or inotify"
            )),
        }
    }
}

/// `[files]` in the sensor config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Capture file activity at all.
    pub enabled: bool,
    /// "auto" | "fanotify-fid" | "fanotify-fd" | "inotify". A forced rung that is unavailable
    /// is an error, not a fallback.
    pub mode: FileModeRequest,
    /// Trees to watch (directories or single files). A component may hold `*` / `?` globs
    /// (`/home/*/.ssh`); fanotify matches them on every event, inotify expands them at start.
    /// Trees that do not exist yet are covered by fanotify (by path) but not by inotify.
    pub watch: Vec<String>,
    /// Path prefixes (component-wise, globs allowed) under the watched trees not to report.
    pub exclude: Vec<String>,
    /// The sensor's own spool / log / output paths, so it cannot feed itself. Filled by the
    /// runtime; the sensor's own pid is ignored as well where the kernel names the pid.
    pub ignore_paths: Vec<String>,
    /// Operations to report, from create|modify|delete|rename|open|close_write|close|attrib.
    /// open and close (close without write) are off by default: every read of every file in
    /// the trees (`ls`, a shell sourcing /etc/profile, the dynamic loader reading /etc/ld.so.cache)
    /// produces them, which drowns the changes a security team cares about.
    pub ops: Vec<String>,
    /// Repeated `modify` events from one pid on one path within this window are reported
    /// once (the rest counted as `files_modify_coalesced`); 0 disables. Create, delete and
    /// rename are never coalesced.
    pub coalesce_modify_ms: u64,
    /// fanotify: an unlimited kernel queue (`FAN_UNLIMITED_QUEUE`) instead of the default
    /// 16384 events. On by default: an overflow says only *that* events were lost, not how
    /// many, so a bounded queue cannot account for a gap exactly. Queued events are charged
    /// to the sensor's memory cgroup, whose limit still bounds them. (inotify has no such
    /// option; its overflows are counted.)
    pub unlimited_queue: bool,
    /// fanotify-fd mode: also run recursive inotify for create/delete/rename/attrib, which
    /// mount marks cannot report (those events then carry no pid).
    pub fd_mode_inotify: bool,
    /// fanotify-fid mode: at most this many directories outside the watched trees get an
    /// in-kernel ignore mark, so their events stop reaching the sensor (see
    /// docs/ARCHITECTURE.md, "File activity"). 0: none (every event on the filesystem is
    /// filtered in userspace).
    pub max_ignore_marks: usize,
    /// fanotify-fid mode: attribute changes (attrib) come from inode marks on the directories
    /// of the watched trees, at most this many at start; above it, or with 0, from the
    /// filesystem mark (which then also reads a link-count event for every unlink on the disk).
    pub max_dir_marks: usize,
}

pub const DEFAULT_WATCH: [&str; 15] = [
    "/etc",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/bin",
    "/sbin",
    "/boot",
    "/root/.ssh",
    "/home/*/.ssh",
    "/etc/cron.d",
    "/etc/cron.daily",
    "/var/spool/cron",
    "/etc/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: FileModeRequest::Auto,
            watch: DEFAULT_WATCH.iter().map(|s| s.to_string()).collect(),
            exclude: Vec::new(),
            ignore_paths: Vec::new(),
            ops: OpSet::DEFAULT.names(),
            coalesce_modify_ms: 1000,
            unlimited_queue: true,
            fd_mode_inotify: true,
            max_ignore_marks: 16_384,
            max_dir_marks: 8_192,
        }
    }
}

impl FilesConfig {
    /// Checks what serde cannot: op names and absolute paths.
    pub fn validate(&self) -> Result<(), String> {
        OpSet::parse(&self.ops)?;
        for (what, list) in [
            ("watch", &self.watch),
            ("exclude", &self.exclude),
            ("ignore_paths", &self.ignore_paths),
        ] {
            if let Some(p) = list.iter().find(|p| !p.starts_with('/')) {
                return Err(format!("files.{what}: {p:?} is not an absolute path"));
            }
        }
        if self.enabled && self.watch.is_empty() {
            return Err("files.watch is empty (set files.enabled = false instead)".into());
        }
        Ok(())
    }
}

/// A set of file operations, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpSet(pub u16);

impl OpSet {
    pub const CREATE: OpSet = OpSet(1);
    pub const MODIFY: OpSet = OpSet(1 << 1);
    pub const ATTRIB: OpSet = OpSet(1 << 2);
    pub const CLOSE_WRITE: OpSet = OpSet(1 << 3);
    pub const OPEN: OpSet = OpSet(1 << 4);
    pub const CLOSE: OpSet = OpSet(1 << 5);
    pub const RENAME: OpSet = OpSet(1 << 6);
    pub const DELETE: OpSet = OpSet(1 << 7);
    pub const EMPTY: OpSet = OpSet(0);
    pub const ALL: OpSet = OpSet(0xff);
    /// Everything but open / close.
    pub const DEFAULT: OpSet = OpSet(0xff & !(1 << 4) & !(1 << 5));

    /// Names in the order they appear in an event's `ops`.
    pub const NAMES: [(OpSet, &'static str); 8] = [
        (OpSet::CREATE, "create"),
        (OpSet::OPEN, "open"),
        (OpSet::MODIFY, "modify"),
        (OpSet::ATTRIB, "attrib"),
        (OpSet::CLOSE_WRITE, "close_write"),
        (OpSet::CLOSE, "close"),
        (OpSet::RENAME, "rename"),
        (OpSet::DELETE, "delete"),
    ];

    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<OpSet, String> {
        let mut set = OpSet::EMPTY;
        for n in names {
            let n = n.as_ref();
            let (bit, _) = Self::NAMES
                .iter()
                .find(|(_, name)| *name == n)
                .ok_or_else(|| {
                    format!("files.ops: unknown operation {n:?} (expected create, modify, delete, rename, open, close_write, close or attrib)")
                })?;
            set = set | *bit;
        }
        Ok(set)
    }

    pub fn names(self) -> Vec<String> {
        Self::NAMES
            .iter()
            .filter(|(bit, _)| self.contains(*bit))
            .map(|(_, n)| n.to_string())
            .collect()
    }

    pub fn contains(self, other: OpSet) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: OpSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for OpSet {
    type Output = OpSet;
    fn bitor(self, rhs: OpSet) -> OpSet {
        OpSet(self.0 | rhs.0)
    }
}

impl std::ops::BitAnd for OpSet {
    type Output = OpSet;
    fn bitand(self, rhs: OpSet) -> OpSet {
        OpSet(self.0 & rhs.0)
    }
}

impl std::ops::Not for OpSet {
    type Output = OpSet;
    fn not(self) -> OpSet {
        OpSet(!self.0 & OpSet::ALL.0)
    }
}

/// Loss and bookkeeping counters of the file source, reported in `sensor_health`.
#[derive(Debug, Default)]
pub struct FileStats {
    /// Kernel queue overflows (FAN_Q_OVERFLOW / IN_Q_OVERFLOW); each loses an unknown number
    /// of events. Raise the queue (`unlimited_queue`) if this moves.
    pub queue_overflows: AtomicU64,
    /// fanotify events whose path could not be resolved (handle stale, fd unreadable) and
    /// that may have been inside the watched trees: a loss.
    pub unresolved: AtomicU64,
    /// fanotify-fid events whose directory was removed before the read and was never in a
    /// watched tree (`tree_dirs.rs`): not reportable, not a loss.
    pub outside_unresolved: AtomicU64,
    /// Malformed fanotify / inotify records.
    pub parse_errors: AtomicU64,
    /// Directories inotify could not watch (ENOSPC: raise fs.inotify.max_user_watches).
    pub watch_failures: AtomicU64,
    /// Events outside the trees, excluded, ignored, or of an op not reported.
    pub filtered_out: AtomicU64,
    /// Events caused by the sensor itself.
    pub own_events: AtomicU64,
    pub coalesced: AtomicU64,
    /// Creates synthesized by scanning a new directory (inotify).
    pub synthesized: AtomicU64,
    /// Directories currently watched by inotify.
    pub watches: AtomicU64,
    /// fanotify marks (filesystems in FID mode, mounts in fd mode).
    pub marks: AtomicU64,
    /// Events whose process was gone before /proc could be read.
    pub process_gone: AtomicU64,
    /// fanotify events on an unlinked inode (no name left): not reportable, not a loss.
    pub nameless: AtomicU64,
    /// Configured trees that did not exist at start.
    pub trees_missing: AtomicU64,
    /// Directories outside the trees given an in-kernel ignore mark (fanotify-fid).
    pub ignore_marks: AtomicU64,
    /// 1 once `files.max_ignore_marks` was reached.
    pub ignore_marks_full: AtomicU64,
    /// Directories of the trees with an inode mark for writes and attrib (fanotify-fid).
    pub dir_marks: AtomicU64,
    /// 1 once a new directory could not be marked (bound or refusal).
    pub dir_marks_full: AtomicU64,
    /// fanotify marks the kernel refused (ENOSPC at fs.fanotify.max_user_marks, EACCES...).
    pub mark_failures: AtomicU64,
    /// Files found changed, by the walk after a directory with ignore marks moved into a
    /// tree, between that move and the sensor reading it (reported without a process).
    pub changed_while_ignored: AtomicU64,
    /// Tree directory handles known (fanotify-fid, `tree_dirs.rs`), at the last read.
    pub tree_dirs: AtomicU64,
    /// 1 once that set can no longer tell a directory removed outside the trees from one
    /// inside (bound, overflow, no handle): every such event counts as `files_path_unresolved`.
    pub tree_dirs_untrusted: AtomicU64,
}

impl FileStats {
    /// A fanotify read's parse result: the event, or `None` after counting the malformed
    /// event as a loss (logged for the first ten).
    pub fn parsed<T, E: std::fmt::Display>(&self, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(ev) => Some(ev),
            Err(e) => {
                if self.parse_errors.fetch_add(1, Relaxed) < 10 {
                    tracing::warn!(error = %e, "malformed fanotify event skipped");
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unresolved_in_a_tree_is_a_drop_and_outside_is_not() {
        let s = FileStats::default();
        s.unresolved.store(2, Relaxed);
        s.outside_unresolved.store(5, Relaxed);
        let f = crate::telemetry::fields::fields_of(&s);
        assert_eq!(f.drops["files_path_unresolved"], 2);
        assert_eq!(f.events["files_outside_unresolved"], 5);
        assert!(!f.drops.contains_key("files_outside_unresolved"));
        assert!(!f.events.contains_key("files_path_unresolved"));
    }

    #[test]
    fn defaults_validate_and_leave_out_open_close() {
        let c = FilesConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.ops,
            [
                "create",
                "modify",
                "attrib",
                "close_write",
                "rename",
                "delete"
            ]
        );
        assert!(c.watch.iter().any(|w| w == "/home/*/.ssh"));
        assert_eq!(c.mode, FileModeRequest::Auto);
    }

    #[test]
    fn toml_section_parses_and_rejects_unknown() {
        let c: FilesConfig = toml::from_str(
            "mode = \"inotify\"\nwatch = [\"/srv\"]\nops = [\"create\", \"open\"]\n",
        )
        .unwrap();
        assert_eq!(c.mode, FileModeRequest::Inotify);
        assert_eq!(OpSet::parse(&c.ops).unwrap(), OpSet::CREATE | OpSet::OPEN);
        assert!(c.enabled);
        assert!(toml::from_str::<FilesConfig>("bogus = 1").is_err());
        assert!(toml::from_str::<FilesConfig>("mode = \"fast\"").is_err());
    }

    #[test]
    fn validation_errors() {
        let mut c = FilesConfig {
            ops: vec!["explode".into()],
            ..FilesConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("explode"));
        c.ops = vec!["create".into()];
        c.exclude = vec!["relative/path".into()];
        assert!(c.validate().unwrap_err().contains("exclude"));
        c.exclude.clear();
        c.watch.clear();
        assert!(c.validate().is_err());
    }

    #[test]
    fn opset_names_round_trip() {
        let all = OpSet::ALL.names();
        assert_eq!(all.len(), 8);
        assert_eq!(OpSet::parse(&all).unwrap(), OpSet::ALL);
        assert_eq!(!OpSet::DEFAULT, OpSet::OPEN | OpSet::CLOSE);
        assert!(OpSet::DEFAULT.contains(OpSet::RENAME | OpSet::DELETE));
        assert!(!OpSet::DEFAULT.intersects(OpSet::OPEN));
        assert_eq!(
            "fanotify-fd".parse::<FileModeRequest>().unwrap(),
            FileModeRequest::FanotifyFd
        );
        assert!("x".parse::<FileModeRequest>().is_err());
    }
}
