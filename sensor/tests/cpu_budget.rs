//! The CPU budget: with a budget far below what an exec-and-connect storm costs, the sensor
//! raises its shedding level, sheds in the documented order, and accounts for every event:
//! for each kind, the events its sources produced equal the events written plus the events
//! shed (by reason). Every exit of the storm is present, none was shed. Privileged.
mod common;

use std::collections::HashSet;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{marker, of_kind, privileged, Sensor};

const STORM: Duration = Duration::from_secs(8);

#[test]
fn storm_over_budget_is_shed_in_order_and_accounted() {
    if !privileged() {
        return;
    }
    let tmp = common::TempDir::new("budget");
    let dir = tmp.0.clone();
    let cfg = dir.join("sensor.toml");
    // Nothing else may remove events, so the accounting is exact: no noise rules, no file or
    // login sources (their events are counted too, but keep the test about the storm).
    std::fs::write(
        &cfg,
        "[limits]\ncpu_percent = 0.1\ncpu_window_secs = 1\n\
         [filter.noise]\nenabled = false\n[files]\nenabled = false\n[logins]\nenabled = false\n",
    )
    .unwrap();
    let sensor = Sensor::start("ebpf", &["--config", cfg.to_str().unwrap()]);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        let mut n = 0u64;
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let mut b = [0u8; 1];
            if s.read(&mut b).unwrap_or(0) == 1 && b[0] == b'q' {
                break;
            }
            n += 1;
        }
        n
    });
    let m = marker("shed");
    let mut pids = HashSet::new();
    let start = Instant::now();
    while start.elapsed() < STORM {
        // The same argv every time: repeats are what level 1 coalesces.
        let child = Command::new("/bin/true").arg(&m).spawn().unwrap();
        pids.insert(child.id() as u64);
        let status = child.wait_with_output().unwrap().status;
        assert!(status.success());
        drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    {
        use std::io::Write as _;
        let mut q = TcpStream::connect(("127.0.0.1", port)).unwrap();
        q.write_all(b"q").unwrap();
    }
    let accepted = acceptor.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let events = sensor.stop();

    let health = events
        .iter()
        .rev()
        .find(|e| e["kind"] == "sensor_health")
        .expect("final health event");
    let drops = &health["health"]["drops"];
    let counts = &health["health"]["events"];
    eprintln!(
        "storm: {} execs, {accepted} connects; shed: {}",
        pids.len(),
        serde_json::to_string(drops).unwrap()
    );
    assert!(
        counts["shed_level_raises"].as_u64().unwrap() >= 1,
        "{counts}"
    );
    let shed =
        |reason: &str, kind: &str| drops[format!("shed_{reason}_{kind}")].as_u64().unwrap_or(0);
    assert!(
        shed("repeat", "process_exec") > 0,
        "level 1 coalesced repeated execs: {drops}"
    );
    // From level 3 the eBPF programs drop connects themselves; those are never produced, so
    // they are outside the per-kind sum below and counted on their own.
    assert!(
        drops["shed_kind_net_connect_kernel"].as_u64().unwrap_or(0) > 0,
        "connects dropped in the kernel at level 3: {drops}"
    );

    // Exact accounting per kind: produced = written + shed.
    for kind in ["process_exec", "process_exit", "net_connect"] {
        let produced = counts[kind].as_u64().unwrap();
        let written = of_kind(&events, kind).len() as u64;
        let shed_total: u64 = ["repeat", "low_value", "kind", "exec_burst"]
            .iter()
            .map(|r| shed(r, kind))
            .sum();
        assert_eq!(
            produced,
            written + shed_total,
            "{kind}: produced {produced}, written {written}, shed {shed_total}"
        );
    }
    assert!(
        drops
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !(k.starts_with("shed_") && k.ends_with("process_exit"))),
        "exits are never shed: {drops}"
    );
    // Every storm child's exit is there, with its exit code.
    let exits: HashSet<u64> = events
        .iter()
        .filter(|e| e["kind"] == "process_exit" && e["exit"]["code"] == 0)
        .filter_map(|e| e["process"]["pid"].as_u64())
        .collect();
    let missing: Vec<&u64> = pids.iter().filter(|p| !exits.contains(p)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} storm exits missing: {:?}",
        missing.len(),
        pids.len(),
        &missing[..missing.len().min(10)]
    );
    let _: &Value = health;
}
