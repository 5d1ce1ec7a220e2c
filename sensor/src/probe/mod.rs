//! Host capability probe.
//!
//! Used by `sensor probe` (prints what it found) and by `sensor run --mode auto`
//! to choose the capture mode. Every decision is made by *probing features*
//! (creating a map, opening a socket, looking for a file); the kernel release is
//! only reported, never parsed.
//!
//! Layout, by rung:
//! * `types.rs`: what the probe reports ([`Check`], [`HostCapabilities`], the modes);
//! * `error.rs`: [`ProbeError`] and [`errno_name`];
//! * thin kernel-facing checks that only turn syscalls into `Result<_, ProbeError>`:
//!   `ebpf.rs` (BTF, bpf(), ring buffer, tracefs, lockdown), `audit.rs` (AUDIT_GET over
//!   [`crate::sources::netlink`], with the parser in [`crate::sources::audit::status`]),
//!   `files.rs` (fanotify) and `conntrack.rs`;
//! * pure logic, unit-tested without privileges: `choose.rs` ([`choose_mode`]) and
//!   `report.rs` ([`render_report`]).
mod audit;
pub mod blind_spots;
mod choose;
mod conntrack;
mod ebpf;
mod error;
mod files;
mod report;
mod types;

pub use choose::choose_mode;
pub use ebpf::{is_mount_of, parse_lockdown};
pub use error::{errno_name, ProbeError};
pub use report::render_report;
pub use types::{Check, HostCapabilities, Mode, ModeDecision, RequestedMode, Rung};

use audit::{audit_coexist, audit_get_status};
use conntrack::check_conntrack;
use ebpf::{check_bpf_syscall, check_btf, check_ringbuf, check_tracefs, read_lockdown};
use files::fanotify_probe;

/// Probe the host. Never panics; every failure ends up in a [`Check`]. `ia32` is the
/// configured `ebpf.ia32_hooks`: with "off" the ia32 rows name that blind spot, and the ia32
/// entry is not probed.
pub fn probe(ia32: crate::config::Ia32Hooks) -> HostCapabilities {
    HostCapabilities {
        coverage: crate::probe::blind_spots::probe(ia32),
        ..probe_checks()
    }
}

/// The capability checks alone, without the blind-spot rows (the gRPC Hello's capabilities).
pub fn probe_checks() -> HostCapabilities {
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
        coverage: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_host_does_not_panic() {
        let caps = probe(crate::config::Ia32Hooks::Auto);
        assert!(!caps.kernel_release.is_empty());
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        let report = render_report(&caps, &d);
        assert!(!report.is_empty());
        // Visible with --nocapture.
        println!("{report}");
        println!("{}", serde_json::to_string(&caps).unwrap());
    }
}
