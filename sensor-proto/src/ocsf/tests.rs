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
