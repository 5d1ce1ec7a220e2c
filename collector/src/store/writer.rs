//! The one writer: a thread that owns the writing connection. Batches from every stream
//! queue here; whatever has queued while the previous commit ran goes into the next
//! transaction (group commit), and each batch's sender is answered only after COMMIT has
//! returned, so an Ack never precedes durability (see the module note in `store`).
//!
//! Rows go into `events_hot` (one index: the dedup key); when no batch has come for
//! [`IDLE_BEFORE_MOVE`], or the hot table holds more than [`HOT_MAX_ROWS`], the writer moves
//! the oldest rows into `events_indexed` in chunks of [`MOVE_CHUNK`]
//! (see `docs/ARCHITECTURE.md#collector`).
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use prost::bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use sensor_proto::v1::{Event, Hello};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::{
    checkpoint::Checkpointer, row::RowBatch, schema::EVENT_COLUMNS, StoreError, WriteStore,
};

/// What happened to one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub stored: u32,
    pub duplicates: u32,
}

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

enum Job {
    Batch {
        sensor_id: String,
        boot_id: String,
        rows: RowBatch,
        received_ns: i64,
        reply: Reply,
    },
    Hello {
        hello: Box<Hello>,
        seen_ns: i64,
    },
}

impl Job {
    fn events(&self) -> usize {
        match self {
            Job::Batch { rows, .. } => rows.len(),
            Job::Hello { .. } => 1,
        }
    }
}

