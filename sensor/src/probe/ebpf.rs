//! The eBPF rung's checks (thin, kernel-facing, except the pure parsers): BTF, the bpf()
//! syscall, ring buffer maps, tracefs and kernel lockdown.
use std::fs;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::error::ProbeError;

const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const LOCKDOWN: &str = "/sys/kernel/security/lockdown";
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
const SCHED_EXEC_EVENT: &str = "events/sched/sched_process_exec";

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;

pub(super) fn check_btf() -> Result<String, ProbeError> {
    let path = Path::new(BTF_VMLINUX);
    let mut f = fs::File::open(path).map_err(|e| ProbeError::io("open", path, e))?;
    let mut magic = [0u8; 2];
    f.read_exact(&mut magic)
        .map_err(|e| ProbeError::io("read", path, e))?;
    // BTF magic 0xEB9F in the file's (= host's) byte order.
    if u16::from_ne_bytes(magic) != 0xEB9F {
        return Err(ProbeError::Malformed {
            what: "BTF",
            message: format!("{BTF_VMLINUX} does not start with the BTF magic"),
        });
    }
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(format!("{BTF_VMLINUX} readable ({size} bytes)"))
}

/// `union bpf_attr` prefix for BPF_MAP_CREATE, zero-padded to 72 bytes.
#[repr(C)]
#[derive(Default)]
struct BpfMapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    _rest: [u32; 13],
}

/// `bpf(BPF_MAP_CREATE, ...)`; returns the map fd or the errno.
fn bpf_map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
) -> Result<OwnedFd, i32> {
    let attr = BpfMapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        ..Default::default()
    };
    // SAFETY: attr is a fully initialised, zero-padded repr(C) struct that
    // outlives the call; the size passed is its exact size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const BpfMapCreateAttr,
            std::mem::size_of::<BpfMapCreateAttr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: the kernel returned a new fd that we exclusively own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Extra context for a failed map creation (does not influence decisions).
fn map_create_hint(errno: i32) -> String {
    match errno {
        libc::EPERM => {
            let mut hint = String::new();
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                hint.push_str(" (not root: needs CAP_BPF/CAP_SYS_ADMIN)");
            } else {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: valid pointer to an rlimit.
                let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
                if rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY {
                    hint.push_str(&format!(
                        " (RLIMIT_MEMLOCK is {} bytes; kernels that charge BPF maps to it need it raised)",
                        lim.rlim_cur
                    ));
                } else {
                    hint.push_str(" (as root: check LSM policy / lockdown)");
                }
            }
            hint
        }
        _ => String::new(),
    }
}

pub(super) fn check_bpf_syscall() -> Result<String, ProbeError> {
    match bpf_map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1) {
        Ok(fd) => {
            drop(fd);
            Ok("bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_ARRAY) ok".to_string())
        }
        Err(errno) => Err(ProbeError::Unavailable(format!(
            "{}{}",
            ProbeError::sys("bpf(BPF_MAP_CREATE)", errno),
            map_create_hint(errno)
        ))),
    }
}

pub(super) fn check_ringbuf() -> Result<String, ProbeError> {
    // Ring buffer size must be a power-of-two multiple of the page size.
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = u32::try_from(page)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096)
        .max(4096);
    match bpf_map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, size) {
        Ok(fd) => {
            drop(fd);
            Ok(format!(
                "bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_RINGBUF, {size} bytes) ok"
            ))
        }
        Err(errno) => {
            let hint = if errno == libc::EINVAL {
                " (ring buffer map type not supported by this kernel)".to_string()
            } else {
                map_create_hint(errno)
            };
            Err(ProbeError::Unavailable(format!(
                "{}{hint}",
                ProbeError::sys("bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_RINGBUF)", errno)
            )))
        }
    }
}

