//! Taking part in the kernel's audit system without breaking anyone else's: become the audit
//! daemon when the slot is free (or read the multicast log beside auditd), add our tagged rules,
//! repair them if someone deletes them, and on exit remove only our rules and restore the
//! previous enabled/pid/backlog state.
use super::coexist::{self, Plan};
use super::control::{
    AuditSocket, ControlError, SetStatus, STATUS_BACKLOG_LIMIT, STATUS_BACKLOG_WAIT_TIME,
    STATUS_ENABLED, STATUS_PID,
};
use super::handover::HandoverState;
use super::rules::{
    Rule, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, AUDIT_ARG0, AUDIT_BIT_MASK, AUDIT_LESS_THAN,
};
use super::status::AuditStatus;
use std::sync::Arc;

/// x86_64 syscall numbers.
pub mod nr64 {
    pub const SOCKET: u32 = 41;
    pub const CONNECT: u32 = 42;
    pub const EXECVE: u32 = 59;
    pub const EXIT_GROUP: u32 = 231;
    pub const EXECVEAT: u32 = 322;
}
/// i386 syscall numbers (32-bit programs on a 64-bit kernel).
pub mod nr32 {
    pub const EXECVE: u32 = 11;
    pub const EXIT_GROUP: u32 = 252;
    pub const EXECVEAT: u32 = 358;
    pub const SOCKET: u32 = 359;
    pub const CONNECT: u32 = 362;
    /// socketcall(2): how 32-bit programs reach connect/socket on kernels before 4.3 (and
    /// still can on any kernel).
    pub const SOCKETCALL: u32 = 102;
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("audit control: {0}")]
    Control(#[from] ControlError),
    #[error("audit is locked (enabled=2): rules cannot be added until reboot")]
    Locked,
    #[error("{0}")]
    Refused(String),
}

/// How we receive records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We registered as the audit daemon; records are unicast to our reader socket.
    Daemon,
    /// Another daemon (pid) holds the slot; we read the multicast log group.
    Multicast { daemon_pid: u32 },
}

/// The state we changed, to put back on exit.
#[derive(Debug, Clone, Copy)]
struct Previous {
    status: AuditStatus,
    backlog_wait_time: Option<u32>,
}

pub struct AuditSession {
    ctl: AuditSocket,
    pub role: Role,
    /// Which arrangement is in use, in words (health reason, `sensor status`).
    pub arrangement: String,
    /// Set by the reader when it hands the slot to auditd (docs/ARCHITECTURE.md, Audit netlink).
    pub handover: Arc<HandoverState>,
    rules: Vec<Rule>,
    prev: Previous,
    last_lost: u32,
    restored: bool,
    /// What this kernel's audit cannot see (e.g. io_uring before 5.16).
    pub blind_spots: Vec<String>,
}

/// The rules the sensor needs, tagged with `key`: as few as the kernel's rule format allows,
/// because every syscall exit walks the list. One rule per arch holds every syscall (the
/// kernel matches a syscall number only together with an arch), and one rule per arch holds
/// socket(2) for the internet families: `a0 & 2 != 0 && a0 < 16` keeps AF_INET (2) and
/// AF_INET6 (10) and drops AF_UNIX (1), AF_NETLINK (16) and AF_PACKET (17); the few rare
/// families it also lets through (3, 6, 7, 11, 14, 15) are ignored by the reader. `exit_group`
/// only when the proc connector (which also sees deaths by signal) is unavailable.
pub fn wanted_rules(key: &str, with_exit_group: bool) -> Vec<Rule> {
    let mut v64 = vec![nr64::EXECVE, nr64::EXECVEAT, nr64::CONNECT];
    let mut v32 = vec![
        nr32::EXECVE,
        nr32::EXECVEAT,
        nr32::CONNECT,
        nr32::SOCKETCALL,
    ];
    v64.extend(super::privilege::RULE_SYSCALLS_64);
    v32.extend(super::privilege::RULE_SYSCALLS_32);
    if with_exit_group {
        v64.push(nr64::EXIT_GROUP);
        v32.push(nr32::EXIT_GROUP);
    }
    let mut rules = vec![
        Rule::exit_always(AUDIT_ARCH_X86_64, &v64, None, key),
        Rule::exit_always(AUDIT_ARCH_I386, &v32, None, key),
    ];
    for (arch, nr) in [
        (AUDIT_ARCH_X86_64, nr64::SOCKET),
        (AUDIT_ARCH_I386, nr32::SOCKET),
    ] {
        let mut r = Rule::exit_always(arch, &[nr], None, key);
        r.fields.push((AUDIT_ARG0, AUDIT_BIT_MASK, 2));
        r.fields.push((AUDIT_ARG0, AUDIT_LESS_THAN, 16));
        rules.push(r);
    }
    rules
}

