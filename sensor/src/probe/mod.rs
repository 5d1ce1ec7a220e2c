//! Host capability probe.
//!
//! Used by `sensor probe` (prints what it found) and by `sensor run --mode auto`
//! to choose the capture mode. Every decision is made by *probing features*
//! (creating a map, opening a socket, looking for a file); the kernel release is
//! only reported, never parsed.
//!
//! Layout:
//! * thin kernel-facing wrappers (`bpf_map_create`, `fanotify_probe`,
//!   `audit_get_status`, file reads) that only turn syscalls into
//!   `Result<_, ProbeError>`;
//! * pure logic (`choose_mode`, `parse_lockdown`, `parse_audit_get_reply`,
//!   `errno_name`, `render_report`) that is unit-tested without privileges.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------

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
    pub coverage: Vec<crate::blind_spots::Coverage>,
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

/// Result of [`choose_mode`].
#[derive(Debug, Clone, Serialize)]
pub struct ModeDecision {
    /// `None` if nothing usable (auto) or the forced mode is unusable.
    pub mode: Option<Mode>,
    pub reason: String,
    pub rungs: Vec<Rung>,
}

/// Parsed `struct audit_status` (include/uapi/linux/audit.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AuditStatus {
    pub mask: u32,
    pub enabled: u32,
    pub failure: u32,
    pub pid: u32,
    pub rate_limit: u32,
    pub backlog_limit: u32,
    pub lost: u32,
    pub backlog: u32,
    /// `version` / `feature_bitmap`; absent in replies from very old kernels.
    pub feature_bitmap: Option<u32>,
}

impl fmt::Display for AuditStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "enabled={} pid={} backlog_limit={} lost={}",
            self.enabled, self.pid, self.backlog_limit, self.lost
        )
    }
}

/// Errors of the probe module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// A syscall failed; displays as e.g. "EPERM from bpf(BPF_MAP_CREATE)".
    #[error("{} from {call}", errno_name(*errno))]
    Sys { call: String, errno: i32 },
    /// A non-OS I/O error (e.g. invalid UTF-8 in a sysfs file).
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// A reply or file was shorter than its format requires.
    #[error("truncated {what}: need {need} bytes, got {got}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    /// A reply or file did not have the expected format.
    #[error("malformed {what}: {message}")]
    Malformed { what: &'static str, message: String },
    /// The kernel did not answer in time.
    #[error("no {what} reply within {} ms", timeout.as_millis())]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    /// A feature is simply not present (with a hint how to get it).
    #[error("{0}")]
    Unavailable(String),
    /// `--mode` value not recognised.
    #[error("unknown mode {0:?} (expected auto, ebpf or audit)")]
    UnknownMode(String),
}

impl ProbeError {
    fn sys(call: impl Into<String>, errno: i32) -> Self {
        ProbeError::Sys {
            call: call.into(),
            errno,
        }
    }

    /// The `errno` of the last failed libc call.
    fn last_os(call: impl Into<String>) -> Self {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Self::sys(call, errno)
    }

    fn io(call: &str, path: &Path, e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::sys(format!("{call}({})", path.display()), errno),
            None => ProbeError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            },
        }
    }

    /// The errno, if this is a syscall failure.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ProbeError::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------

/// Symbolic name of an errno value ("EPERM"), or "errno N" if unknown.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOBUFS => "ENOBUFS",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        // Kernel-internal ENOTSUPP, which BPF code paths leak to user space.
        524 => "ENOTSUPP",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// Extract the active (bracketed) value of `/sys/kernel/security/lockdown`,
/// e.g. `"none [integrity] confidentiality"` -> `Some("integrity")`.
pub fn parse_lockdown(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let rest = &text[start + 1..];
    let end = rest.find(']')?;
    let value = rest[..end].trim();
    if value.is_empty() {
        None
    } else {
        Some(value.to_string())
    }
}

/// Netlink message type of AUDIT_GET (include/uapi/linux/audit.h).
pub const AUDIT_GET: u16 = 1000;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
/// `mask` .. `lost` inclusive: the fields the detail line needs.
const AUDIT_STATUS_MIN_LEN: usize = 7 * 4;

fn nlmsg_align(len: usize) -> usize {
    (len + 3) & !3
}

