//! Credential changes at `commit_creds`, which every path that changes a task's credentials
//! goes through: native and ia32 set*id/capset calls, execs of set-id or file-capability
//! binaries, and anything else that commits new credentials. The new `struct cred` is compared
//! with the task's current one before it is installed.
//!
//! The native set*id/capset syscall tracepoints only leave the call number behind (so the
//! event can name it), and a kprobe on `begin_new_exec` marks an exec in progress.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{kprobe, map, tracepoint},
    maps::LruHashMap,
    programs::{ProbeContext, TracePointContext},
};
use sensor_common::{offsets::OFFSETS_MAGIC, CredSnap, VIA_COMMIT, VIA_EXEC, VIA_SYSCALL};

use crate::{
    maps::off,
    privilege::{cred_snapshot, emit},
    task::{current_task, read, Ptr},
};

/// The native set*id/capset call in progress on a thread: pid_tgid -> syscall number.
#[map]
static CRED_CALL: LruHashMap<u64, u32> = LruHashMap::with_max_entries(8192, 0);

/// Processes between `begin_new_exec` and its `commit_creds`, by tgid (the exec'ing thread
/// may take over the leader's pid in between).
#[map]
static EXEC_PENDING: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

const SYSCALL_NR: usize = 8;

/// `sys_enter_set*id` / `sys_enter_capset`: remembers which call this thread is in.
#[tracepoint]
pub fn cred_call_enter(ctx: TracePointContext) -> u32 {
    let nr: i32 = unsafe { ctx.read_at(SYSCALL_NR) }.unwrap_or(-1);
    if nr >= 0 {
        let _ = CRED_CALL.insert(bpf_get_current_pid_tgid(), nr as u32, 0);
    }
    0
}

/// `sys_exit_set*id` / `sys_exit_capset`: the call is over (also when it failed).
#[tracepoint]
pub fn cred_call_exit(ctx: TracePointContext) -> u32 {
    let _ = &ctx;
    let _ = CRED_CALL.remove(bpf_get_current_pid_tgid());
    0
}

#[kprobe]
pub fn begin_new_exec(ctx: ProbeContext) -> u32 {
    let _ = &ctx;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = EXEC_PENDING.insert(tgid, 1, 0);
    0
}

/// `void commit_creds(struct cred *new)`.
#[kprobe]
pub fn commit_creds(ctx: ProbeContext) -> u32 {
    if off!(magic) != OFFSETS_MAGIC {
        return 0;
    }
    let Some(new_cred) = ctx.arg::<u64>(0) else {
        return 0;
    };
    let task = current_task();
    let (Ok(old), Ok(new)) = (cred_snapshot(task), snapshot_of(new_cred as Ptr)) else {
        return 0;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let exec = unsafe { EXEC_PENDING.get(tgid) }.is_some();
    if exec {
        let _ = EXEC_PENDING.remove(tgid);
    }
    if new == old {
        return 0;
    }
    if exec {
        // As before: an exec is reported when the effective ids or capabilities change.
        if new.euid != old.euid || new.egid != old.egid || new.cap_effective != old.cap_effective
        {
            emit(task, old, new, VIA_EXEC, 0);
        }
        return 0;
    }
    match unsafe { CRED_CALL.get(pid_tgid) }.copied() {
        Some(nr) => emit(task, old, new, VIA_SYSCALL, nr),
        None => emit(task, old, new, VIA_COMMIT, 0),
    }
    0
}

#[inline(always)]
fn snapshot_of(cred: Ptr) -> Result<CredSnap, i32> {
    Ok(CredSnap {
        uid: read::<u32>(cred, off!(cred_uid))?,
        euid: read::<u32>(cred, off!(cred_euid))?,
        gid: read::<u32>(cred, off!(cred_gid))?,
        egid: read::<u32>(cred, off!(cred_egid))?,
        cap_effective: read::<u64>(cred, off!(cred_cap_effective))?,
    })
}
