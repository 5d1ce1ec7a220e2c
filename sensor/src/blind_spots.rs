//! Which attacker-choosable paths this kernel lets the sensor see, per mode, for `sensor
//! probe`. A path a kernel lacks the hook for is named, never silently missed. The assessment
//! is pure; the kernel-facing part only reads `/proc/kallsyms` and one sysctl.
use serde::Serialize;

/// One path an attacker can choose, and whether this host's kernel lets a mode see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// e.g. "ebpf: ia32/io_uring connect".
    pub what: String,
    pub seen: bool,
    pub detail: String,
}

/// What the hooks need: a cgroup v2 hierarchy (mounted, or mountable), the io_uring audit
/// filter (5.16+, known by its kernel function), and the io_uring_disabled sysctl (6.6+).
pub struct KernelFacts {
    pub cgroup2: bool,
    pub uring_audit: bool,
    pub io_uring_disabled: Option<u32>,
}

pub fn assess(k: &KernelFacts) -> Vec<Coverage> {
    let mut out = vec![Coverage {
        what: "ebpf: ia32/io_uring connect".into(),
        seen: k.cgroup2,
        detail: if k.cgroup2 {
            "cgroup connect4/connect6 on the cgroup v2 root (result `attempted`: seen before \
             the connection is made)"
                .into()
        } else {
            "no cgroup v2: ia32 (int 0x80) and io_uring connects are not seen in eBPF mode".into()
        },
    }];
    out.push(Coverage {
        what: "ebpf: ia32 set*id".into(),
        seen: true,
        detail: "seen late: credentials compared at the process's next exec and at its exit".into(),
    });
    out.push(Coverage {
        what: "audit: io_uring connect".into(),
        seen: k.uring_audit,
        detail: if k.uring_audit {
            "io_uring audit filter list (AUDIT_FILTER_URING_EXIT)".into()
        } else {
            "the kernel has no io_uring audit filter (5.16+): io_uring connects are not seen \
             in audit mode"
                .into()
        },
    });
    out.push(Coverage {
        what: "io_uring".into(),
        seen: true,
        detail: match k.io_uring_disabled {
            Some(0) => "enabled for all (kernel.io_uring_disabled=0); if nothing on this host \
                        uses io_uring, set kernel.io_uring_disabled=2 to close the path"
                .into(),
            Some(1) => "limited to kernel.io_uring_group (kernel.io_uring_disabled=1)".into(),
            Some(v) => format!("disabled (kernel.io_uring_disabled={v})"),
            None => "no kernel.io_uring_disabled sysctl (6.6+): io_uring cannot be turned off \
                     at run time on this kernel"
                .into(),
        },
    });
    out
}

/// Whether `/proc/kallsyms` text names `function`.
pub fn kallsyms_has(text: &str, function: &str) -> bool {
    text.lines()
        .any(|l| l.split_whitespace().nth(2) == Some(function))
}

/// Reads this host's facts and assesses them.
pub fn probe() -> Vec<Coverage> {
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
    assess(&KernelFacts {
        cgroup2,
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
            uring_audit: true,
            io_uring_disabled: Some(0),
        });
        assert!(c.iter().all(|c| c.seen));
        assert!(c[3].detail.contains("kernel.io_uring_disabled=2"));
    }

    #[test]
    fn old_kernel_names_each_blind_spot() {
        // 5.10 on cgroup v1 only: no io_uring audit filter, no io_uring_disabled sysctl.
        let c = assess(&KernelFacts {
            cgroup2: false,
            uring_audit: false,
            io_uring_disabled: None,
        });
        assert!(!c[0].seen);
        assert!(c[0]
            .detail
            .contains("ia32 (int 0x80) and io_uring connects are not seen"));
        assert!(!c[2].seen);
        assert!(c[2]
            .detail
            .contains("io_uring connects are not seen in audit mode"));
        assert!(c[3].detail.contains("cannot be turned off"));
    }

    #[test]
    fn kallsyms_lines() {
        let text = "ffffffff813a04b0 T commit_creds\n\
                    0000000000000000 t __audit_uring_exit_x [mod]\n";
        assert!(kallsyms_has(text, "commit_creds"));
        assert!(!kallsyms_has(text, "__audit_uring_exit"));
    }
}
