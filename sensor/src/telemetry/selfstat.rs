//! The sensor's own CPU time and memory, from /proc/self (pure parsers + thin readers).

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SelfUsage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

/// utime + stime in clock ticks from the text of /proc/<pid>/stat.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // comm may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After comm: state(0) ppid(1) ... utime is field 14 overall => index 11 here, stime 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `VmRSS:`/`VmHWM:` style line's value in bytes from /proc/<pid>/status text.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

pub fn read(pid: Option<u32>) -> SelfUsage {
    let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    SelfUsage {
        cpu_seconds: parse_stat_cpu_ticks(&stat).unwrap_or(0) as f64 / hz,
        rss_bytes: parse_status_kb(&status, "VmRSS").unwrap_or(0),
        peak_rss_bytes: parse_status_kb(&status, "VmHWM").unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 25 17 0 0 20 0 1 0 500 1000 200";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(42));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn status_values() {
        let s = "Name:\tsensor\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(parse_status_kb(s, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(s, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(s, "VmSwap"), None);
    }

    #[test]
    fn reads_self() {
        let u = read(None);
        assert!(u.rss_bytes > 0);
    }
}
