//! OCSF export of every kind, from fully populated events: each output validates with the
//! independent ocsf-emitter library (scripts/ocsf-validate, in the venv scripts/setup makes),
//! and no field of the event model is lost (every value of the event's JSON is somewhere in
//! the OCSF event).
use std::collections::HashMap;
use std::path::PathBuf;

use sensor_proto::json::event_to_json;
use sensor_proto::ocsf::{to_ocsf, Origin};
use sensor_proto::v1::*;
use serde_json::Value;

fn process(pid: u32) -> Process {
    Process {
        pid,
        tid: Some(pid + 1),
        ppid: 4242,
        start_time_unix_ns: Some(1_700_000_000_111_222_333),
        start_boottime_ns: 98_765_432_100,
        uid: 1001,
        euid: 1002,
        gid: 1003,
        egid: 1004,
        auid: Some(1005),
        session: Some(77),
        tty: Some("pts/9".into()),
        comm: "marker-comm".into(),
        exe: Some("/usr/bin/marker-exe".into()),
        exe_deleted: true,
        cwd: Some("/srv/marker-cwd".into()),
        argv: Some(Argv {
            args: vec!["marker-exe".into(), "two words".into(), "<b>&".into()],
            truncated: true,
            omitted_bytes: 7777,
        }),
        cgroup_id: 31337,
        container_id: "c0ffee".into(),
        ancestors: vec![
            Ancestor {
                pid: 4242,
                comm: "marker-parent".into(),
                exe: "/usr/bin/parent-exe".into(),
            },
            Ancestor {
                pid: 1,
                comm: "systemd".into(),
                exe: "/usr/lib/systemd/systemd".into(),
            },
        ],
        incomplete: vec!["loginuid".into()],
        user: Some("marker-user".into()),
        filename: Some("./marker-exe".into()),
    }
}

/// One fully populated event per kind (and per activity where a kind has several): written
/// here for the kinds with a class of their own, the generated sample
/// (`sensor_proto::samples`, seq 100 and up) for any other kind, so a kind added to the
/// schema is covered without an edit here.
pub fn samples() -> Vec<Event> {
    let base = |seq: u64, kind: Kind, source: Source| Event {
        seq,
        time_unix_ns: 1_700_000_001_000_000_007 + seq as i64,
        host: "marker-host".into(),
        source: source as i32,
        kind: kind as i32,
        ..Default::default()
    };
    let connect = |result: &str, errno: i32| Connect {
        family: "ipv6".into(),
        protocol: "tcp".into(),
        dst_addr: "2001:db8::7".into(),
        dst_port: 4433,
        result: result.into(),
        errno,
        src_addr: Some("2001:db8::8".into()),
        src_port: Some(51515),
    };
    let flow = |state: &str| Flow {
        protocol: "udp".into(),
        src_addr: "10.1.2.3".into(),
        src_port: 5353,
        dst_addr: "10.3.2.1".into(),
        dst_port: 53,
        state: state.into(),
        bytes_in: Some(1111),
        bytes_out: Some(2222),
        packets_in: Some(33),
        packets_out: Some(44),
    };
    let file = |ops: &[&str], new_path: Option<&str>| File {
        path: "/etc/marker.conf".into(),
        ops: ops.iter().map(|s| s.to_string()).collect(),
        new_path: new_path.map(String::from),
    };
    let login = Login {
        user: "marker-login".into(),
        tty: Some("pts/5".into()),
        host: Some("jump.example".into()),
        addr: Some("192.0.2.9".into()),
        pid: 5555,
        session: Some(88),
        session_key: Some("marker-session-key".into()),
    };
    let mut v = Vec::new();
    v.push(Event {
        process: Some(process(100)),
        ..base(1, Kind::ProcessExec, Source::Ebpf)
    });
    v.push(Event {
        process: Some(process(101)),
        exit: Some(Exit {
            code: Some(3),
            signal: Some(9),
            core_dumped: true,
        }),
        ..base(2, Kind::ProcessExit, Source::Audit)
    });
    v.push(Event {
        process: Some(process(102)),
        privilege: Some(Privilege {
            old_uid: 1001,
            new_uid: 0,
            old_euid: 1002,
            new_euid: 6,
            old_gid: 1003,
            new_gid: 7,
            via: "setresuid".into(),
            old_egid: Some(1004),
            new_egid: Some(8),
            old_caps: Some("0x0".into()),
            new_caps: Some("0x1ffffffffff".into()),
        }),
        ..base(3, Kind::PrivilegeChange, Source::Ebpf)
    });
    for (i, (r, e)) in [("success", 0), ("refused", 111), ("timeout", 110)]
        .into_iter()
        .enumerate()
    {
        v.push(Event {
            process: Some(process(103)),
            connect: Some(connect(r, e)),
            ..base(4 + i as u64, Kind::NetConnect, Source::Ebpf)
        });
    }
    for (i, s) in ["new", "update", "destroy"].into_iter().enumerate() {
        v.push(Event {
            flow: Some(flow(s)),
            ..base(10 + i as u64, Kind::Flow, Source::Conntrack)
        });
    }
    let file_cases: [(&[&str], Option<&str>); 7] = [
        (&["create", "close_write"], None),
        (&["modify"], None),
        (&["delete"], None),
        (&["rename"], Some("/etc/marker.new")),
        (&["attrib"], None),
        (&["open"], None),
        (&["close"], None),
    ];
    for (i, (ops, np)) in file_cases.into_iter().enumerate() {
        v.push(Event {
            process: (i != 1).then(|| process(104)),
            file: Some(file(ops, np)),
            ..base(20 + i as u64, Kind::File, Source::Fanotify)
        });
    }
    v.push(Event {
        login: Some(login.clone()),
        ..base(30, Kind::Login, Source::Wtmp)
    });
    v.push(Event {
        login: Some(login.clone()),
        ..base(31, Kind::Logout, Source::Wtmp)
    });
    v.push(Event {
        login: Some(Login {
            host: None,
            addr: None,
            pid: 0,
            session: None,
            ..login
        }),
        ..base(32, Kind::LoginFailed, Source::Btmp)
    });
    v.push(Event {
        health: Some(Health {
            mode: "ebpf".into(),
            reason: "marker reason".into(),
            uptime_s: 12.5,
            drops: [("file".to_string(), 17)].into(),
            events: [("process_exec".to_string(), 19)].into(),
            cpu: 0.75,
            rss_bytes: 12_345_678,
            lag_ms: 2.25,
        }),
        ..base(40, Kind::SensorHealth, Source::Sensor)
    });
    for (i, k) in Kind::ALL.into_iter().enumerate() {
        if !v.iter().any(|e| e.kind == k as i32) {
            let mut e = sensor_proto::samples::sample(k);
            e.seq = 100 + i as u64;
            v.push(e);
        }
    }
    v
}

