//! /proc as a last resort: pure parsers of `/proc/<pid>/{cmdline,cgroup}` text (stat and status
//! are parsed in [`crate::proc_text`]) and
//! a thin reader that takes the proc root as an argument, so tests can point it at a fixture
//! directory laid out like /proc.
//!
//! Nothing here panics on odd contents: a comm with spaces and parentheses, a non-UTF-8
//! cmdline, a truncated stat or a process that vanished between two reads all give `None` or
//! a [`ProcError`].
use std::ffi::OsStr;
use std::io::{ErrorKind, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::escape::escape_bytes;
pub use crate::proc_text::{parse_stat, parse_status, Ids, Stat};

/// Longest command line read from /proc for enrichment (the process cache keeps one per
/// process; exec events carry the full bounded argv, `sensor.argv_max_bytes`).
pub const CMDLINE_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("process {0} is gone")]
    Gone(u32),
    #[error("pid {pid} now belongs to another process (start tick {found}, expected {expected})")]
    Reused { pid: u32, expected: u64, found: u64 },
    #[error("malformed /proc/{pid}/{file}")]
    Malformed { pid: u32, file: &'static str },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Splits `/proc/<pid>/cmdline` into escaped arguments. Empty for kernel threads and zombies.
/// A process that rewrote its command line without NULs gives a single argument.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    body.split(|&b| b == 0).map(escape_bytes).collect()
}

/// `/proc/<pid>/loginuid` or `sessionid`: a decimal number (4294967295 = unset).
pub fn parse_id_file(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`. The v2 (unified) line
/// is `0::/path`; v1 lines name their controllers (`12:pids:/docker/<id>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    pub hierarchy: u32,
    pub controllers: &'a str,
    pub path: &'a str,
}

impl CgroupLine<'_> {
    pub fn is_v2(&self) -> bool {
        self.hierarchy == 0 && self.controllers.is_empty()
    }
}

/// Parses `/proc/<pid>/cgroup`; malformed lines are skipped. The path may itself hold `:`.
pub fn parse_cgroup(text: &str) -> Vec<CgroupLine<'_>> {
    text.lines()
        .filter_map(|line| {
            let (id, rest) = line.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            Some(CgroupLine {
                hierarchy: id.trim().parse().ok()?,
                controllers,
                path,
            })
        })
        .collect()
}

/// `tty_nr` from stat as a name: `pts/N` (majors 136-143), `ttyN` and `ttySN` (major 4).
pub fn tty_name(tty_nr: u32) -> Option<String> {
    if tty_nr == 0 {
        return None;
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        136..=143 => Some(format!("pts/{}", (major - 136) * 256 + minor)),
        4 if minor < 64 => Some(format!("tty{minor}")),
        4 => Some(format!("ttyS{}", minor - 64)),
        _ => None,
    }
}

/// Everything the cache keeps about a process, read from /proc. Fields that could not be read
/// (a zombie has no exe or cwd; a file may vanish mid-read) are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stat: Stat,
    pub ids: Option<Ids>,
    pub auid: Option<u32>,
    pub session: Option<u32>,
    pub exe: Option<String>,
    pub cwd: Option<String>,
    pub argv: Option<Vec<String>>,
    pub argv_truncated: bool,
    /// Raw `/proc/<pid>/cgroup` text.
    pub cgroup: Option<String>,
}

fn pid_dir(root: &Path, pid: u32) -> PathBuf {
    root.join(pid.to_string())
}

fn io_err(pid: u32, path: &Path, e: std::io::Error) -> ProcError {
    // ESRCH: the task exited between open and read.
    if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
        ProcError::Gone(pid)
    } else {
        ProcError::Io {
            path: path.display().to_string(),
            source: e,
        }
    }
}

/// Most bytes read of `/proc/<pid>/stat` and of `/proc/<pid>/cgroup`.
const STAT_MAX: usize = 4096;
const CGROUP_MAX: usize = 64 * 1024;

fn read_bounded(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_into(path, max, &mut buf)?;
    Ok(buf)
}

/// Reads up to `max` bytes of `path` into `buf` (cleared first).
fn read_into(path: &Path, max: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    // /proc files report size 0: room for a typical file up front makes it one read(2) and
    // the end-of-file read, instead of growing from 32 bytes (five to seven reads).
    buf.clear();
    buf.reserve(max.min(4096));
    std::fs::File::open(path)?
        .take(max as u64)
        .read_to_end(buf)?;
    Ok(())
}

