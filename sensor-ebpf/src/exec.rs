//! `sched/sched_process_exec`: the new program image, its argv, cwd and credentials.
use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_str_bytes, generated::bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use sensor_common::{
    offsets::OFFSETS_MAGIC, ExecEvent, ARGV_LEN, CWD_PARTS, DROP_SLOT_EXEC, EXEC_FIXED_LEN,
    FILENAME_LEN, FLAG_ARGV_ERROR, FLAG_ARGV_TRUNCATED, FLAG_CWD_ERROR, FLAG_CWD_TRUNCATED,
    FLAG_FILENAME_TRUNCATED, KIND_EXEC,
};

use crate::{
    maps::{count_drop, off, EVENTS, EXEC_SCRATCH},
    task::{current_task, fill_process, header, read, read_ptr, Ptr},
};

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    match try_exec(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_exec(ctx: &TracePointContext) -> Result<u32, u32> {
    if off!(magic) != OFFSETS_MAGIC {
        return Ok(0);
    }
    let ev = match EXEC_SCRATCH.get_ptr_mut(0) {
        Some(p) => unsafe { &mut *p },
        None => return Err(0),
    };
    let task = current_task();
    ev.header = header(KIND_EXEC, 0);
    fill_process(&mut ev.process, task);

    read_filename(ctx, ev);
    read_argv(task, ev);
    read_cwd(task, ev);

    let argv_len = (ev.argv_len as usize).min(ARGV_LEN);
    let size = EXEC_FIXED_LEN + ((argv_len + 7) & !7);
    if size > core::mem::size_of::<ExecEvent>() {
        return Err(0);
    }
    ev.header.size = size as u32;
    let bytes = unsafe { core::slice::from_raw_parts(ev as *const ExecEvent as *const u8, size) };
    if EVENTS.output::<[u8]>(bytes, 0).is_err() {
        count_drop(DROP_SLOT_EXEC);
    }
    Ok(0)
}

fn read_filename(ctx: &TracePointContext, ev: &mut ExecEvent) {
    ev.filename_len = 0;
    let loc: u32 = match unsafe { ctx.read_at(off!(tp_exec_filename) as usize) } {
        Ok(v) => v,
        Err(_) => return,
    };
    let data_off = (loc & 0xffff) as usize;
    let data_len = (loc >> 16) as usize; // includes the NUL
    let src = (ctx.as_ptr() as *const u8).wrapping_add(data_off);
    if let Ok(s) = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut ev.filename) } {
        ev.filename_len = s.len() as u32;
    }
    if data_len > FILENAME_LEN {
        ev.process.flags |= FLAG_FILENAME_TRUNCATED;
    }
}

fn read_argv(task: Ptr, ev: &mut ExecEvent) {
    ev.argv_len = 0;
    let Ok(mm) = read_ptr(task, off!(task_mm)) else {
        ev.process.flags |= FLAG_ARGV_ERROR;
        return;
    };
    let (Ok(start), Ok(end)) = (
        read::<u64>(mm, off!(mm_arg_start)),
        read::<u64>(mm, off!(mm_arg_end)),
    ) else {
        ev.process.flags |= FLAG_ARGV_ERROR;
        return;
    };
    if end <= start {
        return;
    }
    let total = end - start;
    let dst = ev.argv.as_mut_ptr() as *mut core::ffi::c_void;
    let src = start as *const core::ffi::c_void;
    let (ret, len) = if total >= ARGV_LEN as u64 {
        if total > ARGV_LEN as u64 {
            ev.process.flags |= FLAG_ARGV_TRUNCATED;
        }
        (
            unsafe { bpf_probe_read_user(dst, ARGV_LEN as u32, src) },
            ARGV_LEN as u32,
        )
    } else {
        let len = (total as u32) & (ARGV_LEN as u32 - 1);
        (unsafe { bpf_probe_read_user(dst, len, src) }, len)
    };
    if ret < 0 {
        ev.process.flags |= FLAG_ARGV_ERROR;
        return;
    }
    ev.argv_len = len;
}

/// Walks `current->fs->pwd` up to the root, crossing mounts, innermost step first.
///
/// Each loop step writes its own slot (a component, or a mount-crossing bit), so the only
/// scalar the verifier must track precisely is the loop counter and branch states merge.
fn read_cwd(task: Ptr, ev: &mut ExecEvent) {
    ev.cwd_depth = 0;
    ev.cwd_mounts = 0;
    let Ok(fs) = read_ptr(task, off!(task_fs)) else {
        ev.process.flags |= FLAG_CWD_ERROR;
        return;
    };
    let pwd = off!(fs_pwd);
    let (Ok(mut vfsmnt), Ok(mut dentry)) = (
        read_ptr(fs, pwd + off!(path_mnt)),
        read_ptr(fs, pwd + off!(path_dentry)),
    ) else {
        ev.process.flags |= FLAG_CWD_ERROR;
        return;
    };
    let mount_mnt = off!(mount_mnt) as usize;
    let mut mount = vfsmnt.wrapping_sub(mount_mnt);
    for i in 0..CWD_PARTS {
        ev.cwd_depth = i as u32;
        let Ok(mnt_root) = read_ptr(vfsmnt, off!(vfsmount_root)) else {
            ev.process.flags |= FLAG_CWD_ERROR;
            return;
        };
        if dentry == mnt_root {
            let Ok(parent_mount) = read_ptr(mount, off!(mount_parent)) else {
                ev.process.flags |= FLAG_CWD_ERROR;
                return;
            };
            if parent_mount == mount {
                return;
            }
            let Ok(mountpoint) = read_ptr(mount, off!(mount_mountpoint)) else {
                ev.process.flags |= FLAG_CWD_ERROR;
                return;
            };
            ev.cwd_mounts |= 1 << i;
            dentry = mountpoint;
            mount = parent_mount;
            vfsmnt = mount.wrapping_add(mount_mnt);
            continue;
        }
        let Ok(parent) = read_ptr(dentry, off!(dentry_parent)) else {
            ev.process.flags |= FLAG_CWD_ERROR;
            return;
        };
        if parent == dentry {
            return;
        }
        let Ok(name) = read_ptr(dentry, off!(dentry_name) + off!(qstr_name)) else {
            ev.process.flags |= FLAG_CWD_ERROR;
            return;
        };
        if unsafe { bpf_probe_read_kernel_str_bytes(name, &mut ev.cwd[i]) }.is_err() {
            ev.cwd[i][0] = 0;
        }
        dentry = parent;
    }
    ev.cwd_depth = CWD_PARTS as u32;
    ev.process.flags |= FLAG_CWD_TRUNCATED;
}
