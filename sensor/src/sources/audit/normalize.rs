//! A completed audit [`Group`] to normalized [`Event`]s, with the same fields and formats as
//! eBPF mode (`sources::kernel_values`) wherever the audit records carry them.
//!
//! Mapping:
//! - SYSCALL execve/execveat with `success=yes` -> `process_exec`. argv from the EXECVE records
//!   (`argc`, `aN`, and split `aN_len` / `aN[i]` pieces across records), capped to the same
//!   4 KiB area as eBPF with `argv_truncated`; PROCTITLE (128 bytes, so marked truncated when
//!   cut) when EXECVE is missing. `exe` is SYSCALL `exe=`: the binary actually mapped, symlinks
//!   resolved (`/usr/bin/echo` for `/bin/echo`, the interpreter for a `#!` script), as eBPF
//!   reports it from `mm->exe_file`; `filename` is PATH item 0, the path handed to execve as
//!   given (eBPF's `bprm->filename`). When `exe=` is missing, PATH item 0 made absolute against
//!   CWD stands in, marked incomplete. A failed exec gives no event (eBPF sees only successful
//!   ones).
//! - SYSCALL exit_group -> `process_exit` with `code = a0 & 0xff`. The record has no
//!   `success=`/`exit=`: the call never returns; the kernel writes it when the task is freed.
//! - ANOM_ABEND (1701) -> `process_exit` with `signal = sig`, `code = None`.
//! - SYSCALL connect (or i386 socketcall SYS_CONNECT) with an AF_INET/AF_INET6 SOCKADDR ->
//!   `net_connect`, result and errno from `exit=` via eBPF's `connect_result`.
//!
//! What audit cannot give, and the caller must handle:
//! - **Signal deaths are mostly invisible.** A process killed by a signal never calls
//!   exit_group, so there is no record for SIGKILL, SIGTERM, SIGINT, SIGHUP, SIGPIPE, the OOM
//!   killer, or SIGQUIT (which the kernel explicitly skips). Only signals that would dump core
//!   (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, ...) produce ANOM_ABEND, and
//!   whether a core was actually written (`core_dumped`) is not reported, so it is `false`.
//!   A process whose last thread calls `exit` (not exit_group) after the leader
//!   `pthread_exit`ed is also missed. Options: an audit rule on kill/tkill/tgkill (gives the
//!   sender and an OBJ_PID target, not the death), or the proc connector
//!   (NETLINK_CONNECTOR / CN_IDX_PROC `PROC_EVENT_EXIT`, which carries exit code and signal
//!   for every process without eBPF).
//! - **No socket type.** SYSCALL/SOCKADDR do not say TCP or UDP. `protocol` comes from the
//!   `sock_type(pid, fd)` resolver (fd is connect's a0); without an answer it is `"unknown"`.
//!   The socket may already be closed when the group is normalized (short-lived processes).
//! - **No thread id, start time or cgroup.** SYSCALL `pid=` is the thread-group id; `tid` is
//!   None, `start_boottime_ns` 0, the start time None (JSON `start_time` ""), `cgroup_id` 0; `start_time` and
//!   `cgroup_id` are listed in `incomplete`. ANOM_ABEND also lacks ppid, euid, egid and tty
//!   (listed in `incomplete`; ids set to 4294967295, ppid 0).
//! - Time is the audit timestamp (wall clock, millisecond resolution); `ktime_ns` is None.
//! - exe/cwd/argv are only set on exec events, as in eBPF mode, although SYSCALL has `exe=`.
use std::collections::HashMap;

use thiserror::Error;

use super::{
    assemble::Group,
    record::{types, Record},
};
use crate::{
    escape::escape_bytes,
    event::{Connect, Event, Exit, Kind, Process, Source},
    sources::kernel_values::{
        connect_result, format_addr, protocol as socket_type_name, resolve_exe,
        tty_name as kernel_tty_name,
    },
};

const AUDIT_ARCH_X86_64: u64 = 0xC000_003E;
const AUDIT_ARCH_I386: u64 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u64 = 0xC000_00B7;
const X32_SYSCALL_BIT: u64 = 0x4000_0000;
/// socketcall(2) call number for connect.
const SYS_CONNECT: u64 = 3;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NormalizeError {
    #[error("audit type {rtype}: missing or invalid field `{field}`")]
    Field { rtype: u16, field: &'static str },
    #[error("connect (serial {serial}) without a SOCKADDR record")]
    NoSockaddr { serial: u64 },
    #[error("SOCKADDR of family {family} is {len} bytes, too short")]
    ShortSockaddr { family: u16, len: usize },
}

/// The syscalls this module maps, per audit arch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Exec,
    ExitGroup,
    Connect,
    Socketcall,
    Other,
}

