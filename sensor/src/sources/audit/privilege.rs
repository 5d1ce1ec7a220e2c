//! `privilege_change` in audit mode: set*id/capset calls and execs of set-id binaries, from
//! SYSCALL records. Audit logs only the credentials after a call, so the "before" side comes
//! from the last SYSCALL record seen for the same pid (bounded map); for an exec, a set-id
//! transition is recognised by euid != uid (or egid != gid) and the old effective ids are
//! taken as the real ones, which is what they were for any normal caller.
//!
//! Effective capabilities come from the two records the kernel adds to a call that sets them:
//! CAPSET (a capset: the sets after it, `cap_pe`) and BPRM_FCAPS (an exec that raised them
//! through file capabilities: `old_pe` and `pe`). The tracker remembers the last known
//! effective set of a pid, so a capset is compared with it: one that changes nothing is not
//! reported once that set is known, and the event's `old_caps` is absent while it is not. A
//! set*id call that changes ids, or an exec without BPRM_FCAPS, may change the set without a
//! record saying so: it becomes unknown again.
use std::collections::HashMap;

use super::assemble::Group;
use super::normalize::{base, process};
use super::record::{dec, hex_u64, types};
use crate::event::{Event, Kind, Privilege};
use crate::sources::kernel_values::{cred_call, is_exec};

/// The syscall numbers the audit rules must cover: (x86_64, i386). The i386 list has the
/// 32-bit-id calls (213..) and the legacy 16-bit-id ones (23, 46, 70, 71, 164, 170), then capset
/// (185; 184 is capget).
pub const RULE_SYSCALLS_64: [u32; 7] = [105, 106, 113, 114, 117, 119, 126];
pub const RULE_SYSCALLS_32: [u32; 13] =
    [213, 214, 203, 204, 208, 210, 23, 46, 70, 71, 164, 170, 185];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Creds {
    uid: u32,
    euid: u32,
    gid: u32,
    egid: u32,
}

fn creds(
    uid: Option<&[u8]>,
    euid: Option<&[u8]>,
    gid: Option<&[u8]>,
    egid: Option<&[u8]>,
) -> Option<Creds> {
    Some(Creds {
        uid: dec(uid)?,
        euid: dec(euid)?,
        gid: dec(gid)?,
        egid: dec(egid)?,
    })
}

/// What the tracker knows of a pid after its last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    creds: Creds,
    /// Effective capabilities, when a CAPSET or BPRM_FCAPS record gave them since.
    caps: Option<u64>,
}

#[derive(Debug)]
pub struct CredTracker {
    last: HashMap<u32, Known>,
    cap: usize,
}

impl CredTracker {
    pub fn new(cap: usize) -> Self {
        Self {
            last: HashMap::new(),
            cap,
        }
    }

    pub fn forget(&mut self, pid: u32) {
        self.last.remove(&pid);
    }

