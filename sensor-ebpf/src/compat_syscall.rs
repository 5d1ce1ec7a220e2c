//! Compat (ia32, `int 0x80`) syscalls at the call, with their results. The `syscalls:sys_*`
//! tracepoints ignore compat syscalls on x86_64, but the `raw_syscalls:sys_exit` raw
//! tracepoint fires at the end of every syscall, native or compat. Only that half of the pair
//! is attached: each raw tracepoint program costs a dispatch on every syscall of the host, and
//! nothing needs the entry (docs/ARCHITECTURE.md, "ia32").
//!
//! The program first looks at the return value and at `COMPAT_PENDING` (an inlined array
//! lookup, no helper call): a credential call changes something only when it returns 0, and a
//! connect has an entry waiting. Anything else returns at once. Then it reads the syscall
//! number (`orig_ax`) and, unless a connect waits, returns unless it is an i386 credential
//! call's. Last it reads one word (`TS_COMPAT` in the current task's `thread_info.status`,
//! set by the kernel for the duration of a compat syscall) and returns for a native syscall.
//!
//! - set*id / capset (the i386 16- and 32-bit families) that returned 0: the task's
//!   credentials are compared with the process's last known ones (`cred_watch`, kept at every
//!   fork, exec and reported change, and filled in from /proc for the processes that were
//!   there before the sensor) and a difference is reported like a native change, with the i386
//!   number (`SYSCALL_NR_IA32`).
//! - connect (i386 `connect` and `socketcall(SYS_CONNECT)`): the cgroup connect hook
//!   (`connect_cgroup.rs`) parks the destination for the thread while it is in a compat
//!   syscall, and this exit reports it with the syscall's return value. The kernel skips a raw
//!   tracepoint program on a CPU where it is already running (preempted mid-run on a
//!   preemptible kernel: `ebpf_syscall_hook_misses`, docs/ARCHITECTURE.md "Skipped runs"), so
//!   an entry can outlive its call: one found at the exit of a call that is not a connect, or
//!   left when the thread exits (`thread_exiting`), is reported without its result
//!   (`attempted`).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};
use sensor_common::{
    offsets::{OFFSETS_MAGIC, OPT_COMPAT},
    CompatConnect, CONNECT_RET_UNKNOWN, DROP_SLOT_CRED_UNKNOWN, SYSCALL_NR_IA32, VIA_SYSCALL,
};

use crate::{
    connect::emit as emit_connect,
    maps::{compat_pending, compat_pending_add, count_drop, off, COMPAT_CONNECT},
    privilege::{cred_snapshot, emit as emit_privilege},
    task::{current_task, read, Ptr},
};

/// `TS_COMPAT` in x86's `thread_info.status` (the same bit on 5.10 to 7.x).
const TS_COMPAT: u32 = 0x0002;
/// `struct pt_regs.orig_ax` on x86_64: the syscall number (the register layout is the
/// user-visible ptrace ABI, fixed).
const PT_REGS_ORIG_AX: u32 = 15 * 8;
/// `struct pt_regs.bx` on x86_64: an i386 syscall's first argument.
const PT_REGS_BX: u32 = 5 * 8;

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

/// Whether the compat call ending now (`nr`, registers at `regs`) is a connect: then a parked
/// destination is its own, and the return value its result.
#[inline(always)]
fn is_connect_call(nr: u64, regs: Ptr) -> bool {
    nr == NR32_CONNECT
        || (nr == NR32_SOCKETCALL
            && read::<u64>(regs, PT_REGS_BX).is_ok_and(|call| call as u32 as u64 == SYS_CONNECT))
}

/// `TP_PROTO(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn compat_sys_exit(ctx: RawTracePointContext) -> u32 {
    // Neither a successful call nor a waiting connect: most syscalls stop here, without a
    // helper call.
    let ret = ctx.arg::<u64>(1) as i64;
    let pending = compat_pending();
    if ret != 0 && !pending {
        return 0;
    }
    // Then the number (one read): a native call that returned 0 rarely has the number of an
    // i386 credential call.
    let regs = ctx.arg::<u64>(0) as Ptr;
    let Ok(nr) = read::<u64>(regs, PT_REGS_ORIG_AX) else {
        return 0;
    };
    if !pending && !is_i386_cred_call(nr) {
        return 0;
    }
    if !in_compat_syscall() {
        return 0;
    }
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the map value is copied out at once; entries are only written by this thread's
    // own programs (keyed by its pid_tgid).
    if let Some(c) = unsafe { COMPAT_CONNECT.get(key) }.copied() {
        let _ = COMPAT_CONNECT.remove(key);
        compat_pending_add(u64::MAX);
        // A connect's own exit gives its result; one parked by a call whose exit the kernel
        // skipped has lost it.
        let ret = if is_connect_call(nr, regs) {
            ret as i32
        } else {
            CONNECT_RET_UNKNOWN
        };
        emit_connect(current_task(), &c.stash, c.sock_type, ret);
    }
    if ret != 0 || !is_i386_cred_call(nr) {
        return 0;
    }
    let task = current_task();
    let Ok(new) = cred_snapshot(task) else {
        return 0;
    };
    let tgid = (key >> 32) as u32;
    match crate::cred_watch::last(tgid) {
        Some(old) if old != new => {
            emit_privilege(task, old, new, VIA_SYSCALL, nr as u32 | SYSCALL_NR_IA32);
            crate::cred_watch::remember(tgid, &new);
        }
        Some(_) => {}
        // Nothing known of this process (its entry evicted): the change, if any, cannot be
        // told; counted, and known from now on.
        None => {
            count_drop(DROP_SLOT_CRED_UNKNOWN);
            crate::cred_watch::remember(tgid, &new);
        }
    }
    0
}

/// Parks a connect seen at the cgroup hook inside a compat syscall for that syscall's exit.
/// One left by an earlier call (its exit skipped) is reported first, without its result.
/// False when the map refused it.
#[inline(always)]
pub fn park_connect(task: Ptr, c: &CompatConnect) -> bool {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: as in `compat_sys_exit`.
    if let Some(left) = unsafe { COMPAT_CONNECT.get(key) }.copied() {
        emit_connect(task, &left.stash, left.sock_type, CONNECT_RET_UNKNOWN);
        if COMPAT_CONNECT.remove(key).is_ok() {
            compat_pending_add(u64::MAX);
        }
    }
    if COMPAT_CONNECT.insert(key, *c, 0).is_ok() {
        compat_pending_add(1);
        return true;
    }
    false
}

/// The current thread is exiting (`sched_process_exit`, every thread): a connect it left (the
/// kernel skipped its call's exit run) goes now, without its result (`attempted`), so none
/// waits for ever and the count comes back down.
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
        emit_connect(task, &c.stash, c.sock_type, CONNECT_RET_UNKNOWN);
    }
}
