//! The wire contract, end to end: every kind's JSON line, the same bytes from the collector
//! after encode and decode.
use crate::event::{
    Ancestor, Argv, Connect, Event, Exit, FileActivity, Flow, Health, Kind, Login, Privilege,
    Process, Source,
};
use prost::Message as _;
use sensor_proto::json::event_to_json;
use sensor_proto::v1 as pb;
use serde_json::json;

const T: i64 = 1_795_804_496_123_456_789;
const T_TEXT: &str = "2026-11-27T18:34:56.123456789Z";

fn proc_full() -> Process {
    Process {
        pid: 4242,
        tid: Some(4243),
        ppid: 1,
        start_time_unix_ns: Some(1_795_804_400_000_000_001),
        start_boottime_ns: 123_456_789_012,
        uid: 1000,
        euid: 0,
        gid: 1000,
        egid: 0,
        auid: Some(1000),
        session: Some(7),
        tty: Some("pts/3".into()),
        comm: "echo".into(),
        exe: Some("/usr/bin/echo".into()),
        filename: Some("./echo".into()),
        cwd: Some("/home/u dir".into()),
        argv: Some(Argv {
            args: vec![
                "echo".into(),
                "two words".into(),
                String::new(),
                "bad\\xffbyte".into(),
                "\"q\" 'q'".into(),
            ],
            truncated: true,
            omitted_bytes: 12345,
        }),
        exe_deleted: true,
        cgroup_id: 9876,
        container_id: "abc123".into(),
        ancestors: vec![Ancestor {
            pid: 1,
            comm: "systemd".into(),
            exe: "/usr/lib/systemd/systemd".into(),
        }],
        incomplete: vec!["cwd".into(), "loginuid".into()],
        user: None,
    }
}

fn proc_full_json() -> serde_json::Value {
    json!({
        "pid": 4242, "tid": 4243, "ppid": 1,
        "start_time": "2026-11-27T18:33:20.000000001Z",
        "start_boottime_ns": 123_456_789_012u64,
        "uid": 1000, "euid": 0, "gid": 1000, "egid": 0,
        "auid": 1000, "session": 7, "tty": "pts/3",
        "comm": "echo", "exe": "/usr/bin/echo", "exe_deleted": true, "filename": "./echo",
        "cwd": "/home/u dir",
        "argv": ["echo", "two words", "", "bad\\xffbyte", "\"q\" 'q'"],
        "argv_truncated": true,
        "argv_omitted_bytes": 12345,
        "cgroup_id": 9876, "container_id": "abc123",
        "ancestors": [{"pid": 1, "comm": "systemd", "exe": "/usr/lib/systemd/systemd"}],
        "incomplete": ["cwd", "loginuid"],
    })
}

fn ev(kind: Kind, source: Source) -> Event {
    let mut e = Event::new(kind, source, T, "host-1");
    e.seq = 17;
    e.ktime_ns = Some(5);
    e
}

fn top(kind: &str, source: &str) -> serde_json::Value {
    json!({"seq": 17, "time": T_TEXT, "host": "host-1", "source": source, "kind": kind})
}

fn login(user: &str) -> Login {
    Login {
        user: user.into(),
        tty: Some("pts/9".into()),
        host: Some("203.0.113.9".into()),
        addr: Some("203.0.113.9".into()),
        session_key: Some("wtmp:pts/9:1795804496".into()),
        pid: 0,
        session: None,
    }
}

fn login_json(user: &str) -> serde_json::Value {
    json!({"user": user, "tty": "pts/9", "host": "203.0.113.9", "addr": "203.0.113.9",
           "session_key": "wtmp:pts/9:1795804496"})
}

