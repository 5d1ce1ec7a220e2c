use super::*;

fn ops(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn file_activity_takes_the_most_significant_op() {
    assert_eq!(
        file_activity_of(&ops(&["create", "close_write"]), false).1,
        "Create"
    );
    assert_eq!(
        file_activity_of(&ops(&["modify", "delete"]), false).1,
        "Delete"
    );
    assert_eq!(file_activity_of(&ops(&["rename"]), true).1, "Rename");
    assert_eq!(file_activity_of(&ops(&["close_write"]), false).1, "Update");
    assert_eq!(
        file_activity_of(&ops(&["attrib"]), false).1,
        "Set Attributes"
    );
    assert_eq!(file_activity_of(&ops(&["open"]), false), (14, "Open"));
    assert_eq!(file_activity_of(&ops(&["close"]), false), (99, "Other"));
}

#[test]
fn time_is_ms_and_exact_time_is_kept() {
    let ev = Event {
        time_unix_ns: 1_700_000_000_123_456_789,
        kind: Kind::Flow as i32,
        ..Default::default()
    };
    let v = to_ocsf(&ev, Origin::default());
    assert_eq!(v["time"], 1_700_000_000_123i64);
    assert_eq!(
        v["metadata"]["original_time"],
        "2023-11-14T22:13:20.123456789Z"
    );
    assert_eq!(v["type_uid"], 400106);
}

#[test]
fn origin_names_the_device_and_the_event() {
    let ev = Event {
        seq: 9,
        host: "h1".into(),
        kind: Kind::Login as i32,
        ..Default::default()
    };
    let v = to_ocsf(
        &ev,
        Origin {
            sensor_id: Some("s"),
            boot_id: Some("b"),
        },
    );
    assert_eq!(v["metadata"]["uid"], "s:b:9");
    assert_eq!(v["device"]["uid"], "s");
    assert_eq!(v["device"]["boot_uid"], "b");
    assert_eq!(v["device"]["hostname"], "h1");
}

#[test]
fn every_connect_result_has_its_activity_and_status() {
    // Every result `connect_result` (sensor/src/sources/kernel_values.rs) can give.
    let want = [
        ("success", 1, 1),
        ("in_progress", 1, 1),
        ("attempted", 1, 0),
        ("interrupted", 1, 0),
        ("refused", 5, 2),
        ("denied", 5, 2),
        ("timeout", 4, 2),
        ("unreachable", 4, 2),
        ("error", 4, 2),
    ];
    for (result, activity, status) in want {
        let ev = Event {
            kind: Kind::NetConnect as i32,
            connect: Some(Connect {
                result: result.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = to_ocsf(&ev, Origin::default());
        assert_eq!(v["activity_id"], activity, "{result}");
        assert_eq!(v["status_id"], status, "{result}");
        assert_eq!(v["status_detail"], result);
    }
    let unknown = to_ocsf(
        &Event {
            kind: Kind::NetConnect as i32,
            connect: Some(Connect {
                result: "interrupted".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Origin::default(),
    );
    assert_eq!(unknown["status"], "Unknown");
}
