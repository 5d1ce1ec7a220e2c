//! Malformed and oversized input ends that stream only, with a clear status; other streams
//! and stored data are untouched.
mod common;

use common::raw;
use common::*;
use sensor_proto::v1 as pb;
use tonic::Code;

fn msg_hello(sensor: &str) -> Vec<u8> {
    raw::encode(&pb::SensorMessage {
        msg: Some(pb::sensor_message::Msg::Hello(hello(sensor, "boot", "h"))),
    })
}

fn msg_batch(b: pb::Batch) -> Vec<u8> {
    raw::encode(&pb::SensorMessage {
        msg: Some(pb::sensor_message::Msg::Batch(b)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_streams_fail_alone() {
    let dir = TempDir::new("bad");
    let c = Collector::start(
        dir.path(),
        &["--max-message-bytes", "65536", "--max-batch-events", "100"],
    );
    // A healthy sensor, connected before and after the bad ones.
    let mut good = raw::open(raw::channel(&c.grpc).await).await.unwrap();
    good.send_hello(hello("good", "boot", "h")).await;
    good.send_batch(batch(
        "good",
        "boot",
        1,
        vec![exec_event(1, "h", 1, None, &["a"])],
    ))
    .await;
    assert_eq!(good.next_ack().await.unwrap().stored, 1);

    let cases: Vec<(&str, Vec<Vec<u8>>, Code, &str)> = vec![
        (
            "garbage bytes",
            vec![msg_hello("bad1"), vec![0xff; 200]],
            Code::InvalidArgument,
            "malformed message",
        ),
        (
            "message without content",
            vec![msg_hello("bad2"), vec![]],
            Code::InvalidArgument,
            "without content",
        ),
        (
            "batch before hello",
            vec![msg_batch(batch(
                "bad3",
                "boot",
                1,
                vec![exec_event(1, "h", 1, None, &["x"])],
            ))],
            Code::InvalidArgument,
            "first message must be a Hello",
        ),
        (
            "oversized message",
            vec![
                msg_hello("bad4"),
                msg_batch(batch(
                    "bad4",
                    "boot",
                    1,
                    vec![exec_event(1, "h", 1, None, &[&"y".repeat(70_000)])],
                )),
            ],
            Code::ResourceExhausted,
            "too large",
        ),
        (
            "too many events",
            vec![
                msg_hello("bad5"),
                msg_batch(batch(
                    "bad5",
                    "boot",
                    1,
                    (1..=101)
                        .map(|s| exec_event(s, "h", 1, None, &["z"]))
                        .collect(),
                )),
            ],
            Code::ResourceExhausted,
            // Counted on the wire bytes, before anything is decoded.
            "batch of more than 100 events",
        ),
        (
            "seq going backwards",
            vec![
                msg_hello("bad6"),
                msg_batch(batch(
                    "bad6",
                    "boot",
                    1,
                    vec![
                        exec_event(5, "h", 1, None, &["z"]),
                        exec_event(4, "h", 1, None, &["z"]),
                    ],
                )),
            ],
            Code::InvalidArgument,
            "not greater than the previous seq",
        ),
        (
            "sensor id differs from hello",
            vec![
                msg_hello("bad7"),
                msg_batch(batch(
                    "other",
                    "boot",
                    1,
                    vec![exec_event(1, "h", 1, None, &["z"])],
                )),
            ],
            Code::InvalidArgument,
            "differs from the stream's Hello",
        ),
    ];
    for (name, msgs, code, text) in cases {
        let r = raw::send_raw(raw::channel(&c.grpc).await, msgs).await;
        let status = r.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().contains(text),
            "{name}: {}",
            status.message()
        );
    }

    // Nothing of the rejected input was stored; the healthy stream still works.
    good.send_batch(batch(
        "good",
        "boot",
        2,
        vec![exec_event(2, "h", 1, None, &["b"])],
    ))
    .await;
    assert_eq!(good.next_ack().await.unwrap().stored, 1);
    let all = query(&c.db, &[]);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all
        .iter()
        .all(|e| e["sensor_id"] == "good@unauthenticated:"));

    let m = c.metrics_text();
    for reason in [
        "malformed\"} 2",
        "no_hello\"} 1",
        "too_large\"} 1",
        "too_many_events\"} 1",
        "bad_seq\"} 1",
        "sensor_mismatch\"} 1",
    ] {
        assert!(
            m.contains(&format!(
                "collector_batches_rejected_total{{reason=\"{reason}"
            )),
            "{reason}: {m}"
        );
    }
    let log = c.stop();
    assert!(log.contains("rejected sensor message"), "{log}");
}