/// Every kind the sensor emits, each payload fully populated (plus the sparse shapes
/// where presence rules differ), with the JSON the README documents for it.
pub(crate) fn samples() -> Vec<(Event, serde_json::Value)> {
    let mut out = Vec::new();

    let mut e = ev(Kind::ProcessExec, Source::Ebpf);
    e.process = Some(proc_full());
    let mut j = top("process_exec", "ebpf");
    j["process"] = proc_full_json();
    out.push((e, j));

    // Audit mode: no start time, nothing optional.
    let mut e = ev(Kind::ProcessExec, Source::Audit);
    e.process = Some(Process {
        pid: 5,
        comm: "x".into(),
        ..Default::default()
    });
    let mut j = top("process_exec", "audit");
    j["process"] = json!({"pid": 5, "ppid": 0, "start_time": "", "start_boottime_ns": 0,
        "uid": 0, "euid": 0, "gid": 0, "egid": 0, "auid": null, "session": null,
        "tty": null, "comm": "x", "cgroup_id": 0, "container_id": "", "ancestors": []});
    out.push((e, j));

    let mut e = ev(Kind::ProcessExit, Source::Ebpf);
    e.process = Some(proc_full());
    e.exit = Some(Exit {
        code: None,
        signal: Some(9),
        core_dumped: true,
    });
    let mut j = top("process_exit", "ebpf");
    j["process"] = proc_full_json();
    j["exit"] = json!({"code": null, "signal": 9, "core_dumped": true});
    out.push((e, j));

    let mut e = ev(Kind::ProcessExit, Source::Audit);
    e.exit = Some(Exit {
        code: Some(0),
        signal: None,
        core_dumped: false,
    });
    let mut j = top("process_exit", "audit");
    j["exit"] = json!({"code": 0, "signal": null});
    out.push((e, j));

    let mut e = ev(Kind::NetConnect, Source::Ebpf);
    e.process = Some(proc_full());
    e.connect = Some(Connect {
        family: "ipv6".into(),
        protocol: "tcp".into(),
        dst_addr: "::1".into(),
        dst_port: 65535,
        result: "refused".into(),
        errno: 111,
        src_addr: None,
        src_port: None,
    });
    let mut j = top("net_connect", "ebpf");
    j["process"] = proc_full_json();
    j["connect"] = json!({"family": "ipv6", "protocol": "tcp", "dst_addr": "::1",
        "dst_port": 65535, "result": "refused", "errno": 111});
    out.push((e, j));

    let mut e = ev(Kind::File, Source::Fanotify);
    e.process = Some(proc_full());
    e.file = Some(FileActivity {
        path: "/etc/a b".into(),
        ops: vec!["rename".into(), "close_write".into()],
        new_path: Some("/etc/\"c\"".into()),
    });
    let mut j = top("file", "fanotify");
    j["process"] = proc_full_json();
    j["file"] = json!({"path": "/etc/a b", "ops": ["rename", "close_write"],
        "new_path": "/etc/\"c\""});
    out.push((e, j));

    let mut e = ev(Kind::File, Source::Inotify);
    e.file = Some(FileActivity {
        path: "/etc/x".into(),
        ops: vec!["delete".into()],
        new_path: None,
    });
    let mut j = top("file", "inotify");
    j["file"] = json!({"path": "/etc/x", "ops": ["delete"]});
    out.push((e, j));

    for (kind, source, name, src) in [
        (Kind::Login, Source::Wtmp, "login", "wtmp"),
        (Kind::Logout, Source::Wtmp, "logout", "wtmp"),
        (Kind::LoginFailed, Source::Btmp, "login_failed", "btmp"),
    ] {
        let mut e = ev(kind, source);
        e.process = Some(proc_full());
        e.login = Some(login("alice"));
        let mut j = top(name, src);
        j["process"] = proc_full_json();
        j["login"] = login_json("alice");
        out.push((e, j));
    }
    // A local login: no host, address or session key.
    let mut e = ev(Kind::Login, Source::Audit);
    e.login = Some(Login {
        user: "root".into(),
        tty: None,
        host: None,
        addr: None,
        session_key: None,
        pid: 0,
        session: None,
    });
    let mut j = top("login", "audit");
    j["login"] = json!({"user": "root", "tty": null, "host": null, "addr": null});
    out.push((e, j));

    let mut e = ev(Kind::PrivilegeChange, Source::Ebpf);
    e.process = Some(proc_full());
    e.privilege = Some(Privilege {
        old_uid: 1000,
        new_uid: 0,
        old_euid: 1000,
        new_euid: 0,
        old_gid: 1000,
        new_gid: 0,
        old_egid: Some(1000),
        new_egid: Some(0),
        old_caps: Some("0000000000000000".into()),
        new_caps: Some("000001ffffffffff".into()),
        via: "exec_setuid".into(),
    });
    let mut j = top("privilege_change", "ebpf");
    j["process"] = proc_full_json();
    j["privilege"] = json!({"old_uid": 1000, "new_uid": 0, "old_euid": 1000, "new_euid": 0,
        "old_gid": 1000, "new_gid": 0, "old_egid": 1000, "new_egid": 0,
        "old_caps": "0000000000000000", "new_caps": "000001ffffffffff",
        "via": "exec_setuid"});
    out.push((e, j));

    let mut e = ev(Kind::PrivilegeChange, Source::Audit);
    e.privilege = Some(Privilege {
        via: "pam".into(),
        ..Default::default()
    });
    let mut j = top("privilege_change", "audit");
    j["privilege"] = json!({"old_uid": 0, "new_uid": 0, "old_euid": 0, "new_euid": 0,
        "old_gid": 0, "new_gid": 0, "via": "pam"});
    out.push((e, j));

    let mut e = ev(Kind::Flow, Source::Conntrack);
    e.flow = Some(Flow {
        protocol: "tcp".into(),
        src_addr: "10.0.0.1".into(),
        src_port: 40000,
        dst_addr: "10.0.0.2".into(),
        dst_port: 443,
        state: "destroy".into(),
        bytes_in: Some(u64::MAX),
        bytes_out: Some(2),
        packets_in: Some(3),
        packets_out: Some(4),
    });
    let mut j = top("flow", "conntrack");
    j["flow"] = json!({"protocol": "tcp", "src_addr": "10.0.0.1", "src_port": 40000,
        "dst_addr": "10.0.0.2", "dst_port": 443, "state": "destroy",
        "bytes_in": u64::MAX, "bytes_out": 2, "packets_in": 3, "packets_out": 4});
    out.push((e, j));

    let mut e = ev(Kind::Flow, Source::Conntrack);
    e.flow = Some(Flow {
        protocol: "udp".into(),
        state: "new".into(),
        ..Default::default()
    });
    let mut j = top("flow", "conntrack");
    j["flow"] = json!({"protocol": "udp", "src_addr": "", "src_port": 0,
        "dst_addr": "", "dst_port": 0, "state": "new",
        "bytes_in": null, "bytes_out": null, "packets_in": null, "packets_out": null});
    out.push((e, j));

    let mut e = ev(Kind::SensorHealth, Source::Sensor);
    e.health = Some(Health {
        mode: "ebpf".into(),
        reason: "all checks passed".into(),
        uptime_s: 12.5,
        drops: [("ringbuf_exec".to_string(), 3u64), ("a".to_string(), 1)]
            .into_iter()
            .collect(),
        events: [("process_exec".to_string(), 10u64)].into_iter().collect(),
        cpu: 0.25,
        rss_bytes: 12_345_678,
        lag_ms: 1.5,
    });
    let mut j = top("sensor_health", "sensor");
    j["health"] = json!({"mode": "ebpf", "reason": "all checks passed", "uptime_s": 12.5,
        "drops": {"a": 1, "ringbuf_exec": 3}, "events": {"process_exec": 10},
        "cpu": 0.25, "rss_bytes": 12_345_678, "lag_ms": 1.5});
    out.push((e, j));
    out
}

