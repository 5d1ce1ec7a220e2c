//! `collector sessions`: per (host, session id) timeline, built from stored events that carry
//! a session id: the login record when there is one, then every command of that session in
//! time order, then the logout. Pure grouping over query results.
use std::collections::BTreeMap;

use sensor_proto::v1::{Event, Kind};
use serde_json::{json, Value};

use crate::render::{command_line, login_text, short_time, stored_json, terminal_safe};
use crate::store::query::Stored;

/// The kinds a timeline is made of.
pub const TIMELINE_KINDS: [&str; 4] = ["login", "logout", "login_failed", "process_exec"];

#[derive(Debug, Default)]
pub struct Session<'a> {
    pub host: String,
    pub session: u32,
    pub login: Option<&'a Stored>,
    pub logout: Option<&'a Stored>,
    pub commands: Vec<&'a Stored>,
    pub first_ns: i64,
}

fn session_of(ev: &Event) -> Option<u32> {
    ev.process
        .as_ref()
        .and_then(|p| p.session)
        .or_else(|| ev.login.as_ref().and_then(|l| l.session))
}

/// Groups `rows` (already in time order) into sessions, ordered by their first event.
pub fn group(rows: &[Stored]) -> Vec<Session<'_>> {
    let mut by_key: BTreeMap<(String, u32), Session<'_>> = BTreeMap::new();
    for s in rows {
        let Some(id) = session_of(&s.event) else {
            continue;
        };
        let e = by_key
            .entry((s.event.host.clone(), id))
            .or_insert_with(|| Session {
                host: s.event.host.clone(),
                session: id,
                first_ns: s.event.time_unix_ns,
                ..Default::default()
            });
        e.first_ns = e.first_ns.min(s.event.time_unix_ns);
        match Kind::try_from(s.event.kind) {
            Ok(Kind::Login) => {
                e.login.get_or_insert(s);
            }
            Ok(Kind::Logout) => e.logout = Some(s),
            Ok(Kind::ProcessExec) => e.commands.push(s),
            _ => {}
        }
    }
    let mut v: Vec<Session<'_>> = by_key.into_values().collect();
    v.sort_by_key(|s| (s.first_ns, s.host.clone(), s.session));
    v
}

fn user_of(s: &Session<'_>) -> String {
    if let Some(l) = s.login.and_then(|l| l.event.login.as_ref()) {
        return l.user.clone();
    }
    s.commands
        .first()
        .and_then(|c| c.event.process.as_ref())
        .map(|p| match &p.user {
            Some(u) => u.clone(),
            None => format!("uid {}", p.auid.unwrap_or(p.uid)),
        })
        .unwrap_or_default()
}

pub fn render_text(sessions: &[Session<'_>]) -> String {
    let mut o = String::new();
    for s in sessions {
        o.push_str(&format!(
            "host {}  session {}  user {}  ({} commands)\n",
            terminal_safe(&s.host),
            s.session,
            terminal_safe(&user_of(s)),
            s.commands.len()
        ));
        match s.login.and_then(|l| l.event.login.as_ref().map(|x| (l, x))) {
            Some((st, l)) => o.push_str(&format!(
                "  {}  login  {}\n",
                short_time(st.event.time_unix_ns),
                terminal_safe(&login_text(l))
            )),
            None => o.push_str("  (no login record for this session)\n"),
        }
        for c in &s.commands {
            let p = c.event.process.as_ref();
            o.push_str(&format!(
                "  {}  pid {:<7} ppid {:<7} {}\n",
                short_time(c.event.time_unix_ns),
                p.map(|p| p.pid).unwrap_or(0),
                p.map(|p| p.ppid).unwrap_or(0),
                command_line(&c.event)
            ));
        }
        if let Some(l) = s.logout {
            o.push_str(&format!("  {}  logout\n", short_time(l.event.time_unix_ns)));
        }
        o.push('\n');
    }
    o
}

pub fn session_json(s: &Session<'_>) -> Value {
    json!({
        "host": s.host,
        "session": s.session,
        "user": user_of(s),
        "login": s.login.map(stored_json),
        "logout": s.logout.map(stored_json),
        "commands": s.commands.iter().map(|c| stored_json(c)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::v1::{Argv, Login, Process};

    fn st(ev: Event) -> Stored {
        Stored {
            id: 0,
            sensor_id: "s".into(),
            boot_id: "b".into(),
            received_ns: 0,
            event: ev,
        }
    }

    fn exec(t: i64, session: u32, arg: &str) -> Stored {
        st(Event {
            time_unix_ns: t,
            host: "h".into(),
            kind: Kind::ProcessExec as i32,
            process: Some(Process {
                pid: t as u32,
                uid: 1000,
                session: Some(session),
                argv: Some(Argv {
                    args: vec![arg.into()],
                    truncated: false,
                    omitted_bytes: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn groups_login_and_commands_in_order() {
        let login = st(Event {
            time_unix_ns: 1,
            host: "h".into(),
            kind: Kind::Login as i32,
            login: Some(Login {
                user: "alice".into(),
                tty: Some("pts/0".into()),
                session: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        });
        let rows = vec![
            login,
            exec(2, 5, "ls"),
            exec(3, 6, "other"),
            exec(4, 5, "id"),
        ];
        let g = group(&rows);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].session, 5);
        assert!(g[0].login.is_some());
        let cmds: Vec<String> = g[0]
            .commands
            .iter()
            .map(|c| command_line(&c.event))
            .collect();
        assert_eq!(cmds, ["ls", "id"]);
        assert_eq!(g[1].session, 6);
        let text = render_text(&g);
        assert!(
            text.contains("session 5  user alice  (2 commands)"),
            "{text}"
        );
        assert!(
            text.contains("(no login record for this session)"),
            "{text}"
        );
        let j = session_json(&g[0]);
        assert_eq!(j["user"], "alice");
        assert_eq!(j["commands"].as_array().unwrap().len(), 2);
    }
}
