//! io_uring operations in audit mode. An io_uring operation never passes through the syscall
//! it replaces, so syscall rules do not see it. Since 5.16 the kernel has an io_uring filter
//! list (`AUDIT_FILTER_URING_EXIT`) whose rules select operations by opcode and log a
//! `URINGOP` record. Debian's auditctl does not know that list; the sensor builds the rule
//! itself. Only connect is asked for: file operations through io_uring are seen by fanotify.
//!
//! An operation issued inline from `io_uring_enter` shares that call's event: the group holds
//! the `io_uring_enter` SYSCALL record (process details), a `SOCKADDR` (the destination, copied
//! when the request was prepared) and one `URINGOP` per attempt (a non-blocking attempt that
//! returned EAGAIN, then the real one).
use super::assemble::Group;
use super::normalize::{base, connect_parts, process, NormalizeError};
use super::record::Record;
use super::rules::{Rule, AUDIT_ALWAYS};
use crate::event::{Connect, Event, Kind};

/// `AUDIT_FILTER_URING_EXIT` (include/uapi/linux/audit.h, 5.16+).
pub const AUDIT_FILTER_URING_EXIT: u32 = 0x07;
/// `AUDIT_URINGOP` record type.
pub const URINGOP: u16 = 1336;
/// `IORING_OP_CONNECT`.
pub const IORING_OP_CONNECT: u32 = 16;
const EAGAIN: i32 = 11;

/// `-a always,uring -S connect -k <key>` (the uring list takes opcodes where the exit list
/// takes syscall numbers, and no arch field).
pub fn connect_rule(key: &str) -> Rule {
    Rule {
        flags: AUDIT_FILTER_URING_EXIT,
        action: AUDIT_ALWAYS,
        syscalls: vec![IORING_OP_CONNECT],
        fields: Vec::new(),
        key: Some(key.to_string()),
    }
}

/// What a kernel without the io_uring filter list leaves unseen.
pub const BLIND_SPOT: &str = "io_uring connects are not audited (the kernel has no io_uring \
                              audit filter, 5.16+)";

/// The last URINGOP of a connect in `group` that is not a non-blocking retry (EAGAIN), and
/// whether a non-blocking attempt (EAGAIN) came before it.
fn final_connect_op(group: &Group) -> Option<(&Record, bool)> {
    let ops: Vec<&Record> = group
        .all(URINGOP)
        .filter(|r| r.get_dec::<u32>("uring_op") == Some(IORING_OP_CONNECT))
        .collect();
    let waited = ops
        .iter()
        .any(|r| r.get_dec::<i32>("exit") == Some(-EAGAIN));
    ops.iter()
        .rev()
        .find(|r| r.get_dec::<i32>("exit") != Some(-EAGAIN))
        .or(ops.last())
        .map(|r| (*r, waited))
}

/// The result of an audited io_uring connect. After a non-blocking attempt (EAGAIN) the
/// kernel re-issues the connect once the socket is ready; that issue returns 0 whether the
/// connection was made or refused, and the real outcome goes only to the completion, which
/// audit does not record. So 0 after EAGAIN is `in_progress` (started, outcome unknown),
/// never `success`; an error the issue returned is real.
fn uring_connect_result(ret: i32, waited: bool) -> &'static str {
    if ret == 0 && waited {
        return "in_progress";
    }
    crate::sources::kernel_values::connect_result(ret)
}

/// A `net_connect` for an io_uring connect in `group`, if there is one.
pub fn connect_event(group: &Group, host: &str) -> Result<Option<Event>, NormalizeError> {
    let Some((op, waited)) = final_connect_op(group) else {
        return Ok(None);
    };
    let Some((family, protocol_addr, port)) = connect_parts(group)? else {
        return Ok(None);
    };
    let ret = op
        .get_dec::<i64>("exit")
        .and_then(|v| i32::try_from(v).ok())
        .ok_or(NormalizeError::Field {
            rtype: URINGOP,
            field: "exit",
        })?;
    // The io_uring_enter SYSCALL record, when the operation ran inline, names the process;
    // a worker's URINGOP alone has the ids but no comm.
    let sys = group
        .first(super::record::types::SYSCALL)
        .filter(|s| s.get("pid") == op.get("pid"));
    let p = process(sys.unwrap_or(op))?;
    let mut ev = base(Kind::NetConnect, group, host);
    ev.connect = Some(Connect {
        family: family.to_string(),
        // The socket's fd is not in the records: its type is unknown.
        protocol: crate::sources::kernel_values::protocol(0),
        dst_addr: protocol_addr,
        dst_port: u32::from(port),
        result: uring_connect_result(ret, waited).to_string(),
        errno: -ret.min(0),
        src_addr: None,
        src_port: None,
    });
    ev.process = Some(p);
    Ok(Some(ev))
}