fn call(arch: u64, nr: u64) -> Call {
    match arch {
        AUDIT_ARCH_X86_64 if nr & X32_SYSCALL_BIT != 0 => match nr & !X32_SYSCALL_BIT {
            520 | 545 => Call::Exec,
            231 => Call::ExitGroup,
            42 => Call::Connect,
            _ => Call::Other,
        },
        AUDIT_ARCH_X86_64 => match nr {
            59 | 322 => Call::Exec,
            231 => Call::ExitGroup,
            42 => Call::Connect,
            _ => Call::Other,
        },
        AUDIT_ARCH_I386 => match nr {
            11 | 358 => Call::Exec,
            252 => Call::ExitGroup,
            362 => Call::Connect,
            102 => Call::Socketcall,
            _ => Call::Other,
        },
        AUDIT_ARCH_AARCH64 => match nr {
            221 | 281 => Call::Exec,
            94 => Call::ExitGroup,
            203 => Call::Connect,
            _ => Call::Other,
        },
        _ => Call::Other,
    }
}

/// Events for one group; groups that map to nothing, or fail to, give an empty Vec.
pub fn to_events(
    group: &Group,
    host: &str,
    sock_type: &dyn Fn(u32, i32) -> Option<u16>,
) -> Vec<Event> {
    to_events_bounded(group, host, sock_type, crate::argv::DEFAULT_BOUND)
}

/// [`to_events`] with argv cut to `argv_bound` bytes (head and tail, as in eBPF mode).
pub fn to_events_bounded(
    group: &Group,
    host: &str,
    sock_type: &dyn Fn(u32, i32) -> Option<u16>,
    argv_bound: usize,
) -> Vec<Event> {
    try_to_events_bounded(group, host, sock_type, argv_bound).unwrap_or_default()
}

/// Like [`to_events`], but says why a group that should have given an event did not.
/// `Ok(vec![])` means the group is of no interest (other syscall, failed exec, AF_UNIX, ...).
pub fn try_to_events(
    group: &Group,
    host: &str,
    sock_type: &dyn Fn(u32, i32) -> Option<u16>,
) -> Result<Vec<Event>, NormalizeError> {
    try_to_events_bounded(group, host, sock_type, crate::argv::DEFAULT_BOUND)
}

fn try_to_events_bounded(
    group: &Group,
    host: &str,
    sock_type: &dyn Fn(u32, i32) -> Option<u16>,
    argv_bound: usize,
) -> Result<Vec<Event>, NormalizeError> {
    let mut events = Vec::new();
    if let Some(sys) = group.first(types::SYSCALL) {
        if let Some(ev) = syscall_event(group, sys, host, sock_type, argv_bound)? {
            events.push(ev);
        }
    }
    if let Some(ev) = super::uring::connect_event(group, host)? {
        events.push(ev);
    }
    for abend in group.all(types::ANOM_ABEND) {
        events.push(abend_event(group, abend, host)?);
    }
    Ok(events)
}

fn syscall_event(
    group: &Group,
    sys: &Record,
    host: &str,
    sock_type: &dyn Fn(u32, i32) -> Option<u16>,
    argv_bound: usize,
) -> Result<Option<Event>, NormalizeError> {
    let field = |field| NormalizeError::Field {
        rtype: types::SYSCALL,
        field,
    };
    let arch = sys.get_hex_u64("arch").ok_or(field("arch"))?;
    let nr = sys.get_dec::<u64>("syscall").ok_or(field("syscall"))?;
    match call(arch, nr) {
        Call::Exec => {
            if sys.get("success") != Some(b"yes") {
                return Ok(None);
            }
            Ok(Some(exec_event(group, sys, host, argv_bound)?))
        }
        Call::ExitGroup => {
            let code = sys.get_hex_u64("a0").ok_or(field("a0"))?;
            let mut ev = base(Kind::ProcessExit, group, host);
            ev.process = Some(process(sys)?);
            ev.exit = Some(Exit {
                code: Some((code & 0xff) as i32),
                signal: None,
                core_dumped: false,
            });
            Ok(Some(ev))
        }
        Call::Connect => {
            let fd = sys.get_hex_u64("a0").ok_or(field("a0"))?;
            connect_event(group, sys, fd, host, sock_type)
        }
        Call::Socketcall => {
            if sys.get_hex_u64("a0") != Some(SYS_CONNECT) {
                return Ok(None);
            }
            let fd = group
                .first(types::SOCKETCALL)
                .and_then(|r| r.get_hex_u64("a0"))
                .ok_or(NormalizeError::Field {
                    rtype: types::SOCKETCALL,
                    field: "a0",
                })?;
            connect_event(group, sys, fd, host, sock_type)
        }
        Call::Other => Ok(None),
    }
}

