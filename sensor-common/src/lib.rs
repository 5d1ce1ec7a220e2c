//! Records shared by the eBPF programs (`sensor-ebpf`) and the userspace daemon (`sensor`).
//!
//! Every record starts with an [`EventHeader`]. Layouts are `#[repr(C)]`, use `u32` flags
//! instead of `bool`, have no implicit padding, and their sizes are pinned with compile-time
//! assertions so a change on one side cannot silently break the other.
#![no_std]

pub mod offsets;

pub use offsets::KernelOffsets;

/// Bumped whenever a record layout changes.
pub const SCHEMA_VERSION: u32 = 2;

/// Record kinds. 1..=15 process lifecycle, 16..=31 network, 32..=47 credentials (reserved),
/// 48..=63 files (reserved).
pub const KIND_EXEC: u32 = 1;
pub const KIND_EXIT: u32 = 2;
/// A new process (a fork/clone that is not a thread): feeds the process cache only.
pub const KIND_FORK: u32 = 3;
pub const KIND_CONNECT: u32 = 16;
pub const KIND_PRIVILEGE: u32 = 32;

/// Slots of the per-CPU ring-buffer reserve-failure counter array, one per emitted kind.
pub const DROP_SLOT_EXEC: u32 = 0;
pub const DROP_SLOT_EXIT: u32 = 1;
pub const DROP_SLOT_CONNECT: u32 = 2;
/// Connect enter records that could not be stashed for the exit half (hash map full).
pub const DROP_SLOT_CONNECT_STASH: u32 = 3;
pub const DROP_SLOT_PRIVILEGE: u32 = 4;
/// IPv4/IPv6 connects not recorded because userspace set the shedding level to
/// [`SHED_LEVEL_KERNEL_CONNECT`] or above (its CPU budget is exceeded).
pub const DROP_SLOT_SHED_CONNECT: u32 = 5;
/// Successful ia32 set*id/capset calls of a process whose previous credentials were not known
/// (its last-known entry evicted): whether they changed anything cannot be told.
pub const DROP_SLOT_CRED_UNKNOWN: u32 = 6;
/// Fork records the ring buffer could not take.
pub const DROP_SLOT_FORK: u32 = 7;
pub const DROP_SLOTS: u32 = 8;

/// The load-shedding level from which connects are dropped in the kernel (userspace drops
/// them from this level on too: "level 3, drop every file and net_connect event").
pub const SHED_LEVEL_KERNEL_CONNECT: u32 = 3;

pub const COMM_LEN: usize = 16;
pub const TTY_LEN: usize = 32;
/// Bytes kept of the exec'd filename (bprm->filename).
pub const FILENAME_LEN: usize = 256;
/// Most bytes of argv kept (NUL-separated as in the process's memory); the configured bound
/// (`sensor.argv_max_bytes`) is at most this. A power of two.
pub const ARGV_LEN: usize = 32 * 1024;
/// Least configurable argv bound.
pub const ARGV_MIN_BOUND: usize = 4096;
/// When argv is longer than the bound, the head fills `bound - ARGV_TAIL` bytes and the last
/// `ARGV_TAIL` bytes follow it, so padding cannot push the end of a command line out of sight.
pub const ARGV_TAIL: usize = 1024;
/// The argv buffer: room for a head of up to `ARGV_LEN - 1` bytes at any offset plus the tail.
pub const ARGV_BUF: usize = ARGV_LEN + ARGV_TAIL;
/// Steps of the cwd walk kept, innermost first: one path component or one mount crossing
/// each (see [`ExecEvent::cwd_mounts`]).
pub const CWD_PARTS: usize = 24;
/// Bytes kept per cwd component (including the terminating NUL).
pub const CWD_PART_LEN: usize = 64;

/// Flags on [`ProcessInfo::flags`] and record-specific flags.
pub const FLAG_ARGV_TRUNCATED: u32 = 1 << 0;
pub const FLAG_FILENAME_TRUNCATED: u32 = 1 << 1;
pub const FLAG_CWD_TRUNCATED: u32 = 1 << 2;
/// The kernel has no `task_struct.loginuid` (CONFIG_AUDIT off): auid/session are unknown.
pub const FLAG_NO_LOGINUID: u32 = 1 << 3;
/// A kernel read failed; some fields are zero.
pub const FLAG_READ_ERROR: u32 = 1 << 4;
/// The argv read from user memory failed.
pub const FLAG_ARGV_ERROR: u32 = 1 << 5;
/// The cwd could not be walked.
pub const FLAG_CWD_ERROR: u32 = 1 << 6;
pub const FLAG_EXE_TRUNCATED: u32 = 1 << 7;
/// The executable's path could not be walked.
pub const FLAG_EXE_ERROR: u32 = 1 << 8;
/// The executable was deleted, or never had a name in a filesystem (a memfd): its path is
/// what `d_path` prints, with " (deleted)".
pub const FLAG_EXE_DELETED: u32 = 1 << 9;
/// The exe walk ended at a dentry that is its own parent without reaching a mount root (a
/// pseudo file such as a memfd): the one component is the file's name, e.g. `memfd:x`.
pub const FLAG_EXE_DETACHED: u32 = 1 << 10;

