//! TLS: a sensor with the wrong CA, or without the client certificate the collector
//! requires, is refused; the refusal is reported in plain words; it keeps spooling, and
//! once configured right it delivers everything it spooled meanwhile.
mod common;
mod ship_support;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use collector::config::TlsSection;
use sensor::sinks::grpc::ShipConfig;
use ship_support::*;

async fn refused(cfg: ShipConfig, marker: &str, from: u64, expect: &str) {
    let s = Shipper::start(cfg);
    for i in from..from + 100 {
        s.send(synth(marker, i)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.stats.connect_failures.load(Relaxed) < 2 || s.stats.events_spooled.load(Relaxed) < 100 {
        assert!(Instant::now() < deadline, "no refusal seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = s.stats.last_error();
    assert!(err.contains(expect), "{err}");
    assert_eq!(s.stats.events_acked.load(Relaxed), 0);
    assert_eq!(s.stats.events_spooled.load(Relaxed), 100, "keeps spooling");
    assert!(!s.stats.connected.load(Relaxed));
    eprintln!("refusal reported as: {err}");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_and_missing_client_cert_are_refused() {
    let dir = TempDir::new("tls");
    let pki = certs::make(dir.path(), "good");
    let other = certs::make(dir.path(), "other");
    let col = InProcCollector::start(
        dir.path(),
        "127.0.0.1:0",
        Some(TlsSection {
            cert_file: Some(pki.server_cert.clone()),
            key_file: Some(pki.server_key.clone()),
            client_ca_file: Some(pki.ca.clone()),
            require_client_cert: true,
            allow_anonymous_clients: false,
        }),
    );
    let marker = format!("tls{}", std::process::id());
    let spool = dir.path().join("spool");
    let base = |ca: &std::path::Path| ShipConfig {
        ca_file: Some(ca.to_path_buf()),
        drain_timeout_secs: 1,
        server_name: "localhost".into(),
        host: certs::CLIENT_HOST.into(),
        ..ship_cfg(&spool, &format!("grpcs://{}", col.addr))
    };

    // Wrong CA (with a valid client certificate): we refuse the collector.
    let mut cfg = base(&other.ca);
    cfg.client_cert_file = Some(pki.client_cert.clone());
    cfg.client_key_file = Some(pki.client_key.clone());
    refused(cfg, &marker, 0, "does not chain to the pinned CA").await;

    // Right CA, no client certificate: the collector refuses us.
    refused(base(&pki.ca), &marker, 100, "requires a client certificate").await;

    // A client certificate from another CA: refused too.
    let mut cfg = base(&pki.ca);
    cfg.client_cert_file = Some(other.client_cert.clone());
    cfg.client_key_file = Some(other.client_key.clone());
    refused(cfg, &marker, 200, "client certificate").await;

    // Fixed: everything spooled during the refusals is delivered, plus new events.
    let mut cfg = base(&pki.ca);
    cfg.client_cert_file = Some(pki.client_cert.clone());
    cfg.client_key_file = Some(pki.client_key.clone());
    cfg.drain_timeout_secs = 20;
    let s = Shipper::start(cfg);
    for i in 300..400 {
        s.send(synth(&marker, i)).await;
    }
    let stats = s.stats.clone();
    s.stop().await.unwrap();
    assert_eq!(stats.events_acked.load(Relaxed), 400);
    let db = col.db.clone();
    tokio::task::spawn_blocking(move || {
        assert_exactly_once(&db, &marker, 400);
        col.stop();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_remote_address_is_refused_at_start() {
    let dir = TempDir::new("plain");
    let cfg = ShipConfig {
        address: "192.0.2.1:4317".into(),
        allow_plaintext_loopback: true,
        spool_dir: dir.path().join("spool"),
        ..Default::default()
    };
    let e = cfg.check().unwrap_err().to_string();
    assert!(e.contains("refusing plaintext"), "{e}");
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let r =
        sensor::sinks::grpc::run_shipper(rx, cfg, Default::default(), Default::default(), stop_rx)
            .await;
    assert!(r.unwrap_err().to_string().contains("refusing plaintext"));
    // A CA file that is not PEM is caught at start too.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "nope").unwrap();
    let cfg = ShipConfig {
        address: "collector.example:4317".into(),
        ca_file: Some(bad),
        spool_dir: dir.path().join("spool"),
        ..Default::default()
    };
    assert!(cfg.check().unwrap_err().to_string().contains("no PEM"));
}
