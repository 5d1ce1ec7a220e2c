//! An [`Event`] as an OCSF 1.5.0 event (Open Cybersecurity Schema Framework): one pure
//! function, [`to_ocsf`], used by `sensor run --output ocsf` and `collector query --format
//! ocsf`. The README's "OCSF export" section has the table of classes and activities.
//!
//! Every kind maps to one OCSF event with `class_uid`, `activity_id`, `type_uid`, `time`
//! (ms), `metadata`, `device` (the host) and the class's subject (process, actor, file, user,
//! endpoints). Nothing is lost: the event-model fields OCSF has no attribute for go to
//! `unmapped`, under their event-model names (`unmapped.process.argv`, `unmapped.exit.signal`,
//! `unmapped.health.drops`, ...); the exact ns time is `metadata.original_time`.
//!
//! Choices where OCSF offers several:
//! - privilege_change is Process Activity / Set User ID (1007/5): OCSF defines that activity
//!   as a process changing its user identity, which is what setuid/setresuid/setgid report.
//!   Authorize Session (3003) is about privileges granted to a new logon session, not a
//!   running process. The old and new ids are in `unmapped.privilege`.
//! - file: one sensor event may carry several ops (`create` and `close_write` of one write,
//!   say). It stays one OCSF event; the activity is the most significant op (rename >
//!   delete > create > modify/close_write > attrib > open > close, see [`file_activity`]);
//!   the full list is `unmapped.file.ops`.
//! - net_connect: success or in_progress is Open (1); refused or denied is Refuse (5); a
//!   timeout, unreachable or other error is Fail (4), which OCSF defines as "connection
//!   timeout or no route to host".
//! - flow: conntrack new is Open (1), destroy is Close (2), anything else (update) Traffic (6).
//! - sensor_health: Application Lifecycle (6002), activity Other (99, "Health"), `app` the
//!   sensor; its counters are in `unmapped.health`.
//! - Authentication has no `device` attribute in the base class; the `host` profile adds it,
//!   and every event names that profile in `metadata.profiles`.
//! - A kind with no class chosen here (a kind newly added to the schema, or one this build
//!   does not know) is an OCSF Base Event (class 0, activity Other) with its whole event-model
//!   JSON under `unmapped`: exported whole, never dropped.
mod objects;

use serde_json::{json, Map, Value};

use crate::time::format_rfc3339_nanos;
use crate::v1::{Connect, Event, File, Flow, Health, Kind, Login, Privilege, Source};
use objects::{actor, connection_info, endpoint, file_object, ms, parent_actor, process};

/// OCSF schema version of the output.
pub const OCSF_VERSION: &str = "1.5.0";

/// Where an event came from, when known beyond the event itself (the collector knows the
/// sensor id and the boot of each stored event).
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub sensor_id: Option<&'a str>,
    pub boot_id: Option<&'a str>,
}

/// Class and activity of one OCSF event.
struct Class {
    category_uid: u32,
    category_name: &'static str,
    class_uid: u32,
    class_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
}

const SYSTEM: (u32, &str) = (1, "System Activity");
const IAM: (u32, &str) = (3, "Identity & Access Management");
const NETWORK: (u32, &str) = (4, "Network Activity");
const APPLICATION: (u32, &str) = (6, "Application Activity");
const UNCATEGORIZED: (u32, &str) = (0, "Uncategorized");

/// Top-level keys of the event-model JSON that are the envelope, not a payload.
const ENVELOPE: [&str; 5] = ["seq", "time", "host", "source", "kind"];

