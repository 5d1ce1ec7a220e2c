//! Hostile text from a monitored host cannot drive the analyst's terminal: the real
//! collector binary stores events whose argv, file path and login fields hold ESC, CR, BS,
//! other C0 controls, DEL, C1 controls and a bidi override, and `collector query` /
//! `collector sessions` print them escaped in table form while `--json` keeps them exact.
mod common;

use common::raw;
use common::*;
use sensor_proto::v1 as pb;

const CLEAR: &str = "\u{1b}[2J";

fn controls_in(s: &str) -> Vec<char> {
    s.chars()
        .filter(|&c| c != '\n' && (c.is_control() || ('\u{202A}'..='\u{202E}').contains(&c)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_output_escapes_control_characters() {
    let dir = TempDir::new("escapes");
    let c = Collector::start(dir.path(), &[]);
    let mut s = raw::open(raw::channel(&c.grpc).await).await.unwrap();
    s.send_hello(hello("sensor-esc", "boot-1", "web1")).await;

    let exec = exec_event(
        1,
        "web1",
        4242,
        Some(7),
        &[
            "printf",
            &format!("{CLEAR}\u{1b}[1;1Hroot ok"),
            "fake\rrow",
            "back\u{8}\u{8}space",
            "bell\u{7}del\u{7f}c1\u{9b}31m",
            "rtl\u{202e}txt.exe",
            "it's \\ fine",
        ],
    );
    let file = pb::Event {
        seq: 2,
        time_unix_ns: T0 + 2_000_000,
        host: "web1".into(),
        source: pb::Source::Fanotify as i32,
        kind: pb::Kind::File as i32,
        process: Some(pb::Process {
            pid: 4243,
            comm: "touch".into(),
            ..Default::default()
        }),
        file: Some(pb::File {
            path: format!("/tmp/{CLEAR}name\nnext"),
            ops: vec!["create".into()],
            new_path: None,
        }),
        ..Default::default()
    };
    let login = pb::Event {
        seq: 3,
        time_unix_ns: T0 + 3_000_000,
        host: "web1".into(),
        source: pb::Source::Wtmp as i32,
        kind: pb::Kind::Login as i32,
        login: Some(pb::Login {
            user: format!("eve{CLEAR}"),
            tty: Some("pts/\r9".into()),
            host: Some("evil\u{1b}]0;title\u{7}".into()),
            addr: Some("192.0.2.9".into()),
            pid: 4240,
            session: Some(7),
            session_key: None,
        }),
        ..Default::default()
    };
    s.send_batch(batch(
        "sensor-esc",
        "boot-1",
        1,
        vec![exec.clone(), file.clone(), login.clone()],
    ))
    .await;
    assert_eq!(s.next_ack().await.unwrap().stored, 3);

    let db = c.db.to_str().unwrap();
    let table = run_cli(&["query", "--db", db]);
    assert_eq!(controls_in(&table), Vec::<char>::new(), "{table:?}");
    assert_eq!(table.lines().count(), 4, "one line per row: {table:?}");
    // The argv is shown in bash's $'...' form, escapes visible and pasteable.
    assert!(
        table.contains("$'\\e[2J\\e[1;1Hroot ok' $'fake\\rrow' $'back\\b\\bspace'"),
        "{table}"
    );
    assert!(
        table.contains("$'bell\\x07del\\x7fc1\\u009b31m'"),
        "{table}"
    );
    assert!(table.contains("$'rtl\\u202etxt.exe'"), "{table}");
    assert!(table.contains("'it'\\''s \\ fine'"), "{table}");
    assert!(table.contains("create /tmp/\\e[2Jname\\nnext"), "{table}");
    assert!(
        table.contains("eve\\e[2J on pts/\\r9 from evil\\e]0;title\\x07 192.0.2.9"),
        "{table}"
    );

    let sessions = run_cli(&["sessions", "--db", db]);
    assert_eq!(controls_in(&sessions), Vec::<char>::new(), "{sessions:?}");
    assert!(sessions.contains("user eve\\e[2J"), "{sessions}");
    assert!(sessions.contains("$'\\e[2J\\e[1;1Hroot ok'"), "{sessions}");

    // JSON output is unchanged: the exact strings, control characters and all.
    let rows = query(&c.db, &[]);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["process"]["argv"][1],
        exec.process.as_ref().unwrap().argv.as_ref().unwrap().args[1]
    );
    assert_eq!(rows[1]["file"]["path"], file.file.as_ref().unwrap().path);
    assert_eq!(rows[2]["login"]["user"], login.login.as_ref().unwrap().user);
    let raw_json = run_cli(&["query", "--db", db, "--json"]);
    assert!(raw_json.contains("\\u001b[2J"), "{raw_json}");
    drop(s);
    c.stop();
}
