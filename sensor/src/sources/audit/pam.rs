//! PAM's user-space audit records, forwarded by the kernel: a session opened for another
//! account (su, sudo, login, sshd) is a `privilege_change` (via `pam:<program>`), and a failed
//! authentication is a `login_failed`. Account names are resolved from /etc/passwd (a standard
//! system file, read only; no NSS module is invoked).
use super::assemble::Group;
use super::normalize::base;
use super::record::{types, Record};
use crate::escape::escape_bytes;
use crate::event::{Event, Kind, Login, Privilege, Process};

/// (uid, gid) of `name` in passwd-format text.
pub fn passwd_lookup(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        let _pw = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// (name, gid) of `uid` in passwd-format text.
pub fn passwd_by_uid(passwd: &str, uid: u32) -> Option<(String, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[2].parse::<u32>().ok()? == uid)
            .then(|| Some((f[0].to_string(), f[3].parse().ok()?)))
            .flatten()
    })
}

fn text(v: Option<&[u8]>) -> Option<String> {
    v.filter(|b| !b.is_empty() && *b != b"?").map(escape_bytes)
}

fn program(r: &Record) -> String {
    let exe = r
        .get_nested("exe")
        .or_else(|| r.get("exe"))
        .unwrap_or_default();
    let base = exe.rsplit(|&b| b == b'/').next().unwrap_or_default();
    escape_bytes(base)
}

/// Maps a PAM record group; `passwd` is the text of /etc/passwd.
pub fn to_event(g: &Group, host: &str, passwd: &str) -> Option<Event> {
    let r = g
        .records
        .iter()
        .find(|r| matches!(r.rtype, types::USER_START | types::USER_AUTH))?;
    let op = r.get_nested("op").unwrap_or_default();
    let res = r.get_nested("res").unwrap_or_default();
    let acct = r.get_nested("acct").map(escape_bytes)?;
    let pid: u32 = r.get_dec("pid").unwrap_or(0);
    let uid: u32 = r.get_dec("uid").unwrap_or(u32::MAX);
    let mut process = Process {
        pid,
        uid,
        euid: uid,
        auid: r.get_dec::<u32>("auid").filter(|&v| v != u32::MAX),
        session: r.get_dec::<u32>("ses").filter(|&v| v != u32::MAX),
        ..Process::default()
    };
    process.incomplete.push("exe".into());
    if r.rtype == types::USER_AUTH && res == b"failed" {
        let mut ev = base(Kind::LoginFailed, g, host);
        ev.process = Some(process);
        ev.login = Some(Login {
            user: acct,
            tty: text(r.get_nested("terminal")),
            host: text(r.get_nested("hostname")),
            addr: text(r.get_nested("addr")),
            session_key: None,
            // The process and its session are on `process`.
            pid: 0,
            session: None,
        });
        return Some(ev);
    }
    if r.rtype != types::USER_START || !op.starts_with(b"PAM:session_open") || res != b"success" {
        return None;
    }
    let (new_uid, new_gid) = passwd_lookup(passwd, &acct)?;
    if new_uid == uid {
        return None;
    }
    let old_gid = passwd_by_uid(passwd, uid).map_or(u32::MAX, |(_, g)| g);
    let mut ev = base(Kind::PrivilegeChange, g, host);
    ev.process = Some(process);
    ev.privilege = Some(Privilege {
        old_uid: uid,
        new_uid,
        old_euid: uid,
        new_euid: new_uid,
        old_gid,
        new_gid,
        old_egid: None,
        new_egid: None,
        old_caps: None,
        new_caps: None,
        via: format!("pam:{}", program(r)),
    });
    Some(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::audit::assemble::Assembler;
    use crate::sources::audit::record::parse;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\nbroken\n";

    fn group(t: u16, line: &str) -> Group {
        let mut a = Assembler::new(4, 10);
        let mut g = a.push(parse(t, line.as_bytes()).unwrap(), 0);
        g.extend(a.flush_all());
        g.remove(0)
    }

    #[test]
    fn su_session_is_a_privilege_change() {
        let g = group(1105, "audit(1700000000.123:50): pid=4242 uid=1000 auid=1000 ses=3 subj=unconfined msg='op=PAM:session_open grantors=pam_keyinit,pam_unix acct=\"root\" exe=\"/usr/bin/su\" hostname=? addr=? terminal=/dev/pts/0 res=success'");
        let ev = to_event(&g, "h", PASSWD).unwrap();
        assert_eq!(ev.kind(), Kind::PrivilegeChange);
        let p = ev.msg.privilege.unwrap();
        assert_eq!(
            (p.old_uid, p.new_uid, p.old_gid, p.new_gid, p.via.as_str()),
            (1000, 0, 1000, 0, "pam:su")
        );
        assert_eq!(ev.msg.process.unwrap().session, Some(3));
    }

    #[test]
    fn failed_auth_is_a_failed_login_and_others_are_ignored() {
        let g = group(1100, "audit(1700000000.123:51): pid=4243 uid=1000 auid=1000 ses=3 msg='op=PAM:authentication grantors=? acct=\"root\" exe=\"/usr/bin/su\" hostname=? addr=? terminal=/dev/pts/0 res=failed'");
        let ev = to_event(&g, "h", PASSWD).unwrap();
        assert_eq!(ev.kind(), Kind::LoginFailed);
        let l = ev.msg.login.unwrap();
        assert_eq!(
            (l.user.as_str(), l.tty.as_deref(), l.host),
            ("root", Some("/dev/pts/0"), None)
        );
        // same account: no change
        let g = group(1105, "audit(1700000000.123:52): pid=1 uid=0 auid=0 ses=1 msg='op=PAM:session_open acct=\"root\" exe=\"/usr/sbin/cron\" res=success'");
        assert!(to_event(&g, "h", PASSWD).is_none());
        // unknown account
        let g = group(1105, "audit(1700000000.123:53): pid=1 uid=1000 auid=0 ses=1 msg='op=PAM:session_open acct=\"nobody-here\" exe=\"/usr/bin/su\" res=success'");
        assert!(to_event(&g, "h", PASSWD).is_none());
    }

    #[test]
    fn passwd_parsing() {
        assert_eq!(passwd_lookup(PASSWD, "alice"), Some((1000, 1000)));
        assert_eq!(passwd_lookup(PASSWD, "broken"), None);
        assert_eq!(passwd_by_uid(PASSWD, 0), Some(("root".into(), 0)));
        assert_eq!(passwd_by_uid("", 0), None);
    }
}
