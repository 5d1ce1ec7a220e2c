//! `Event` -> protobuf. Pure; the unit tests check that the collector's JSON rendering of
//! the converted event equals the sensor's own JSON serialization, field for field.
use sensor_proto::time::parse_rfc3339_nanos;
use sensor_proto::v1 as pb;

use crate::event::{Ancestor, Connect, Event, Exit, Health, Kind, Process, Source};

pub fn kind_to_proto(k: Kind) -> pb::Kind {
    match k {
        Kind::ProcessExec => pb::Kind::ProcessExec,
        Kind::ProcessExit => pb::Kind::ProcessExit,
        Kind::NetConnect => pb::Kind::NetConnect,
        Kind::File => pb::Kind::File,
        Kind::Login => pb::Kind::Login,
        Kind::Logout => pb::Kind::Logout,
        Kind::LoginFailed => pb::Kind::LoginFailed,
        Kind::PrivilegeChange => pb::Kind::PrivilegeChange,
        Kind::Flow => pb::Kind::Flow,
        Kind::SensorHealth => pb::Kind::SensorHealth,
    }
}

pub fn source_to_proto(s: Source) -> pb::Source {
    match s {
        Source::Ebpf => pb::Source::Ebpf,
        Source::Audit => pb::Source::Audit,
        Source::Fanotify => pb::Source::Fanotify,
        Source::Inotify => pb::Source::Inotify,
        Source::Wtmp => pb::Source::Wtmp,
        Source::Btmp => pb::Source::Btmp,
        Source::Conntrack => pb::Source::Conntrack,
        Source::Sensor => pb::Source::Sensor,
    }
}

/// RFC 3339 text (as `timefmt::rfc3339_nanos` writes it) to ns since the epoch; 0 when the
/// text is not a time (it always is: the sensor formats event times itself).
fn time_ns(text: &str) -> i64 {
    parse_rfc3339_nanos(text).unwrap_or(0)
}

pub fn event_to_proto(ev: &Event) -> pb::Event {
    pb::Event {
        seq: ev.seq,
        time_unix_ns: time_ns(&ev.time),
        host: ev.host.clone(),
        source: source_to_proto(ev.source) as i32,
        kind: kind_to_proto(ev.kind) as i32,
        process: ev.process.as_ref().map(process),
        exit: ev.exit.as_ref().map(exit),
        connect: ev.connect.as_ref().map(connect),
        health: ev.health.as_ref().map(health),
        file: ev.extra.file.as_ref().map(|f| pb::File {
            path: f.path.clone(),
            ops: f.ops.clone(),
            new_path: f.new_path.clone(),
        }),
        login: ev.extra.login.as_ref().map(|l| pb::Login {
            user: l.user.clone(),
            tty: l.tty.clone().unwrap_or_default(),
            host: l.host.clone().unwrap_or_default(),
            addr: l.addr.clone().unwrap_or_default(),
            pid: ev.process.as_ref().map_or(0, |p| p.pid),
            session: None,
        }),
        privilege: ev.extra.privilege.as_ref().map(|p| pb::Privilege {
            old_uid: p.old_uid,
            new_uid: p.new_uid,
            old_euid: p.old_euid,
            new_euid: p.new_euid,
            old_gid: p.old_gid,
            new_gid: p.new_gid,
            via: p.via.clone(),
        }),
        flow: ev.extra.flow.as_ref().map(|f| pb::Flow {
            protocol: f.protocol.clone(),
            src_addr: f.src_addr.clone(),
            src_port: u32::from(f.src_port),
            dst_addr: f.dst_addr.clone(),
            dst_port: u32::from(f.dst_port),
            state: f.state.clone(),
            bytes_in: f.bytes_in.unwrap_or(0),
            bytes_out: f.bytes_out.unwrap_or(0),
            packets_in: f.packets_in.unwrap_or(0),
            packets_out: f.packets_out.unwrap_or(0),
        }),
    }
}

