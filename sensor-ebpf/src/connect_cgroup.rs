//! connect on AF_INET/AF_INET6 sockets at the cgroup `connect4`/`connect6` hooks of the cgroup
//! v2 root, which every connect passes in the kernel whatever the entry: the native syscall,
//! the ia32 entry (`int 0x80`, `socketcall`) and io_uring's `IORING_OP_CONNECT`.
//!
//! A native connect(2) is reported by the syscall tracepoints (`connect.rs`), which also see its
//! result; it has a stash entry by the time this hook runs, and is skipped here. Any other
//! connect is reported here, before the connection is made: its result is not known at this
//! layer (`CONNECT_RET_UNKNOWN`, shown as `attempted`).
//!
//! The programs always return 1: they observe and never deny a connect.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::cgroup_sock_addr, programs::SockAddrContext,
};
use sensor_common::{
    offsets::OFFSETS_MAGIC, ConnectStash, CONNECT_RET_UNKNOWN, DROP_SLOT_SHED_CONNECT,
    SHED_LEVEL_KERNEL_CONNECT,
};

use crate::{
    connect::{emit, AF_INET, AF_INET6},
    maps::{count_drop, off, shed_level, CONNECT_STASH},
    task::current_task,
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
        let ip = unsafe { core::ptr::read_volatile(&raw const (*sa).user_ip4) };
        stash.dst_addr[..4].copy_from_slice(&ip.to_ne_bytes());
    } else {
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
    emit(
        current_task(),
        &stash,
        sock_type as u16,
        CONNECT_RET_UNKNOWN,
    );
}