#[cfg(test)]
mod tests {
    use super::super::record::parse;
    use super::*;

    fn group(lines: &[(u16, &str)]) -> Group {
        Group {
            serial: 9,
            time_ms: 1_796_532_385_788,
            records: lines
                .iter()
                .map(|(t, l)| parse(*t, l.as_bytes()).unwrap())
                .collect(),
            complete: true,
            truncated: false,
        }
    }

    /// Records as this host's 6.18 kernel wrote them for an inline IORING_OP_CONNECT (to a
    /// listening port; a closed port gives the same records): EAGAIN, then 0 once the socket
    /// was ready, which says nothing of the outcome.
    #[test]
    fn inline_connect_is_a_net_connect() {
        let g = group(&[
            (URINGOP, "audit(1796532385.788:9): uring_op=16 success=no exit=-11 items=0 ppid=27183 pid=27185 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0"),
            (URINGOP, "audit(1796532385.788:9): uring_op=16 success=yes exit=0 items=0 ppid=27183 pid=27185 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0"),
            (1300, "audit(1796532385.788:9): arch=c000003e syscall=426 success=yes exit=1 a0=3 a1=1 a2=1 a3=1 items=0 ppid=27183 pid=27185 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"attacks\" exe=\"/tmp/attacks\""),
            (1306, "audit(1796532385.788:9): saddr=0200D5B97F000001"),
        ]);
        let ev = connect_event(&g, "h").unwrap().unwrap();
        let c = ev.msg.connect.unwrap();
        assert_eq!(
            (
                c.family.as_str(),
                c.dst_addr.as_str(),
                c.dst_port,
                c.result.as_str()
            ),
            ("ipv4", "127.0.0.1", 54713, "in_progress")
        );
        let p = ev.msg.process.unwrap();
        assert_eq!((p.pid, p.ppid, p.comm.as_str()), (27185, 27183, "attacks"));
    }

    #[test]
    fn a_connect_that_returned_at_once_keeps_its_result() {
        let g = group(&[
            (URINGOP, "audit(1796532385.788:9): uring_op=16 success=yes exit=0 items=0 ppid=1 pid=7 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0"),
            (1306, "audit(1796532385.788:9): saddr=0200D5B97F000001"),
        ]);
        let c = connect_event(&g, "h")
            .unwrap()
            .unwrap()
            .msg
            .connect
            .unwrap();
        assert_eq!(c.result.as_str(), "success");
    }

    #[test]
    fn worker_connect_without_syscall_record_and_refused() {
        let g = group(&[
            (URINGOP, "audit(1796532385.788:9): uring_op=16 success=no exit=-111 items=0 ppid=1 pid=7 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000"),
            (1306, "audit(1796532385.788:9): saddr=0A000050000000000000000000000000000000000000000100000000"),
        ]);
        let ev = connect_event(&g, "h").unwrap().unwrap();
        let c = ev.msg.connect.unwrap();
        assert_eq!(
            (
                c.family.as_str(),
                c.dst_addr.as_str(),
                c.dst_port,
                c.result.as_str(),
                c.errno
            ),
            ("ipv6", "::1", 80, "refused", 111)
        );
        assert_eq!(ev.msg.process.unwrap().uid, 1000);
    }

    #[test]
    fn other_ops_and_plain_groups_give_nothing() {
        let g = group(&[(URINGOP, "audit(1796532385.796:10): uring_op=18 success=yes exit=0 items=0 ppid=1 pid=7 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0")]);
        assert!(connect_event(&g, "h").unwrap().is_none());
    }

    #[test]
    fn rule_round_trips_on_the_uring_list() {
        let r = connect_rule("sensor");
        let parsed = Rule::parse(&r.to_bytes()).unwrap();
        assert_eq!(parsed.flags, AUDIT_FILTER_URING_EXIT);
        assert_eq!(parsed.syscalls, vec![IORING_OP_CONNECT]);
        assert_eq!(parsed.key.as_deref(), Some("sensor"));
    }
}
