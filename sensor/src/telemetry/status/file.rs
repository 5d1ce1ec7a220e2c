//! Reading and writing the status file, and checking the process that wrote it.
use std::path::Path;

use super::{snapshot::Status, StatusError};

/// Writes `status` to `path` atomically (temporary file in the same directory, then rename),
/// creating the directory if needed. The file is readable by everyone: it holds counters and
/// the capture mode, nothing from events.
pub fn write_atomic(path: &Path, status: &Status) -> Result<(), StatusError> {
    let mut body = serde_json::to_vec_pretty(status).map_err(|e| StatusError::Write {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    body.push(b'\n');
    write_bytes_atomic(path, &body)
}

/// Replaces `path` with `body` atomically: a new `<name>.tmp` beside it (created with
/// O_EXCL and O_NOFOLLOW after removing a stale one, so a planted symlink is never followed),
/// mode 0644, then renamed over `path` (rename replaces a symlink at `path`, never its
/// target). Creates the directory if needed. Used for the status file and the Prometheus
/// textfile.
pub fn write_bytes_atomic(path: &Path, body: &[u8]) -> Result<(), StatusError> {
    let err = |source| StatusError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Created 0755 if missing; refused if another user owns it or could rename the
        // file in it (a sticky directory such as /tmp is fine: see write_atomic).
        crate::safefs::ensure_parent(dir).map_err(|e| err(e.into_io()))?;
    }
    // `<path>.tmp` is created O_EXCL | O_NOFOLLOW (a stale one removed first), the mode set on
    // the open file whatever the umask (world-readable: `sensor status` and node_exporter work
    // for any user), then renamed over `path`: a link planted at either name redirects nothing.
    crate::safefs::write_atomic(path, body, 0o644).map_err(|e| err(e.into_io()))
}

pub fn read(path: &Path) -> Result<Status, StatusError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StatusError::Missing {
                path: path.display().to_string(),
            })
        }
        Err(source) => {
            return Err(StatusError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    serde_json::from_str(&text).map_err(|source| StatusError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// Removes the status file at a clean exit (a missing file is fine).
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the status file")
        }
    }
}

/// The start time of `pid` now (clock ticks since boot), or None when no such process exists.
pub fn live_start_ticks(pid: u32) -> Option<u64> {
    crate::enrich::procfs::read_stat(Path::new("/proc"), pid)
        .ok()
        .map(|s| s.start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_live() {
        let me = std::process::id();
        assert!(live_start_ticks(me).is_some());
        assert_eq!(live_start_ticks(u32::MAX), None);
    }

    #[test]
    fn write_read_remove_round_trip() {
        let dir = std::env::temp_dir().join(format!("sensor-status-test-{}", std::process::id()));
        let path = dir.join("sub").join("status.json");
        let s = Status {
            pid: 7,
            mode: "ebpf".into(),
            ..Status::default()
        };
        write_atomic(&path, &s).unwrap();
        assert_eq!(read(&path).unwrap(), s);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(!path.with_extension("json.tmp").exists());
        remove(&path);
        assert!(matches!(read(&path), Err(StatusError::Missing { .. })));
        std::fs::write(&path, "{not json").unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_replaces_symlinks_without_following_them() {
        let dir = std::env::temp_dir().join(format!("sensor-prom-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = dir.join("sensor.prom");
        // A symlink planted at the temporary name and at the final name.
        std::os::unix::fs::symlink(&victim, dir.join("sensor.prom.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_bytes_atomic(&path, b"sensor_up 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "sensor_up 1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