fn process(p: &Process) -> pb::Process {
    pb::Process {
        pid: p.pid,
        tid: p.tid,
        ppid: p.ppid,
        // Empty when unknown (audit has no start time).
        start_time_unix_ns: parse_rfc3339_nanos(&p.start_time),
        start_boottime_ns: p.start_boottime_ns,
        uid: p.uid,
        euid: p.euid,
        gid: p.gid,
        egid: p.egid,
        auid: p.auid,
        session: p.session,
        tty: p.tty.clone(),
        comm: p.comm.clone(),
        exe: p.exe.clone(),
        filename: p.filename.clone(),
        cwd: p.cwd.clone(),
        argv: p.argv.as_ref().map(|a| pb::Argv {
            args: a.clone(),
            truncated: p.argv_truncated,
        }),
        cgroup_id: p.cgroup_id,
        container_id: p.container_id.clone(),
        ancestors: p.ancestors.iter().map(ancestor).collect(),
        incomplete: p.incomplete.iter().map(|s| (*s).to_string()).collect(),
        user: None,
    }
}

fn ancestor(a: &Ancestor) -> pb::Ancestor {
    pb::Ancestor {
        pid: a.pid,
        comm: a.comm.clone(),
        exe: a.exe.clone(),
    }
}

fn exit(x: &Exit) -> pb::Exit {
    pb::Exit {
        code: x.code,
        signal: x.signal,
        core_dumped: x.core_dumped,
    }
}

fn connect(c: &Connect) -> pb::Connect {
    pb::Connect {
        family: c.family.to_string(),
        protocol: c.protocol.clone(),
        dst_addr: c.dst_addr.clone(),
        dst_port: u32::from(c.dst_port),
        result: c.result.to_string(),
        errno: c.errno,
        src_addr: None,
        src_port: None,
    }
}

