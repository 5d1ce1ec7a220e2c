//! The probe's error type and errno names ("EPERM from bpf(BPF_MAP_CREATE)").
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::sources::audit::status::StatusError;

/// Errors of the probe module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// A syscall failed; displays as e.g. "EPERM from bpf(BPF_MAP_CREATE)".
    #[error("{} from {call}", errno_name(*errno))]
    Sys { call: String, errno: i32 },
    /// A non-OS I/O error (e.g. invalid UTF-8 in a sysfs file).
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// The AUDIT_GET reply was not a valid `audit_status` datagram.
    #[error(transparent)]
    AuditReply(StatusError),
    /// A file did not have the expected format.
    #[error("malformed {what}: {message}")]
    Malformed { what: &'static str, message: String },
    /// The kernel did not answer in time.
    #[error("no {what} reply within {} ms", timeout.as_millis())]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    /// A feature is simply not present (with a hint how to get it).
    #[error("{0}")]
    Unavailable(String),
    /// `--mode` value not recognised.
    #[error("unknown mode {0:?} (expected auto, ebpf or audit)")]
    UnknownMode(String),
}

impl ProbeError {
    pub(super) fn sys(call: impl Into<String>, errno: i32) -> Self {
        ProbeError::Sys {
            call: call.into(),
            errno,
        }
    }

    /// The `errno` of the last failed libc call.
    pub(super) fn last_os(call: impl Into<String>) -> Self {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        Self::sys(call, errno)
    }

    pub(super) fn io(call: &str, path: &Path, e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::sys(format!("{call}({})", path.display()), errno),
            None => ProbeError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            },
        }
    }

    /// A failed call that gave an `io::Error` (its OS errno).
    pub(super) fn from_os(call: impl Into<String>, e: &io::Error) -> Self {
        Self::sys(call, e.raw_os_error().unwrap_or(0))
    }

    /// The errno, if this is a syscall failure.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ProbeError::Sys { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl From<StatusError> for ProbeError {
    fn from(e: StatusError) -> Self {
        match e {
            StatusError::Kernel { errno } => ProbeError::sys("netlink AUDIT_GET", errno),
            other => ProbeError::AuditReply(other),
        }
    }
}

/// Symbolic name of an errno value ("EPERM"), or "errno N" if unknown.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOBUFS => "ENOBUFS",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        // Kernel-internal ENOTSUPP, which BPF code paths leak to user space.
        524 => "ENOTSUPP",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(libc::ENOSYS), "ENOSYS");
        assert_eq!(errno_name(libc::EACCES), "EACCES");
        assert_eq!(errno_name(libc::EPROTONOSUPPORT), "EPROTONOSUPPORT");
        assert_eq!(errno_name(524), "ENOTSUPP");
        assert_eq!(errno_name(99999), "errno 99999");
        assert_eq!(
            ProbeError::sys("bpf(BPF_MAP_CREATE)", libc::EPERM).to_string(),
            "EPERM from bpf(BPF_MAP_CREATE)"
        );
    }
}
