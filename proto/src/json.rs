//! An [`Event`] as the JSON object of DESIGN.md's schema: the same field names and the same
//! presence rules as the sensor's `--output json` (absent optional fields are omitted or
//! null exactly where the sensor omits them or writes null), so a JSON consumer cannot tell
//! whether an event came through the collector or straight from the sensor.
use serde_json::{json, Map, Value};

use crate::names::{kind_name, source_name};
use crate::time::format_rfc3339_nanos;
use crate::v1::{
    Ancestor, Connect, Event, Exit, File, Flow, Health, Kind, Login, Privilege, Process, Source,
};

pub fn event_to_json(ev: &Event) -> Value {
    let mut m = Map::new();
    m.insert("seq".into(), json!(ev.seq));
    m.insert("time".into(), json!(format_rfc3339_nanos(ev.time_unix_ns)));
    m.insert("host".into(), json!(ev.host));
    let source = Source::try_from(ev.source).unwrap_or(Source::Unspecified);
    m.insert("source".into(), json!(source_name(source)));
    let kind = Kind::try_from(ev.kind).unwrap_or(Kind::Unspecified);
    m.insert("kind".into(), json!(kind_name(kind)));
    if let Some(p) = &ev.process {
        m.insert("process".into(), process(p));
    }
    if let Some(x) = &ev.exit {
        m.insert("exit".into(), exit(x));
    }
    if let Some(c) = &ev.connect {
        m.insert("connect".into(), connect(c));
    }
    if let Some(h) = &ev.health {
        m.insert("health".into(), health(h));
    }
    if let Some(f) = &ev.file {
        m.insert("file".into(), file(f));
    }
    if let Some(l) = &ev.login {
        m.insert("login".into(), login(l));
    }
    if let Some(p) = &ev.privilege {
        m.insert("privilege".into(), privilege(p));
    }
    if let Some(f) = &ev.flow {
        m.insert("flow".into(), flow(f));
    }
    Value::Object(m)
}

fn process(p: &Process) -> Value {
    let mut m = Map::new();
    m.insert("pid".into(), json!(p.pid));
    if let Some(tid) = p.tid {
        m.insert("tid".into(), json!(tid));
    }
    m.insert("ppid".into(), json!(p.ppid));
    m.insert(
        "start_time".into(),
        json!(p
            .start_time_unix_ns
            .map(format_rfc3339_nanos)
            .unwrap_or_default()),
    );
    m.insert("start_boottime_ns".into(), json!(p.start_boottime_ns));
    m.insert("uid".into(), json!(p.uid));
    m.insert("euid".into(), json!(p.euid));
    m.insert("gid".into(), json!(p.gid));
    m.insert("egid".into(), json!(p.egid));
    m.insert("auid".into(), json!(p.auid));
    m.insert("session".into(), json!(p.session));
    m.insert("tty".into(), json!(p.tty));
    m.insert("comm".into(), json!(p.comm));
    if let Some(exe) = &p.exe {
        m.insert("exe".into(), json!(exe));
    }
    if p.exe_deleted {
        m.insert("exe_deleted".into(), json!(true));
    }
    if let Some(f) = &p.filename {
        m.insert("filename".into(), json!(f));
    }
    if let Some(cwd) = &p.cwd {
        m.insert("cwd".into(), json!(cwd));
    }
    if let Some(argv) = &p.argv {
        m.insert("argv".into(), json!(argv.args));
        if argv.truncated {
            m.insert("argv_truncated".into(), json!(true));
        }
        if argv.omitted_bytes > 0 {
            m.insert("argv_omitted_bytes".into(), json!(argv.omitted_bytes));
        }
    }
    m.insert("cgroup_id".into(), json!(p.cgroup_id));
    m.insert("container_id".into(), json!(p.container_id));
    m.insert(
        "ancestors".into(),
        Value::Array(p.ancestors.iter().map(ancestor).collect()),
    );
    if !p.incomplete.is_empty() {
        m.insert("incomplete".into(), json!(p.incomplete));
    }
    if let Some(user) = &p.user {
        m.insert("user".into(), json!(user));
    }
    Value::Object(m)
}

fn ancestor(a: &Ancestor) -> Value {
    json!({"pid": a.pid, "comm": a.comm, "exe": a.exe})
}

fn exit(x: &Exit) -> Value {
    let mut v = json!({"code": x.code, "signal": x.signal});
    if x.core_dumped {
        v["core_dumped"] = json!(true);
    }
    v
}

fn connect(c: &Connect) -> Value {
    let mut v = json!({
        "family": c.family,
        "protocol": c.protocol,
        "dst_addr": c.dst_addr,
        "dst_port": c.dst_port,
        "result": c.result,
        "errno": c.errno,
    });
    if let Some(a) = &c.src_addr {
        v["src_addr"] = json!(a);
    }
    if let Some(p) = c.src_port {
        v["src_port"] = json!(p);
    }
    v
}

fn health(h: &Health) -> Value {
    // BTreeMap: stable key order, like the sensor's.
    let drops: std::collections::BTreeMap<_, _> = h.drops.iter().collect();
    let events: std::collections::BTreeMap<_, _> = h.events.iter().collect();
    json!({
        "mode": h.mode,
        "reason": h.reason,
        "uptime_s": h.uptime_s,
        "drops": drops,
        "events": events,
        "cpu": h.cpu,
        "rss_bytes": h.rss_bytes,
        "lag_ms": h.lag_ms,
    })
}

fn file(f: &File) -> Value {
    let mut v = json!({"path": f.path, "ops": f.ops});
    if let Some(n) = &f.new_path {
        v["new_path"] = json!(n);
    }
    v
}

fn login(l: &Login) -> Value {
    let mut v = json!({"user": l.user, "tty": l.tty, "host": l.host, "addr": l.addr});
    if l.pid != 0 {
        v["pid"] = json!(l.pid);
    }
    if let Some(s) = l.session {
        v["session"] = json!(s);
    }
    v
}

fn privilege(p: &Privilege) -> Value {
    json!({
        "old_uid": p.old_uid, "new_uid": p.new_uid,
        "old_euid": p.old_euid, "new_euid": p.new_euid,
        "old_gid": p.old_gid, "new_gid": p.new_gid,
        "via": p.via,
    })
}

fn flow(f: &Flow) -> Value {
    json!({
        "protocol": f.protocol,
        "src_addr": f.src_addr, "src_port": f.src_port,
        "dst_addr": f.dst_addr, "dst_port": f.dst_port,
        "state": f.state,
        "bytes_in": f.bytes_in, "bytes_out": f.bytes_out,
        "packets_in": f.packets_in, "packets_out": f.packets_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Argv;

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
            ..Default::default()
        };
        let v = event_to_json(&ev);
        assert_eq!(v["kind"], "file");
        assert_eq!(v["file"]["new_path"], "/etc/y");
        assert_eq!(v["login"]["user"], "root");
        assert!(v["login"].get("pid").is_none());
    }
}