/// Whether a socket(2) family is one the socket rules are for (AF_INET, AF_INET6).
pub fn internet_family(family: u64) -> bool {
    matches!(family, 2 | 10)
}

/// What a periodic check found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckReport {
    /// Increase of the kernel's `lost` counter since the last check.
    pub lost_delta: u64,
    /// Our rules that had disappeared and were added back.
    pub rules_repaired: u64,
    /// We were the daemon but the kernel no longer sends to us.
    pub lost_registration: bool,
}

impl AuditSession {
    /// Sets audit up. `reader` is the socket that will receive records: when the daemon slot is
    /// free it registers (AUDIT_SET pid) through it; otherwise the caller must read multicast.
    pub fn start(
        reader: &mut AuditSocket,
        key: &str,
        backlog_limit: u32,
        with_exit_group: bool,
    ) -> Result<Self, SessionError> {
        let mut ctl = AuditSocket::open()?;
        let (status, backlog_wait_time) = ctl.status_with_wait_time()?;
        if status.enabled == 2 {
            return Err(SessionError::Locked);
        }
        let prev = Previous {
            status,
            backlog_wait_time,
        };
        let me = std::process::id();
        let auditd = coexist::host_auditd();
        let multicast = coexist::host_multicast();
        let (role, arrangement) = match coexist::plan(status.pid, me, &auditd, &multicast) {
            Plan::Refuse { why } => return Err(SessionError::Refused(why)),
            Plan::TakeSlot { handover } => match register(reader, backlog_limit, status, me)? {
                Some(role) => (role, take_slot_words(handover, &multicast)),
                // Someone registered between our status read and our claim.
                None => match &multicast {
                    Ok(()) => (
                        Role::Multicast {
                            daemon_pid: status.pid,
                        },
                        "reading the audit multicast group beside another audit daemon (it \
                         registered as the sensor started)"
                            .to_string(),
                    ),
                    Err(e) => {
                        return Err(SessionError::Refused(format!(
                            "another audit daemon registered as the sensor started and {} ({e})",
                            coexist::NO_MULTICAST
                        )))
                    }
                },
            },
            Plan::Multicast { daemon_pid, why } => {
                if status.enabled == 0 {
                    ctl.set(SetStatus {
                        mask: STATUS_ENABLED,
                        enabled: 1,
                        ..SetStatus::default()
                    })?;
                }
                (Role::Multicast { daemon_pid }, why)
            }
        };
        let mut session = AuditSession {
            ctl,
            role,
            arrangement,
            handover: Arc::new(HandoverState::default()),
            rules: wanted_rules(key, with_exit_group),
            prev,
            last_lost: status.lost,
            restored: false,
            blind_spots: Vec::new(),
        };
        session.remove_rules_with_key(key)?;
        for rule in session.rules.clone() {
            session.ctl.add_rule(&rule)?;
        }
        // io_uring connects: the io_uring filter list exists from 5.16 on; before, the kernel
        // rejects the rule and the blind spot is named.
        let uring = super::uring::connect_rule(key);
        match session.ctl.add_rule(&uring) {
            Ok(()) => session.rules.push(uring),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring audit rule rejected");
                session
                    .blind_spots
                    .push(format!("{} ({e})", super::uring::BLIND_SPOT));
            }
        }
        Ok(session)
    }

    /// Deletes every rule carrying `key` (ours, possibly left by a crashed run).
    fn remove_rules_with_key(&mut self, key: &str) -> Result<usize, ControlError> {
        let mut n = 0;
        for rule in self.ctl.list_rules()? {
            if rule.key.as_deref() == Some(key) {
                self.ctl.del_rule(&rule)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Lost-counter delta, rule repair, registration check.
    pub fn check(&mut self) -> Result<CheckReport, ControlError> {
        let mut report = CheckReport::default();
        let status = self.ctl.status()?;
        report.lost_delta = u64::from(status.lost.wrapping_sub(self.last_lost));
        self.last_lost = status.lost;
        if self.role == Role::Daemon
            && !self.handover.happened()
            && status.pid != std::process::id()
        {
            report.lost_registration = true;
        }
        let present = self.ctl.list_rules()?;
        for rule in self.rules.clone() {
            if !present.iter().any(|p| same_rule(p, &rule)) {
                self.ctl.add_rule(&rule)?;
                report.rules_repaired += 1;
            }
        }
        Ok(report)
    }

    /// Removes our rules and puts enabled/pid/backlog back as they were.
    pub fn restore(&mut self) -> Result<(), ControlError> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        let mut first_err = None;
        for rule in self.rules.clone() {
            if let Err(e) = self.ctl.del_rule(&rule) {
                // ENOENT: someone removed it already.
                if e.errno() != Some(libc::ENOENT) {
                    first_err.get_or_insert(e);
                }
            }
        }
        let p = self.prev.status;
        // After a handover the slot and the enabled flag are auditd's: leave them.
        let handed = self.handover.happened();
        // Beside a daemon, audit is disabled again only if the same daemon (or none) still
        // holds the slot: one that started meanwhile enabled audit for itself.
        if handed {
            // Nothing to put back.
        } else if self.role == Role::Daemon {
            let mut mask = STATUS_PID | STATUS_ENABLED | STATUS_BACKLOG_LIMIT;
            if self.prev.backlog_wait_time.is_some() {
                mask |= STATUS_BACKLOG_WAIT_TIME;
            }
            if let Err(e) = self.ctl.set(SetStatus {
                mask,
                enabled: p.enabled,
                pid: 0,
                backlog_limit: p.backlog_limit,
                backlog_wait_time: self.prev.backlog_wait_time.unwrap_or(0),
            }) {
                first_err.get_or_insert(e);
            }
        } else if p.enabled == 0 && self.ctl.status().is_ok_and(|s| s.pid == p.pid) {
            if let Err(e) = self.ctl.set(SetStatus {
                mask: STATUS_ENABLED,
                enabled: 0,
                ..SetStatus::default()
            }) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for AuditSession {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            tracing::error!(error = %e, "restoring the audit state failed");
        }
    }
}

/// Registers `reader` as the audit daemon. `None` when another daemon took the slot first.
fn register(
    reader: &mut AuditSocket,
    backlog_limit: u32,
    status: AuditStatus,
    me: u32,
) -> Result<Option<Role>, ControlError> {
    let set = SetStatus {
        mask: STATUS_PID | STATUS_ENABLED | STATUS_BACKLOG_LIMIT | STATUS_BACKLOG_WAIT_TIME,
        enabled: 1,
        pid: me,
        backlog_limit: backlog_limit.max(status.backlog_limit),
        // Never make a syscall wait for us: drop (and count in `lost`) instead.
        backlog_wait_time: 0,
    };
    match reader.set(set) {
        Ok(()) => Ok(Some(Role::Daemon)),
        // Kernels before 3.14 have no backlog_wait_time.
        Err(ControlError::Kernel {
            errno: libc::EINVAL,
            ..
        }) => {
            reader.set(SetStatus {
                mask: set.mask & !STATUS_BACKLOG_WAIT_TIME,
                ..set
            })?;
            Ok(Some(Role::Daemon))
        }
        Err(ControlError::Kernel {
            errno: libc::EEXIST,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The arrangement, in words, when the sensor holds the slot.
fn take_slot_words(handover: bool, multicast: &Result<(), String>) -> String {
    match multicast {
        Ok(()) if handover => "registered as the audit daemon (the slot is handed to auditd \
                               the moment it starts; reading then continues from the audit \
                               multicast group)"
            .to_string(),
        Ok(()) => "registered as the audit daemon".to_string(),
        Err(e) => format!(
            "registered as the audit daemon; {} ({e}): if auditd starts, the slot is handed \
             to it and audit capture stops",
            coexist::NO_MULTICAST
        ),
    }
}

/// Rules compare by key, syscalls and numeric fields (the kernel may reorder nothing, but
/// flags bits like AUDIT_FILTER_PREPEND do not matter here).
pub fn same_rule(a: &Rule, b: &Rule) -> bool {
    let sorted = |r: &Rule| {
        let mut v = r.syscalls.clone();
        v.sort_unstable();
        v
    };
    a.key == b.key && sorted(a) == sorted(b) && a.fields == b.fields
}

#[cfg(test)]
mod tests {
    use super::super::rules::{AUDIT_ARCH, AUDIT_EQUAL};
    use super::*;

    #[test]
    fn wanted_rules_shape() {
        let r = wanted_rules("sensor", false);
        assert_eq!(r.len(), 4);
        for (socket_rule, nr) in [(&r[2], nr64::SOCKET), (&r[3], nr32::SOCKET)] {
            assert_eq!(socket_rule.syscalls, vec![nr]);
            assert_eq!(
                socket_rule.fields[1..],
                [
                    (AUDIT_ARG0, AUDIT_BIT_MASK, 2),
                    (AUDIT_ARG0, AUDIT_LESS_THAN, 16)
                ]
            );
        }
        // The families the bit test lets through: the internet ones and a few rare others.
        let pass: Vec<u32> = (0..64).filter(|f| f & 2 != 0 && *f < 16).collect();
        assert_eq!(pass, vec![2, 3, 6, 7, 10, 11, 14, 15]);
        assert!(pass
            .iter()
            .all(|&f| internet_family(f.into()) == matches!(f, 2 | 10)));
        assert!(r.iter().all(|r| r.key.as_deref() == Some("sensor")));
        assert!(!r[0].syscalls.contains(&nr64::EXIT_GROUP));
        let r = wanted_rules("sensor", true);
        assert!(r[0].syscalls.contains(&nr64::EXIT_GROUP));
        assert!(r[1].syscalls.contains(&nr32::EXIT_GROUP));
    }

    #[test]
    fn b32_rule_has_capset_not_capget_and_the_legacy_calls() {
        let r = wanted_rules("sensor", false);
        let b32 = &r[1];
        assert_eq!(b32.fields[0], (AUDIT_ARCH, AUDIT_EQUAL, AUDIT_ARCH_I386));
        assert!(b32.syscalls.contains(&185), "capset");
        assert!(
            !b32.syscalls.contains(&184),
            "capget is not a credential change"
        );
        // 16-bit-id set*id, 32-bit-id set*id, socketcall.
        for nr in [23, 46, 70, 71, 164, 170, 213, 214, 203, 204, 208, 210, 102] {
            assert!(b32.syscalls.contains(&nr), "i386 syscall {nr}");
        }
    }

    #[test]
    fn same_rule_survives_round_trip() {
        for r in wanted_rules("k", true) {
            let parsed = Rule::parse(&r.to_bytes()).unwrap();
            assert!(same_rule(&parsed, &r));
        }
    }
}
