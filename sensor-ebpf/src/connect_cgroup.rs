//! connect on AF_INET/AF_INET6 sockets at the cgroup `connect4`/`connect6` hooks of the cgroup
//! v2 root, which every connect passes in the kernel whatever the entry: the native syscall,
//! the ia32 entry (`int 0x80`, `socketcall`) and io_uring's `IORING_OP_CONNECT`.
//!
//! A native connect(2) is reported by the syscall tracepoints (`connect.rs`), which also see its
//! result; it has a stash entry by the time this hook runs, and is skipped here. A connect
//! inside a compat syscall (ia32 `connect`, `socketcall`) is parked for the
//! `raw_syscalls:sys_exit` program (`compat_syscall.rs`), and an io_uring connect issued by its
//! submitting thread is parked for `io_uring_complete` (`uring_connect.rs`): both are reported
//! there with their real result. Any other connect (those hooks not attached, an io_uring
//! connect run by an io-wq worker) is reported here, before the connection is made: its result
//! is not known at this layer (`CONNECT_RET_UNKNOWN`, shown as `attempted`).
//!
//! The programs always return 1: they observe and never deny a connect.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::cgroup_sock_addr, programs::SockAddrContext,
};
use sensor_common::{
    offsets::OFFSETS_MAGIC, CompatConnect, ConnectStash, CONNECT_RET_UNKNOWN,
    DROP_SLOT_CONNECT_STASH, DROP_SLOT_SHED_CONNECT, HOOK_COMPAT_EXIT, HOOK_URING,
    SHED_LEVEL_KERNEL_CONNECT,
};

use crate::{
    compat_syscall::{in_compat_syscall, park_connect},
    connect::{emit, record, AF_INET, AF_INET6},
    maps::{count_drop, hooks, off, shed_level, CONNECT_STASH, URING_PENDING, URING_SUBMITTING},
    task::{current_task, fill_process},
};

const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn cgroup_connect4(ctx: SockAddrContext) -> i32 {
    observe(&ctx, AF_INET);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn cgroup_connect6(ctx: SockAddrContext) -> i32 {
    observe(&ctx, AF_INET6);
    ALLOW
}

#[inline(always)]
fn observe(ctx: &SockAddrContext, family: u16) {
    if off!(magic) != OFFSETS_MAGIC {
        return;
    }
    // A native connect(2) in progress on this thread: its exit tracepoint reports it.
    // SAFETY: only whether an entry exists is used; the reference is dropped at once and never read
    // through.
    if unsafe { CONNECT_STASH.get(bpf_get_current_pid_tgid()) }.is_some() {
        return;
    }
    if shed_level() >= SHED_LEVEL_KERNEL_CONNECT {
        count_drop(DROP_SLOT_SHED_CONNECT);
        return;
    }
    let sa = ctx.sock_addr;
    // The context's fields are rewritten by the verifier into reads of the kernel's copy; each
    // must be read whole, as a u32.
    // SAFETY: `sa` is the kernel's bpf_sock_addr context pointer, valid for this program run; `&raw
    // const` takes the field addresses without creating references, and each read is a whole,
    // aligned u32, which the verifier rewrites into a load from the kernel's copy.
    let (port, sock_type) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*sa).user_port),
            core::ptr::read_volatile(&raw const (*sa).type_),
        )
    };
    let mut stash = ConnectStash {
        family,
        dst_port: u16::from_be(port as u16),
        fd: -1,
        dst_addr: [0; 16],
    };
    if family == AF_INET {
        // SAFETY: as above (user_ip4, one u32).
        let ip = unsafe { core::ptr::read_volatile(&raw const (*sa).user_ip4) };
        stash.dst_addr[..4].copy_from_slice(&ip.to_ne_bytes());
    } else {
        // SAFETY: as above (user_ip6, four u32 read one by one).
        let words = unsafe {
            [
                core::ptr::read_volatile(&raw const (*sa).user_ip6[0]),
                core::ptr::read_volatile(&raw const (*sa).user_ip6[1]),
                core::ptr::read_volatile(&raw const (*sa).user_ip6[2]),
                core::ptr::read_volatile(&raw const (*sa).user_ip6[3]),
            ]
        };
        for (i, w) in words.iter().enumerate() {
            stash.dst_addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    }
    let sock_type = sock_type as u16;
    let key = bpf_get_current_pid_tgid();
    let hooks = hooks();
    // An ia32 connect: parked for its syscall's exit, which knows the result.
    if hooks & HOOK_COMPAT_EXIT != 0 && in_compat_syscall() {
        let c = CompatConnect {
            stash,
            sock_type,
            _pad: [0; 3],
        };
        if park_connect(current_task(), &c) {
            return;
        }
        count_drop(DROP_SLOT_CONNECT_STASH);
    } else if hooks & HOOK_URING != 0 {
        // SAFETY: the value is copied out at once.
        if let Some(req) = unsafe { URING_SUBMITTING.get(key) }.copied() {
            let _ = URING_SUBMITTING.remove(key);
            if park_uring(req, &stash, sock_type) {
                return;
            }
            count_drop(DROP_SLOT_CONNECT_STASH);
        }
    }
    emit(current_task(), &stash, sock_type, CONNECT_RET_UNKNOWN);
}

/// Parks the whole record of an io_uring connect (this thread is its submitter) until its
/// completion. False when the map refused it.
#[inline(always)]
fn park_uring(req: u64, stash: &ConnectStash, sock_type: u16) -> bool {
    let mut ev = record(stash, sock_type, CONNECT_RET_UNKNOWN);
    fill_process(&mut ev.process, current_task(), None);
    URING_PENDING.insert(req, ev, 0).is_ok()
}
