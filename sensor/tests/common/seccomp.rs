//! Seccomp filters for tests, installed in a child between fork and exec
//! (`Command::pre_exec`): bpf(2) failing with EPERM, like a container runtime's default
//! profile, and a netlink multicast join failing, like a kernel before 3.16. The filter
//! types and [`install`] also serve the syscall floor (`syscall_floor.rs`).
#![allow(dead_code)]

pub const BPF_LD_W_ABS: u16 = 0x20;
pub const BPF_JEQ_K: u16 = 0x15;
pub const BPF_RET_K: u16 = 0x06;
pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
pub const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const SYS_BPF_X86_64: u32 = 321;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Denies bpf() with EPERM for this process and its children. Async-signal-safe.
pub fn deny_bpf() -> std::io::Result<()> {
    let prog = [
        // A = seccomp_data.arch
        SockFilter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 4,
        },
        SockFilter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 3,
            k: AUDIT_ARCH_X86_64,
        },
        // A = seccomp_data.nr
        SockFilter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        SockFilter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: SYS_BPF_X86_64,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    install(&prog)
}

const SYS_SETSOCKOPT_X86_64: u32 = 54;
const SOL_NETLINK: u32 = 270;
const NETLINK_ADD_MEMBERSHIP: u32 = 1;

/// Makes joining a netlink multicast group (`setsockopt(SOL_NETLINK,
/// NETLINK_ADD_MEMBERSHIP)`) fail with EPERM: how the audit log's multicast group looks to a
/// reader on a kernel that has none (before 3.16). Async-signal-safe.
pub fn deny_netlink_membership() -> std::io::Result<()> {
    let jeq = |k: u32, jt: u8, jf: u8| SockFilter {
        code: BPF_JEQ_K,
        jt,
        jf,
        k,
    };
    let ld = |k: u32| SockFilter {
        code: BPF_LD_W_ABS,
        jt: 0,
        jf: 0,
        k,
    };
    let ret = |k: u32| SockFilter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k,
    };
    let prog = [
        ld(4),                             // arch
        jeq(AUDIT_ARCH_X86_64, 0, 6),      // -> allow
        ld(0),                             // nr
        jeq(SYS_SETSOCKOPT_X86_64, 0, 4),  // -> allow
        ld(16 + 8),                        // args[1] (level), low word
        jeq(SOL_NETLINK, 0, 2),            // -> allow
        ld(16 + 16),                       // args[2] (optname), low word
        jeq(NETLINK_ADD_MEMBERSHIP, 1, 0), // -> deny / allow
        ret(SECCOMP_RET_ALLOW),
        ret(SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ];
    install(&prog)
}

/// Installs `prog` for this process and its children (no_new_privs first, so no privilege is
/// needed). Async-signal-safe: build the program before fork and pass it in.
pub fn install(prog: &[SockFilter]) -> std::io::Result<()> {
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: prctl with valid arguments; fprog outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const SockFprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