fn health(h: &Health) -> pb::Health {
    pb::Health {
        mode: h.mode.clone(),
        reason: h.reason.clone(),
        uptime_s: h.uptime_s,
        drops: h.drops.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        events: h.events.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        cpu: h.cpu,
        rss_bytes: h.rss_bytes,
        lag_ms: h.lag_ms,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::timefmt::rfc3339_nanos;
    use sensor_proto::json::event_to_json;

    /// Synthetic events of every kind the sensor emits, with the awkward values.
    pub(crate) fn samples() -> Vec<Event> {
        let t = rfc3339_nanos(1_795_804_496_123_456_789);
        let proc_full = Process {
            pid: 4242,
            tid: Some(4243),
            ppid: 1,
            start_time: rfc3339_nanos(1_795_804_400_000_000_001),
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
            argv: Some(vec![
                "echo".into(),
                "two words".into(),
                String::new(),
                "bad\\xffbyte".into(),
                "\"q\" 'q'".into(),
            ]),
            argv_truncated: true,
            cgroup_id: 9876,
            container_id: "abc123".into(),
            ancestors: vec![Ancestor {
                pid: 1,
                comm: "systemd".into(),
                exe: "/usr/lib/systemd/systemd".into(),
            }],
            incomplete: vec!["cwd", "loginuid"],
        };
        let proc_min = Process {
            pid: 5,
            start_time: String::new(),
            comm: "x".into(),
            ..Default::default()
        };
        let base = |kind, source| Event {
            seq: 17,
            time: t.clone(),
            host: "host-1".into(),
            source,
            kind,
            process: None,
            exit: None,
            connect: None,
            health: None,
            ktime_ns: Some(5),
            extra: Default::default(),
        };
        let mut exec = base(Kind::ProcessExec, Source::Ebpf);
        exec.process = Some(proc_full.clone());
        let mut exec_min = base(Kind::ProcessExec, Source::Audit);
        exec_min.process = Some(proc_min.clone());
        let mut exit_ev = base(Kind::ProcessExit, Source::Ebpf);
        exit_ev.process = Some(proc_min.clone());
        exit_ev.exit = Some(Exit {
            code: None,
            signal: Some(9),
            core_dumped: true,
        });
        let mut exit0 = base(Kind::ProcessExit, Source::Ebpf);
        exit0.process = Some(proc_full.clone());
        exit0.exit = Some(Exit {
            code: Some(0),
            signal: None,
            core_dumped: false,
        });
        let mut conn = base(Kind::NetConnect, Source::Ebpf);
        conn.process = Some(proc_full);
        conn.connect = Some(Connect {
            family: "ipv6",
            protocol: "tcp".into(),
            dst_addr: "::1".into(),
            dst_port: 65535,
            result: "refused",
            errno: 111,
        });
        let mut health_ev = base(Kind::SensorHealth, Source::Sensor);
        health_ev.health = Some(Health {
            mode: "ebpf".into(),
            reason: "all checks passed".into(),
            uptime_s: 12.5,
            drops: [("ringbuf_exec".to_string(), 3u64)].into_iter().collect(),
            events: [("process_exec".to_string(), 10u64)].into_iter().collect(),
            cpu: 0.25,
            rss_bytes: 12_345_678,
            lag_ms: 1.5,
        });
        vec![exec, exec_min, exit_ev, exit0, conn, health_ev]
    }

    #[test]
    fn collector_json_equals_sensor_json() {
        for ev in samples() {
            let sensor = serde_json::to_value(&ev).unwrap();
            let collector = event_to_json(&event_to_proto(&ev));
            assert_eq!(collector, sensor, "kind {:?}", ev.kind);
        }
    }

    #[test]
    fn file_login_privilege_flow_payloads_are_carried() {
        let mut ev = samples()[0].clone();
        ev.extra.file = Some(crate::event::FileActivity {
            path: "/etc/a".into(),
            ops: vec!["rename".into()],
            new_path: Some("/etc/b".into()),
        });
        ev.extra.login = Some(crate::event::Login {
            user: "u".into(),
            tty: Some("pts/1".into()),
            host: Some("h".into()),
            addr: Some("192.0.2.1".into()),
            session_key: None,
        });
        ev.extra.privilege = Some(crate::event::Privilege {
            new_uid: 65534,
            via: "setresuid".into(),
            ..Default::default()
        });
        ev.extra.flow = Some(crate::event::Flow {
            protocol: "tcp".into(),
            dst_port: 443,
            bytes_in: Some(10),
            ..Default::default()
        });
        let p = event_to_proto(&ev);
        assert_eq!(p.file.unwrap().new_path.as_deref(), Some("/etc/b"));
        let l = p.login.unwrap();
        assert_eq!(
            (l.user.as_str(), l.addr.as_str(), l.pid),
            ("u", "192.0.2.1", 4242)
        );
        assert_eq!(p.privilege.unwrap().new_uid, 65534);
        let f = p.flow.unwrap();
        assert_eq!((f.dst_port, f.bytes_in, f.bytes_out), (443, 10, 0));
    }

    #[test]
    fn enums_and_times() {
        let ev = &samples()[0];
        let p = event_to_proto(ev);
        assert_eq!(p.kind, pb::Kind::ProcessExec as i32);
        assert_eq!(p.source, pb::Source::Ebpf as i32);
        assert_eq!(p.time_unix_ns, 1_795_804_496_123_456_789);
        assert_eq!(
            p.process.as_ref().unwrap().start_time_unix_ns,
            Some(1_795_804_400_000_000_001)
        );
        assert_eq!(
            event_to_proto(&samples()[1])
                .process
                .unwrap()
                .start_time_unix_ns,
            None
        );
        assert!(p.process.unwrap().argv.unwrap().truncated);
        for k in [
            Kind::ProcessExec,
            Kind::ProcessExit,
            Kind::NetConnect,
            Kind::SensorHealth,
        ] {
            assert_eq!(sensor_proto::names::kind_name(kind_to_proto(k)), k.as_str());
        }
    }
}
