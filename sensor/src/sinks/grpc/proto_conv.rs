//! `Event` -> protobuf, by value (strings move, nothing is re-parsed). Every struct is
//! destructured without `..` and every message is built without `..Default::default()`, so
//! a field added on either side and left unmapped is a compile error. The JSON output of
//! both the sensor and the collector is written from the result (`sensor_proto::json`).
use sensor_proto::v1 as pb;

use crate::event::{
    Ancestor, Connect, Event, Exit, Extra, FileActivity, Flow, Health, Login, Privilege, Process,
};

pub fn event_to_proto(ev: Event) -> pb::Event {
    let Event {
        seq,
        time_unix_ns,
        host,
        source,
        kind,
        process: proc_,
        exit: exit_,
        connect: connect_,
        health: health_,
        ktime_ns: _, // sensor-internal (lag measurement)
        extra:
            Extra {
                file: file_,
                login: login_,
                privilege: privilege_,
                flow: flow_,
            },
    } = ev;
    pb::Event {
        seq,
        time_unix_ns,
        host,
        source: source as i32,
        kind: kind as i32,
        process: proc_.map(process),
        exit: exit_.map(exit),
        connect: connect_.map(connect),
        health: health_.map(health),
        file: file_.map(file),
        login: login_.map(login),
        privilege: privilege_.map(privilege),
        flow: flow_.map(flow),
    }
}

fn process(p: Process) -> pb::Process {
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
        exe_deleted,
        filename,
        cwd,
        argv,
        argv_truncated,
        argv_omitted_bytes,
        cgroup_id,
        container_id,
        ancestors,
        incomplete,
    } = p;
    pb::Process {
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
        exe_deleted,
        filename,
        cwd,
        argv: argv.map(|args| pb::Argv {
            args,
            truncated: argv_truncated,
            omitted_bytes: argv_omitted_bytes,
        }),
        cgroup_id,
        container_id,
        ancestors: ancestors.into_iter().map(ancestor).collect(),
        incomplete: incomplete.iter().map(|s| (*s).to_string()).collect(),
        // No stage of the sensor resolves user names (yet).
        user: None,
    }
}

fn ancestor(a: Ancestor) -> pb::Ancestor {
    let Ancestor { pid, comm, exe } = a;
    pb::Ancestor { pid, comm, exe }
}

fn exit(x: Exit) -> pb::Exit {
    let Exit {
        code,
        signal,
        core_dumped,
    } = x;
    pb::Exit {
        code,
        signal,
        core_dumped,
    }
}

fn connect(c: Connect) -> pb::Connect {
    let Connect {
        family,
        protocol,
        dst_addr,
        dst_port,
        result,
        errno,
    } = c;
    pb::Connect {
        family: family.to_string(),
        protocol,
        dst_addr,
        dst_port: u32::from(dst_port),
        result: result.to_string(),
        errno,
        // The hooks record the destination only.
        src_addr: None,
        src_port: None,
    }
}

fn health(h: Health) -> pb::Health {
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
    pb::Health {
        mode,
        reason,
        uptime_s,
        drops: drops.into_iter().collect(),
        events: events.into_iter().collect(),
        cpu,
        rss_bytes,
        lag_ms,
    }
}

fn file(f: FileActivity) -> pb::File {
    let FileActivity {
        path,
        ops,
        new_path,
    } = f;
    pb::File {
        path,
        ops,
        new_path,
    }
}

fn login(l: Login) -> pb::Login {
    let Login {
        user,
        tty,
        host,
        addr,
        session_key,
    } = l;
    pb::Login {
        user,
        tty,
        host,
        addr,
        session_key,
        // Not read from utmp records (yet).
        pid: 0,
        session: None,
    }
}

fn privilege(p: Privilege) -> pb::Privilege {
    let Privilege {
        old_uid,
        new_uid,
        old_euid,
        new_euid,
        old_gid,
        new_gid,
        old_egid,
        new_egid,
        old_caps,
        new_caps,
        via,
    } = p;
    pb::Privilege {
        old_uid,
        new_uid,
        old_euid,
        new_euid,
        old_gid,
        new_gid,
        old_egid,
        new_egid,
        old_caps,
        new_caps,
        via,
    }
}

fn flow(f: Flow) -> pb::Flow {
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
    pb::Flow {
        protocol,
        src_addr,
        src_port: u32::from(src_port),
        dst_addr,
        dst_port: u32::from(dst_port),
        state,
        bytes_in,
        bytes_out,
        packets_in,
        packets_out,
    }
}

#[cfg(test)]
#[path = "proto_conv_tests.rs"]
pub(crate) mod tests;
