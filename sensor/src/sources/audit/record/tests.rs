//! Unit tests of the `record` module.
use super::*;

/// The real capture: (type, payload) in arrival order.
pub(crate) fn session() -> Vec<(u16, Vec<u8>)> {
    load(include_str!("../fixtures/session.txt"))
}

pub(crate) fn load(text: &str) -> Vec<(u16, Vec<u8>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (t, p) = l.split_once(' ').expect("type and payload");
            (t.parse().expect("type"), p.as_bytes().to_vec())
        })
        .collect()
}

/// The first captured record of `rtype` whose payload contains `needle`.
pub(crate) fn find(rtype: u16, needle: &str) -> Vec<u8> {
    session()
        .into_iter()
        .find(|(t, p)| *t == rtype && String::from_utf8_lossy(p).contains(needle))
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no {rtype} record with {needle}"))
}

#[test]
fn every_captured_record_parses() {
    let all = session();
    assert_eq!(all.len(), 350);
    for (t, p) in &all {
        let r = parse(*t, p).unwrap_or_else(|e| panic!("{t} {e}"));
        assert!(r.serial >= 4 && r.serial <= 71, "{}", r.serial);
        assert_eq!(r.skipped_tokens, 0, "{}", String::from_utf8_lossy(p));
    }
}

#[test]
fn syscall_header_and_fields() {
    let p = find(
        types::SYSCALL,
        "syscall=59 success=yes exit=0 a0=7f85381a47b0 a1=7f8537dba7e0",
    );
    let r = parse(types::SYSCALL, &p).unwrap();
    assert_eq!((r.rtype, r.time_ms, r.serial), (1300, 1_795_805_362_236, 6));
    assert_eq!(r.get_hex_u64("arch"), Some(0xc000_003e));
    assert_eq!(r.get_dec::<u32>("syscall"), Some(59));
    assert_eq!(r.get_dec::<i64>("exit"), Some(0));
    // SYSCALL a0..a3 are numbers, never hex-decoded strings.
    assert_eq!(r.get("a3"), Some(&b"8"[..]));
    assert_eq!(r.get_hex_u64("a0"), Some(0x7f85_381a_47b0));
    assert_eq!(r.get("tty"), Some(&b"(none)"[..]));
    assert_eq!(r.get("comm"), Some(&b"echo"[..]));
    assert_eq!(r.get("exe"), Some(&b"/usr/bin/echo"[..]));
    assert_eq!(r.get("key"), Some(&b"sensor-capture"[..]));
    assert_eq!(r.get_dec::<u32>("auid"), Some(u32::MAX));
}

#[test]
fn execve_hex_args_decode_to_exact_bytes() {
    let p = find(types::EXECVE, "argc=8");
    let r = parse(types::EXECVE, &p).unwrap();
    let args: Vec<&[u8]> = (0..8).map(|i| r.get(&format!("a{i}")).unwrap()).collect();
    assert_eq!(
        args,
        vec![
            &b"/bin/echo"[..],
            b"a b",
            b"q\"uote",
            b"",
            b"\xff\xfeok",
            b"plain",
            b"tab\there",
            b"new\nline"
        ]
    );
    assert_eq!(r.get("argc"), Some(&b"8"[..]));
}

#[test]
fn hex_comm_exe_cwd_name_proctitle_saddr() {
    let r = parse(types::SYSCALL, &find(types::SYSCALL, "comm=6D792070726F67")).unwrap();
    assert_eq!(r.get("comm"), Some(&b"my prog"[..]));
    assert_eq!(r.get("exe"), Some(&b"/tmp/auditcap/my prog"[..]));
    let r = parse(types::CWD, &find(types::CWD, "cwd=2F746D70")).unwrap();
    assert_eq!(r.get("cwd"), Some(&b"/tmp/auditcap/dir with space"[..]));
    let r = parse(types::PATH, &find(types::PATH, "name=2E2F77656972642271")).unwrap();
    assert_eq!(r.get("name"), Some(&b"./weird\"q"[..]));
    assert_eq!(r.get("mode"), Some(&b"0100755"[..]));
    let r = parse(
        types::PROCTITLE,
        &find(types::PROCTITLE, "proctitle=2F62696E2F7368002D63"),
    )
    .unwrap();
    assert_eq!(r.get("proctitle"), Some(&b"/bin/sh\0-c\0exit 7"[..]));
    let r = parse(
        types::PROCTITLE,
        &find(types::PROCTITLE, "proctitle=\"/bin/true\""),
    )
    .unwrap();
    assert_eq!(r.get("proctitle"), Some(&b"/bin/true"[..]));
    let r = parse(
        types::SOCKADDR,
        &find(types::SOCKADDR, "saddr=020000017F00"),
    )
    .unwrap();
    assert_eq!(
        r.get("saddr"),
        Some(&[2u8, 0, 0, 1, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0][..])
    );
    // PATH with an empty name (fexecve) and one with no inode fields.
    let r = parse(types::PATH, &find(types::PATH, "name=\"\" inode")).unwrap();
    assert_eq!(r.get("name"), Some(&b""[..]));
    let r = parse(types::PATH, &find(types::PATH, "nonexistent")).unwrap();
    assert_eq!(r.get("nametype"), Some(&b"UNKNOWN"[..]));
}