pub(super) fn check_tracefs() -> Result<String, ProbeError> {
    let mut mounted_without_event = None;
    let mut denied = None;
    let mut unreadable = None;
    for root in TRACEFS_ROOTS {
        let event = Path::new(root).join(SCHED_EXEC_EVENT);
        match fs::metadata(&event) {
            Ok(_) => {
                let id = fs::read_to_string(event.join("id"))
                    .ok()
                    .map(|s| format!(" (id {})", s.trim()))
                    .unwrap_or_default();
                return Ok(format!("{}{id}", event.display()));
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                denied.get_or_insert_with(|| ProbeError::io("stat", &event, e).to_string());
            }
            Err(e) => {
                if Path::new(root).join("events").is_dir() {
                    mounted_without_event.get_or_insert_with(|| root.to_string());
                } else if is_mount_of(
                    &fs::read_to_string("/proc/mounts").unwrap_or_default(),
                    root,
                    "tracefs",
                ) {
                    // lockdown=confidentiality leaves tracefs mountable but empty.
                    unreadable.get_or_insert_with(|| {
                        format!(
                            "tracefs is mounted at {root} but {} cannot be read ({e}; kernel lockdown?)",
                            event.display()
                        )
                    });
                }
            }
        }
    }
    if let Some(d) = denied.or(unreadable) {
        return Err(ProbeError::Unavailable(d));
    }
    if let Some(root) = mounted_without_event {
        return Err(ProbeError::Unavailable(format!(
            "tracefs mounted at {root} but {SCHED_EXEC_EVENT} is missing"
        )));
    }
    let supported = fs::read_to_string("/proc/filesystems")
        .map(|t| t.split_whitespace().any(|w| w == "tracefs"))
        .unwrap_or(true);
    if !supported {
        return Err(ProbeError::Unavailable(
            "tracefs not supported by this kernel (absent from /proc/filesystems)".to_string(),
        ));
    }
    Err(ProbeError::Unavailable(
        "tracefs not mounted (mount -t tracefs tracefs /sys/kernel/tracing)".to_string(),
    ))
}

/// Whether `/proc/mounts` text lists a mount of type `fstype` at `path`.
pub fn is_mount_of(mounts: &str, path: &str, fstype: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace().skip(1);
        f.next() == Some(path) && f.next() == Some(fstype)
    })
}

pub(super) fn read_lockdown() -> Option<String> {
    let text = fs::read_to_string(LOCKDOWN).ok()?;
    let parsed = parse_lockdown(&text);
    if parsed.is_none() {
        tracing::warn!(text = text.trim(), "unrecognised {LOCKDOWN} contents");
    }
    parsed
}

/// Extract the active (bracketed) value of `/sys/kernel/security/lockdown`,
/// e.g. `"none [integrity] confidentiality"` -> `Some("integrity")`.
pub fn parse_lockdown(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let rest = &text[start + 1..];
    let end = rest.find(']')?;
    let value = rest[..end].trim();
    if value.is_empty() {
        None
    } else {
        Some(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_mount_of_matches_path_and_type() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
                  tracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n\
                  debugfs /sys/kernel/debug debugfs rw 0 0\n";
        assert!(is_mount_of(mounts, "/sys/kernel/tracing", "tracefs"));
        assert!(!is_mount_of(mounts, "/sys/kernel/debug/tracing", "tracefs"));
        assert!(!is_mount_of(mounts, "/sys/kernel/debug", "tracefs"));
        assert!(!is_mount_of("", "/sys/kernel/tracing", "tracefs"));
    }

    #[test]
    fn lockdown_parsing() {
        assert_eq!(
            parse_lockdown("none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
        assert_eq!(
            parse_lockdown("[none] integrity confidentiality\n").as_deref(),
            Some("none")
        );
        assert_eq!(
            parse_lockdown("none integrity [confidentiality]").as_deref(),
            Some("confidentiality")
        );
        assert_eq!(parse_lockdown(""), None);
        assert_eq!(parse_lockdown("none integrity"), None);
        assert_eq!(parse_lockdown("[unterminated"), None);
        assert_eq!(parse_lockdown("[]"), None);
    }
}
