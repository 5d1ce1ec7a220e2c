//! Handing the audit daemon slot to auditd (docs/ARCHITECTURE.md, "Audit netlink"). While the
//! sensor holds the slot it watches its own record stream for auditd's exec (and for a failed
//! claim of the slot, a CONFIG_CHANGE `op=set audit_pid=N ... res=0`). Then the reader joins
//! the multicast group on the same socket, gives the slot back (pid 0) and, for a short
//! window, drops the second copy of every record (unicast and multicast both carry it), so no
//! record is lost or doubled across the switch. Detection and de-duplication are pure.
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::record::{dec, hex_u64, types, Record};

/// How long both streams are de-duplicated after the slot was released.
pub const DEDUP_WINDOW_MS: u64 = 2_000;
/// Record keys remembered while de-duplicating.
const DEDUP_CAPACITY: usize = 16_384;

/// The pid of a successful execve/execveat of a program named `auditd` (SYSCALL record).
pub fn auditd_exec(rec: &Record) -> Option<u32> {
    if rec.rtype != types::SYSCALL {
        return None;
    }
    let [success, arch, nr, exe, pid] = rec.get_many(["success", "arch", "syscall", "exe", "pid"]);
    if success != Some(b"yes") {
        return None;
    }
    let exec = crate::sources::kernel_values::is_exec(hex_u64(arch)?, dec(nr)?);
    let base = exe?.rsplit(|b| *b == b'/').next()?;
    (exec && base == b"auditd").then(|| dec(pid))?
}

/// The pid of a process whose AUDIT_SET of the daemon pid was refused (kernel CONFIG_CHANGE
/// `op=set audit_pid=N old=M ... res=0`).
pub fn failed_pid_claim(rec: &Record) -> Option<u32> {
    if rec.rtype != types::CONFIG_CHANGE || rec.get("res") != Some(b"0") {
        return None;
    }
    let pid: u32 = rec.get_dec("audit_pid")?;
    (pid != 0).then_some(pid)
}

/// Drops a datagram already seen on the other stream. Records of one event differ in type
/// or content (PATH `item=`), and events differ in serial, so the (type, payload) pair names
/// one record.
#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    /// Unix ms after which de-duplication stops (None: not started, or over).
    until_ms: Option<u64>,
    pub dropped: u64,
}

impl Dedup {
    /// Starts (or extends) the window.
    pub fn start(&mut self, until_ms: u64) {
        self.until_ms = Some(until_ms);
    }

    pub fn active(&self) -> bool {
        self.until_ms.is_some()
    }