/// Every scalar of `v` (strings, numbers, booleans) as text: OCSF ids are strings where the
/// event model has numbers.
fn scalars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.values().for_each(|x| scalars(x, out)),
        Value::Array(a) => a.iter().for_each(|x| scalars(x, out)),
        Value::Null => {}
        Value::String(s) => out.push(s.clone()),
        other => out.push(other.to_string()),
    }
}

#[test]
fn every_kind_is_covered_by_the_samples() {
    let kinds: Vec<i32> = samples().iter().map(|e| e.kind).collect();
    for k in Kind::ALL {
        assert!(kinds.contains(&(k as i32)), "no sample of {}", k.as_str());
    }
}

#[test]
fn nothing_is_lost() {
    for ev in samples() {
        let ocsf = to_ocsf(&ev, Origin::default());
        let mut have = Vec::new();
        scalars(&ocsf, &mut have);
        let mut want = Vec::new();
        scalars(&event_to_json(&ev), &mut want);
        for w in want {
            if w.is_empty() {
                continue;
            }
            assert!(
                have.contains(&w),
                "{}: value {w} of the event is not in its OCSF form:\n{ocsf:#}",
                Kind::try_from(ev.kind).unwrap().as_str()
            );
        }
    }
}

#[test]
fn classes_and_activities() {
    let want: HashMap<u64, (u64, u64)> = [
        (1, (1007, 1)),
        (2, (1007, 2)),
        (3, (1007, 5)),
        (4, (4001, 1)),
        (5, (4001, 5)),
        (6, (4001, 4)),
        (10, (4001, 1)),
        (11, (4001, 6)),
        (12, (4001, 2)),
        (20, (1001, 1)),
        (21, (1001, 3)),
        (22, (1001, 4)),
        (23, (1001, 5)),
        (24, (1001, 6)),
        (25, (1001, 14)),
        (26, (1001, 99)),
        (30, (3002, 1)),
        (31, (3002, 2)),
        (32, (3002, 1)),
        (40, (6002, 99)),
    ]
    .into();
    for ev in samples() {
        let o = to_ocsf(&ev, Origin::default());
        let got = (
            o["class_uid"].as_u64().unwrap(),
            o["activity_id"].as_u64().unwrap(),
        );
        // A generated sample (a kind with no class of its own) is a Base Event, Other.
        let want = want.get(&ev.seq).copied().unwrap_or((0, 99));
        assert_eq!(got, want, "seq {}: {o:#}", ev.seq);
    }
    let failed = samples().into_iter().find(|e| e.seq == 32).unwrap();
    let o = to_ocsf(&failed, Origin::default());
    assert_eq!(
        (o["status_id"].as_u64(), o["status"].as_str()),
        (Some(2), Some("Failure"))
    );
    let flow = samples().into_iter().find(|e| e.seq == 12).unwrap();
    let o = to_ocsf(&flow, Origin::default());
    assert_eq!(o["traffic"]["bytes"], 3333);
    assert_eq!(o["traffic"]["packets_out"], 44);
    let exec = samples().into_iter().next().unwrap();
    let o = to_ocsf(&exec, Origin::default());
    assert_eq!(o["process"]["pid"], 100);
    assert_eq!(o["actor"]["process"]["pid"], 4242);
    assert_eq!(o["actor"]["process"]["name"], "marker-parent");
    assert_eq!(o["actor"]["user"]["uid"], "1005");
    assert_eq!(o["device"]["hostname"], "marker-host");
}