fn ne_u32(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn ne_u16(b: &[u8], off: usize) -> u16 {
    u16::from_ne_bytes([b[off], b[off + 1]])
}

/// An AUDIT_GET request: a bare `nlmsghdr` (host byte order) with no payload.
pub fn build_audit_get_request(seq: u32) -> [u8; NLMSG_HDRLEN] {
    let mut b = [0u8; NLMSG_HDRLEN];
    b[0..4].copy_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&AUDIT_GET.to_ne_bytes());
    b[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: let the kernel fill in our port id.
    b
}

/// Parse the payload of an AUDIT_GET reply (`struct audit_status`).
pub fn parse_audit_status(payload: &[u8]) -> Result<AuditStatus, ProbeError> {
    if payload.len() < AUDIT_STATUS_MIN_LEN {
        return Err(ProbeError::Truncated {
            what: "audit_status",
            need: AUDIT_STATUS_MIN_LEN,
            got: payload.len(),
        });
    }
    let opt = |off: usize| (payload.len() >= off + 4).then(|| ne_u32(payload, off));
    Ok(AuditStatus {
        mask: ne_u32(payload, 0),
        enabled: ne_u32(payload, 4),
        failure: ne_u32(payload, 8),
        pid: ne_u32(payload, 12),
        rate_limit: ne_u32(payload, 16),
        backlog_limit: ne_u32(payload, 20),
        lost: ne_u32(payload, 24),
        backlog: opt(28).unwrap_or(0),
        feature_bitmap: opt(32),
    })
}

/// Walk the netlink messages in one datagram received on a NETLINK_AUDIT
/// socket, looking for the answer to the AUDIT_GET request with `seq`.
///
/// * `Ok(Some(status))`: the AUDIT_GET reply;
/// * `Ok(None)`: only acks, no-ops or messages for other sequence numbers
///   (keep receiving);
/// * `Err(Sys{..})`: the kernel answered with an NLMSG_ERROR (e.g. EPERM);
/// * `Err(Truncated|Malformed)`: the bytes are not a valid netlink datagram.
pub fn parse_audit_get_reply(buf: &[u8], seq: u32) -> Result<Option<AuditStatus>, ProbeError> {
    if buf.is_empty() {
        return Err(ProbeError::Truncated {
            what: "netlink reply",
            need: NLMSG_HDRLEN,
            got: 0,
        });
    }
    let mut off = 0usize;
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < NLMSG_HDRLEN {
            return Err(ProbeError::Truncated {
                what: "nlmsghdr",
                need: NLMSG_HDRLEN,
                got: rest.len(),
            });
        }
        let len = ne_u32(rest, 0) as usize;
        let ty = ne_u16(rest, 4);
        let msg_seq = ne_u32(rest, 8);
        if len < NLMSG_HDRLEN {
            return Err(ProbeError::Malformed {
                what: "nlmsghdr",
                message: format!("nlmsg_len {len} is smaller than the header"),
            });
        }
        if len > rest.len() {
            return Err(ProbeError::Truncated {
                what: "netlink message",
                need: len,
                got: rest.len(),
            });
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        if msg_seq == seq {
            match ty {
                AUDIT_GET => return parse_audit_status(payload).map(Some),
                NLMSG_ERROR => {
                    if payload.len() < 4 {
                        return Err(ProbeError::Truncated {
                            what: "nlmsgerr",
                            need: 4,
                            got: payload.len(),
                        });
                    }
                    let err = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    if err != 0 {
                        return Err(ProbeError::sys(
                            "netlink AUDIT_GET",
                            err.checked_neg().unwrap_or(i32::MAX),
                        ));
                    }
                    // err == 0: an ack; the status message may follow.
                }
                NLMSG_NOOP | NLMSG_DONE => {}
                _ => {}
            }
        }
        off += nlmsg_align(len);
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// Mode selection (pure)
// ---------------------------------------------------------------------------

/// Decide the capture mode from the probed capabilities.
///
/// * `ebpf_offsets`: result of resolving the kernel struct offsets from BTF
///   (done by the caller); `Err(text)` if some could not be resolved.
/// * `audit_implemented`: whether this build has the audit source; when false
///   the audit rung is unusable with reason "audit source not built yet".
///
/// The eBPF rung is usable iff BTF, the bpf() syscall, ring buffer maps,
/// tracefs and the offsets are all OK and lockdown is not "confidentiality";
/// its reason lists every failing condition. The audit rung is usable iff the
/// audit netlink check passed and the audit source is built.
///
/// `Auto` picks the first usable rung of [`Mode::LADDER`]; a forced mode is
/// chosen if usable, otherwise the decision has `mode: None` and says why.
pub fn choose_mode(
    caps: &HostCapabilities,
    ebpf_offsets: Result<(), String>,
    audit_implemented: bool,
    requested: RequestedMode,
) -> ModeDecision {
    let rungs: Vec<Rung> = Mode::LADDER
        .iter()
        .map(|&mode| match mode {
            Mode::Ebpf => ebpf_rung(caps, &ebpf_offsets),
            Mode::Audit => audit_rung(caps, audit_implemented),
        })
        .collect();

    let (mode, reason) = match requested {
        RequestedMode::Auto => {
            let mut skipped = Vec::new();
            let mut chosen = None;
            for r in &rungs {
                if r.usable {
                    chosen = Some(r.mode);
                    break;
                }
                skipped.push(format!("{} skipped [{}]", r.mode, r.reason));
            }
            match chosen {
                Some(m) if skipped.is_empty() => {
                    (Some(m), format!("auto: {m} is the first usable rung"))
                }
                Some(m) => (Some(m), format!("auto: {}, {m} usable", skipped.join(", "))),
                None => (
                    None,
                    format!("auto: no usable capture mode: {}", skipped.join(", ")),
                ),
            }
        }
        RequestedMode::Ebpf | RequestedMode::Audit => {
            let want = if requested == RequestedMode::Ebpf {
                Mode::Ebpf
            } else {
                Mode::Audit
            };
            let rung = rungs
                .iter()
                .find(|r| r.mode == want)
                .expect("every mode has a rung");
            if rung.usable {
                (Some(want), format!("requested {want}: usable"))
            } else {
                (
                    None,
                    format!("requested {want} is not usable: {}", rung.reason),
                )
            }
        }
    };

    ModeDecision {
        mode,
        reason,
        rungs,
    }
}

fn ebpf_rung(caps: &HostCapabilities, offsets: &Result<(), String>) -> Rung {
    let mut failing = Vec::new();
    if !caps.btf.ok {
        failing.push(format!("BTF unavailable: {}", caps.btf.detail));
    }
    if !caps.bpf_syscall.ok {
        failing.push(format!(
            "bpf() syscall unusable: {}",
            caps.bpf_syscall.detail
        ));
    }
    if !caps.ringbuf.ok {
        failing.push(format!(
            "BPF ring buffer unavailable: {}",
            caps.ringbuf.detail
        ));
    }
    if !caps.tracefs.ok {
        failing.push(format!("tracefs unavailable: {}", caps.tracefs.detail));
    }
    if let Err(e) = offsets {
        failing.push(format!("kernel struct offsets unresolved: {e}"));
    }
    if caps.lockdown.as_deref() == Some("confidentiality") {
        failing.push(
            "kernel lockdown is confidentiality (BPF may not read kernel memory)".to_string(),
        );
    }
    if failing.is_empty() {
        let lockdown = caps.lockdown.as_deref().unwrap_or("not reported");
        Rung {
            mode: Mode::Ebpf,
            usable: true,
            reason: format!(
                "BTF, bpf(), ring buffer, tracefs and kernel offsets available; lockdown {lockdown}"
            ),
        }
    } else {
        Rung {
            mode: Mode::Ebpf,
            usable: false,
            reason: failing.join("; "),
        }
    }
}

fn audit_rung(caps: &HostCapabilities, audit_implemented: bool) -> Rung {
    let mut failing = Vec::new();
    if !audit_implemented {
        failing.push("audit source not built yet".to_string());
    }
    if !caps.audit.ok {
        failing.push(format!("audit netlink unavailable: {}", caps.audit.detail));
    }
    if !caps.audit_coexist.ok {
        failing.push(caps.audit_coexist.detail.clone());
    }
    if failing.is_empty() {
        Rung {
            mode: Mode::Audit,
            usable: true,
            reason: format!("audit netlink answers ({})", caps.audit.detail),
        }
    } else {
        Rung {
            mode: Mode::Audit,
            usable: false,
            reason: failing.join("; "),
        }
    }
}

// ---------------------------------------------------------------------------
// Report (pure)
// ---------------------------------------------------------------------------

/// Human-readable report for `sensor probe`: one line per capability, then each
/// rung (usable/skipped with its reason), then the chosen mode.
pub fn render_report(caps: &HostCapabilities, decision: &ModeDecision) -> String {
    use std::fmt::Write as _;

    fn line(out: &mut String, name: &str, c: &Check) {
        let status = if c.ok { "ok" } else { "FAIL" };
        let _ = writeln!(out, "{name:<16} {status:<4}  {}", c.detail);
    }

    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {}", "kernel release", caps.kernel_release);
    line(&mut out, "btf", &caps.btf);
    line(&mut out, "bpf syscall", &caps.bpf_syscall);
    line(&mut out, "bpf ringbuf", &caps.ringbuf);
    line(&mut out, "tracefs", &caps.tracefs);
    let lockdown = caps
        .lockdown
        .as_deref()
        .unwrap_or("not reported (/sys/kernel/security/lockdown absent)");
    let _ = writeln!(out, "{:<16} {lockdown}", "lockdown");
    line(&mut out, "audit netlink", &caps.audit);
    line(&mut out, "audit beside", &caps.audit_coexist);
    line(&mut out, "fanotify fid", &caps.fanotify_fid);
    line(&mut out, "fanotify fd", &caps.fanotify_fd);
    line(&mut out, "conntrack", &caps.conntrack);
    for c in &caps.coverage {
        let _ = writeln!(out, "{:<28} {:<5}  {}", c.what, c.status(), c.detail);
    }
    for r in &decision.rungs {
        let state = if r.usable { "usable" } else { "skipped" };
        let _ = writeln!(out, "rung {:<11} {state:<7}  {}", r.mode.as_str(), r.reason);
    }
    match decision.mode {
        Some(m) => {
            let _ = writeln!(out, "mode: {m} ({})", decision.reason);
        }
        None => {
            let _ = writeln!(out, "mode: none ({})", decision.reason);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Kernel-facing probes (thin)
// ---------------------------------------------------------------------------

const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const LOCKDOWN: &str = "/sys/kernel/security/lockdown";
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const SCHED_EXEC_EVENT: &str = "events/sched/sched_process_exec";
const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const CONNTRACK_ACCT: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const AUDIT_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Probe the host. Never panics; every failure ends up in a [`Check`].
pub fn probe() -> HostCapabilities {
    let audit_status = audit_get_status();
    let caps = HostCapabilities {
        kernel_release: kernel_release(),
        btf: check_btf().into(),
        bpf_syscall: check_bpf_syscall().into(),
        ringbuf: check_ringbuf().into(),
        tracefs: check_tracefs().into(),
        lockdown: read_lockdown(),
        audit: audit_status
            .as_ref()
            .map(|s| s.to_string())
            .map_err(|e| e.clone())
            .into(),
        audit_coexist: audit_coexist(audit_status.as_ref().ok()),
        fanotify_fid: fanotify_probe(
            libc::FAN_CLASS_NOTIF
                | libc::FAN_CLOEXEC
                | libc::FAN_REPORT_DFID_NAME
                | libc::FAN_REPORT_FID,
            "fanotify_init(FAN_CLASS_NOTIF|FAN_CLOEXEC|FAN_REPORT_DFID_NAME|FAN_REPORT_FID)",
        )
        .into(),
        fanotify_fd: fanotify_probe(
            libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC,
            "fanotify_init(FAN_CLASS_NOTIF|FAN_CLOEXEC)",
        )
        .into(),
        conntrack: check_conntrack().into(),
        coverage: crate::blind_spots::probe(),
    };
    tracing::debug!(?caps, "host capability probe");
    caps
}

fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; uname fills it in.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return format!("unknown ({})", ProbeError::last_os("uname"));
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let s = String::from_utf8_lossy(&bytes).into_owned();
    if s.is_empty() {
        "unknown".to_string()
    } else {
        s
    }
}

fn check_btf() -> Result<String, ProbeError> {
    let path = Path::new(BTF_VMLINUX);
    let mut f = fs::File::open(path).map_err(|e| ProbeError::io("open", path, e))?;
    let mut magic = [0u8; 2];
    f.read_exact(&mut magic)
        .map_err(|e| ProbeError::io("read", path, e))?;
    // BTF magic 0xEB9F in the file's (= host's) byte order.
    if u16::from_ne_bytes(magic) != 0xEB9F {
        return Err(ProbeError::Malformed {
            what: "BTF",
            message: format!("{BTF_VMLINUX} does not start with the BTF magic"),
        });
    }
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(format!("{BTF_VMLINUX} readable ({size} bytes)"))
}

/// `union bpf_attr` prefix for BPF_MAP_CREATE, zero-padded to 72 bytes.
#[repr(C)]
#[derive(Default)]
struct BpfMapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    _rest: [u32; 13],
}

/// `bpf(BPF_MAP_CREATE, ...)`; returns the map fd or the errno.
fn bpf_map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Result<OwnedFd, i32> {
    let attr = BpfMapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        ..Default::default()
    };
    // SAFETY: attr is a fully initialised, zero-padded repr(C) struct that
    // outlives the call; the size passed is its exact size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const BpfMapCreateAttr,
            std::mem::size_of::<BpfMapCreateAttr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: the kernel returned a new fd that we exclusively own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Extra context for a failed map creation (does not influence decisions).
fn map_create_hint(errno: i32) -> String {
    match errno {
        libc::EPERM => {
            let mut hint = String::new();
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                hint.push_str(" (not root: needs CAP_BPF/CAP_SYS_ADMIN)");
            } else {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: valid pointer to an rlimit.
                let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
                if rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY {
                    hint.push_str(&format!(
                        " (RLIMIT_MEMLOCK is {} bytes; kernels that charge BPF maps to it need it raised)",
                        lim.rlim_cur
                    ));
                } else {
                    hint.push_str(" (as root: check LSM policy / lockdown)");
                }
            }
            hint
        }
        _ => String::new(),
    }
}

fn check_bpf_syscall() -> Result<String, ProbeError> {
    match bpf_map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1) {
        Ok(fd) => {
            drop(fd);
            Ok("bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_ARRAY) ok".to_string())
        }
        Err(errno) => Err(ProbeError::Unavailable(format!(
            "{}{}",
            ProbeError::sys("bpf(BPF_MAP_CREATE)", errno),
            map_create_hint(errno)
        ))),
    }
}

fn check_ringbuf() -> Result<String, ProbeError> {
    // Ring buffer size must be a power-of-two multiple of the page size.
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = u32::try_from(page)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096)
        .max(4096);
    match bpf_map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, size) {
        Ok(fd) => {
            drop(fd);
            Ok(format!(
                "bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_RINGBUF, {size} bytes) ok"
            ))
        }
        Err(errno) => {
            let hint = if errno == libc::EINVAL {
                " (ring buffer map type not supported by this kernel)".to_string()
            } else {
                map_create_hint(errno)
            };
            Err(ProbeError::Unavailable(format!(
                "{}{hint}",
                ProbeError::sys("bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_RINGBUF)", errno)
            )))
        }
    }
}

