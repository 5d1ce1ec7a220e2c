//! Unit tests of the `normalize` module.
use super::super::{
    assemble::Assembler,
    record::{parse, tests::session},
};
use super::*;

fn none(_: u32, _: i32) -> Option<u16> {
    None
}

/// Every group of the real capture, by serial.
fn groups() -> HashMap<u64, Group> {
    let mut asm = Assembler::new(64, 10_000);
    let mut out = Vec::new();
    for (i, (t, p)) in session().iter().enumerate() {
        out.extend(asm.push(parse(*t, p).unwrap(), i as u64));
    }
    out.extend(asm.flush_all());
    out.into_iter().map(|g| (g.serial, g)).collect()
}

fn one(g: &Group) -> Event {
    let mut evs = try_to_events(g, "h", &none).unwrap();
    assert_eq!(evs.len(), 1, "serial {}", g.serial);
    evs.pop().unwrap()
}

fn argv(ev: &Event) -> Vec<String> {
    ev.process.as_ref().unwrap().argv.clone().unwrap().args
}

#[test]
fn exec_with_hex_args() {
    let ev = one(&groups()[&6]);
    assert_eq!(ev.kind(), Kind::ProcessExec);
    assert_eq!(ev.source(), Source::Audit);
    assert_eq!(ev.time_unix_ns, 1_795_805_362_236_000_000);
    assert_eq!(ev.ktime_ns, None);
    let p = ev.process.as_ref().unwrap();
    assert_eq!(
        argv(&ev),
        vec![
            "/bin/echo",
            "a b",
            "q\"uote",
            "",
            "\\xff\\xfeok",
            "plain",
            "tab\there",
            "new\nline"
        ]
    );
    assert!(!p.argv.as_ref().unwrap().truncated);
    // exe is the binary (SYSCALL exe=, symlinks resolved, as eBPF's mm->exe_file walk);
    // filename is the path given to execve.
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/echo"));
    assert_eq!(p.filename.as_deref(), Some("/bin/echo"));
    assert_eq!(p.cwd.as_deref(), Some("/tmp/auditcap"));
    assert_eq!(
        (p.pid, p.ppid, p.uid, p.euid, p.gid, p.egid),
        (18579, 18578, 0, 0, 4242, 4242)
    );
    assert_eq!((p.auid, p.session, p.tty.as_deref()), (None, None, None));
    assert_eq!(p.comm, "echo");
    assert_eq!((p.start_boottime_ns, p.tid, p.cgroup_id), (0, None, 0));
    assert_eq!(p.incomplete, vec!["start_time", "cgroup_id"]);
    let json = ev.to_json();
    assert_eq!(json["source"], "audit");
    assert_eq!(json["kind"], "process_exec");
    assert_eq!(json["process"]["auid"], serde_json::Value::Null);
}

#[test]
fn exec_with_long_split_args() {
    let g = &groups()[&8];
    let ev = one(g);
    let p = ev.msg.process.unwrap();
    let args = p.argv.clone().unwrap().args;
    // Bounded like eBPF: the head of the area, a marker, and its last 1 KiB.
    let (full, _) = argv_from_execve(g).unwrap();
    let area = crate::sources::argv::join(&full).len();
    let bound = crate::sources::argv::DEFAULT_BOUND;
    assert!(p.argv.as_ref().unwrap().truncated);
    assert_eq!(
        p.argv.as_ref().unwrap().omitted_bytes,
        (area - bound) as u64
    );
    assert_eq!(args[0], "/bin/true");
    assert_eq!(args[1], "x".repeat(10000));
    let marker = format!("[... {} bytes omitted ...]", area - bound);
    assert!(args.contains(&marker), "{:?}", &args[args.len() - 5..]);
    let last = String::from_utf8(full.last().unwrap().clone()).unwrap();
    assert_eq!(args.last(), Some(&last));

    // Uncapped, the reassembly is exact: 3003 args, both split ones whole.
    let (full, truncated) = argv_from_execve(g).unwrap();
    assert!(!truncated);
    assert_eq!(full.len(), 3003);
    assert_eq!(full[1], vec![b'x'; 10000]);
    let mut y = vec![b'y'; 8000];
    y.extend_from_slice(b" space");
    assert_eq!(full[2], y);
    assert_eq!(full[3], b"arg0");
    assert_eq!(full[3002], b"arg2999");
}

