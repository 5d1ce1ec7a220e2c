//! Living beside auditd (docs/ARCHITECTURE.md, "Audit netlink"): whether auditd is installed,
//! enabled at boot or running, whether this kernel lets a second reader see the audit log
//! (the multicast group), and from that the arrangement the sensor uses. The decision
//! (`plan`) is pure; the host facts are read by thin functions below it.
use std::path::Path;

use super::control::AuditSocket;

/// CAP_AUDIT_READ, added together with AUDIT_NLGRP_READLOG in Linux 3.16.
pub const CAP_AUDIT_READ: u32 = 37;

/// The words `sensor probe` and the health reason use when the multicast group is missing.
pub const NO_MULTICAST: &str =
    "reading beside a running auditd is impossible on this kernel: no audit multicast log group";

/// What the host has of auditd. "Installed" means an auditd executable exists; "enabled" means
/// the init system that is actually running (systemd, or sysvinit as PID 1) will start it;
/// "running" is read from the audit daemon slot itself (`AuditStatus::pid`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditdPresence {
    pub installed: Option<String>,
    pub enabled: Option<String>,
}

/// How the sensor takes part in audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The slot is free and nothing will claim it at boot: register as the audit daemon, and
    /// hand the slot to auditd the moment it starts.
    TakeSlot { handover: bool },
    /// Read the multicast log group; the slot stays with (or is left free for) auditd.
    Multicast { daemon_pid: u32, why: String },
    /// Another daemon holds the slot and there is no way to read beside it.
    Refuse { why: String },
}

/// The arrangement for a kernel whose slot holds `daemon_pid` (0 = free).
pub fn plan(
    daemon_pid: u32,
    me: u32,
    auditd: &AuditdPresence,
    multicast: &Result<(), String>,
) -> Plan {
    if daemon_pid != 0 && daemon_pid != me {
        return match multicast {
            Ok(()) => Plan::Multicast {
                daemon_pid,
                why: format!(
                    "reading the audit multicast group beside the audit daemon (pid {daemon_pid})"
                ),
            },
            Err(e) => Plan::Refuse {
                why: format!(
                    "the audit daemon slot is held by pid {daemon_pid} and {NO_MULTICAST} ({e}); \
                     the sensor does not take the slot from it"
                ),
            },
        };
    }
    match (&auditd.enabled, multicast) {
        (Some(how), Ok(())) => Plan::Multicast {
            daemon_pid: 0,
            why: format!(
                "reading the audit multicast group; the audit daemon slot is left free for \
                 auditd ({how})"
            ),
        },
        _ => Plan::TakeSlot {
            handover: multicast.is_ok(),
        },
    }
}

/// Whether this kernel delivers the audit log to a second reader: CAP_AUDIT_READ must be
/// known (`cap_last_cap`, 3.16+; an older kernel accepts the group join but never sends on
/// it) and the join itself must succeed.
pub fn multicast_check(
    cap_last_cap: Option<u32>,
    join: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    if let Some(last) = cap_last_cap {
        if last < CAP_AUDIT_READ {
            return Err(format!(
                "AUDIT_NLGRP_READLOG needs Linux 3.16 (CAP_AUDIT_READ unknown: cap_last_cap={last})"
            ));
        }
    }
    join()
}

/// Which init system runs, from what PID 1 is and whether systemd's runtime dir exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Systemd,
    SysV,
    Other,
}

/// "enabled": the running init system starts auditd at boot. `systemd_wants` are the unit
/// names found in `/etc/systemd/system/*.wants/`; `rc_links` the names in `/etc/rc[2-5].d/`.
pub fn enabled_by(init: Init, systemd_wants: &[String], rc_links: &[String]) -> Option<String> {
    match init {
        Init::Systemd => systemd_wants
            .iter()
            .any(|u| u == "auditd.service")
            .then(|| "systemd unit auditd.service is enabled".to_string()),
        Init::SysV => rc_links
            .iter()
            .find(|l| l.starts_with('S') && l.ends_with("auditd"))
            .map(|l| format!("sysvinit start link {l}")),
        Init::Other => None,
    }
}

// ---- host facts (thin) ----

fn read_dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads what the host has of auditd.
pub fn host_auditd() -> AuditdPresence {
    let installed = ["/sbin/auditd", "/usr/sbin/auditd"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .map(str::to_string);
    let init = if Path::new("/run/systemd/system").is_dir() {
        Init::Systemd
    } else if std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "init") {
        Init::SysV
    } else {
        Init::Other
    };
    let wants: Vec<String> = read_dir_names(Path::new("/etc/systemd/system"))
        .into_iter()
        .filter(|d| d.ends_with(".wants"))
        .flat_map(|d| read_dir_names(&Path::new("/etc/systemd/system").join(d)))
        .collect();
    let rc: Vec<String> = (2..=5)
        .flat_map(|n| read_dir_names(Path::new(&format!("/etc/rc{n}.d"))))
        .collect();
    AuditdPresence {
        enabled: installed
            .as_ref()
            .and_then(|_| enabled_by(init, &wants, &rc)),
        installed,
    }
}