fn check_tracefs() -> Result<String, ProbeError> {
    let mut mounted_without_event = None;
    let mut denied = None;
    let mut unreadable = None;
    for root in TRACEFS_ROOTS {
        let event = Path::new(root).join(SCHED_EXEC_EVENT);
        match fs::metadata(&event) {
            Ok(_) => {
                let id = fs::read_to_string(event.join("id"))
                    .ok()
                    .map(|s| format!(" (id {})", s.trim()))
                    .unwrap_or_default();
                return Ok(format!("{}{id}", event.display()));
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                denied.get_or_insert_with(|| ProbeError::io("stat", &event, e).to_string());
            }
            Err(e) => {
                if Path::new(root).join("events").is_dir() {
                    mounted_without_event.get_or_insert_with(|| root.to_string());
                } else if is_mount_of(
                    &fs::read_to_string("/proc/mounts").unwrap_or_default(),
                    root,
                    "tracefs",
                ) {
                    // lockdown=confidentiality leaves tracefs mountable but empty.
                    unreadable.get_or_insert_with(|| {
                        format!(
                            "tracefs is mounted at {root} but {} cannot be read ({e}; kernel lockdown?)",
                            event.display()
                        )
                    });
                }
            }
        }
    }
    if let Some(d) = denied.or(unreadable) {
        return Err(ProbeError::Unavailable(d));
    }
    if let Some(root) = mounted_without_event {
        return Err(ProbeError::Unavailable(format!(
            "tracefs mounted at {root} but {SCHED_EXEC_EVENT} is missing"
        )));
    }
    let supported = fs::read_to_string("/proc/filesystems")
        .map(|t| t.split_whitespace().any(|w| w == "tracefs"))
        .unwrap_or(true);
    if !supported {
        return Err(ProbeError::Unavailable(
            "tracefs not supported by this kernel (absent from /proc/filesystems)".to_string(),
        ));
    }
    Err(ProbeError::Unavailable(
        "tracefs not mounted (mount -t tracefs tracefs /sys/kernel/tracing)".to_string(),
    ))
}

