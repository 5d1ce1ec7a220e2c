//! The generator's conventions (docs/ARCHITECTURE.md#event-model), checked on small schemas
//! that protoc parses exactly as it parses sensor.proto (comments included): what each field
//! of a message turns into in the JSON writer, what the samples hold, and that a field the
//! conventions do not cover stops the generator instead of producing a guess.
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::schema::{self, camel, snake, Error, Schema};
use crate::{enum_names, json_writer, samples};

/// A throwaway directory holding one `.proto`, removed on drop.
struct ProtoDir(PathBuf);

impl ProtoDir {
    fn new(body: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sensor-proto-generate-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t.proto"), proto(body)).unwrap();
        Self(dir)
    }
}

impl Drop for ProtoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn proto(body: &str) -> String {
    format!("syntax = \"proto3\";\npackage t.v1;\n\n{body}")
}

/// The schema protoc gives for `body`.
fn load(body: &str) -> Result<Schema, Error> {
    let dir = ProtoDir::new(body);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    schema::load(&protoc, &dir.0, "t.proto")
}

fn writer(body: &str) -> Result<String, Error> {
    json_writer::emit(&load(body)?)
}

fn writer_error(body: &str) -> String {
    match writer(body) {
        Ok(out) => panic!("no error; the generator wrote:\n{out}"),
        Err(e) => e.to_string(),
    }
}

/// The statements written for the fields of `msg` (one per line, trimmed).
fn statements(out: &str, msg: &str) -> Vec<String> {
    let head = format!("fn {}_fields(", snake(msg));
    let start = out
        .find(&head)
        .unwrap_or_else(|| panic!("no {head} in:\n{out}"));
    out[start..]
        .lines()
        .skip(2) // the signature and the destructuring `let`
        .take_while(|l| *l != "}")
        .map(|l| l.trim().to_string())
        .collect()
}

const KIND: &str =
    "enum Kind {\n  KIND_UNSPECIFIED = 0;\n  KIND_PROCESS_EXEC = 1;\n  KIND_NET_CONNECT = 2;\n}\n";

/// One field of each shape the conventions name.
const EVENT: &str = r#"
message Event {
  uint64 seq = 1;
  int64 time_unix_ns = 2;
  Kind kind = 3;
  bool ok = 4;
  map<string, uint64> counts = 5;
  optional string exe = 6;
  // json: absent=null
  optional uint32 auid = 7;
  // json: absent=""
  optional string tty = 8;
  // json: key=label_text
  string label = 9;
  // json: omit_zero
  uint32 flags = 10;
  // json: omit_zero
  string note = 11;
  // json: omit_zero
  repeated string args = 12;
  // json: omit_zero
  double ratio = 13;
  // kinds: process_exec
  // json: flatten
  Detail detail = 14;
  // kinds: net_connect
  Peer peer = 15;
  repeated Peer peers = 16;
  int64 count_unix = 17;
  uint64 boot_unix_ns = 18;
}

message Detail {
  string path = 1;
}

message Peer {
  string addr = 1;
  optional int64 seen_unix_ns = 2;
}
"#;

fn full() -> String {
    format!("{KIND}{EVENT}")
}

#[test]
fn every_field_is_bound_and_written_in_declaration_order() {
    let out = writer(&full()).unwrap();
    assert!(
        out.contains(
            "let Event { seq, time_unix_ns, kind, ok, counts, exe, auid, tty, label, flags, \
             note, args, ratio, detail, peer, peers, count_unix, boot_unix_ns } = m;"
        ),
        "{out}"
    );
    // The first key each statement writes; a flattened message writes its own fields.
    let keys: Vec<String> = statements(&out, "Event")
        .iter()
        .map(|s| match s.find('"') {
            Some(q) => s[q + 1..][..s[q + 1..].find('"').unwrap()].to_string(),
            None if s.contains("detail_fields(o, v)") => "(detail's fields)".to_string(),
            None => panic!("no key in {s}"),
        })
        .collect();
    assert_eq!(
        keys,
        [
            "seq",
            "time",
            "kind",
            "ok",
            "counts",
            "exe",
            "auid",
            "tty",
            "label_text",
            "flags",
            "note",
            "args",
            "ratio",
            "(detail's fields)",
            "peer",
            "peers",
            "count_unix",
            "boot_unix_ns",
        ]
    );
}

#[test]
fn a_unix_ns_time_is_rfc3339_text_under_the_name_without_the_suffix() {
    let out = writer(&full()).unwrap();
    let ev = statements(&out, "Event");
    assert!(ev.contains(&"o.str(\"time\", rfc3339_nanos(*time_unix_ns).as_str());".to_string()));
    // Present optional times too.
    let peer = statements(&out, "Peer");
    assert!(
        peer.contains(
            &"if let Some(v) = seen_unix_ns { o.str(\"seen\", rfc3339_nanos(*v).as_str()); }"
                .to_string()
        ),
        "{peer:?}"
    );
    // Only an int64 named *_unix_ns is a time: a u64 with the suffix and an int64 without it
    // are numbers under their own names.
    assert!(ev.contains(&"o.num(\"boot_unix_ns\", boot_unix_ns);".to_string()));
    assert!(ev.contains(&"o.num(\"count_unix\", count_unix);".to_string()));
}