fn class(
    cat: (u32, &'static str),
    uid: u32,
    name: &'static str,
    act: (u32, &'static str),
) -> Class {
    Class {
        category_uid: cat.0,
        category_name: cat.1,
        class_uid: uid,
        class_name: name,
        activity_id: act.0,
        activity_name: act.1,
    }
}

/// OCSF status_id: 0 Unknown, 1 Success, 2 Failure.
const UNKNOWN: u8 = 0;
const SUCCESS: u8 = 1;
const FAILURE: u8 = 2;

/// Maps one event to an OCSF 1.5.0 event (a JSON object).
pub fn to_ocsf(ev: &Event, origin: Origin<'_>) -> Value {
    let kind = Kind::try_from(ev.kind).unwrap_or(Kind::Unspecified);
    let mut out = Map::new();
    let mut unmapped = Map::new();
    let cls = match kind {
        Kind::ProcessExec | Kind::ProcessExit | Kind::PrivilegeChange => {
            process_activity(ev, kind, &mut out, &mut unmapped)
        }
        Kind::NetConnect => net_connect(ev, ev.connect.as_ref(), &mut out, &mut unmapped),
        Kind::Flow => flow(ev.flow.as_ref(), &mut out, &mut unmapped),
        Kind::File => file_activity(ev, ev.file.as_ref(), &mut out, &mut unmapped),
        Kind::Login | Kind::Logout | Kind::LoginFailed => {
            authentication(kind, ev.login.as_ref(), &mut out, &mut unmapped)
        }
        Kind::SensorHealth => health(ev.health.as_ref(), &mut out, &mut unmapped),
        // No specific class (see the module doc): the whole event, unmapped.
        _ => return base_event(ev, kind, origin),
    };
    // A payload a kind does not use (none today) is still carried.
    carry_unused_payloads(ev, kind, &mut unmapped);
    if let Some(p) = &ev.process {
        if !out.contains_key("actor") {
            out.insert("actor".into(), actor(p));
        }
        if !unmapped.contains_key("process") {
            unmapped.insert("process".into(), process(p).1);
        }
    }
    common(ev, kind, &cls, origin, &mut out);
    finish(ev, kind, out, unmapped)
}

/// The event with `unmapped`, which also names the event's seq, source and kind.
fn finish(
    ev: &Event,
    kind: Kind,
    mut out: Map<String, Value>,
    mut unmapped: Map<String, Value>,
) -> Value {
    unmapped.insert("seq".into(), json!(ev.seq));
    let source = Source::try_from(ev.source).unwrap_or(Source::Unspecified);
    unmapped.insert("source".into(), json!(source.as_str()));
    unmapped.insert("kind".into(), json!(kind.as_str()));
    out.insert("unmapped".into(), Value::Object(unmapped));
    Value::Object(out)
}

/// Identity, time, metadata and device: the same for every class.
fn common(ev: &Event, kind: Kind, c: &Class, origin: Origin<'_>, out: &mut Map<String, Value>) {
    out.insert("category_uid".into(), json!(c.category_uid));
    out.insert("category_name".into(), json!(c.category_name));
    out.insert("class_uid".into(), json!(c.class_uid));
    out.insert("class_name".into(), json!(c.class_name));
    out.insert("activity_id".into(), json!(c.activity_id));
    out.insert("activity_name".into(), json!(c.activity_name));
    out.insert(
        "type_uid".into(),
        json!(c.class_uid as u64 * 100 + c.activity_id as u64),
    );
    out.insert(
        "type_name".into(),
        json!(format!("{}: {}", c.class_name, c.activity_name)),
    );
    out.insert("severity_id".into(), json!(1));
    out.insert("severity".into(), json!("Informational"));
    out.entry("status_id").or_insert(json!(SUCCESS));
    let status = match out.get("status_id").and_then(Value::as_u64) {
        Some(1) => "Success",
        Some(2) => "Failure",
        _ => "Unknown",
    };
    out.insert("status".into(), json!(status));
    out.insert("time".into(), json!(ms(ev.time_unix_ns)));
    let source = Source::try_from(ev.source).unwrap_or(Source::Unspecified);
    let mut meta = Map::new();
    meta.insert("version".into(), json!(OCSF_VERSION));
    meta.insert(
        "product".into(),
        json!({"name": "sensor", "vendor_name": "sensor", "version": env!("CARGO_PKG_VERSION")}),
    );
    meta.insert("profiles".into(), json!(["host"]));
    meta.insert("sequence".into(), json!(ev.seq));
    meta.insert("event_code".into(), json!(kind.as_str()));
    meta.insert("log_provider".into(), json!(source.as_str()));
    meta.insert(
        "original_time".into(),
        json!(format_rfc3339_nanos(ev.time_unix_ns)),
    );
    if let Some(id) = origin.sensor_id {
        // The collector's de-duplication key: unique per event.
        let uid = format!("{id}:{}:{}", origin.boot_id.unwrap_or(""), ev.seq);
        meta.insert("uid".into(), json!(uid));
    }
    out.insert("metadata".into(), Value::Object(meta));
    let mut device = Map::new();
    device.insert("hostname".into(), json!(ev.host));
    device.insert("type_id".into(), json!(0));
    device.insert("type".into(), json!("Unknown"));
    device.insert(
        "os".into(),
        json!({"name": "Linux", "type_id": 200, "type": "Linux"}),
    );
    if let Some(id) = origin.sensor_id {
        device.insert("uid".into(), json!(id));
    }
    if let Some(b) = origin.boot_id {
        device.insert("boot_uid".into(), json!(b));
    }
    out.insert("device".into(), Value::Object(device));
}

/// process_exec (Launch), process_exit (Terminate), privilege_change (Set User ID).
fn process_activity(
    ev: &Event,
    kind: Kind,
    out: &mut Map<String, Value>,
    unmapped: &mut Map<String, Value>,
) -> Class {
    let act = match kind {
        Kind::ProcessExec => (1, "Launch"),
        Kind::ProcessExit => (2, "Terminate"),
        _ => (5, "Set User ID"),
    };
    let p = ev.process.clone().unwrap_or_default();
    let (mut proc_obj, proc_unmapped) = process(&p);
    out.insert(
        "actor".into(),
        if kind == Kind::PrivilegeChange {
            actor(&p)
        } else {
            parent_actor(&p)
        },
    );
    unmapped.insert("process".into(), proc_unmapped);
    if kind == Kind::ProcessExit {
        proc_obj["terminated_time"] = json!(ms(ev.time_unix_ns));
    }
    if let Some(x) = &ev.exit {
        if let Some(code) = x.code {
            out.insert("exit_code".into(), json!(code));
        }
        {
            let mut u = json!({"code": x.code, "signal": x.signal});
            if x.core_dumped {
                u["core_dumped"] = json!(true);
            }
            unmapped.insert("exit".into(), u);
        }
    }
    if let Some(pr) = &ev.privilege {
        unmapped.insert("privilege".into(), privilege(pr));
    }
    out.insert("process".into(), proc_obj);
    class(SYSTEM, 1007, "Process Activity", act)
}

fn privilege(p: &Privilege) -> Value {
    let mut v = json!({
        "old_uid": p.old_uid, "new_uid": p.new_uid,
        "old_euid": p.old_euid, "new_euid": p.new_euid,
        "old_gid": p.old_gid, "new_gid": p.new_gid,
        "via": p.via,
    });
    if let Some(g) = p.old_egid {
        v["old_egid"] = json!(g);
    }
    if let Some(g) = p.new_egid {
        v["new_egid"] = json!(g);
    }
    if let Some(c) = &p.old_caps {
        v["old_caps"] = json!(c);
    }
    if let Some(c) = &p.new_caps {
        v["new_caps"] = json!(c);
    }
    v
}

/// A connect's activity and status by its result: a connect whose outcome was not seen
/// (`attempted`: seen before it was made; `interrupted`: a signal ended the call first) is an
/// Open of Unknown status, not a failure.
fn connect_activity(result: &str) -> ((u32, &'static str), u8) {
    match result {
        "success" | "in_progress" => ((1, "Open"), SUCCESS),
        "attempted" | "interrupted" => ((1, "Open"), UNKNOWN),
        "refused" | "denied" => ((5, "Refuse"), FAILURE),
        _ => ((4, "Fail"), FAILURE),
    }
}

/// net_connect: Network Activity Open, Refuse or Fail.
fn net_connect(
    ev: &Event,
    c: Option<&Connect>,
    out: &mut Map<String, Value>,
    unmapped: &mut Map<String, Value>,
) -> Class {
    let c = c.cloned().unwrap_or_default();
    let (act, status) = connect_activity(&c.result);
    out.insert("status_id".into(), json!(status));
    out.insert("status_detail".into(), json!(c.result));
    out.insert("status_code".into(), json!(c.errno.to_string()));
    if let Some(d) = endpoint(Some(&c.dst_addr), Some(c.dst_port)) {
        out.insert("dst_endpoint".into(), d);
    }
    if let Some(s) = endpoint(c.src_addr.as_deref(), c.src_port) {
        out.insert("src_endpoint".into(), s);
    }
    out.insert(
        "connection_info".into(),
        connection_info(&c.protocol, Some(&c.family), 2),
    );
    if let Some(p) = &ev.process {
        out.insert("actor".into(), actor(p));
    }
    // family and protocol are in connection_info, but as OCSF enums: keep the exact text.
    unmapped.insert(
        "connect".into(),
        json!({"family": c.family, "protocol": c.protocol, "result": c.result, "errno": c.errno}),
    );
    class(NETWORK, 4001, "Network Activity", act)
}

/// flow: Network Activity Open, Close or Traffic, with the traffic counters.
fn flow(
    f: Option<&Flow>,
    out: &mut Map<String, Value>,
    unmapped: &mut Map<String, Value>,
) -> Class {
    let f = f.cloned().unwrap_or_default();
    let act = match f.state.as_str() {
        "new" => (1, "Open"),
        "destroy" => (2, "Close"),
        _ => (6, "Traffic"),
    };
    if let Some(s) = endpoint(Some(&f.src_addr), Some(f.src_port)) {
        out.insert("src_endpoint".into(), s);
    }
    if let Some(d) = endpoint(Some(&f.dst_addr), Some(f.dst_port)) {
        out.insert("dst_endpoint".into(), d);
    }
    let family = if f.src_addr.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    };
    out.insert(
        "connection_info".into(),
        connection_info(&f.protocol, Some(family), 0),
    );
    // Counters the kernel did not report (no accounting, or not yet) are left out, not 0.
    let mut traffic = Map::new();
    let mut put = |k: &str, v: Option<u64>| {
        if let Some(v) = v {
            traffic.insert(k.into(), json!(v));
        }
    };
    put("bytes_in", f.bytes_in);
    put("bytes_out", f.bytes_out);
    put(
        "bytes",
        f.bytes_in
            .zip(f.bytes_out)
            .map(|(a, b)| a.saturating_add(b)),
    );
    put("packets_in", f.packets_in);
    put("packets_out", f.packets_out);
    put(
        "packets",
        f.packets_in
            .zip(f.packets_out)
            .map(|(a, b)| a.saturating_add(b)),
    );
    if !traffic.is_empty() {
        out.insert("traffic".into(), Value::Object(traffic));
    }
    unmapped.insert(
        "flow".into(),
        json!({"state": f.state, "protocol": f.protocol}),
    );
    class(NETWORK, 4001, "Network Activity", act)
}

/// The OCSF activity of a file event: its most significant op.
pub fn file_activity_of(ops: &[String], has_new_path: bool) -> (u32, &'static str) {
    let has = |o: &str| ops.iter().any(|x| x == o);
    if has("rename") || has_new_path {
        (5, "Rename")
    } else if has("delete") {
        (4, "Delete")
    } else if has("create") {
        (1, "Create")
    } else if has("modify") || has("close_write") {
        (3, "Update")
    } else if has("attrib") {
        (6, "Set Attributes")
    } else if has("open") {
        (14, "Open")
    } else {
        (99, "Other")
    }
}

/// file: File System Activity.
fn file_activity(
    ev: &Event,
    f: Option<&File>,
    out: &mut Map<String, Value>,
    unmapped: &mut Map<String, Value>,
) -> Class {
    let f = f.cloned().unwrap_or_default();
    let act = file_activity_of(&f.ops, f.new_path.is_some());
    out.insert("file".into(), file_object(&f.path, 0));
    if let Some(n) = &f.new_path {
        out.insert("file_result".into(), file_object(n, 0));
    }
    // OCSF requires an actor; without a process (inotify) it is empty: unknown.
    out.insert(
        "actor".into(),
        ev.process.as_ref().map(actor).unwrap_or_else(|| json!({})),
    );
    unmapped.insert("file".into(), json!({"ops": f.ops}));
    class(SYSTEM, 1001, "File System Activity", act)
}

/// login, logout, login_failed: Authentication Logon or Logoff, with status.
fn authentication(
    kind: Kind,
    l: Option<&Login>,
    out: &mut Map<String, Value>,
    unmapped: &mut Map<String, Value>,
) -> Class {
    let l = l.cloned().unwrap_or_default();
    let (act, status) = match kind {
        Kind::Logout => ((2, "Logoff"), SUCCESS),
        Kind::LoginFailed => ((1, "Logon"), FAILURE),
        _ => ((1, "Logon"), SUCCESS),
    };
    out.insert("status_id".into(), json!(status));
    let mut user = Map::new();
    user.insert("name".into(), json!(l.user));
    out.insert("user".into(), Value::Object(user));
    let mut session = Map::new();
    if let Some(s) = l.session {
        session.insert("uid".into(), json!(s.to_string()));
    }
    let tty = l.tty.as_deref().filter(|t| !t.is_empty());
    let host = l.host.as_deref().filter(|h| !h.is_empty());
    let addr = l.addr.as_deref().filter(|a| !a.is_empty());
    if let Some(t) = tty {
        session.insert("terminal".into(), json!(t));
    }
    let remote = host.is_some() || addr.is_some();
    session.insert("is_remote".into(), json!(remote));
    out.insert("session".into(), Value::Object(session));
    out.insert("is_remote".into(), json!(remote));
    if remote {
        let mut src = Map::new();
        if let Some(h) = host {
            src.insert("hostname".into(), json!(h));
        }
        if let Some(a) = addr {
            src.insert("ip".into(), json!(a));
        }
        out.insert("src_endpoint".into(), Value::Object(src));
    }
    if l.pid != 0 {
        out.insert("logon_process".into(), json!({"pid": l.pid}));
    }
    // The exact record, under the event model's names (host is free text, not always a name).
    let mut u = json!({"user": l.user, "tty": l.tty, "host": l.host, "addr": l.addr});
    if l.pid != 0 {
        u["pid"] = json!(l.pid);
    }
    if let Some(s) = l.session {
        u["session"] = json!(s);
    }
    if let Some(k) = &l.session_key {
        u["session_key"] = json!(k);
    }
    unmapped.insert("login".into(), u);
    class(IAM, 3002, "Authentication", act)
}

/// sensor_health: Application Lifecycle, Other.
fn health(
    h: Option<&Health>,
    out: &mut Map<String, Value>,
    unmapped: &mut Map<String, Value>,
) -> Class {
    out.insert(
        "app".into(),
        json!({"name": "sensor", "vendor_name": "sensor", "version": env!("CARGO_PKG_VERSION")}),
    );
    if let Some(h) = h {
        out.insert(
            "message".into(),
            json!(format!("mode {}: {}", h.mode, h.reason)),
        );
        let drops: std::collections::BTreeMap<_, _> = h.drops.iter().collect();
        let events: std::collections::BTreeMap<_, _> = h.events.iter().collect();
        unmapped.insert(
            "health".into(),
            json!({
                "mode": h.mode, "reason": h.reason, "uptime_s": h.uptime_s,
                "drops": drops, "events": events, "cpu": h.cpu,
                "rss_bytes": h.rss_bytes, "lag_ms": h.lag_ms,
            }),
        );
    }
    class(APPLICATION, 6002, "Application Lifecycle", (99, "Other"))
}

/// An event of a kind without a specific class: OCSF Base Event, activity Other, with every
/// payload of the event-model JSON under `unmapped`.
fn base_event(ev: &Event, kind: Kind, origin: Origin<'_>) -> Value {
    let mut out = Map::new();
    let cls = class(UNCATEGORIZED, 0, "Base Event", (99, "Other"));
    common(ev, kind, &cls, origin, &mut out);
    out.insert("message".into(), json!(format!("{} event", kind.as_str())));
    let mut unmapped = Map::new();
    if let Value::Object(full) = crate::json::event_to_json(ev) {
        for (k, v) in full {
            if !ENVELOPE.contains(&k.as_str()) {
                unmapped.insert(k, v);
            }
        }
    }
    finish(ev, kind, out, unmapped)
}

/// Payloads the event's kind does not map (none occur today) still reach `unmapped`, under
/// their event-model names, so a producer cannot lose data silently.
fn carry_unused_payloads(ev: &Event, kind: Kind, unmapped: &mut Map<String, Value>) {
    let Value::Object(full) = crate::json::event_to_json(ev) else {
        return;
    };
    let used: &[&str] = match kind {
        Kind::ProcessExec | Kind::ProcessExit | Kind::PrivilegeChange => {
            &["process", "exit", "privilege"]
        }
        Kind::NetConnect => &["process", "connect"],
        Kind::Flow => &["flow"],
        Kind::File => &["process", "file"],
        Kind::Login | Kind::Logout | Kind::LoginFailed => &["login"],
        Kind::SensorHealth => &["health"],
        _ => &[],
    };
    // The process is mapped for every kind (actor, `unmapped.process`) in `to_ocsf`.
    for (key, v) in full {
        let key_ = key.as_str();
        if !ENVELOPE.contains(&key_) && key_ != "process" && !used.contains(&key_) {
            unmapped.insert(key, v);
        }
    }
}

#[cfg(test)]
mod tests;
