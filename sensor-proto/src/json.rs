//! The one JSON writer for events: an [`Event`] as the JSON object of the event model
//! (docs/ARCHITECTURE.md#event-model).
//! The sensor's `--output json` and the collector's `query --json` both write through
//! [`write_event`], so a JSON consumer cannot tell whether an event came through the
//! collector or straight from the sensor. Times are integers until here and become RFC 3339
//! text only in this writer.
//!
//! Presence rules: optional fields of the schema that are "unknown" are written as `null`
//! (`auid`, `session`, `tty`, `exit.code`, the `login` strings, flow counters); optional
//! details are omitted when absent (`tid`, `exe`, `argv`, `new_path`, ...); `argv_truncated`
//! and `core_dumped` appear only when true. Object keys keep the order written here.
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::time::format_rfc3339_nanos;
use crate::v1::{
    Ancestor, Connect, Event, Exit, File, Flow, Health, Kind, Login, Privilege, Process, Source,
};

/// Appends `ev` as one JSON object (no newline) to `out`.
pub fn write_event(ev: &Event, out: &mut Vec<u8>) {
    write_event_with(ev, &[], out);
}

/// [`write_event`] followed by extra top-level string fields (the collector adds
/// `sensor_id` and `boot_id`).
pub fn write_event_with(ev: &Event, extra: &[(&'static str, &str)], out: &mut Vec<u8>) {
    // Destructured without `..`: a payload added to the schema and not written here is a
    // compile error, never a field silently missing from the JSON.
    let Event {
        seq,
        time_unix_ns,
        host,
        source,
        kind,
        process: process_,
        exit: exit_,
        connect: connect_,
        health: health_,
        file: file_,
        login: login_,
        privilege: privilege_,
        flow: flow_,
    } = ev;
    let mut o = Obj::open(out);
    o.num("seq", seq);
    o.str("time", &format_rfc3339_nanos(*time_unix_ns));
    o.str("host", host);
    let source = Source::try_from(*source).unwrap_or(Source::Unspecified);
    o.str("source", source.as_str());
    let kind = Kind::try_from(*kind).unwrap_or(Kind::Unspecified);
    o.str("kind", kind.as_str());
    if let Some(p) = process_ {
        process(o.key("process"), p);
    }
    if let Some(x) = exit_ {
        exit(o.key("exit"), x);
    }
    if let Some(c) = connect_ {
        connect(o.key("connect"), c);
    }
    if let Some(h) = health_ {
        health(o.key("health"), h);
    }
    if let Some(f) = file_ {
        file(o.key("file"), f);
    }
    if let Some(l) = login_ {
        login(o.key("login"), l);
    }
    if let Some(p) = privilege_ {
        privilege(o.key("privilege"), p);
    }
    if let Some(f) = flow_ {
        flow(o.key("flow"), f);
    }
    for (k, v) in extra {
        o.str(k, v);
    }
    o.close();
}

/// The event as a JSON line (object plus `\n`).
pub fn event_to_line(ev: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_event(ev, &mut out);
    out.push(b'\n');
    out
}

/// The event as a [`Value`] (for code that adds fields or compares), parsed from
/// [`write_event`]'s output so there is still only one writer.
pub fn event_to_json(ev: &Event) -> Value {
    let mut out = Vec::with_capacity(512);
    write_event(ev, &mut out);
    // The writer emits only strings, integers, finite-or-null floats, arrays and objects.
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}

fn process(out: &mut Vec<u8>, p: &Process) {
    let Process {
        pid,
        tid,
        ppid,
        start_time_unix_ns,
        start_boottime_ns,
        uid,
        euid,
        gid,
        egid,
        auid,
        session,
        tty,
        comm,
        exe,
        cwd,
        argv,
        cgroup_id,
        container_id,
        ancestors,
        incomplete,
        user,
        filename,
        exe_deleted,
    } = p;
    let mut o = Obj::open(out);
    o.num("pid", pid);
    if let Some(tid) = tid {
        o.num("tid", tid);
    }
    o.num("ppid", ppid);
    // Empty text when unknown (audit has no start time).
    let start = start_time_unix_ns.map(format_rfc3339_nanos);
    o.str("start_time", start.as_deref().unwrap_or(""));
    o.num("start_boottime_ns", start_boottime_ns);
    o.num("uid", uid);
    o.num("euid", euid);
    o.num("gid", gid);
    o.num("egid", egid);
    o.num("auid", auid);
    o.num("session", session);
    o.num("tty", tty);
    o.str("comm", comm);
    if let Some(exe) = exe {
        o.str("exe", exe);
    }
    if *exe_deleted {
        o.num("exe_deleted", &true);
    }
    if let Some(f) = filename {
        o.str("filename", f);
    }
    if let Some(cwd) = cwd {
        o.str("cwd", cwd);
    }
    if let Some(argv) = argv {
        o.num("argv", &argv.args);
        if argv.truncated {
            o.num("argv_truncated", &true);
        }
        if argv.omitted_bytes > 0 {
            o.num("argv_omitted_bytes", &argv.omitted_bytes);
        }
    }
    o.num("cgroup_id", cgroup_id);
    o.str("container_id", container_id);
    let list = o.key("ancestors");
    list.push(b'[');
    for (i, a) in ancestors.iter().enumerate() {
        if i > 0 {
            list.push(b',');
        }
        ancestor(list, a);
    }
    list.push(b']');
    if !incomplete.is_empty() {
        o.num("incomplete", incomplete);
    }
    if let Some(user) = user {
        o.str("user", user);
    }
    o.close();
}

fn ancestor(out: &mut Vec<u8>, a: &Ancestor) {
    let Ancestor { pid, comm, exe } = a;
    let mut o = Obj::open(out);
    o.num("pid", pid);
    o.str("comm", comm);
    o.str("exe", exe);
    o.close();
}

fn exit(out: &mut Vec<u8>, x: &Exit) {
    let Exit {
        code,
        signal,
        core_dumped,
    } = x;
    let mut o = Obj::open(out);
    o.num("code", code);
    o.num("signal", signal);
    if *core_dumped {
        o.num("core_dumped", &true);
    }
    o.close();
}

fn connect(out: &mut Vec<u8>, c: &Connect) {
    let Connect {
        family,
        protocol,
        dst_addr,
        dst_port,
        result,
        errno,
        src_addr,
        src_port,
    } = c;
    let mut o = Obj::open(out);
    o.str("family", family);
    o.str("protocol", protocol);
    o.str("dst_addr", dst_addr);
    o.num("dst_port", dst_port);
    o.str("result", result);
    o.num("errno", errno);
    if let Some(a) = src_addr {
        o.str("src_addr", a);
    }
    if let Some(p) = src_port {
        o.num("src_port", p);
    }
    o.close();
}

fn health(out: &mut Vec<u8>, h: &Health) {
    let Health {
        mode,
        reason,
        uptime_s,
        drops,
        events,
        cpu,
        rss_bytes,
        lag_ms,
    } = h;
    let mut o = Obj::open(out);
    o.str("mode", mode);
    o.str("reason", reason);
    o.num("uptime_s", uptime_s);
    // Sorted: a stable key order whatever map the message holds.
    o.num("drops", &drops.iter().collect::<BTreeMap<_, _>>());
    o.num("events", &events.iter().collect::<BTreeMap<_, _>>());
    o.num("cpu", cpu);
    o.num("rss_bytes", rss_bytes);
    o.num("lag_ms", lag_ms);
    o.close();
}

fn file(out: &mut Vec<u8>, f: &File) {
    let File {
        path,
        ops,
        new_path,
    } = f;
    let mut o = Obj::open(out);
    o.str("path", path);
    o.num("ops", ops);
    if let Some(n) = new_path {
        o.str("new_path", n);
    }
    o.close();
}

fn login(out: &mut Vec<u8>, l: &Login) {
    let Login {
        user,
        tty,
        host,
        addr,
        pid,
        session,
        session_key,
    } = l;
    let mut o = Obj::open(out);
    o.str("user", user);
    o.num("tty", tty);
    o.num("host", host);
    o.num("addr", addr);
    if let Some(k) = session_key {
        o.str("session_key", k);
    }
    if *pid != 0 {
        o.num("pid", pid);
    }
    if let Some(s) = session {
        o.num("session", s);
    }
    o.close();
}

fn privilege(out: &mut Vec<u8>, p: &Privilege) {
    let Privilege {
        old_uid,
        new_uid,
        old_euid,
        new_euid,
        old_gid,
        new_gid,
        via,
        old_egid,
        new_egid,
        old_caps,
        new_caps,
    } = p;
    let mut o = Obj::open(out);
    o.num("old_uid", old_uid);
    o.num("new_uid", new_uid);
    o.num("old_euid", old_euid);
    o.num("new_euid", new_euid);
    o.num("old_gid", old_gid);
    o.num("new_gid", new_gid);
    if let Some(g) = old_egid {
        o.num("old_egid", g);
    }
    if let Some(g) = new_egid {
        o.num("new_egid", g);
    }
    if let Some(c) = old_caps {
        o.str("old_caps", c);
    }
    if let Some(c) = new_caps {
        o.str("new_caps", c);
    }
    o.str("via", via);
    o.close();
}

fn flow(out: &mut Vec<u8>, f: &Flow) {
    let Flow {
        protocol,
        src_addr,
        src_port,
        dst_addr,
        dst_port,
        state,
        bytes_in,
        bytes_out,
        packets_in,
        packets_out,
    } = f;
    let mut o = Obj::open(out);
    o.str("protocol", protocol);
    o.str("src_addr", src_addr);
    o.num("src_port", src_port);
    o.str("dst_addr", dst_addr);
    o.num("dst_port", dst_port);
    o.str("state", state);
    o.num("bytes_in", bytes_in);
    o.num("bytes_out", bytes_out);
    o.num("packets_in", packets_in);
    o.num("packets_out", packets_out);
    o.close();
}

/// A JSON object being written: keys in call order, values through serde_json's own
/// escaping and number formatting.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// Writes `"k":` and hands back the buffer for the value. Keys are this file's own
    /// constants (plain ASCII names), so they are copied, not escaped.
    fn key(&mut self, k: &'static str) -> &mut Vec<u8> {
        debug_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, k: &'static str, v: &str) {
        let out = self.key(k);
        put(out, v);
    }

    /// Any other plain value: numbers, bools, `Option` (None is `null`), lists, maps.
    fn num<T: Serialize + ?Sized>(&mut self, k: &'static str, v: &T) {
        let out = self.key(k);
        put(out, v);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing strings, numbers, lists and string-keyed maps into a Vec cannot fail (a
    // non-finite float becomes null).
    let _ = serde_json::to_writer(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Argv;
    use serde_json::json;

    #[test]
    fn exec_event_shape() {
        let ev = Event {
            seq: 7,
            time_unix_ns: 1_000_000_001,
            host: "h".into(),
            source: Source::Ebpf as i32,
            kind: Kind::ProcessExec as i32,
            process: Some(Process {
                pid: 10,
                argv: Some(Argv {
                    args: vec!["a".into(), "b c".into()],
                    truncated: false,
                    omitted_bytes: 0,
                }),
                auid: None,
                session: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = event_to_json(&ev);
        assert_eq!(v["time"], "1970-01-01T00:00:01.000000001Z");
        assert_eq!(v["kind"], "process_exec");
        assert_eq!(v["source"], "ebpf");
        assert_eq!(v["process"]["argv"], json!(["a", "b c"]));
        assert_eq!(v["process"]["auid"], Value::Null);
        assert_eq!(v["process"]["session"], 3);
        assert_eq!(v["process"]["start_time"], "");
        assert!(v["process"].get("argv_truncated").is_none());
        assert!(v["process"].get("tid").is_none());
        assert!(v.get("exit").is_none());
    }

    #[test]
    fn other_kinds_shape() {
        let ev = Event {
            kind: Kind::File as i32,
            file: Some(File {
                path: "/etc/x".into(),
                ops: vec!["rename".into()],
                new_path: Some("/etc/y".into()),
            }),
            login: Some(Login {
                user: "root".into(),
                ..Default::default()
            }),
            flow: Some(Flow {
                bytes_in: Some(5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = event_to_json(&ev);
        assert_eq!(v["kind"], "file");
        assert_eq!(v["file"]["new_path"], "/etc/y");
        assert_eq!(v["login"]["user"], "root");
        assert_eq!(v["login"]["tty"], Value::Null);
        assert!(v["login"].get("pid").is_none());
        assert_eq!(v["flow"]["bytes_in"], 5);
        assert_eq!(v["flow"]["bytes_out"], Value::Null);
    }

    #[test]
    fn escapes_and_key_order() {
        let ev = Event {
            host: "a\"b\\c\n\u{1}é".into(),
            kind: 999,
            ..Default::default()
        };
        let line = event_to_line(&ev);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with("}\n"));
        assert!(text.starts_with("{\"seq\":0,\"time\":\"1970-01-01T00:00:00.000000000Z\""));
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["host"], "a\"b\\c\n\u{1}é");
        assert_eq!(v["kind"], "unspecified");
        let mut with = Vec::new();
        write_event_with(&ev, &[("sensor_id", "s")], &mut with);
        assert!(with.ends_with(b",\"sensor_id\":\"s\"}"));
    }
}
