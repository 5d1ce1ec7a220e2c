//! Compat (ia32, `int 0x80`) syscalls at the call, with their results. The `syscalls:sys_*`
//! tracepoints ignore compat syscalls on x86_64, but the `raw_syscalls:sys_enter`/`sys_exit`
//! raw tracepoints fire for every syscall, native or compat. These programs run on every
//! syscall of the system: the entry program first compares the syscall number with the i386
//! credential calls (no helper call), and both then read one word (`TS_COMPAT` in the current
//! task's `thread_info.status`, set by the kernel for the duration of a compat syscall) and
//! return for a native one.
//!
//! The exit program runs at the end of every syscall, so it first reads `COMPAT_PENDING` (an
//! inlined array lookup, no helper call): while no compat entry waits, it returns at once.
//! Otherwise, inside a compat syscall, it takes the current thread's entries. The kernel
//! skips a raw tracepoint program on a CPU where it is already running (preempted mid-run on
//! a preemptible kernel: `ebpf_syscall_hook_misses`, docs/ARCHITECTURE.md "Skipped runs"), so
//! an entry can outlive its call: a connect entry names its call's number, and one found at
//! another call's exit, or left when the thread exits (`thread_exiting`), is reported without
//! its result (`attempted`).
//!
//! - set*id / capset (the i386 16- and 32-bit families): credentials are snapshotted at entry
//!   (`COMPAT_CRED_STASH`) and compared at exit, reported like the native ones with the i386 number
//!   (`SYSCALL_NR_IA32`).
//! - connect (i386 `connect` and `socketcall(SYS_CONNECT)`): the entry arms an empty
//!   `COMPAT_CONNECT` entry for the thread, the cgroup connect hook (`connect_cgroup.rs`) fills
//!   in the destination, and the exit reports it with the syscall's return value.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};
use sensor_common::{
    offsets::{OFFSETS_MAGIC, OPT_COMPAT},
    CompatConnect, CONNECT_RET_UNKNOWN, SYSCALL_NR_IA32, VIA_SYSCALL,
};

use crate::{
    connect::emit as emit_connect,
    maps::{compat_pending, compat_pending_add, off, COMPAT_CONNECT, COMPAT_CRED_STASH},
    privilege::{cred_snapshot, emit as emit_privilege},
    task::{current_task, read, Ptr},
};

/// `TS_COMPAT` in x86's `thread_info.status` (the same bit on 5.10 to 7.x).
const TS_COMPAT: u32 = 0x0002;
/// `struct pt_regs.orig_ax` on x86_64: the syscall number (the register layout is the
/// user-visible ptrace ABI, fixed).
const PT_REGS_ORIG_AX: u32 = 15 * 8;

/// Whether the current task is in a compat syscall.
#[inline(always)]
pub fn in_compat_syscall() -> bool {
    if off!(magic) != OFFSETS_MAGIC || off!(optional) & OPT_COMPAT == 0 {
        return false;
    }
    read::<u32>(current_task(), off!(thread_status)).is_ok_and(|s| s & TS_COMPAT != 0)
}

/// The i386 credential-changing syscalls: setuid, setgid, setreuid, setregid, setresuid,
/// setresgid (16-bit ids), capset, and the 32-bit-id set*id32 calls.
#[inline(always)]
fn is_i386_cred_call(nr: u64) -> bool {
    matches!(
        nr,
        23 | 46 | 70 | 71 | 164 | 170 | 185 | 203 | 204 | 208 | 210 | 213 | 214
    )
}

/// i386 `socketcall` and `connect`.
const NR32_SOCKETCALL: u64 = 102;
const NR32_CONNECT: u64 = 362;
/// `socketcall`'s `SYS_CONNECT` (its first argument).
const SYS_CONNECT: u64 = 3;
/// `struct pt_regs.bx` on x86_64: an i386 syscall's first argument.
const PT_REGS_BX: u32 = 5 * 8;