pub(crate) fn base(kind: Kind, group: &Group, host: &str) -> Event {
    let unix_ns = i64::try_from(group.time_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    Event::new(kind, Source::Audit, unix_ns, host)
}

/// `auid`/`ses` as the kernel prints them: 4294967295 (or `unset`) means not set.
fn login_id(r: &Record, key: &str) -> Option<u32> {
    r.get_dec::<u32>(key).filter(|&v| v != u32::MAX)
}

/// `pts0` -> `pts/0`; `(none)` -> None (the same form as eBPF mode).
fn tty_name(raw: Option<&[u8]>) -> Option<String> {
    let name = raw?;
    if name == b"(none)" || name == b"?" {
        return None;
    }
    kernel_tty_name(name)
}

/// Same names as eBPF mode's socket-type mapping.
fn protocol(sock_type: Option<u16>) -> String {
    socket_type_name(sock_type.unwrap_or(0))
}

/// Audit-mode defaults for what no audit record carries.
fn audit_process(pid: u32) -> Process {
    Process {
        pid,
        start_time_unix_ns: None,
        start_boottime_ns: 0,
        incomplete: vec!["start_time", "cgroup_id"],
        ..Process::default()
    }
}

/// Process fields from a SYSCALL record.
pub(crate) fn process(sys: &Record) -> Result<Process, NormalizeError> {
    let pid = sys.get_dec::<u32>("pid").ok_or(NormalizeError::Field {
        rtype: sys.rtype,
        field: "pid",
    })?;
    let mut p = audit_process(pid);
    let mut id = |key: &'static str, unknown: u32| -> u32 {
        sys.get_dec::<u32>(key).unwrap_or_else(|| {
            p.incomplete.push(key);
            unknown
        })
    };
    let ppid = id("ppid", 0);
    let uid = id("uid", u32::MAX);
    let euid = id("euid", u32::MAX);
    let gid = id("gid", u32::MAX);
    let egid = id("egid", u32::MAX);
    (p.ppid, p.uid, p.euid, p.gid, p.egid) = (ppid, uid, euid, gid, egid);
    p.auid = login_id(sys, "auid");
    p.session = login_id(sys, "ses");
    p.tty = tty_name(sys.get("tty"));
    p.comm = escape_bytes(sys.get("comm").unwrap_or_default());
    Ok(p)
}

fn exec_event(
    group: &Group,
    sys: &Record,
    host: &str,
    argv_bound: usize,
) -> Result<Event, NormalizeError> {
    let mut ev = base(Kind::ProcessExec, group, host);
    let mut p = process(sys)?;
    let cwd = group.first(types::CWD).and_then(|r| r.get("cwd"));
    match cwd {
        Some(c) => p.cwd = Some(escape_bytes(c)),
        None => p.incomplete.push("cwd"),
    }
    let item0 = group
        .all(types::PATH)
        .find(|r| r.get("item") == Some(b"0"))
        .and_then(|r| r.get("name"))
        .filter(|n| !n.is_empty() && *n != b"(null)");
    // exe: the binary actually executed (SYSCALL exe=, symlinks resolved), as eBPF reports it
    // from mm->exe_file; filename: the path handed to execve (PATH item 0), as given.
    p.filename = item0.map(escape_bytes);
    p.exe = match (sys.get("exe"), item0) {
        (Some(exe), _) if !exe.is_empty() && exe != b"(null)" => Some(escape_bytes(exe)),
        (_, Some(name)) => {
            p.incomplete.push("exe");
            Some(escape_bytes(&resolve_exe(name, cwd.unwrap_or_default())))
        }
        _ => {
            p.incomplete.push("exe");
            None
        }
    };
    // The kernel's d_path marks a deleted file, or a memfd, this way.
    p.exe_deleted = sys.get("exe").is_some_and(|e| e.ends_with(b" (deleted)"));
    let argv = argv_from_execve(group).or_else(|| {
        let title = group.first(types::PROCTITLE)?.get("proctitle")?;
        // The kernel keeps 128 bytes of the title: a full one was probably cut.
        Some((split_nul(title), title.len() >= 128))
    });
    match argv {
        Some((args, truncated)) => {
            let (args, omitted, capped) = crate::argv::bound_list(args, argv_bound);
            p.argv = Some(args.iter().map(|a| escape_bytes(a)).collect());
            p.argv_truncated = truncated || capped;
            p.argv_omitted_bytes = omitted as u64;
        }
        None => p.incomplete.push("argv"),
    }
    ev.process = Some(p);
    Ok(ev)
}

