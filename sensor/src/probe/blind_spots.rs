//! Which attacker-choosable paths this kernel lets the sensor see, per mode, for `sensor
//! probe`. A path a kernel lacks the hook for is named, never silently missed. The assessment
//! is pure; the kernel-facing part only reads `/proc/kallsyms` and one sysctl.
use serde::Serialize;

/// One path an attacker can choose, and whether this host's kernel lets a mode see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// e.g. "ebpf: ia32 connect".
    pub what: String,
    pub seen: bool,
    /// Seen with its result (a connect's return value, a set*id at the call); false names the
    /// part that stays unknown in `detail`.
    pub result: bool,
    pub detail: String,
    /// False when this kernel has no such path at all (no ia32 entry): nothing to see.
    pub path_exists: bool,
}

impl Coverage {
    /// `seen`, `PART` (seen without its result), `BLIND`, or `none` (the kernel has no such
    /// path), for `sensor probe`.
    pub fn status(&self) -> &'static str {
        match (self.path_exists, self.seen, self.result) {
            (false, _, _) => "none",
            (true, true, true) => "seen",
            (true, true, false) => "PART",
            _ => "BLIND",
        }
    }
}

/// What the hooks need: a cgroup v2 hierarchy (mounted, or mountable), the `raw_syscalls`
/// tracepoints on x86_64 (ia32 results and set*id at the call), io_uring tracepoints with the
/// request pointer (5.12+), the io_uring audit filter (5.16+, known by its kernel function),
/// and the io_uring_disabled sysctl (6.6+).
pub struct KernelFacts {
    pub cgroup2: bool,
    /// The kernel runs ia32 syscalls (`sources/ia32_entry.rs`).
    pub ia32_entry: bool,
    pub compat_hook: bool,
    /// `ebpf.ia32_hooks = "off"`: the `raw_syscalls` program is never attached.
    pub ia32_hooks_off: bool,
    pub uring_req: bool,
    pub uring_audit: bool,
    pub io_uring_disabled: Option<u32>,
}

fn row(what: &str, seen: bool, result: bool, detail: impl Into<String>) -> Coverage {
    Coverage {
        what: what.into(),
        seen,
        result: seen && result,
        detail: detail.into(),
        path_exists: true,
    }
}

/// A path this kernel does not have.
fn no_path(what: &str, detail: &str) -> Coverage {
    Coverage {
        what: what.into(),
        seen: false,
        result: false,
        detail: detail.into(),
        path_exists: false,
    }
}

pub fn assess(k: &KernelFacts) -> Vec<Coverage> {
    let no_cgroup = "no cgroup v2: not seen in eBPF mode";
    let compat_hook = k.compat_hook && !k.ia32_hooks_off;
    let no_hook = if k.ia32_hooks_off {
        "ebpf.ia32_hooks = \"off\""
    } else {
        "no raw_syscalls tracepoints"
    };
    let ia32_connect = match (k.cgroup2, compat_hook) {
        (false, _) => no_cgroup.into(),
        (true, true) => "cgroup connect4/connect6, result from raw_syscalls:sys_exit".into(),
        (true, false) => format!(
            "cgroup connect4/connect6; blind spot: {no_hook}, the result is unknown (`attempted`)"
        ),
    };
    let uring_connect = match (k.cgroup2, k.uring_req) {
        (false, _) => no_cgroup.into(),
        (true, true) => "cgroup connect4/connect6, result from io_uring_complete (a connect \
                         an io-wq worker runs is `attempted`)"
            .into(),
        (true, false) => "cgroup connect4/connect6; blind spot: the io_uring tracepoints carry \
                          no request pointer (5.12+), the result is unknown (`attempted`)"
            .to_string(),
    };
    let ia32_row = |what: &str, seen: bool, detail: String| {
        if k.ia32_entry {
            row(what, seen, compat_hook, detail)
        } else {
            no_path(what, crate::sources::ia32_entry::NO_ENTRY)
        }
    };
    let mut out = vec![
        ia32_row("ebpf: ia32 connect", k.cgroup2, ia32_connect),
        row(
            "ebpf: io_uring connect",
            k.cgroup2,
            k.uring_req,
            uring_connect,
        ),
        ia32_row(
            "ebpf: ia32 set*id/capset",
            true,
            if compat_hook {
                "at the call, against the process's last known credentials (raw_syscalls:sys_exit)"
                    .into()
            } else {
                format!(
                    "blind spot: {no_hook}, seen late (credentials compared at the process's \
                     next exec and at its exit)"
                )
            },
        ),
    ];
    out.push(row(
        "audit: io_uring connect",
        k.uring_audit,
        true,
        if k.uring_audit {
            "io_uring audit filter list (AUDIT_FILTER_URING_EXIT)"
        } else {
            "the kernel has no io_uring audit filter (5.16+): io_uring connects are not seen \
             in audit mode"
        },
    ));
    out.push(row(
        "io_uring",
        true,
        true,
        match k.io_uring_disabled {
            Some(0) => "enabled for all (kernel.io_uring_disabled=0); if nothing on this host \
                        uses io_uring, set kernel.io_uring_disabled=2 to close the path"
                .into(),
            Some(1) => "limited to kernel.io_uring_group (kernel.io_uring_disabled=1)".into(),
            Some(v) => format!("disabled (kernel.io_uring_disabled={v})"),
            None => "no kernel.io_uring_disabled sysctl (6.6+): io_uring cannot be turned off \
                     at run time on this kernel"
                .into(),
        },
    ));
    out
}

/// Whether `/proc/kallsyms` text names `function`.
pub fn kallsyms_has(text: &str, function: &str) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().nth(2) == Some(function))
}

