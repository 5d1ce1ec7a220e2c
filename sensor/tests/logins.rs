//! Privileged (runs the real sensor): logins, logouts and failed logins from wtmp/btmp files
//! the test owns, across half-written records, a corrupt record, rotation and truncation.
mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;
use sensor::sources::logins::utmp::{self, UtmpRecord, DEAD_PROCESS, LOGIN_PROCESS, USER_PROCESS};
use serde_json::Value;

/// A utmp record stamped now, from `addr` unless it is all zero.
fn record(ut_type: i16, pid: i32, line: &str, user: &str, host: &str, addr: [u8; 16]) -> Vec<u8> {
    let mut r = UtmpRecord::now(ut_type, pid, line, user, host);
    r.addr = utmp::parse_addr(&addr);
    r.to_bytes()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn logins<'a>(events: &'a [Value], user: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["login"]["user"] == user)
        .collect()
}

#[test]
fn wtmp_and_btmp_are_followed() {
    if !privileged() {
        return;
    }
    let dir = std::env::temp_dir().join(marker("logins-it"));
    std::fs::create_dir_all(&dir).unwrap();
    let (wtmp, btmp) = (dir.join("wtmp"), dir.join("btmp"));
    std::fs::write(
        &wtmp,
        record(USER_PROCESS, 1, "pts/9", "history", "old", [0; 16]),
    )
    .unwrap();
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[logins]\nwtmp = \"{}\"\nbtmp = \"{}\"\npoll_interval_ms = 100\n",
            wtmp.display(),
            btmp.display()
        ),
    )
    .unwrap();
    let sensor = Sensor::start("auto", &["--config", cfg.to_str().unwrap()]);
    let user = marker("u");
    let user = &user[..user.len().min(30)];

    let mut v6 = [0u8; 16];
    v6[..2].copy_from_slice(&[0x20, 0x01]);
    v6[15] = 7;
    // a login written in two halves
    let login = record(
        USER_PROCESS,
        std::process::id() as i32,
        "pts/7",
        user,
        "2001::7",
        v6,
    );
    append(&wtmp, &login[..100]);
    std::thread::sleep(Duration::from_millis(300));
    append(&wtmp, &login[100..]);
    // a corrupt record (unknown type), then the logout
    let mut bad = record(USER_PROCESS, 1, "x", "x", "x", [0; 16]);
    bad[0..2].copy_from_slice(&77i16.to_ne_bytes());
    append(&wtmp, &bad);
    append(
        &wtmp,
        &record(
            DEAD_PROCESS,
            std::process::id() as i32,
            "pts/7",
            "",
            "",
            [0; 16],
        ),
    );
    // a failed login with an IPv4 address. wtmp and btmp are followed separately, so the
    // order across the two files is the order they are read in: let the logout be read first.
    std::thread::sleep(Duration::from_millis(500));
    append(
        &btmp,
        &record(
            LOGIN_PROCESS,
            0,
            "ssh:notty",
            user,
            "192.0.2.1",
            [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    // rotation: a new wtmp file replaces the old one
    std::fs::rename(&wtmp, dir.join("wtmp.1")).unwrap();
    append(&wtmp, &record(USER_PROCESS, 2, "tty3", user, "", [0; 16]));
    std::thread::sleep(Duration::from_millis(500));
    // truncation in place, then a new record
    std::fs::File::create(&wtmp).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append(&wtmp, &record(DEAD_PROCESS, 2, "tty3", "", "", [0; 16]));
    std::thread::sleep(Duration::from_millis(800));
    let events = sensor.stop();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        logins(&events, "history").is_empty(),
        "history is not replayed by default"
    );
    let mine = logins(&events, user);
    let kinds: Vec<&str> = mine.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["login", "logout", "login_failed", "login", "logout"],
        "{mine:?}"
    );
    assert_eq!(mine[0]["source"], "wtmp");
    assert_eq!(mine[0]["login"]["tty"], "pts/7");
    assert_eq!(mine[0]["login"]["addr"], "2001::7");
    assert_eq!(mine[0]["process"]["pid"], std::process::id());
    assert_eq!(
        mine[1]["login"]["host"], "2001::7",
        "logout carries the login's host"
    );
    assert_eq!(mine[2]["source"], "btmp");
    assert_eq!(mine[2]["login"]["addr"], "192.0.2.1");
    assert_eq!(mine[3]["login"]["tty"], "tty3");
    let health = of_kind(&events, "sensor_health");
    let last = health.last().unwrap();
    assert_eq!(
        last["health"]["drops"]["login_corrupt_records"], 1,
        "{last}"
    );
    assert!(
        last["health"]["events"]["login_file_rotations"]
            .as_u64()
            .unwrap()
            >= 1
    );
}