#[test]
fn split_execve_pieces_are_fields() {
    let p = find(types::EXECVE, "a1_len=20000");
    let r = parse(types::EXECVE, &p).unwrap();
    assert_eq!(r.get("argc"), Some(&b"3003"[..]));
    assert_eq!(r.get("a1_len"), Some(&b"20000"[..]));
    let piece = r.get("a1[0]").unwrap();
    assert_eq!(piece.len(), 7464 / 2);
    assert!(piece.iter().all(|&b| b == b'x'));
    // A continuation record: the payload starts with two spaces after the header.
    let p = find(types::EXECVE, "):  a1[1]=");
    let r = parse(types::EXECVE, &p).unwrap();
    assert_eq!(r.field_count(), 1);
    assert_eq!(r.fields().next().unwrap().0, "a1[1]");
}

#[test]
fn user_records_parse_nested_msg() {
    let p = find(types::USER_AUTH, "PAM:authentication");
    let r = parse(types::USER_AUTH, &p).unwrap();
    assert_eq!(r.get_dec::<u32>("pid"), Some(18624));
    assert_eq!(r.get_nested("op"), Some(&b"PAM:authentication"[..]));
    assert_eq!(r.get_nested("acct"), Some(&b"nobody"[..]));
    assert_eq!(r.get_nested("exe"), Some(&b"/usr/bin/su"[..]));
    assert_eq!(r.get_nested("hostname"), Some(&b"?"[..]));
    assert_eq!(r.get_nested("res"), Some(&b"success"[..]));
    assert!(r.get("msg").unwrap().starts_with(b"op=PAM:authentication "));
    for t in [
        types::USER_ACCT,
        types::CRED_ACQ,
        types::USER_START,
        types::USER_END,
        types::CRED_DISP,
    ] {
        let p = find(t, "msg='op=PAM:");
        assert!(parse(t, &p).unwrap().get_nested("grantors").is_some());
    }
    // Single quotes inside user text and a hex acct.
    let r = parse(
        types::USER_LOGIN,
        b"audit(1.000:9): pid=1 uid=0 msg='op=login acct=6A6F686E20646F65 note='x' res=failed'",
    )
    .unwrap();
    assert_eq!(r.get_nested("acct"), Some(&b"john doe"[..]));
    assert_eq!(r.get_nested("res"), Some(&b"failed"[..]));
}

#[test]
fn login_and_other_records() {
    let r = parse(types::LOGIN, &find(types::LOGIN, "old-auid")).unwrap();
    assert_eq!(r.get_dec::<u32>("auid"), Some(1000));
    assert_eq!(r.get_dec::<u32>("old-auid"), Some(u32::MAX));
    let r = parse(types::EOE, b"audit(1795805361.872:5): ").unwrap();
    assert_eq!(r.field_count(), 0);
    assert_eq!(r.serial, 5);
    let r = parse(types::SYSCALL, &find(types::SYSCALL, "key=(null)")).unwrap();
    assert_eq!(r.get("key"), Some(&b"(null)"[..]));
}

#[test]
fn numbers_in_other_records_are_not_hex_decoded() {
    let r = parse(
        types::CONFIG_CHANGE,
        b"audit(1.000:3): op=set audit_backlog_limit=8192 old=64 auid=4294967295 res=1",
    )
    .unwrap();
    assert_eq!(r.get("old"), Some(&b"64"[..]));
    assert_eq!(r.get("audit_backlog_limit"), Some(&b"8192"[..]));
    // But the hex-capable names are decoded in any record type (OBJ_PID's ocomm).
    let r = parse(1318, b"audit(1.000:3): opid=5 ocomm=6120622063").unwrap();
    assert_eq!(r.get("ocomm"), Some(&b"a b c"[..]));
}

#[test]
fn unknown_types_are_lenient() {
    // BPRM_FCAPS is not used by the sensor but is kept with its fields.
    let r = parse(types::BPRM_FCAPS, &find(types::BPRM_FCAPS, "fver=0")).unwrap();
    assert_eq!(r.get("pp"), Some(&b"000001fffeffffff"[..]));
    // An AVC-style record with free text and an unterminated quote still parses.
    let r = parse(
        1400,
        b"audit(1.5:77): avc:  denied  { read } for  pid=9 comm=\"x y name=\"unterminated",
    )
    .unwrap();
    assert_eq!(r.serial, 77);
    assert_eq!(r.time_ms, 1500);
    assert_eq!(r.get("pid"), Some(&b"9"[..]));
    assert!(r.skipped_tokens >= 5);
    // AppArmor labels with spaces: the suffix is skipped, not an error, even for SYSCALL.
    let r = parse(
        types::SYSCALL,
        b"audit(1.000:1): arch=c000003e syscall=59 subj=snap.lxd (enforce) pid=5",
    )
    .unwrap();
    assert_eq!(r.get("pid"), Some(&b"5"[..]));
    assert_eq!(r.skipped_tokens, 1);
}

