//! The memory ceiling's plan: how many process-cache entries and queued events fit.
//!
//! The figures are deliberately conservative: a cache entry measured 308 bytes (see the cache
//! benchmark) and is budgeted at 512; a queued event (an enriched exec with argv, ancestors and
//! strings) is budgeted at 2 KiB. Queues are bounded by count, so the plan is an estimate; the
//! runtime also watches resident memory and sheds at the highest level above the ceiling.

/// The smallest ceiling accepted, in MiB.
pub const MIN_CEILING_MB: u64 = 64;
/// Code, runtime, ring-buffer mappings and start-up peaks (kernel BTF parsing), in MiB.
pub const BASE_MB: u64 = 40;
pub const CACHE_ENTRY_BYTES: u64 = 512;
pub const QUEUED_EVENT_BYTES: u64 = 2048;
/// Never size a queue or the cache below this, whatever the ceiling.
pub const MIN_SLOTS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Process-cache entries.
    pub cache_entries: usize,
    /// Capacity of each bounded event queue.
    pub channel_capacity: usize,
    /// Resident-memory ceiling in bytes (0 = none).
    pub ceiling_bytes: u64,
}

/// Fits the configured cache size and queue capacity under `memory_mb` (0 = no ceiling):
/// a third of what is left after the base goes to the cache, the rest to `queues` queues.
/// Configured values are only ever lowered, never raised.
pub fn plan(
    memory_mb: u64,
    cache_entries: usize,
    channel_capacity: usize,
    queues: usize,
) -> MemoryPlan {
    if memory_mb == 0 {
        return MemoryPlan {
            cache_entries,
            channel_capacity,
            ceiling_bytes: 0,
        };
    }
    let budget = memory_mb.saturating_sub(BASE_MB) * 1024 * 1024;
    let cache_fit = (budget / 3 / CACHE_ENTRY_BYTES) as usize;
    let queue_fit = ((budget - budget / 3) / queues.max(1) as u64 / QUEUED_EVENT_BYTES) as usize;
    MemoryPlan {
        cache_entries: cache_entries.min(cache_fit.max(MIN_SLOTS)),
        channel_capacity: channel_capacity.min(queue_fit.max(MIN_SLOTS)),
        ceiling_bytes: memory_mb * 1024 * 1024,
    }
}

/// glibc raises its mmap threshold after large frees, after which the next large buffers
/// (the second big read at start-up) come from the heap and stay resident: keep large
/// allocations in mmap so they go back to the OS when freed. glibc also gives threads that
/// allocate at the same time arenas of their own (up to 8 per core), each keeping its freed
/// memory: two arenas hold the peak resident memory of an event storm ~4 MiB lower (see
/// docs/ARCHITECTURE.md#operations). Called before the runtime starts its threads.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 * 1024);
        // The operator's choice (glibc reads it at start-up) stands.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Loading parsed ~5 MB of kernel BTF; hand the freed heap back to the OS so it does not
/// count against the sensor's resident memory for the rest of its life.
pub fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ceiling_keeps_the_default_cache_and_trims_queues() {
        let p = plan(512, 65_536, 65_536, 3);
        assert_eq!(p.cache_entries, 65_536);
        // (512-40) MiB * 2/3 / 3 queues / 2 KiB
        assert_eq!(p.channel_capacity, 53_703);
        assert_eq!(p.ceiling_bytes, 512 << 20);
        let worst = p.cache_entries as u64 * CACHE_ENTRY_BYTES
            + 3 * p.channel_capacity as u64 * QUEUED_EVENT_BYTES;
        assert!(worst <= (512 - BASE_MB) << 20);
    }

    #[test]
    fn small_ceiling_shrinks_both_but_not_below_the_floor() {
        let p = plan(64, 65_536, 65_536, 3);
        assert_eq!(p.cache_entries, 16_384);
        assert_eq!(p.channel_capacity, 2_730);
        let tiny = plan(MIN_CEILING_MB, 100, 10, 3);
        assert_eq!(
            (tiny.cache_entries, tiny.channel_capacity),
            (100, 10),
            "never raised"
        );
    }

    #[test]
    fn no_ceiling_keeps_configuration() {
        let p = plan(0, 7, 9, 3);
        assert_eq!(
            (p.cache_entries, p.channel_capacity, p.ceiling_bytes),
            (7, 9, 0)
        );
    }
}
