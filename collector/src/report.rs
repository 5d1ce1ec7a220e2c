//! `collector report --session ID --html FILE`: one self-contained HTML page about one login
//! session (no scripts, no external resources: it works offline and can be attached to a
//! ticket). The login (who, from where, tty), a timeline of everything under the session with
//! files, connections and privilege changes in place, a process tree, and the logout.
//! Everything taken from events is HTML-escaped: argv and paths are attacker-controlled.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sensor_proto::v1::{Event, Kind};

use crate::render::{command_line, short_time};
use crate::store::query::{fetch, Filter, Stored};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no events of session {0} in that window")]
    NotFound(u32),
    #[error("session {session} exists on several hosts ({hosts}): choose one with --host")]
    SeveralHosts { session: u32, hosts: String },
}

/// Which events a report covers besides the session id.
#[derive(Debug, Default, Clone)]
pub struct Window {
    pub host: Option<String>,
    /// Inclusive, ns since the epoch.
    pub since_ns: Option<i64>,
    /// Exclusive, ns since the epoch.
    pub until_ns: Option<i64>,
}

/// Reads session `session` from the store and renders its page; returns the HTML and the
/// number of events on its timeline. A logout record may not carry the session id: the
/// first logout on the login's tty after the login ends the session.
pub fn build(
    conn: &rusqlite::Connection,
    session: u32,
    w: &Window,
) -> Result<(String, usize), ReportError> {
    let hosts: Vec<String> = w.host.iter().cloned().collect();
    let rows = fetch(
        conn,
        &Filter {
            hosts,
            since_ns: w.since_ns,
            until_ns: w.until_ns,
            session: Some(session),
            ..Default::default()
        },
    )?;
    let found: BTreeSet<&str> = rows.iter().map(|r| r.event.host.as_str()).collect();
    let host = match found.len() {
        0 => return Err(ReportError::NotFound(session)),
        1 => found.iter().next().copied().unwrap_or_default().to_string(),
        _ => {
            return Err(ReportError::SeveralHosts {
                session,
                hosts: found.into_iter().collect::<Vec<_>>().join(", "),
            })
        }
    };
    let login = rows.iter().find(|r| kind(&r.event) == Kind::Login);
    let logouts: Vec<Stored> = match login.and_then(|l| l.event.login.as_ref().map(|x| (l, x))) {
        Some((l, x)) => fetch(
            conn,
            &Filter {
                hosts: vec![host.clone()],
                kinds: vec!["logout".into()],
                since_ns: Some(l.event.time_unix_ns),
                until_ns: w.until_ns,
                ..Default::default()
            },
        )?
        .into_iter()
        .filter(|r| r.event.login.as_ref().is_some_and(|y| y.tty == x.tty))
        .take(1)
        .collect(),
        None => Vec::new(),
    };
    let r = Report::new(&host, session, &rows, logouts.first());
    Ok((render_html(&r), r.timeline.len()))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn kind(ev: &Event) -> Kind {
    Kind::try_from(ev.kind).unwrap_or(Kind::Unspecified)
}

/// What happened, in one line of text (not yet escaped).
fn detail(ev: &Event) -> String {
    match kind(ev) {
        Kind::ProcessExec => command_line(ev),
        Kind::ProcessExit => match &ev.exit {
            Some(x) => match (x.code, x.signal) {
                (_, Some(s)) => format!("killed by signal {s}"),
                (Some(c), None) => format!("exit {c}"),
                _ => "exit".into(),
            },
            None => "exit".into(),
        },
        Kind::File => ev.file.as_ref().map_or(String::new(), |f| {
            let mut s = format!("{} {}", f.ops.join(","), f.path);
            if let Some(n) = &f.new_path {
                let _ = write!(s, " -> {n}");
            }
            s
        }),
        Kind::NetConnect => ev.connect.as_ref().map_or(String::new(), |c| {
            format!("{} {}:{} {}", c.protocol, c.dst_addr, c.dst_port, c.result)
        }),
        Kind::PrivilegeChange => ev.privilege.as_ref().map_or(String::new(), |p| {
            format!(
                "{}: uid {} -> {}, euid {} -> {}, gid {} -> {}",
                p.via, p.old_uid, p.new_uid, p.old_euid, p.new_euid, p.old_gid, p.new_gid
            )
        }),
        Kind::Flow => ev.flow.as_ref().map_or(String::new(), |f| {
            format!(
                "{} {}:{} -> {}:{} {}",
                f.protocol, f.src_addr, f.src_port, f.dst_addr, f.dst_port, f.state
            )
        }),
        Kind::Login | Kind::Logout | Kind::LoginFailed => ev
            .login
            .as_ref()
            .map_or(String::new(), crate::render::login_text),
        Kind::SensorHealth => String::new(),
        // A kind without a summary of its own (a new kind): its payload's fields.
        _ => crate::render::generic_detail(ev),
    }
}

/// The session's events, split into what the page shows.
pub struct Report<'a> {
    pub host: String,
    pub session: u32,
    pub login: Option<&'a Stored>,
    pub logout: Option<&'a Stored>,
    /// Every event of the session in time order (login and logout included).
    pub timeline: Vec<&'a Stored>,
}

