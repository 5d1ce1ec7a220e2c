//! Credential changes no syscall tracepoint sees: the `syscalls:sys_enter_*` tracepoints ignore
//! compat (ia32, `int 0x80`) syscalls, so a 32-bit `setuid32` leaves no record there. Every
//! process's credentials are remembered at each exec and each reported change; at its next
//! exec and at its exit they are compared, and a difference nobody reported is emitted
//! (`VIA_OBSERVED`). Such a change is seen late (at that exec or exit), never missed.
//!
//! A new process starts with its parent's credentials (`sched_process_fork` remembers them for
//! it), and userspace fills in the processes that were there before the programs were
//! attached, from /proc (`sensor/src/sources/ebpf/last_creds.rs`). The ia32 exit program
//! (`compat_syscall.rs`) takes its "before" from here too.
use aya_ebpf::{macros::map, maps::LruHashMap};
use sensor_common::{CredSnap, VIA_OBSERVED};

use crate::{privilege::emit, task::Ptr};

/// Last known credentials per process (tgid). Userspace finds it by this name.
#[map]
static LAST_CREDS: LruHashMap<u32, CredSnap> = LruHashMap::with_max_entries(65536, 0);

/// Records `snap` as the credentials of `tgid` that the sensor has accounted for.
#[inline(always)]
pub fn remember(tgid: u32, snap: &CredSnap) {
    let _ = LAST_CREDS.insert(tgid, *snap, 0);
}

/// The last known credentials of `tgid`, if any.
#[inline(always)]
pub fn last(tgid: u32) -> Option<CredSnap> {
    // SAFETY: as in `check`: the value is copied out at once.
    unsafe { LAST_CREDS.get(tgid) }.copied()
}

/// Emits a change from the last known credentials of `tgid` to `now` (the task's current
/// ones, from `cred_snapshot`), if any. `forget` drops the entry (the process is exiting).
#[inline(always)]
pub fn check(task: Ptr, tgid: u32, forget: bool, now: CredSnap) {
    // SAFETY: the value (plain integers) is copied out at once; the element memory of this
    // preallocated map stays valid while the program runs, so another CPU or userspace changing or
    // deleting the entry can at worst give a stale copy, never an invalid one.
    if let Some(last) = unsafe { LAST_CREDS.get(tgid) }.copied() {
        if last != now {
            emit(task, last, now, VIA_OBSERVED, 0);
        }
    }
    if forget {
        let _ = LAST_CREDS.remove(tgid);
    } else {
        remember(tgid, &now);
    }
}
