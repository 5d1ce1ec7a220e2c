//! Decoded eBPF records to normalized [`Event`]s. Pure: clocks and host come in as arguments.
use sensor_common::{
    ProcessInfo, CONNECT_RET_UNKNOWN, FLAG_ARGV_ERROR, FLAG_ARGV_TRUNCATED, FLAG_CWD_ERROR,
    FLAG_CWD_TRUNCATED, FLAG_EXE_DELETED, FLAG_EXE_ERROR, FLAG_EXE_TRUNCATED, FLAG_NO_LOGINUID,
    FLAG_READ_ERROR,
};

use super::decode::{ConnectRecord, ExecRecord, ExitRecord, ForkRecord, PrivilegeRecord, Record};
use crate::{
    escape::{escape_bytes, until_nul},
    event::{Argv, Connect, Event, Kind, Privilege, Process, Source},
    sources::kernel_values::{
        connect_result, cred_call, exit_status, format_addr, protocol, resolve_exe, tty_name,
        ARCH_I386, ARCH_X86_64,
    },
    timefmt::Clocks,
};

const AF_INET6: u16 = 10;

/// The output event of a record; `None` for a fork, which is not an output event (it feeds the
/// process cache: see [`fork_start`]).
pub fn normalize(record: &Record, clocks: &Clocks, host: &str) -> Option<Event> {
    Some(match record {
        Record::Exec(e) => exec_event(e, clocks, host),
        Record::Fork(_) => return None,
        Record::Exit(e) => exit_event(e, clocks, host),
        Record::Connect(c) => connect_event(c, clocks, host),
        Record::Privilege(p) => privilege_event(p, clocks, host),
    })
}

/// The new process of a fork record, for the process cache.
/// Only what the cache keeps is filled (no formatted times: a fork precedes nearly every exec,
/// so this is on the exec-storm path).
pub fn fork_start(f: &ForkRecord) -> crate::enrich::ProcessStart {
    let p = &f.process;
    crate::enrich::ProcessStart {
        ktime_ns: f.header.ktime_ns,
        after_events: 0,
        in_order: true,
        process: Process {
            pid: f.header.tgid,
            ppid: p.ppid,
            start_boottime_ns: p.start_boottime_ns,
            uid: p.uid,
            euid: p.euid,
            gid: p.gid,
            egid: p.egid,
            auid: unset(p.auid),
            session: unset(p.session),
            tty: tty_name(&p.tty),
            comm: escape_bytes(until_nul(&p.comm)),
            cgroup_id: p.cgroup_id,
            ..Process::default()
        },
    }
}

fn base(kind: Kind, ktime_ns: u64, clocks: &Clocks, host: &str) -> Event {
    let mut ev = Event::new(kind, Source::Ebpf, clocks.monotonic_to_unix(ktime_ns), host);
    ev.ktime_ns = Some(ktime_ns);
    ev
}

fn unset(id: u32) -> Option<u32> {
    (id != u32::MAX).then_some(id)
}

pub fn process(p: &ProcessInfo, pid: u32, tid: u32, clocks: &Clocks) -> Process {
    let mut incomplete = Vec::new();
    if p.flags & FLAG_NO_LOGINUID != 0 {
        incomplete.push("loginuid".into());
    }
    if p.flags & FLAG_READ_ERROR != 0 {
        incomplete.push("kernel_read".into());
    }
    Process {
        pid,
        tid: (tid != pid).then_some(tid),
        ppid: p.ppid,
        start_time_unix_ns: Some(clocks.boottime_to_unix(p.start_boottime_ns)),
        start_boottime_ns: p.start_boottime_ns,
        uid: p.uid,
        euid: p.euid,
        gid: p.gid,
        egid: p.egid,
        auid: unset(p.auid),
        session: unset(p.session),
        tty: tty_name(&p.tty),
        comm: escape_bytes(until_nul(&p.comm)),
        cgroup_id: p.cgroup_id,
        incomplete,
        ..Process::default()
    }
}