    /// Learns the credentials in `g` and returns a `privilege_change` when they changed.
    pub fn observe(&mut self, g: &Group, host: &str) -> Option<Event> {
        let sys = g.first(types::SYSCALL)?;
        let [arch, nr, pid, uid, euid, gid, egid, success] = sys.get_many([
            "arch", "syscall", "pid", "uid", "euid", "gid", "egid", "success",
        ]);
        let arch = hex_u64(arch)?;
        let nr: u64 = dec(nr)?;
        let pid: u32 = dec(pid)?;
        let new = creds(uid, euid, gid, egid)?;
        let ok = success == Some(b"yes");
        let prev = self.last.get(&pid).copied();
        let call = cred_call(arch, nr);
        let exec = is_exec(arch, nr);
        let capset = g
            .first(types::CAPSET)
            .and_then(|r| hex_u64(r.get("cap_pe")));
        let fcaps = g
            .first(types::BPRM_FCAPS)
            .and_then(|r| Some((hex_u64(r.get("old_pe"))?, hex_u64(r.get("pe"))?)));
        // The effective set after this record, when known.
        let caps = match (capset, fcaps) {
            (Some(c), _) if ok => Some(c),
            (_, Some((_, pe))) if ok && exec => Some(pe),
            // A failed call changed nothing; a call that left the ids alone (capset aside:
            // its CAPSET record is missing only if the kernel could not log it) kept the set.
            _ if !ok
                || (!exec && prev.is_some_and(|k| k.creds == new) && call != Some("capset")) =>
            {
                prev.and_then(|k| k.caps)
            }
            _ => None,
        };
        if self.last.len() >= self.cap {
            self.last.clear();
        }
        self.last.insert(pid, Known { creds: new, caps });
        if !ok {
            return None;
        }
        let old_caps = prev.and_then(|k| k.caps);
        let (old, via, old_caps, new_caps) = if let Some(name) = call {
            let old = prev?.creds;
            if name == "capset" {
                if old == new && old_caps.is_some() && old_caps == capset {
                    return None;
                }
                (old, name.to_string(), old_caps, capset)
            } else if old == new {
                return None;
            } else {
                (old, name.to_string(), None, None)
            }
        } else if exec && (new.euid != new.uid || new.egid != new.gid || fcaps.is_some()) {
            let old = Creds {
                euid: new.uid,
                egid: new.gid,
                ..new
            };
            let via = if new.euid != new.uid {
                "exec_setuid"
            } else if new.egid != new.gid {
                "exec_setgid"
            } else {
                "exec_file_caps"
            };
            let (old_caps, new_caps) = match fcaps {
                Some((o, n)) if o != n => (Some(o), Some(n)),
                _ => (None, None),
            };
            if old == new && new_caps.is_none() {
                return None;
            }
            (old, via.to_string(), old_caps, new_caps)
        } else {
            return None;
        };
        let mut ev = base(Kind::PrivilegeChange, g, host);
        ev.process = process(sys).ok();
        ev.privilege = Some(Privilege {
            old_uid: old.uid,
            new_uid: new.uid,
            old_euid: old.euid,
            new_euid: new.euid,
            old_gid: old.gid,
            new_gid: new.gid,
            old_egid: Some(old.egid),
            new_egid: Some(new.egid),
            old_caps: old_caps.map(|c| format!("{c:#x}")),
            new_caps: new_caps.map(|c| format!("{c:#x}")),
            via,
        });
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::audit::assemble::Assembler;
    use crate::sources::audit::record::parse;
    use crate::sources::kernel_values::{ARCH_I386, ARCH_X86_64};

    fn group(lines: &[(u16, &str)]) -> Group {
        let mut a = Assembler::new(16, 1000);
        let mut out = Vec::new();
        for (t, l) in lines {
            out.extend(a.push(parse(*t, l.as_bytes()).unwrap(), 0));
        }
        out.extend(a.flush_all());
        out.remove(0)
    }

    fn sys(serial: u32, nr: u32, uid: u32, euid: u32) -> Vec<(u16, String)> {
        vec![
            (1300, format!("audit(1700000000.000:{serial}): arch=c000003e syscall={nr} success=yes exit=0 a0=0 a1=0 a2=0 a3=0 items=0 ppid=1 pid=77 auid=1000 uid={uid} gid=100 euid={euid} suid=0 fsuid=0 egid=100 sgid=100 fsgid=100 tty=pts0 ses=3 comm=\"sudo\" exe=\"/usr/bin/sudo\" key=\"sensor\"")),
            (1320, format!("audit(1700000000.000:{serial}): ")),
        ]
    }

    fn g(v: &[(u16, String)]) -> Group {
        let refs: Vec<(u16, &str)> = v.iter().map(|(t, s)| (*t, s.as_str())).collect();
        group(&refs)
    }

    #[test]
    fn setuid_exec_then_setresuid() {
        let mut t = CredTracker::new(100);
        // sudo exec: uid 1000, euid 0 (set-uid binary)
        let ev = t.observe(&g(&sys(1, 59, 1000, 0)), "h").unwrap();
        let p = ev.msg.privilege.unwrap();
        assert_eq!(
            (p.via.as_str(), p.old_euid, p.new_euid),
            ("exec_setuid", 1000, 0)
        );
        assert_eq!(ev.msg.process.unwrap().pid, 77);
        // setresuid(0,0,0)
        let ev = t.observe(&g(&sys(2, 117, 0, 0)), "h").unwrap();
        let p = ev.msg.privilege.unwrap();
        assert_eq!(
            (p.via.as_str(), p.old_uid, p.new_uid),
            ("setresuid", 1000, 0)
        );
        // no change -> nothing
        assert!(t.observe(&g(&sys(3, 117, 0, 0)), "h").is_none());
        // ordinary exec, nothing
        assert!(t.observe(&g(&sys(4, 59, 0, 0)), "h").is_none());
    }

    /// A SYSCALL record (`success`, ids) with an extra record of the same serial.
    fn with(serial: u32, nr: u32, ok: bool, uid: u32, extra: Option<(u16, &str)>) -> Group {
        let mut v = sys(serial, nr, uid, uid);
        if !ok {
            v[0].1 = v[0].1.replace("success=yes exit=0", "success=no exit=-1");
        }
        if let Some((t, body)) = extra {
            v.insert(1, (t, format!("audit(1700000000.000:{serial}): {body}")));
        }
        g(&v)
    }

    fn caps(ev: &Event) -> (String, Option<String>, Option<String>) {
        let p = ev.msg.privilege.clone().unwrap();
        (p.via, p.old_caps, p.new_caps)
    }

    const FULL: &str = "pid=77 cap_pi=0 cap_pp=000001ffffffffff cap_pe=000001ffffffffff cap_pa=0";
    const NET_RAW: &str =
        "pid=77 cap_pi=0 cap_pp=0000000000002000 cap_pe=0000000000002000 cap_pa=0";

    #[test]
    fn capset_carries_the_kernels_sets_and_a_no_op_is_not_reported_once_known() {
        let mut t = CredTracker::new(100);
        assert!(t.observe(&with(1, 59, true, 0, None), "h").is_none());
        // The set before is not known yet: the new one alone.
        let ev = t
            .observe(&with(2, 126, true, 0, Some((1322, FULL))), "h")
            .unwrap();
        assert_eq!(
            caps(&ev),
            ("capset".into(), None, Some("0x1ffffffffff".into()))
        );
        // The same set again: nothing changed.
        assert!(t
            .observe(&with(3, 126, true, 0, Some((1322, FULL))), "h")
            .is_none());
        // A failed call changes nothing and keeps what is known.
        assert!(t
            .observe(&with(4, 126, false, 0, Some((1322, NET_RAW))), "h")
            .is_none());
        let ev = t
            .observe(&with(5, 126, true, 0, Some((1322, NET_RAW))), "h")
            .unwrap();
        assert_eq!(
            caps(&ev),
            (
                "capset".into(),
                Some("0x1ffffffffff".into()),
                Some("0x2000".into())
            )
        );
        // A set*id that changes ids may change the set without a record: unknown again.
        let ev = t.observe(&with(6, 117, true, 65534, None), "h").unwrap();
        assert_eq!(caps(&ev), ("setresuid".into(), None, None));
        let ev = t
            .observe(&with(7, 126, true, 65534, Some((1322, NET_RAW))), "h")
            .unwrap();
        assert_eq!(caps(&ev), ("capset".into(), None, Some("0x2000".into())));
    }

    #[test]
    fn exec_with_file_capabilities_is_reported_with_both_sets() {
        let mut t = CredTracker::new(100);
        let fcaps = "fver=2 fp=0000000000002000 fi=0 fe=1 old_pp=0 old_pi=0 old_pe=0 old_pa=0 \
                     pp=0000000000002000 pi=0 pe=0000000000002000 pa=0 frootid=0";
        let ev = t
            .observe(&with(1, 59, true, 65534, Some((1321, fcaps))), "h")
            .unwrap();
        assert_eq!(
            caps(&ev),
            (
                "exec_file_caps".into(),
                Some("0x0".into()),
                Some("0x2000".into())
            )
        );
        let p = ev.msg.privilege.unwrap();
        assert_eq!(
            (p.old_uid, p.new_uid, p.old_euid, p.new_euid),
            (65534, 65534, 65534, 65534)
        );
        // The set is known from the exec: a capset to the same set is not a change.
        assert!(t
            .observe(&with(2, 126, true, 65534, Some((1322, NET_RAW))), "h")
            .is_none());
        // An ordinary exec (no BPRM_FCAPS) makes it unknown again, and is not reported.
        assert!(t.observe(&with(3, 59, true, 65534, None), "h").is_none());
        let ev = t
            .observe(&with(4, 126, true, 65534, Some((1322, NET_RAW))), "h")
            .unwrap();
        assert_eq!(caps(&ev), ("capset".into(), None, Some("0x2000".into())));
    }

    #[test]
    fn unknown_old_creds_give_no_event_and_map_is_bounded() {
        let mut t = CredTracker::new(1);
        assert!(t.observe(&g(&sys(1, 105, 0, 0)), "h").is_none());
        assert_eq!(cred_call(ARCH_I386, 213), Some("setuid"));
        assert_eq!(cred_call(ARCH_X86_64, 59), None);
        assert!(t.last.len() <= 1);
    }
}
