//! The writer's tables: duplicates are dropped whether the first copy is still hot or
//! already indexed, and a row keeps its id when it moves.
use super::*;
use crate::store::{schema, Synchronous};
use sensor_proto::v1::Kind;

fn batch(seqs: std::ops::RangeInclusive<u64>) -> Job {
    let events: Vec<Event> = seqs
        .map(|seq| Event {
            seq,
            time_unix_ns: 1_000 + seq as i64,
            host: "h".into(),
            kind: Kind::Login as i32,
            ..Default::default()
        })
        .collect();
    Job::Batch {
        sensor_id: "s".into(),
        boot_id: "b".into(),
        rows: RowBatch::new(&events, Vec::new()),
        received_ns: 5,
        reply: oneshot::channel().0,
    }
}

fn store(conn: &mut Connection, state: &mut State, job: Job) -> Outcome {
    let (outcomes, inserted) = write_all(conn, state, &[job]).unwrap();
    state.hot_rows += inserted;
    outcomes[0]
}

fn count(conn: &Connection, table: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn ids_by_seq(conn: &Connection, table: &str) -> Vec<i64> {
    conn.prepare(&format!("SELECT id FROM {table} ORDER BY seq"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A new in-memory database and its writer state.
fn empty_store() -> (Connection, State) {
    let conn = Connection::open_in_memory().unwrap();
    schema::prepare(&conn, Synchronous::Normal).unwrap();
    let state = State::load(&conn).unwrap();
    (conn, state)
}

fn outcome(stored: u32, duplicates: u32) -> Outcome {
    Outcome { stored, duplicates }
}

#[test]
fn duplicates_are_dropped_in_both_tables() {
    let (mut conn, mut state) = empty_store();
    assert_eq!(store(&mut conn, &mut state, batch(1..=10)), outcome(10, 0));
    // A resend while the first copy is hot.
    assert_eq!(store(&mut conn, &mut state, batch(1..=10)), outcome(0, 10));
    assert_eq!((count(&conn, "events_hot"), state.hot_rows), (10, 10));
    let ids = ids_by_seq(&conn, "events_hot");
    // Moved in two chunks, oldest first.
    assert_eq!(move_hot(&mut conn, 6).unwrap(), 6);
    assert_eq!(count(&conn, "events_hot"), 4);
    assert_eq!(move_hot(&mut conn, 6).unwrap(), 4);
    assert_eq!(move_hot(&mut conn, 6).unwrap(), 0);
    assert_eq!(
        (count(&conn, "events_hot"), count(&conn, "events_indexed")),
        (0, 10)
    );
    let moved = ids_by_seq(&conn, "events_indexed");
    assert_eq!(moved, ids, "a row keeps its id when it moves");
    // A resend overlapping indexed rows: only the new ones are stored.
    assert_eq!(store(&mut conn, &mut state, batch(5..=15)), outcome(5, 6));
    assert_eq!(count(&conn, "events"), 15);
    // New ids continue after every id in use, also after a restart.
    let reloaded = State::load(&conn).unwrap();
    assert_eq!(reloaded.next_id, state.next_id);
    assert_eq!(reloaded.hot_rows, 5);
    let max: i64 = conn
        .query_row("SELECT max(id) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(state.next_id > max);
}

/// The loss behind the reverted merge (see `docs/ARCHITECTURE.md#collector`): every row had
/// been moved when the collector stopped, so `events_hot` was empty at the next start and
/// the next id must still come after every indexed id.
#[test]
fn a_restart_with_every_row_indexed_loses_nothing() {
    let (mut conn, mut state) = empty_store();
    assert_eq!(store(&mut conn, &mut state, batch(1..=10)), outcome(10, 0));
    assert_eq!(move_hot(&mut conn, 100).unwrap(), 10);
    assert_eq!(count(&conn, "events_hot"), 0);
    // Restart.
    let mut state = State::load(&conn).unwrap();
    assert_eq!(state.next_id, 11, "ids continue after the indexed rows");
    assert_eq!(store(&mut conn, &mut state, batch(11..=20)), outcome(10, 0));
    assert_eq!(move_hot(&mut conn, 100).unwrap(), 10);
    assert_eq!(count(&conn, "events"), 20, "every acknowledged row is kept");
}

/// Only a resend may be skipped: a row whose id is taken fails its transaction (so its batch
/// is not acknowledged), in the insert and in the move alike.
#[test]
fn an_id_conflict_is_an_error_not_a_duplicate() {
    let (mut conn, mut state) = empty_store();
    assert_eq!(store(&mut conn, &mut state, batch(1..=10)), outcome(10, 0));
    // A stale counter (as a second writer on the same file would have).
    state.next_id = 5;
    assert!(write_all(&mut conn, &mut state, &[batch(11..=12)]).is_err());
    assert_eq!(
        count(&conn, "events"),
        10,
        "the failed batch left nothing behind"
    );
    // The same stale ids, inserted hot after the first rows moved: the move fails and keeps them.
    assert_eq!(move_hot(&mut conn, 100).unwrap(), 10);
    state.next_id = 5;
    assert_eq!(store(&mut conn, &mut state, batch(11..=12)), outcome(2, 0));
    assert!(move_hot(&mut conn, 100).is_err());
    assert_eq!(
        (count(&conn, "events_hot"), count(&conn, "events_indexed")),
        (2, 10)
    );
}