/// Cheap handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on a database opened for writing. The thread keeps the
    /// writer lock until its connection and the checkpointer's are closed.
    pub fn spawn(
        store: WriteStore,
        max_events_per_commit: usize,
        path: PathBuf,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let WriteStore { conn, lock } = store;
        let (tx, rx) = mpsc::channel(1024);
        let checkpointer = Checkpointer::start(&path, &conn).map_err(std::io::Error::other)?;
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                run(conn, rx, max_events_per_commit.max(1), path);
                drop(checkpointer);
                drop(lock);
            })?;
        Ok((Writer { tx }, handle))
    }

    /// Queues a validated batch; the receiver answers once it is committed (or failed).
    /// Waits only for queue space, so a stream can have several batches in flight.
    /// `bodies`, when not empty, holds each event's protobuf bytes as received (one per
    /// event, each decoding to that event); they are stored instead of a new encoding.
    pub async fn submit_batch(
        &self,
        sensor_id: String,
        boot_id: String,
        events: Vec<Event>,
        bodies: Vec<Bytes>,
        received_ns: i64,
    ) -> Result<oneshot::Receiver<Result<Outcome, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        // Here, in the caller's task: the columns, the bodies, and dropping `events`.
        let rows = RowBatch::new(&events, bodies);
        drop(events);
        self.tx
            .send(Job::Batch {
                sensor_id,
                boot_id,
                rows,
                received_ns,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        Ok(rx)
    }

    /// Stores a validated batch; returns once it is committed.
    pub async fn write_batch(
        &self,
        sensor_id: String,
        boot_id: String,
        events: Vec<Event>,
        received_ns: i64,
    ) -> Result<Outcome, StoreError> {
        let rx = self
            .submit_batch(sensor_id, boot_id, events, Vec::new(), received_ns)
            .await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Records (or refreshes) what a sensor said about itself; not waited for.
    pub async fn record_hello(&self, hello: Hello, seen_ns: i64) -> Result<(), StoreError> {
        self.tx
            .send(Job::Hello {
                hello: Box::new(hello),
                seen_ns,
            })
            .await
            .map_err(|_| StoreError::WriterGone)
    }
}

/// How long the queue must have been empty before the writer moves hot rows.
pub const IDLE_BEFORE_MOVE: Duration = Duration::from_millis(50);
/// Rows moved per transaction: a batch that arrives meanwhile waits for one chunk (a few ms).
pub const MOVE_CHUNK: usize = 2_000;
/// Above this many hot rows the writer moves, after every commit, busy or not, at least as
/// many rows as that commit added, so the part of a query that scans `events_hot` stays
/// bounded (by this plus one commit).
pub const HOT_MAX_ROWS: u64 = 1_000_000;

/// What the writer keeps between transactions.
struct State {
    boots: HashMap<(String, String), i64>,
    /// The id the next row gets: ids are unique across both tables and grow with arrival,
    /// so a row keeps its id (and its place in `ORDER BY time_ns, id`) when it moves.
    next_id: i64,
    hot_rows: u64,
}

impl State {
    fn load(conn: &Connection) -> rusqlite::Result<State> {
        let (max_id, hot_rows): (Option<i64>, i64) = conn.query_row(
            // coalesce each: SQLite's max(a, b) is NULL when either is (an empty table), which
            // once restarted the ids at 1 after every row had moved (and the move then
            // dropped the new rows, see docs/ARCHITECTURE.md#collector).
            "SELECT max(coalesce((SELECT max(id) FROM events_indexed), 0), \
             coalesce((SELECT max(id) FROM events_hot), 0)), \
             (SELECT count(*) FROM events_hot)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(State {
            boots: HashMap::new(),
            next_id: max_id.unwrap_or(0) + 1,
            hot_rows: hot_rows as u64,
        })
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, max_events: usize, path: PathBuf) {
    let mut state = match State::load(&conn) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(db = %path.display(), error = %e, "cannot read the event tables");
            return;
        }
    };
    let mut idle_since = Instant::now();
    let mut last_inserted = 0u64;
    loop {
        let first = if state.hot_rows == 0 {
            match rx.blocking_recv() {
                Some(j) => j,
                None => break,
            }
        } else {
            match rx.try_recv() {
                Ok(j) => j,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    if idle_since.elapsed() >= IDLE_BEFORE_MOVE {
                        move_some(&mut conn, &mut state, &path, MOVE_CHUNK);
                    } else {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    continue;
                }
            }
        };
        let mut n = first.events();
        let mut jobs = vec![first];
        while n < max_events {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.events();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        match write_all(&mut conn, &mut state, &jobs) {
            Ok((outcomes, inserted)) => {
                state.hot_rows += inserted;
                last_inserted = inserted;
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    if let Job::Batch { reply, .. } = job {
                        let _ = reply.send(Ok(outcome));
                    }
                }
            }
            Err(e) => {
                // Nothing of this transaction is stored; every sender gets the error and its
                // sensor will resend. Cached ids may belong to rolled-back rows.
                state.boots.clear();
                tracing::error!(db = %path.display(), error = %e, events = n, "commit failed");
                let msg = e.to_string();
                for job in jobs {
                    if let Job::Batch { reply, .. } = job {
                        let _ = reply.send(Err(StoreError::Commit(msg.clone())));
                    }
                }
            }
        }
        if state.hot_rows > HOT_MAX_ROWS {
            // At least as many as just came in, so the hot table stops growing.
            let n = (last_inserted as usize).max(MOVE_CHUNK);
            move_some(&mut conn, &mut state, &path, n);
        }
        idle_since = Instant::now();
    }
    tracing::debug!("storage writer stopped");
}

/// Moves up to `limit` hot rows; on failure the rows stay hot (queries still see them) and
/// the count is read again.
fn move_some(conn: &mut Connection, state: &mut State, path: &std::path::Path, limit: usize) {
    match move_hot(conn, limit) {
        Ok(0) => state.hot_rows = 0,
        Ok(moved) => state.hot_rows = state.hot_rows.saturating_sub(moved as u64),
        Err(e) => {
            tracing::error!(db = %path.display(), error = %e, "moving events into the indexed table failed");
            state.hot_rows = conn
                .query_row("SELECT count(*) FROM events_hot", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .unwrap_or(0);
            // Do not spin on a persistent error: the next batch or idle period retries.
            std::thread::sleep(IDLE_BEFORE_MOVE);
        }
    }
}

/// Moves the `limit` oldest rows of `events_hot` into `events_indexed` in one transaction;
/// returns how many rows left the hot table (0: it was empty).
pub fn move_hot(conn: &mut Connection, limit: usize) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let upto: Option<i64> = tx.query_row(
        "SELECT max(id) FROM (SELECT id FROM events_hot ORDER BY id LIMIT ?1)",
        [limit.min(i64::MAX as usize) as i64],
        |r| r.get(0),
    )?;
    let Some(upto) = upto else {
        return Ok(0);
    };
    // Only the dedup key may conflict (the same event, already indexed: the insert checks,
    // so it cannot happen); any other conflict, an id above all, is an error and rolls the
    // move back, so the hot rows stay.
    tx.prepare_cached(&format!(
        "INSERT INTO events_indexed ({EVENT_COLUMNS}) \
         SELECT {EVENT_COLUMNS} FROM events_hot WHERE id <= ?1 ORDER BY id \
         ON CONFLICT (boot, seq) DO NOTHING"
    ))?
    .execute([upto])?;
    let moved = tx
        .prepare_cached("DELETE FROM events_hot WHERE id <= ?1")?
        .execute([upto])?;
    tx.commit()?;
    Ok(moved)
}