/// Reads this host's facts and assesses them, for the configured `ebpf.ia32_hooks`: with "off"
/// the ia32 entry is not probed (the setting's point is to pay nothing for ia32), and the ia32
/// rows name the setting's blind spot as if the entry existed.
pub fn probe(ia32: crate::config::Ia32Hooks) -> Vec<Coverage> {
    let ia32_hooks_off = ia32 == crate::config::Ia32Hooks::Off;
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let cgroup2 = crate::sources::ebpf::hooks::cgroup2_root(&mountinfo).is_some()
        || filesystems
            .lines()
            .any(|l| l.trim_end().ends_with("cgroup2"));
    let io_uring_disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let tracefs = crate::sources::ebpf::tracefs::find();
    let compat_hook = cfg!(target_arch = "x86_64")
        && tracefs
            .as_ref()
            .is_some_and(|t| t.join("events/raw_syscalls/sys_exit").exists());
    let uring_req = tracefs
        .as_ref()
        .and_then(|t| crate::sources::ebpf::offsets::uring_tracepoints(t))
        .is_some();
    let ia32_entry = ia32_hooks_off
        || crate::sources::ia32_entry::probe() == crate::sources::ia32_entry::Ia32Entry::Present;
    assess(&KernelFacts {
        cgroup2,
        ia32_entry,
        compat_hook,
        ia32_hooks_off,
        uring_req,
        uring_audit: kallsyms_has(&kallsyms, "__audit_uring_exit"),
        io_uring_disabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_kernel_sees_everything_and_advises_the_sysctl() {
        let c = assess(&KernelFacts {
            cgroup2: true,
            ia32_entry: true,
            compat_hook: true,
            ia32_hooks_off: false,
            uring_req: true,
            uring_audit: true,
            io_uring_disabled: Some(0),
        });
        assert!(c.iter().all(|c| c.seen && c.result), "{c:?}");
        assert!(c.iter().all(|c| c.status() == "seen"));
        assert!(c[4].detail.contains("kernel.io_uring_disabled=2"));
    }

    #[test]
    fn old_kernel_names_each_blind_spot() {
        // 5.10 on cgroup v1 only: no io_uring audit filter, no io_uring_disabled sysctl.
        let c = assess(&KernelFacts {
            cgroup2: false,
            ia32_entry: true,
            compat_hook: true,
            ia32_hooks_off: false,
            uring_req: false,
            uring_audit: false,
            io_uring_disabled: None,
        });
        assert_eq!(c[0].status(), "BLIND");
        assert!(c[0].detail.contains("not seen in eBPF mode"));
        assert_eq!(c[1].status(), "BLIND");
        assert!(!c[3].seen);
        assert!(c[3]
            .detail
            .contains("io_uring connects are not seen in audit mode"));
        assert!(c[4].detail.contains("cannot be turned off"));
        // 5.10 with a cgroup v2 mount: the io_uring connect is seen without its result.
        let c = assess(&KernelFacts {
            cgroup2: true,
            ia32_entry: true,
            compat_hook: true,
            ia32_hooks_off: false,
            uring_req: false,
            uring_audit: false,
            io_uring_disabled: None,
        });
        assert_eq!((c[0].status(), c[1].status()), ("seen", "PART"));
        assert!(c[1]
            .detail
            .contains("blind spot: the io_uring tracepoints carry no request"));
        assert_eq!(c[2].status(), "seen");
    }

    #[test]
    fn no_raw_syscalls_leaves_ia32_results_unknown() {
        let c = assess(&KernelFacts {
            cgroup2: true,
            ia32_entry: true,
            compat_hook: false,
            ia32_hooks_off: false,
            uring_req: true,
            uring_audit: true,
            io_uring_disabled: Some(2),
        });
        assert_eq!((c[0].status(), c[2].status()), ("PART", "PART"));
        assert!(c[2].detail.contains("seen late"));
    }

    #[test]
    fn ia32_hooks_off_names_the_setting_as_the_blind_spot() {
        let c = assess(&KernelFacts {
            cgroup2: true,
            ia32_entry: true,
            compat_hook: true,
            ia32_hooks_off: true,
            uring_req: true,
            uring_audit: true,
            io_uring_disabled: Some(2),
        });
        assert_eq!((c[0].status(), c[2].status()), ("PART", "PART"));
        for row in [&c[0], &c[2]] {
            assert!(
                row.detail.contains("blind spot: ebpf.ia32_hooks = \"off\""),
                "{row:?}"
            );
        }
        assert!(c[2].detail.contains("seen late"));
        // The other rows do not depend on the setting.
        assert_eq!((c[1].status(), c[3].status()), ("seen", "seen"));
    }

    #[test]
    fn a_kernel_without_the_ia32_entry_has_no_ia32_path() {
        let c = assess(&KernelFacts {
            cgroup2: true,
            ia32_entry: false,
            compat_hook: true,
            ia32_hooks_off: false,
            uring_req: true,
            uring_audit: true,
            io_uring_disabled: Some(0),
        });
        assert_eq!(c[0].what, "ebpf: ia32 connect");
        assert_eq!(c[2].what, "ebpf: ia32 set*id/capset");
        for r in [&c[0], &c[2]] {
            assert_eq!(r.status(), "none", "{r:?}");
            assert!(r.detail.contains("no ia32 entry"), "{r:?}");
        }
        // The other rows are as on any kernel.
        assert_eq!(c[1].status(), "seen");
        assert_eq!(c[3].status(), "seen");
    }

    #[test]
    fn kallsyms_lines() {
        let text = "ffffffff813a04b0 T commit_creds\n\
                    0000000000000000 t __audit_uring_exit_x [mod]\n";
        assert!(kallsyms_has(text, "commit_creds"));
        assert!(!kallsyms_has(text, "__audit_uring_exit"));
    }
}
