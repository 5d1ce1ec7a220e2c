//! Tables and indexes. Indexed columns are extracted from the event at write time; the
//! event itself is kept whole as its protobuf encoding (`body`), so no field is lost and
//! the query output is the sensor's JSON shape.
use rusqlite::Connection;

use super::Synchronous;

/// Bumped when the schema changes; older versions are brought up to date by [`MIGRATIONS`].
pub const SCHEMA_VERSION: i64 = 2;

/// What takes a database from version `i + 1` to `i + 2`.
/// 1 -> 2: `events_uid` goes. A `--user <number>` query asks `uid = ? OR auid = ?`, which
/// SQLite can answer from indexes only when both columns have one, so it never used it; it
/// only cost every insert a B-tree update (see `docs/ARCHITECTURE.md#collector`).
const MIGRATIONS: &[&str] = &["DROP INDEX IF EXISTS events_uid;"];

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
CREATE TABLE IF NOT EXISTS events (
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
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events (boot, seq);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ns);
CREATE INDEX IF NOT EXISTS events_host_time ON events (host, time_ns);
CREATE INDEX IF NOT EXISTS events_kind_time ON events (kind, time_ns);
CREATE INDEX IF NOT EXISTS events_pid ON events (pid) WHERE pid IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_user ON events (user) WHERE user IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_session ON events (session, time_ns) WHERE session IS NOT NULL;
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
    conn.execute_batch(SCHEMA)?;
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if v == 0 {
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    } else if v < SCHEMA_VERSION && v > 0 {
        for step in &MIGRATIONS[(v - 1) as usize..] {
            conn.execute_batch(step)?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    } else if v != SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {v}, this collector knows {SCHEMA_VERSION}"
        )));
    }
    Ok(())
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
