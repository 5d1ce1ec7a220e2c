//! The verdict `sensor status` prints and exits with.
use super::snapshot::Status;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Healthy,
    Degraded(Vec<String>),
    NotRunning(String),
}

impl Verdict {
    /// 0 healthy, 1 degraded, 3 not running (the LSB status convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded(_) => 1,
            Verdict::NotRunning(_) => 3,
        }
    }

    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Healthy => "running",
            Verdict::Degraded(_) => "degraded",
            Verdict::NotRunning(_) => "not running",
        }
    }
}

/// A status file is stale when it is older than this many write intervals (plus slack).
const STALE_INTERVALS: f64 = 3.0;
const STALE_SLACK_S: f64 = 2.0;

/// `live_start_ticks`: the start time of the status file's pid now (None: no such process).
pub fn assess(s: &Status, live_start_ticks: Option<u64>, now_unix: f64) -> Verdict {
    match live_start_ticks {
        None => {
            return Verdict::NotRunning(format!(
                "pid {} is gone: the sensor stopped without removing {}; it crashed or was killed",
                s.pid, "its status file"
            ))
        }
        Some(t) if t != s.pid_start_ticks => {
            return Verdict::NotRunning(format!(
            "pid {} now belongs to another process: the sensor that wrote the status file is gone",
            s.pid
        ))
        }
        Some(_) => {}
    }
    let mut why = Vec::new();
    let age = now_unix - s.updated_unix;
    if age > STALE_INTERVALS * s.interval_secs.max(1) as f64 + STALE_SLACK_S {
        why.push(format!(
            "status not updated for {age:.0}s (every {}s expected): the sensor is hung or starved of CPU",
            s.interval_secs
        ));
    }
    why.extend(s.degraded.iter().cloned());
    if why.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Degraded(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            pid: 42,
            pid_start_ticks: 1000,
            updated_unix: 100.0,
            interval_secs: 5,
            ..Status::default()
        }
    }

    #[test]
    fn alive_and_fresh_is_healthy() {
        let v = assess(&status(), Some(1000), 104.0);
        assert_eq!(v, Verdict::Healthy);
        assert_eq!(v.exit_code(), 0);
    }

    #[test]
    fn dead_or_reused_pid_is_not_running() {
        let v = assess(&status(), None, 101.0);
        assert_eq!(v.exit_code(), 3);
        let v = assess(&status(), Some(999), 101.0);
        assert!(
            matches!(&v, Verdict::NotRunning(m) if m.contains("another process")),
            "{v:?}"
        );
    }

    #[test]
    fn stale_file_or_reported_problems_are_degraded() {
        let v = assess(&status(), Some(1000), 118.0);
        assert!(
            matches!(&v, Verdict::Degraded(w) if w[0].contains("not updated for 18s")),
            "{v:?}"
        );
        let mut s = status();
        s.degraded = vec!["shedding".into()];
        assert_eq!(
            assess(&s, Some(1000), 101.0),
            Verdict::Degraded(vec!["shedding".into()])
        );
        assert_eq!(assess(&s, Some(1000), 101.0).exit_code(), 1);
    }
}
