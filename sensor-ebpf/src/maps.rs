//! Maps shared by the programs, and the offsets global.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{
    CompatConnect, ConnectEvent, ConnectStash, CredSnap, ExecEvent, ExecState, KernelOffsets,
    DROP_SLOTS, NOISE_RULES_MAX,
};

/// The one ring buffer all records go through. Userspace may resize it before load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters of records that could not be emitted, by `DROP_SLOT_*`.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

/// Scratch space to build an exec record (too big for the 512-byte stack), one slot per CPU
/// indexed by the current CPU: a per-CPU array value is limited to 32 KiB, and a record with
/// the full argv bound is larger. Userspace sets max_entries to the number of possible CPUs.
#[map]
pub static EXEC_SCRATCH: Array<ExecEvent> = Array::with_max_entries(1, 0);

/// connect(2) destinations between syscall entry and exit, keyed by pid_tgid.
#[map]
pub static CONNECT_STASH: LruHashMap<u64, ConnectStash> = LruHashMap::with_max_entries(16384, 0);

/// Connects seen at the cgroup hook inside a compat (ia32) syscall, keyed by pid_tgid, until
/// that syscall's exit reports them with its result (`compat_syscall.rs`).
#[map]
pub static COMPAT_CONNECT: LruHashMap<u64, CompatConnect> = LruHashMap::with_max_entries(4096, 0);

/// The io_uring connect request each thread is submitting (pid_tgid -> request pointer), set
/// at `io_uring_submit_req` (`uring_connect.rs`).
#[map]
pub static URING_SUBMITTING: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// io_uring connects seen at the cgroup hook, whole records (process and destination) keyed by
/// request pointer, until `io_uring_complete` gives their result.
#[map]
pub static URING_PENDING: LruHashMap<u64, ConnectEvent> = LruHashMap::with_max_entries(4096, 0);

/// Slot 0: the `HOOK_*` bits of the hooks userspace attached.
#[map]
pub static HOOKS: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn hooks() -> u32 {
    HOOKS.get(0).copied().unwrap_or(0)
}

/// Credentials before a set*id/capset call, keyed by pid_tgid.
#[map]
pub static CRED_STASH: LruHashMap<u64, CredSnap> = LruHashMap::with_max_entries(8192, 0);

/// Slot 0: how many entries were put in [`COMPAT_CONNECT`] and not yet taken by
/// `compat_sys_exit`. While it is 0, that program (run at the end of every syscall of the
/// system) returns without a read for a syscall that did not return 0 (docs/ARCHITECTURE.md,
/// "ia32").
/// An entry the LRU evicts is never taken, which leaves the count high: the exit program
/// then only takes its slower path, it never skips a pending entry. Every decrement matches
/// an increment of the same entry, so the count cannot wrap to 0 while one is pending.
#[map]
pub static COMPAT_PENDING: Array<u64> = Array::with_max_entries(1, 0);

/// Adds `delta` (wrapping: `u64::MAX` takes one away) to [`COMPAT_PENDING`].
#[inline(always)]
pub fn compat_pending_add(delta: u64) {
    if let Some(ptr) = COMPAT_PENDING.get_ptr_mut(0) {
        // SAFETY: `ptr` is the non-null pointer to the array's one u64 value, 8-byte aligned
        // and valid for the whole program run; every access to it is atomic.
        // The bpf target has no compare-and-swap, so `AtomicU64` lacks `fetch_add`; the
        // intrinsic becomes the BPF atomic add instruction (its result is unused).
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                ptr, delta,
            )
        };
    }
}

/// Whether any compat entry may be waiting for `compat_sys_exit`.
#[inline(always)]
pub fn compat_pending() -> bool {
    match COMPAT_PENDING.get_ptr(0) {
        // SAFETY: as in `compat_pending_add`. A volatile load of the aligned u64 is one 8-byte
        // load instruction, which does not tear (LLVM's BPF backend cannot select an atomic
        // load for the `generic` CPU the linker targets).
        Some(ptr) => (unsafe { core::ptr::read_volatile(ptr) }) != 0,
        None => true,
    }
}

