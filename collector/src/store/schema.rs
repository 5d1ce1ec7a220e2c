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

/// The columns both event tables have after `id` and `boot` (same order: the move and the
/// view use `*`).
macro_rules! event_columns {
    () => {
        "
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
"
    };
}

const SCHEMA: &str = concat!(
    "
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
",
    event_columns!(),
    "
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
",
    event_columns!(),
    "
CREATE UNIQUE INDEX IF NOT EXISTS events_hot_dedup ON events_hot (boot, seq);
-- Every stored event, for ad-hoc SQL; `collector query` reads both tables itself.
CREATE VIEW IF NOT EXISTS events AS
    SELECT * FROM events_indexed UNION ALL SELECT * FROM events_hot;
"
);

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
    use crate::store::query::{build_sql, Filter};

    /// Version 2's tables and indexes, as version 2 made them.
    const V2_SCHEMA: &str = "
CREATE TABLE sensors (id INTEGER PRIMARY KEY, sensor_id TEXT NOT NULL UNIQUE, host TEXT,
    version TEXT, kernel TEXT, mode TEXT, capabilities TEXT, first_seen_ns INTEGER,
    last_seen_ns INTEGER);
CREATE TABLE boots (id INTEGER PRIMARY KEY, sensor INTEGER NOT NULL REFERENCES sensors(id),
    boot_id TEXT NOT NULL, UNIQUE (sensor, boot_id));
CREATE TABLE events (id INTEGER PRIMARY KEY, boot INTEGER NOT NULL REFERENCES boots(id),
    seq INTEGER NOT NULL, time_ns INTEGER NOT NULL, received_ns INTEGER NOT NULL,
    host TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL, pid INTEGER, ppid INTEGER,
    uid INTEGER, auid INTEGER, user TEXT, session INTEGER, tty TEXT, text TEXT,
    body BLOB NOT NULL);
