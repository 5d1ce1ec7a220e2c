//! The WAL checkpointer: a thread with its own connection that copies committed WAL frames
//! into the database file, so the writer thread (which acknowledges batches) does not spend
//! its time on it. The writer keeps a large `wal_autocheckpoint` as a safety net only
//! (see `docs/ARCHITECTURE.md#collector`).
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

/// How often the checkpointer copies what has been committed.
pub const INTERVAL: Duration = Duration::from_millis(200);
/// WAL pages after which the writer checkpoints itself (the checkpointer fell behind).
pub const WRITER_FALLBACK_PAGES: i64 = 65_536;

/// Stops and joins the thread when dropped.
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path` with the writer's `synchronous` setting (`writer`), and
    /// sets the writer's fallback threshold.
    pub fn start(path: &Path, writer: &Connection) -> rusqlite::Result<Checkpointer> {
        let sync: i64 = writer.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        writer.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {WRITER_FALLBACK_PAGES};"
        ))?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(&format!("PRAGMA synchronous = {sync};"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(INTERVAL);
                    // PASSIVE never blocks the writer; what it cannot copy now, the next
                    // pass does.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