/// Common record header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    /// Total bytes of the record, header included.
    pub size: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event happened.
    pub ktime_ns: u64,
    /// Thread id (kernel `pid`).
    pub pid: u32,
    /// Process id (kernel `tgid`).
    pub tgid: u32,
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 24);

/// What the kernel knows about the current task, read in the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// tgid of `real_parent`.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// loginuid (audit uid); u32::MAX when unset.
    pub auid: u32,
    /// audit session id; u32::MAX when unset.
    pub session: u32,
    pub flags: u32,
    /// Thread-group leader start time, ns since boot (`start_boottime`), the process identity
    /// together with the tgid.
    pub start_boottime_ns: u64,
    /// cgroup v2 id (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    /// Controlling tty name (e.g. `pts3`), empty when none.
    pub tty: [u8; TTY_LEN],
}
const _: () = assert!(core::mem::size_of::<ProcessInfo>() == 96);

impl ProcessInfo {
    pub const fn zeroed() -> Self {
        Self {
            ppid: 0,
            uid: 0,
            gid: 0,
            euid: 0,
            egid: 0,
            auid: u32::MAX,
            session: u32::MAX,
            flags: 0,
            start_boottime_ns: 0,
            cgroup_id: 0,
            comm: [0; COMM_LEN],
            tty: [0; TTY_LEN],
        }
    }
}

/// A path walked in the kernel from a dentry up to the root, innermost step first: its steps.
/// Step i's component is slot i (`CWD_PART_LEN` bytes, NUL-terminated) of the walk's slots in
/// the exec record's [`ExecEvent::data`]; a step that crossed a mount has an unused slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkHead {
    /// Number of walk steps captured (slots used).
    pub depth: u32,
    /// Bit i set: step i crossed a mount and has no component.
    pub mounts: u32,
}

/// Most bytes of `data` ahead of argv: the filename (8-aligned) and both walks' slots.
pub const EXEC_STRINGS_MAX: usize = FILENAME_LEN + 2 * CWD_PARTS * CWD_PART_LEN;
/// The room kept for them in the program's scratch record.
pub const EXEC_STRINGS_BUF: usize = 4096;
const _: () = assert!(EXEC_STRINGS_MAX <= EXEC_STRINGS_BUF);

/// `sched_process_exec`. Emitted with a variable length: after the fixed fields, `data` holds
/// the filename, then the cwd walk's used slots, the exe walk's, and argv, each section
/// 8-aligned and right after the previous one, so each start follows from the lengths before
/// it ([`exec_sections`]). The record ends `argv_len` bytes into argv (rounded up to 8), and
/// `header.size` says how long it is: a few hundred bytes for a typical exec, where fixed-size
/// walks made every record ~3.5 KiB.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
    /// Bytes of the filename at the start of `data`, its NUL included (0: not read).
    pub filename_len: u32,
    /// Bytes of argv used (head and tail).
    pub argv_len: u32,
    /// argv bytes left out between the head and the tail; 0 when argv is complete.
    pub argv_omitted: u32,
    /// Where the tail starts in argv when `argv_omitted` is non-zero.
    pub argv_head_len: u32,
    /// The working directory (`current->fs->pwd`).
    pub cwd: WalkHead,
    /// The executable actually mapped (`current->mm->exe_file`), symlinks resolved.
    pub exe: WalkHead,
    /// The path the caller passed to execve (bprm->filename, possibly relative), the walks'
    /// slots, argv.
    pub data: [u8; EXEC_STRINGS_BUF + ARGV_BUF],
}
pub const EXEC_FIXED_LEN: usize = core::mem::size_of::<ExecEvent>() - EXEC_STRINGS_BUF - ARGV_BUF;
const _: () = assert!(EXEC_FIXED_LEN == 24 + 96 + 16 + 2 * 8);

/// Where the cwd slots, the exe slots and argv start in [`ExecEvent::data`], from the
/// filename's length (NUL included) and the walks' depths, each at most its bound (the program
/// clamps them so the verifier sees the bounds; the decoder refuses larger ones).
pub const fn exec_sections(filename_len: u32, cwd_depth: u32, exe_depth: u32) -> (u32, u32, u32) {
    let cwd_at = (filename_len + 7) & !7;
    let exe_at = cwd_at + cwd_depth * CWD_PART_LEN as u32;
    (cwd_at, exe_at, exe_at + exe_depth * CWD_PART_LEN as u32)
}
const _: () = assert!(EXEC_FIXED_LEN.is_multiple_of(8));

