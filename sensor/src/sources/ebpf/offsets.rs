//! Resolves [`KernelOffsets`] from the running kernel's BTF and tracefs. A program whose
//! offsets cannot all be resolved is never loaded; the error is a fallback reason.
use std::path::Path;

use sensor_common::{
    offsets::{
        OFFSETS_MAGIC, OPT_CGROUP_V1, OPT_COMPAT, OPT_LOGINUID, OPT_SESSIONID, OPT_URING_REQ,
    },
    KernelOffsets,
};

use crate::btf::Btf;

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("kernel BTF unavailable: {0}")]
    Btf(String),
    #[error("cannot resolve {what}: {error}")]
    Member { what: String, error: String },
    #[error("tracepoint format: {0}")]
    Tracepoint(String),
}

struct Resolver<'a> {
    btf: &'a Btf,
}

impl Resolver<'_> {
    fn get(&self, s: &str, m: &str) -> Result<u32, OffsetsError> {
        self.btf
            .member_offset(s, m)
            .map_err(|e| OffsetsError::Member {
                what: format!("{s}.{m}"),
                error: e.to_string(),
            })
    }

    /// The first of `members` that exists (kernels renamed some fields).
    fn first(&self, s: &str, members: &[&str]) -> Result<u32, OffsetsError> {
        for m in members {
            if self.btf.has_member(s, m) {
                return self.get(s, m);
            }
        }
        Err(OffsetsError::Member {
            what: format!("{s}.{}", members.join("|")),
            error: "no such member".into(),
        })
    }
}

/// Resolves every offset the programs use, from `btf` and the tracepoint format under `tracefs`.
pub fn resolve(btf: &Btf, tracefs: &Path) -> Result<KernelOffsets, OffsetsError> {
    let mut o = resolve_btf(btf)?;
    // On a hybrid / v1 host, cgroup ids are read from the tracked v1 hierarchy (the one the
    // process cache maps to container ids).
    let tracked = crate::enrich::container::find_tracked_root();
    if let Some(v1) = tracked.as_ref().and_then(|r| r.v1.as_ref()) {
        resolve_cgroup_v1(btf, v1.ssid, &mut o)?;
    }
    o.tp_exec_filename =
        super::tracefs::event_field_offset(tracefs, "sched", "sched_process_exec", "filename")
            .map_err(OffsetsError::Tracepoint)?;
    if let Some(u) = uring_tracepoints(tracefs) {
        o.tp_uring_submit_req = u.submit_req;
        o.tp_uring_submit_opcode = u.submit_opcode;
        o.tp_uring_complete_req = u.complete_req;
        o.tp_uring_complete_res = u.complete_res;
        o.optional |= OPT_URING_REQ;
    }
    o.magic = OFFSETS_MAGIC;
    Ok(o)
}

/// The io_uring submit tracepoint: `io_uring_submit_req` (6.0+), `io_uring_submit_sqe` before.
pub const URING_SUBMIT_EVENTS: [&str; 2] = ["io_uring_submit_req", "io_uring_submit_sqe"];

/// Context offsets of the io_uring tracepoints' request pointer, opcode and result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringTracepoints {
    pub submit_event: &'static str,
    pub submit_req: u32,
    pub submit_opcode: u32,
    pub complete_req: u32,
    pub complete_res: u32,
}

/// Resolved from the formats under `tracefs`; None when the kernel has no io_uring events or
/// they carry no request pointer (5.10/5.11), so completions cannot be paired with requests.
pub fn uring_tracepoints(tracefs: &Path) -> Option<UringTracepoints> {
    let field = |event: &str, f: &str| {
        super::tracefs::event_field_offset(tracefs, "io_uring", event, f).ok()
    };
    let submit_event = URING_SUBMIT_EVENTS
        .into_iter()
        .find(|e| field(e, "opcode").is_some())?;
    Some(UringTracepoints {
        submit_event,
        submit_req: field(submit_event, "req")?,
        submit_opcode: field(submit_event, "opcode")?,
        complete_req: field("io_uring_complete", "req")?,
        complete_res: field("io_uring_complete", "res")?,
    })
}