#[test]
fn split_args_with_missing_pieces_are_truncated() {
    let mut g = groups()[&8].clone();
    // Lose the EXECVE record that carries a1[1].
    let pos = g
        .records
        .iter()
        .position(|r| r.get("a1[1]").is_some())
        .unwrap();
    g.records.remove(pos);
    let (args, truncated) = argv_from_execve(&g).unwrap();
    assert!(truncated);
    assert_eq!(args.len(), 2);
    assert_eq!(args[1].len(), 7464 / 2);
    // And a group cut by the assembler's budget is marked too.
    let mut g = groups()[&8].clone();
    g.truncated = true;
    assert!(argv_from_execve(&g).unwrap().1);
}

#[test]
fn exec_hex_exe_and_cwd_relative_path() {
    let gs = groups();
    let p = one(&gs[&20]).msg.process.unwrap();
    assert_eq!(p.comm, "my prog");
    assert_eq!(p.exe.as_deref(), Some("/tmp/auditcap/my prog"));
    assert_eq!(p.cwd.as_deref(), Some("/tmp/auditcap/dir with space"));
    assert_eq!(argv_of(&gs[&20]), vec!["/tmp/auditcap/my prog", "arg"]);
    // ./weird"q run from that directory: resolved against the cwd, like eBPF.
    let p = one(&gs[&22]).msg.process.unwrap();
    assert_eq!(
        p.exe.as_deref(),
        Some("/tmp/auditcap/dir with space/weird\"q")
    );
    assert_eq!(p.comm, "weird\"q");
}

fn argv_of(g: &Group) -> Vec<String> {
    argv(&one(g))
}

#[test]
fn fexecve_falls_back_to_syscall_exe() {
    let p = one(&groups()[&28]).msg.process.unwrap();
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/true"));
    assert_eq!(p.argv.clone().unwrap().args, vec!["true", "via-fexecve"]);
}

#[test]
fn failed_exec_gives_nothing() {
    assert!(try_to_events(&groups()[&25], "h", &none)
        .unwrap()
        .is_empty());
}

#[test]
fn exec_with_tty_and_login_ids() {
    let gs = groups();
    let p = one(&gs[&36]).msg.process.unwrap();
    assert_eq!(p.tty.as_deref(), Some("pts/0"));
    assert_eq!(p.argv.clone().unwrap().args, vec!["/bin/echo", "on-a-tty"]);
    let p = one(&gs[&32]).msg.process.unwrap();
    assert_eq!((p.auid, p.session), (Some(1000), Some(1)));
    // The loginuid write itself (syscall 1 + LOGIN) maps to nothing.
    assert!(try_to_events(&gs[&31], "h", &none).unwrap().is_empty());
}

#[test]
fn exit_group_code() {
    let gs = groups();
    let ev = one(&gs[&11]);
    assert_eq!(ev.kind(), Kind::ProcessExit);
    assert_eq!(
        ev.exit,
        Some(Exit {
            code: Some(7),
            signal: None,
            core_dumped: false
        })
    );
    let p = ev.msg.process.unwrap();
    assert_eq!((p.pid, p.ppid, p.comm.as_str()), (18581, 18578, "sh"));
    assert_eq!(p.exe, None);
    assert_eq!(one(&gs[&13]).msg.exit.unwrap().code, Some(0));
    assert_eq!(one(&gs[&26]).msg.exit.unwrap().code, Some(3));
}

#[test]
fn anom_abend_is_a_signal_exit() {
    let gs = groups();
    let ev = one(&gs[&15]);
    assert_eq!(ev.kind(), Kind::ProcessExit);
    assert_eq!(
        ev.exit,
        Some(Exit {
            code: None,
            signal: Some(6),
            core_dumped: false
        })
    );
    let p = ev.msg.process.unwrap();
    assert_eq!(
        (p.pid, p.uid, p.gid, p.comm.as_str()),
        (18583, 0, 4242, "python3")
    );
    assert_eq!((p.ppid, p.euid), (0, u32::MAX));
    assert!(p.is_incomplete("ppid"));
    assert_eq!(one(&gs[&17]).msg.exit.unwrap().signal, Some(11));
    // The SIGKILLed and SIGTERMed sleeps (serials 18, 19) left only their exec.
    for s in [18, 19] {
        assert_eq!(one(&gs[&s]).kind(), Kind::ProcessExec);
    }
    assert!(!gs.values().any(|g| g.records.iter().any(|r| {
        r.rtype == types::SYSCALL
            && r.get("syscall") == Some(b"231")
            && matches!(r.get("pid"), Some(b"18585" | b"18586"))
    })));
}

