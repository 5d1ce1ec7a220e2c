//! Credential changes: set*id/capset calls (syscall enter/exit tracepoints, one program each
//! attached to every such syscall) and execs that change the effective ids or capabilities
//! (set-uid/set-gid/file-capability binaries).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use sensor_common::{
    offsets::OFFSETS_MAGIC, CredSnap, PrivilegeEvent, ProcessInfo, DROP_SLOT_PRIVILEGE,
    KIND_PRIVILEGE, VIA_EXEC, VIA_SYSCALL,
};

use crate::{
    maps::{count_drop, off, CRED_STASH, EVENTS, EXEC_CRED_STASH},
    task::{current_task, fill_process, header, read, read_ptr, Ptr},
};

const SYSCALL_NR: usize = 8;
const SYSCALL_RET: usize = 16;

#[inline(always)]
pub fn cred_snapshot(task: Ptr) -> Result<CredSnap, i32> {
    let cred = read_ptr(task, off!(task_cred))?;
    let uid = off!(cred_uid);
    // The usual `struct cred` layout (5.10 to 7.x): uid, gid, suid, sgid, euid, egid, fsuid,
    // fsgid, securebits, then the capability sets, cap_effective 52 (u32 pairs) or 56 (u64)
    // bytes after uid. There all five fields lie in the 64 bytes from uid: one read.
    if off!(cred_gid) == uid.wrapping_add(4)
        && off!(cred_euid) == uid.wrapping_add(16)
        && off!(cred_egid) == uid.wrapping_add(20)
    {
        let cap = off!(cred_cap_effective).wrapping_sub(uid);
        if cap == 52 || cap == 56 {
            let w = read::<[u32; 16]>(cred, uid)?;
            let (lo, hi) = if cap == 52 {
                (w[13], w[14])
            } else {
                (w[14], w[15])
            };
            return Ok(CredSnap {
                uid: w[0],
                euid: w[4],
                gid: w[1],
                egid: w[5],
                cap_effective: lo as u64 | (hi as u64) << 32,
            });
        }
    }
    Ok(CredSnap {
        uid: read::<u32>(cred, off!(cred_uid))?,
        euid: read::<u32>(cred, off!(cred_euid))?,
        gid: read::<u32>(cred, off!(cred_gid))?,
        egid: read::<u32>(cred, off!(cred_egid))?,
        cap_effective: read::<u64>(cred, off!(cred_cap_effective))?,
    })
}

#[tracepoint]
pub fn cred_change_enter(ctx: TracePointContext) -> u32 {
    if off!(magic) != OFFSETS_MAGIC {
        return 0;
    }
    let _ = &ctx;
    if let Ok(snap) = cred_snapshot(current_task()) {
        let _ = CRED_STASH.insert(bpf_get_current_pid_tgid(), snap, 0);
    }
    0
}

#[tracepoint]
pub fn cred_change_exit(ctx: TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the snapshot (plain integers) is copied out (`*s`) at once; the element memory of
    // this preallocated map stays valid while the program runs, so a concurrent change can at worst
    // give a stale copy.
    let old = match unsafe { CRED_STASH.get(key) } {
        Some(s) => *s,
        None => return 0,
    };
    let _ = CRED_STASH.remove(key);
    // SAFETY: read_at copies the return value at its offset in the syscalls:sys_exit_* format out
    // of the tracepoint record with a bounds-checked probe read (a bad offset is an Err, never a
    // fault); an integer has no invalid values.
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_RET) }.unwrap_or(-1);
    if ret != 0 {
        return 0;
    }
    // SAFETY: as above (the syscall number, at its offset in the same format).
    let nr: i32 = unsafe { ctx.read_at(SYSCALL_NR) }.unwrap_or(-1);
    let task = current_task();
    let Ok(new) = cred_snapshot(task) else {
        return 0;
    };
    if new != old {
        emit(task, old, new, VIA_SYSCALL, nr as u32);
        crate::cred_watch::remember((key >> 32) as u32, &new);
    }
    0
}

/// Remembers the credentials before an exec (keyed by tgid: the exec'ing thread becomes the
/// leader).
#[tracepoint]
pub fn exec_cred_enter(ctx: TracePointContext) -> u32 {
    if off!(magic) != OFFSETS_MAGIC {
        return 0;
    }
    let _ = &ctx;
    if let Ok(snap) = cred_snapshot(current_task()) {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let _ = EXEC_CRED_STASH.insert(tgid, snap, 0);
    }
    0
}

/// Called from the exec program once the new credentials are committed, with them (`now`:
/// `cred_snapshot` of the task; `None` when it failed). A native execve left the credentials
/// before it in a stash; an exec that no syscall tracepoint saw (ia32) is compared with the
/// process's last known credentials instead.
#[inline(always)]
pub fn check_exec_creds(task: Ptr, tgid: u32, now: Option<CredSnap>) {
    // SAFETY: as in `cred_change_exit`: the snapshot is copied out at once.
    let old = match unsafe { EXEC_CRED_STASH.get(tgid) } {
        Some(s) => *s,
        None => {
            if let Some(now) = now {
                crate::cred_watch::check(task, tgid, false, now);
            }
            return;
        }
    };
    let _ = EXEC_CRED_STASH.remove(tgid);
    let Some(new) = now else { return };
    if new.euid != old.euid || new.egid != old.egid || new.cap_effective != old.cap_effective {
        emit(task, old, new, VIA_EXEC, 0);
    }
    crate::cred_watch::remember(tgid, &new);
}

/// Writes one privilege record; the process's ids are the new ones (at `commit_creds` the
/// task still holds the old credentials).
#[inline(always)]
pub fn emit(task: Ptr, old: CredSnap, new: CredSnap, via: u32, nr: u32) {
    let Some(mut entry) = EVENTS.reserve::<PrivilegeEvent>(0) else {
        count_drop(DROP_SLOT_PRIVILEGE);
        return;
    };
    let ev = entry.write(PrivilegeEvent {
        header: header(
            KIND_PRIVILEGE,
            core::mem::size_of::<PrivilegeEvent>() as u32,
        ),
        process: ProcessInfo::zeroed(),
        old,
        new,
        via,
        syscall_nr: nr,
    });
    fill_process(&mut ev.process, task, Some(&new));
    ev.process.uid = new.uid;
    ev.process.euid = new.euid;
    ev.process.gid = new.gid;
    ev.process.egid = new.egid;
    entry.submit(crate::maps::wakeup_flags());
}
