//! Pure parsers of `/proc/<pid>/stat` and `/proc/<pid>/status` text, the one place the sensor
//! reads those formats: the process cache and the file source (through
//! [`crate::enrich::procfs`]) and self-stats.
//!
//! Nothing here panics on odd contents: a comm with spaces and parentheses, a truncated stat,
//! a status without the wanted line all give `None`.
use crate::escape::escape_bytes;

/// The fields of `/proc/<pid>/stat` the sensor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// The comm between the first `(` and the last `)`, escaped like kernel bytes elsewhere.
    pub comm: String,
    pub state: u8,
    pub ppid: u32,
    /// Field 7, the controlling terminal as a device number (0 = none).
    pub tty_nr: u32,
    /// Fields 14 and 15: user and system CPU time in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The comm may hold spaces and parentheses, so the fixed fields
/// are taken after the LAST `)`. Returns `None` when the text is truncated or malformed.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = std::str::from_utf8(&text[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = escape_bytes(&text[open + 1..close]);
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let fields: Vec<&str> = rest.split_ascii_whitespace().take(21).collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let state = *field(3)?.as_bytes().first()?;
    let ppid = field(4)?.parse().ok()?;
    let tty_nr = field(7)?.parse::<i64>().ok()? as u32;
    let utime = field(14)?.parse().ok()?;
    let stime = field(15)?.parse().ok()?;
    let start_ticks = field(22)?.parse().ok()?;
    // Field 23 must follow, or field 22 itself may have been cut short.
    field(23)?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        tty_nr,
        utime,
        stime,
        start_ticks,
    })
}

/// Real, effective, saved and filesystem ids from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ids {
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
}

/// The value of the `key:` line of `/proc/<pid>/status` text, trimmed.
pub fn status_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Parses the `Uid:` and `Gid:` lines (real and effective) of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<Ids> {
    let pair = |key: &str| -> Option<(u32, u32)> {
        let mut it = status_field(text, key)?
            .split_ascii_whitespace()
            .map(str::parse::<u32>);
        Some((it.next()?.ok()?, it.next()?.ok()?))
    };
    let (uid, euid) = pair("Uid")?;
    let (gid, egid) = pair("Gid")?;
    Some(Ids {
        uid,
        euid,
        gid,
        egid,
    })
}

/// A `VmRSS:`/`VmHWM:` style line's value in bytes (the file says kB).
pub fn status_kb(text: &str, key: &str) -> Option<u64> {
    let kb: u64 = status_field(text, key)?
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    // A value the kernel cannot hold is not a size: no answer rather than a wrapped one.
    kb.checked_mul(1024)
}

/// A stat line as a 6.x kernel writes it (tests of the parsers and of the readers on top).
#[cfg(test)]
pub(crate) const STAT_FIXTURE: &str =
    "4242 (bash) S 4000 4242 4242 34817 4300 4194560 3177 16826 0 2 4 3 \
    30 12 20 0 1 0 123456 9371648 1234 18446744073709551615 1 1 0 0 0 0 65536 3670020 \
    1266777851 0 0 0 17 1 0 0 0 0 0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let s = parse_stat(STAT_FIXTURE.as_bytes()).unwrap();
        assert_eq!(
            (s.pid, s.comm.as_str(), s.state, s.ppid, s.start_ticks),
            (4242, "bash", b'S', 4000, 123456)
        );
        assert_eq!(
            crate::enrich::procfs::tty_name(s.tty_nr).as_deref(),
            Some("pts/1")
        );
    }

    #[test]
    fn stat_comm_with_spaces_and_parentheses() {
        let text = "77 (a) b (c)) ) R 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 999 0 0";
        let s = parse_stat(text.as_bytes()).unwrap();
        assert_eq!(s.comm, "a) b (c)) ");
        assert_eq!((s.state, s.ppid, s.start_ticks), (b'R', 1, 999));
        // tty_nr -1 (none reported as -1 by some kernels) does not fail the parse.
        let s = parse_stat(b"5 (x) S 1 5 5 -1 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7 0").unwrap();
        assert_eq!(s.start_ticks, 7);
    }

    #[test]
    fn stat_non_utf8_comm_is_escaped() {
        let mut text = b"9 (a\xffb) S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0".to_vec();
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.comm, "a\\xffb");
        text.truncate(20);
        assert_eq!(parse_stat(&text), None);
    }

    #[test]
    fn stat_truncated_or_garbage() {
        let start = STAT_FIXTURE.find(" 123456").unwrap();
        for cut in [0, 5, 10, start, start + 4, start + 7] {
            assert_eq!(
                parse_stat(&STAT_FIXTURE.as_bytes()[..cut]),
                None,
                "cut at {cut}"
            );
        }
        assert_eq!(parse_stat(b")( S 1"), None);
        assert_eq!(
            parse_stat(b"x (y) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"),
            None
        );
        assert_eq!(
            parse_stat(b"1 (y) S z 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"),
            None
        );
    }

    #[test]
    fn status_ids() {
        let text = "Name:\tsudo\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\nGroups:\n";
        assert_eq!(
            parse_status(text),
            Some(Ids {
                uid: 1000,
                euid: 0,
                gid: 100,
                egid: 100
            })
        );
        assert_eq!(parse_status("Name:\tx\nUid:\t1\n"), None);
        assert_eq!(parse_status(""), None);
    }

    #[test]
    fn stat_cpu_times() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 25 17 0 0 20 0 1 0 500 1000 200";
        let s = parse_stat(stat.as_bytes()).unwrap();
        assert_eq!(s.utime + s.stime, 42);
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) S 1"), None);
        let s = parse_stat(STAT_FIXTURE.as_bytes()).unwrap();
        assert_eq!((s.utime, s.stime), (4, 3));
    }

    #[test]
    fn status_values() {
        let s = "Name:\tsensor\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(status_kb(s, "VmRSS"), Some(1024 * 1024));
        assert_eq!(status_kb(s, "VmHWM"), Some(2048 * 1024));
        assert_eq!(status_kb(s, "VmSwap"), None);
        assert_eq!(status_kb("VmRSSx:\t1 kB\n", "VmRSS"), None);
        // Found by the fuzz smoke: a size that overflows u64 in bytes is no answer, not a panic.
        assert_eq!(
            status_kb("VmRSS:\t14917696395404193163 kB\n", "VmRSS"),
            None
        );
    }
}