fn split_nul(b: &[u8]) -> Vec<Vec<u8>> {
    b.split(|&c| c == 0).map(<[u8]>::to_vec).collect()
}

/// argv from the group's EXECVE records, and whether it is incomplete.
fn argv_from_execve(group: &Group) -> Option<(Vec<Vec<u8>>, bool)> {
    let mut fields: HashMap<&str, &[u8]> = HashMap::new();
    let mut any = false;
    for r in group.all(types::EXECVE) {
        any = true;
        for (k, v) in r.fields() {
            fields.entry(k).or_insert(v);
        }
    }
    if !any {
        return None;
    }
    let argc = fields
        .get("argc")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<usize>().ok());
    // Every argument needs at least one field, so this bounds a hostile argc.
    let limit = argc.unwrap_or(usize::MAX).min(fields.len());
    let mut args = Vec::new();
    let mut truncated = group.truncated;
    for i in 0..limit {
        if let Some(v) = fields.get(format!("a{i}").as_str()) {
            args.push(v.to_vec());
            continue;
        }
        let mut arg = Vec::new();
        let mut pieces = 0;
        while let Some(piece) = fields.get(format!("a{i}[{pieces}]").as_str()) {
            arg.extend_from_slice(piece);
            pieces += 1;
        }
        let want = fields
            .get(format!("a{i}_len").as_str())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse::<usize>().ok());
        if pieces == 0 {
            truncated = true;
            break;
        }
        // aN_len counts the logged text: hex digits when the argument was encoded.
        let whole = match want {
            Some(n) => arg.len() == n || arg.len().checked_mul(2) == Some(n),
            None => false,
        };
        args.push(arg);
        if !whole {
            truncated = true;
            break;
        }
    }
    if argc.is_some_and(|n| args.len() < n) {
        truncated = true;
    }
    Some((args, truncated))
}

fn connect_event(
    group: &Group,
    sys: &Record,
    fd: u64,
    host: &str,
    sock_type: &dyn Fn(u32, i32) -> Option<u16>,
) -> Result<Option<Event>, NormalizeError> {
    let Some((family, dst_addr, dst_port)) = connect_parts(group)? else {
        return Ok(None);
    };
    let ret = sys
        .get_dec::<i64>("exit")
        .and_then(|v| i32::try_from(v).ok())
        .ok_or(NormalizeError::Field {
            rtype: types::SYSCALL,
            field: "exit",
        })?;
    let p = process(sys)?;
    let fd = i32::try_from(fd).unwrap_or(-1);
    let mut ev = base(Kind::NetConnect, group, host);
    ev.connect = Some(Connect {
        family,
        protocol: protocol(sock_type(p.pid, fd)),
        dst_addr,
        dst_port,
        result: connect_result(ret),
        errno: -ret.min(0),
    });
    ev.process = Some(p);
    Ok(Some(ev))
}

/// The destination in the group's SOCKADDR: ("ipv4"|"ipv6", address, port), or None for
/// other families.
pub(crate) fn connect_parts(
    group: &Group,
) -> Result<Option<(&'static str, String, u16)>, NormalizeError> {
    let saddr = group
        .first(types::SOCKADDR)
        .and_then(|r| r.get("saddr"))
        .ok_or(NormalizeError::NoSockaddr {
            serial: group.serial,
        })?;
    let Some(family) = saddr.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]])) else {
        return Err(NormalizeError::ShortSockaddr {
            family: 0,
            len: saddr.len(),
        });
    };
    let mut addr = [0u8; 16];
    let port_bytes = [saddr.get(2).copied(), saddr.get(3).copied()];
    let need = match family {
        AF_INET => 8,
        AF_INET6 => 24,
        _ => return Ok(None),
    };
    if saddr.len() < need {
        return Err(NormalizeError::ShortSockaddr {
            family,
            len: saddr.len(),
        });
    }
    match family {
        AF_INET => addr[..4].copy_from_slice(&saddr[4..8]),
        _ => addr.copy_from_slice(&saddr[8..24]),
    }
    let port = u16::from_be_bytes([port_bytes[0].unwrap_or(0), port_bytes[1].unwrap_or(0)]);
    let name = if family == AF_INET6 { "ipv6" } else { "ipv4" };
    Ok(Some((name, format_addr(family, &addr), port)))
}

