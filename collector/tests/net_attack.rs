//! Network attacks on the real `collector` binary, from an independent client (Python grpcio
//! with stubs generated from sensor-proto/sensor.proto; scripts/setup installs it):
//! - identity: a sensor holding host A's certificate cannot store events for host B, cannot
//!   take B's sensor record, and cannot occupy B's seqs, in SQLite and in JetStream;
//! - bounded input: the 16 MiB amplification message (`22 00` repeated: millions of default
//!   events), plain and gzip-compressed, and 1,000 idle connections leave the collector
//!   serving another sensor, with its peak RSS under [`RSS_BOUND_MIB`];
//! - one host's certificate holds at most `server.max_streams_per_host` streams, however
//!   many it opens, and another host is served meanwhile;
//! - on a plaintext listener (loopback, asked for explicitly), sockets that send nothing or
//!   half an HTTP/2 preface cannot hold the connection permits: they are closed after the
//!   handshake deadline and a sensor is served again.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use std::path::PathBuf;
use std::process::Command;

use common::attack::{open_to_all, vm_hwm_kib, Py};
use common::*;
use serde_json::Value;

/// `collector certs` into `dir`: a CA, the collector's certificate (localhost, 127.0.0.1)
/// and one client certificate per host. Returns the directory.
pub fn fleet_pki(dir: &Path, hosts: &[&str]) -> PathBuf {
    let pki = dir.join("pki");
    let run = |args: &[&str]| {
        let o = Command::new(bin())
            .arg("certs")
            .args(args)
            .arg("--dir")
            .arg(&pki)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "collector certs {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["init"]);
    run(&["collector", "--name", "localhost", "--name", "127.0.0.1"]);
    for h in hosts {
        run(&["sensor", "--host", h]);
    }
    // The attack client may run as nobody: let it read the PEM files of this test.
    for e in std::fs::read_dir(&pki).unwrap() {
        open_to_all(&e.unwrap().path(), 0o644);
    }
    open_to_all(&pki, 0o755);
    pki
}

/// Client arguments for a TLS connection with `host`'s certificate (`None`: no certificate).
pub fn tls_args(pki: &Path, host: Option<&str>) -> Vec<String> {
    let mut v = vec!["--ca".to_string(), pki.join("ca.pem").display().to_string()];
    if let Some(h) = host {
        v.push("--cert".into());
        v.push(pki.join(format!("{h}.pem")).display().to_string());
        v.push("--key".into());
        v.push(pki.join(format!("{h}.key")).display().to_string());
    }
    v
}

/// Serve flags for mutual TLS with the fleet PKI.
pub fn mtls_serve_args(pki: &Path) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        pki.join("localhost.pem").display().to_string(),
        "--tls-key".into(),
        pki.join("localhost.key").display().to_string(),
        "--client-ca".into(),
        pki.join("ca.pem").display().to_string(),
    ]
}

/// The collector's stated memory bound under these attacks (README "Security model").
const RSS_BOUND_MIB: u64 = 128;