/// The sensor's JSON line of each sample is the documented JSON, and the collector's
/// rendering of the event after the wire (encode, decode) is the same bytes.
#[test]
fn collector_json_equals_sensor_json() {
    for (ev, expected) in samples() {
        let kind = ev.kind();
        let mut line = Vec::new();
        crate::sinks::json::write_line(ev.clone(), &mut line);
        let sensor: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(sensor, expected, "sensor JSON of {kind:?}");
        let wire = ev.into_msg().encode_to_vec();
        let received = pb::Event::decode(wire.as_slice()).unwrap();
        let collector = sensor_proto::json::event_to_line(&received);
        assert_eq!(
            String::from_utf8(collector).unwrap(),
            String::from_utf8(line).unwrap(),
            "collector JSON of {kind:?}"
        );
        assert_eq!(event_to_json(&received), expected);
    }
}

/// Every kind of the schema, from its generated sample (every field of its payloads set):
/// the message survives the wire unchanged, the sensor's and the collector's JSON lines are
/// the same bytes, and the JSON holds every field (no null, no empty payload, and every
/// text value of the message, each distinct in the sample, is in it). A new kind is covered
/// without an edit here.
#[test]
fn every_kind_crosses_the_wire_whole() {
    let generated = sensor_proto::samples::every_kind();
    assert_eq!(generated.len(), Kind::ALL.len());
    for msg in generated {
        let kind = pb::Kind::try_from(msg.kind).unwrap();
        let ev = Event {
            msg: Box::new(msg.clone()),
            ktime_ns: None,
        };
        let mut line = Vec::new();
        crate::sinks::json::write_line(ev.clone(), &mut line);
        let received = pb::Event::decode(ev.into_msg().encode_to_vec().as_slice()).unwrap();
        assert_eq!(received, msg, "{kind:?} after the wire");
        assert_eq!(
            sensor_proto::json::event_to_line(&received),
            line,
            "collector JSON of {kind:?}"
        );
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(json["kind"], kind.as_str());
        let text = json.to_string();
        assert!(
            !text.contains("null"),
            "{kind:?}: a field unwritten: {text}"
        );
        let payloads: Vec<_> = json
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.is_object())
            .collect();
        assert!(!payloads.is_empty(), "{kind:?} has no payload: {text}");
        for (name, v) in payloads {
            assert!(!v.as_object().unwrap().is_empty(), "{kind:?}: empty {name}");
        }
        let debug = format!("{msg:?}");
        for text_value in debug.split('"').skip(1).step_by(2) {
            assert!(
                text.contains(&format!("\"{text_value}\"")),
                "{kind:?}: {text_value} not in {text}"
            );
        }
    }
}

#[test]
fn enums_and_times() {
    let (ev, _) = samples().remove(0);
    let p = ev.into_msg();
    assert_eq!(p.kind, pb::Kind::ProcessExec as i32);
    assert_eq!(p.source, pb::Source::Ebpf as i32);
    assert_eq!(p.time_unix_ns, T);
    assert_eq!(
        p.process.as_ref().unwrap().start_time_unix_ns,
        Some(1_795_804_400_000_000_001)
    );
    let (audit, _) = samples().remove(1);
    assert_eq!(audit.into_msg().process.unwrap().start_time_unix_ns, None);
    assert!(p.process.unwrap().argv.unwrap().truncated);
}