    /// True if this datagram should be processed (first copy, or no window).
    pub fn fresh(&mut self, msg_type: u16, payload: &[u8], now_ms: u64) -> bool {
        let Some(until) = self.until_ms else {
            return true;
        };
        if now_ms > until {
            self.until_ms = None;
            self.seen.clear();
            self.order.clear();
            return true;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        msg_type.hash(&mut h);
        payload.hash(&mut h);
        let key = h.finish();
        if !self.seen.insert(key) {
            self.dropped += 1;
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > DEDUP_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// What happened to the slot, shared by the reader (which acts), the control thread (which
/// must not restore a slot it no longer holds) and the health reason.
#[derive(Debug, Default)]
pub struct HandoverState {
    /// Pid whose exec (or refused claim) triggered the handover; 0 = none yet.
    pub to_pid: AtomicU32,
    /// Unix ms of the handover.
    pub at_ms: AtomicU64,
    /// Joining the multicast group failed: capture stopped with the slot.
    pub multicast_failed: AtomicBool,
    /// Releasing the slot failed (error logged).
    pub release_failed: AtomicBool,
    /// Second copies dropped during the switch.
    pub duplicates_dropped: AtomicU64,
}

impl HandoverState {
    pub fn happened(&self) -> bool {
        self.to_pid.load(Relaxed) != 0
    }

    /// The part of the health reason that says what changed, if anything did.
    pub fn describe(&self) -> Option<String> {
        let pid = self.to_pid.load(Relaxed);
        if pid == 0 {
            return None;
        }
        let ms = self.at_ms.load(Relaxed);
        let at = format!("unix time {}.{:03}", ms / 1000, ms % 1000);
        Some(if self.multicast_failed.load(Relaxed) {
            format!(
                "audit daemon slot handed to auditd (pid {pid}) at {at}; {}: audit capture stopped",
                super::coexist::NO_MULTICAST
            )
        } else if self.release_failed.load(Relaxed) {
            format!("handing the audit daemon slot to auditd (pid {pid}) failed at {at}")
        } else {
            format!(
                "audit daemon slot handed to auditd (pid {pid}) at {at}; now reading the audit \
                 multicast group beside it"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::parse;
    use super::*;

    fn rec(t: u16, text: &str) -> Record {
        parse(t, text.as_bytes()).unwrap()
    }

    #[test]
    fn auditd_exec_is_seen() {
        let r = rec(
            1300,
            r#"audit(1700000000.123:42): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=2 ppid=1 pid=4242 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="auditd" exe="/usr/sbin/auditd" key="sensor""#,
        );
        assert_eq!(auditd_exec(&r), Some(4242));
        // A failed exec, another program, a non-exec syscall: no.
        let failed = rec(
            1300,
            r#"audit(1700000000.123:42): arch=c000003e syscall=59 success=no exit=-2 pid=4242 comm="x" exe="/usr/sbin/auditd""#,
        );
        assert_eq!(auditd_exec(&failed), None);
        let other = rec(
            1300,
            r#"audit(1700000000.123:42): arch=c000003e syscall=59 success=yes pid=9 comm="auditctl" exe="/usr/sbin/auditctl""#,
        );
        assert_eq!(auditd_exec(&other), None);
        let connect = rec(
            1300,
            r#"audit(1700000000.123:42): arch=c000003e syscall=42 success=yes pid=9 comm="auditd" exe="/usr/sbin/auditd""#,
        );
        assert_eq!(auditd_exec(&connect), None);
        let i386 = rec(
            1300,
            r#"audit(1700000000.123:42): arch=40000003 syscall=11 success=yes pid=7 comm="auditd" exe="/sbin/auditd""#,
        );
        assert_eq!(auditd_exec(&i386), Some(7));
    }

    #[test]
    fn refused_claim_is_seen() {
        let r = rec(1305, "audit(1700000000.123:43): op=set audit_pid=5151 old=99 auid=0 ses=1 subj=unconfined res=0");
        assert_eq!(failed_pid_claim(&r), Some(5151));
        let ok = rec(
            1305,
            "audit(1700000000.123:43): op=set audit_pid=5151 old=0 auid=0 ses=1 res=1",
        );
        assert_eq!(failed_pid_claim(&ok), None);
        let release = rec(
            1305,
            "audit(1700000000.123:43): op=set audit_pid=0 old=99 auid=0 ses=1 res=0",
        );
        assert_eq!(failed_pid_claim(&release), None);
    }

    #[test]
    fn dedup_drops_second_copies_inside_the_window_only() {
        let mut d = Dedup::default();
        assert!(d.fresh(1300, b"a", 0));
        assert!(d.fresh(1300, b"a", 0), "no window: everything passes");
        d.start(100);
        assert!(d.fresh(1300, b"a", 10));
        assert!(d.fresh(1309, b"a", 10), "other type, other record");
        assert!(!d.fresh(1300, b"a", 20));
        assert!(!d.fresh(1309, b"a", 20));
        assert!(d.fresh(1300, b"b", 20));
        assert_eq!(d.dropped, 2);
        assert!(d.fresh(1300, b"a", 101), "window over");
        assert!(!d.active());
    }

    #[test]
    fn dedup_is_bounded() {
        let mut d = Dedup::default();
        d.start(u64::MAX);
        for i in 0..(DEDUP_CAPACITY as u64 + 10) {
            assert!(d.fresh(1300, &i.to_le_bytes(), 0));
        }
        assert!(d.seen.len() <= DEDUP_CAPACITY);
        // The oldest key was forgotten; the newest is still known.
        assert!(d.fresh(1300, &0u64.to_le_bytes(), 0));
        assert!(!d.fresh(1300, &(DEDUP_CAPACITY as u64 + 9).to_le_bytes(), 0));
    }
}
