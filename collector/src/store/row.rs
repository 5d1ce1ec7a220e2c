//! The indexed columns of one event: pure, so what a query can find is unit-tested.
use sensor_proto::names::{kind_name, source_name};
use sensor_proto::v1::{Event, Kind, Source};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns<'a> {
    pub time_ns: i64,
    pub host: &'a str,
    pub kind: &'static str,
    pub source: &'static str,
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    pub auid: Option<u32>,
    /// User name: the login's user, or the process's resolved user.
    pub user: Option<&'a str>,
    pub session: Option<u32>,
    pub tty: Option<&'a str>,
    /// What `--text` searches: exe, argv joined by spaces, file paths.
    pub text: Option<String>,
}

pub fn columns(ev: &Event) -> Columns<'_> {
    let kind = Kind::try_from(ev.kind).unwrap_or(Kind::Unspecified);
    let source = Source::try_from(ev.source).unwrap_or(Source::Unspecified);
    let p = ev.process.as_ref();
    let login = ev.login.as_ref();
    let mut text = String::new();
    let mut push = |s: &str| {
        if !s.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(s);
        }
    };
    if let Some(p) = p {
        if let Some(exe) = &p.exe {
            push(exe);
        }
        if let Some(argv) = &p.argv {
            for a in &argv.args {
                push(a);
            }
        }
    }
    if let Some(f) = &ev.file {
        push(&f.path);
        if let Some(n) = &f.new_path {
            push(n);
        }
    }
    Columns {
        time_ns: ev.time_unix_ns,
        host: &ev.host,
        kind: kind_name(kind),
        source: source_name(source),
        pid: p
            .map(|p| p.pid)
            .or_else(|| login.map(|l| l.pid).filter(|&x| x != 0)),
        ppid: p.map(|p| p.ppid),
        uid: p.map(|p| p.uid),
        auid: p.and_then(|p| p.auid),
        user: login
            .map(|l| l.user.as_str())
            .or_else(|| p.and_then(|p| p.user.as_deref())),
        session: p
            .and_then(|p| p.session)
            .or_else(|| login.and_then(|l| l.session)),
        tty: p.and_then(|p| p.tty.as_deref()).or_else(|| {
            login
                .and_then(|l| l.tty.as_deref())
                .filter(|t| !t.is_empty())
        }),
        text: (!text.is_empty()).then_some(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::v1::{Argv, File, Login, Process};

    #[test]
    fn exec_columns() {
        let ev = Event {
            kind: Kind::ProcessExec as i32,
            source: Source::Ebpf as i32,
            host: "h".into(),
            process: Some(Process {
                pid: 5,
                ppid: 1,
                uid: 1000,
                auid: Some(1000),
                session: Some(4),
                tty: Some("pts/1".into()),
                exe: Some("/bin/ls".into()),
                argv: Some(Argv {
                    args: vec!["ls".into(), "-l".into()],
                    truncated: false,
                    omitted_bytes: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = columns(&ev);
        assert_eq!(c.kind, "process_exec");
        assert_eq!(c.source, "ebpf");
        assert_eq!((c.pid, c.uid, c.session), (Some(5), Some(1000), Some(4)));
        assert_eq!(c.text.as_deref(), Some("/bin/ls ls -l"));
        assert_eq!(c.tty, Some("pts/1"));
        assert_eq!(c.user, None);
    }

    #[test]
    fn login_and_file_columns() {
        let ev = Event {
            kind: Kind::Login as i32,
            login: Some(Login {
                user: "alice".into(),
                tty: Some("pts/2".into()),
                pid: 77,
                session: Some(9),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = columns(&ev);
        assert_eq!(c.user, Some("alice"));
        assert_eq!(
            (c.pid, c.session, c.tty),
            (Some(77), Some(9), Some("pts/2"))
        );
        assert_eq!(c.text, None);
        let ev = Event {
            kind: Kind::File as i32,
            file: Some(File {
                path: "/etc/a".into(),
                ops: vec![],
                new_path: Some("/etc/b".into()),
            }),
            ..Default::default()
        };
        assert_eq!(columns(&ev).text.as_deref(), Some("/etc/a /etc/b"));
        assert_eq!(columns(&ev).kind, "file");
    }
}
