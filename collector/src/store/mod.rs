//! SQLite storage: schema, the single writer thread (group commit, ack after commit) and
//! read-only queries.
//!
//! Durability: the database runs in WAL mode. With `synchronous = FULL` (the default) every
//! commit fsyncs the WAL before the writer replies, so an acknowledged batch survives power
//! loss. `synchronous = NORMAL` skips that fsync: a collector crash loses nothing, power loss
//! may lose the last commits although they were acknowledged.
pub mod checkpoint;
pub mod query;
pub mod row;
pub mod schema;
pub mod writer;
pub mod writer_lock;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create database directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database {0} does not exist")]
    Missing(PathBuf),
    #[error("stored event {id} is corrupt: {source}")]
    Corrupt {
        id: i64,
        #[source]
        source: prost::DecodeError,
    },
    #[error("database writer lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database {0} has another writer (another collector, or the previous one still stopping)"
    )]
    Busy(PathBuf),
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("storing the batch failed: {0}")]
    Commit(String),
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "normal" => Some(Self::Normal),
            _ => None,
        }
    }
}

/// A database opened for writing, and the lock that makes this its only writer.
pub struct WriteStore {
    pub conn: rusqlite::Connection,
    pub lock: writer_lock::WriterLock,
}

/// Opens (creating when missing) the database for writing and brings the schema up to date.
/// Waits first (up to [`writer_lock::WAIT`]) until no other writer holds the file.
pub fn open_rw(path: &Path, sync: Synchronous) -> Result<WriteStore, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let lock = writer_lock::WriterLock::acquire(path, writer_lock::WAIT)?;
    let conn = rusqlite::Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    schema::prepare(&conn, sync).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(WriteStore { conn, lock })
}

/// Opens an existing database read-only (queries; works while the collector runs).
pub fn open_ro(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}