/// A core-dumping signal: `auid uid gid ses [subj] pid comm exe sig res`.
fn abend_event(group: &Group, r: &Record, host: &str) -> Result<Event, NormalizeError> {
    let field = |field| NormalizeError::Field {
        rtype: types::ANOM_ABEND,
        field,
    };
    let pid = r.get_dec::<u32>("pid").ok_or(field("pid"))?;
    let sig = r.get_dec::<i32>("sig").ok_or(field("sig"))?;
    let mut p = audit_process(pid);
    p.uid = r.get_dec("uid").unwrap_or(u32::MAX);
    p.gid = r.get_dec("gid").unwrap_or(u32::MAX);
    (p.euid, p.egid) = (u32::MAX, u32::MAX);
    p.auid = login_id(r, "auid");
    p.session = login_id(r, "ses");
    p.comm = escape_bytes(r.get("comm").unwrap_or_default());
    p.incomplete.extend(["ppid", "euid", "egid", "tty"]);
    let mut ev = base(Kind::ProcessExit, group, host);
    ev.process = Some(p);
    ev.exit = Some(Exit {
        code: None,
        signal: Some(sig),
        core_dumped: false,
    });
    Ok(ev)
}

#[cfg(test)]
mod tests {
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
        ev.process.as_ref().unwrap().argv.clone().unwrap()
    }

    #[test]
    fn exec_with_hex_args() {
        let ev = one(&groups()[&6]);
        assert_eq!(ev.kind, Kind::ProcessExec);
        assert_eq!(ev.source, Source::Audit);
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
        assert!(!p.argv_truncated);
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
        let p = ev.process.unwrap();
        let args = p.argv.unwrap();
        // Bounded like eBPF: the head of the area, a marker, and its last 1 KiB.
        let (full, _) = argv_from_execve(g).unwrap();
        let area = crate::argv::join(&full).len();
        let bound = crate::argv::DEFAULT_BOUND;
        assert!(p.argv_truncated);
        assert_eq!(p.argv_omitted_bytes, (area - bound) as u64);
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
        let p = one(&gs[&20]).process.unwrap();
        assert_eq!(p.comm, "my prog");
        assert_eq!(p.exe.as_deref(), Some("/tmp/auditcap/my prog"));
        assert_eq!(p.cwd.as_deref(), Some("/tmp/auditcap/dir with space"));
        assert_eq!(argv_of(&gs[&20]), vec!["/tmp/auditcap/my prog", "arg"]);
        // ./weird"q run from that directory: resolved against the cwd, like eBPF.
        let p = one(&gs[&22]).process.unwrap();
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
        let p = one(&groups()[&28]).process.unwrap();
        assert_eq!(p.exe.as_deref(), Some("/usr/bin/true"));
        assert_eq!(p.argv.unwrap(), vec!["true", "via-fexecve"]);
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
        let p = one(&gs[&36]).process.unwrap();
        assert_eq!(p.tty.as_deref(), Some("pts/0"));
        assert_eq!(p.argv.unwrap(), vec!["/bin/echo", "on-a-tty"]);
        let p = one(&gs[&32]).process.unwrap();
        assert_eq!((p.auid, p.session), (Some(1000), Some(1)));
        // The loginuid write itself (syscall 1 + LOGIN) maps to nothing.
        assert!(try_to_events(&gs[&31], "h", &none).unwrap().is_empty());
    }

    #[test]
    fn exit_group_code() {
        let gs = groups();
        let ev = one(&gs[&11]);
        assert_eq!(ev.kind, Kind::ProcessExit);
        assert_eq!(
            ev.exit,
            Some(Exit {
                code: Some(7),
                signal: None,
                core_dumped: false
            })
        );
        let p = ev.process.unwrap();
        assert_eq!((p.pid, p.ppid, p.comm.as_str()), (18581, 18578, "sh"));
        assert_eq!(p.exe, None);
        assert_eq!(one(&gs[&13]).exit.unwrap().code, Some(0));
        assert_eq!(one(&gs[&26]).exit.unwrap().code, Some(3));
    }

    #[test]
    fn anom_abend_is_a_signal_exit() {
        let gs = groups();
        let ev = one(&gs[&15]);
        assert_eq!(ev.kind, Kind::ProcessExit);
        assert_eq!(
            ev.exit,
            Some(Exit {
                code: None,
                signal: Some(6),
                core_dumped: false
            })
        );
        let p = ev.process.unwrap();
        assert_eq!(
            (p.pid, p.uid, p.gid, p.comm.as_str()),
            (18583, 0, 4242, "python3")
        );
        assert_eq!((p.ppid, p.euid), (0, u32::MAX));
        assert!(p.incomplete.contains(&"ppid"));
        assert_eq!(one(&gs[&17]).exit.unwrap().signal, Some(11));
        // The SIGKILLed and SIGTERMed sleeps (serials 18, 19) left only their exec.
        for s in [18, 19] {
            assert_eq!(one(&gs[&s]).kind, Kind::ProcessExec);
        }
        assert!(!gs.values().any(|g| g.records.iter().any(|r| {
            r.rtype == types::SYSCALL
                && r.get("syscall") == Some(b"231")
                && matches!(r.get("pid"), Some(b"18585" | b"18586"))
        })));
    }

    fn connect(g: &Group) -> (Connect, Process) {
        let ev = one(g);
        assert_eq!(ev.kind, Kind::NetConnect);
        (ev.connect.unwrap(), ev.process.unwrap())
    }

    #[test]
    fn ipv4_connects() {
        let gs = groups();
        let (c, p) = connect(&gs[&39]);
        assert_eq!(
            (c.family, c.dst_addr.as_str(), c.dst_port, c.result, c.errno),
            ("ipv4", "127.0.0.1", 54045, "success", 0)
        );
        assert_eq!(c.protocol, "unknown");
        assert_eq!((p.pid, p.ppid), (18578, 18535));
        let (c, _) = connect(&gs[&40]);
        assert_eq!((c.dst_port, c.result, c.errno), (1, "refused", 111));
        let (c, _) = connect(&gs[&41]);
        assert_eq!(
            (c.dst_addr.as_str(), c.dst_port, c.result, c.errno),
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
            (c.family, c.dst_addr.as_str(), c.dst_port, c.result),
            ("ipv6", "::1", 41481, "success")
        );
        let (c, _) = connect(&gs[&43]);
        assert_eq!(
            (c.dst_addr.as_str(), c.dst_port, c.result),
            ("::ffff:127.0.0.1", 1, "refused")
        );
        let (c, _) = connect(&gs[&44]);
        assert_eq!(
            (c.dst_addr.as_str(), c.dst_port, c.result, c.errno),
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
                *kinds.entry(ev.kind.as_str()).or_default() += 1;
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
        let p = one(&g).process.unwrap();
        assert_eq!(p.argv.unwrap(), vec!["x"]);
        assert!(p.argv_truncated);
        assert!(p.incomplete.contains(&"cwd"));
        // exe falls back to nothing at all.
        assert!(p.incomplete.contains(&"exe"));
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
        let recs = super::super::record::tests::load(include_str!("fixtures/script_sigquit.txt"));
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
        assert_eq!(
            p.argv.as_deref().unwrap(),
            ["/bin/sh", "./script.sh", "arg one"]
        );
        let exits: Vec<(u32, Option<i32>, Option<i32>)> = evs
            .iter()
            .filter(|e| e.kind == Kind::ProcessExit)
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
        let p = one(&g).process.unwrap();
        assert_eq!(p.argv.unwrap(), vec!["/bin/sh", "-c", "exit 7"]);
        assert!(!p.argv_truncated);
        let mut g = groups()[&24].clone();
        g.records.retain(|r| r.rtype != types::EXECVE);
        let p = one(&g).process.unwrap();
        assert!(p.argv_truncated); // 128-byte title
        g.records.retain(|r| r.rtype != types::PROCTITLE);
        let p = one(&g).process.unwrap();
        assert_eq!(p.argv, None);
        assert!(p.incomplete.contains(&"argv"));
    }
}
