//! Read-only queries: a filter becomes one parameterized SELECT (pure, unit-tested), rows
//! come back as the stored protobuf events with where they came from. The SELECT reads both
//! event tables (`events_indexed` through its indexes, the bounded `events_hot` by a scan)
//! and merges them in time order (see `docs/ARCHITECTURE.md#collector`).
use prost::Message as _;
use rusqlite::{types::Value, Connection};
use sensor_proto::v1::Event;

use super::StoreError;

/// Every field narrows the result; empty vectors and `None` mean "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub hosts: Vec<String>,
    pub kinds: Vec<String>,
    /// Inclusive, ns since the epoch.
    pub since_ns: Option<i64>,
    /// Exclusive, ns since the epoch.
    pub until_ns: Option<i64>,
    pub pid: Option<u32>,
    /// A number matches uid or login uid; anything else matches the user name.
    pub user: Option<String>,
    pub session: Option<u32>,
    /// Substring of exe, argv or file path (case-sensitive).
    pub text: Option<String>,
    pub sensor_id: Option<String>,
    /// Only events that carry a session id.
    pub with_session: bool,
    pub limit: Option<u64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

/// One stored event and its origin.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: i64,
    pub sensor_id: String,
    pub boot_id: String,
    pub received_ns: i64,
    pub event: Event,
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The tables a query reads, each with the same conditions.
pub const EVENT_TABLES: [&str; 2] = ["events_indexed", "events_hot"];

/// The SELECT and its parameters for `f`.
pub fn build_sql(f: &Filter) -> (String, Vec<Value>) {
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    let mut push = |cond: &str, vals: Vec<Value>, params: &mut Vec<Value>| {
        let mut c = cond.to_string();
        for v in vals {
            params.push(v);
            c = c.replacen('#', &format!("?{}", params.len()), 1);
        }
        conds.push(c);
    };
    let in_list = |col: &str, n: usize| format!("{col} IN ({})", vec!["#"; n].join(", "));
    if !f.hosts.is_empty() {
        let vals = f.hosts.iter().map(|h| Value::Text(h.clone())).collect();
        push(&in_list("e.host", f.hosts.len()), vals, &mut params);
    }
    if !f.kinds.is_empty() {
        let vals = f.kinds.iter().map(|k| Value::Text(k.clone())).collect();
        push(&in_list("e.kind", f.kinds.len()), vals, &mut params);
    }
    if let Some(t) = f.since_ns {
        push("e.time_ns >= #", vec![Value::Integer(t)], &mut params);
    }
    if let Some(t) = f.until_ns {
        push("e.time_ns < #", vec![Value::Integer(t)], &mut params);
    }
    if let Some(p) = f.pid {
        push("e.pid = #", vec![Value::Integer(p.into())], &mut params);
    }
    if let Some(u) = &f.user {
        match u.parse::<u32>() {
            Ok(n) => push(
                "(e.uid = # OR e.auid = #)",
                vec![Value::Integer(n.into()), Value::Integer(n.into())],
                &mut params,
            ),
            Err(_) => push("e.user = #", vec![Value::Text(u.clone())], &mut params),
        }
    }
    if let Some(s) = f.session {
        push("e.session = #", vec![Value::Integer(s.into())], &mut params);
    }
    if f.with_session {
        push("e.session IS NOT NULL", vec![], &mut params);
    }
    if let Some(t) = &f.text {
        push(
            "e.text LIKE # ESCAPE '\\'",
            vec![Value::Text(format!("%{}%", like_escape(t)))],
            &mut params,
        );
    }
    if let Some(s) = &f.sensor_id {
        // The stored id, or the sensor's own id under any identity (`<id>@<identity>`).
        push(
            "(s.sensor_id = # OR s.sensor_id LIKE # ESCAPE '\\')",
            vec![
                Value::Text(s.clone()),
                Value::Text(format!("{}@%", like_escape(s))),
            ],
            &mut params,
        );
    }
    let mut arms = Vec::with_capacity(EVENT_TABLES.len());
    for table in EVENT_TABLES {
        let mut arm = format!(
            "SELECT e.id, s.sensor_id, b.boot_id, e.received_ns, e.body, e.time_ns \
             FROM {table} e JOIN boots b ON b.id = e.boot JOIN sensors s ON s.id = b.sensor"
        );
        if !conds.is_empty() {
            arm.push_str(" WHERE ");
            arm.push_str(&conds.join(" AND "));
        }
        arms.push(arm);
    }
    // Numbered parameters, so both arms bind the same values; ORDER BY names result columns
    // and SQLite merges the two ordered arms (the indexed one in index order).
    let mut sql = arms.join(" UNION ALL ");
    let dir = if f.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY e.time_ns {dir}, e.id {dir}"));
    if let Some(l) = f.limit {
        params.push(Value::Integer(l.min(i64::MAX as u64) as i64));
        sql.push_str(&format!(" LIMIT ?{}", params.len()));
    }
    (sql, params)
}

/// Runs `f` and decodes every row.
pub fn fetch(conn: &Connection, f: &Filter) -> Result<Vec<Stored>, StoreError> {
    let (sql, params) = build_sql(f);
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Vec<u8>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, sensor_id, boot_id, received_ns, body) = row?;
        let event =
            Event::decode(body.as_slice()).map_err(|source| StoreError::Corrupt { id, source })?;
        out.push(Stored {
            id,
            sensor_id,
            boot_id,
            received_ns,
            event,
        });
    }
    Ok(out)
}

/// Number of stored events (all sensors).
pub fn count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM events_indexed) + (SELECT count(*) FROM events_hot)",
        [],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_selects_all_in_time_order() {
        let (sql, p) = build_sql(&Filter::default());
        assert!(!sql.contains("WHERE"));
        assert!(sql.ends_with("ORDER BY e.time_ns ASC, e.id ASC"));
        assert!(p.is_empty());
    }

    #[test]
    fn every_filter_is_a_parameter() {
        let f = Filter {
            hosts: vec!["a".into(), "b".into()],
            kinds: vec!["process_exec".into()],
            since_ns: Some(1),
            until_ns: Some(2),
            pid: Some(3),
            user: Some("1000".into()),
            session: Some(4),
            text: Some("50%_x".into()),
            sensor_id: Some("s".into()),
            with_session: true,
            limit: Some(10),
            newest_first: true,
        };
        let (sql, p) = build_sql(&f);
        assert!(sql.contains("e.host IN (?1, ?2)"), "{sql}");
        assert!(sql.contains("e.kind IN (?3)"), "{sql}");
        assert!(sql.contains("(e.uid = ?7 OR e.auid = ?8)"), "{sql}");
        assert!(sql.contains("e.text LIKE ?10 ESCAPE"), "{sql}");
        assert!(sql.contains("e.session IS NOT NULL"), "{sql}");
        assert!(
            sql.contains("(s.sensor_id = ?11 OR s.sensor_id LIKE ?12 ESCAPE"),
            "{sql}"
        );
        assert_eq!(p[11], Value::Text("s@%".into()));
        assert!(sql.contains("DESC LIMIT ?13"), "{sql}");
        assert_eq!(p.len(), 13);
        assert_eq!(p[9], Value::Text("%50\\%\\_x%".into()));
        let (sql, p) = build_sql(&Filter {
            user: Some("alice".into()),
            ..Default::default()
        });
        assert!(sql.contains("e.user = ?1"), "{sql}");
        assert_eq!(p, vec![Value::Text("alice".into())]);
    }
}