/// `TP_PROTO(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn compat_sys_enter(ctx: RawTracePointContext) -> u32 {
    // The number first (no helper call): most syscalls stop here.
    let nr = ctx.arg::<u64>(1);
    let cred = is_i386_cred_call(nr);
    if !cred && nr != NR32_CONNECT && nr != NR32_SOCKETCALL {
        return 0;
    }
    if !in_compat_syscall() {
        return 0;
    }
    let key = bpf_get_current_pid_tgid();
    if cred {
        if let Ok(snap) = cred_snapshot(current_task()) {
            if COMPAT_CRED_STASH.insert(key, snap, 0).is_ok() {
                compat_pending_add(1);
            }
        }
        return 0;
    }
    if nr == NR32_SOCKETCALL {
        let regs = ctx.arg::<u64>(0) as Ptr;
        if read::<u64>(regs, PT_REGS_BX).is_ok_and(|call| call as u32 as u64 != SYS_CONNECT) {
            return 0;
        }
    }
    // Armed with the call's number: the cgroup hook fills in the destination (family 0 until
    // then), and the exit reports it, with the result only if it is this call's own exit.
    if COMPAT_CONNECT
        .insert(key, CompatConnect::armed(nr as u16), 0)
        .is_ok()
    {
        compat_pending_add(1);
    }
    0
}

/// `TP_PROTO(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn compat_sys_exit(ctx: RawTracePointContext) -> u32 {
    if !compat_pending() || !in_compat_syscall() {
        return 0;
    }
    let key = bpf_get_current_pid_tgid();
    let ret = ctx.arg::<u64>(1) as i64;
    // SAFETY: the map value is copied out at once; entries are only written by this thread's
    // own programs (keyed by its pid_tgid).
    if let Some(c) = unsafe { COMPAT_CONNECT.get(key) }.copied() {
        let _ = COMPAT_CONNECT.remove(key);
        compat_pending_add(u64::MAX);
        // Still armed (family 0): the call failed before the cgroup hook (bad fd or address).
        if c.stash.family != 0 {
            // Put in another call whose exit the kernel skipped: that call's result is lost.
            let regs = ctx.arg::<u64>(0) as Ptr;
            let nr = read::<u64>(regs, PT_REGS_ORIG_AX).unwrap_or(0);
            let ret = if c.nr != 0 && u64::from(c.nr) != nr {
                CONNECT_RET_UNKNOWN
            } else {
                ret as i32
            };
            emit_connect(current_task(), &c.stash, c.sock_type, ret);
        }
        return 0;
    }
    // SAFETY: as above.
    let Some(old) = unsafe { COMPAT_CRED_STASH.get(key) }.copied() else {
        return 0;
    };
    let _ = COMPAT_CRED_STASH.remove(key);
    compat_pending_add(u64::MAX);
    let task = current_task();
    let Ok(new) = cred_snapshot(task) else {
        return 0;
    };
    if new != old {
        let regs = ctx.arg::<u64>(0) as Ptr;
        let nr = read::<u64>(regs, PT_REGS_ORIG_AX).unwrap_or(0) as u32;
        emit_privilege(task, old, new, VIA_SYSCALL, nr | SYSCALL_NR_IA32);
        crate::cred_watch::remember((key >> 32) as u32, &new);
    }
    0
}

/// The current thread is exiting (`sched_process_exit`, every thread): an entry it left (the
/// kernel skipped its call's exit run, and no later compat exit took it) goes now, so none
/// waits for ever and the count comes back down. A connect is reported without its result (`attempted`); a credential
/// change, if any, is reported at the process's exit by `cred_watch`.
#[inline(always)]
pub fn thread_exiting(task: Ptr) {
    if !compat_pending() {
        return;
    }
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once (as in `compat_sys_exit`).
    if let Some(c) = unsafe { COMPAT_CONNECT.get(key) }.copied() {
        if COMPAT_CONNECT.remove(key).is_ok() {
            compat_pending_add(u64::MAX);
        }
        if c.stash.family != 0 {
            emit_connect(task, &c.stash, c.sock_type, CONNECT_RET_UNKNOWN);
        }
    }
    if COMPAT_CRED_STASH.remove(key).is_ok() {
        compat_pending_add(u64::MAX);
    }
}
