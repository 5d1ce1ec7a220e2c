//! OCSF 1.5.0 objects built from the parts of an [`Event`](crate::v1::Event): process, actor,
//! user, session, file and network endpoint. Each builder also returns (or fills) the
//! `unmapped` part: the fields of the event model that OCSF has no attribute for.
use serde_json::{json, Map, Value};

use crate::time::format_rfc3339_nanos;
use crate::v1::{Ancestor, Process};

/// ns since the Unix epoch -> OCSF timestamp (ms since the Unix epoch).
pub fn ms(unix_ns: i64) -> i64 {
    unix_ns.div_euclid(1_000_000)
}

/// Inserts `v` under `k` unless it is an empty string.
fn put_str(m: &mut Map<String, Value>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.into(), json!(v));
    }
}

/// The last component of a path (the whole text when it has no `/`).
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// OCSF `process` of an event's process, and the event-model fields it cannot carry.
///
/// Mapped: pid, tid, comm (`name`), exe (`path`, `file`), argv (`cmd_line`, joined with
/// spaces), cwd (`working_directory`), start time (`created_time`), uid and user
/// (`user`), session and tty (`session`), ppid and the first ancestor (`parent_process`),
/// ancestors (`ancestry`), and `uid` = `pid:start_boottime_ns`, the sensor's process key.
/// Unmapped (under the event model's names): ppid is kept too, start_time (ns precision),
/// start_boottime_ns, euid, gid, egid, auid, argv as a list (exact arguments), argv_truncated,
/// filename, cgroup_id, container_id, incomplete.
pub fn process(p: &Process) -> (Value, Value) {
    let mut m = Map::new();
    m.insert("pid".into(), json!(p.pid));
    if let Some(tid) = p.tid {
        m.insert("tid".into(), json!(tid));
    }
    m.insert(
        "uid".into(),
        json!(format!("{}:{}", p.pid, p.start_boottime_ns)),
    );
    put_str(&mut m, "name", &p.comm);
    if let Some(exe) = p.exe.as_deref().filter(|e| !e.is_empty()) {
        m.insert("path".into(), json!(exe));
        m.insert("file".into(), file_object(exe, 1));
    }
    if let Some(argv) = p.argv.as_ref().filter(|a| !a.args.is_empty()) {
        m.insert("cmd_line".into(), json!(argv.args.join(" ")));
    }
    if let Some(cwd) = &p.cwd {
        m.insert("working_directory".into(), json!(cwd));
    }
    if let Some(t) = p.start_time_unix_ns {
        m.insert("created_time".into(), json!(ms(t)));
    }
    m.insert("user".into(), user(p.uid, p.user.as_deref()));
    if let Some(s) = session(p.session, p.tty.as_deref()) {
        m.insert("session".into(), s);
    }
    m.insert("parent_process".into(), parent(p));
    if !p.ancestors.is_empty() {
        m.insert(
            "ancestry".into(),
            Value::Array(p.ancestors.iter().map(ancestor).collect()),
        );
    }
    (Value::Object(m), process_unmapped(p))
}

fn process_unmapped(p: &Process) -> Value {
    let mut u = Map::new();
    u.insert("ppid".into(), json!(p.ppid));
    u.insert(
        "start_time".into(),
        json!(p
            .start_time_unix_ns
            .map(format_rfc3339_nanos)
            .unwrap_or_default()),
    );
    u.insert("start_boottime_ns".into(), json!(p.start_boottime_ns));
    u.insert("euid".into(), json!(p.euid));
    u.insert("gid".into(), json!(p.gid));
    u.insert("egid".into(), json!(p.egid));
    u.insert("auid".into(), json!(p.auid));
    if let Some(argv) = &p.argv {
        u.insert("argv".into(), json!(argv.args));
        if argv.omitted_bytes > 0 {
            u.insert("argv_omitted_bytes".into(), json!(argv.omitted_bytes));
        }
        if argv.truncated {
            u.insert("argv_truncated".into(), json!(true));
        }
    }
    if let Some(f) = &p.filename {
        u.insert("filename".into(), json!(f));
    }
    if p.exe_deleted {
        u.insert("exe_deleted".into(), json!(true));
    }
    u.insert("cgroup_id".into(), json!(p.cgroup_id));
    u.insert("container_id".into(), json!(p.container_id));
    if !p.incomplete.is_empty() {
        u.insert("incomplete".into(), json!(p.incomplete));
    }
    Value::Object(u)
}

