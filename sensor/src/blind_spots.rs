//! Which attacker-choosable paths this kernel lets the sensor see, per mode, for `sensor
//! probe`. A path a kernel lacks the hook for is named, never silently missed. The assessment
//! is pure; the kernel-facing part only reads `/proc/kallsyms` and one sysctl.
use std::collections::HashSet;

use serde::Serialize;

/// One path an attacker can choose, and whether this host's kernel lets a mode see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// e.g. "ebpf: ia32/io_uring connect".
    pub what: String,
    pub seen: bool,
    pub detail: String,
}

/// Kernel functions the hooks need, and the io_uring_disabled sysctl (6.6+) when present.
pub struct KernelFacts<'a> {
    pub has_function: &'a dyn Fn(&str) -> bool,
    pub io_uring_disabled: Option<u32>,
}

pub fn assess(k: &KernelFacts) -> Vec<Coverage> {
    let has = k.has_function;
    let mut out = Vec::new();
    let connect = has("__sys_connect_file");
    out.push(Coverage {
        what: "ebpf: ia32/io_uring connect".into(),
        seen: connect,
        detail: if connect {
            "fexit on __sys_connect_file (native, ia32 and io_uring connects)".into()
        } else {
            "no __sys_connect_file: syscall tracepoints only, ia32 (int 0x80) and io_uring \
             connects are not seen"
                .into()
        },
    });
    let creds = has("commit_creds") && has("begin_new_exec");
    out.push(Coverage {
        what: "ebpf: ia32 set*id".into(),
        seen: creds,
        detail: if creds {
            "kprobes on commit_creds and begin_new_exec (every credential change)".into()
        } else {
            "no commit_creds/begin_new_exec kprobe: ia32 (int 0x80) set*id/capset not seen".into()
        },
    });
    let uring_audit = has("__audit_uring_exit");
    out.push(Coverage {
        what: "audit: io_uring connect".into(),
        seen: uring_audit,
        detail: if uring_audit {
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

/// Function names in `/proc/kallsyms` text.
pub fn parse_kallsyms(text: &str, wanted: &[&str]) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|name| wanted.contains(name))
        .map(str::to_string)
        .collect()
}

const FUNCTIONS: [&str; 4] = [
    "__sys_connect_file",
    "commit_creds",
    "begin_new_exec",
    "__audit_uring_exit",
];

/// Reads this host's facts and assesses them.
pub fn probe() -> Vec<Coverage> {
    let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let found = parse_kallsyms(&text, &FUNCTIONS);
    let io_uring_disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    assess(&KernelFacts {
        has_function: &|f| found.contains(f),
        io_uring_disabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_kernel_sees_everything_and_advises_the_sysctl() {
        let all = |_: &str| true;
        let c = assess(&KernelFacts {
            has_function: &all,
            io_uring_disabled: Some(0),
        });
        assert!(c.iter().all(|c| c.seen));
        assert!(c[3].detail.contains("kernel.io_uring_disabled=2"));
    }

    #[test]
    fn old_kernel_names_each_blind_spot() {
        // 5.10: no io_uring audit filter, no io_uring_disabled sysctl.
        let has = |f: &str| f != "__audit_uring_exit";
        let c = assess(&KernelFacts {
            has_function: &has,
            io_uring_disabled: None,
        });
        let audit = c.iter().find(|c| c.what.starts_with("audit")).unwrap();
        assert!(!audit.seen);
        assert!(audit.detail.contains("io_uring connects are not seen"));
        assert!(c[3].detail.contains("cannot be turned off"));
        let none = |_: &str| false;
        let c = assess(&KernelFacts {
            has_function: &none,
            io_uring_disabled: None,
        });
        assert!(c[0].detail.contains("ia32 (int 0x80) and io_uring connects are not seen"));
        assert!(!c[1].seen);
    }

    #[test]
    fn kallsyms_lines() {
        let text = "ffffffff813a04b0 T commit_creds\n\
                    ffffffff81e76ed0 T __sys_connect_file\n\
                    0000000000000000 t __sys_connect_file_x [mod]\n";
        let got = parse_kallsyms(text, &FUNCTIONS);
        assert!(got.contains("commit_creds") && got.contains("__sys_connect_file"));
        assert_eq!(got.len(), 2);
    }
}