/// Whether `/proc/mounts` text lists a mount of type `fstype` at `path`.
pub fn is_mount_of(mounts: &str, path: &str, fstype: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace().skip(1);
        f.next() == Some(path) && f.next() == Some(fstype)
    })
}

fn read_lockdown() -> Option<String> {
    let text = fs::read_to_string(LOCKDOWN).ok()?;
    let parsed = parse_lockdown(&text);
    if parsed.is_none() {
        tracing::warn!(text = text.trim(), "unrecognised {LOCKDOWN} contents");
    }
    parsed
}

fn fanotify_probe(flags: libc::c_uint, call: &str) -> Result<String, ProbeError> {
    // SAFETY: fanotify_init takes plain integer flags.
    let fd = unsafe { libc::fanotify_init(flags, libc::O_RDONLY as libc::c_uint) };
    if fd < 0 {
        return Err(ProbeError::last_os(call));
    }
    // SAFETY: fresh fd that we exclusively own; closed on drop.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(format!("{call} ok"))
}

fn check_conntrack() -> Result<String, ProbeError> {
    let path = Path::new(CONNTRACK_MAX);
    let max = fs::read_to_string(path).map_err(|e| ProbeError::io("open", path, e))?;
    let acct = match fs::read_to_string(CONNTRACK_ACCT) {
        Ok(v) => v.trim().to_string(),
        Err(e) => ProbeError::io("open", Path::new(CONNTRACK_ACCT), e).to_string(),
    };
    Ok(format!(
        "nf_conntrack_max={} nf_conntrack_acct={acct}",
        max.trim()
    ))
}

