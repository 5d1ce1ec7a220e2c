//! Runs of the sensor's programs that the kernel skipped. A tracepoint program does not run
//! while a program of its kind is already running on that CPU (the kernel's recursion guard),
//! and on a preemptible kernel a program can be preempted mid-run, so every other task's
//! tracepoint on that CPU skips it meanwhile: an exec, exit or connect not seen, or an ia32
//! call not seen at its exit (docs/ARCHITECTURE.md, "What counts as a drop"). The kernel counts
//! these per program (`recursion_misses`, 5.12 and later); their sum is the drop
//! `ebpf_program_misses`, but for the `raw_syscalls` pair, whose skipped run only makes an ia32
//! report late: the count `ebpf_syscall_hook_misses`.
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use aya::programs::ProgramFd;
use aya::Ebpf;
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};

/// The loaded programs' fds (duplicates, valid while the sensor runs), by name.
pub struct ProgramMisses(Vec<(String, ProgramFd)>);

/// Skipped runs, split by what a skipped run can cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Misses {
    /// Programs whose skipped run is an event not seen (exec, exit, fork, connect exits,
    /// io_uring completions...): a drop, `ebpf_program_misses`.
    pub events: u64,
    /// The `raw_syscalls` pair, run on every syscall of the system: a skipped run loses
    /// nothing unless it was an ia32 call's entry or exit, which is then reported late (its
    /// credential change at the next exec or exit, its connect as `attempted`); a count,
    /// `ebpf_syscall_hook_misses`.
    pub syscall_hooks: u64,
}

impl ProgramMisses {
    pub fn of(ebpf: &Ebpf) -> ProgramMisses {
        ProgramMisses(
            ebpf.programs()
                .filter_map(|(name, p)| Some((name.to_string(), p.fd().ok()?.try_clone().ok()?)))
                .collect(),
        )
    }

    /// Skipped runs of each program (a program whose info cannot be read counts 0).
    pub fn by_program(&self) -> Vec<(&str, u64)> {
        self.0
            .iter()
            .map(|(name, fd)| (name.as_str(), recursion_misses(fd.as_fd()).unwrap_or(0)))
            .collect()
    }
}

impl Misses {
    /// The split of one reading of [`ProgramMisses::by_program`].
    pub fn of(by_program: &[(&str, u64)]) -> Misses {
        let mut m = Misses::default();
        for &(name, n) in by_program {
            if super::hooks::is_syscall_hook(name) {
                m.syscall_hooks += n;
            } else {
                m.events += n;
            }
        }
        m
    }
}

/// `recursion_misses` of one program, from `BPF_OBJ_GET_INFO_BY_FD`; 0 on a kernel whose
/// `bpf_prog_info` is too short to hold it.
fn recursion_misses(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    // SAFETY: both are plain C structs of integers, valid all zero.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    let len = std::mem::size_of::<bpf_prog_info>() as u32;
    // Writing a union field is safe; reading one is not.
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = len;
    attr.info.info = (&raw mut info) as u64;
    // SAFETY: the kernel writes at most `info_len` bytes into `info`, which lives through
    // the call; `attr` is a valid bpf_attr of its full size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &raw mut attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above; the kernel set `info_len` to the bytes it wrote.
    let written = unsafe { attr.info.info_len } as usize;
    let end = std::mem::offset_of!(bpf_prog_info, recursion_misses) + 8;
    Ok(if written >= end {
        info.recursion_misses
    } else {
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_raw_syscalls_program_is_a_syscall_hook() {
        use crate::sources::ebpf::hooks::is_syscall_hook;
        assert!(is_syscall_hook("compat_sys_exit"));
        for other in [
            "compat_sys_enter",
            "sched_process_exec",
            "sched_process_exit",
            "cgroup_connect4",
            "",
        ] {
            assert!(!is_syscall_hook(other), "{other}");
        }
    }

    #[test]
    fn the_syscall_hooks_skips_are_split_from_the_others() {
        let read = [
            ("compat_sys_exit", 5),
            ("sched_process_exec", 1),
            ("sched_process_fork", 2),
            ("exec_cred_enter", 3),
        ];
        let m = Misses::of(&read);
        assert_eq!((m.events, m.syscall_hooks), (6, 5));
    }

    #[test]
    fn a_descriptor_that_is_no_program_is_an_error() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(recursion_misses(f.as_fd()).is_err());
    }
}
