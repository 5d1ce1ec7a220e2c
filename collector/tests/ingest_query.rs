//! The real collector binary: batches in over gRPC, acks after commit, de-duplication,
//! `collector query` filters and output forms, `collector sessions`, metrics.
mod common;

use common::raw;
use common::*;
use sensor_proto::json::event_to_json;
use sensor_proto::v1 as pb;
use serde_json::Value;

fn login_event(seq: u64, host: &str, user: &str, session: u32, pid: u32) -> pb::Event {
    pb::Event {
        seq,
        time_unix_ns: T0 + seq as i64 * 1_000_000,
        host: host.into(),
        source: pb::Source::Wtmp as i32,
        kind: pb::Kind::Login as i32,
        login: Some(pb::Login {
            user: user.into(),
            tty: Some("pts/0".into()),
            host: Some("laptop".into()),
            addr: Some("192.0.2.7".into()),
            pid,
            session: Some(session),
            session_key: None,
        }),
        ..Default::default()
    }
}

fn file_event(seq: u64, host: &str, path: &str) -> pb::Event {
    pb::Event {
        seq,
        time_unix_ns: T0 + seq as i64 * 1_000_000,
        host: host.into(),
        source: pb::Source::Fanotify as i32,
        kind: pb::Kind::File as i32,
        process: Some(pb::Process {
            pid: 300,
            comm: "vi".into(),
            ..Default::default()
        }),
        file: Some(pb::File {
            path: path.into(),
            ops: vec!["create".into(), "close_write".into()],
            new_path: None,
        }),
        ..Default::default()
    }
}