/// Rows per multi-row INSERT: amortizes statement overhead (17 values a row, well under
/// SQLite's 32766 variable limit).
const ROWS_PER_INSERT: usize = 64;

const INSERT_HEAD: &str = "INSERT INTO events_hot (id, boot, seq, time_ns, \
     received_ns, host, kind, source, pid, ppid, uid, auid, user, session, tty, text, body) \
     VALUES ";
const ROW: &str = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
/// Only a resend (the same boot and seq) is skipped; a conflict on anything else (the id)
/// fails the transaction, so its batches are not acknowledged.
const INSERT_TAIL: &str = " ON CONFLICT (boot, seq) DO NOTHING";

fn insert_sql(rows: usize) -> String {
    let mut s =
        String::with_capacity(INSERT_HEAD.len() + rows * (ROW.len() + 1) + INSERT_TAIL.len());
    s.push_str(INSERT_HEAD);
    for i in 0..rows {
        if i > 0 {
            s.push(',');
        }
        s.push_str(ROW);
    }
    s.push_str(INSERT_TAIL);
    s
}

/// Which of `rows` (of one boot) are not in `events_indexed` yet. One range probe per
/// batch; only a batch that overlaps indexed rows (a resend) is checked event by event.
/// Duplicates of hot rows are left to `ON CONFLICT (boot, seq) DO NOTHING` (`events_hot_dedup`).
fn not_indexed(tx: &Connection, boot: i64, rows: &RowBatch) -> rusqlite::Result<Vec<usize>> {
    let all = || (0..rows.len()).collect();
    let (Some(lo), Some(hi)) = (
        rows.rows.iter().map(|r| r.seq).min(),
        rows.rows.iter().map(|r| r.seq).max(),
    ) else {
        return Ok(Vec::new());
    };
    let overlaps: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events_indexed WHERE boot = ?1 AND seq BETWEEN ?2 AND ?3)",
        )?
        .query_row(params![boot, lo as i64, hi as i64], |r| r.get(0))?;
    if !overlaps {
        return Ok(all());
    }
    let mut stmt = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM events_indexed WHERE boot = ?1 AND seq = ?2)",
    )?;
    let mut keep = Vec::with_capacity(rows.len());
    for (i, row) in rows.rows.iter().enumerate() {
        let known: bool = stmt.query_row(params![boot, row.seq as i64], |r| r.get(0))?;
        if !known {
            keep.push(i);
        }
    }
    Ok(keep)
}

/// Inserts the rows of one boot at `keep` (indexes into `rows`) into `events_hot`; returns
/// how many were new (the rest were duplicates).
fn insert_rows(
    tx: &Connection,
    state: &mut State,
    boot: i64,
    received_ns: i64,
    rows: &RowBatch,
    keep: &[usize],
) -> rusqlite::Result<u32> {
    let mut stored = 0u32;
    for chunk in keep.chunks(ROWS_PER_INSERT) {
        let mut stmt = tx.prepare_cached(&insert_sql(chunk.len()))?;
        let mut k = 1;
        for &i in chunk {
            let (row, body) = (&rows.rows[i], &rows.bodies[i]);
            let c = &row.cols;
            stmt.raw_bind_parameter(k, state.next_id)?;
            state.next_id += 1;
            stmt.raw_bind_parameter(k + 1, boot)?;
            stmt.raw_bind_parameter(k + 2, row.seq as i64)?;
            stmt.raw_bind_parameter(k + 3, c.time_ns)?;
            stmt.raw_bind_parameter(k + 4, received_ns)?;
            stmt.raw_bind_parameter(k + 5, rows.str(c.host))?;
            stmt.raw_bind_parameter(k + 6, c.kind)?;
            stmt.raw_bind_parameter(k + 7, c.source)?;
            stmt.raw_bind_parameter(k + 8, c.pid)?;
            stmt.raw_bind_parameter(k + 9, c.ppid)?;
            stmt.raw_bind_parameter(k + 10, c.uid)?;
            stmt.raw_bind_parameter(k + 11, c.auid)?;
            stmt.raw_bind_parameter(k + 12, c.user.map(|s| rows.str(s)))?;
            stmt.raw_bind_parameter(k + 13, c.session)?;
            stmt.raw_bind_parameter(k + 14, c.tty.map(|s| rows.str(s)))?;
            stmt.raw_bind_parameter(k + 15, c.text.map(|s| rows.str(s)))?;
            stmt.raw_bind_parameter(k + 16, &body[..])?;
            k += 17;
        }
        stored += stmt.raw_execute()? as u32;
    }
    Ok(stored)
}

