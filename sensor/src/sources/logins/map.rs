//! wtmp/btmp records to `login`, `logout` and `login_failed` events (pure; /proc lookups are
//! passed in as a function).
use std::collections::HashMap;

use super::utmp::{self, UtmpRecord};
use crate::escape::escape_bytes;
use crate::event::{Event, Kind, Login, Process, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFile {
    Wtmp,
    Btmp,
}

/// Audit identity of a live process: (loginuid, sessionid).
pub type SessionLookup<'a> = &'a dyn Fn(i32) -> Option<(u32, u32)>;

/// Open logins by terminal line, so a logout (whose record usually has no user) names the user.
#[derive(Debug, Default)]
pub struct Sessions {
    open: HashMap<Vec<u8>, OpenLogin>,
}

#[derive(Debug, Clone)]
struct OpenLogin {
    user: Vec<u8>,
    host: Vec<u8>,
    addr: Option<String>,
    session_key: Option<String>,
}

/// At most this many open logins are remembered (a host with more is very unusual).
const MAX_OPEN: usize = 65_536;

impl Sessions {
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Maps one record. `None` for records that are not logins (boot, run level, init...).
    pub fn map(
        &mut self,
        rec: &UtmpRecord,
        file: LogFile,
        host: &str,
        lookup: SessionLookup,
    ) -> Option<Event> {
        let (kind, source) = match (file, rec.ut_type) {
            (LogFile::Btmp, utmp::USER_PROCESS | utmp::LOGIN_PROCESS) => {
                (Kind::LoginFailed, Source::Btmp)
            }
            (LogFile::Wtmp, utmp::USER_PROCESS) => (Kind::Login, Source::Wtmp),
            (LogFile::Wtmp, utmp::DEAD_PROCESS) => (Kind::Logout, Source::Wtmp),
            _ => return None,
        };
        let addr = rec.addr.map(|a| a.to_string());
        let mut login = Login {
            user: escape_bytes(&rec.user),
            tty: (!rec.line.is_empty()).then(|| escape_bytes(&rec.line)),
            host: (!rec.host.is_empty()).then(|| escape_bytes(&rec.host)),
            addr: addr.clone(),
            session_key: None,
            // The record's process and session are on `process`.
            pid: 0,
            session: None,
        };
        let mut process = Process {
            pid: rec.pid.max(0) as u32,
            ..Process::default()
        };
        match kind {
            Kind::Login => {
                if let Some((auid, ses)) = lookup(rec.pid) {
                    process.auid = (auid != u32::MAX).then_some(auid);
                    process.session = (ses != u32::MAX).then_some(ses);
                    login.session_key = process.session.map(|s| format!("ses:{s}"));
                } else {
                    process.incomplete.push("session".into());
                }
                if self.open.len() >= MAX_OPEN {
                    self.open.clear();
                }
                self.open.insert(
                    rec.line.clone(),
                    OpenLogin {
                        user: rec.user.clone(),
                        host: rec.host.clone(),
                        addr,
                        session_key: login.session_key.clone(),
                    },
                );
            }
            Kind::Logout => {
                if let Some(o) = self.open.remove(&rec.line) {
                    if rec.user.is_empty() {
                        login.user = escape_bytes(&o.user);
                    }
                    if login.host.is_none() && !o.host.is_empty() {
                        login.host = Some(escape_bytes(&o.host));
                    }
                    login.addr = login.addr.or(o.addr);
                    login.session_key = o.session_key;
                }
            }
            _ => {}
        }
        let unix_ns = i64::from(rec.tv_sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(rec.tv_usec).saturating_mul(1_000));
        let mut ev = Event::new(kind, source, unix_ns, host);
        ev.process = Some(process);
        ev.login = Some(login);
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::super::utmp::fixtures::{record, v4};
    use super::*;

    fn parse(b: &[u8]) -> UtmpRecord {
        utmp::parse(b).unwrap()
    }

    #[test]
    fn login_then_logout_names_the_user_and_session() {
        let mut s = Sessions::default();
        let lookup = |pid: i32| (pid == 4000).then_some((1000, 42));
        let login = parse(&record(
            utmp::USER_PROCESS,
            4000,
            b"pts/2",
            b"alice",
            b"203.0.113.9",
            1_700_000_000,
            250_000,
            v4([203, 0, 113, 9]),
        ));
        let ev = s.map(&login, LogFile::Wtmp, "h", &lookup).unwrap();
        assert_eq!((ev.kind(), ev.source()), (Kind::Login, Source::Wtmp));
        let l = ev.login.as_ref().unwrap();
        assert_eq!(
            (l.user.as_str(), l.tty.as_deref(), l.addr.as_deref()),
            ("alice", Some("pts/2"), Some("203.0.113.9"))
        );
        assert_eq!(l.session_key.as_deref(), Some("ses:42"));
        assert_eq!(ev.process.as_ref().unwrap().auid, Some(1000));
        assert_eq!(ev.time_unix_ns, 1_700_000_000_250_000_000);
        let logout = parse(&record(
            utmp::DEAD_PROCESS,
            4000,
            b"pts/2",
            b"",
            b"",
            1_700_000_100,
            0,
            [0; 16],
        ));
        let ev = s.map(&logout, LogFile::Wtmp, "h", &lookup).unwrap();
        assert_eq!(ev.kind(), Kind::Logout);
        let l = ev.login.as_ref().unwrap();
        assert_eq!(
            (l.user.as_str(), l.session_key.as_deref(), l.host.as_deref()),
            ("alice", Some("ses:42"), Some("203.0.113.9"))
        );
        assert!(s.is_empty());
    }

    #[test]
    fn zero_filled_and_garbage_files_give_no_events_and_no_panics() {
        let mut s = Sessions::default();
        let none = |_: i32| None;
        let zeros = vec![0u8; utmp::RECORD_LEN * 4];
        let (recs, tail) = utmp::split_records(&zeros);
        assert_eq!((recs.len(), tail), (4, 0));
        for r in recs {
            let rec = utmp::parse(r).unwrap();
            assert!(s.map(&rec, LogFile::Wtmp, "h", &none).is_none());
        }
        // pseudo-random garbage: parse errors or skipped records, never a panic
        let mut x: u32 = 0x1234_5678;
        let garbage: Vec<u8> = (0..utmp::RECORD_LEN * 50)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let (recs, _) = utmp::split_records(&garbage);
        for r in recs {
            if let Ok(rec) = utmp::parse(r) {
                let _ = s.map(&rec, LogFile::Btmp, "h", &none);
            }
        }
        // a truncated record is not a record
        assert!(utmp::parse(&zeros[..utmp::RECORD_LEN - 1]).is_err());
    }

    #[test]
    fn btmp_records_are_failed_logins() {
        let mut s = Sessions::default();
        let none = |_: i32| None;
        let r = parse(&record(
            utmp::LOGIN_PROCESS,
            1,
            b"ssh:notty",
            b"root",
            b"198.51.100.7",
            5,
            0,
            v4([198, 51, 100, 7]),
        ));
        let ev = s.map(&r, LogFile::Btmp, "h", &none).unwrap();
        assert_eq!((ev.kind(), ev.source()), (Kind::LoginFailed, Source::Btmp));
        assert_eq!(ev.msg.login.unwrap().user, "root");
    }

    #[test]
    fn other_records_are_skipped_and_bytes_are_escaped() {
        let mut s = Sessions::default();
        let none = |_: i32| None;
        for t in [
            utmp::BOOT_TIME,
            utmp::RUN_LVL,
            utmp::INIT_PROCESS,
            utmp::EMPTY,
        ] {
            let r = parse(&record(t, 1, b"~", b"reboot", b"6.1", 5, 0, [0; 16]));
            assert!(s.map(&r, LogFile::Wtmp, "h", &none).is_none());
        }
        let r = parse(&record(
            utmp::USER_PROCESS,
            1,
            b"tty1",
            b"b\xffd",
            b"",
            5,
            0,
            [0; 16],
        ));
        let ev = s.map(&r, LogFile::Wtmp, "h", &none).unwrap();
        let l = ev.msg.login.unwrap();
        assert_eq!(l.user, "b\\xffd");
        assert_eq!(l.host, None);
        assert_eq!(ev.msg.process.unwrap().incomplete, vec!["session"]);
    }
}
