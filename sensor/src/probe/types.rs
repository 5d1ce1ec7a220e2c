//! What the probe reports: one [`Check`] per capability, the capture modes, and the ladder
//! decision.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::ProbeError;

/// Outcome of one capability check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub ok: bool,
    /// What was found, or the error (e.g. "EPERM from bpf(BPF_MAP_CREATE)").
    pub detail: String,
}

impl Check {
    pub fn pass(detail: impl Into<String>) -> Self {
        Check {
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn fail(detail: impl Into<String>) -> Self {
        Check {
            ok: false,
            detail: detail.into(),
        }
    }
}

impl From<Result<String, ProbeError>> for Check {
    fn from(r: Result<String, ProbeError>) -> Self {
        match r {
            Ok(detail) => Check::pass(detail),
            Err(e) => Check::fail(e.to_string()),
        }
    }
}

/// Everything the probe found about the host.
#[derive(Debug, Clone, Serialize)]
pub struct HostCapabilities {
    /// `uname -r`; reported only, never used for decisions.
    pub kernel_release: String,
    /// `/sys/kernel/btf/vmlinux` readable (and starts with the BTF magic).
    pub btf: Check,
    /// `bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_ARRAY)` succeeds.
    pub bpf_syscall: Check,
    /// `bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_RINGBUF)` succeeds.
    pub ringbuf: Check,
    /// `events/sched/sched_process_exec` exists under a tracefs mount.
    pub tracefs: Check,
    /// Bracketed value of `/sys/kernel/security/lockdown`, `None` if absent.
    pub lockdown: Option<String>,
    /// NETLINK_AUDIT socket opens and AUDIT_GET answers.
    pub audit: Check,
    /// auditd installed/enabled, and whether the sensor can read beside a running one; fails
    /// only when another daemon holds the slot and there is no multicast group to read.
    pub audit_coexist: Check,
    /// `fanotify_init` with FID/DFID_NAME reporting succeeds.
    pub fanotify_fid: Check,
    /// `fanotify_init` in plain fd mode succeeds.
    pub fanotify_fd: Check,
    /// `/proc/sys/net/netfilter/nf_conntrack_max` exists.
    pub conntrack: Check,
    /// Attacker-choosable paths (ia32 entry, io_uring) and whether each mode sees them here.
    pub coverage: Vec<crate::probe::blind_spots::Coverage>,
}

/// A capture mode the sensor can run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Ebpf,
    Audit,
}

impl Mode {
    /// Auto-selection order: first usable wins.
    pub const LADDER: [Mode; 2] = [Mode::Ebpf, Mode::Audit];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ebpf => "ebpf",
            Mode::Audit => "audit",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for on the command line (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedMode {
    Auto,
    Ebpf,
    Audit,
}

impl RequestedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestedMode::Auto => "auto",
            RequestedMode::Ebpf => "ebpf",
            RequestedMode::Audit => "audit",
        }
    }
}

impl fmt::Display for RequestedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestedMode {
    type Err = ProbeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(RequestedMode::Auto),
            "ebpf" => Ok(RequestedMode::Ebpf),
            "audit" => Ok(RequestedMode::Audit),
            other => Err(ProbeError::UnknownMode(other.to_string())),
        }
    }
}

impl From<Mode> for RequestedMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Ebpf => RequestedMode::Ebpf,
            Mode::Audit => RequestedMode::Audit,
        }
    }
}

/// One rung of the mode ladder, with why it is (not) usable.
#[derive(Debug, Clone, Serialize)]
pub struct Rung {
    pub mode: Mode,
    pub usable: bool,
    pub reason: String,
}

/// Result of [`super::choose_mode`].
#[derive(Debug, Clone, Serialize)]
pub struct ModeDecision {
    /// `None` if nothing usable (auto) or the forced mode is unusable.
    pub mode: Option<Mode>,
    pub reason: String,
    pub rungs: Vec<Rung>,
}

/// A host where every check passes (unit tests of the decision and the report).
#[cfg(test)]
pub(super) fn good_caps() -> HostCapabilities {
    HostCapabilities {
        kernel_release: "6.1.0-test".into(),
        btf: Check::pass("/sys/kernel/btf/vmlinux readable"),
        bpf_syscall: Check::pass("ok"),
        ringbuf: Check::pass("ok"),
        tracefs: Check::pass("/sys/kernel/tracing/events/sched/sched_process_exec"),
        lockdown: Some("none".into()),
        audit: Check::pass("enabled=1 pid=0 backlog_limit=8192 lost=0"),
        audit_coexist: Check::pass("auditd not installed"),
        fanotify_fid: Check::pass("ok"),
        fanotify_fd: Check::pass("ok"),
        conntrack: Check::pass("nf_conntrack_max=1 nf_conntrack_acct=0"),
        coverage: Vec::new(),
    }
}