/// `sched_process_exit` of the last thread of a thread group (the process exit).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
    /// Raw kernel exit status (`(code << 8) | signal | 0x80 core`), as for wait(2).
    pub exit_code: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 24 + 96 + 8);

/// `sched_process_fork` of a new thread-group leader (thread creation is not recorded).
/// `header.pid`/`tgid` are the child's; `process` is the child as the kernel set it up: the
/// parent's credentials, comm and cgroup, the child's own start time and real parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
}
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 24 + 96);

/// A connect(2) call on an AF_INET/AF_INET6 socket and its result.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectEvent {
    pub header: EventHeader,
    pub process: ProcessInfo,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// socket type: SOCK_STREAM (1), SOCK_DGRAM (2), ...; 0 when unknown.
    pub sock_type: u16,
    /// Destination port, host byte order.
    pub dst_port: u16,
    pub _pad0: u16,
    /// Return value of connect(2): 0 or a negative errno.
    pub ret: i32,
    pub fd: i32,
    /// IPv4 in the first 4 bytes, or IPv6.
    pub dst_addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 24 + 96 + 16 + 16);

/// `ConnectEvent::ret` of a connect seen before it was made (the cgroup connect hook, for the
/// paths no syscall tracepoint sees): its result is not known.
pub const CONNECT_RET_UNKNOWN: i32 = i32::MIN;

/// The destination of a connect, stashed at syscall entry until its exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectStash {
    pub family: u16,
    pub dst_port: u16,
    pub fd: i32,
    pub dst_addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<ConnectStash>() == 24);

/// Noise rules evaluated in the kernel (exec by exact comm). Slot `NOISE_RULES_MAX` of the
/// drop counters counts exits dropped with their dropped exec.
pub const NOISE_RULES_MAX: u32 = 64;

/// Per-process state of the in-kernel noise filter, keyed by tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecState {
    pub start_boottime_ns: u64,
    /// 1 when the process's exec was dropped (its exit is dropped too).
    pub dropped: u32,
    pub rule: u32,
}
const _: () = assert!(core::mem::size_of::<ExecState>() == 16);

/// Credentials snapshot taken before a credential-changing call (or an exec).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredSnap {
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub cap_effective: u64,
}
const _: () = assert!(core::mem::size_of::<CredSnap>() == 24);

/// How credentials changed (`PrivilegeEvent::via`).
pub const VIA_SYSCALL: u32 = 1;
pub const VIA_EXEC: u32 = 2;
/// Found changed at the process's next exec or its exit, with no syscall tracepoint having
/// reported it (an ia32 `int 0x80` set*id, ...).
pub const VIA_OBSERVED: u32 = 3;
/// `PrivilegeEvent::syscall_nr` flag: the number is an i386 one (a compat syscall through
/// `int 0x80`, reported at the call by the `raw_syscalls` hooks).
pub const SYSCALL_NR_IA32: u32 = 1 << 30;

/// `HOOKS` map bits, set by userspace once the hook is attached: the cgroup connect programs
/// then leave the connect to it, which reports the real result.
/// The `raw_syscalls:sys_exit` program (ia32 connect and socketcall results).
pub const HOOK_COMPAT_EXIT: u32 = 1 << 0;
/// The io_uring submit and complete programs (io_uring connect results).
pub const HOOK_URING: u32 = 1 << 1;
/// IORING_OP_CONNECT (the same number on every kernel).
pub const IORING_OP_CONNECT: u8 = 16;

/// An ia32 connect seen at the cgroup hook inside a compat syscall, parked until that
/// syscall's exit gives its result.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompatConnect {
    pub stash: ConnectStash,
    pub sock_type: u16,
    pub _pad: [u16; 3],
}
const _: () = assert!(core::mem::size_of::<CompatConnect>() == 32);

/// A change of uid/euid/gid/egid or effective capabilities: by a set*id/capset call
/// (`syscall_nr` says which) or by exec of a set-id / file-capability binary.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivilegeEvent {
    pub header: EventHeader,
    /// Identity after the change.
    pub process: ProcessInfo,
    pub old: CredSnap,
    pub new: CredSnap,
    pub via: u32,
    pub syscall_nr: u32,
}
const _: () = assert!(core::mem::size_of::<PrivilegeEvent>() == 24 + 96 + 48 + 8);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data records with no padding and no pointers.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above: #[repr(C)] plain integers with no padding (24 bytes, asserted).
    unsafe impl aya::Pod for super::CredSnap {}
}
