//! Whether this kernel runs ia32 (`int 0x80`) syscalls at all (docs/ARCHITECTURE.md,
//! "Kernel-user contract", ia32). A kernel built without `IA32_EMULATION`, or booted with
//! `ia32_emulation=0` (6.7+), has no ia32 entry: `int $0x80` faults in user space instead of
//! entering the kernel, so there is no 32-bit syscall to see and the `raw_syscalls` program,
//! which runs on every syscall of the system to catch them, would be pure cost.
//!
//! The answer is measured, not inferred from the kernel's version or config: a forked child
//! executes `int $0x80` (i386 `getpid`). Only a fault on that instruction (SIGSEGV, or
//! SIGBUS for a gate that is not present) counts as "no entry". Anything else, including a
//! child killed by a seccomp filter on non-native syscalls (systemd's
//! `SystemCallArchitectures=native` in the packaged unit: the call entered the kernel, so the
//! entry exists) or a fork that fails, keeps the hooks: an unsure answer never opens a blind
//! spot.

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ia32Entry {
    /// `int $0x80` enters the kernel (or the probe could not tell).
    Present,
    /// `int $0x80` faulted: this kernel has no ia32 entry.
    Absent,
}

/// What a kernel without the entry means for coverage: the `sensor probe` rows' detail, and
/// (after `ia32: `) the health reason's note.
pub const NO_ENTRY: &str = "this kernel has no ia32 entry (int 0x80 faults): no 32-bit \
                            syscalls to see; the raw_syscalls hooks are not attached";

/// The child's exit code when its fault handler ran.
const FAULTED: i32 = 3;

/// Classifies the child's wait status: only the fault handler's exit code means "absent".
pub fn classify(wait_status: i32) -> Ia32Entry {
    if libc::WIFEXITED(wait_status) && libc::WEXITSTATUS(wait_status) == FAULTED {
        Ia32Entry::Absent
    } else {
        Ia32Entry::Present
    }
}

/// Whether this kernel has the ia32 entry. The answer is fixed at boot (`ia32_emulation` is
/// read-only after init), so the probe runs once per process: the start-up probe, the
/// collector Hello's facts and the eBPF source all ask.
pub fn probe() -> Ia32Entry {
    static ANSWER: std::sync::OnceLock<Ia32Entry> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(run_probe)
}

/// Runs the probe (a fork and one instruction; about a millisecond).
#[cfg(target_arch = "x86_64")]
fn run_probe() -> Ia32Entry {
    // SAFETY: the child only calls async-signal-safe functions (sigaction, prctl, the
    // instruction itself, _exit) before it exits, as required after fork in a threaded
    // process; the parent only waits for it.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; nothing returns from this block.
        unsafe { child() }
    }
    if pid < 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "ia32 entry probe: fork failed; keeping the ia32 hooks");
        return Ia32Entry::Present;
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, writing its status to a valid i32.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return classify(status);
        }
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        tracing::warn!(error = %std::io::Error::last_os_error(), "ia32 entry probe: waitpid failed; keeping the ia32 hooks");
        return Ia32Entry::Present;
    }
}

/// Other architectures: the ia32 hooks are x86_64's; nothing to decide here.
#[cfg(not(target_arch = "x86_64"))]
fn run_probe() -> Ia32Entry {
    Ia32Entry::Present
}

#[cfg(target_arch = "x86_64")]
extern "C" fn on_fault(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(FAULTED) }
}

/// The forked child: a fault handler that exits with [`FAULTED`] (so the fault leaves no
/// core dump and no "general protection fault" line in the kernel log), then i386 `getpid`.
///
/// # Safety
/// Only in the child of `fork`.
#[cfg(target_arch = "x86_64")]
unsafe fn child() -> ! {
    // SAFETY: a zeroed sigaction with a plain handler is valid; sigaction, prctl and _exit
    // are async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_fault as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let ret: i64;
    // SAFETY: `int $0x80` with eax = 20 (i386 getpid) takes no pointer and changes no memory;
    // the kernel clobbers r8-r11 on the way back from an int 0x80 made in 64-bit mode.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("rax") 20i64 => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack),
        );
    }
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(if ret > 0 { 0 } else { 1 }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> i32 {
        (code & 0xff) << 8
    }

    #[test]
    fn only_the_fault_handler_exit_means_absent() {
        assert_eq!(classify(exited(FAULTED)), Ia32Entry::Absent);
        assert_eq!(classify(exited(0)), Ia32Entry::Present);
        // The call entered the kernel and failed (a seccomp filter answering an errno).
        assert_eq!(classify(exited(1)), Ia32Entry::Present);
        // Killed by a seccomp filter (SIGSYS) or anything else: the entry exists or the
        // answer is unsure, and an unsure answer keeps the hooks.
        assert_eq!(classify(libc::SIGSYS), Ia32Entry::Present);
        assert_eq!(classify(libc::SIGKILL), Ia32Entry::Present);
        assert_eq!(classify(libc::SIGSEGV), Ia32Entry::Present);
    }
}