#[test]
fn an_enum_is_written_as_its_json_name() {
    let out = writer(&full()).unwrap();
    assert!(statements(&out, "Event").contains(
        &"o.str(\"kind\", Kind::try_from(*kind).unwrap_or(Kind::Unspecified).as_str());"
            .to_string()
    ));
    let names = enum_names(&proto(KIND), &["Kind"]).unwrap();
    assert!(
        names.contains("Kind::Unspecified => \"unspecified\","),
        "{names}"
    );
    assert!(
        names.contains("Kind::ProcessExec => \"process_exec\","),
        "{names}"
    );
    assert!(
        names.contains("Kind::NetConnect => \"net_connect\","),
        "{names}"
    );
    // ALL is every value but the zero one, in schema order.
    assert!(
        names.contains(
            "pub const ALL: [Kind; 2] = [\n        Kind::ProcessExec,\n        Kind::NetConnect,\n    ];"
        ),
        "{names}"
    );
}

#[test]
fn an_enum_value_without_the_enum_prefix_or_a_zero_that_is_not_unspecified_is_an_error() {
    let bad_prefix = proto("enum Kind {\n  KIND_UNSPECIFIED = 0;\n  PROCESS_EXEC = 1;\n}\n");
    let e = enum_names(&bad_prefix, &["Kind"]).unwrap_err().to_string();
    assert!(e.contains("PROCESS_EXEC lacks the prefix KIND_"), "{e}");
    let e = enum_names(&proto(KIND), &["Source"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("enum Source not in sensor.proto"), "{e}");
    let e = writer_error(
        "enum Mood {\n  MOOD_HAPPY = 0;\n  MOOD_SAD = 1;\n}\nmessage Event {\n  Mood mood = 1;\n}\n",
    );
    assert!(
        e.contains("Mood: its zero value must be *_UNSPECIFIED"),
        "{e}"
    );
}

#[test]
fn a_map_is_written_with_sorted_keys() {
    let out = writer(&full()).unwrap();
    assert!(statements(&out, "Event")
        .contains(&"o.num(\"counts\", &counts.iter().collect::<BTreeMap<_, _>>());".to_string()));
}

#[test]
fn a_bool_is_written_only_when_true() {
    let out = writer(&full()).unwrap();
    assert!(statements(&out, "Event").contains(&"if *ok { o.num(\"ok\", ok); }".to_string()));
}

#[test]
fn an_absent_optional_is_omitted_unless_annotated() {
    let ev = statements(&writer(&full()).unwrap(), "Event");
    let has = |s: &str| assert!(ev.contains(&s.to_string()), "{s} not in {ev:#?}");
    has("if let Some(v) = exe { o.str(\"exe\", v); }");
    has("match auid { Some(v) => { o.num(\"auid\", v); } None => { o.null(\"auid\"); } }");
    has("match tty { Some(v) => { o.str(\"tty\", v); } None => { o.str(\"tty\", \"\"); } }");
    // An absent message is omitted.
    has("if let Some(v) = peer { write_peer(o.key(\"peer\"), v); }");
}

#[test]
fn json_annotations_rename_skip_zeros_and_flatten() {
    let out = writer(&full()).unwrap();
    let ev = statements(&out, "Event");
    let has = |s: &str| assert!(ev.contains(&s.to_string()), "{s} not in {ev:#?}");
    has("o.str(\"label_text\", label);");
    has("if *flags != 0 { o.num(\"flags\", flags); }");
    has("if !note.is_empty() { o.str(\"note\", note); }");
    has("if !args.is_empty() { o.num(\"args\", args); }");
    has("if *ratio != 0.0 { o.num(\"ratio\", ratio); }");
    // Flattened: Detail's fields in place, and no write_detail (it is never an object).
    has("if let Some(v) = detail { detail_fields(o, v); }");
    assert!(!out.contains("fn write_detail("), "{out}");
    assert_eq!(statements(&out, "Detail"), ["o.str(\"path\", path);"]);
    // Nested messages get their own object writer, lists of them a list.
    assert!(
        out.contains("fn write_peer(out: &mut Vec<u8>, m: &Peer)"),
        "{out}"
    );
    has("o.list(\"peers\", peers, write_peer);");
    // Without annotations, zeros and empty values are written.
    has("o.num(\"seq\", seq);");
}

#[test]
fn a_field_type_with_no_convention_is_an_error() {
    let cases = [
        ("bytes blob = 1;", "blob: bytes have no JSON convention yet"),
        (
            "repeated bytes blobs = 1;",
            "blobs: repeated of this type unsupported",
        ),
        (
            "map<string, Inner> by_name = 1;",
            "by_name: map of this type unsupported",
        ),
        (
            "map<string, bytes> raw = 1;",
            "raw: map of this type unsupported",
        ),
    ];
    for (field, want) in cases {
        let e = writer_error(&format!(
            "message Event {{\n  {field}\n}}\nmessage Inner {{\n  string a = 1;\n}}\n"
        ));
        assert!(e.contains(want), "{field}: {e}");
    }
}

#[test]
fn a_misused_or_unknown_json_annotation_is_an_error() {
    let cases = [
        (
            "// json: shout\n  string a = 1;",
            "Event.a: unknown json annotation shout",
        ),
        (
            "// json: absent=null\n  string a = 1;",
            "Event.a: json absent= needs an optional field",
        ),
        (
            "// json: flatten\n  string a = 1;",
            "Event.a: json flatten needs a message field",
        ),
        (
            "// json: key=a-b\n  string a = 1;",
            "a: JSON key \"a-b\" is not a plain name",
        ),
    ];
    for (field, want) in cases {
        let e = writer_error(&format!("message Event {{\n  {field}\n}}\n"));
        assert!(e.contains(want), "{field}: {e}");
    }
    let e = writer_error(
        "message Event {\n  // json: flatten\n  Inner a = 1;\n  Inner b = 2;\n}\n\
         message Inner {\n  string x = 1;\n}\n",
    );
    assert!(e.contains("Inner is both flattened and nested"), "{e}");
}

#[test]
fn samples_fill_every_field_and_give_each_kind_its_payloads() {
    // Event's message fields are the payloads (sensor.proto has no map or list of messages
    // in Event itself).
    let schema = format!(
        "{KIND}message Event {{\n  uint64 seq = 1;\n  int64 time_unix_ns = 2;\n  Kind kind = 3;\n  \
         bool ok = 4;\n  optional string exe = 5;\n  // kinds: process_exec\n  Detail detail = 6;\n  \
         // kinds: net_connect\n  Peer peer = 7;\n}}\n\
         message Detail {{\n  string path = 1;\n}}\n\
         message Peer {{\n  string addr = 1;\n  repeated string names = 2;\n  map<string, uint32> ports = 3;\n  \
         optional int64 seen_unix_ns = 4;\n}}\n"
    );
    let out = samples::emit(&load(&schema).unwrap()).unwrap();
    assert!(
        out.contains("detail: [Kind::ProcessExec].contains(&kind).then(sample_detail),"),
        "{out}"
    );
    assert!(
        out.contains("peer: [Kind::NetConnect].contains(&kind).then(sample_peer),"),
        "{out}"
    );
    // Every value differs from its default; times are plausible Unix times in ns.
    assert!(out.contains("ok: true,"), "{out}");
    assert!(out.contains("exe: Some(\"event.exe\".into()),"), "{out}");
    assert!(
        out.contains("time_unix_ns: 1_700_000_000_000_000_000 + "),
        "{out}"
    );
    assert!(out.contains("kind: kind as i32,"), "{out}");
    assert!(out.contains("seq: 1u64,"), "{out}");
    assert!(
        out.contains("names: vec![\"peer.names.a\".into(), \"peer.names.b\".into()],"),
        "{out}"
    );
    assert!(out.contains("ports: [(\"peer.ports.a\".into(), "), "{out}");
    assert!(
        out.contains("seen_unix_ns: Some(1_700_000_000_000_000_000 + "),
        "{out}"
    );
}

#[test]
fn samples_refuse_a_kind_without_payload_and_a_payload_without_kinds() {
    // An Event whose one payload `d` has the comment `annotation`.
    let samples_error = |annotation: &str| {
        let body = format!(
            "{KIND}message Event {{\n  Kind kind = 1;\n  {annotation}\n  Detail d = 2;\n}}\n\
             message Detail {{\n  string path = 1;\n}}\n"
        );
        match samples::emit(&load(&body).unwrap()) {
            Ok(out) => panic!("no error; the generator wrote:\n{out}"),
            Err(e) => e.to_string(),
        }
    };
    let cases = [
        ("// kinds: process_exec", "kind net_connect has no payload"),
        ("", "Event.d: no `kinds:` annotation"),
        (
            "// kinds: process_exec net_connect reboot",
            "Event.d: kinds: reboot is not a Kind",
        ),
    ];
    for (annotation, want) in cases {
        let e = samples_error(annotation);
        assert!(e.contains(want), "{annotation:?}: {e}");
    }
}

#[test]
fn names_convert_between_proto_and_rust_case() {
    assert_eq!(snake("NetConnect"), "net_connect");
    assert_eq!(camel("PROCESS_EXEC"), "ProcessExec");
    assert_eq!(schema::upper_snake("LoginFailed"), "LOGIN_FAILED");
}
