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
//!   None, `start_boottime_ns` 0, the start time None (JSON `start_time` ""), `cgroup_id` 0;
//!   `start_time` and `cgroup_id` are listed in `incomplete` until the process cache fills
//!   them from the exec's /proc read (`enrich/cache`). ANOM_ABEND also lacks ppid, euid, egid and tty
//!   (listed in `incomplete`; ids set to 4294967295, ppid 0).
//! - Time is the audit timestamp (wall clock, millisecond resolution); `ktime_ns` is None.
//! - exe/cwd/argv are only set on exec events, as in eBPF mode, although SYSCALL has `exe=`.
use std::collections::HashMap;

use thiserror::Error;

use super::{
    assemble::Group,
    record::{dec, hex_u64, types, Record},
};
use crate::{
    escape::escape_bytes,
    event::{Argv, Connect, Event, Exit, Kind, Process, Source},
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
    to_events_bounded(group, host, sock_type, crate::sources::argv::DEFAULT_BOUND)
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
    try_to_events_bounded(group, host, sock_type, crate::sources::argv::DEFAULT_BOUND)
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
    let [arch, nr, success] = sys.get_many(["arch", "syscall", "success"]);
    let arch = hex_u64(arch).ok_or(field("arch"))?;
    let nr = dec::<u64>(nr).ok_or(field("syscall"))?;
    match call(arch, nr) {
        Call::Exec => {
            if success != Some(b"yes") {
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
    login_value(r.get(key))
}

fn login_value(v: Option<&[u8]>) -> Option<u32> {
    dec::<u32>(v).filter(|&v| v != u32::MAX)
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
        incomplete: vec!["start_time".into(), "cgroup_id".into()],
        ..Process::default()
    }
}

/// Process fields from a SYSCALL record (its fields are looked up in one pass).
pub(crate) fn process(sys: &Record) -> Result<Process, NormalizeError> {
    let [pid, ppid, uid, euid, gid, egid, auid, ses, tty, comm] = sys.get_many([
        "pid", "ppid", "uid", "euid", "gid", "egid", "auid", "ses", "tty", "comm",
    ]);
    let pid = dec::<u32>(pid).ok_or(NormalizeError::Field {
        rtype: sys.rtype,
        field: "pid",
    })?;
    let mut p = audit_process(pid);
    let mut id = |key: &'static str, v: Option<&[u8]>, unknown: u32| -> u32 {
        dec::<u32>(v).unwrap_or_else(|| {
            p.incomplete.push(key.to_string());
            unknown
        })
    };
    let ppid = id("ppid", ppid, 0);
    let uid = id("uid", uid, u32::MAX);
    let euid = id("euid", euid, u32::MAX);
    let gid = id("gid", gid, u32::MAX);
    let egid = id("egid", egid, u32::MAX);
    (p.ppid, p.uid, p.euid, p.gid, p.egid) = (ppid, uid, euid, gid, egid);
    p.auid = login_value(auid);
    p.session = login_value(ses);
    p.tty = tty_name(tty);
    p.comm = escape_bytes(comm.unwrap_or_default());
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
        None => p.incomplete.push("cwd".into()),
    }
    let item0 = group
        .all(types::PATH)
        .find(|r| r.get("item") == Some(b"0"))
        .and_then(|r| r.get("name"))
        .filter(|n| !n.is_empty() && *n != b"(null)");
    // exe: the binary actually executed (SYSCALL exe=, symlinks resolved), as eBPF reports it
    // from mm->exe_file; filename: the path handed to execve (PATH item 0), as given.
    p.filename = item0.map(escape_bytes);
    let exe = sys.get("exe");
    p.exe = match (exe, item0) {
        (Some(exe), _) if !exe.is_empty() && exe != b"(null)" => Some(escape_bytes(exe)),
        (_, Some(name)) => {
            p.incomplete.push("exe".into());
            Some(escape_bytes(&resolve_exe(name, cwd.unwrap_or_default())))
        }
        _ => {
            p.incomplete.push("exe".into());
            None
        }
    };
    // The kernel's d_path marks a deleted file, or a memfd, this way.
    p.exe_deleted = exe.is_some_and(|e| e.ends_with(b" (deleted)"));
    let argv = argv_from_execve(group).or_else(|| {
        let title = group.first(types::PROCTITLE)?.get("proctitle")?;
        // The kernel keeps 128 bytes of the title: a full one was probably cut.
        Some((split_nul(title), title.len() >= 128))
    });
    match argv {
        Some((args, truncated)) => {
            let (args, omitted, capped) = crate::sources::argv::bound_list(args, argv_bound);
            p.argv = Some(Argv {
                args: args.iter().map(|a| escape_bytes(a)).collect(),
                truncated: truncated || capped,
                omitted_bytes: omitted as u64,
            });
        }
        None => p.incomplete.push("argv".into()),
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
        family: family.to_string(),
        protocol: protocol(sock_type(p.pid, fd)),
        dst_addr,
        dst_port: u32::from(dst_port),
        result: connect_result(ret).to_string(),
        errno: -ret.min(0),
        // Audit records carry the destination only.
        src_addr: None,
        src_port: None,
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
    p.incomplete
        .extend(["ppid", "euid", "egid", "tty"].map(String::from));
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
mod tests;
