//! Test support for the kernel matrix (scripts/kernel-matrix, the `floor` cell): makes the
//! kernel look like Linux 3.10 to its arguments (every later syscall answers ENOSYS, newer
//! fanotify flags EINVAL; see tests/common/syscall_floor.rs) and execs them, e.g.
//! `floor_exec /sensor run --mode auto`. `floor_exec --selftest` checks the filter program
//! against the syscalls it must refuse and allow, without installing it.

#[path = "../tests/common/seccomp.rs"]
mod seccomp;
#[path = "../tests/common/syscall_floor.rs"]
mod syscall_floor;

use std::os::unix::process::CommandExt;

const ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
const EINVAL: u32 = 0x0005_0000 | libc::EINVAL as u32;
const ALLOW: u32 = 0x7fff_0000;

fn selftest() -> Result<(), String> {
    let p = syscall_floor::program();
    let cases: &[(&str, u32, [u64; 6], u32)] = &[
        ("read", 0, [0; 6], ALLOW),
        ("execve", 59, [0; 6], ALLOW),
        ("finit_module (3.8)", 313, [0; 6], ALLOW),
        ("sched_setattr (3.14)", 314, [0; 6], ENOSYS),
        ("getrandom", 318, [0; 6], ENOSYS),
        ("bpf", 321, [0; 6], ENOSYS),
        ("statx", 332, [0; 6], ENOSYS),
        ("rseq", 334, [0; 6], ENOSYS),
        ("io_uring_setup", 425, [0; 6], ENOSYS),
        ("clone3", 435, [0; 6], ENOSYS),
        (
            "fanotify_init classic",
            300,
            [0x1 | 0x4, 0, 0, 0, 0, 0],
            ALLOW,
        ),
        (
            "fanotify_init REPORT_FID",
            300,
            [0x200, 0, 0, 0, 0, 0],
            EINVAL,
        ),
        (
            "fanotify_mark mount modify",
            301,
            [0, 0x1 | 0x10, 0x2 | 0x8, 0, 0, 0],
            ALLOW,
        ),
        (
            "fanotify_mark FILESYSTEM",
            301,
            [0, 0x1 | 0x100, 0x2, 0, 0, 0],
            EINVAL,
        ),
        (
            "fanotify_mark CREATE",
            301,
            [0, 0x1, 0x100, 0, 0, 0],
            EINVAL,
        ),
        (
            "fanotify_mark FS_ERROR",
            301,
            [0, 0x1, 0x8000, 0, 0, 0],
            EINVAL,
        ),
    ];
    for (what, nr, args, want) in cases {
        let got = syscall_floor::run(&p, *nr, *args);
        if got != *want {
            return Err(format!(
                "{what}: filter answers {got:#x}, expected {want:#x}"
            ));
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--selftest") {
        match selftest() {
            Ok(()) => println!("floor_exec: filter program ok"),
            Err(e) => {
                eprintln!("floor_exec: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let Some((prog, rest)) = args.split_first() else {
        eprintln!("usage: floor_exec PROGRAM [ARGS...] | floor_exec --selftest");
        std::process::exit(2);
    };
    let filter = syscall_floor::program();
    if let Err(e) = syscall_floor::install(&filter) {
        eprintln!("floor_exec: cannot install the seccomp filter: {e}");
        std::process::exit(1);
    }
    let err = std::process::Command::new(prog).args(rest).exec();
    eprintln!("floor_exec: exec {}: {err}", prog.to_string_lossy());
    std::process::exit(127);
}
