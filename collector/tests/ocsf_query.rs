//! `collector query --format ocsf`: events of every kind, shipped over gRPC to the real
//! collector, come back as OCSF 1.5.0 lines that the independent ocsf-emitter library accepts
//! (scripts/ocsf-validate in the venv scripts/setup makes).
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::raw;
use common::*;
use sensor_proto::v1 as pb;
use serde_json::Value;

fn ev(seq: u64, kind: pb::Kind, source: pb::Source) -> pb::Event {
    let mut e = exec_event(
        seq,
        "web1",
        100 + seq as u32,
        Some(42),
        &["sh", "-c", "<x>"],
    );
    e.kind = kind as i32;
    e.source = source as i32;
    e
}

fn every_kind() -> Vec<pb::Event> {
    use pb::{Kind as K, Source as S};
    let mut v = vec![ev(1, K::ProcessExec, S::Ebpf)];
    let mut exit = ev(2, K::ProcessExit, S::Ebpf);
    exit.exit = Some(pb::Exit {
        code: None,
        signal: Some(9),
        core_dumped: false,
    });
    v.push(exit);
    let mut conn = ev(3, K::NetConnect, S::Audit);
    conn.connect = Some(pb::Connect {
        family: "ipv4".into(),
        protocol: "tcp".into(),
        dst_addr: "192.0.2.1".into(),
        dst_port: 22,
        result: "refused".into(),
        errno: 111,
        ..Default::default()
    });
    v.push(conn);
    let mut file = ev(4, K::File, S::Fanotify);
    file.file = Some(pb::File {
        path: "/etc/passwd".into(),
        ops: vec!["modify".into()],
        new_path: None,
    });
    v.push(file);
    for (seq, k) in [(5, K::Login), (6, K::Logout), (7, K::LoginFailed)] {
        v.push(pb::Event {
            process: None,
            login: Some(pb::Login {
                user: "alice".into(),
                tty: Some("pts/0".into()),
                host: Some("laptop".into()),
                addr: Some("192.0.2.7".into()),
                pid: 0,
                session: Some(42),
                session_key: None,
            }),
            ..ev(seq, k, S::Wtmp)
        });
    }
    let mut pv = ev(8, K::PrivilegeChange, S::Ebpf);
    pv.privilege = Some(pb::Privilege {
        old_uid: 1000,
        new_uid: 0,
        via: "sudo".into(),
        ..Default::default()
    });
    v.push(pv);
    v.push(pb::Event {
        process: None,
        flow: Some(pb::Flow {
            protocol: "udp".into(),
            src_addr: "10.0.0.1".into(),
            src_port: 5000,
            dst_addr: "10.0.0.2".into(),
            dst_port: 53,
            state: "destroy".into(),
            bytes_in: Some(100),
            bytes_out: Some(50),
            packets_in: Some(2),
            packets_out: Some(1),
        }),
        ..ev(9, K::Flow, S::Conntrack)
    });
    v.push(pb::Event {
        process: None,
        health: Some(pb::Health {
            mode: "ebpf".into(),
            reason: "all checks passed".into(),
            ..Default::default()
        }),
        ..ev(10, K::SensorHealth, S::Sensor)
    });
    // A kind without an event above (one added to the schema): its generated sample.
    for k in pb::Kind::ALL {
        if !v.iter().any(|e| e.kind == k as i32) {
            let mut e = sensor_proto::samples::sample(k);
            e.seq = v.len() as u64 + 1;
            e.host = "web1".into();
            e.time_unix_ns = v.last().map_or(0, |l: &pb::Event| l.time_unix_ns) + 1;
            v.push(e);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_format_ocsf_validates_for_every_kind() {
    let dir = TempDir::new("ocsf-query");
    let c = Collector::start(dir.path(), &[]);
    let mut s = raw::open(raw::channel(&c.grpc).await).await.unwrap();
    s.send_hello(hello("sensor-a", "boot-1", "web1")).await;
    s.send_batch(batch("sensor-a", "boot-1", 1, every_kind()))
        .await;
    let n = every_kind().len();
    assert_eq!(s.next_ack().await.unwrap().stored as usize, n);
    drop(s);
    let text = run_cli(&["query", "--db", c.db.to_str().unwrap(), "--format", "ocsf"]);
    c.stop();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), n, "{text}");
    // The stored sensor id is qualified by the identity the transport proved (none here).
    assert_eq!(
        lines[0]["metadata"]["uid"],
        "sensor-a@unauthenticated::boot-1:1"
    );
    assert_eq!(lines[0]["device"]["uid"], "sensor-a@unauthenticated:");
    assert_eq!(lines[2]["activity_name"], "Refuse");
    assert_eq!(lines[8]["traffic"]["bytes"], 150);

    let file = dir.path().join("ocsf.jsonl");
    std::fs::write(&file, &text).unwrap();
    let venv = std::env::var_os("SENSOR_VENV").unwrap_or_else(|| "/opt/sensor-venv".into());
    let py = PathBuf::from(venv).join("bin/python3");
    assert!(py.exists(), "{} missing: run scripts/setup", py.display());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/ocsf-validate");
    let out = Command::new(py).arg(script).arg(&file).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report:#}");
    for k in pb::Kind::ALL {
        assert_eq!(
            report["validated"][k.as_str()],
            1,
            "{}: {report:#}",
            k.as_str()
        );
    }
}
