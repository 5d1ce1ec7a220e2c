//! The JSON names of the proto enums (`process_exec`, `ebpf`, ...): see
//! docs/ARCHITECTURE.md#event-model.
use crate::v1::{Kind, Source};

/// Every kind, for tables, metrics and tests.
pub const ALL_KINDS: [Kind; 10] = [
    Kind::ProcessExec,
    Kind::ProcessExit,
    Kind::NetConnect,
    Kind::File,
    Kind::Login,
    Kind::Logout,
    Kind::LoginFailed,
    Kind::PrivilegeChange,
    Kind::Flow,
    Kind::SensorHealth,
];

pub const ALL_SOURCES: [Source; 8] = [
    Source::Ebpf,
    Source::Audit,
    Source::Fanotify,
    Source::Inotify,
    Source::Wtmp,
    Source::Btmp,
    Source::Conntrack,
    Source::Sensor,
];

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Unspecified => "unspecified",
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

pub fn kind_from_name(name: &str) -> Option<Kind> {
    ALL_KINDS.into_iter().find(|k| kind_name(*k) == name)
}

pub fn source_name(source: Source) -> &'static str {
    match source {
        Source::Unspecified => "unspecified",
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

pub fn source_from_name(name: &str) -> Option<Source> {
    ALL_SOURCES.into_iter().find(|s| source_name(*s) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in ALL_KINDS {
            assert_eq!(kind_from_name(kind_name(k)), Some(k));
        }
        for s in ALL_SOURCES {
            assert_eq!(source_from_name(source_name(s)), Some(s));
        }
        assert_eq!(kind_from_name("nope"), None);
        assert_eq!(kind_from_name("unspecified"), None);
    }
}