fn metric(c: &Collector, line_prefix: &str) -> u64 {
    let text = c.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

fn send(py: &Py, target: &str, pki: &Path, cert: Option<&str>, args: &[&str]) -> Value {
    let mut a: Vec<String> = tls_args(pki, cert);
    a.extend(args.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    py.client("send", target, &a, false)
}

/// A's certificate against B's identity; then B's own events, which must all be stored.
/// Returns (A's acks, B's acks).
fn impersonation(py: &Py, target: &str, pki: &Path, tag: &str) -> (Value, Value) {
    // A Hello claiming host B with A's certificate: refused.
    let r = send(
        py,
        target,
        pki,
        Some("host-a"),
        &["--host", "host-b", "--sensor-id", "sensor-b"],
    );
    assert_eq!(r["code"], "PERMISSION_DENIED", "{r}");
    assert!(
        r["details"]
            .as_str()
            .unwrap()
            .contains("authenticated host"),
        "{r}"
    );
    // Hello as A, events claiming B: refused, nothing stored.
    let r = send(
        py,
        target,
        pki,
        Some("host-a"),
        &[
            "--host",
            "host-a",
            "--event-host",
            "host-b",
            "--events",
            "7",
        ],
    );
    assert_eq!(r["code"], "PERMISSION_DENIED", "{r}");
    assert!(r["acks"].as_array().unwrap().is_empty(), "{r}");
    // No certificate at all: refused before any message.
    let r = send(py, target, pki, None, &["--host", "host-b"]);
    assert_ne!(r["code"], "OK", "{r}");
    assert!(!r["welcome"].as_bool().unwrap(), "{r}");
    // A takes B's sensor id and boot id and sends seqs 1..=10 first (events of A's host,
    // the only ones it can send).
    let squat = send(
        py,
        target,
        pki,
        Some("host-a"),
        &[
            "--host",
            "host-a",
            "--sensor-id",
            "sensor-b",
            "--boot-id",
            "boot-b",
            "--marker",
            &format!("squat-{tag}"),
        ],
    );
    assert_eq!(squat["code"], "OK", "{squat}");
    // B's real events with the same seqs: stored, none taken for duplicates.
    let real = send(
        py,
        target,
        pki,
        Some("host-b"),
        &[
            "--host",
            "host-b",
            "--sensor-id",
            "sensor-b",
            "--boot-id",
            "boot-b",
            "--marker",
            &format!("real-{tag}"),
        ],
    );
    assert_eq!(real["code"], "OK", "{real}");
    (squat, real)
}

#[test]
fn a_certificate_for_host_a_cannot_write_or_occupy_host_b_sqlite() {
    let dir = TempDir::new("ident");
    let py = Py::new(dir.path());
    let pki = fleet_pki(dir.path(), &["host-a", "host-b"]);
    let args = mtls_serve_args(&pki);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Collector::start(dir.path(), &args);

    let (squat, real) = impersonation(&py, &c.grpc, &pki, "sqlite");
    assert_eq!(squat["acks"][0]["stored"], 10, "{squat}");
    assert_eq!(real["acks"][0]["stored"], 10, "{real}");
    assert_eq!(real["acks"][0]["duplicates"], 0, "{real}");

    // Host B's events are B's only; A's are filed under A's identity.
    let b = query(&c.db, &["--host", "host-b"]);
    assert_eq!(b.len(), 10, "{b:#?}");
    assert!(b.iter().all(|e| e["sensor_id"] == "sensor-b@host-b"));
    assert!(b
        .iter()
        .all(|e| e["process"]["argv"][0].as_str().unwrap() == "real-sqlite"));
    let a = query(&c.db, &["--host", "host-a"]);
    assert_eq!(a.len(), 10);
    assert!(a.iter().all(|e| e["sensor_id"] == "sensor-b@host-a"));
    // B's sensor record says host-b (A's Hello did not overwrite it).
    let conn = rusqlite::Connection::open(&c.db).unwrap();
    let host: String = conn
        .query_row(
            "SELECT host FROM sensors WHERE sensor_id = 'sensor-b@host-b'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(host, "host-b");
    assert_eq!(
        metric(&c, "collector_events_refused_host_total "),
        7,
        "refused events are counted"
    );
    assert_eq!(
        metric(
            &c,
            "collector_batches_rejected_total{reason=\"host_mismatch\"} "
        ),
        2
    );
    c.stop();
}

#[test]
fn a_certificate_for_host_a_cannot_occupy_host_b_jetstream() {
    if nats::skip_without_server("a_certificate_for_host_a_cannot_occupy_host_b_jetstream") {
        return;
    }
    let fleet::TestCluster {
        dir,
        cluster: _cluster,
        urls,
        rt: _rt,
    } = fleet::TestCluster::start("js-ident", 3, true);
    let py = Py::new(dir.path());
    let pki = fleet_pki(dir.path(), &["host-a", "host-b"]);
    let cfg = fleet::write_config(dir.path(), "ident", &urls);
    let mut args = vec!["--config".to_string(), cfg.display().to_string()];
    args.extend(mtls_serve_args(&pki));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = dir.path().join("col");
    std::fs::create_dir_all(&d).unwrap();
    let c = Collector::start(&d, &args);

    let (squat, real) = impersonation(&py, &c.grpc, &pki, "js");
    assert_eq!(squat["acks"][0]["stored"], 10, "{squat}");
    // Same sensor id, boot id and seqs as A's squat: JetStream must not take them for
    // duplicates (the message ids carry the identity).
    assert_eq!(real["acks"][0]["stored"], 10, "{real}");
    assert_eq!(real["acks"][0]["duplicates"], 0, "{real}");
    c.stop();

    // `collector consume` files both apart: B's 10 events are B's.
    let db = dir.path().join("consumed.db");
    let report = fleet::consume(&cfg, &db, &["--until-caught-up"]);
    assert_eq!(report["duplicates"], 0, "{report}");
    let b = query(&db, &["--host", "host-b"]);
    assert_eq!(b.len(), 10, "{report} {b:#?}");
    assert!(b.iter().all(|e| e["sensor_id"] == "sensor-b@host-b"
        && e["process"]["argv"][0].as_str().unwrap() == "real-js"));
    assert_eq!(query(&db, &["--host", "host-a"]).len(), 10);
}

/// One batch from host B's sensor; panics unless acknowledged within `limit`.
fn served(py: &Py, target: &str, pki: &Path, first_seq: u64, limit: Duration) {
    let t = Instant::now();
    let r = send(
        py,
        target,
        pki,
        Some("host-b"),
        &[
            "--host",
            "host-b",
            "--first-seq",
            &first_seq.to_string(),
            "--timeout",
            &limit.as_secs().to_string(),
        ],
    );
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(r["acks"][0]["stored"], 10, "{r}");
    eprintln!("other sensor served in {:?}", t.elapsed());
}

#[test]
fn amplification_and_idle_connections_leave_the_collector_serving_under_its_bound() {
    // 1,000 connections need more than the default 1,024 descriptors in this process.
    common::attack::raise_nofile(8192);
    let dir = TempDir::new("amplify");
    let py = Py::new(dir.path());
    let pki = fleet_pki(dir.path(), &["host-a", "host-b"]);
    let args = mtls_serve_args(&pki);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Collector::start(dir.path(), &args);
    served(&py, &c.grpc, &pki, 1, Duration::from_secs(20));
    let idle_rss = vm_hwm_kib(c.pid());

    // The amplification message, from an authenticated sensor (worst case), plain and gzip.
    let mut seq = 100;
    for gzip in [false, true] {
        let mut a = tls_args(&pki, Some("host-a"));
        a.extend(["--host".into(), "host-a".into()]);
        if gzip {
            a.push("--gzip".into());
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let r = py.client("amplify", &c.grpc, &a, false);
        eprintln!("amplification (gzip {gzip}): {r}");
        assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}");
        assert!(
            r["details"]
                .as_str()
                .unwrap()
                .contains("more than 20000 events"),
            "{r}"
        );
        assert!(r["message_bytes"].as_u64().unwrap() > 16_000_000);
        served(&py, &c.grpc, &pki, seq, Duration::from_secs(20));
        seq += 100;
    }

    // 1,000 idle TCP connections (no TLS handshake), held while another sensor is served.
    let idle = py.hold(&["idle", "--addr", &c.grpc, "--n", "1000"], false);
    assert_eq!(idle.first["opened"], 1000, "{}", idle.first);
    served(&py, &c.grpc, &pki, seq, Duration::from_secs(20));
    // The TLS handshake timeout (10 s) closes them.
    std::thread::sleep(Duration::from_secs(12));
    let after = idle.finish();
    eprintln!("idle connections after the handshake timeout: {after}");
    assert_eq!(after["still_open"], 0, "{after}");

    let peak = vm_hwm_kib(c.pid());
    eprintln!(
        "collector peak RSS: {} MiB after start and one batch, {} MiB after the attacks (bound {RSS_BOUND_MIB} MiB)",
        idle_rss / 1024,
        peak / 1024
    );
    assert!(
        peak < RSS_BOUND_MIB * 1024,
        "peak RSS {} MiB over the bound",
        peak / 1024
    );
    assert_eq!(
        metric(
            &c,
            "collector_batches_rejected_total{reason=\"too_many_events\"} "
        ),
        2
    );
    assert_eq!(query(&c.db, &["--host", "host-b"]).len(), 40);
    c.stop();
}

/// A plaintext loopback collector with 40 connection permits and a 2 s handshake deadline.
/// 20 silent sockets and 20 that send half an HTTP/2 preface take every permit (a sensor is
/// refused meanwhile, which shows the attack is real); once the deadline passes they are
/// closed and counted, and the sensor is served without the attacker letting go.
#[test]
fn idle_plaintext_sockets_cannot_hold_the_connection_permits() {
    let dir = TempDir::new("preface");
    let py = Py::new(dir.path());
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        "[server]\nmax_connections = 40\ntls_handshake_timeout_secs = 2\n",
    )
    .unwrap();
    let c = Collector::start(dir.path(), &["--config", cfg.to_str().unwrap()]);
    let plain = |first: u64, timeout: &str| {
        py.client(
            "send",
            &c.grpc,
            &[
                "--host",
                "plain-host",
                "--first-seq",
                &first.to_string(),
                "--timeout",
                timeout,
            ],
            true,
        )
    };
    let r = plain(1, "10");
    assert_eq!(r["code"], "OK", "{r}");

    let silent = py.hold(&["idle", "--addr", &c.grpc, "--n", "20"], true);
    let partial = py.hold(&["idle", "--addr", &c.grpc, "--n", "20", "--partial"], true);
    assert_eq!(silent.first["opened"], 20, "{}", silent.first);
    assert_eq!(partial.first["opened"], 20, "{}", partial.first);
    // Every permit is taken now: a sensor connecting at once is refused.
    let refused = plain(100, "1");
    assert_ne!(refused["code"], "OK", "{refused}");
    // After the deadline the 40 sockets are closed, and the attacker still holds them open.
    std::thread::sleep(Duration::from_secs(3));
    let r = plain(200, "10");
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(r["acks"][0]["stored"], 10, "{r}");
    assert_eq!(silent.finish()["still_open"], 0);
    assert_eq!(partial.finish()["still_open"], 0);
    assert_eq!(metric(&c, "collector_connections_no_preface_total "), 40);
    assert!(metric(&c, "collector_connections_refused_total ") >= 1);
    assert_eq!(query(&c.db, &["--host", "plain-host"]).len(), 20);
    c.stop();
}

/// Host A's certificate opens 6 streams at once against a quota of 4: 4 are welcomed, 2 are
/// refused with RESOURCE_EXHAUSTED and counted, and host B is served while A holds its 4.
/// Once A lets go, A is served again.
#[test]
fn one_host_cannot_hold_more_than_its_streams() {
    let dir = TempDir::new("streams");
    let py = Py::new(dir.path());
    let pki = fleet_pki(dir.path(), &["host-a", "host-b"]);
    let cfg = dir.path().join("collector.toml");
    std::fs::write(&cfg, "[server]\nmax_streams_per_host = 4\n").unwrap();
    let mut args = mtls_serve_args(&pki);
    args.extend(["--config".into(), cfg.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Collector::start(dir.path(), &args);

    let mut a = tls_args(&pki, Some("host-a"));
    a.extend(["--host", "host-a", "--n", "6", "--timeout", "30"].map(String::from));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let held = py.hold_client("streams", &c.grpc, &a);
    eprintln!("host A's streams: {}", held.first);
    assert_eq!(held.first["results"]["welcome"], 4, "{}", held.first);
    assert_eq!(
        held.first["results"]["RESOURCE_EXHAUSTED"], 2,
        "{}",
        held.first
    );
    served(&py, &c.grpc, &pki, 1, Duration::from_secs(20));
    assert_eq!(
        metric(
            &c,
            "collector_batches_rejected_total{reason=\"streams_per_host\"} "
        ),
        2
    );
    held.finish();
    let r = send(
        &py,
        &c.grpc,
        &pki,
        Some("host-a"),
        &["--host", "host-a", "--timeout", "20"],
    );
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(r["acks"][0]["stored"], 10, "{r}");
    c.stop();
}