fn connect(g: &Group) -> (Connect, Process) {
    let ev = one(g);
    assert_eq!(ev.kind(), Kind::NetConnect);
    (ev.msg.connect.unwrap(), ev.msg.process.unwrap())
}

#[test]
fn ipv4_connects() {
    let gs = groups();
    let (c, p) = connect(&gs[&39]);
    assert_eq!(
        (
            c.family.as_str(),
            c.dst_addr.as_str(),
            c.dst_port,
            c.result.as_str(),
            c.errno
        ),
        ("ipv4", "127.0.0.1", 54045, "success", 0)
    );
    assert_eq!(c.protocol, "unknown");
    assert_eq!((p.pid, p.ppid), (18578, 18535));
    let (c, _) = connect(&gs[&40]);
    assert_eq!(
        (c.dst_port, c.result.as_str(), c.errno),
        (1, "refused", 111)
    );
    let (c, _) = connect(&gs[&41]);
    assert_eq!(
        (c.dst_addr.as_str(), c.dst_port, c.result.as_str(), c.errno),
        ("10.255.255.1", 8080, "in_progress", 115)
    );
    let (c, _) = connect(&gs[&45]);
    assert_eq!((c.dst_addr.as_str(), c.dst_port), ("127.0.0.53", 53));
    let (c, _) = connect(&gs[&48]);
    assert_eq!((c.dst_addr.as_str(), c.dst_port), ("0.0.0.0", 0));
    // From a thread: pid is still the thread-group id; no tid in audit.
    let (c, p) = connect(&gs[&50]);
    assert_eq!((c.dst_port, p.pid, p.tid), (54045, 18578, None));
}

#[test]
fn ipv6_connects() {
    let gs = groups();
    let (c, _) = connect(&gs[&42]);
    assert_eq!(
        (
            c.family.as_str(),
            c.dst_addr.as_str(),
            c.dst_port,
            c.result.as_str()
        ),
        ("ipv6", "::1", 41481, "success")
    );
    let (c, _) = connect(&gs[&43]);
    assert_eq!(
        (c.dst_addr.as_str(), c.dst_port, c.result.as_str()),
        ("::ffff:127.0.0.1", 1, "refused")
    );
    let (c, _) = connect(&gs[&44]);
    assert_eq!(
        (c.dst_addr.as_str(), c.dst_port, c.result.as_str(), c.errno),
        ("2001:db8::1", 443, "in_progress", 115)
    );
    let (c, _) = connect(&gs[&46]);
    assert_eq!((c.dst_addr.as_str(), c.dst_port), ("::1", 5353));
}

#[test]
fn unix_connects_give_nothing() {
    let gs = groups();
    for s in [49, 52, 53, 56, 63, 64] {
        assert!(
            try_to_events(&gs[&s], "h", &none).unwrap().is_empty(),
            "{s}"
        );
    }
}

#[test]
fn socket_type_resolver_sets_protocol() {
    let gs = groups();
    let seen = std::cell::RefCell::new(Vec::new());
    let resolver = |pid: u32, fd: i32| {
        seen.borrow_mut().push((pid, fd));
        Some(libc::SOCK_DGRAM as u16)
    };
    let ev = to_events(&gs[&45], "h", &resolver);
    assert_eq!(ev[0].connect.as_ref().unwrap().protocol, "udp");
    assert_eq!(seen.borrow().as_slice(), &[(18578, 5)]);
    let tcp = |_: u32, _: i32| Some(libc::SOCK_STREAM as u16);
    assert_eq!(
        to_events(&gs[&39], "h", &tcp)[0]
            .connect
            .as_ref()
            .unwrap()
            .protocol,
        "tcp"
    );
    let odd = |_: u32, _: i32| Some(5u16);
    assert_eq!(
        to_events(&gs[&39], "h", &odd)[0]
            .connect
            .as_ref()
            .unwrap()
            .protocol,
        "socktype5"
    );
}

