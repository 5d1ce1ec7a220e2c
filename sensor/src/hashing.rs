//! Hashers for the sensor's hot tables, instead of std's SipHash:
//! - [`IdBuild`]: one multiply per integer, for keys the kernel assigns (pids, start times,
//!   cgroup ids), which no user can pick;
//! - [`SeededState`]: foldhash, keyed with the kernel's random bytes once per process, for text
//!   a user controls (argv, paths): without the key no one can prepare inputs that collide.
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use foldhash::{fast::FoldHasher, SharedSeed};

/// A multiplicative hasher for integer keys (pids, cgroup ids): keeps sequential pids in
/// distinct buckets and costs one multiply.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub type IdBuild = BuildHasherDefault<IdHasher>;

/// For `(pid, start)` keys the kernel assigns, in pid order: the table slot is the pid's low
/// 32 bits (hashbrown takes the slot from the low bits, the tag from the top 7), so pids that
/// are close, as those of a burst of processes are, stay in nearby slots and a set of recent
/// pids is read a few cache lines at a time instead of one random line per lookup. The top
/// half mixes in the start time, which tells a reused pid apart.
#[derive(Default, Clone, Copy)]
pub struct PidOrderHasher {
    pid: u32,
    mixed: u64,
}

impl Hasher for PidOrderHasher {
    fn finish(&self) -> u64 {
        (self.mixed & !0xffff_ffff) | u64::from(self.pid)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.mixed = (self.mixed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.pid = n;
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.mixed = (self.mixed ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub type PidOrderBuild = BuildHasherDefault<PidOrderHasher>;

/// 64 bits from `getrandom(2)`, for the process's foldhash key (the shared seed, read once) and
/// each table's own seed.
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < b.len() {
        // SAFETY: writes at most the remaining bytes of `b`.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), b.len() - got, 0) };
        if n > 0 {
            got += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No getrandom (not on the kernels the sensor runs on): the clock and ASLR.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            return t ^ (&b as *const _ as u64).rotate_left(32);
        }
    }
    u64::from_ne_bytes(b)
}

fn shared_seed() -> &'static SharedSeed {
    static SEED: OnceLock<SharedSeed> = OnceLock::new();
    SEED.get_or_init(|| SharedSeed::from_u64(random_u64()))
}

/// A randomly keyed foldhash (see the module documentation).
#[derive(Clone, Copy)]
pub struct SeededState {
    per_table: u64,
}

impl Default for SeededState {
    fn default() -> Self {
        Self {
            per_table: random_u64(),
        }
    }
}

impl BuildHasher for SeededState {
    type Hasher = FoldHasher<'static>;
    fn build_hasher(&self) -> FoldHasher<'static> {
        FoldHasher::with_seed(self.per_table, shared_seed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_order_keeps_the_pid_in_the_low_half_and_the_start_in_the_top() {
        let b = PidOrderBuild::default();
        let h = |pid: u32, start: u64| b.hash_one((pid, start));
        assert_eq!(h(4242, 7) & 0xffff_ffff, 4242);
        assert_eq!(h(4243, 7) & 0xffff_ffff, 4243);
        assert_ne!(
            h(4242, 7) >> 57,
            h(4242, 8) >> 57,
            "the tag tells a reused pid apart"
        );
    }

    #[test]
    fn seeded_states_differ_and_each_is_stable() {
        let (a, b) = (SeededState::default(), SeededState::default());
        let text = "/usr/bin/true --flag";
        assert_eq!(a.hash_one(text), a.hash_one(text));
        assert_ne!(a.per_table, b.per_table, "64 random bits twice the same");
        assert_ne!(a.hash_one(text), b.hash_one(text));
    }
}