#[test]
fn header_errors() {
    assert_eq!(parse(1300, b""), Err(RecordError::Empty));
    assert_eq!(parse(1300, b"\0\0\n"), Err(RecordError::Empty));
    assert_eq!(
        parse(1300, b"type=SYSCALL msg=audit(1.0:1): x=1"),
        Err(RecordError::MissingHeader)
    );
    assert_eq!(parse(1300, b"aud"), Err(RecordError::TruncatedHeader));
    assert_eq!(
        parse(1300, b"audit(1795805362.236:"),
        Err(RecordError::TruncatedHeader)
    );
    assert_eq!(
        parse(1300, b"audit(1795805362.236:6)"),
        Err(RecordError::TruncatedHeader)
    );
    assert_eq!(
        parse(1300, b"audit(1795805362.236:x): a=1"),
        Err(RecordError::BadSerial)
    );
    assert_eq!(
        parse(1300, b"audit(1795805362.236): a=1"),
        Err(RecordError::BadSerial)
    );
    assert_eq!(
        parse(1300, b"audit(1795805362:6): a=1"),
        Err(RecordError::BadTimestamp)
    );
    assert_eq!(
        parse(1300, b"audit(17958a5362.236:6): a=1"),
        Err(RecordError::BadTimestamp)
    );
    assert_eq!(
        parse(1300, b"audit(99999999999999999999.000:6): "),
        Err(RecordError::BadTimestamp)
    );
    assert_eq!(
        parse(1300, b"audit(1.000:6)x a=1"),
        Err(RecordError::MissingHeader)
    );
    // Trailing NUL and newline are tolerated.
    assert_eq!(parse(1320, b"audit(1.000:6): \0").unwrap().serial, 6);
}

#[test]
fn truncated_known_records_give_clear_errors() {
    let p = find(types::SYSCALL, "comm=\"python3\" exe=\"/root");
    let cut = p.iter().position(|&b| b == b'"').unwrap() + 4;
    assert_eq!(
        parse(types::SYSCALL, &p[..cut]),
        Err(RecordError::UnterminatedQuote {
            rtype: 1300,
            key: "comm".into()
        })
    );
    // Odd-length hex from a cut inside a hex value.
    let p = find(types::CWD, "cwd=2F746D70");
    assert_eq!(
        parse(types::CWD, &p[..p.len() - 1]),
        Err(RecordError::BadHex {
            rtype: 1307,
            key: "cwd".into()
        })
    );
    assert!(matches!(
        parse(types::PATH, b"audit(1.000:2): item=0 name=\"a\"b"),
        Err(RecordError::TextAfterQuote { .. })
    ));
    assert!(matches!(
        parse(types::EXECVE, b"audit(1.000:2): argc=1 a0=GG"),
        Err(RecordError::BadHex { .. })
    ));
}

#[test]
fn every_prefix_of_every_captured_record_is_ok_or_error() {
    for (t, p) in session() {
        // Long EXECVE records: sample the cut points.
        let step = if p.len() > 1000 { 97 } else { 1 };
        for cut in (0..=p.len()).step_by(step) {
            let _ = parse(t, &p[..cut]);
            let _ = parse(t.wrapping_add(1), &p[..cut]);
        }
    }
}

#[test]
fn execve_arg_keys() {
    assert!(is_execve_arg("a0"));
    assert!(is_execve_arg("a12[3]"));
    assert!(!is_execve_arg("a1_len"));
    assert!(!is_execve_arg("argc"));
    assert!(!is_execve_arg("a"));
    assert!(!is_execve_arg("a1[]"));
    assert!(!is_execve_arg("a1[2"));
    assert_eq!(decode_hex(b"4a6B"), Some(b"Jk".to_vec()));
    assert_eq!(decode_hex(b"4"), None);
    assert_eq!(decode_hex(b""), None);
}

#[test]
fn get_many_matches_get_for_every_captured_record() {
    let keys = [
        "pid", "ppid", "uid", "arch", "syscall", "exe", "a0", "item", "cwd", "argc", "nosuch",
    ];
    for (t, p) in &session() {
        let r = parse(*t, p).unwrap();
        let many = r.get_many(keys);
        for (k, v) in keys.iter().zip(many) {
            assert_eq!(v, r.get(k), "{t} {k}");
        }
    }
    // A repeated key: the first value, as `get` gives it.
    let r = parse(1300, b"audit(1.000:9): a=1 b=2 a=3").unwrap();
    assert_eq!(r.get_many(["a", "b"]), [Some(&b"1"[..]), Some(&b"2"[..])]);
    assert_eq!(dec::<u32>(Some(b"42")), Some(42));
    assert_eq!(dec::<u32>(Some(b"x")), None);
    assert_eq!(hex_u64(Some(b"c000003e")), Some(0xc000_003e));
    assert_eq!(hex_u64(Some(b"11112222333344445")), None);
    assert_eq!(hex_u64(None), None);
}