/// `multicast_check` against this kernel.
pub fn host_multicast() -> Result<(), String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    multicast_check(last, || {
        AuditSocket::open_multicast()
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// One line for `sensor probe`: the auditd facts and whether the sensor can read beside it.
pub fn describe(auditd: &AuditdPresence, multicast: &Result<(), String>) -> String {
    let mut s = match (&auditd.installed, &auditd.enabled) {
        (None, _) => "auditd not installed".to_string(),
        (Some(p), None) => format!("auditd installed ({p}), not enabled at boot"),
        (Some(p), Some(how)) => format!("auditd installed ({p}), enabled ({how})"),
    };
    match multicast {
        Ok(()) => s.push_str("; audit multicast group readable (reads beside a running auditd)"),
        Err(e) => s.push_str(&format!("; {NO_MULTICAST} ({e})")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> AuditdPresence {
        AuditdPresence {
            installed: Some("/sbin/auditd".into()),
            enabled: Some("systemd unit auditd.service is enabled".into()),
        }
    }

    #[test]
    fn running_daemon_is_never_replaced() {
        let p = plan(77, 5, &AuditdPresence::default(), &Ok(()));
        assert!(matches!(p, Plan::Multicast { daemon_pid: 77, .. }));
        let p = plan(77, 5, &enabled(), &Err("EPERM".into()));
        let Plan::Refuse { why } = p else {
            panic!("must refuse")
        };
        assert!(why.contains(NO_MULTICAST), "{why}");
        assert!(why.contains("pid 77"), "{why}");
        assert!(why.contains("does not take the slot"), "{why}");
    }

    #[test]
    fn enabled_auditd_gets_the_free_slot() {
        let p = plan(0, 5, &enabled(), &Ok(()));
        let Plan::Multicast { daemon_pid: 0, why } = p else {
            panic!("slot must stay free")
        };
        assert!(why.contains("left free for auditd"), "{why}");
        // Without multicast the slot is the only way to read; handed over when auditd starts.
        assert_eq!(
            plan(0, 5, &enabled(), &Err("x".into())),
            Plan::TakeSlot { handover: false }
        );
    }

    #[test]
    fn installed_only_takes_the_slot_with_handover() {
        let a = AuditdPresence {
            installed: Some("/usr/sbin/auditd".into()),
            enabled: None,
        };
        assert_eq!(plan(0, 5, &a, &Ok(())), Plan::TakeSlot { handover: true });
        // Our own pid in the slot (restart after a crash) is ours to take again.
        assert_eq!(plan(5, 5, &a, &Ok(())), Plan::TakeSlot { handover: true });
    }

    #[test]
    fn multicast_needs_cap_audit_read() {
        let e = multicast_check(Some(36), || Ok(())).unwrap_err();
        assert!(e.contains("3.16"), "{e}");
        assert_eq!(multicast_check(Some(40), || Ok(())), Ok(()));
        assert_eq!(
            multicast_check(None, || Err("EPERM".into())),
            Err("EPERM".into())
        );
    }

    #[test]
    fn enabled_only_by_the_running_init() {
        let wants = vec!["ssh.service".to_string(), "auditd.service".to_string()];
        let rc = vec!["S01auditd".to_string(), "K01auditd".to_string()];
        assert!(enabled_by(Init::Systemd, &wants, &[]).is_some());
        assert!(enabled_by(Init::Systemd, &wants[..1], &rc).is_none());
        assert_eq!(
            enabled_by(Init::SysV, &[], &rc).as_deref(),
            Some("sysvinit start link S01auditd")
        );
        assert!(enabled_by(Init::SysV, &[], &rc[1..]).is_none());
        // A container whose PID 1 is neither: links on disk start nothing.
        assert!(enabled_by(Init::Other, &wants, &rc).is_none());
    }

    #[test]
    fn describe_says_what_is_missing() {
        let d = describe(&enabled(), &Err("cap_last_cap=36".into()));
        assert!(d.contains(NO_MULTICAST) && d.contains("enabled"), "{d}");
        let d = describe(&AuditdPresence::default(), &Ok(()));
        assert!(d.starts_with("auditd not installed"), "{d}");
    }
}
