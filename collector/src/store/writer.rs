//! The one writer: a thread that owns the writing connection. Batches from every stream
//! queue here; whatever has queued while the previous commit ran goes into the next
//! transaction (group commit), and each batch's sender is answered only after COMMIT has
//! returned, so an Ack never precedes durability (see the module note in `store`).
use std::collections::HashMap;
use std::path::PathBuf;

use prost::bytes::Bytes;
use prost::Message as _;
use rusqlite::{params, Connection, OptionalExtension};
use sensor_proto::v1::{Event, Hello};
use tokio::sync::{mpsc, oneshot};

use super::{row::columns, StoreError};

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
        events: Vec<Event>,
        /// The events' bytes as received, stored as they are; empty: encode `events`.
        bodies: Vec<Bytes>,
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
            Job::Batch { events, .. } => events.len(),
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
    /// Starts the writer thread on an open read-write connection.
    pub fn spawn(
        conn: Connection,
        max_events_per_commit: usize,
        path: PathBuf,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(1024);
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, max_events_per_commit.max(1), path))?;
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
        let bodies = if bodies.len() == events.len() {
            bodies
        } else {
            Vec::new()
        };
        self.tx
            .send(Job::Batch {
                sensor_id,
                boot_id,
                events,
                bodies,
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

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, max_events: usize, path: PathBuf) {
    let mut boots: HashMap<(String, String), i64> = HashMap::new();
    while let Some(first) = rx.blocking_recv() {
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
        match write_all(&mut conn, &mut boots, &jobs) {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    if let Job::Batch { reply, .. } = job {
                        let _ = reply.send(Ok(outcome));
                    }
                }
            }
            Err(e) => {
                // Nothing of this transaction is stored; every sender gets the error and its
                // sensor will resend. Cached ids may belong to rolled-back rows.
                boots.clear();
                tracing::error!(db = %path.display(), error = %e, events = n, "commit failed");
                let msg = e.to_string();
                for job in jobs {
                    if let Job::Batch { reply, .. } = job {
                        let _ = reply.send(Err(StoreError::Commit(msg.clone())));
                    }
                }
            }
        }
    }
    tracing::debug!("storage writer stopped");
}

/// Rows per multi-row INSERT: amortizes statement overhead (16 values a row, well under
/// SQLite's 32766 variable limit).
const ROWS_PER_INSERT: usize = 64;

const INSERT_HEAD: &str =
    "INSERT OR IGNORE INTO events (boot, seq, time_ns, received_ns, host, kind, \
     source, pid, ppid, uid, auid, user, session, tty, text, body) VALUES ";
const ROW: &str = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

fn insert_sql(rows: usize) -> String {
    let mut s = String::with_capacity(INSERT_HEAD.len() + rows * (ROW.len() + 1));
    s.push_str(INSERT_HEAD);
    for i in 0..rows {
        if i > 0 {
            s.push(',');
        }
        s.push_str(ROW);
    }
    s
}

/// Inserts `events` of one boot; returns how many were new (the rest were duplicates).
/// `received` holds each event's bytes as received, or is empty (then each is encoded into
/// `scratch`).
fn insert_events(
    tx: &Connection,
    boot: i64,
    received_ns: i64,
    events: &[Event],
    received: &[Bytes],
    scratch: &mut Vec<Vec<u8>>,
) -> rusqlite::Result<u32> {
    let mut stored = 0u32;
    for (i, chunk) in events.chunks(ROWS_PER_INSERT).enumerate() {
        let mut stmt = tx.prepare_cached(&insert_sql(chunk.len()))?;
        let start = i * ROWS_PER_INSERT;
        let given = received.get(start..start + chunk.len());
        if given.is_none() {
            scratch.resize_with(chunk.len(), Vec::new);
            for (ev, body) in chunk.iter().zip(scratch.iter_mut()) {
                body.clear();
                // Encoding into a Vec cannot fail (it grows as needed).
                let _ = ev.encode(body);
            }
        }
        let mut k = 1;
        for (j, ev) in chunk.iter().enumerate() {
            let body: &[u8] = match given {
                Some(b) => &b[j],
                None => &scratch[j],
            };
            let c = columns(ev);
            stmt.raw_bind_parameter(k, boot)?;
            stmt.raw_bind_parameter(k + 1, ev.seq as i64)?;
            stmt.raw_bind_parameter(k + 2, c.time_ns)?;
            stmt.raw_bind_parameter(k + 3, received_ns)?;
            stmt.raw_bind_parameter(k + 4, c.host)?;
            stmt.raw_bind_parameter(k + 5, c.kind)?;
            stmt.raw_bind_parameter(k + 6, c.source)?;
            stmt.raw_bind_parameter(k + 7, c.pid)?;
            stmt.raw_bind_parameter(k + 8, c.ppid)?;
            stmt.raw_bind_parameter(k + 9, c.uid)?;
            stmt.raw_bind_parameter(k + 10, c.auid)?;
            stmt.raw_bind_parameter(k + 11, c.user)?;
            stmt.raw_bind_parameter(k + 12, c.session)?;
            stmt.raw_bind_parameter(k + 13, c.tty)?;
            stmt.raw_bind_parameter(k + 14, c.text.as_deref())?;
            stmt.raw_bind_parameter(k + 15, body)?;
            k += 16;
        }
        stored += stmt.raw_execute()? as u32;
    }
    Ok(stored)
}

fn write_all(
    conn: &mut Connection,
    boots: &mut HashMap<(String, String), i64>,
    jobs: &[Job],
) -> Result<Vec<Outcome>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut scratch: Vec<Vec<u8>> = Vec::new();
    for job in jobs {
        match job {
            Job::Hello { hello, seen_ns } => {
                upsert_sensor(&tx, hello, *seen_ns)?;
                outcomes.push(Outcome::default());
            }
            Job::Batch {
                sensor_id,
                boot_id,
                events,
                bodies,
                received_ns,
                ..
            } => {
                let key = (sensor_id.clone(), boot_id.clone());
                let boot = match boots.get(&key) {
                    Some(&b) => b,
                    None => {
                        let b = boot_key(&tx, sensor_id, boot_id, *received_ns)?;
                        boots.insert(key, b);
                        b
                    }
                };
                let stored = insert_events(&tx, boot, *received_ns, events, bodies, &mut scratch)?;
                tx.prepare_cached("UPDATE sensors SET last_seen_ns = ?2 WHERE sensor_id = ?1")?
                    .execute(params![sensor_id, received_ns])?;
                outcomes.push(Outcome {
                    stored,
                    duplicates: events.len() as u32 - stored,
                });
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

fn sensor_key(tx: &Connection, sensor_id: &str, seen_ns: i64) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT OR IGNORE INTO sensors (sensor_id, first_seen_ns, last_seen_ns) VALUES (?1, ?2, ?2)",
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
