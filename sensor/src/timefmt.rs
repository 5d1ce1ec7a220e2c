//! Clock readings and conversion between the kernel's clocks and wall-clock time. Times stay
//! integer ns since the Unix epoch; only the JSON writer (`sensor_proto::json`) formats them.

// `time_t`/`c_long` are i32 on 32-bit targets: the conversions are not useless there.
#[allow(clippy::useless_conversion)]
fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; the clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i64::from(ts.tv_sec)
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(ts.tv_nsec))
}

/// A kernel clock reading (u64 ns) as i64, saturating (a hostile or corrupt record cannot
/// wrap it negative).
fn as_i64(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// Converts kernel clock readings to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    /// realtime - monotonic, ns.
    pub mono_to_unix: i64,
    /// realtime - boottime, ns.
    pub boot_to_unix: i64,
}

impl Clocks {
    pub fn now() -> Self {
        let real = clock_ns(libc::CLOCK_REALTIME);
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        Self {
            mono_to_unix: real - mono,
            boot_to_unix: real - boot,
        }
    }

    pub fn monotonic_to_unix(&self, mono_ns: u64) -> i64 {
        as_i64(mono_ns).saturating_add(self.mono_to_unix)
    }

    pub fn boottime_to_unix(&self, boot_ns: u64) -> i64 {
        as_i64(boot_ns).saturating_add(self.boot_to_unix)
    }
}

/// Current CLOCK_MONOTONIC in ns (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Current wall-clock time in ns since the epoch.
pub fn unix_now_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_convert_monotonic_to_now() {
        let c = Clocks::now();
        let wall = c.monotonic_to_unix(monotonic_now_ns());
        assert!((wall - unix_now_ns()).abs() < 1_000_000_000);
    }

    #[test]
    fn hostile_readings_saturate() {
        let c = Clocks {
            mono_to_unix: 5,
            boot_to_unix: 5,
        };
        assert_eq!(c.monotonic_to_unix(u64::MAX), i64::MAX);
        assert_eq!(c.boottime_to_unix(u64::MAX), i64::MAX);
    }
}