/// Reads and parses `/proc/<pid>/stat`.
pub fn read_stat(root: &Path, pid: u32) -> Result<Stat, ProcError> {
    let path = pid_dir(root, pid).join("stat");
    let text = read_bounded(&path, STAT_MAX).map_err(|e| io_err(pid, &path, e))?;
    parse_stat(&text).ok_or(ProcError::Malformed { pid, file: "stat" })
}

/// A symlink in the pid directory (`exe`, `cwd`) as escaped text; `None` when unreadable
/// (a kernel thread, a zombie, or a process that is gone).
pub fn read_link(root: &Path, pid: u32, name: &str) -> Option<String> {
    let target = std::fs::read_link(pid_dir(root, pid).join(name)).ok()?;
    Some(escape_bytes(target.as_os_str().as_bytes()))
}

/// The command line, cut at [`CMDLINE_MAX`] bytes (the flag says so).
pub fn read_cmdline(root: &Path, pid: u32) -> Option<(Vec<String>, bool)> {
    let bytes = read_bounded(&pid_dir(root, pid).join("cmdline"), CMDLINE_MAX + 1).ok()?;
    let truncated = bytes.len() > CMDLINE_MAX;
    let bytes = &bytes[..bytes.len().min(CMDLINE_MAX)];
    Some((parse_cmdline(bytes), truncated))
}