/// One transaction for `jobs`; returns each job's outcome and how many rows went in.
fn write_all(
    conn: &mut Connection,
    state: &mut State,
    jobs: &[Job],
) -> Result<(Vec<Outcome>, u64), rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut inserted = 0u64;
    for job in jobs {
        match job {
            Job::Hello { hello, seen_ns } => {
                upsert_sensor(&tx, hello, *seen_ns)?;
                outcomes.push(Outcome::default());
            }
            Job::Batch {
                sensor_id,
                boot_id,
                rows,
                received_ns,
                ..
            } => {
                let key = (sensor_id.clone(), boot_id.clone());
                let boot = match state.boots.get(&key) {
                    Some(&b) => b,
                    None => {
                        let b = boot_key(&tx, sensor_id, boot_id, *received_ns)?;
                        state.boots.insert(key, b);
                        b
                    }
                };
                let keep = not_indexed(&tx, boot, rows)?;
                let stored = insert_rows(&tx, state, boot, *received_ns, rows, &keep)?;
                inserted += u64::from(stored);
                tx.prepare_cached("UPDATE sensors SET last_seen_ns = ?2 WHERE sensor_id = ?1")?
                    .execute(params![sensor_id, received_ns])?;
                outcomes.push(Outcome {
                    stored,
                    duplicates: rows.len() as u32 - stored,
                });
            }
        }
    }
    tx.commit()?;
    Ok((outcomes, inserted))
}

fn sensor_key(tx: &Connection, sensor_id: &str, seen_ns: i64) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO sensors (sensor_id, first_seen_ns, last_seen_ns) VALUES (?1, ?2, ?2) \
         ON CONFLICT (sensor_id) DO NOTHING",
        params![sensor_id, seen_ns],
    )?;
    tx.query_row(
        "SELECT id FROM sensors WHERE sensor_id = ?1",
        params![sensor_id],
        |r| r.get(0),
    )
}

fn boot_key(
    tx: &Connection,
    sensor_id: &str,
    boot_id: &str,
    seen_ns: i64,
) -> rusqlite::Result<i64> {
    let sensor = sensor_key(tx, sensor_id, seen_ns)?;
    if let Some(id) = tx
        .query_row(
            "SELECT id FROM boots WHERE sensor = ?1 AND boot_id = ?2",
            params![sensor, boot_id],
            |r| r.get(0),
        )
        .optional()?
    {
        return Ok(id);
    }
    tx.execute(
        "INSERT INTO boots (sensor, boot_id) VALUES (?1, ?2)",
        params![sensor, boot_id],
    )?;
    Ok(tx.last_insert_rowid())
}

fn upsert_sensor(tx: &Connection, h: &Hello, seen_ns: i64) -> rusqlite::Result<()> {
    sensor_key(tx, &h.sensor_id, seen_ns)?;
    tx.execute(
        "UPDATE sensors SET host = ?2, version = ?3, kernel = ?4, mode = ?5, capabilities = ?6, \
         last_seen_ns = ?7 WHERE sensor_id = ?1",
        params![
            h.sensor_id,
            h.host,
            h.version,
            h.kernel,
            h.mode,
            h.capabilities.join(","),
            seen_ns
        ],
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
