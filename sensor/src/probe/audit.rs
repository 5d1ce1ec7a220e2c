//! The audit rung's checks (thin): AUDIT_GET over the project's netlink socket, and whether
//! the sensor can read beside a running audit daemon.
use std::time::{Duration, Instant};

use super::error::ProbeError;
use super::types::Check;
use crate::sources::audit::status::{build_audit_get_request, parse_audit_get_reply, AuditStatus};
use crate::sources::netlink::NetlinkSocket;

const AUDIT_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// auditd's presence and the multicast group, as one check: it fails only when another daemon
/// holds the slot and this kernel has no way to read beside it (the sensor will not take it).
pub(super) fn audit_coexist(status: Option<&AuditStatus>) -> Check {
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
/// Bounded by a 1 s receive timeout; only datagrams from the kernel are read.
pub(super) fn audit_get_status() -> Result<AuditStatus, ProbeError> {
    let mut sock = NetlinkSocket::open(libc::SOCK_RAW, libc::NETLINK_AUDIT, 0, 8192)
        .map_err(|e| ProbeError::from_os("socket(AF_NETLINK, NETLINK_AUDIT)", &e))?;
    sock.set_timeout(AUDIT_REPLY_TIMEOUT)
        .map_err(|e| ProbeError::from_os("setsockopt(SO_RCVTIMEO)", &e))?;
    let seq: u32 = 1;
    sock.send(&build_audit_get_request(seq))
        .map_err(|e| ProbeError::from_os("sendto(AUDIT_GET)", &e))?;
    let timeout = ProbeError::Timeout {
        what: "AUDIT_GET",
        timeout: AUDIT_REPLY_TIMEOUT,
    };
    let deadline = Instant::now() + AUDIT_REPLY_TIMEOUT;
    loop {
        match sock.recv() {
            Ok(Some(buf)) => {
                if let Some(status) = parse_audit_get_reply(buf, seq)? {
                    return Ok(status);
                }
            }
            Ok(None) => return Err(timeout),
            Err(e) => return Err(ProbeError::from_os("recvfrom(NETLINK_AUDIT)", &e)),
        }
        if Instant::now() >= deadline {
            return Err(timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::audit::status::StatusError;

    #[test]
    fn kernel_error_reads_as_errno_from_the_call() {
        let e = ProbeError::from(StatusError::Kernel { errno: libc::EPERM });
        assert_eq!(e.errno(), Some(libc::EPERM));
        assert!(e.to_string().starts_with("EPERM from "), "{e}");
        assert_eq!(e.to_string(), "EPERM from netlink AUDIT_GET");
    }
}
