//! The normalized event (docs/ARCHITECTURE.md#event-model): one shape for every capture path,
//! from normalization to the output. Kinds and sources are the wire contract's enums. `sinks::grpc::proto_conv` maps an event
//! onto the protobuf message field by field (every struct is destructured there, so a field
//! added here and left unmapped does not compile), and the JSON of the README is written
//! from that message by the one writer, `sensor_proto::json`, for stdout and the collector
//! alike. Times are integer ns since the Unix epoch until that writer formats them.
use std::collections::BTreeMap;

pub use sensor_proto::v1::{Kind, Source};

#[derive(Debug, Clone)]
pub struct Event {
    /// Assigned by the output stage, strictly increasing per sensor run.
    pub seq: u64,
    /// Wall-clock time of the event, ns since the Unix epoch (RFC 3339 text in JSON).
    pub time_unix_ns: i64,
    pub host: String,
    pub source: Source,
    pub kind: Kind,
    pub process: Option<Process>,
    pub exit: Option<Exit>,
    pub connect: Option<Connect>,
    pub health: Option<Health>,
    /// CLOCK_MONOTONIC ns of the kernel event (for lag measurement); not on the output.
    pub ktime_ns: Option<u64>,
    /// Payloads of the other kinds (file, login, privilege, flow); top-level objects in JSON.
    pub extra: Extra,
}

impl Event {
    /// The one constructor: an event of `kind` from `source` with no payload yet; the
    /// caller fills the payload of its kind. `seq` is assigned by the output stage.
    pub fn new(kind: Kind, source: Source, time_unix_ns: i64, host: &str) -> Self {
        Self {
            seq: 0,
            time_unix_ns,
            host: host.to_string(),
            source,
            kind,
            process: None,
            exit: None,
            connect: None,
            health: None,
            ktime_ns: None,
            extra: Extra::default(),
        }
    }

    /// The event's JSON object, from the one writer (for tests and diagnostics; the output
    /// stages write bytes directly).
    pub fn to_json(&self) -> serde_json::Value {
        sensor_proto::json::event_to_json(&crate::sinks::grpc::proto_conv::event_to_proto(
            self.clone(),
        ))
    }
}

/// Payloads of the kinds beyond process lifecycle and connects. Kept in one defaulted struct
/// so adding a kind does not touch every place that builds an event.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub file: Option<FileActivity>,
    pub login: Option<Login>,
    pub privilege: Option<Privilege>,
    pub flow: Option<Flow>,
}

/// `file`: activity on a watched path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileActivity {
    pub path: String,
    /// From create|modify|delete|rename|open|close_write|close|attrib.
    pub ops: Vec<String>,
    /// The new name of a rename.
    pub new_path: Option<String>,
}

/// `login` / `logout` / `login_failed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub tty: Option<String>,
    /// Remote host name as recorded (may be an address), None for local logins.
    pub host: Option<String>,
    pub addr: Option<String>,
    /// A stable key linking the login to the commands of its session.
    pub session_key: Option<String>,
}

/// `privilege_change`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privilege {
    pub old_uid: u32,
    pub new_uid: u32,
    pub old_euid: u32,
    pub new_euid: u32,
    pub old_gid: u32,
    pub new_gid: u32,
    pub old_egid: Option<u32>,
    pub new_egid: Option<u32>,
    /// Effective capabilities (hex) when they changed.
    pub old_caps: Option<String>,
    pub new_caps: Option<String>,
    /// How: "setuid", "setresuid", "setgid", "capset", "exec_setuid", "exec_setgid",
    /// "exec_file_caps", "pam", ...
    pub via: String,
}

/// `flow`: a conntrack connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    pub protocol: String,
    pub src_addr: String,
    pub src_port: u16,
    pub dst_addr: String,
    pub dst_port: u16,
    pub state: String,
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub packets_in: Option<u64>,
    pub packets_out: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Process {
    pub pid: u32,
    /// Thread that made the call, when it differs from `pid`.
    pub tid: Option<u32>,
    pub ppid: u32,
    /// Start of the process (thread-group leader), ns since the Unix epoch; None when unknown
    /// (audit mode). JSON: RFC 3339 text, empty when unknown.
    pub start_time_unix_ns: Option<i64>,
    /// Start time in ns since boot, the process key together with `pid`.
    pub start_boottime_ns: u64,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    /// Login uid; null when unset (4294967295 in the kernel) or unknown.
    pub auid: Option<u32>,
    /// Audit session id; null when unset.
    pub session: Option<u32>,
    /// Controlling terminal (`pts/3`, `tty1`), null when none.
    pub tty: Option<String>,
    pub comm: String,
    /// The executable (symlinks resolved, as /proc/<pid>/exe shows it).
    pub exe: Option<String>,
    /// The executable was deleted or never had a name in a filesystem (a memfd): `exe` ends
    /// in " (deleted)", as `/proc/<pid>/exe` shows it. Fileless malware looks like this.
    pub exe_deleted: bool,
    /// process_exec: the path the caller passed to execve, as given (may be relative).
    pub filename: Option<String>,
    pub cwd: Option<String>,
    pub argv: Option<Vec<String>>,
    /// True when argv was cut to its bound (`sensor.argv_max_bytes`).
    pub argv_truncated: bool,
    /// Bytes of argv left out between the head and the last 1 KiB (argv then holds a
    /// `[... N bytes omitted ...]` marker where they were).
    pub argv_omitted_bytes: u64,
    pub cgroup_id: u64,
    pub container_id: String,
    pub ancestors: Vec<Ancestor>,
    /// Fields the sensor could not obtain (e.g. "cwd", "loginuid").
    pub incomplete: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: String,
    pub exe: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit status when the process exited normally.
    pub code: Option<i32>,
    /// Terminating signal when a signal killed it.
    pub signal: Option<i32>,
    pub core_dumped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// "ipv4" or "ipv6".
    pub family: &'static str,
    /// "tcp", "udp", or the socket type number as text.
    pub protocol: String,
    pub dst_addr: String,
    pub dst_port: u16,
    /// "success", "in_progress", "refused", "timeout", "unreachable", "denied", "error", or
    /// "attempted" (seen before it was made: eBPF mode's ia32 and io_uring connects).
    pub result: &'static str,
    /// The errno of a failed call, 0 on success.
    pub errno: i32,
}

#[derive(Debug, Clone, Default)]
pub struct Health {
    pub mode: String,
    pub reason: String,
    pub uptime_s: f64,
    pub drops: BTreeMap<String, u64>,
    pub events: BTreeMap<String, u64>,
    /// Sensor CPU seconds (user + system) since start.
    pub cpu: f64,
    pub rss_bytes: u64,
    /// Largest delay between a kernel event and its output in the last interval.
    pub lag_ms: f64,
}