fn exec_event(e: &ExecRecord, clocks: &Clocks, host: &str) -> Event {
    let mut ev = base(Kind::ProcessExec, e.header.ktime_ns, clocks, host);
    let mut p = process(&e.process, e.header.tgid, e.header.pid, clocks);
    let flags = e.process.flags;
    let cwd_ok = flags & (FLAG_CWD_ERROR | FLAG_CWD_TRUNCATED) == 0;
    if cwd_ok {
        p.cwd = Some(escape_bytes(&e.cwd));
    } else {
        p.incomplete.push("cwd".into());
    }
    // exe: the mapped executable (symlinks resolved, like /proc/<pid>/exe); when that walk
    // failed, the path the caller passed, made absolute against the cwd.
    let exe_ok = flags & (FLAG_EXE_ERROR | FLAG_EXE_TRUNCATED) == 0;
    let cwd_for_exe: &[u8] = if cwd_ok { &e.cwd } else { b"" };
    p.exe = Some(if exe_ok {
        let mut exe = escape_bytes(&e.exe);
        if flags & FLAG_EXE_DELETED != 0 {
            exe.push_str(" (deleted)");
            p.exe_deleted = true;
        }
        exe
    } else {
        p.incomplete.push("exe".into());
        escape_bytes(&resolve_exe(e.filename, cwd_for_exe))
    });
    p.filename = Some(escape_bytes(e.filename));
    if flags & FLAG_ARGV_ERROR != 0 {
        p.incomplete.push("argv".into());
    }
    p.argv = Some(Argv {
        args: e.argv.iter().map(|a| escape_bytes(a)).collect(),
        truncated: flags & FLAG_ARGV_TRUNCATED != 0,
        omitted_bytes: e.argv_omitted as u64,
    });
    ev.process = Some(p);
    ev
}

fn exit_event(e: &ExitRecord, clocks: &Clocks, host: &str) -> Event {
    let mut ev = base(Kind::ProcessExit, e.header.ktime_ns, clocks, host);
    ev.process = Some(process(&e.process, e.header.tgid, e.header.pid, clocks));
    ev.exit = Some(exit_status(e.status));
    ev
}

fn connect_event(c: &ConnectRecord, clocks: &Clocks, host: &str) -> Event {
    let mut ev = base(Kind::NetConnect, c.header.ktime_ns, clocks, host);
    ev.process = Some(process(&c.process, c.header.tgid, c.header.pid, clocks));
    ev.connect = Some(Connect {
        family: if c.family == AF_INET6 { "ipv6" } else { "ipv4" }.to_string(),
        protocol: protocol(c.sock_type),
        dst_addr: format_addr(c.family, &c.dst_addr),
        dst_port: u32::from(c.dst_port),
        result: connect_result(c.ret).to_string(),
        errno: if c.ret == CONNECT_RET_UNKNOWN {
            0
        } else {
            -c.ret.min(0)
        },
        // The hooks record the destination only.
        src_addr: None,
        src_port: None,
    });
    ev
}

/// x86_64 names of the credential syscalls the programs watch.
pub fn cred_syscall_name(nr: u32) -> String {
    let ia32 = nr & sensor_common::SYSCALL_NR_IA32 != 0;
    let nr = nr & !sensor_common::SYSCALL_NR_IA32;
    let arch = if ia32 { ARCH_I386 } else { ARCH_X86_64 };
    match cred_call(arch, u64::from(nr)) {
        Some(name) => name.into(),
        None if ia32 => format!("ia32_syscall{nr}"),
        None => format!("syscall{nr}"),
    }
}

fn privilege_event(r: &PrivilegeRecord, clocks: &Clocks, host: &str) -> Event {
    let mut ev = base(Kind::PrivilegeChange, r.header.ktime_ns, clocks, host);
    ev.process = Some(process(&r.process, r.header.tgid, r.header.pid, clocks));
    let via = if r.via == sensor_common::VIA_EXEC {
        // The exec event that follows names the binary.
        if r.new.euid != r.old.euid {
            "exec_setuid".to_string()
        } else if r.new.egid != r.old.egid {
            "exec_setgid".to_string()
        } else {
            "exec_file_caps".to_string()
        }
    } else if r.via == sensor_common::VIA_OBSERVED {
        // Found changed at the process's next exec or exit, with no syscall tracepoint
        // having seen the call (an ia32 `int 0x80` set*id, ...).
        "observed".to_string()
    } else {
        cred_syscall_name(r.syscall_nr)
    };
    let caps_changed = r.old.cap_effective != r.new.cap_effective;
    ev.privilege = Some(Privilege {
        old_uid: r.old.uid,
        new_uid: r.new.uid,
        old_euid: r.old.euid,
        new_euid: r.new.euid,
        old_gid: r.old.gid,
        new_gid: r.new.gid,
        old_egid: Some(r.old.egid),
        new_egid: Some(r.new.egid),
        old_caps: caps_changed.then(|| format!("{:#x}", r.old.cap_effective)),
        new_caps: caps_changed.then(|| format!("{:#x}", r.new.cap_effective)),
        via,
    });
    ev
}

