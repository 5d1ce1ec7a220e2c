//! The normalized event: one shape for every capture path. Serialized as one JSON object per
//! line; field names are the contract in DESIGN.md.
use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    ProcessExec,
    ProcessExit,
    NetConnect,
    File,
    Login,
    Logout,
    LoginFailed,
    PrivilegeChange,
    Flow,
    SensorHealth,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ProcessExec => "process_exec",
            Kind::ProcessExit => "process_exit",
            Kind::NetConnect => "net_connect",
            Kind::File => "file",
            Kind::Login => "login",
            Kind::Logout => "logout",
            Kind::LoginFailed => "login_failed",
            Kind::PrivilegeChange => "privilege_change",
            Kind::Flow => "flow",
            Kind::SensorHealth => "sensor_health",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Ebpf,
    Audit,
    Fanotify,
    Inotify,
    Wtmp,
    Btmp,
    Conntrack,
    Sensor,
}

impl Source {
    pub const ALL: [Source; 8] = [
        Source::Ebpf,
        Source::Audit,
        Source::Fanotify,
        Source::Inotify,
        Source::Wtmp,
        Source::Btmp,
        Source::Conntrack,
        Source::Sensor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::Audit => "audit",
            Source::Fanotify => "fanotify",
            Source::Inotify => "inotify",
            Source::Wtmp => "wtmp",
            Source::Btmp => "btmp",
            Source::Conntrack => "conntrack",
            Source::Sensor => "sensor",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Assigned by the output stage, strictly increasing per sensor run.
    pub seq: u64,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub host: String,
    pub source: Source,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Connect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// CLOCK_MONOTONIC ns of the kernel event (for lag measurement); not serialized.
    #[serde(skip)]
    pub ktime_ns: Option<u64>,
    /// Payloads of the other kinds (file, login, privilege, flow), flattened into the event.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Payloads of the kinds beyond process lifecycle and connects. Kept in one defaulted struct
/// so adding a kind does not touch every place that builds an event.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Extra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileActivity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privilege: Option<Privilege>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Flow>,
}

/// `file`: activity on a watched path.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FileActivity {
    pub path: String,
    /// From create|modify|delete|rename|open|close_write|close|attrib.
    pub ops: Vec<String>,
    /// The new name of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_path: Option<String>,
}

/// `login` / `logout` / `login_failed`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub tty: Option<String>,
    /// Remote host name as recorded (may be an address), None for local logins.
    pub host: Option<String>,
    pub addr: Option<String>,
    /// A stable key linking the login to the commands of its session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

/// `privilege_change`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Privilege {
    pub old_uid: u32,
    pub new_uid: u32,
    pub old_euid: u32,
    pub new_euid: u32,
    pub old_gid: u32,
    pub new_gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_egid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_egid: Option<u32>,
    /// Effective capabilities (hex) when they changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_caps: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_caps: Option<String>,
    /// How: "setuid", "setresuid", "setgid", "capset", "exec_setuid", "exec_setgid",
    /// "exec_file_caps", "pam", ...
    pub via: String,
}

/// `flow`: a conntrack connection.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
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

#[derive(Debug, Clone, Default, Serialize)]
pub struct Process {
    pub pid: u32,
    /// Thread that made the call, when it differs from `pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    pub ppid: u32,
    /// RFC 3339 start time of the process (thread-group leader).
    pub start_time: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The executable was deleted or never had a name in a filesystem (a memfd): `exe` ends
    /// in " (deleted)", as `/proc/<pid>/exe` shows it. Fileless malware looks like this.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exe_deleted: bool,
    /// process_exec: the path the caller passed to execve, as given (may be relative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// True when argv was cut to its bound (`sensor.argv_max_bytes`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    /// Bytes of argv left out between the head and the last 1 KiB (argv then holds a
    /// `[... N bytes omitted ...]` marker where they were).
    #[serde(skip_serializing_if = "is_zero")]
    pub argv_omitted_bytes: u64,
    pub cgroup_id: u64,
    pub container_id: String,
    pub ancestors: Vec<Ancestor>,
    /// Fields the sensor could not obtain (e.g. "cwd", "loginuid").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<&'static str>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: String,
    pub exe: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Exit {
    /// Exit status when the process exited normally.
    pub code: Option<i32>,
    /// Terminating signal when a signal killed it.
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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

#[derive(Debug, Clone, Serialize, Default)]
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
