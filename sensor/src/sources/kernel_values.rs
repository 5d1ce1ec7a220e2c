//! Kernel values that both capture paths (eBPF records and audit records) turn into event
//! fields: tty names, wait statuses, connect results, socket types, addresses, relative exe
//! paths and the credential syscalls by arch. Pure functions; neither source imports the
//! other (see docs/ARCHITECTURE.md).
use sensor_common::CONNECT_RET_UNKNOWN;

use crate::escape::{escape_bytes, until_nul};
use crate::event::Exit;

const AF_INET: u16 = 2;

/// Kernel tty names are `pts3`/`tty1`; users know them as `pts/3`.
pub fn tty_name(raw: &[u8]) -> Option<String> {
    let name = until_nul(raw);
    if name.is_empty() {
        return None;
    }
    let text = escape_bytes(name);
    Some(match text.strip_prefix("pts") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => format!("pts/{n}"),
        _ => text,
    })
}

/// The executed path made absolute against the cwd when the caller gave a relative one.
pub fn resolve_exe(filename: &[u8], cwd: &[u8]) -> Vec<u8> {
    if filename.starts_with(b"/") || cwd.is_empty() {
        return filename.to_vec();
    }
    let rel = filename.strip_prefix(b"./").unwrap_or(filename);
    let mut out = cwd.to_vec();
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(rel);
    out
}

/// Splits a wait(2) status into exit code or terminating signal.
pub fn exit_status(status: u32) -> Exit {
    let signal = status & 0x7f;
    if signal == 0 {
        Exit {
            code: Some(((status >> 8) & 0xff) as i32),
            signal: None,
            core_dumped: false,
        }
    } else {
        Exit {
            code: None,
            signal: Some(signal as i32),
            core_dumped: status & 0x80 != 0,
        }
    }
}

/// The kernel's restart codes (`include/linux/errno.h`; never seen by user space): a call
/// interrupted by a signal returns one of them through its syscall exit, where both capture
/// paths read the return value, and the signal code then turns it into `EINTR` or restarts the
/// call. ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK.
const KERNEL_RESTART_CODES: [i32; 4] = [512, 513, 514, 516];

/// The result of a connect: `attempted` when it was seen before it was made (ia32 and io_uring
/// connects, at the cgroup connect hook); `interrupted` when a signal ended the call before the
/// connection's outcome was known (a TCP handshake goes on in the kernel, and a restarted or
/// later call reports it).
pub fn connect_result(ret: i32) -> &'static str {
    if ret == CONNECT_RET_UNKNOWN {
        return "attempted";
    }
    match -ret {
        0 => "success",
        libc::EINPROGRESS | libc::EALREADY | libc::EAGAIN => "in_progress",
        libc::ECONNREFUSED => "refused",
        libc::ETIMEDOUT => "timeout",
        libc::ENETUNREACH | libc::EHOSTUNREACH => "unreachable",
        libc::EACCES | libc::EPERM => "denied",
        libc::EINTR => "interrupted",
        e if KERNEL_RESTART_CODES.contains(&e) => "interrupted",
        _ => "error",
    }
}

pub fn protocol(sock_type: u16) -> String {
    match i32::from(sock_type) {
        libc::SOCK_STREAM => "tcp".into(),
        libc::SOCK_DGRAM => "udp".into(),
        libc::SOCK_RAW => "raw".into(),
        0 => "unknown".into(),
        other => format!("socktype{other}"),
    }
}

pub fn format_addr(family: u16, addr: &[u8; 16]) -> String {
    match family {
        AF_INET => std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
        _ => std::net::Ipv6Addr::from(*addr).to_string(),
    }
}

pub const ARCH_X86_64: u64 = 0xC000_003E;
pub const ARCH_I386: u64 = 0x4000_0003;

/// execve or execveat, by arch and number.
pub fn is_exec(arch: u64, nr: u64) -> bool {
    matches!((arch, nr), (ARCH_X86_64, 59 | 322) | (ARCH_I386, 11 | 358))
}

/// Credential syscall names by arch and number.
pub fn cred_call(arch: u64, nr: u64) -> Option<&'static str> {
    match (arch, nr) {
        (ARCH_X86_64, 105) | (ARCH_I386, 213) | (ARCH_I386, 23) => Some("setuid"),
        (ARCH_X86_64, 106) | (ARCH_I386, 214) | (ARCH_I386, 46) => Some("setgid"),
        (ARCH_X86_64, 113) | (ARCH_I386, 203) | (ARCH_I386, 70) => Some("setreuid"),
        (ARCH_X86_64, 114) | (ARCH_I386, 204) | (ARCH_I386, 71) => Some("setregid"),
        (ARCH_X86_64, 117) | (ARCH_I386, 208) | (ARCH_I386, 164) => Some("setresuid"),
        (ARCH_X86_64, 119) | (ARCH_I386, 210) | (ARCH_I386, 170) => Some("setresgid"),
        (ARCH_X86_64, 126) | (ARCH_I386, 185) => Some("capset"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_ended_by_a_signal_is_interrupted_not_an_error() {
        for ret in [-4, -512, -513, -514, -516] {
            assert_eq!(connect_result(ret), "interrupted", "{ret}");
        }
        // 515 is ENOIOCTLCMD, not a restart code; other errors stay errors.
        for ret in [-515, -libc::EBADF, -libc::ENOTSOCK, -libc::EISCONN] {
            assert_eq!(connect_result(ret), "error", "{ret}");
        }
        assert_eq!(connect_result(CONNECT_RET_UNKNOWN), "attempted");
        assert_eq!(connect_result(0), "success");
    }

    #[test]
    fn exit_status_decoding() {
        assert_eq!(
            exit_status(0),
            Exit {
                code: Some(0),
                signal: None,
                core_dumped: false
            }
        );
        assert_eq!(
            exit_status(7 << 8),
            Exit {
                code: Some(7),
                signal: None,
                core_dumped: false
            }
        );
        assert_eq!(
            exit_status(9),
            Exit {
                code: None,
                signal: Some(9),
                core_dumped: false
            }
        );
        assert_eq!(
            exit_status(0x80 | 11),
            Exit {
                code: None,
                signal: Some(11),
                core_dumped: true
            }
        );
    }

    #[test]
    fn tty_names() {
        assert_eq!(tty_name(b"pts12\0\0"), Some("pts/12".into()));
        assert_eq!(tty_name(b"tty1\0"), Some("tty1".into()));
        assert_eq!(tty_name(b"\0"), None);
        assert_eq!(tty_name(b"ptsx\0"), Some("ptsx".into()));
    }

    #[test]
    fn cred_calls_by_arch() {
        assert_eq!(cred_call(ARCH_I386, 213), Some("setuid"));
        assert_eq!(cred_call(ARCH_I386, 23), Some("setuid"));
        assert_eq!(cred_call(ARCH_X86_64, 126), Some("capset"));
        assert_eq!(cred_call(ARCH_X86_64, 59), None);
    }
}