#[test]
fn other_groups_give_nothing() {
    let gs = groups();
    // CONFIG_CHANGE (4), PAM user records (54, 55, ...), LOGIN group (31).
    for s in [4, 54, 55, 59, 66, 68, 69, 31] {
        assert!(
            try_to_events(&gs[&s], "h", &none).unwrap().is_empty(),
            "{s}"
        );
    }
}

#[test]
fn whole_session_event_counts() {
    let gs = groups();
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for g in gs.values() {
        for ev in try_to_events(g, "h", &none).unwrap() {
            *kinds.entry(ev.kind().as_str()).or_default() += 1;
        }
    }
    // 20 successful execs; 13 exit_group + 2 ANOM_ABEND; 11 INET/INET6 connects.
    assert_eq!(kinds["process_exec"], 20);
    assert_eq!(kinds["process_exit"], 15);
    assert_eq!(kinds["net_connect"], 11);
}

fn group_of(recs: &[(u16, &str)]) -> Group {
    let records: Vec<Record> = recs
        .iter()
        .map(|(t, p)| parse(*t, p.as_bytes()).unwrap())
        .collect();
    Group {
        serial: records[0].serial,
        time_ms: records[0].time_ms,
        records,
        complete: true,
        truncated: false,
    }
}

#[test]
fn malformed_groups_give_errors_not_panics() {
    let sys = "audit(1.000:1): arch=c000003e syscall=42 success=yes exit=0 a0=3 pid=7";
    assert_eq!(
        try_to_events(&group_of(&[(1300, sys)]), "h", &none).err(),
        Some(NormalizeError::NoSockaddr { serial: 1 })
    );
    assert_eq!(
        try_to_events(
            &group_of(&[(1300, sys), (1306, "audit(1.000:1): saddr=0200")]),
            "h",
            &none
        )
        .err(),
        Some(NormalizeError::ShortSockaddr { family: 2, len: 2 })
    );
    assert_eq!(
        try_to_events(
            &group_of(&[(1300, sys), (1306, "audit(1.000:1): saddr=02")]),
            "h",
            &none
        )
        .err(),
        Some(NormalizeError::ShortSockaddr { family: 0, len: 1 })
    );
    let nopid = "audit(1.000:1): arch=c000003e syscall=231 a0=7";
    assert_eq!(
        try_to_events(&group_of(&[(1300, nopid)]), "h", &none).err(),
        Some(NormalizeError::Field {
            rtype: 1300,
            field: "pid"
        })
    );
    let noarch = "audit(1.000:1): syscall=231 a0=7 pid=1";
    assert!(try_to_events(&group_of(&[(1300, noarch)]), "h", &none).is_err());
    assert!(to_events(&group_of(&[(1300, noarch)]), "h", &none).is_empty());
    // Hostile argc with no arguments: bounded, marked truncated.
    let g = group_of(&[
        (
            1300,
            "audit(1.000:1): arch=c000003e syscall=59 success=yes exit=0 pid=1 comm=\"x\"",
        ),
        (1309, "audit(1.000:1): argc=4294967295 a0=\"x\""),
    ]);
    let p = one(&g).msg.process.unwrap();
    assert_eq!(p.argv.clone().unwrap().args, vec!["x"]);
    assert!(p.argv.as_ref().unwrap().truncated);
    assert!(p.is_incomplete("cwd"));
    // exe falls back to nothing at all.
    assert!(p.is_incomplete("exe"));
}