#[cfg(test)]
mod tests {
    use super::super::decode::{decode, fixtures};
    use super::*;

    fn clocks() -> Clocks {
        Clocks {
            mono_to_unix: 1_000_000_000,
            boot_to_unix: 2_000_000_000,
        }
    }

    #[test]
    fn a_fork_is_a_process_start_not_an_event() {
        let ev = sensor_common::ForkEvent {
            header: sensor_common::EventHeader {
                kind: sensor_common::KIND_FORK,
                size: std::mem::size_of::<sensor_common::ForkEvent>() as u32,
                ktime_ns: 9_000,
                pid: 43,
                tgid: 43,
            },
            process: fixtures::process(),
        };
        let bytes = fixtures::as_bytes(&ev).to_vec();
        let rec = decode(&bytes).unwrap();
        assert!(normalize(&rec, &clocks(), "h").is_none());
        let Record::Fork(f) = &rec else {
            panic!("{rec:?}")
        };
        let s = fork_start(f);
        assert_eq!((s.ktime_ns, s.after_events, s.in_order), (9_000, 0, true));
        let p = &s.process;
        assert_eq!((p.pid, p.ppid, p.start_boottime_ns), (43, 10, 123_456));
        assert_eq!((p.uid, p.euid, p.gid, p.egid), (1000, 0, 1000, 1000));
        assert_eq!((p.auid, p.session), (Some(1000), Some(3)));
        assert_eq!((p.comm.as_str(), p.tty.as_deref()), ("bash", Some("pts/1")));
        assert_eq!(p.cgroup_id, 77);
        // Short: rejected, never read past the end.
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut short = bytes.clone();
        short[4..8].copy_from_slice(&100u32.to_ne_bytes());
        assert!(decode(&short).is_err());
    }

    #[test]
    fn exec_normalizes_all_fields() {
        let record = fixtures::exec(b"./run.sh", b"run.sh\0--x=1\0a\xffb\0", &[b"home", b"u"], 0);
        let rec = decode(&record).unwrap();
        let ev = normalize(&rec, &clocks(), "h1").unwrap();
        assert_eq!(ev.kind(), Kind::ProcessExec);
        assert_eq!(ev.time_unix_ns, 1_000_005_000);
        let p = ev.msg.process.unwrap();
        assert_eq!(p.exe.as_deref(), Some("/usr/bin/prog"));
        assert_eq!(p.filename.as_deref(), Some("./run.sh"));
        assert_eq!(p.cwd.as_deref(), Some("/home/u"));
        assert_eq!(
            p.argv.clone().unwrap().args,
            vec!["run.sh", "--x=1", "a\\xffb"]
        );
        assert_eq!(p.tty.as_deref(), Some("pts/1"));
        assert_eq!(
            (p.pid, p.ppid, p.uid, p.euid, p.auid, p.session),
            (42, 10, 1000, 0, Some(1000), Some(3))
        );
        assert_eq!(p.comm, "bash");
        assert_eq!(p.start_time_unix_ns, Some(2_000_123_456));
        assert!(p.incomplete.is_empty());
    }

    /// The event a record's bytes normalize to.
    fn event_of(bytes: &[u8]) -> Event {
        normalize(&decode(bytes).unwrap(), &clocks(), "h").unwrap()
    }

    #[test]
    fn exec_flags_mark_incomplete_and_truncated() {
        let flags = FLAG_CWD_ERROR | FLAG_ARGV_TRUNCATED | FLAG_NO_LOGINUID | FLAG_EXE_ERROR;
        let record = fixtures::exec(b"rel", b"a\0", &[], flags);
        let p = event_of(&record).msg.process.unwrap();
        assert_eq!(p.cwd, None);
        assert_eq!(p.exe.as_deref(), Some("rel"));
        assert!(p.argv.as_ref().unwrap().truncated);
        assert_eq!(p.incomplete, vec!["loginuid", "cwd", "exe"]);
    }