/// The BTF half of [`resolve`]; `magic` stays unset.
pub fn resolve_btf(btf: &Btf) -> Result<KernelOffsets, OffsetsError> {
    let r = Resolver { btf };
    let mut optional = 0;
    let task_loginuid = if btf.has_member("task_struct", "loginuid") {
        optional |= OPT_LOGINUID;
        r.get("task_struct", "loginuid")?
    } else {
        0
    };
    let task_sessionid = if btf.has_member("task_struct", "sessionid") {
        optional |= OPT_SESSIONID;
        r.get("task_struct", "sessionid")?
    } else {
        0
    };
    // x86_64 only: TS_COMPAT in thread_info.status marks a compat (ia32) syscall.
    let thread_status = if cfg!(target_arch = "x86_64")
        && btf.has_member("task_struct", "thread_info")
        && btf.has_member("thread_info", "status")
    {
        optional |= OPT_COMPAT;
        r.get("task_struct", "thread_info")? + r.get("thread_info", "status")?
    } else {
        0
    };
    Ok(KernelOffsets {
        magic: 0,
        optional,
        task_real_parent: r.get("task_struct", "real_parent")?,
        task_tgid: r.get("task_struct", "tgid")?,
        task_cred: r.get("task_struct", "cred")?,
        task_loginuid,
        task_sessionid,
        task_signal: r.get("task_struct", "signal")?,
        task_exit_code: r.get("task_struct", "exit_code")?,
        task_mm: r.get("task_struct", "mm")?,
        // 5.5 renamed real_start_time to start_boottime.
        task_start_boottime: r.first("task_struct", &["start_boottime", "real_start_time"])?,
        task_group_leader: r.get("task_struct", "group_leader")?,
        task_fs: r.get("task_struct", "fs")?,
        task_files: r.get("task_struct", "files")?,
        cred_uid: r.get("cred", "uid")?,
        cred_gid: r.get("cred", "gid")?,
        cred_euid: r.get("cred", "euid")?,
        cred_egid: r.get("cred", "egid")?,
        cred_cap_effective: r.get("cred", "cap_effective")?,
        signal_tty: r.get("signal_struct", "tty")?,
        signal_live: r.get("signal_struct", "live")?,
        tty_name: r.get("tty_struct", "name")?,
        mm_arg_start: r.get("mm_struct", "arg_start")?,
        mm_arg_end: r.get("mm_struct", "arg_end")?,
        mm_exe_file: r.get("mm_struct", "exe_file")?,
        file_f_path: r.get("file", "f_path")?,
        fs_pwd: r.get("fs_struct", "pwd")?,
        path_mnt: r.get("path", "mnt")?,
        path_dentry: r.get("path", "dentry")?,
        dentry_parent: r.get("dentry", "d_parent")?,
        dentry_name: r.get("dentry", "d_name")?,
        qstr_name: r.get("qstr", "name")?,
        mount_mnt: r.get("mount", "mnt")?,
        mount_parent: r.get("mount", "mnt_parent")?,
        mount_mountpoint: r.get("mount", "mnt_mountpoint")?,
        vfsmount_root: r.get("vfsmount", "mnt_root")?,
        files_fdt: r.get("files_struct", "fdt")?,
        fdtable_max_fds: r.get("fdtable", "max_fds")?,
        fdtable_fd: r.get("fdtable", "fd")?,
        file_private_data: r.get("file", "private_data")?,
        socket_type: r.get("socket", "type")?,
        dentry_hash_pprev: r.get("dentry", "d_hash")? + r.get("hlist_bl_node", "pprev")?,
        tp_exec_filename: 0,
        task_cgroups: 0,
        css_set_subsys_slot: 0,
        css_cgroup: 0,
        cgroup_kn: 0,
        kernfs_node_id: 0,
        thread_status,
        tp_uring_submit_req: 0,
        tp_uring_submit_opcode: 0,
        tp_uring_complete_req: 0,
        tp_uring_complete_res: 0,
    })
}

/// The path from a task to the id of its cgroup in the v1 hierarchy of subsystem `ssid`:
/// `task->cgroups->subsys[ssid]->cgroup->kn->id`.
pub fn resolve_cgroup_v1(btf: &Btf, ssid: u32, o: &mut KernelOffsets) -> Result<(), OffsetsError> {
    let r = Resolver { btf };
    let pointer = 8u32;
    o.task_cgroups = r.get("task_struct", "cgroups")?;
    o.css_set_subsys_slot = r
        .get("css_set", "subsys")?
        .checked_add(ssid.saturating_mul(pointer))
        .ok_or_else(|| OffsetsError::Member {
            what: "css_set.subsys[ssid]".into(),
            error: format!("subsystem id {ssid} out of range"),
        })?;
    o.css_cgroup = r.get("cgroup_subsys_state", "cgroup")?;
    o.cgroup_kn = r.get("cgroup", "kn")?;
    o.kernfs_node_id = r.get("kernfs_node", "id")?;
    o.optional |= OPT_CGROUP_V1;
    Ok(())
}

/// Loads `/sys/kernel/btf/vmlinux` and resolves everything.
pub fn resolve_host(tracefs: &Path) -> Result<KernelOffsets, OffsetsError> {
    let btf = Btf::from_sys().map_err(|e| OffsetsError::Btf(e.to_string()))?;
    resolve(&btf, tracefs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_on_this_host_when_btf_is_present() {
        let Ok(btf) = Btf::from_sys() else {
            eprintln!("no /sys/kernel/btf/vmlinux; skipped");
            return;
        };
        let o = resolve_btf(&btf).expect("all offsets resolve on the build host");
        assert!(o.mm_arg_end > o.mm_arg_start);
        assert_ne!(o.task_real_parent, o.task_tgid);
        assert_eq!(
            o.cred_euid,
            o.cred_uid + 16,
            "cred: uid gid suid sgid euid ..."
        );
        assert_eq!(o.path_mnt, 0);
        let mut v1 = o;
        resolve_cgroup_v1(&btf, 11, &mut v1).expect("cgroup v1 offsets resolve");
        assert_ne!(v1.optional & OPT_CGROUP_V1, 0);
        let base = btf.member_offset("css_set", "subsys").unwrap();
        assert_eq!(v1.css_set_subsys_slot, base + 88);
        assert_eq!(o.optional & OPT_CGROUP_V1, 0, "v2 unless asked");
        assert_ne!(o.optional & OPT_COMPAT, 0, "x86_64 thread_info.status");
        assert!(
            o.thread_status > 0 && o.thread_status < 64,
            "thread_info heads task_struct"
        );
    }

    #[test]
    fn uring_tracepoints_on_this_host() {
        let Some(t) = super::super::tracefs::find() else {
            return;
        };
        if !t.join("events/io_uring/io_uring_complete").exists() {
            return;
        }
        let u = uring_tracepoints(&t).expect("6.x io_uring events carry req");
        assert_eq!((u.submit_req, u.complete_req), (16, 16), "after ctx");
        assert!(u.complete_res > u.complete_req);
    }
}
