//! Tables and indexes. Indexed columns are extracted from the event at write time; the
//! event itself is kept whole as its protobuf encoding (`body`), so no field is lost and
//! the query output is the sensor's JSON shape.
//!
//! Events arrive in `events_hot`, which has one index (the dedup key), and the writer moves
//! them into `events_indexed` (every query index) when it is idle; the view `events` is both
//! (see `docs/ARCHITECTURE.md#collector`).
use rusqlite::Connection;

use super::Synchronous;

/// Bumped when the schema changes; older versions are brought up to date by [`MIGRATIONS`].
pub const SCHEMA_VERSION: i64 = 3;

/// What takes a database from version `i + 1` to `i + 2`.
/// 1 -> 2: `events_uid` goes. A `--user <number>` query asks `uid = ? OR auid = ?`, which
/// SQLite can answer from indexes only when both columns have one, so it never used it; it
/// only cost every insert a B-tree update (see `docs/ARCHITECTURE.md#collector`).
/// 2 -> 3: `events` becomes `events_indexed` (its indexes go with it); [`SCHEMA`] then adds
/// `events_hot` and the view `events` over both.
const MIGRATIONS: &[&str] = &[
    "DROP INDEX IF EXISTS events_uid;",
    "ALTER TABLE events RENAME TO events_indexed;",
];

/// The columns of both event tables, in this order (the move copies `*`).
pub const EVENT_COLUMNS: &str = "id, boot, seq, time_ns, received_ns, host, kind, source, pid, \
     ppid, uid, auid, user, session, tty, text, body";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sensors (
    id            INTEGER PRIMARY KEY,
    sensor_id     TEXT NOT NULL UNIQUE,
    host          TEXT,
    version       TEXT,
    kernel        TEXT,
    mode          TEXT,
    capabilities  TEXT,
    first_seen_ns INTEGER,
    last_seen_ns  INTEGER
);
CREATE TABLE IF NOT EXISTS boots (
    id      INTEGER PRIMARY KEY,
    sensor  INTEGER NOT NULL REFERENCES sensors(id),
    boot_id TEXT NOT NULL,
    UNIQUE (sensor, boot_id)
);
CREATE TABLE IF NOT EXISTS events_indexed (
    id          INTEGER PRIMARY KEY,
    boot        INTEGER NOT NULL REFERENCES boots(id),
    seq         INTEGER NOT NULL,
    time_ns     INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    host        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    pid         INTEGER,
    ppid        INTEGER,
    uid         INTEGER,
    auid        INTEGER,
    user        TEXT,
    session     INTEGER,
    tty         TEXT,
    text        TEXT,
    body        BLOB NOT NULL
);
-- de-duplication key: (sensor id, boot id) -> boot, plus seq
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events_indexed (boot, seq);
CREATE INDEX IF NOT EXISTS events_time ON events_indexed (time_ns);
CREATE INDEX IF NOT EXISTS events_host_time ON events_indexed (host, time_ns);
CREATE INDEX IF NOT EXISTS events_kind_time ON events_indexed (kind, time_ns);
CREATE INDEX IF NOT EXISTS events_pid ON events_indexed (pid) WHERE pid IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_user ON events_indexed (user) WHERE user IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_session ON events_indexed (session, time_ns)
    WHERE session IS NOT NULL;
-- Where the writer inserts: only the dedup key is indexed. `boot` has no foreign key here:
-- the writer binds only ids it has just looked up in `boots`; the move checks it.
CREATE TABLE IF NOT EXISTS events_hot (
    id          INTEGER PRIMARY KEY,
    boot        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    time_ns     INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    host        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    pid         INTEGER,
    ppid        INTEGER,
    uid         INTEGER,
    auid        INTEGER,
    user        TEXT,
    session     INTEGER,
    tty         TEXT,
    text        TEXT,
    body        BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_hot_dedup ON events_hot (boot, seq);
-- Every stored event, for ad-hoc SQL; `collector query` reads both tables itself.
CREATE VIEW IF NOT EXISTS events AS
    SELECT * FROM events_indexed UNION ALL SELECT * FROM events_hot;
";

/// Pragmas for a writing connection, then the schema.
pub fn prepare(conn: &Connection, sync: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "could not switch the database to WAL mode");
    }
    let sync = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // A larger page cache keeps the index B-trees in memory while inserting; checkpoints
    // less often move more pages at once.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -131072; PRAGMA wal_autocheckpoint = 8192;"
    ))?;
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if v > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {v}, this collector knows {SCHEMA_VERSION}"
        )));
    }
    // Migrations first (they rename what the schema then builds on), all in one
    // transaction with the schema and the new version.
    let mut script = String::from("BEGIN IMMEDIATE;");
    if v > 0 {
        for step in &MIGRATIONS[(v - 1) as usize..] {
            script.push_str(step);
        }
    }
    script.push_str(SCHEMA);
    script.push_str(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"));
    conn.execute_batch(&script)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join("; ")
    }

    #[test]
    fn a_version_1_database_is_migrated() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            "CREATE INDEX events_uid ON events (uid) WHERE uid IS NOT NULL; \
             PRAGMA user_version = 1;",
        )
        .unwrap();
        // The old index did not serve the uid query: it is an OR with auid.
        let q = "SELECT id FROM events e WHERE (e.uid = 5 OR e.auid = 5)";
        assert!(plan(&conn, q).starts_with("SCAN e"), "{}", plan(&conn, q));
        prepare(&conn, Synchronous::Normal).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events_uid'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
        // Every query shape `collector query` builds still finds its index.
        for (q, idx) in [
            (
                "SELECT id FROM events e WHERE e.time_ns >= 1 ORDER BY e.time_ns",
                "events_time",
            ),
            (
                "SELECT id FROM events e WHERE e.host IN ('a') AND e.time_ns >= 1",
                "events_host_time",
            ),
            (
                "SELECT id FROM events e WHERE e.kind IN ('login') AND e.time_ns >= 1",
                "events_kind_time",
            ),
            ("SELECT id FROM events e WHERE e.pid = 7", "events_pid"),
            (
                "SELECT id FROM events e WHERE e.user = 'alice'",
                "events_user",
            ),
            (
                "SELECT id FROM events e WHERE e.session = 3",
                "events_session",
            ),
        ] {
            let p = plan(&conn, q);
            assert!(p.contains(idx), "{q}: {p}");
        }
    }

    #[test]
    fn a_newer_database_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 99;").unwrap();
        assert!(prepare(&conn, Synchronous::Normal).is_err());
    }
}
