//! Reconnect delays: exponential backoff with jitter.
use std::time::Duration;

/// Exponential backoff with jitter: each delay is uniform in [d/2, d], d doubling from
/// `initial` up to `max`.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max,
            current: initial,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }

    pub fn next_delay(&mut self) -> Duration {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let d = self.current;
        let half = d / 2;
        let half_ns = half.as_nanos() as u64;
        let jitter = if half_ns == 0 { 0 } else { r % (half_ns + 1) };
        self.current = (self.current * 2).min(self.max);
        half + Duration::from_nanos(jitter)
    }
}

pub(super) fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t ^ (u64::from(std::process::id()) << 32)
}
