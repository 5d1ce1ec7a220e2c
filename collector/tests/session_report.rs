//! `collector report --session ID --html FILE`: a session shipped over gRPC to the real
//! collector becomes one self-contained page; headless Chromium (Debian's `chromium`, which
//! scripts/setup installs) renders it to a screenshot and dumps its DOM, which must show the
//! session's commands in order, its login and logout, and the attacker-controlled argv as
//! text (no element, no script run).
mod common;

use std::path::Path;
use std::process::Command;

use common::raw;
use common::*;
use sensor_proto::v1 as pb;

const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\">";
const SCRIPT: &str = "<script>document.title='pwned'</script>";

fn at(mut e: pb::Event, pid: u32, ppid: u32) -> pb::Event {
    let p = e.process.as_mut().unwrap();
    p.pid = pid;
    p.ppid = ppid;
    e
}

fn login(seq: u64, kind: pb::Kind, session: Option<u32>) -> pb::Event {
    pb::Event {
        seq,
        time_unix_ns: T0 + seq as i64 * 1_000_000,
        host: "web1".into(),
        source: pb::Source::Wtmp as i32,
        kind: kind as i32,
        login: Some(pb::Login {
            user: "mallory".into(),
            tty: Some("pts/3".into()),
            host: Some("evil.example".into()),
            addr: Some("198.51.100.7".into()),
            pid: 50,
            session,
            session_key: None,
        }),
        ..Default::default()
    }
}

fn session_events() -> Vec<pb::Event> {
    let mut v = vec![login(1, pb::Kind::Login, Some(42))];
    v.push(at(
        exec_event(2, "web1", 100, Some(42), &["-bash"]),
        100,
        50,
    ));
    v.push(at(
        exec_event(3, "web1", 101, Some(42), &["ls", "-l", "/etc"]),
        101,
        100,
    ));
    v.push(at(
        exec_event(4, "web1", 102, Some(42), &["echo", HOSTILE, SCRIPT]),
        102,
        100,
    ));
    let mut file = exec_event(5, "web1", 102, Some(42), &["echo"]);
    file.kind = pb::Kind::File as i32;
    file.source = pb::Source::Fanotify as i32;
    file.file = Some(pb::File {
        path: "/etc/cron.d/backdoor".into(),
        ops: vec!["create".into(), "close_write".into()],
        new_path: None,
    });
    v.push(file);
    v.push(at(
        exec_event(6, "web1", 103, Some(42), &["sudo", "id"]),
        103,
        100,
    ));
    let mut pv = exec_event(7, "web1", 103, Some(42), &["sudo", "id"]);
    pv.kind = pb::Kind::PrivilegeChange as i32;
    pv.privilege = Some(pb::Privilege {
        old_uid: 1000,
        new_uid: 0,
        old_euid: 0,
        new_euid: 0,
        via: "setresuid".into(),
        ..Default::default()
    });
    v.push(pv);
    v.push(at(
        exec_event(8, "web1", 104, Some(42), &["curl", "http://203.0.113.9/x"]),
        104,
        100,
    ));
    let mut conn = exec_event(9, "web1", 104, Some(42), &["curl"]);
    conn.kind = pb::Kind::NetConnect as i32;
    conn.connect = Some(pb::Connect {
        family: "ipv4".into(),
        protocol: "tcp".into(),
        dst_addr: "203.0.113.9".into(),
        dst_port: 80,
        result: "success".into(),
        ..Default::default()
    });
    v.push(conn);
    // Another session on the same host: not in the report.
    v.push(exec_event(
        10,
        "web1",
        200,
        Some(43),
        &["other-session-cmd"],
    ));
    // The logout record carries no session id; its tty ties it to the login.
    v.push(login(11, pb::Kind::Logout, None));
    v
}

fn chromium(args: &[&str], url: &str, profile: &Path) -> std::process::Output {
    let out = Command::new("timeout")
        .args(["120", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_report_renders_in_chromium_with_commands_in_order() {
    let dir = TempDir::new("report");
    let c = Collector::start(dir.path(), &[]);
    let mut s = raw::open(raw::channel(&c.grpc).await).await.unwrap();
    s.send_hello(hello("sensor-a", "boot-1", "web1")).await;
    s.send_batch(batch("sensor-a", "boot-1", 1, session_events()))
        .await;
    assert_eq!(s.next_ack().await.unwrap().stored, 11);
    drop(s);
    let page = dir.path().join("session-42.html");
    run_cli(&[
        "report",
        "--db",
        c.db.to_str().unwrap(),
        "--session",
        "42",
        "--html",
        page.to_str().unwrap(),
    ]);
    c.stop();
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to fetch.
    for external in ["src=\"http", "href=\"http", "<link", "<script"] {
        assert!(!html.contains(external), "{external} in the page");
    }

    let url = format!("file://{}", page.display());
    let profile = dir.path().join("chromium-profile");
    let shot = dir.path().join("shot.png");
    chromium(
        &[
            "--window-size=1200,1600",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
        &profile,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    // To look at it: REPORT_SCREENSHOT_TO=/tmp/report.png cargo test --test session_report
    if let Some(to) = std::env::var_os("REPORT_SCREENSHOT_TO") {
        std::fs::write(to, &png).unwrap();
    }
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    let dom = String::from_utf8(chromium(&["--dump-dom"], &url, &profile).stdout).unwrap();

    // The hostile argv is text: no <img> element, no script ran (the title is intact).
    assert!(dom.contains("<title>Session 42 on web1</title>"), "{dom}");
    assert!(!dom.contains("pwned</title>"));
    assert!(!dom.contains("<img"), "{dom}");
    assert!(dom.contains("&lt;img src=x"), "{dom}");

    // Login, the commands in order, files, the connection, the privilege change, logout.
    let timeline = &dom[dom.find("id=\"timeline\"").expect("timeline")..];
    let pos = |needle: &str| {
        timeline
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the timeline:\n{timeline}"))
    };
    let order = [
        pos("mallory on pts/3 from evil.example 198.51.100.7"),
        pos("-bash"),
        pos("ls -l /etc"),
        pos("echo '&lt;img"),
        pos("/etc/cron.d/backdoor"),
        pos("sudo id"),
        pos("setresuid: uid 1000 -&gt; 0"),
        pos("curl http://203.0.113.9/x"),
        pos("tcp 203.0.113.9:80 success"),
        pos("ev-logout"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?}\n{timeline}"
    );
    assert!(
        !dom.contains("other-session-cmd"),
        "another session leaked in"
    );
    // The tree: ls sits inside the -bash item.
    let tree = &dom[dom.find("id=\"tree\"").unwrap()..];
    let bash = tree.find("-bash").unwrap();
    let ls = tree.find("ls -l /etc").unwrap();
    assert!(tree[bash..ls].contains("<ul>"), "{tree}");
    assert!(dom.contains("198.51.100.7"));
}
