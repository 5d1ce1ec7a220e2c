//! `sched/sched_process_exit`: emitted once per process, by the last thread of the group (each
//! thread's exit first hands back its compat entries, `compat_syscall::thread_exiting`).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{offsets::OFFSETS_MAGIC, ExitEvent, ProcessInfo, DROP_SLOT_EXIT, KIND_EXIT};

use crate::{
    maps::{count_drop, off, EVENTS},
    task::{current_task, fill_process, header, read, read_ptr},
};

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    match try_exit(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_exit(_ctx: &TracePointContext) -> Result<u32, u32> {
    if off!(magic) != OFFSETS_MAGIC {
        return Ok(0);
    }
    let task = current_task();
    crate::compat_syscall::thread_exiting(task);
    // do_exit() decrements signal->live before this tracepoint: zero means the group is dead.
    let signal = read_ptr(task, off!(task_signal)).map_err(|_| 0u32)?;
    let live = read::<i32>(signal, off!(signal_live)).map_err(|_| 0u32)?;
    if live != 0 {
        return Ok(0);
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let creds = crate::privilege::cred_snapshot(task).ok();
    if let Some(now) = creds {
        crate::cred_watch::check(task, tgid, true, now);
    }
    if crate::maps::noise_enabled() {
        // SAFETY: the value (plain integers) is copied out at once; the element memory of this
        // preallocated map stays valid while the program runs, so another CPU or userspace changing
        // or deleting the entry can at worst give a stale copy, never an invalid one.
        if let Some(state) = unsafe { crate::maps::EXEC_STATE.get(tgid) }.copied() {
            let _ = crate::maps::EXEC_STATE.remove(tgid);
            let start = read_ptr(task, off!(task_group_leader))
                .and_then(|l| read::<u64>(l, off!(task_start_boottime)))
                .unwrap_or(0);
            if state.dropped != 0 && state.start_boottime_ns == start {
                crate::maps::count_noise(sensor_common::NOISE_RULES_MAX);
                return Ok(0);
            }
        }
    }
    let exit_code = read::<u32>(task, off!(task_exit_code)).unwrap_or(0);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count_drop(DROP_SLOT_EXIT);
        return Ok(0);
    };
    let ev = entry.write(ExitEvent {
        header: header(KIND_EXIT, core::mem::size_of::<ExitEvent>() as u32),
        process: ProcessInfo::zeroed(),
        exit_code,
        _pad: 0,
    });
    fill_process(&mut ev.process, task, creds.as_ref());
    entry.submit(crate::maps::wakeup_flags());
    Ok(0)
}