    #[test]
    fn memfd_exe_is_marked_deleted() {
        use sensor_common::{FLAG_EXE_DELETED, FLAG_EXE_DETACHED};
        // The exe walk of a memfd: one component, its name.
        let bytes = fixtures::exec_with_exe(
            b"",
            b"echo\0",
            &[],
            &[b"memfd:innocent"],
            0,
            FLAG_EXE_DELETED | FLAG_EXE_DETACHED,
        );
        let p = event_of(&bytes).msg.process.unwrap();
        assert_eq!(p.exe.as_deref(), Some("/memfd:innocent (deleted)"));
        assert!(p.exe_deleted);
    }

    #[test]
    fn connect_seen_before_it_was_made_is_attempted() {
        let record = fixtures::connect(
            2,
            1,
            &[10, 0, 0, 1],
            443,
            sensor_common::CONNECT_RET_UNKNOWN,
        );
        let c = event_of(&record).msg.connect.unwrap();
        assert_eq!((c.result.as_str(), c.errno), ("attempted", 0));
    }

    #[test]
    fn connect_fields() {
        let record = fixtures::connect(2, 1, &[127, 0, 0, 1], 8080, -libc::ECONNREFUSED);
        let rec = decode(&record).unwrap();
        let ev = normalize(&rec, &clocks(), "h").unwrap();
        let c = ev.msg.connect.unwrap();
        assert_eq!(
            (
                c.family.as_str(),
                c.protocol.as_str(),
                c.dst_addr.as_str(),
                c.dst_port,
                c.result.as_str(),
                c.errno
            ),
            ("ipv4", "tcp", "127.0.0.1", 8080, "refused", 111)
        );
        assert_eq!(ev.msg.process.unwrap().tid, Some(43));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        let record = fixtures::connect(10, 2, &v6, 53, 0);
        let c = event_of(&record).msg.connect.unwrap();
        assert_eq!(
            (
                c.family.as_str(),
                c.protocol.as_str(),
                c.dst_addr.as_str(),
                c.result.as_str()
            ),
            ("ipv6", "udp", "::1", "success")
        );
        assert_eq!(connect_result(-libc::EINPROGRESS), "in_progress");
        assert_eq!(connect_result(-libc::ENETUNREACH), "unreachable");
        assert_eq!(connect_result(-libc::EBADF), "error");
    }

    #[test]
    fn privilege_changes() {
        use sensor_common::{CredSnap, VIA_EXEC, VIA_SYSCALL};
        let old = CredSnap {
            uid: 1000,
            euid: 1000,
            gid: 100,
            egid: 100,
            cap_effective: 0,
        };
        let new = CredSnap {
            uid: 0,
            euid: 0,
            gid: 100,
            egid: 100,
            cap_effective: 0x1ff_ffff_ffff,
        };
        let record = fixtures::privilege(VIA_SYSCALL, 105, old, new);
        let rec = decode(&record).unwrap();
        let ev = normalize(&rec, &clocks(), "h").unwrap();
        assert_eq!(ev.kind(), Kind::PrivilegeChange);
        let p = ev.msg.privilege.unwrap();
        assert_eq!(
            (p.old_uid, p.new_uid, p.old_euid, p.new_euid, p.via.as_str()),
            (1000, 0, 1000, 0, "setuid")
        );
        assert_eq!(p.new_caps.as_deref(), Some("0x1ffffffffff"));
        // The i386 numbers of a compat call name the same calls as audit mode does.
        let ia32 = sensor_common::SYSCALL_NR_IA32;
        assert_eq!(cred_syscall_name(213 | ia32), "setuid");
        assert_eq!(cred_syscall_name(23 | ia32), "setuid");
        assert_eq!(cred_syscall_name(185 | ia32), "capset");
        assert_eq!(cred_syscall_name(105 | ia32), "ia32_syscall105");
        assert_eq!(cred_syscall_name(213), "syscall213");
        let new = CredSnap { euid: 0, ..old };
        let record = fixtures::privilege(VIA_EXEC, 0, old, new);
        let p = event_of(&record).msg.privilege.unwrap();
        assert_eq!((p.via.as_str(), p.old_caps), ("exec_setuid", None));
        let record = fixtures::privilege(sensor_common::VIA_OBSERVED, 0, old, new);
        let p = event_of(&record).msg.privilege.unwrap();
        assert_eq!(p.via, "observed");
    }
}
