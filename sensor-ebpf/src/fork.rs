//! `sched_process_fork` (raw tracepoint: it hands over the child's `task_struct`): one record
//! per new process, so userspace knows processes that never exec (subshells, pre-forked
//! servers, daemons' workers). Thread creation is skipped: a thread is not a new process.
use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use sensor_common::{
    offsets::OFFSETS_MAGIC, EventHeader, ForkEvent, ProcessInfo, DROP_SLOT_FORK, FLAG_READ_ERROR,
    KIND_FORK,
};

use crate::{
    maps::{count_drop, off, EVENTS},
    task::{current_task, fill_process, parent_and_leader, read, Ptr},
};

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    match try_fork(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_fork(ctx: &RawTracePointContext) -> Result<u32, u32> {
    if off!(magic) != OFFSETS_MAGIC {
        return Ok(0);
    }
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    let child: Ptr = ctx.arg::<u64>(1) as Ptr;
    // A thread shares its group leader; only a new thread group is a new process.
    let (parent, leader) = parent_and_leader(child);
    let leader = leader.map_err(|_| 0u32)?;
    if leader != child {
        return Ok(0);
    }
    let tgid = read::<u32>(child, off!(task_tgid)).map_err(|_| 0u32)?;
    // The child runs with a copy of the parent's credentials, comm, tty and cgroups: they are
    // read from the current task (the parent). Its credentials are known from its first
    // instant (`cred_watch`), whether or not the ring takes the record.
    let parent_task = current_task();
    let creds = crate::privilege::cred_snapshot(parent_task).ok();
    if let Some(creds) = &creds {
        crate::cred_watch::remember(tgid, creds);
    }
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        count_drop(DROP_SLOT_FORK);
        return Ok(0);
    };
    let ev = entry.write(ForkEvent {
        header: EventHeader {
            kind: KIND_FORK,
            size: core::mem::size_of::<ForkEvent>() as u32,
            // SAFETY: a BPF helper without arguments or preconditions.
            ktime_ns: unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() },
            pid: tgid,
            tgid,
        },
        process: ProcessInfo::zeroed(),
    });
    // The parent's identity, then the child's own.
    fill_process(&mut ev.process, parent_task, creds.as_ref());
    match parent.and_then(|parent| read::<u32>(parent, off!(task_tgid))) {
        Ok(ppid) => ev.process.ppid = ppid,
        Err(_) => ev.process.flags |= FLAG_READ_ERROR,
    }
    match read::<u64>(child, off!(task_start_boottime)) {
        Ok(start) => ev.process.start_boottime_ns = start,
        Err(_) => {
            ev.process.start_boottime_ns = 0;
            ev.process.flags |= FLAG_READ_ERROR;
        }
    }
    entry.submit(crate::maps::wakeup_flags());
    Ok(0)
}
