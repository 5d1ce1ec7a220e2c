use super::super::codec::encode_outbound;
use super::*;
use prost::Message as _;

fn cfg(addr: &str) -> ShipConfig {
    ShipConfig {
        address: addr.into(),
        ..Default::default()
    }
}

#[test]
fn plaintext_only_to_loopback_when_allowed() {
    let e = Target::from_config(&cfg("127.0.0.1:4317")).unwrap_err();
    assert!(e.to_string().contains("refusing plaintext"), "{e}");
    let mut c = cfg("127.0.0.1:4317");
    c.allow_plaintext_loopback = true;
    let t = Target::from_config(&c).unwrap();
    assert_eq!(t.uri(), "http://127.0.0.1:4317");
    for a in [
        "[::1]:1",
        "localhost:2",
        "grpc://127.1.2.3:3",
        "http://[::ffff:127.0.0.1]:4",
    ] {
        c.address = a.into();
        assert!(!Target::from_config(&c).unwrap().tls, "{a}");
    }
    for a in [
        "10.0.0.1:4317",
        "collector.example:4317",
        "http://0.0.0.0:1",
    ] {
        c.address = a.into();
        let e = Target::from_config(&c).unwrap_err();
        assert!(
            matches!(e, ClientError::PlaintextRefused { .. }),
            "{a}: {e}"
        );
    }
}

#[test]
fn tls_when_a_ca_is_pinned() {
    let mut c = cfg("collector.example:4317");
    c.ca_file = Some("/x/ca.pem".into());
    let t = Target::from_config(&c).unwrap();
    assert!(t.tls);
    assert_eq!(t.uri(), "https://collector.example:4317");
    assert_eq!(t.server_name(&c), "collector.example");
    c.server_name = "other".into();
    assert_eq!(t.server_name(&c), "other");
    c.address = "[::1]:9".into();
    let t = Target::from_config(&c).unwrap();
    assert_eq!(t.uri(), "https://[::1]:9");
    c.server_name.clear();
    assert_eq!(t.server_name(&c), "::1");
    // https without a CA is an error, not a silent downgrade.
    let e = Target::from_config(&cfg("https://h:1")).unwrap_err();
    assert!(matches!(e, ClientError::NoCa { .. }));
}

#[test]
fn fallback_addresses_are_tried_in_order_and_wrap() {
    let mut c = cfg("127.0.0.1:1");
    c.allow_plaintext_loopback = true;
    c.fallback_addresses = vec!["127.0.0.1:2".into(), "localhost:3".into()];
    let all = Target::all_from_config(&c).unwrap();
    let ports: Vec<u16> = all.iter().map(|t| t.port).collect();
    assert_eq!(ports, [1, 2, 3]);
    let mut r = Rotation::new(all.len());
    let mut seen = vec![r.current()];
    for _ in 0..4 {
        r.fail();
        seen.push(r.current());
    }
    assert_eq!(seen, [0, 1, 2, 0, 1]);
    // Each fallback is held to the same TLS policy as the primary.
    c.fallback_addresses.push("10.1.1.1:4317".into());
    assert!(matches!(
        Target::all_from_config(&c),
        Err(ClientError::PlaintextRefused { .. })
    ));
    // No fallbacks: one address, and a failure stays on it.
    let mut r = Rotation::new(1);
    r.fail();
    assert_eq!(r.current(), 0);
}

#[test]
fn bad_addresses() {
    for a in [
        "",
        "host",
        "host:",
        "host:99999",
        "ftp://h:1",
        "h:1/path",
        ":1",
    ] {
        let mut c = cfg(a);
        c.allow_plaintext_loopback = true;
        assert!(Target::from_config(&c).is_err(), "{a}");
    }
}

#[test]
fn backoff_grows_with_jitter_and_caps() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 42);
    let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
    assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
    assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
    for x in &d[4..] {
        assert!(*x >= Duration::from_millis(500) && *x <= Duration::from_secs(1));
    }
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(100));
    // Two sensors with different seeds do not retry in lockstep.
    let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 1);
    let mut c = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 2);
    assert_ne!(a.next_delay(), c.next_delay());
}

#[test]
fn outbound_batch_bytes_are_a_sensor_message() {
    let batch = pb::Batch {
        sensor_id: "s".into(),
        boot_id: "b".into(),
        first_seq: 1,
        events: vec![pb::Event {
            seq: 1,
            host: "h".repeat(300),
            ..Default::default()
        }],
        batch_id: 7,
        sent_unix_ns: 0,
    };
    let mut wire = Vec::new();
    encode_outbound(&Outbound::Batch(batch.encode_to_vec()), &mut wire);
    let expected = pb::SensorMessage {
        msg: Some(pb::sensor_message::Msg::Batch(batch)),
    };
    assert_eq!(wire, expected.encode_to_vec());
    let h = pb::Hello {
        sensor_id: "x".into(),
        ..Default::default()
    };
    let mut wire = Vec::new();
    encode_outbound(&Outbound::Hello(h.clone()), &mut wire);
    let back = pb::SensorMessage::decode(wire.as_slice()).unwrap();
    assert_eq!(back.msg, Some(pb::sensor_message::Msg::Hello(h)));
}

#[test]
fn tls_hints() {
    assert!(
        tls_hint("transport error: invalid peer certificate: UnknownIssuer")
            .unwrap()
            .contains("pinned CA")
    );
    assert!(tls_hint("received fatal alert: CertificateRequired")
        .unwrap()
        .contains("requires a client certificate"));
    assert!(tls_hint("connection refused").is_none());
    let closed = "Unknown: transport error: stream closed because of a broken pipe";
    assert!(failure_hint(closed, Phase::Open, true, false)
        .unwrap()
        .contains("requires a client certificate"));
    assert!(failure_hint(closed, Phase::Open, true, true)
        .unwrap()
        .contains("rejected our client certificate"));
    assert!(failure_hint(closed, Phase::Open, false, false).is_none());
    assert!(failure_hint(closed, Phase::Stream, true, false).is_none());
}
