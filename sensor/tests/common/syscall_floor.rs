//! The syscall floor (docs/ARCHITECTURE.md, "Legacy reach"): a seccomp filter that makes the
//! x86_64 kernel look like Linux 3.10 to the process. Every syscall added after 3.10 answers
//! ENOSYS, and fanotify flags and mask bits newer than 3.10 answer EINVAL.
//!
//! Why "number >= 314": x86_64 syscall numbers are handed out in order. 3.10's table ends at
//! 313 (`finit_module`, 3.8); 314 (`sched_setattr`, 3.14) is the first number 3.10 does not
//! know, and everything above it came later: 317 seccomp, 318 getrandom, 319 memfd_create,
//! 321 bpf, 322 execveat, 323 userfaultfd, 324 membarrier, 325 mlock2, 326 copy_file_range,
//! 327/328 preadv2/pwritev2, 329-331 pkey_*, 332 statx, 333 io_pgetevents, 334 rseq, then from
//! 424 on pidfd_*, io_uring_*, the new mount API, clone3, close_range, openat2, faccessat2,
//! process_madvise, epoll_pwait2, landlock_*, futex_waitv, ... The x32 numbers (bit 30 set)
//! are refused too: the sensor is not an x32 program.
#![allow(dead_code)]

/// First x86_64 syscall number Linux 3.10 does not have.
pub const FIRST_AFTER_3_10: u32 = 314;
pub const SYS_FANOTIFY_INIT: u32 = 300;
pub const SYS_FANOTIFY_MARK: u32 = 301;
/// fanotify_init flags of 3.10: CLOEXEC, NONBLOCK, the three classes, UNLIMITED_QUEUE/MARKS.
pub const FAN_INIT_FLAGS_3_10: u32 = 0x3f;
/// fanotify_mark flags of 3.10: ADD .. FLUSH (no FAN_MARK_FILESYSTEM, 4.20).
pub const FAN_MARK_FLAGS_3_10: u32 = 0xff;
/// fanotify event mask bits of 3.10: ACCESS, MODIFY, CLOSE_WRITE, CLOSE_NOWRITE, OPEN,
/// Q_OVERFLOW, OPEN_PERM, ACCESS_PERM, EVENT_ON_CHILD, ONDIR.
pub const FAN_MASK_3_10: u32 =
    0x1 | 0x2 | 0x8 | 0x10 | 0x20 | 0x4000 | 0x1_0000 | 0x2_0000 | 0x0800_0000 | 0x4000_0000;

pub use super::seccomp::{install, SockFilter};
use super::seccomp::{
    AUDIT_ARCH_X86_64, SECCOMP_RET_ALLOW as RET_ALLOW, SECCOMP_RET_ERRNO as RET_ERRNO,
};

use super::seccomp::{BPF_JEQ_K as JEQ_K, BPF_LD_W_ABS as LD_W_ABS, BPF_RET_K as RET_K};
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;

/// Where a jump goes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum To {
    Next,
    Allow,
    Enosys,
    Einval,
    FanInit,
    FanMark,
}

enum Op {
    Ld(u32),
    Jmp(u16, u32, To, To),
    Ret(u32),
    Label(To),
}

/// The filter program, jumps resolved.
pub fn program() -> Vec<SockFilter> {
    use Op::*;
    let ops = [
        Ld(4),
        Jmp(JEQ_K, AUDIT_ARCH_X86_64, To::Next, To::Allow),
        Ld(0),
        Jmp(JEQ_K, SYS_FANOTIFY_INIT, To::FanInit, To::Next),
        Jmp(JEQ_K, SYS_FANOTIFY_MARK, To::FanMark, To::Next),
        Jmp(JGE_K, FIRST_AFTER_3_10, To::Enosys, To::Allow),
        Label(To::FanInit),
        Ld(16), // args[0] (flags), low word
        Jmp(JSET_K, !FAN_INIT_FLAGS_3_10, To::Einval, To::Allow),
        Label(To::FanMark),
        Ld(24), // args[1] (flags), low word
        Jmp(JSET_K, !FAN_MARK_FLAGS_3_10, To::Einval, To::Next),
        Ld(32), // args[2] (mask), low word
        Jmp(JSET_K, !FAN_MASK_3_10, To::Einval, To::Next),
        Ld(36), // mask, high word
        Jmp(JEQ_K, 0, To::Allow, To::Einval),
        Label(To::Enosys),
        Ret(RET_ERRNO | libc::ENOSYS as u32),
        Label(To::Einval),
        Ret(RET_ERRNO | libc::EINVAL as u32),
        Label(To::Allow),
        Ret(RET_ALLOW),
    ];
    // Instruction index of each label.
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for op in &ops {
        match op {
            Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    for op in &ops {
        let here = out.len();
        let off = |t: To| -> u8 {
            match t {
                To::Next => 0,
                t => (at[&t] - here - 1) as u8,
            }
        };
        match op {
            Ld(k) => out.push(SockFilter {
                code: LD_W_ABS,
                jt: 0,
                jf: 0,
                k: *k,
            }),
            Jmp(code, k, t, f) => out.push(SockFilter {
                code: *code,
                jt: off(*t),
                jf: off(*f),
                k: *k,
            }),
            Ret(k) => out.push(SockFilter {
                code: RET_K,
                jt: 0,
                jf: 0,
                k: *k,
            }),
            Label(_) => {}
        }
    }
    out
}

/// Runs the program on a syscall (nr, args) the way the kernel would: the action it returns.
pub fn run(prog: &[SockFilter], nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&AUDIT_ARCH_X86_64.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                let k = i.k as usize;
                acc = u32::from_ne_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]]);
            }
            RET_K => return i.k,
            code => {
                let taken = match code {
                    JEQ_K => acc == i.k,
                    JGE_K => acc >= i.k,
                    JSET_K => acc & i.k != 0,
                    _ => panic!("unknown op {code:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
        }
    }
}