fn exit_event(seq: u64, host: &str, pid: u32, code: i32) -> pb::Event {
    pb::Event {
        seq,
        time_unix_ns: T0 + seq as i64 * 1_000_000,
        host: host.into(),
        source: pb::Source::Ebpf as i32,
        kind: pb::Kind::ProcessExit as i32,
        process: Some(pb::Process {
            pid,
            comm: "ls".into(),
            ..Default::default()
        }),
        exit: Some(pb::Exit {
            code: Some(code),
            signal: None,
            core_dumped: false,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_dedup_query_sessions_metrics() {
    let dir = TempDir::new("ingest");
    let c = Collector::start(dir.path(), &[]);
    let mut s = raw::open(raw::channel(&c.grpc).await).await.unwrap();
    s.send_hello(hello("sensor-a", "boot-1", "web1")).await;

    let first = vec![
        login_event(1, "web1", "alice", 42, 100),
        exec_event(2, "web1", 101, Some(42), &["bash"]),
        exec_event(3, "web1", 102, Some(42), &["ls", "-l", "/etc/pass wd"]),
        exit_event(4, "web1", 102, 0),
        file_event(5, "web1", "/etc/cron.d/evil"),
        exec_event(6, "web1", 103, Some(43), &["curl", "http://x/50%_off"]),
    ];
    s.send_batch(batch("sensor-a", "boot-1", 1, first.clone()))
        .await;
    let a = s.next_ack().await.unwrap();
    assert_eq!((a.batch_id, a.stored, a.duplicates), (1, 6, 0));

    // Replay (as after a reconnect) with one new event: only the new one is stored.
    let mut replay = first.clone();
    replay.push(exec_event(7, "web1", 104, Some(42), &["id"]));
    s.send_batch(batch("sensor-a", "boot-1", 2, replay)).await;
    let a = s.next_ack().await.unwrap();
    assert_eq!((a.batch_id, a.stored, a.duplicates), (2, 1, 6));

    // Same seq, another boot: a different event.
    s.send_batch(batch(
        "sensor-a",
        "boot-2",
        3,
        vec![exec_event(1, "web1", 900, None, &["boot2"])],
    ))
    .await;
    assert_eq!(s.next_ack().await.unwrap().stored, 1);

    // A second sensor on its own stream.
    let mut s2 = raw::open(raw::channel(&c.grpc).await).await.unwrap();
    s2.send_hello(hello("sensor-b", "boot-9", "db1")).await;
    s2.send_batch(batch(
        "sensor-b",
        "boot-9",
        1,
        vec![exec_event(1, "db1", 555, Some(7), &["psql"])],
    ))
    .await;
    assert_eq!(s2.next_ack().await.unwrap().stored, 1);

    // Everything stored; fields intact (the JSON equals the wire event's JSON).
    let all = query(&c.db, &[]);
    assert_eq!(all.len(), 9, "{all:#?}");
    let ls = query(&c.db, &["--text", "pass wd"]);
    assert_eq!(ls.len(), 1);
    let mut expected = event_to_json(&first[2]);
    // Sent over plaintext loopback TCP: stored under the unauthenticated identity.
    expected["sensor_id"] = Value::from("sensor-a@unauthenticated:");
    expected["boot_id"] = Value::from("boot-1");
    assert_eq!(ls[0], expected);

    // Filters.
    assert_eq!(query(&c.db, &["--host", "db1"]).len(), 1);
    assert_eq!(query(&c.db, &["--kind", "process_exit"]).len(), 1);
    assert_eq!(
        query(&c.db, &["--kind", "login", "--kind", "file"]).len(),
        2
    );
    assert_eq!(query(&c.db, &["--pid", "102"]).len(), 2);
    assert_eq!(query(&c.db, &["--session", "42"]).len(), 4);
    assert_eq!(query(&c.db, &["--user", "alice"]).len(), 1);
    assert_eq!(query(&c.db, &["--user", "1000"]).len(), 6);
    assert_eq!(query(&c.db, &["--text", "/etc/cron.d"]).len(), 1);
    assert_eq!(query(&c.db, &["--text", "50%_"]).len(), 1);
    assert_eq!(
        query(&c.db, &["--text", "5_%"]).len(),
        0,
        "LIKE wildcards are escaped"
    );
    assert_eq!(query(&c.db, &["--sensor", "sensor-b"]).len(), 1);
    let t3 = sensor_proto::time::format_rfc3339_nanos(T0 + 3_000_000);
    let t5 = sensor_proto::time::format_rfc3339_nanos(T0 + 5_000_000);
    // seq 1 events of boot-2 and sensor-b are at T0+1ms; 3 and 4 are in [t3, t5).
    assert_eq!(query(&c.db, &["--since", &t3, "--until", &t5]).len(), 2);
    let newest = query(&c.db, &["--newest-first", "--limit", "1"]);
    assert_eq!(newest[0]["seq"], 7);

    // Table output.
    let table = run_cli(&[
        "query",
        "--db",
        c.db.to_str().unwrap(),
        "--kind",
        "process_exec",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{table}");
    assert_eq!(lines.len(), 7, "{table}");
    assert!(table.contains("ls -l '/etc/pass wd'"), "{table}");

    // Sessions: login first, then the commands of session 42 in order.
    let text = run_cli(&["sessions", "--db", c.db.to_str().unwrap(), "--host", "web1"]);
    assert!(
        text.contains("session 42  user alice  (3 commands)"),
        "{text}"
    );
    let i_login = text.find("login  alice on pts/0").expect("login line");
    let i_bash = text.find(" bash\n").expect("bash");
    let i_ls = text.find("ls -l").expect("ls");
    let i_id = text.find(" id\n").expect("id");
    assert!(i_login < i_bash && i_bash < i_ls && i_ls < i_id, "{text}");
    assert!(text.contains("session 43"), "{text}");
    let j = run_cli(&[
        "sessions",
        "--db",
        c.db.to_str().unwrap(),
        "--session",
        "42",
        "--json",
    ]);
    let v: Value = serde_json::from_str(j.lines().next().unwrap()).unwrap();
    assert_eq!(v["login"]["login"]["user"], "alice");
    assert_eq!(v["commands"].as_array().unwrap().len(), 3);

    // Metrics.
    let m = c.metrics_text();
    assert!(m.contains("collector_events_received_total 15"), "{m}");
    assert!(m.contains("collector_events_duplicate_total 6"), "{m}");
    assert!(m.contains("collector_events_stored_total 9"), "{m}");
    assert!(
        m.contains(
            "collector_sensor_lag_seconds{sensor_id=\"sensor-a@unauthenticated:\",host=\"web1\"}"
        ),
        "{m}"
    );
    assert!(m.contains("collector_streams_active 2"), "{m}");

    // A restart keeps everything, and de-duplication still holds.
    drop(s);
    drop(s2);
    c.stop();
    let c = Collector::start(dir.path(), &[]);
    let mut s = raw::open(raw::channel(&c.grpc).await).await.unwrap();
    s.send_hello(hello("sensor-a", "boot-1", "web1")).await;
    s.send_batch(batch("sensor-a", "boot-1", 9, first.clone()))
        .await;
    let a = s.next_ack().await.unwrap();
    assert_eq!((a.stored, a.duplicates), (0, 6));
    assert_eq!(query(&c.db, &[]).len(), 9);
    drop(s);
    c.stop();
}

#[test]
fn cli_errors_are_clear() {
    let dir = TempDir::new("cli");
    let missing = dir.path().join("none.db");
    let out = std::process::Command::new(bin())
        .args(["query", "--db", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    let out = std::process::Command::new(bin())
        .args([
            "query",
            "--db",
            missing.to_str().unwrap(),
            "--kind",
            "bogus",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("possible values") && err.contains("process_exec"),
        "{err}"
    );
    let out = std::process::Command::new(bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--db"])
        .arg(dir.path().join("x.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing plaintext"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let defaults = run_cli(&["config"]);
    assert!(defaults.contains("[storage]"), "{defaults}");
}
