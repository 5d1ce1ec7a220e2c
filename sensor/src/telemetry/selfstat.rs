//! The sensor's own CPU time and memory, from /proc/self (a thin reader; the parsers are in
//! [`crate::proc_text`]).
use crate::proc_text::{parse_stat, status_kb};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SelfUsage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

pub fn read(pid: Option<u32>) -> SelfUsage {
    let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    SelfUsage {
        cpu_seconds: parse_stat(stat.as_bytes()).map_or(0, |s| s.utime + s.stime) as f64 / hz,
        rss_bytes: status_kb(&status, "VmRSS").unwrap_or(0),
        peak_rss_bytes: status_kb(&status, "VmHWM").unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_self() {
        let u = read(None);
        assert!(u.rss_bytes > 0);
    }
}