impl<'a> Report<'a> {
    /// `rows`: the session's events in time order; `logout`: the logout found for it.
    pub fn new(host: &str, session: u32, rows: &'a [Stored], logout: Option<&'a Stored>) -> Self {
        let login = rows.iter().find(|s| kind(&s.event) == Kind::Login);
        let logout = rows
            .iter()
            .find(|s| kind(&s.event) == Kind::Logout)
            .or(logout);
        let mut timeline: Vec<&Stored> = rows.iter().collect();
        if let Some(l) = logout {
            if !timeline.iter().any(|s| std::ptr::eq(*s, l)) {
                timeline.push(l);
            }
        }
        timeline.sort_by_key(|s| (s.event.time_unix_ns, s.event.seq));
        Report {
            host: host.to_string(),
            session,
            login,
            logout,
            timeline,
        }
    }

    fn of(&self, k: Kind) -> impl Iterator<Item = &&'a Stored> {
        self.timeline.iter().filter(move |s| kind(&s.event) == k)
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;width:100%}td,th{padding:3px 8px;border-bottom:1px solid #ddd;\
text-align:left;vertical-align:top}td.t{white-space:nowrap;color:#666;font-family:monospace}\
td.d{font-family:monospace;white-space:pre-wrap;word-break:break-all}\
.k{display:inline-block;padding:0 6px;border-radius:3px;font-size:.85em;color:#fff}\
.process_exec{background:#2a6}.process_exit{background:#888}.file{background:#a60}\
.net_connect,.flow{background:#26a}.privilege_change{background:#c22}\
.login,.logout,.login_failed{background:#639}\
ul.tree,ul.tree ul{list-style:none;padding-left:1.4em;border-left:1px dotted #aaa}\
ul.tree li{font-family:monospace;word-break:break-all}\
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{color:#666}";

/// The whole page.
pub fn render_html(r: &Report<'_>) -> String {
    let mut o = String::new();
    let title = format!("Session {} on {}", r.session, r.host);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    header(&mut o, r);
    timeline(&mut o, r);
    tree(&mut o, r);
    lists(&mut o, r);
    o.push_str("</body></html>\n");
    o
}

fn header(o: &mut String, r: &Report<'_>) {
    o.push_str("<section id=\"login\"><dl>");
    let mut row = |k: &str, v: &str| {
        let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    match r.login.and_then(|s| s.event.login.as_ref().map(|l| (s, l))) {
        Some((s, l)) => {
            row("user", &l.user);
            let from = format!(
                "{} {}",
                l.host.as_deref().unwrap_or(""),
                l.addr.as_deref().unwrap_or("")
            )
            .trim()
            .to_string();
            row("from", if from.is_empty() { "local" } else { &from });
            row("tty", l.tty.as_deref().unwrap_or(""));
            row("login", &short_time(s.event.time_unix_ns));
        }
        None => row("login", "no login record for this session"),
    }
    match r.logout {
        Some(s) => row("logout", &short_time(s.event.time_unix_ns)),
        None => row(
            "logout",
            "not seen (still logged in, or outside the window)",
        ),
    }
    let count = |k| r.of(k).count().to_string();
    row("commands", &count(Kind::ProcessExec));
    row("files changed", &count(Kind::File));
    row("connections", &count(Kind::NetConnect));
    row("privilege changes", &count(Kind::PrivilegeChange));
    o.push_str("</dl></section>\n");
}

fn timeline(o: &mut String, r: &Report<'_>) {
    o.push_str(
        "<h2>Timeline</h2>\n<table id=\"timeline\"><tr><th>time</th><th>what</th><th>pid</th>\
         <th>detail</th></tr>\n",
    );
    for s in &r.timeline {
        let k = kind(&s.event).as_str();
        let pid = s
            .event
            .process
            .as_ref()
            .map_or(String::new(), |p| p.pid.to_string());
        let _ = writeln!(
            o,
            "<tr class=\"ev-{k}\"><td class=\"t\">{}</td><td><span class=\"k {k}\">{k}</span></td>\
             <td>{}</td><td class=\"d\">{}</td></tr>",
            esc(&short_time(s.event.time_unix_ns)),
            esc(&pid),
            esc(&detail(&s.event))
        );
    }
    o.push_str("</table>\n");
}

/// Process tree of the session's execs: children under the exec of their parent pid.
fn tree(o: &mut String, r: &Report<'_>) {
    let execs: Vec<&Stored> = r.of(Kind::ProcessExec).copied().collect();
    let pids: BTreeSet<u32> = execs
        .iter()
        .filter_map(|s| s.event.process.as_ref().map(|p| p.pid))
        .collect();
    let mut children: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (i, s) in execs.iter().enumerate() {
        let p = s.event.process.clone().unwrap_or_default();
        // An exec whose parent also exec'd in this session hangs under it (a process that
        // exec'd twice keeps one node per exec, the later under nothing but its parent).
        if p.ppid != p.pid && pids.contains(&p.ppid) {
            children.entry(p.ppid).or_default().push(i);
        } else {
            roots.push(i);
        }
    }
    o.push_str("<h2>Process tree</h2>\n<ul class=\"tree\" id=\"tree\">\n");
    let mut seen = BTreeSet::new();
    for i in roots {
        node(o, &execs, &children, i, &mut seen);
    }
    o.push_str("</ul>\n");
}

fn node(
    o: &mut String,
    execs: &[&Stored],
    children: &BTreeMap<u32, Vec<usize>>,
    i: usize,
    seen: &mut BTreeSet<usize>,
) {
    if !seen.insert(i) {
        return;
    }
    let ev = &execs[i].event;
    let pid = ev.process.as_ref().map_or(0, |p| p.pid);
    let _ = write!(
        o,
        "<li>{} <span class=\"pid\">[{pid}]</span> {}",
        esc(&short_time(ev.time_unix_ns)),
        esc(&command_line(ev))
    );
    // Children of this pid that started after this exec.
    let kids: Vec<usize> = children
        .get(&pid)
        .map(|v| {
            v.iter()
                .copied()
                .filter(|&k| execs[k].event.time_unix_ns >= ev.time_unix_ns)
                .collect()
        })
        .unwrap_or_default();
    if !kids.is_empty() {
        o.push_str("<ul>");
        for k in kids {
            node(o, execs, children, k, seen);
        }
        o.push_str("</ul>");
    }
    o.push_str("</li>\n");
}

fn lists(o: &mut String, r: &Report<'_>) {
    for (title, id, k) in [
        ("Files changed", "files", Kind::File),
        ("Connections", "connections", Kind::NetConnect),
        ("Privilege changes", "privileges", Kind::PrivilegeChange),
    ] {
        let _ = writeln!(o, "<h2>{title}</h2>\n<ul id=\"{id}\">");
        let mut any = false;
        for s in r.of(k) {
            any = true;
            let _ = writeln!(
                o,
                "<li>{} {}</li>",
                esc(&short_time(s.event.time_unix_ns)),
                esc(&detail(&s.event))
            );
        }
        if !any {
            o.push_str("<li>none</li>\n");
        }
        o.push_str("</ul>\n");
    }
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

    fn exec(t: i64, pid: u32, ppid: u32, args: &[&str]) -> Stored {
        st(Event {
            time_unix_ns: t,
            kind: Kind::ProcessExec as i32,
            process: Some(Process {
                pid,
                ppid,
                session: Some(5),
                argv: Some(Argv {
                    args: args.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn escapes_hostile_text() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let login = st(Event {
            time_unix_ns: 1,
            kind: Kind::Login as i32,
            login: Some(Login {
                user: "<b>eve</b>".into(),
                tty: Some("pts/1".into()),
                session: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        });
        let rows = vec![
            login,
            exec(2, 10, 1, &["bash"]),
            exec(3, 11, 10, &["echo", "<script>alert(1)</script>"]),
        ];
        let r = Report::new("h<1>", 5, &rows, None);
        let html = render_html(&r);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>eve"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("Session 5 on h&lt;1&gt;"));
        // The child sits inside its parent's list item.
        let bash = html.find("<li>").unwrap();
        let inner = html[bash..].find("<ul><li>").map(|i| i + bash).unwrap();
        assert!(html[inner..].contains("alert(1)"));
    }
}