CREATE UNIQUE INDEX events_dedup ON events (boot, seq);
CREATE INDEX events_time ON events (time_ns);
CREATE INDEX events_host_time ON events (host, time_ns);
CREATE INDEX events_kind_time ON events (kind, time_ns);
CREATE INDEX events_pid ON events (pid) WHERE pid IS NOT NULL;
CREATE INDEX events_user ON events (user) WHERE user IS NOT NULL;
CREATE INDEX events_session ON events (session, time_ns) WHERE session IS NOT NULL;
";

    /// The plan's table steps in order: the `events_indexed` arm comes first, then
    /// `events_hot`.
    fn arm_plans(conn: &Connection, f: &Filter) -> Vec<String> {
        let (sql, params) = build_sql(f);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.into_iter()
            .filter(|d| d.starts_with("SCAN e") || d.starts_with("SEARCH e "))
            .collect()
    }

    fn names(conn: &Connection, kind: &str, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = ?1 AND tbl_name = ?2")
            .unwrap();
        let mut v = stmt
            .query_map([kind, table], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        v.sort();
        v
    }

    /// Every filter `collector query`, `sessions` and `report` build reads `events_indexed`
    /// through an index and scans only the bounded `events_hot`.
    fn every_query_shape_uses_an_index(conn: &Connection) {
        let t = Some(1);
        let with = |edit: &dyn Fn(&mut Filter)| {
            let mut f = Filter::default();
            edit(&mut f);
            f
        };
        let timeline = ["login", "logout", "login_failed", "process_exec"].map(String::from);
        let shapes: Vec<(&str, Filter, &[&str])> = vec![
            ("all, time order", Filter::default(), &["events_time"]),
            ("--since", with(&|f| f.since_ns = t), &["events_time"]),
            (
                "--newest-first --limit",
                with(&|f| (f.newest_first, f.limit) = (true, Some(10))),
                &["events_time"],
            ),
            (
                "--host --since",
                with(&|f| (f.hosts, f.since_ns) = (vec!["a".into()], t)),
                &["events_host_time"],
            ),
            (
                "--kind --since",
                with(&|f| (f.kinds, f.since_ns) = (vec!["login".into()], t)),
                &["events_kind_time"],
            ),
            ("--pid", with(&|f| f.pid = Some(7)), &["events_pid"]),
            (
                "--user name",
                with(&|f| f.user = Some("alice".into())),
                &["events_user"],
            ),
            (
                "--session (report)",
                with(&|f| (f.session, f.since_ns) = (Some(3), t)),
                &["events_session"],
            ),
            (
                "sessions",
                with(&|f| {
                    (f.kinds, f.with_session, f.since_ns) = (timeline.to_vec(), true, t);
                }),
                &["events_kind_time", "events_session"],
            ),
            (
                "report: the logout after a login",
                with(&|f| {
                    (f.hosts, f.kinds) = (vec!["a".into()], vec!["logout".into()]);
                    f.since_ns = t;
                }),
                &["events_host_time", "events_kind_time"],
            ),
        ];
        for (what, f, idx) in shapes {
            let arms = arm_plans(conn, &f);
            assert_eq!(arms.len(), 2, "{what}: {arms:?}");
            assert!(
                idx.iter()
                    .any(|i| arms[0].contains(&format!("USING INDEX {i}"))),
                "{what}: indexed arm {:?}, expected one of {idx:?}",
                arms[0]
            );
            assert!(
                arms[1].starts_with("SCAN e") || arms[1].contains("USING INDEX events_hot_dedup"),
                "{what}: hot arm {:?}",
                arms[1]
            );
        }
    }

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_new_database_has_every_table_and_index() {
        let conn = Connection::open_in_memory().unwrap();
        prepare(&conn, Synchronous::Normal).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        assert_eq!(
            names(&conn, "index", "events_indexed"),
            [
                "events_dedup",
                "events_host_time",
                "events_kind_time",
                "events_pid",
                "events_session",
                "events_time",
                "events_user"
            ]
        );
        assert_eq!(names(&conn, "index", "events_hot"), ["events_hot_dedup"]);
        assert_eq!(names(&conn, "view", "events"), ["events"]);
        every_query_shape_uses_an_index(&conn);
        // Opening again changes nothing.
        prepare(&conn, Synchronous::Normal).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_1_database_is_migrated() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V2_SCHEMA).unwrap();
        conn.execute_batch(
            "CREATE INDEX events_uid ON events (uid) WHERE uid IS NOT NULL; \
             PRAGMA user_version = 1;",
        )
        .unwrap();
        // The old index did not serve the uid query: it is an OR with auid.
        let q = "SELECT id FROM events e WHERE (e.uid = 5 OR e.auid = 5)";
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {q}")).unwrap();
        let p: String = stmt.query_row([], |r| r.get(3)).unwrap();
        assert!(p.starts_with("SCAN e"), "{p}");
        drop(stmt);
        prepare(&conn, Synchronous::Normal).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events_uid'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
        every_query_shape_uses_an_index(&conn);
    }

    #[test]
    fn a_version_2_database_is_migrated_with_its_rows() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V2_SCHEMA).unwrap();
        conn.execute_batch(
            "INSERT INTO sensors (id, sensor_id) VALUES (1, 's'); \
             INSERT INTO boots (id, sensor, boot_id) VALUES (1, 1, 'b'); \
             INSERT INTO events (id, boot, seq, time_ns, received_ns, host, kind, source, body) \
                 VALUES (41, 1, 7, 100, 200, 'h', 'login', 'wtmp', x'08'); \
             PRAGMA user_version = 2;",
        )
        .unwrap();
        prepare(&conn, Synchronous::Normal).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        // The rows and the indexes moved with the table; the view shows them.
        let (id, seq): (i64, i64) = conn
            .query_row("SELECT id, seq FROM events_indexed", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((id, seq), (41, 7));
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM events WHERE kind = 'login'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(names(&conn, "index", "events_indexed").len(), 7);
        assert!(names(&conn, "table", "events").is_empty());
        every_query_shape_uses_an_index(&conn);
        // The dedup key still holds across the rename.
        assert!(conn
            .execute(
                "INSERT INTO events_indexed (boot, seq, time_ns, received_ns, host, kind, source, \
                 body) VALUES (1, 7, 1, 1, 'h', 'login', 'wtmp', x'08')",
                [],
            )
            .is_err());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 99;").unwrap();
        assert!(prepare(&conn, Synchronous::Normal).is_err());
    }
}