/// The parent: its pid, plus name and path when the nearest ancestor is that parent.
fn parent(p: &Process) -> Value {
    let mut m = Map::new();
    m.insert("pid".into(), json!(p.ppid));
    if let Some(a) = p.ancestors.first().filter(|a| a.pid == p.ppid) {
        put_str(&mut m, "name", &a.comm);
        put_str(&mut m, "path", &a.exe);
    }
    Value::Object(m)
}

fn ancestor(a: &Ancestor) -> Value {
    let mut m = Map::new();
    m.insert("pid".into(), json!(a.pid));
    put_str(&mut m, "name", &a.comm);
    put_str(&mut m, "path", &a.exe);
    Value::Object(m)
}

/// OCSF `user`: the numeric id as text (OCSF `uid` is a string) and the name when known.
pub fn user(uid: u32, name: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("uid".into(), json!(uid.to_string()));
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        m.insert("name".into(), json!(n));
    }
    Value::Object(m)
}

/// OCSF `session` from the audit session id and the terminal; `None` when both are unknown.
pub fn session(id: Option<u32>, tty: Option<&str>) -> Option<Value> {
    let mut m = Map::new();
    if let Some(id) = id {
        m.insert("uid".into(), json!(id.to_string()));
    }
    if let Some(t) = tty.filter(|t| !t.is_empty()) {
        m.insert("terminal".into(), json!(t));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// OCSF `actor` of an event whose subject is `p`: the process itself, its user, its session.
/// The login user (auid) goes to `actor.user` when it is set: that is the person behind the
/// process, whatever uid the process runs as now.
pub fn actor(p: &Process) -> Value {
    let (proc_obj, _) = process(p);
    let mut m = Map::new();
    m.insert("process".into(), proc_obj);
    let (uid, name) = match p.auid {
        Some(a) if a != p.uid => (a, None),
        Some(a) => (a, p.user.as_deref()),
        None => (p.uid, p.user.as_deref()),
    };
    m.insert("user".into(), user(uid, name));
    if let Some(s) = session(p.session, p.tty.as_deref()) {
        m.insert("session".into(), s);
    }
    Value::Object(m)
}

/// The actor of a process_exec or process_exit: the parent, which started (or reaps) the
/// process, with the same user and session as the process.
pub fn parent_actor(p: &Process) -> Value {
    let mut m = match actor(p) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("process".into(), parent(p));
    Value::Object(m)
}

/// OCSF `file` for a path. `type_id` 1 is "Regular File", 0 "Unknown" (the sensor does not
/// report what kind of file a path is).
pub fn file_object(path: &str, type_id: u8) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(base_name(path)));
    m.insert("path".into(), json!(path));
    if let Some((dir, _)) = path.rsplit_once('/') {
        m.insert(
            "parent_folder".into(),
            json!(if dir.is_empty() { "/" } else { dir }),
        );
    }
    m.insert("type_id".into(), json!(type_id));
    m.insert(
        "type".into(),
        json!(if type_id == 1 {
            "Regular File"
        } else {
            "Unknown"
        }),
    );
    Value::Object(m)
}

/// OCSF `network_endpoint` from an address and a port (either may be absent).
pub fn endpoint(ip: Option<&str>, port: Option<u32>) -> Option<Value> {
    let mut m = Map::new();
    if let Some(ip) = ip.filter(|i| !i.is_empty()) {
        m.insert("ip".into(), json!(ip));
    }
    if let Some(p) = port {
        m.insert("port".into(), json!(p));
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// OCSF `connection_info`: protocol name and IANA number, IP version, direction.
/// `direction_id`: 0 Unknown, 2 Outbound.
pub fn connection_info(protocol: &str, family: Option<&str>, direction_id: u8) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "protocol_name", protocol);
    let num = match protocol {
        "icmp" => Some(1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmpv6" => Some(58),
        "sctp" => Some(132),
        _ => None,
    };
    if let Some(n) = num {
        m.insert("protocol_num".into(), json!(n));
    }
    match family {
        Some("ipv4") => {
            m.insert("protocol_ver_id".into(), json!(4));
            m.insert(
                "protocol_ver".into(),
                json!("Internet Protocol version 4 (IPv4)"),
            );
        }
        Some("ipv6") => {
            m.insert("protocol_ver_id".into(), json!(6));
            m.insert(
                "protocol_ver".into(),
                json!("Internet Protocol version 6 (IPv6)"),
            );
        }
        _ => {}
    }
    m.insert("direction_id".into(), json!(direction_id));
    m.insert(
        "direction".into(),
        json!(if direction_id == 2 {
            "Outbound"
        } else {
            "Unknown"
        }),
    );
    Value::Object(m)
}
