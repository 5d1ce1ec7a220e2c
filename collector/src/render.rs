//! Query output: a table for people, JSON lines (the sensor's event shape plus `sensor_id`
//! and `boot_id`) for programs.
use sensor_proto::json::{event_to_json, write_event_with};
use sensor_proto::time::format_rfc3339_nanos;
use sensor_proto::v1::{Event, Kind, Login};
use serde_json::Value;
use std::borrow::Cow;

use crate::store::query::Stored;

/// One JSON object per stored event.
pub fn stored_json(s: &Stored) -> Value {
    let mut v = event_to_json(&s.event);
    if let Value::Object(m) = &mut v {
        m.insert("sensor_id".into(), Value::String(s.sensor_id.clone()));
        m.insert("boot_id".into(), Value::String(s.boot_id.clone()));
    }
    v
}

/// One stored event as a JSON line, written by the sensor's own event writer (so the line is
/// the sensor's `--output json` line of that event with `sensor_id` and `boot_id` appended).
pub fn stored_line(s: &Stored) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let origin = [
        ("sensor_id", s.sensor_id.as_str()),
        ("boot_id", s.boot_id.as_str()),
    ];
    write_event_with(&s.event, &origin, &mut out);
    out.push(b'\n');
    out
}

/// One stored event as OCSF 1.5.0 (`query --format ocsf`): the shared mapping of
/// `sensor_proto::ocsf`, with the sensor id and boot as `device.uid` / `device.boot_uid` and
/// the de-duplication key as `metadata.uid`.
pub fn stored_ocsf(s: &Stored) -> Value {
    sensor_proto::ocsf::to_ocsf(
        &s.event,
        sensor_proto::ocsf::Origin {
            sensor_id: Some(&s.sensor_id),
            boot_id: Some(&s.boot_id),
        },
    )
}

/// `2024-05-01T12:00:00.123Z`: milliseconds are enough on a terminal.
pub fn short_time(ns: i64) -> String {
    let full = format_rfc3339_nanos(ns);
    format!("{}Z", &full[..23])
}

/// Whether `c` can move the cursor, clear or recolour the screen, or reorder what follows:
/// C0 controls, DEL, C1 controls and the Unicode bidirectional overrides.
fn is_terminal_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The escape for one control character: `\e`, `\n`, `\r`, `\t`, `\b`, else `\xNN` (C0,
/// DEL) or `\uNNNN` (C1, bidi), as bash's `$'...'` reads them.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\x1b' => out.push_str("\\e"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x08' => out.push_str("\\b"),
        c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push_str(&format!("\\u{:04x}", c as u32)),
    }
}

