//! `privilege_change` in audit mode: set*id/capset calls and execs of set-id binaries, from
//! SYSCALL records. Audit logs only the credentials after a call, so the "before" side comes
//! from the last SYSCALL record seen for the same pid (bounded map); for an exec, a set-id
//! transition is recognised by euid != uid (or egid != gid) and the old effective ids are
//! taken as the real ones, which is what they were for any normal caller.
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

#[derive(Debug)]
pub struct CredTracker {
    last: HashMap<u32, Creds>,
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
        let old = self.last.get(&pid).copied();
        if self.last.len() >= self.cap {
            self.last.clear();
        }
        self.last.insert(pid, new);
        if !ok {
            return None;
        }
        let (old, via) = if let Some(name) = cred_call(arch, nr) {
            let old = old?;
            if old == new && name != "capset" {
                return None;
            }
            (old, name.to_string())
        } else if is_exec(arch, nr) && (new.euid != new.uid || new.egid != new.gid) {
            let old = Creds {
                euid: new.uid,
                egid: new.gid,
                ..new
            };
            let via = if new.euid != new.uid {
                "exec_setuid"
            } else {
                "exec_setgid"
            };
            (old, via.to_string())
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
            old_caps: None,
            new_caps: None,
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

    #[test]
    fn unknown_old_creds_give_no_event_and_map_is_bounded() {
        let mut t = CredTracker::new(1);
        assert!(t.observe(&g(&sys(1, 105, 0, 0)), "h").is_none());
        assert_eq!(cred_call(ARCH_I386, 213), Some("setuid"));
        assert_eq!(cred_call(ARCH_X86_64, 59), None);
        assert!(t.last.len() <= 1);
    }
}
