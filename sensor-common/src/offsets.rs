//! Kernel struct member offsets, resolved in userspace from the running kernel's BTF and
//! handed to the eBPF programs as a read-only global.
//!
//! Rust eBPF emits no CO-RE relocations, so a field read at a compiled-in offset would be
//! silently wrong on another kernel. The programs read every `task_struct` field through
//! these offsets and do nothing until `magic` is [`OFFSETS_MAGIC`].

/// Set by userspace once every required offset was resolved.
pub const OFFSETS_MAGIC: u32 = 0x5345_4e53; // "SENS"

/// `optional` bits: the kernel has `task_struct.loginuid` / `sessionid` (CONFIG_AUDIT).
pub const OPT_LOGINUID: u32 = 1 << 0;
pub const OPT_SESSIONID: u32 = 1 << 1;
/// cgroup v2 is not the default hierarchy (a hybrid or v1 host): `ProcessInfo::cgroup_id` is
/// the id (kernfs node id = directory inode) of the task's cgroup in the v1 hierarchy of the
/// controller userspace chose, read through `task_cgroups` .. `kernfs_node_id`.
pub const OPT_CGROUP_V1: u32 = 1 << 2;
/// `thread_status` is resolved: the programs can tell a compat (ia32, `int 0x80`) syscall in
/// progress (`TS_COMPAT` in `task_struct.thread_info.status`, x86_64).
pub const OPT_COMPAT: u32 = 1 << 3;
/// The io_uring submit and complete tracepoints carry the request pointer (5.12+): the
/// `tp_uring_*` offsets are resolved and an io_uring connect can be paired with its result.
pub const OPT_URING_REQ: u32 = 1 << 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub magic: u32,
    pub optional: u32,
    // task_struct
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_cred: u32,
    pub task_loginuid: u32,
    pub task_sessionid: u32,
    pub task_signal: u32,
    pub task_exit_code: u32,
    pub task_mm: u32,
    pub task_start_boottime: u32,
    pub task_group_leader: u32,
    pub task_fs: u32,
    pub task_files: u32,
    // cred (kuid_t/kgid_t are a single u32)
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    /// `kernel_cap_t cap_effective` (a u64, or two u32 words before 6.3: same bytes).
    pub cred_cap_effective: u32,
    // signal_struct
    pub signal_tty: u32,
    /// `atomic_t live`: threads still alive in the group.
    pub signal_live: u32,
    // tty_struct
    pub tty_name: u32,
    // mm_struct
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    /// `file.f_path` (a `struct path`).
    pub file_f_path: u32,
    // fs_struct / path / dentry / qstr / mount / vfsmount
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_name: u32,
    pub qstr_name: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub vfsmount_root: u32,
    // files_struct / fdtable / file / socket
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    pub socket_type: u32,
    /// `dentry.d_hash.pprev`: null when the dentry is unhashed (its file was deleted).
    pub dentry_hash_pprev: u32,
    // tracepoint context
    /// Offset of the `__data_loc char[] filename` field in `sched_process_exec`'s context.
    pub tp_exec_filename: u32,
    // cgroup v1 (with OPT_CGROUP_V1): task->cgroups->subsys[ssid]->cgroup->kn->id
    pub task_cgroups: u32,
    /// `css_set.subsys[ssid]`: the array's offset plus 8 * the chosen controller's id.
    pub css_set_subsys_slot: u32,
    pub css_cgroup: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    /// `task_struct.thread_info.status` (with `OPT_COMPAT`).
    pub thread_status: u32,
    // io_uring tracepoint contexts (with `OPT_URING_REQ`): `io_uring_submit_req` (older:
    // `io_uring_submit_sqe`) `req` and `opcode`, `io_uring_complete` `req` and `res`.
    pub tp_uring_submit_req: u32,
    pub tp_uring_submit_opcode: u32,
    pub tp_uring_complete_req: u32,
    pub tp_uring_complete_res: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 53 * 4);
