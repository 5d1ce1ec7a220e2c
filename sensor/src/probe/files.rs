//! The file capture checks (thin): whether fanotify can be initialised, with FID reporting
//! and in plain fd mode.
use std::os::fd::{FromRawFd, OwnedFd};

use super::error::ProbeError;

pub(super) fn fanotify_probe(flags: libc::c_uint, call: &str) -> Result<String, ProbeError> {
    // SAFETY: fanotify_init takes plain integer flags.
    let fd = unsafe { libc::fanotify_init(flags, libc::O_RDONLY as libc::c_uint) };
    if fd < 0 {
        return Err(ProbeError::last_os(call));
    }
    // SAFETY: fresh fd that we exclusively own; closed on drop.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(format!("{call} ok"))
}
