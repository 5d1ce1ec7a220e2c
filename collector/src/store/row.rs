//! The indexed columns of one event: pure, so what a query can find is unit-tested; and a
//! batch's columns and bodies in a form the writer thread only binds (see
//! `docs/ARCHITECTURE.md#collector`).
use std::borrow::Cow;

use prost::bytes::Bytes;
use prost::Message as _;
use sensor_proto::v1::{Event, Kind, Source};

/// The indexed columns of one event; `S` is how a string column is held (borrowed text
/// from [`columns`], or a [`Span`] in a [`RowBatch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns<S> {
    pub time_ns: i64,
    pub host: S,
    pub kind: &'static str,
    pub source: &'static str,
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    pub auid: Option<u32>,
    /// User name: the login's user, or the process's resolved user.
    pub user: Option<S>,
    pub session: Option<u32>,
    pub tty: Option<S>,
    /// What `--text` searches: exe, argv joined by spaces, file paths.
    pub text: Option<S>,
}

impl<S> Columns<S> {
    /// The same columns with every string turned into `f(string)`.
    pub fn map<T>(self, mut f: impl FnMut(S) -> T) -> Columns<T> {
        Columns {
            time_ns: self.time_ns,
            host: f(self.host),
            kind: self.kind,
            source: self.source,
            pid: self.pid,
            ppid: self.ppid,
            uid: self.uid,
            auid: self.auid,
            user: self.user.map(&mut f),
            session: self.session,
            tty: self.tty.map(&mut f),
            text: self.text.map(&mut f),
        }
    }
}

pub fn columns(ev: &Event) -> Columns<Cow<'_, str>> {
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
        host: Cow::Borrowed(ev.host.as_str()),
        kind: kind.as_str(),
        source: source.as_str(),
        pid: p
            .map(|p| p.pid)
            .or_else(|| login.map(|l| l.pid).filter(|&x| x != 0)),
        ppid: p.map(|p| p.ppid),
        uid: p.map(|p| p.uid),
        auid: p.and_then(|p| p.auid),
        user: login
            .map(|l| l.user.as_str())
            .or_else(|| p.and_then(|p| p.user.as_deref()))
            .map(Cow::Borrowed),
        session: p
            .and_then(|p| p.session)
            .or_else(|| login.and_then(|l| l.session)),
        tty: p
            .and_then(|p| p.tty.as_deref())
            .or_else(|| {
                login
                    .and_then(|l| l.tty.as_deref())
                    .filter(|t| !t.is_empty())
            })
            .map(Cow::Borrowed),
        text: (!text.is_empty()).then_some(Cow::Owned(text)),
    }
}

/// Where a string lies in [`RowBatch`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(usize, usize);

/// One row: its seq and its columns, their strings in the batch's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub seq: u64,
    pub cols: Columns<Span>,
}

/// A batch as the writer stores it: built by the stream's task, so the writer thread neither
/// walks nor frees the decoded events, and frees two buffers per batch instead of a few
/// strings per event.
#[derive(Debug, Default)]
pub struct RowBatch {
    strings: String,
    pub rows: Vec<Row>,
    /// Each row's protobuf bytes: as received, or encoded here.
    pub bodies: Vec<Bytes>,
}

impl RowBatch {
    /// `bodies`, when it has one entry per event, holds the bytes each event was decoded
    /// from; otherwise every event is encoded.
    pub fn new(events: &[Event], bodies: Vec<Bytes>) -> RowBatch {
        let bodies = if bodies.len() == events.len() {
            bodies
        } else {
            events
                .iter()
                .map(|e| Bytes::from(e.encode_to_vec()))
                .collect()
        };
        let mut strings = String::new();
        let mut put = |s: &str| {
            let start = strings.len();
            strings.push_str(s);
            Span(start, strings.len())
        };
        let rows = events
            .iter()
            .map(|ev| Row {
                seq: ev.seq,
                cols: columns(ev).map(|s| put(&s)),
            })
            .collect();
        RowBatch {
            strings,
            rows,
            bodies,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The string at `span`.
    pub fn str(&self, span: Span) -> &str {
        self.strings.get(span.0..span.1).unwrap_or("")
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
        assert_eq!(c.tty.as_deref(), Some("pts/1"));
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
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(
            (c.pid, c.session, c.tty.as_deref()),
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

    #[test]
    fn a_row_batch_holds_the_columns_and_the_bodies() {
        let ev = |seq, user: &str| Event {
            seq,
            kind: Kind::Login as i32,
            host: format!("host-{seq}"),
            login: Some(Login {
                user: user.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let events = [ev(1, "alice"), ev(2, "bob")];
        let b = RowBatch::new(&events, Vec::new());
        assert_eq!(b.len(), 2);
        for (row, (e, body)) in b.rows.iter().zip(events.iter().zip(&b.bodies)) {
            assert_eq!(row.seq, e.seq);
            assert_eq!(b.str(row.cols.host), e.host);
            assert_eq!(Event::decode(body.clone()).unwrap(), *e);
        }
        assert_eq!(b.rows[1].cols.user.map(|s| b.str(s)), Some("bob"));
        assert_eq!(b.rows[0].cols.tty, None);
        // Bytes given for every event are kept as they are.
        let given = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        assert_eq!(RowBatch::new(&events, given.clone()).bodies, given);
    }
}