/// Credentials before an exec, keyed by tgid.
#[map]
pub static EXEC_CRED_STASH: LruHashMap<u32, CredSnap> = LruHashMap::with_max_entries(16384, 0);

/// In-kernel noise rules: exec comm (NUL-padded) -> rule index.
#[map]
pub static NOISE_COMMS: HashMap<[u8; 16], u32> = HashMap::with_max_entries(1024, 0);

/// Per-CPU counts of execs dropped per rule; slot NOISE_RULES_MAX counts their exits.
#[map]
pub static NOISE_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NOISE_RULES_MAX + 1, 0);

/// Whether each live process's exec was dropped, so its exit follows the same decision.
#[map]
pub static EXEC_STATE: LruHashMap<u32, ExecState> = LruHashMap::with_max_entries(65536, 0);

/// Slot 0: the load-shedding level userspace is at (its CPU budget governor writes it).
#[map]
pub static SHED: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn shed_level() -> u32 {
    SHED.get(0).copied().unwrap_or(0)
}

/// Non-zero when NOISE_COMMS has entries (set by userspace).
#[unsafe(no_mangle)]
pub static NOISE_ENABLED: u32 = 0;

#[inline(always)]
pub fn noise_enabled() -> bool {
    // SAFETY: NOISE_ENABLED is a valid, aligned static; the volatile read keeps the compiler from
    // folding its zero initialiser (userspace rewrites it before load, nothing writes it after).
    unsafe { core::ptr::read_volatile(&raw const NOISE_ENABLED) != 0 }
}

#[inline(always)]
pub fn count_noise(slot: u32) {
    if let Some(ptr) = NOISE_DROPS.get_ptr_mut(slot) {
        // SAFETY: `ptr` is the non-null, aligned pointer to this CPU's u64 of the slot; only
        // programs on this CPU write it and they run with migration disabled, so at worst a program
        // preempting this one on the same CPU loses one count (an aligned u64 load and store do not
        // tear).
        unsafe { *ptr += 1 };
    }
}

/// Resolved by userspace from BTF; all zero (and `magic` unset) means "do nothing".
#[unsafe(no_mangle)]
// SAFETY: KernelOffsets is a repr(C) struct of u32 fields only, for which all-zero bytes are a
// valid value.
pub static OFFSETS: KernelOffsets = unsafe { core::mem::zeroed() };

/// Bytes waiting in the ring buffer above which a record wakes the reader at once. Below it,
/// records are submitted without a wakeup and the reader drains on its own short timer: one
/// wakeup per batch instead of one per event. Set by userspace (a quarter of the ring).
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: u64 = 0;

/// Ring-buffer submit flags for the next record: no wakeup unless enough is waiting.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    // SAFETY: WAKEUP_BYTES is a valid, aligned static; the volatile read keeps the compiler from
    // folding its zero initialiser (userspace rewrites it before load).
    let threshold = unsafe { core::ptr::read_volatile(&raw const WAKEUP_BYTES) };
    let waiting = EVENTS.query(aya_ebpf::bindings::BPF_RB_AVAIL_DATA as u64);
    if waiting >= threshold {
        aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP as u64
    } else {
        aya_ebpf::bindings::BPF_RB_NO_WAKEUP as u64
    }
}

/// Reads one field of [`OFFSETS`] so the compiler cannot constant-fold the zero initialiser.
macro_rules! off {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        // SAFETY: OFFSETS is a valid, aligned static of u32 fields; `&raw const` takes the field
        // address without a reference, and the volatile read keeps the compiler from folding the
        // zero initialiser (userspace rewrites the struct before load, nothing writes it after).
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::maps::OFFSETS.$field) };
        v
    }};
}
pub(crate) use off;

#[inline(always)]
pub fn count_drop(slot: u32) {
    if let Some(ptr) = DROPS.get_ptr_mut(slot) {
        // SAFETY: as in `count_noise`: a valid, aligned pointer to this CPU's u64, written only by
        // programs on this CPU.
        unsafe { *ptr += 1 };
    }
}
