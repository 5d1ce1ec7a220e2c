//! Test support for the kernel matrix (scripts/kernel-matrix): installs the seccomp filter
//! the privileged tests use (bpf() fails with EPERM, like a container runtime's default
//! profile) and then execs its arguments, e.g. `deny_bpf_exec /sensor run --mode auto`.
//! It is a separate program so the product binary carries no test-only switch.

#[path = "../tests/common/seccomp.rs"]
mod seccomp;

use std::os::unix::process::CommandExt;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let Some((prog, rest)) = args.split_first() else {
        eprintln!("usage: deny_bpf_exec PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    if let Err(e) = seccomp::deny_bpf() {
        eprintln!("deny_bpf_exec: cannot install the seccomp filter: {e}");
        std::process::exit(1);
    }
    let err = std::process::Command::new(prog).args(rest).exec();
    eprintln!("deny_bpf_exec: exec {}: {err}", prog.to_string_lossy());
    std::process::exit(127);
}