#[test]
fn other_arches() {
    assert_eq!(call(AUDIT_ARCH_X86_64, 59), Call::Exec);
    assert_eq!(call(AUDIT_ARCH_X86_64, 520 | X32_SYSCALL_BIT), Call::Exec);
    assert_eq!(call(AUDIT_ARCH_X86_64, 520), Call::Other);
    assert_eq!(call(AUDIT_ARCH_I386, 252), Call::ExitGroup);
    assert_eq!(call(AUDIT_ARCH_AARCH64, 203), Call::Connect);
    assert_eq!(call(0, 59), Call::Other);
    // i386 socketcall(SYS_CONNECT): the fd is in the SOCKETCALL record (derived from the
    // captured x86_64 record: the host has no 32-bit userland to capture from).
    let g = group_of(&[
            (1300, "audit(1.000:9): arch=40000003 syscall=102 success=no exit=-111 a0=3 a1=ffd0 a2=0 a3=0 ppid=1 pid=77 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"c\" exe=\"/c\" key=(null)"),
            (1304, "audit(1.000:9): nargs=3 a0=4 a1=ffd0 a2=10"),
            (1306, "audit(1.000:9): saddr=020000017F0000010000000000000000"),
        ]);
    let seen = std::cell::Cell::new(0);
    let r = |_: u32, fd: i32| {
        seen.set(fd);
        None
    };
    let ev = to_events(&g, "h", &r);
    assert_eq!(ev[0].connect.as_ref().unwrap().result, "refused");
    assert_eq!(seen.get(), 4);
}

#[test]
fn script_exec_and_sigquit() {
    let mut asm = Assembler::new(64, 10_000);
    let mut gs = Vec::new();
    let recs = super::super::record::tests::load(include_str!("../fixtures/script_sigquit.txt"));
    for (i, (t, p)) in recs.iter().enumerate() {
        gs.extend(asm.push(parse(*t, p).unwrap(), i as u64));
    }
    gs.extend(asm.flush_all());
    let evs: Vec<Event> = gs.iter().flat_map(|g| to_events(g, "h", &none)).collect();
    // A #! script: exe is the interpreter actually mapped, filename the script as given,
    // argv the rewritten one.
    let script = evs
        .iter()
        .find(|e| e.process.as_ref().unwrap().comm == "script.sh")
        .unwrap();
    let p = script.process.as_ref().unwrap();
    assert_eq!(p.exe.as_deref(), Some("/usr/bin/dash"));
    assert_eq!(p.filename.as_deref(), Some("./script.sh"));
    assert_eq!(p.args().unwrap(), ["/bin/sh", "./script.sh", "arg one"]);
    let exits: Vec<(u32, Option<i32>, Option<i32>)> = evs
        .iter()
        .filter(|e| e.kind() == Kind::ProcessExit)
        .map(|e| {
            let x = e.exit.as_ref().unwrap();
            (e.process.as_ref().unwrap().pid, x.code, x.signal)
        })
        .collect();
    // The script's exit 5 and the workload's exit 0; the SIGQUIT death (27359) is absent.
    assert_eq!(exits, vec![(27358, Some(5), None), (27355, Some(0), None)]);
    // CONFIG_CHANGE + SYSCALL(sendto) + PROCTITLE under one serial: one group, no event.
    let cfg = gs.iter().find(|g| g.serial == 1148).unwrap();
    assert_eq!(cfg.records.len(), 3);
    assert!(cfg.complete);
    assert_eq!(evs.len(), 5);
}

#[test]
fn tty_forms() {
    assert_eq!(tty_name(Some(b"pts12")), Some("pts/12".into()));
    assert_eq!(tty_name(Some(b"tty1")), Some("tty1".into()));
    assert_eq!(tty_name(Some(b"(none)")), None);
    assert_eq!(tty_name(None), None);
    assert_eq!(tty_name(Some(b"ptsx")), Some("ptsx".into()));
}

#[test]
fn proctitle_fallback_when_execve_lost() {
    let mut g = groups()[&10].clone();
    g.records.retain(|r| r.rtype != types::EXECVE);
    let p = one(&g).msg.process.unwrap();
    assert_eq!(
        p.argv.clone().unwrap().args,
        vec!["/bin/sh", "-c", "exit 7"]
    );
    assert!(!p.argv.as_ref().unwrap().truncated);
    let mut g = groups()[&24].clone();
    g.records.retain(|r| r.rtype != types::EXECVE);
    let p = one(&g).msg.process.unwrap();
    assert!(p.argv.as_ref().unwrap().truncated); // 128-byte title
    g.records.retain(|r| r.rtype != types::PROCTITLE);
    let p = one(&g).msg.process.unwrap();
    assert_eq!(p.argv, None);
    assert!(p.is_incomplete("argv"));
}
