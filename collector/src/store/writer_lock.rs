//! One writer per database file: the writer's ids come from a counter it loads when it
//! starts, so a second writer on the same file (another `collector serve`, or the previous
//! one in the same process still finishing its last commit) would hand out ids already in
//! use. The writer holds an exclusive lock on `<database>-writer` from before the schema
//! is touched until its thread has closed the connection (see
//! `docs/ARCHITECTURE.md#collector`).
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::StoreError;

/// How long opening a database for writing waits for the previous writer to stop.
pub const WAIT: Duration = Duration::from_secs(30);

/// Held while a writer may write; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// The lock file next to `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-writer");
    PathBuf::from(p)
}

impl WriterLock {
    /// Takes the lock of `db`, waiting up to `wait` for the writer that holds it.
    pub fn acquire(db: &Path, wait: Duration) -> Result<WriterLock, StoreError> {
        let path = lock_path(db);
        let err = |source| StoreError::Lock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(err)?;
        let deadline = Instant::now() + wait;
        let mut logged = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(WriterLock { _file: file }),
                Err(TryLockError::Error(e)) => return Err(err(e)),
                Err(TryLockError::WouldBlock) if Instant::now() >= deadline => {
                    return Err(StoreError::Busy(db.to_path_buf()));
                }
                Err(TryLockError::WouldBlock) => {
                    if !logged {
                        tracing::info!(db = %db.display(), "waiting for the previous writer to stop");
                        logged = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_waits_for_the_first() {
        let dir = std::env::temp_dir().join(format!("writer-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("e.db");
        let first = WriterLock::acquire(&db, WAIT).unwrap();
        let t = Instant::now();
        assert!(matches!(
            WriterLock::acquire(&db, Duration::from_millis(100)),
            Err(StoreError::Busy(_))
        ));
        assert!(t.elapsed() >= Duration::from_millis(100));
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        let t = Instant::now();
        let second = WriterLock::acquire(&db, WAIT).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(150));
        releaser.join().unwrap();
        drop(second);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