/// Raw `/proc/<pid>/cgroup` text.
pub fn read_cgroup(root: &Path, pid: u32) -> Option<String> {
    let bytes = read_bounded(&pid_dir(root, pid).join("cgroup"), CGROUP_MAX).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

thread_local! {
    /// The buffer [`read_cgroup_alive_since`] reads both files into (it runs once per audit
    /// exec): no 4 KiB allocation per file.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `/proc/<pid>/cgroup` text read while the process `(pid, start_ticks)` was alive: an exited
/// task (a zombie) has left its v1 cgroups and the file then names the root cgroups, which
/// would be a wrong answer. `None` when the process is gone, a zombie, or another process.
pub fn read_cgroup_alive(root: &Path, pid: u32, start_ticks: Option<u64>) -> Option<String> {
    read_cgroup_alive_since(root, pid, start_ticks).map(|(text, _)| text)
}

/// [`read_cgroup_alive`], with the start tick its liveness check read from `stat`.
pub fn read_cgroup_alive_since(
    root: &Path,
    pid: u32,
    start_ticks: Option<u64>,
) -> Option<(String, u64)> {
    let dir = pid_dir(root, pid);
    SCRATCH.with_borrow_mut(|buf| {
        // As `read_cgroup`, then `read_stat`, in one reused buffer.
        read_into(&dir.join("cgroup"), CGROUP_MAX, buf).ok()?;
        let text = String::from_utf8_lossy(buf).into_owned();
        read_into(&dir.join("stat"), STAT_MAX, buf).ok()?;
        let st = parse_stat(buf)?;
        let alive = !matches!(st.state, b'Z' | b'X' | b'x');
        let same = start_ticks.is_none_or(|t| t == st.start_ticks);
        (alive && same).then_some((text, st.start_ticks))
    })
}

fn read_id(root: &Path, pid: u32, name: &str) -> Option<u32> {
    let bytes = read_bounded(&pid_dir(root, pid).join(name), 64).ok()?;
    parse_id_file(std::str::from_utf8(&bytes).ok()?)
}

/// The text of `/proc/<pid>/status` (bounded), if it can be read.
pub fn read_status(root: &Path, pid: u32) -> Option<String> {
    read_bounded(&pid_dir(root, pid).join("status"), 64 * 1024)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Reads a whole [`Snapshot`]. With `expect_ticks`, a process whose start tick differs (the
/// pid was reused) is [`ProcError::Reused`]. The stat file decides whether the process exists;
/// every other file is optional.
pub fn read_snapshot(
    root: &Path,
    pid: u32,
    expect_ticks: Option<u64>,
) -> Result<Snapshot, ProcError> {
    let stat = read_stat(root, pid)?;
    if let Some(expected) = expect_ticks {
        if stat.start_ticks != expected {
            return Err(ProcError::Reused {
                pid,
                expected,
                found: stat.start_ticks,
            });
        }
    }
    let ids = read_status(root, pid).and_then(|t| parse_status(&t));
    let (argv, argv_truncated) = match read_cmdline(root, pid) {
        Some((a, t)) => (Some(a), t),
        None => (None, false),
    };
    Ok(Snapshot {
        ids,
        auid: read_id(root, pid, "loginuid"),
        session: read_id(root, pid, "sessionid"),
        exe: read_link(root, pid, "exe"),
        cwd: read_link(root, pid, "cwd"),
        argv,
        argv_truncated,
        cgroup: read_cgroup_alive(root, pid, Some(stat.start_ticks)),
        stat,
    })
}

/// The numeric entries of the proc root (thread-group leaders).
pub fn list_pids(root: &Path) -> std::io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) = pid_of_name(&entry.file_name()) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

fn pid_of_name(name: &OsStr) -> Option<u32> {
    let b = name.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc_text::STAT_FIXTURE as STAT;

    #[test]
    fn cgroup_of_a_zombie_or_another_process_is_not_read() {
        let root = std::env::temp_dir().join(format!("procfs-zombie-{}", std::process::id()));
        let dir = root.join("4242");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup"), "8:pids:/docker/x\n").unwrap();
        std::fs::write(dir.join("stat"), STAT).unwrap();
        assert!(read_cgroup_alive(&root, 4242, None).is_some());
        assert!(read_cgroup_alive(&root, 4242, Some(123456)).is_some());
        assert!(
            read_cgroup_alive(&root, 4242, Some(7)).is_none(),
            "pid reused"
        );
        // After exit a task has left its v1 cgroups: /proc shows the root ones.
        std::fs::write(dir.join("stat"), STAT.replacen(") S ", ") Z ", 1)).unwrap();
        assert!(read_cgroup_alive(&root, 4242, None).is_none());
        assert!(read_cgroup_alive(&root, 4243, None).is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn cmdline_shapes() {
        assert_eq!(
            parse_cmdline(b"/bin/sh\0-c\0echo hi\0"),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(parse_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
        assert_eq!(parse_cmdline(b"x\0\0"), ["x", ""]);
        assert_eq!(parse_cmdline(b"bad\xff\0ok\0"), ["bad\\xff", "ok"]);
        assert_eq!(
            parse_cmdline(b"nginx: worker process   "),
            ["nginx: worker process   "]
        );
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn cgroup_lines_v1_and_v2() {
        let text = "12:pids:/docker/abc\n1:name=systemd:/x:y\n0::/user.slice\nbogus\nq:r:s\n";
        let lines = parse_cgroup(text);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].controllers, "pids");
        assert_eq!(lines[1].path, "/x:y");
        assert!(lines[2].is_v2() && lines[2].path == "/user.slice");
        assert!(!lines[0].is_v2());
    }

    #[test]
    fn tty_names() {
        assert_eq!(tty_name(0), None);
        assert_eq!(tty_name((136 << 8) | 3), Some("pts/3".into()));
        assert_eq!(tty_name((137 << 8) | 1), Some("pts/257".into()));
        assert_eq!(tty_name((4 << 8) | 1), Some("tty1".into()));
        assert_eq!(tty_name((4 << 8) | 65), Some("ttyS1".into()));
        assert_eq!(tty_name(1 << 8), None);
        // minor above 255 uses the high bits.
        assert_eq!(tty_name((136 << 8) | (1 << 20)), Some("pts/256".into()));
    }

    #[test]
    fn id_files() {
        assert_eq!(parse_id_file("1000"), Some(1000));
        assert_eq!(parse_id_file("4294967295"), Some(u32::MAX));
        assert_eq!(parse_id_file("x"), None);
    }

    #[test]
    fn reads_own_process() {
        let root = Path::new("/proc");
        let me = std::process::id();
        let snap = read_snapshot(root, me, None).unwrap();
        assert_eq!(snap.stat.pid, me);
        assert!(snap.exe.is_some() && snap.cwd.is_some() && snap.cgroup.is_some());
        assert!(!snap.argv.unwrap().is_empty());
        let wrong = snap.stat.start_ticks + 1;
        assert!(matches!(
            read_snapshot(root, me, Some(wrong)),
            Err(ProcError::Reused { .. })
        ));
        assert!(list_pids(root).unwrap().contains(&me));
    }

    #[test]
    fn missing_pid_is_gone() {
        let dir = std::env::temp_dir().join(format!("enrich-procfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            read_snapshot(&dir, 1, None),
            Err(ProcError::Gone(1))
        ));
        assert!(list_pids(&dir).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