/// Python of the test venv (scripts/setup).
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("SENSOR_VENV").unwrap_or_else(|| "/opt/sensor-venv".into());
    PathBuf::from(venv).join("bin/python3")
}

#[test]
fn every_kind_validates_with_ocsf_emitter() {
    let dir = std::env::temp_dir().join(format!("ocsf-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let origin = Origin {
        sensor_id: Some("sensor-1"),
        boot_id: Some("boot-1"),
    };
    let lines: String = samples()
        .iter()
        .map(|e| format!("{}\n", to_ocsf(e, origin)))
        .collect();
    std::fs::write(&path, lines).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ocsf-validate");
    let py = venv_python();
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup (it installs ocsf-emitter there)",
        py.display()
    );
    let out = std::process::Command::new(&py)
        .arg(&script)
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validator output is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "validation failed: {report:#}");
    for k in Kind::ALL {
        assert!(
            report["validated"][k.as_str()].as_u64().unwrap_or(0) > 0,
            "{} not validated: {report:#}",
            k.as_str()
        );
    }
    assert_eq!(
        report["validated"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        samples().len() as u64
    );
}

/// An event of a kind with no class of its own (here a kind number this build does not
/// know, carrying every payload) is an OCSF Base Event with its whole event-model JSON under
/// `unmapped`, and validates; a Base Event with an invented attribute does not.
#[test]
fn a_kind_without_a_class_is_a_base_event_with_everything() {
    let mut ev = sensor_proto::samples::sample(Kind::ProcessExec);
    for k in Kind::ALL {
        let s = sensor_proto::samples::sample(k);
        ev.exit = ev.exit.or(s.exit);
        ev.connect = ev.connect.or(s.connect);
        ev.health = ev.health.or(s.health);
        ev.file = ev.file.or(s.file);
        ev.login = ev.login.or(s.login);
        ev.privilege = ev.privilege.or(s.privilege);
        ev.flow = ev.flow.or(s.flow);
    }
    ev.kind = 999;
    let o = to_ocsf(&ev, Origin::default());
    assert_eq!(
        (
            &o["class_uid"],
            &o["category_uid"],
            &o["activity_id"],
            &o["type_uid"]
        ),
        (&0.into(), &0.into(), &99.into(), &99.into()),
        "{o:#}"
    );
    let json = event_to_json(&ev);
    let payloads: Vec<&String> = json
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !["seq", "time", "host", "source", "kind"].contains(&k.as_str()))
        .collect();
    assert_eq!(
        payloads.len(),
        8,
        "every payload is in the sample: {json:#}"
    );
    for k in payloads {
        assert_eq!(
            o["unmapped"][k], json[k],
            "payload {k} whole under unmapped"
        );
    }
    let mut broken = o.clone();
    broken["actor_name"] = "x".into();
    let dir = std::env::temp_dir().join(format!("ocsf-base-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.jsonl");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&good, format!("{o}\n")).unwrap();
    std::fs::write(&bad, format!("{broken}\n")).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ocsf-validate");
    let run = |p: &PathBuf| {
        std::process::Command::new(venv_python())
            .arg(&script)
            .arg(p)
            .output()
            .unwrap()
    };
    let (ok, rejected) = (run(&good), run(&bad));
    std::fs::remove_dir_all(&dir).ok();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "Base Event rejected: {text}");
    assert!(text.contains("\"unspecified\": 1"), "{text}");
    let text = String::from_utf8_lossy(&rejected.stdout);
    assert!(
        !rejected.status.success(),
        "invented attribute accepted: {text}"
    );
    assert!(text.contains("actor_name"), "{text}");
}

/// The validator is not vacuous: a wrong type_uid, a missing required attribute and an
/// invented attribute are each rejected.
#[test]
fn validator_rejects_broken_events() {
    let ev = &samples()[0];
    let good = to_ocsf(ev, Origin::default());
    let mut wrong_type = good.clone();
    wrong_type["type_uid"] = 100702.into();
    let mut no_process = good.clone();
    no_process.as_object_mut().unwrap().remove("process");
    let mut invented = good.clone();
    invented["process"]["argv"] = serde_json::json!(["x"]);
    for (name, bad) in [
        ("type_uid", wrong_type),
        ("process", no_process),
        ("argv", invented),
    ] {
        let dir = std::env::temp_dir().join(format!("ocsf-bad-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.jsonl");
        std::fs::write(&path, format!("{bad}\n")).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ocsf-validate");
        let out = std::process::Command::new(venv_python())
            .arg(&script)
            .arg(&path)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{name}: accepted: {text}");
        assert!(text.contains(name), "{name}: not named in {text}");
    }
}
