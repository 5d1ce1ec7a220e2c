//! io_uring connects with their results. `IORING_OP_CONNECT` never passes the connect syscall;
//! the cgroup connect hook (`connect_cgroup.rs`) sees it when the kernel issues it. To pair it
//! with its completion:
//! - `io_uring_submit_req` (5.x: `io_uring_submit_sqe`) fires in the submitting thread just
//!   before a request is issued; for a connect, that thread's request pointer is kept in
//!   `URING_SUBMITTING`;
//! - the cgroup hook, running in that thread, builds the whole record (process, destination)
//!   and parks it in `URING_PENDING` under the request pointer;
//! - `io_uring_complete` fires with the request pointer and its `res`: the parked record is
//!   sent with that result.
//!
//! A connect the kernel hands to an io-wq worker runs the cgroup hook in the worker, which has
//! no submitting entry: it is reported at once with result `attempted`. Field offsets come
//! from the tracepoints' formats (`OPT_URING_REQ`; 5.10 has no `req` field, and there every
//! io_uring connect is `attempted`).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use sensor_common::{
    offsets::{OFFSETS_MAGIC, OPT_URING_REQ},
    ConnectEvent, DROP_SLOT_CONNECT, IORING_OP_CONNECT,
};

use crate::maps::{count_drop, off, EVENTS, URING_PENDING, URING_SUBMITTING};

#[inline(always)]
fn enabled() -> bool {
    off!(magic) == OFFSETS_MAGIC && off!(optional) & OPT_URING_REQ != 0
}

#[tracepoint]
pub fn uring_submit(ctx: TracePointContext) -> u32 {
    if !enabled() {
        return 0;
    }
    // SAFETY: the offsets come from this tracepoint's own format file, and the context
    // accessor bounds-checks the read.
    let Ok(opcode) = (unsafe { ctx.read_at::<u8>(off!(tp_uring_submit_opcode) as usize) }) else {
        return 0;
    };
    if opcode != IORING_OP_CONNECT {
        return 0;
    }
    // SAFETY: as above.
    if let Ok(req) = unsafe { ctx.read_at::<u64>(off!(tp_uring_submit_req) as usize) } {
        let _ = URING_SUBMITTING.insert(bpf_get_current_pid_tgid(), req, 0);
    }
    0
}

#[tracepoint]
pub fn uring_complete(ctx: TracePointContext) -> u32 {
    if !enabled() {
        return 0;
    }
    // SAFETY: as in `uring_submit`.
    let Ok(req) = (unsafe { ctx.read_at::<u64>(off!(tp_uring_complete_req) as usize) }) else {
        return 0;
    };
    // SAFETY: the record is copied out before the entry is removed.
    let Some(parked) = unsafe { URING_PENDING.get(req) }.copied() else {
        return 0;
    };
    let _ = URING_PENDING.remove(req);
    // SAFETY: as in `uring_submit`.
    let res = unsafe { ctx.read_at::<i32>(off!(tp_uring_complete_res) as usize) }
        .unwrap_or(sensor_common::CONNECT_RET_UNKNOWN);
    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count_drop(DROP_SLOT_CONNECT);
        return 0;
    };
    let ev = entry.write(parked);
    ev.ret = res;
    entry.submit(crate::maps::wakeup_flags());
    0
}