/// auditd's presence and the multicast group, as one check: it fails only when another daemon
/// holds the slot and this kernel has no way to read beside it (the sensor will not take it).
fn audit_coexist(status: Option<&AuditStatus>) -> Check {
    use crate::sources::audit::coexist;
    let auditd = coexist::host_auditd();
    let multicast = coexist::host_multicast();
    let mut detail = coexist::describe(&auditd, &multicast);
    let held_by = status.map_or(0, |s| s.pid);
    match coexist::plan(held_by, std::process::id(), &auditd, &multicast) {
        coexist::Plan::Refuse { why } => Check::fail(why),
        plan => {
            if held_by != 0 {
                detail.push_str(&format!("; audit daemon slot held by pid {held_by}"));
            }
            if let coexist::Plan::Multicast { daemon_pid: 0, .. } = plan {
                detail.push_str("; the daemon slot is left free for auditd");
            }
            Check::pass(detail)
        }
    }
}

/// Open a NETLINK_AUDIT socket, send AUDIT_GET and parse the status reply.
/// Bounded by a 1 s receive timeout.
fn audit_get_status() -> Result<AuditStatus, ProbeError> {
    // SAFETY: plain socket(2) call.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_AUDIT,
        )
    };
    if raw < 0 {
        return Err(ProbeError::last_os("socket(AF_NETLINK, NETLINK_AUDIT)"));
    }
    // SAFETY: fresh fd that we exclusively own.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let fd = sock.as_raw_fd();

    let tv = libc::timeval {
        tv_sec: AUDIT_REPLY_TIMEOUT.as_secs() as _,
        tv_usec: AUDIT_REPLY_TIMEOUT.subsec_micros() as _,
    };
    // SAFETY: valid fd, pointer to a timeval of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(ProbeError::last_os("setsockopt(SO_RCVTIMEO)"));
    }

    // SAFETY: sockaddr_nl is plain old data.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let seq: u32 = 1;
    let req = build_audit_get_request(seq);
    // SAFETY: valid fd, buffer and address of the stated sizes.
    let sent = unsafe {
        libc::sendto(
            fd,
            req.as_ptr() as *const libc::c_void,
            req.len(),
            0,
            &kernel as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(ProbeError::last_os("sendto(AUDIT_GET)"));
    }

    let deadline = Instant::now() + AUDIT_REPLY_TIMEOUT;
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: sockaddr_nl is plain old data.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: valid fd, buffer and address out-pointers of the stated sizes.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut from as *mut libc::sockaddr_nl as *mut libc::sockaddr,
                &mut from_len,
            )
        };
        if n < 0 {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if errno == libc::EINTR && Instant::now() < deadline {
                continue;
            }
            if errno == libc::EAGAIN || errno == libc::EWOULDBLOCK {
                return Err(ProbeError::Timeout {
                    what: "AUDIT_GET",
                    timeout: AUDIT_REPLY_TIMEOUT,
                });
            }
            return Err(ProbeError::sys("recvfrom(NETLINK_AUDIT)", errno));
        }
        // Only trust datagrams from the kernel (port id 0).
        if from.nl_pid == 0 {
            if let Some(status) = parse_audit_get_reply(&buf[..n as usize], seq)? {
                return Ok(status);
            }
        }
        if Instant::now() >= deadline {
            return Err(ProbeError::Timeout {
                what: "AUDIT_GET",
                timeout: AUDIT_REPLY_TIMEOUT,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_mount_of_matches_path_and_type() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
                      tracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n\
                      debugfs /sys/kernel/debug debugfs rw 0 0\n";
        assert!(is_mount_of(mounts, "/sys/kernel/tracing", "tracefs"));
        assert!(!is_mount_of(mounts, "/sys/kernel/debug/tracing", "tracefs"));
        assert!(!is_mount_of(mounts, "/sys/kernel/debug", "tracefs"));
        assert!(!is_mount_of("", "/sys/kernel/tracing", "tracefs"));
    }

    fn good_caps() -> HostCapabilities {
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

    fn rung(d: &ModeDecision, m: Mode) -> &Rung {
        d.rungs.iter().find(|r| r.mode == m).unwrap()
    }

    // ---- choose_mode ----

    #[test]
    fn all_good_auto_picks_ebpf() {
        let d = choose_mode(&good_caps(), Ok(()), true, RequestedMode::Auto);
        assert_eq!(d.mode, Some(Mode::Ebpf));
        assert_eq!(d.rungs.len(), 2);
        assert_eq!(d.rungs[0].mode, Mode::Ebpf);
        assert_eq!(d.rungs[1].mode, Mode::Audit);
        assert!(rung(&d, Mode::Ebpf).usable);
        assert!(rung(&d, Mode::Audit).usable);
        assert!(d.reason.contains("ebpf"), "{}", d.reason);
    }

    #[test]
    fn no_btf_falls_back_to_audit() {
        let mut caps = good_caps();
        caps.btf = Check::fail("ENOENT from open(/sys/kernel/btf/vmlinux)");
        let d = choose_mode(&caps, Ok(()), true, RequestedMode::Auto);
        assert_eq!(d.mode, Some(Mode::Audit));
        let e = rung(&d, Mode::Ebpf);
        assert!(!e.usable);
        assert!(e.reason.contains("BTF"), "{}", e.reason);
        assert!(d.reason.contains("BTF"), "{}", d.reason);
    }

    #[test]
    fn no_btf_and_no_audit_source_is_none() {
        let mut caps = good_caps();
        caps.btf = Check::fail("ENOENT from open(/sys/kernel/btf/vmlinux)");
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        assert_eq!(d.mode, None);
        assert!(d.reason.contains("BTF"), "{}", d.reason);
        assert!(
            d.reason.contains("audit source not built yet"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn lockdown_confidentiality_blocks_ebpf() {
        let mut caps = good_caps();
        caps.lockdown = Some("confidentiality".into());
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        assert_eq!(d.mode, None);
        let e = rung(&d, Mode::Ebpf);
        assert!(!e.usable);
        assert!(e.reason.contains("confidentiality"), "{}", e.reason);

        // integrity does not block.
        caps.lockdown = Some("integrity".into());
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        assert_eq!(d.mode, Some(Mode::Ebpf));
        // absent does not block.
        caps.lockdown = None;
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        assert_eq!(d.mode, Some(Mode::Ebpf));
    }

    #[test]
    fn ebpf_reason_lists_every_failure() {
        let mut caps = good_caps();
        caps.btf = Check::fail("no btf");
        caps.bpf_syscall = Check::fail("EPERM from bpf(BPF_MAP_CREATE)");
        caps.ringbuf = Check::fail("EINVAL ringbuf");
        caps.tracefs = Check::fail("tracefs not mounted");
        caps.lockdown = Some("confidentiality".into());
        let d = choose_mode(
            &caps,
            Err("task_struct.tgid missing".into()),
            false,
            RequestedMode::Auto,
        );
        let r = &rung(&d, Mode::Ebpf).reason;
        for needle in [
            "BTF",
            "EPERM from bpf(BPF_MAP_CREATE)",
            "ring buffer",
            "tracefs",
            "task_struct.tgid missing",
            "confidentiality",
        ] {
            assert!(r.contains(needle), "missing {needle:?} in {r}");
        }
    }

    #[test]
    fn offsets_error_blocks_ebpf() {
        let d = choose_mode(
            &good_caps(),
            Err("cred.uid".into()),
            true,
            RequestedMode::Auto,
        );
        assert_eq!(d.mode, Some(Mode::Audit));
        assert!(rung(&d, Mode::Ebpf).reason.contains("cred.uid"));
    }

    #[test]
    fn forced_ebpf_unusable_is_none_with_reason() {
        let mut caps = good_caps();
        caps.ringbuf = Check::fail("EINVAL from bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_RINGBUF)");
        let d = choose_mode(&caps, Ok(()), true, RequestedMode::Ebpf);
        assert_eq!(d.mode, None);
        assert!(d.reason.contains("ebpf"), "{}", d.reason);
        assert!(d.reason.contains("ring buffer"), "{}", d.reason);
        // Audit is usable but was not requested: still reported as a rung.
        assert!(rung(&d, Mode::Audit).usable);
    }

    #[test]
    fn forced_modes_when_usable() {
        let d = choose_mode(&good_caps(), Ok(()), true, RequestedMode::Ebpf);
        assert_eq!(d.mode, Some(Mode::Ebpf));
        let d = choose_mode(&good_caps(), Ok(()), true, RequestedMode::Audit);
        assert_eq!(d.mode, Some(Mode::Audit));
    }

    #[test]
    fn audit_not_implemented_is_unusable() {
        let d = choose_mode(&good_caps(), Ok(()), false, RequestedMode::Audit);
        assert_eq!(d.mode, None);
        let a = rung(&d, Mode::Audit);
        assert!(!a.usable);
        assert_eq!(a.reason, "audit source not built yet");
        assert!(d.reason.contains("audit source not built yet"));
    }

    #[test]
    fn audit_beside_auditd_without_multicast_is_unusable() {
        let mut caps = good_caps();
        caps.btf = Check::fail("no btf");
        caps.audit_coexist = Check::fail(format!(
            "the audit daemon slot is held by pid 9 and {}",
            crate::sources::audit::coexist::NO_MULTICAST
        ));
        let d = choose_mode(&caps, Ok(()), true, RequestedMode::Auto);
        assert_eq!(d.mode, None);
        let a = rung(&d, Mode::Audit);
        assert!(!a.usable);
        assert!(
            a.reason
                .contains("reading beside a running auditd is impossible"),
            "{}",
            a.reason
        );
        assert!(
            d.reason
                .contains("reading beside a running auditd is impossible"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn audit_netlink_failure_is_unusable() {
        let mut caps = good_caps();
        caps.audit = Check::fail("EPROTONOSUPPORT from socket(AF_NETLINK, NETLINK_AUDIT)");
        let d = choose_mode(&caps, Ok(()), true, RequestedMode::Audit);
        assert_eq!(d.mode, None);
        assert!(d.reason.contains("EPROTONOSUPPORT"), "{}", d.reason);
    }

    #[test]
    fn mode_serde_and_parse() {
        assert_eq!(serde_json::to_string(&Mode::Ebpf).unwrap(), "\"ebpf\"");
        assert_eq!(
            serde_json::from_str::<Mode>("\"audit\"").unwrap(),
            Mode::Audit
        );
        assert_eq!(
            "AUTO".parse::<RequestedMode>().unwrap(),
            RequestedMode::Auto
        );
        assert_eq!(
            "ebpf".parse::<RequestedMode>().unwrap(),
            RequestedMode::Ebpf
        );
        assert!("kprobe".parse::<RequestedMode>().is_err());
    }

    // ---- lockdown ----

    #[test]
    fn lockdown_parsing() {
        assert_eq!(
            parse_lockdown("none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
        assert_eq!(
            parse_lockdown("[none] integrity confidentiality\n").as_deref(),
            Some("none")
        );
        assert_eq!(
            parse_lockdown("none integrity [confidentiality]").as_deref(),
            Some("confidentiality")
        );
        assert_eq!(parse_lockdown(""), None);
        assert_eq!(parse_lockdown("none integrity"), None);
        assert_eq!(parse_lockdown("[unterminated"), None);
        assert_eq!(parse_lockdown("[]"), None);
    }

    // ---- errno ----

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(libc::ENOSYS), "ENOSYS");
        assert_eq!(errno_name(libc::EACCES), "EACCES");
        assert_eq!(errno_name(libc::EPROTONOSUPPORT), "EPROTONOSUPPORT");
        assert_eq!(errno_name(524), "ENOTSUPP");
        assert_eq!(errno_name(99999), "errno 99999");
        assert_eq!(
            ProbeError::sys("bpf(BPF_MAP_CREATE)", libc::EPERM).to_string(),
            "EPERM from bpf(BPF_MAP_CREATE)"
        );
    }

    // ---- audit netlink ----

    fn nlmsg(ty: u16, flags: u16, seq: u32, pid: u32, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&pid.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// struct audit_status as a modern kernel sends it (11 u32 = 44 bytes).
    fn status_payload() -> Vec<u8> {
        let fields: [u32; 11] = [
            0,      // mask
            1,      // enabled
            1,      // failure
            4242,   // pid
            0,      // rate_limit
            8192,   // backlog_limit
            17,     // lost
            3,      // backlog
            0x7f,   // feature_bitmap
            60_000, // backlog_wait_time
            0,      // backlog_wait_time_actual
        ];
        fields.iter().flat_map(|f| f.to_ne_bytes()).collect()
    }

    #[test]
    fn request_layout() {
        let r = build_audit_get_request(7);
        assert_eq!(r.len(), 16);
        assert_eq!(ne_u32(&r, 0), 16);
        assert_eq!(ne_u16(&r, 4), 1000);
        assert_eq!(ne_u16(&r, 6), NLM_F_REQUEST);
        assert_eq!(ne_u32(&r, 8), 7);
        assert_eq!(ne_u32(&r, 12), 0);
    }

    #[test]
    fn audit_status_from_fixture() {
        let buf = nlmsg(AUDIT_GET, 0, 1, 0, &status_payload());
        let st = parse_audit_get_reply(&buf, 1).unwrap().unwrap();
        assert_eq!(
            st,
            AuditStatus {
                mask: 0,
                enabled: 1,
                failure: 1,
                pid: 4242,
                rate_limit: 0,
                backlog_limit: 8192,
                lost: 17,
                backlog: 3,
                feature_bitmap: Some(0x7f),
            }
        );
        assert_eq!(
            st.to_string(),
            "enabled=1 pid=4242 backlog_limit=8192 lost=17"
        );
    }

    #[test]
    fn audit_status_after_ack_and_old_short_struct() {
        // An ack (NLMSG_ERROR with error 0) followed by an old 32-byte status.
        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend_from_slice(&build_audit_get_request(1));
        let mut buf = nlmsg(NLMSG_ERROR, 0, 1, 0, &ack);
        buf.extend(nlmsg(AUDIT_GET, 0, 1, 0, &status_payload()[..32]));
        let st = parse_audit_get_reply(&buf, 1).unwrap().unwrap();
        assert_eq!(st.pid, 4242);
        assert_eq!(st.backlog, 3);
        assert_eq!(st.feature_bitmap, None);
    }

    #[test]
    fn audit_error_reply_is_errno() {
        let mut payload = (-libc::EPERM).to_ne_bytes().to_vec();
        payload.extend_from_slice(&build_audit_get_request(1));
        let buf = nlmsg(NLMSG_ERROR, 0, 1, 0, &payload);
        let e = parse_audit_get_reply(&buf, 1).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EPERM));
        assert!(e.to_string().starts_with("EPERM from "), "{e}");
    }

    #[test]
    fn audit_other_seq_and_ack_only_is_none() {
        let buf = nlmsg(AUDIT_GET, 0, 99, 0, &status_payload());
        assert_eq!(parse_audit_get_reply(&buf, 1).unwrap(), None);
        let buf = nlmsg(NLMSG_ERROR, 0, 1, 0, &0i32.to_ne_bytes());
        assert_eq!(parse_audit_get_reply(&buf, 1).unwrap(), None);
    }

    #[test]
    fn audit_truncated_and_garbage_are_errors() {
        let good = nlmsg(AUDIT_GET, 0, 1, 0, &status_payload());
        // Every strict prefix fails cleanly (never panics, never Ok(Some)).
        for cut in 0..good.len() {
            let r = parse_audit_get_reply(&good[..cut], 1);
            assert!(r.is_err(), "prefix {cut} gave {r:?}");
        }
        // Status payload too short for the fields we need.
        let short = nlmsg(AUDIT_GET, 0, 1, 0, &status_payload()[..20]);
        assert!(matches!(
            parse_audit_get_reply(&short, 1),
            Err(ProbeError::Truncated { .. })
        ));
        // nlmsg_len smaller than the header.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            parse_audit_get_reply(&bad, 1),
            Err(ProbeError::Malformed { .. })
        ));
        // nlmsg_len beyond the buffer.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse_audit_get_reply(&bad, 1).is_err());
        // NLMSG_ERROR without room for the error code.
        let bad = nlmsg(NLMSG_ERROR, 0, 1, 0, &[1, 2]);
        assert!(parse_audit_get_reply(&bad, 1).is_err());
        // i32::MIN error code does not overflow.
        let bad = nlmsg(NLMSG_ERROR, 0, 1, 0, &i32::MIN.to_ne_bytes());
        assert!(parse_audit_get_reply(&bad, 1).is_err());
        // Pseudo-random garbage: any result, but no panic.
        let mut x: u32 = 0x1234_5678;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = parse_audit_get_reply(&junk, 1);
        }
    }

    // ---- report ----

    #[test]
    fn report_mentions_everything() {
        let caps = good_caps();
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        let r = render_report(&caps, &d);
        assert!(r.contains("6.1.0-test"));
        assert!(r.contains("rung ebpf"));
        assert!(r.contains("usable"));
        assert!(r.contains("skipped  audit source not built yet"), "{r}");
        assert!(r
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("mode: ebpf ("));

        let mut caps = good_caps();
        caps.tracefs = Check::fail("tracefs not mounted");
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        let r = render_report(&caps, &d);
        assert!(r.contains("FAIL"));
        assert!(r
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("mode: none ("));
    }

    // ---- real host ----

    #[test]
    fn probe_host_does_not_panic() {
        let caps = probe();
        assert!(!caps.kernel_release.is_empty());
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        let report = render_report(&caps, &d);
        assert!(!report.is_empty());
        // Visible with --nocapture.
        println!("{report}");
        println!("{}", serde_json::to_string(&caps).unwrap());
    }
}
