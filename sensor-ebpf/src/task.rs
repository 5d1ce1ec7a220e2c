//! Reads of `task_struct` and friends through BTF-resolved offsets.
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_task, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    bpf_probe_read_kernel_str_bytes,
};
use sensor_common::{
    offsets::{OPT_CGROUP_V1, OPT_LOGINUID, OPT_SESSIONID},
    CredSnap, EventHeader, ProcessInfo, FLAG_NO_LOGINUID, FLAG_READ_ERROR,
};

use crate::maps::off;

pub type Ptr = *const u8;

/// Reads a `T` at `base + off` from kernel memory.
#[inline(always)]
pub fn read<T>(base: Ptr, off: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel copies size_of::<T>() bytes from a kernel address, returning an
    // error on a fault instead of faulting; callers use it for integers and raw pointers only, for
    // which any bytes are a valid value.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T) }
}

#[inline(always)]
pub fn read_ptr(base: Ptr, off: u32) -> Result<Ptr, i32> {
    read::<usize>(base, off).map(|p| p as Ptr)
}

/// The two pointers at `base + first` and `base + second`: one probe read where the second
/// directly follows the first (the usual layout of `struct path` and `struct mount`), two
/// otherwise. Each helper call costs more than the bytes it copies.
#[inline(always)]
pub fn read_ptr_pair(base: Ptr, first: u32, second: u32) -> Result<(Ptr, Ptr), i32> {
    if second == first.wrapping_add(8) {
        let w = read::<[usize; 2]>(base, first)?;
        return Ok((w[0] as Ptr, w[1] as Ptr));
    }
    Ok((read_ptr(base, first)?, read_ptr(base, second)?))
}

/// `task->real_parent` and `task->group_leader`. They lie 48 bytes apart on 5.10 to 7.x
/// (`parent`, `children` and `sibling` between them): there one probe read takes both.
#[inline(always)]
pub fn parent_and_leader(task: Ptr) -> (Result<Ptr, i32>, Result<Ptr, i32>) {
    let (parent, leader) = (off!(task_real_parent), off!(task_group_leader));
    if leader == parent.wrapping_add(48) {
        return match read::<[usize; 7]>(task, parent) {
            Ok(w) => (Ok(w[0] as Ptr), Ok(w[6] as Ptr)),
            Err(e) => (Err(e), Err(e)),
        };
    }
    (read_ptr(task, parent), read_ptr(task, leader))
}

#[inline(always)]
pub fn current_task() -> Ptr {
    // SAFETY: a BPF helper without arguments or preconditions; the task address is only used
    // through probe reads.
    unsafe { bpf_get_current_task() as Ptr }
}

#[inline(always)]
pub fn header(kind: u32, size: u32) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind,
        size,
        // SAFETY: a BPF helper without arguments or preconditions.
        ktime_ns: unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() },
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
    }
}

/// The task's cgroup id: the v2 id, or on a hybrid / v1 host (`OPT_CGROUP_V1`) the id of its
/// cgroup in the chosen v1 controller's hierarchy (0 when a read fails).
#[inline(always)]
pub fn cgroup_id(task: Ptr) -> u64 {
    if off!(optional) & OPT_CGROUP_V1 == 0 {
        // SAFETY: a BPF helper without arguments or preconditions.
        return unsafe { bpf_get_current_cgroup_id() };
    }
    read_ptr(task, off!(task_cgroups))
        .and_then(|css_set| read_ptr(css_set, off!(css_set_subsys_slot)))
        .and_then(|css| read_ptr(css, off!(css_cgroup)))
        .and_then(|cgrp| read_ptr(cgrp, off!(cgroup_kn)))
        .and_then(|kn| read::<u64>(kn, off!(kernfs_node_id)))
        .unwrap_or(0)
}

/// Fills `p` from the current task. Failed reads leave zeros and set `FLAG_READ_ERROR`.
/// `creds`: the task's credentials when the caller has already read them (the effective ids
/// are then taken from there instead of read again).
#[inline(always)]
pub fn fill_process(p: &mut ProcessInfo, task: Ptr, creds: Option<&CredSnap>) {
    let mut flags = 0u32;
    let uid_gid = bpf_get_current_uid_gid();
    p.uid = uid_gid as u32;
    p.gid = (uid_gid >> 32) as u32;
    p.cgroup_id = cgroup_id(task);
    p.comm = bpf_get_current_comm().unwrap_or([0; 16]);

    let (parent, leader) = parent_and_leader(task);
    match parent.and_then(|parent| read::<u32>(parent, off!(task_tgid))) {
        Ok(ppid) => p.ppid = ppid,
        Err(_) => flags |= FLAG_READ_ERROR,
    }
    if let Some(c) = creds {
        p.euid = c.euid;
        p.egid = c.egid;
    } else {
        match read_ptr(task, off!(task_cred)) {
            Ok(cred) => {
                p.euid = read::<u32>(cred, off!(cred_euid)).unwrap_or(u32::MAX);
                p.egid = read::<u32>(cred, off!(cred_egid)).unwrap_or(u32::MAX);
            }
            Err(_) => flags |= FLAG_READ_ERROR,
        }
    }
    let optional = off!(optional);
    let (loginuid, sessionid) = (off!(task_loginuid), off!(task_sessionid));
    let both = OPT_LOGINUID | OPT_SESSIONID;
    if optional & both == both && sessionid == loginuid.wrapping_add(4) {
        // `sessionid` follows `loginuid` in task_struct: one read for both.
        let w = read::<u64>(task, loginuid).unwrap_or(u64::MAX);
        p.auid = w as u32;
        p.session = (w >> 32) as u32;
    } else {
        if optional & OPT_LOGINUID != 0 {
            p.auid = read::<u32>(task, loginuid).unwrap_or(u32::MAX);
        } else {
            p.auid = u32::MAX;
            flags |= FLAG_NO_LOGINUID;
        }
        p.session = if optional & OPT_SESSIONID != 0 {
            read::<u32>(task, sessionid).unwrap_or(u32::MAX)
        } else {
            u32::MAX
        };
    }
    p.start_boottime_ns = leader
        .and_then(|leader| read::<u64>(leader, off!(task_start_boottime)))
        .unwrap_or(0);

    p.tty[0] = 0;
    if let Ok(signal) = read_ptr(task, off!(task_signal)) {
        if let Ok(tty) = read_ptr(signal, off!(signal_tty)) {
            if !tty.is_null() {
                let name = tty.wrapping_add(off!(tty_name) as usize);
                // SAFETY: the helper copies the NUL-terminated tty name from kernel memory into
                // `p.tty`, at most its length, and returns an error if the address faults.
                if unsafe { bpf_probe_read_kernel_str_bytes(name, &mut p.tty) }.is_err() {
                    p.tty[0] = 0;
                }
            }
        }
    } else {
        flags |= FLAG_READ_ERROR;
    }
    p.flags = flags;
}
