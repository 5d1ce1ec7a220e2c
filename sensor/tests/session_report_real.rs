//! Privileged: the session report of a real session. The real sensor (eBPF) ships to an
//! in-process collector; a shell opens a new audit session (writes its loginuid, as
//! pam_loginuid does), a login record for it is appended to the wtmp file the sensor follows,
//! the shell runs marker commands, and a logout record ends it. `collector::report::build`
//! renders the page (what `collector report --session ID --html FILE` writes), and headless
//! Chromium must show the login and the commands in the order they ran.
mod common;
mod ship_support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sensor::sources::logins::utmp::{UtmpRecord, DEAD_PROCESS, USER_PROCESS};
use ship_support::*;

fn privileged() -> bool {
    if std::env::var("SENSOR_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set SENSOR_PRIVILEGED_TESTS=1 and run as root");
    false
}

/// A utmp record of a session from 127.0.0.1, stamped now.
fn utmp(ut_type: i16, pid: i32, line: &str, user: &str) -> Vec<u8> {
    let local = "127.0.0.1".parse().unwrap();
    UtmpRecord::now(ut_type, pid, line, user, "127.0.0.1")
        .with_addr(local)
        .to_bytes()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// The sensor process; SIGTERM then SIGKILL on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn report_of_a_real_session_shows_its_commands_in_order() {
    if !privileged() {
        return;
    }
    let tmp = TempDir::new("report-real");
    let dir = tmp.path().to_path_buf();
    let collector = InProcCollector::start(&dir, "127.0.0.1:0", None);
    let wtmp = dir.join("wtmp");
    std::fs::write(&wtmp, b"").unwrap();
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ship]\nallow_plaintext_loopback = true\nspool_dir = {:?}\nbatch_max_delay_ms = 20\n\
             [logins]\nwtmp = {:?}\nbtmp = {:?}\npoll_interval_ms = 100\n",
            dir.join("spool"),
            wtmp.display().to_string(),
            dir.join("btmp").display().to_string()
        ),
    )
    .unwrap();
    let sensor = Running(
        Command::new(env!("CARGO_BIN_EXE_sensor"))
            .args(["run", "--mode", "ebpf", "--config"])
            .arg(&cfg)
            .arg("--status")
            .arg(dir.join("status.json"))
            .args(["--output", &format!("grpc://{}", collector.addr)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sensor.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // Attached once the status file appears.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("status.json").exists() {
        assert!(Instant::now() < deadline, "sensor did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));

    let m = format!("rs{}", std::process::id());
    let ses_file = dir.join("sessionid");
    let go = dir.join("go");
    // New audit session, then wait for the test's login record, then the commands.
    let script = format!(
        "echo 1000 > /proc/self/loginuid || exit 9; cat /proc/self/sessionid > '{ses}'; \
         while [ ! -e '{go}' ]; do sleep 0.05; done; \
         /bin/echo {m}-first >/dev/null; /bin/ls /{m}-second 2>/dev/null; \
         /bin/sh -c '/bin/echo {m}-third >/dev/null; true'; true",
        ses = ses_file.display(),
        go = go.display()
    );
    let mut shell = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&ses_file).map_or(true, |s| s.trim().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the shell did not start a session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let session: u32 = std::fs::read_to_string(&ses_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(session, u32::MAX, "no new audit session");
    let user = "reportuser";
    append(
        &wtmp,
        &utmp(USER_PROCESS, shell.id() as i32, "pts/77", user),
    );
    // The sensor reads the login while the shell lives (its session id comes from /proc).
    std::thread::sleep(Duration::from_millis(800));
    std::fs::write(&go, b"").unwrap();
    assert!(shell.wait().unwrap().success());
    append(&wtmp, &utmp(DEAD_PROCESS, shell.id() as i32, "pts/77", ""));
    wait_stored(&collector.db, &format!("{m}-third"), 2, 20);
    std::thread::sleep(Duration::from_millis(800));
    drop(sensor);

    let logins = stored(
        &collector.db,
        &collector::store::query::Filter {
            kinds: vec!["login".into(), "logout".into()],
            ..Default::default()
        },
    );
    let login = logins
        .iter()
        .find(|r| r.event.login.as_ref().is_some_and(|l| l.user == user))
        .unwrap_or_else(|| panic!("login not stored: {logins:#?}"));
    assert_eq!(
        login.event.process.as_ref().and_then(|p| p.session),
        Some(session),
        "{login:#?}"
    );
    let conn = collector::store::open_ro(&collector.db).unwrap();
    let (html, n) =
        collector::report::build(&conn, session, &collector::report::Window::default()).unwrap();
    assert!(n >= 5, "{n} events");
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let profile = dir.join("chromium-profile");
    let shot = dir.join("shot.png");
    let chromium = |args: &[String]| {
        let out = Command::new("timeout")
            .args([
                "120",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
            ])
            .args(["--disable-background-networking", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium (scripts/setup installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    chromium(&[format!("--screenshot={}", shot.display())]);
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
    let dom = String::from_utf8(chromium(&["--dump-dom".to_string()])).unwrap();
    let timeline = &dom[dom.find("id=\"timeline\"").expect("timeline")..];
    let pos = |needle: &str| {
        timeline
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the timeline:\n{timeline}"))
    };
    let order = [
        pos(&format!("{user} on pts/77")),
        pos(&format!("/bin/echo {m}-first")),
        pos(&format!("/bin/ls /{m}-second")),
        pos(&format!("/bin/echo {m}-third")),
        pos("ev-logout"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?}\n{timeline}"
    );
    assert!(
        dom.contains(&format!("<dd>{user}</dd>")),
        "login user in the header"
    );
    collector.stop();
}