/// A field from a monitored host, safe to print on the analyst's terminal: every control
/// character is shown as its escape, so a hostile argv, path or login field cannot clear the
/// screen, move the cursor or rewrite earlier rows. Text without controls is returned as is.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_terminal_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_terminal_control(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Quotes an argument when a shell would need it; one holding control characters is
/// written in bash's `$'...'` form with the controls escaped, so it stays pasteable and
/// inert on a terminal.
pub fn shell_word(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c))
    {
        a.to_string()
    } else if a.chars().any(is_terminal_control) {
        let mut out = String::from("$'");
        for c in a.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if is_terminal_control(c) => push_escaped(&mut out, c),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// `alice on pts/0 from host addr` (the parts that were recorded).
pub fn login_text(l: &Login) -> String {
    let mut s = format!("{} on {}", l.user, l.tty.as_deref().unwrap_or("?"));
    let (host, addr) = (l.host.as_deref(), l.addr.as_deref());
    let from: Vec<&str> = match (host, addr) {
        (Some(h), Some(a)) if h == a => vec![h],
        _ => host
            .into_iter()
            .chain(addr)
            .filter(|x| !x.is_empty())
            .collect(),
    };
    if !from.is_empty() {
        s.push_str(" from ");
        s.push_str(&from.join(" "));
    }
    s
}

pub fn command_line(ev: &Event) -> String {
    let Some(p) = &ev.process else {
        return String::new();
    };
    match &p.argv {
        Some(argv) if !argv.args.is_empty() => {
            let mut s = argv
                .args
                .iter()
                .map(|a| shell_word(a))
                .collect::<Vec<_>>()
                .join(" ");
            if argv.truncated {
                s.push_str(" …");
            }
            s
        }
        _ => terminal_safe(p.exe.as_deref().unwrap_or(&p.comm)).into_owned(),
    }
}

/// The DETAIL column: what happened, by kind.
pub fn detail(ev: &Event) -> String {
    let kind = Kind::try_from(ev.kind).unwrap_or(Kind::Unspecified);
    let comm = ev.process.as_ref().map(|p| p.comm.as_str()).unwrap_or("");
    match kind {
        Kind::ProcessExec => command_line(ev),
        Kind::ProcessExit => match &ev.exit {
            Some(x) => match (x.code, x.signal) {
                (_, Some(sig)) => format!("{comm} killed by signal {sig}"),
                (Some(c), None) => format!("{comm} exit {c}"),
                (None, None) => format!("{comm} exit"),
            },
            None => comm.to_string(),
        },
        Kind::NetConnect => match &ev.connect {
            Some(c) => format!(
                "{comm} {} {} port {} {}",
                c.protocol, c.dst_addr, c.dst_port, c.result
            ),
            None => comm.to_string(),
        },
        Kind::File => match &ev.file {
            Some(f) => match &f.new_path {
                Some(n) => format!("{} {} -> {}", f.ops.join(","), f.path, n),
                None => format!("{} {}", f.ops.join(","), f.path),
            },
            None => String::new(),
        },
        Kind::Login | Kind::Logout | Kind::LoginFailed => match &ev.login {
            Some(l) => login_text(l),
            None => String::new(),
        },
        Kind::PrivilegeChange => match &ev.privilege {
            Some(p) => format!(
                "uid {}->{} euid {}->{} gid {}->{} via {}",
                p.old_uid, p.new_uid, p.old_euid, p.new_euid, p.old_gid, p.new_gid, p.via
            ),
            None => String::new(),
        },
        Kind::Flow => match &ev.flow {
            Some(f) => format!(
                "{} {}:{} -> {}:{} {} in {}B out {}B",
                f.protocol,
                f.src_addr,
                f.src_port,
                f.dst_addr,
                f.dst_port,
                f.state,
                f.bytes_in.map_or("?".into(), |b| b.to_string()),
                f.bytes_out.map_or("?".into(), |b| b.to_string())
            ),
            None => String::new(),
        },
        Kind::SensorHealth => match &ev.health {
            Some(h) => format!(
                "mode={} drops={} rss={}MiB lag={:.1}ms",
                h.mode,
                h.drops.values().sum::<u64>(),
                h.rss_bytes / (1024 * 1024),
                h.lag_ms
            ),
            None => String::new(),
        },
        // A kind without a summary of its own (a new kind): its payload's fields.
        _ => generic_detail(ev),
    }
}

/// What happened, for a kind without a summary of its own: the process's comm, then each
/// payload but the process as `name: key=value ...`, from the event's JSON (so every field
/// a payload has is shown; unknown values, null, are left out).
pub fn generic_detail(ev: &Event) -> String {
    let json = event_to_json(ev);
    let mut parts: Vec<String> = ev.process.iter().map(|p| p.comm.clone()).collect();
    for (name, v) in json.as_object().into_iter().flatten() {
        const NOT_PAYLOADS: [&str; 6] = ["seq", "time", "host", "source", "kind", "process"];
        let Some(fields) = v
            .as_object()
            .filter(|_| !NOT_PAYLOADS.contains(&name.as_str()))
        else {
            continue;
        };
        let text: Vec<String> = fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        parts.push(format!("{name}: {}", text.join(" ")));
    }
    parts.join(" ")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

/// A fixed-width table with a header.
pub fn table(rows: &[Stored]) -> String {
    let mut cells: Vec<[String; 7]> = vec![[
        "TIME".into(),
        "HOST".into(),
        "KIND".into(),
        "PID".into(),
        "UID".into(),
        "SESSION".into(),
        "DETAIL".into(),
    ]];
    for s in rows {
        let ev = &s.event;
        let p = ev.process.as_ref();
        let session = p
            .and_then(|p| p.session)
            .or_else(|| ev.login.as_ref().and_then(|l| l.session));
        cells.push(
            [
                short_time(ev.time_unix_ns),
                ev.host.clone(),
                Kind::try_from(ev.kind)
                    .unwrap_or(Kind::Unspecified)
                    .as_str()
                    .into(),
                opt(p.map(|p| p.pid)),
                opt(p.map(|p| p.uid)),
                opt(session),
                detail(ev),
            ]
            .map(|c| terminal_safe(&c).into_owned()),
        );
    }
    let mut widths = [0usize; 6];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if i < 6 {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::v1::{Argv, Exit, Process};

    fn stored(ev: Event) -> Stored {
        Stored {
            id: 1,
            sensor_id: "s".into(),
            boot_id: "b".into(),
            received_ns: 0,
            event: ev,
        }
    }

    #[test]
    fn table_and_details() {
        let exec = Event {
            kind: Kind::ProcessExec as i32,
            host: "web1".into(),
            process: Some(Process {
                pid: 42,
                uid: 1000,
                session: Some(3),
                argv: Some(Argv {
                    args: vec!["echo".into(), "two words".into(), "it's".into()],
                    truncated: false,
                    omitted_bytes: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(detail(&exec), "echo 'two words' 'it'\\''s'");
        let exit = Event {
            kind: Kind::ProcessExit as i32,
            process: Some(Process {
                comm: "sleep".into(),
                ..Default::default()
            }),
            exit: Some(Exit {
                code: None,
                signal: Some(9),
                core_dumped: false,
            }),
            ..Default::default()
        };
        assert_eq!(detail(&exit), "sleep killed by signal 9");
        let t = table(&[stored(exec)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("TIME"));
        assert!(lines[1].contains("web1") && lines[1].contains("42"), "{t}");
        let j = stored_json(&stored(exit.clone()));
        assert_eq!(j["sensor_id"], "s");
        assert_eq!(j["exit"]["signal"], 9);
        let line = stored_line(&stored(exit));
        assert_eq!(serde_json::from_slice::<Value>(&line).unwrap(), j);
        assert!(line.ends_with(b"\"}\n"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(terminal_safe("plain /tmp/a b"), "plain /tmp/a b");
        assert_eq!(
            terminal_safe("a\u{1b}[2J\r\u{8}\t\n\u{0}\u{7f}\u{9b}\u{202e}z"),
            "a\\e[2J\\r\\b\\t\\n\\x00\\x7f\\u009b\\u202ez"
        );
        assert_eq!(shell_word("\u{1b}[2J it's \\"), "$'\\e[2J it\\'s \\\\'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        let ev = Event {
            kind: Kind::ProcessExec as i32,
            process: Some(sensor_proto::v1::Process {
                exe: Some("/tmp/\u{1b}]0;x\u{7}".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(command_line(&ev), "/tmp/\\e]0;x\\x07");
    }

    #[test]
    fn a_kind_without_a_summary_shows_its_payload() {
        let ev = Event {
            kind: 999,
            process: Some(Process {
                comm: "dig".into(),
                ..Default::default()
            }),
            flow: Some(sensor_proto::v1::Flow {
                protocol: "udp".into(),
                dst_port: 53,
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = detail(&ev);
        assert!(d.starts_with("dig flow: "), "{d}");
        for part in ["protocol=udp", "dst_port=53", "src_addr= ", "state="] {
            assert!(d.contains(part), "{part} in {d}");
        }
        assert!(
            !d.contains("bytes_in"),
            "unknown counters are left out: {d}"
        );
        // Every kind has a summary, the generated full sample of each included.
        for ev in sensor_proto::samples::every_kind() {
            assert!(!detail(&ev).is_empty(), "{ev:?}");
        }
    }

    #[test]
    fn short_time_is_ms() {
        assert_eq!(short_time(1_500_000_000), "1970-01-01T00:00:01.500Z");
    }
}
