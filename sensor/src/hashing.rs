//! Hashers for the sensor's hot tables, instead of std's SipHash: [`IdBuild`], one multiply per
//! integer, for keys the kernel assigns (pids, start times, cgroup ids), which no user can pick.
use std::hash::{BuildHasherDefault, Hasher};

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
