//! Local mode: the collector on the same host, over a Unix domain socket (`unix:/path`).
//! Before a byte is sent the sensor checks that the socket is one only root can have made
//! and reached: the socket is owned by root (or by the sensor's own uid, for tests run by
//! one user) with no access for group or others, its directory likewise, and the process
//! listening on it is root by SO_PEERCRED. A user who plants a socket (or a symlink) where
//! the collector's should be receives nothing.
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {source}")]
    Stat {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a socket (a symlink or a file?); refusing to send events there")]
    NotSocket { path: String },
    #[error("{path} is owned by uid {uid}, not root; refusing to send events there")]
    Owner { path: String, uid: u32 },
    #[error("{path} has mode {mode:o}: group or others can use it; refusing to send events there")]
    Mode { path: String, mode: u32 },
    #[error(
        "the process listening on {path} is uid {uid}, not root; refusing to send events there"
    )]
    PeerNotRoot { path: String, uid: u32 },
    #[error("connect {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl From<LocalError> for io::Error {
    fn from(e: LocalError) -> io::Error {
        let kind = match &e {
            LocalError::Connect { source, .. } | LocalError::Stat { source, .. } => source.kind(),
            _ => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}

fn allowed_uid(uid: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// What a socket path's metadata must show: a socket (the path itself, not a symlink to
/// one), owned by an allowed uid, no permission bits for group or others.
pub fn check_meta(
    path: &Path,
    is_socket: bool,
    uid: u32,
    mode: u32,
    want_socket: bool,
) -> Result<(), LocalError> {
    let p = path.display().to_string();
    if want_socket && !is_socket {
        return Err(LocalError::NotSocket { path: p });
    }
    if !allowed_uid(uid) {
        return Err(LocalError::Owner { path: p, uid });
    }
    if mode & 0o077 != 0 {
        return Err(LocalError::Mode {
            path: p,
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Checks the socket and its directory on disk.
pub fn check_socket(path: &Path) -> Result<(), LocalError> {
    let stat = |p: &Path| {
        std::fs::symlink_metadata(p).map_err(|source| LocalError::Stat {
            path: p.display().to_string(),
            source,
        })
    };
    let md = stat(path)?;
    check_meta(path, md.file_type().is_socket(), md.uid(), md.mode(), true)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let d = stat(dir)?;
    if !d.is_dir() {
        return Err(LocalError::NotSocket {
            path: dir.display().to_string(),
        });
    }
    check_meta(dir, true, d.uid(), d.mode(), false)
}

/// Connects after [`check_socket`], then checks the listener's credentials.
pub async fn connect(path: PathBuf) -> Result<UnixStream, LocalError> {
    check_socket(&path)?;
    let p = path.display().to_string();
    let s = UnixStream::connect(&path)
        .await
        .map_err(|source| LocalError::Connect {
            path: p.clone(),
            source,
        })?;
    let cred = s.peer_cred().map_err(|source| LocalError::Connect {
        path: p.clone(),
        source,
    })?;
    if !allowed_uid(cred.uid()) {
        return Err(LocalError::PeerNotRoot {
            path: p,
            uid: cred.uid(),
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_private_root_socket_passes() {
        let p = Path::new("/run/x/c.sock");
        check_meta(p, true, 0, 0o140600, true).unwrap();
        assert!(matches!(
            check_meta(p, false, 0, 0o100600, true),
            Err(LocalError::NotSocket { .. })
        ));
        assert!(matches!(
            check_meta(p, true, 65534, 0o140600, true),
            Err(LocalError::Owner { uid: 65534, .. })
        ));
        assert!(matches!(
            check_meta(p, true, 0, 0o140666, true),
            Err(LocalError::Mode { .. })
        ));
        // The directory: no socket needed, same owner and mode rules.
        check_meta(Path::new("/run/x"), true, 0, 0o40700, false).unwrap();
        assert!(check_meta(Path::new("/run/x"), true, 0, 0o41777, false).is_err());
    }

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let e = check_socket(Path::new("/nonexistent-dir-xyz/c.sock")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir-xyz/c.sock"), "{e}");
    }
}
