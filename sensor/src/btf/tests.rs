//! Unit tests for the BTF parser, built on synthetic blobs so they do not depend on the host.
//! One test additionally checks the host's `/sys/kernel/btf/vmlinux` when it exists.

use super::parse::kind;
use super::{Btf, BtfError};

/// Test-only writer of BTF blobs.
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
    big_endian: bool,
}

/// A struct/union member for [`Builder::composite`]: name, type id, raw offset word.
type M<'a> = (&'a str, u32, u32);

impl Builder {
    fn new() -> Self {
        Builder {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
            big_endian: false,
        }
    }

    fn big_endian() -> Self {
        Builder {
            big_endian: true,
            ..Self::new()
        }
    }

    fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn word(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&mut self, v: u32) {
        let w = self.word(v);
        self.types.extend_from_slice(&w);
    }

    /// Writes a `btf_type` header and returns the new type's id.
    fn head(&mut self, name: &str, kind: u8, kflag: bool, vlen: u16, size_or_type: u32) -> u32 {
        let name_off = self.str(name);
        self.u32(name_off);
        self.u32((u32::from(kflag) << 31) | (u32::from(kind) << 24) | u32::from(vlen));
        self.u32(size_or_type);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn int_bits(&mut self, name: &str, size: u32, bits: u32, bit_offset: u32) -> u32 {
        let id = self.head(name, kind::INT, false, 0, size);
        self.u32((bit_offset << 16) | bits);
        id
    }

    fn int(&mut self, name: &str, size: u32) -> u32 {
        self.int_bits(name, size, size * 8, 0)
    }

    fn wrap(&mut self, kind: u8, name: &str, target: u32) -> u32 {
        self.head(name, kind, false, 0, target)
    }

    fn composite(
        &mut self,
        kind: u8,
        name: &str,
        size: u32,
        kflag: bool,
        members: &[M<'_>],
    ) -> u32 {
        let id = self.head(name, kind, kflag, members.len() as u16, size);
        for &(n, ty, off) in members {
            let n = self.str(n);
            self.u32(n);
            self.u32(ty);
            self.u32(off);
        }
        id
    }

    fn strukt(&mut self, name: &str, size: u32, members: &[M<'_>]) -> u32 {
        self.composite(kind::STRUCT, name, size, false, members)
    }

    fn union(&mut self, name: &str, size: u32, members: &[M<'_>]) -> u32 {
        self.composite(kind::UNION, name, size, false, members)
    }

    /// Writes one type of every kind that has trailing data other than STRUCT/UNION.
    fn every_other_kind(&mut self, int: u32) {
        let ptr = self.wrap(kind::PTR, "", int);
        self.head("", kind::ARRAY, false, 0, 0);
        self.u32(int);
        self.u32(int);
        self.u32(4);
        self.head("color", kind::ENUM, false, 2, 4);
        for (n, v) in [("RED", 0), ("GREEN", 1)] {
            let n = self.str(n);
            self.u32(n);
            self.u32(v);
        }
        self.head("fwd_only", kind::FWD, false, 0, 0);
        self.wrap(kind::TYPEDEF, "u32_t", int);
        self.wrap(kind::VOLATILE, "", int);
        self.wrap(kind::CONST, "", int);
        self.wrap(kind::RESTRICT, "", ptr);
        let proto = self.head("", kind::FUNC_PROTO, false, 2, int);
        for n in ["p0", "p1"] {
            let n = self.str(n);
            self.u32(n);
            self.u32(int);
        }
        self.wrap(kind::FUNC, "do_thing", proto);
        let var = self.head("some_var", kind::VAR, false, 0, int);
        self.u32(1);
        self.head(".data", kind::DATASEC, false, 1, 4);
        self.u32(var);
        self.u32(0);
        self.u32(4);
        self.head("double", kind::FLOAT, false, 0, 8);
        self.head("tag", kind::DECL_TAG, false, 0, var);
        self.u32(u32::MAX);
        self.wrap(kind::TYPE_TAG, "user", int);
        self.head("big", kind::ENUM64, false, 1, 8);
        let n = self.str("HUGE");
        self.u32(n);
        self.u32(0xffff_ffff);
        self.u32(0x1);
    }

    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let magic: u16 = 0xEB9F;
        out.extend_from_slice(&if self.big_endian {
            magic.to_be_bytes()
        } else {
            magic.to_le_bytes()
        });
        out.push(1); // version
        out.push(0); // flags
        let type_len = self.types.len() as u32;
        for v in [24, 0, type_len, type_len, self.strings.len() as u32] {
            out.extend_from_slice(&self.word(v));
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// `struct foo { int a; long b; char *c; }` plus a union and every other kind.
fn simple_blob() -> Vec<u8> {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let long = b.int("long", 8);
    let ch = b.int("char", 1);
    b.every_other_kind(int);
    let cp = b.wrap(kind::PTR, "", ch);
    b.strukt("foo", 24, &[("a", int, 0), ("b", long, 64), ("c", cp, 128)]);
    b.union("bar", 8, &[("i", int, 0), ("l", long, 0)]);
    b.build()
}

/// Deterministic xorshift64 for the fuzz-like tests.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Parses `bytes` and, if that succeeds, runs every query; must never panic.
fn exercise(bytes: &[u8]) -> Result<Btf, BtfError> {
    let btf = Btf::parse(bytes)?;
    for s in ["foo", "bar", "outer", "task", ""] {
        for m in ["a", "b", "c", "y", "z", ""] {
            let _ = btf.member_offset(s, m);
            let _ = btf.has_member(s, m);
        }
        let _ = btf.struct_size(s);
    }
    Ok(btf)
}

#[test]
fn simple_struct_offsets() {
    let btf = Btf::parse(&simple_blob()).unwrap();
    assert_eq!(btf.member_offset("foo", "a").unwrap(), 0);
    assert_eq!(btf.member_offset("foo", "b").unwrap(), 8);
    assert_eq!(btf.member_offset("foo", "c").unwrap(), 16);
    assert_eq!(btf.struct_size("foo").unwrap(), 24);
    assert!(btf.has_member("foo", "c"));
    assert!(!btf.has_member("foo", "d"));
    assert_eq!(btf.member_offset("bar", "l").unwrap(), 0);
    assert_eq!(btf.struct_size("bar").unwrap(), 8);
}

#[test]
fn big_endian_blob_is_byte_swapped() {
    let mut b = Builder::big_endian();
    let int = b.int("int", 4);
    b.every_other_kind(int);
    b.strukt("foo", 8, &[("a", int, 0), ("b", int, 32)]);
    let btf = Btf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("foo", "b").unwrap(), 4);
    assert_eq!(btf.struct_size("foo").unwrap(), 8);
}

#[test]
fn anonymous_struct_and_union_nesting_sums_offsets() {
    // struct outer {
    //     long x;                          // 0
    //     struct {                         // 8
    //         int y;                       // 8 + 0
    //         union { int z; long w; };    // 8 + 8
    //     };
    //     union { int u; } named;          // 24 (named: not searched)
    // };
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let long = b.int("long", 8);
    let anon_union = b.union("", 8, &[("z", int, 0), ("w", long, 0)]);
    let anon_struct = b.strukt("", 16, &[("y", int, 0), ("", anon_union, 64)]);
    let named_union = b.union("", 4, &[("u", int, 0)]);
    b.strukt(
        "outer",
        32,
        &[
            ("x", long, 0),
            ("", anon_struct, 64),
            ("named", named_union, 192),
        ],
    );
    let btf = Btf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("outer", "x").unwrap(), 0);
    assert_eq!(btf.member_offset("outer", "y").unwrap(), 8);
    assert_eq!(btf.member_offset("outer", "z").unwrap(), 16);
    assert_eq!(btf.member_offset("outer", "w").unwrap(), 16);
    assert_eq!(btf.member_offset("outer", "named").unwrap(), 24);
    assert!(btf.has_member("outer", "w"));
    assert!(
        !btf.has_member("outer", "u"),
        "named members are not flattened"
    );
}

#[test]
fn qstr_like_member_after_anonymous_union() {
    // struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; };
    let mut b = Builder::new();
    let u32_ = b.int("u32", 4);
    let u64_ = b.int("u64", 8);
    let ch = b.int("char", 1);
    let cch = b.wrap(kind::CONST, "", ch);
    let name_ty = b.wrap(kind::PTR, "", cch);
    let inner = b.strukt("", 8, &[("hash", u32_, 0), ("len", u32_, 32)]);
    let un = b.union("", 8, &[("", inner, 0), ("hash_len", u64_, 0)]);
    b.strukt("qstr", 16, &[("", un, 0), ("name", name_ty, 64)]);
    let btf = Btf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("qstr", "name").unwrap(), 8);
    assert_eq!(btf.member_offset("qstr", "len").unwrap(), 4);
    assert_eq!(btf.member_offset("qstr", "hash_len").unwrap(), 0);
}

#[test]
fn typedef_wrapped_anonymous_member_is_followed() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let anon = b.strukt("", 8, &[("p", int, 0), ("q", int, 32)]);
    let td = b.wrap(kind::TYPEDEF, "anon_t", anon);
    let cv = b.wrap(kind::VOLATILE, "", td);
    let c = b.wrap(kind::CONST, "", cv);
    let tag = b.wrap(kind::TYPE_TAG, "rcu", c);
    b.strukt("wrapped", 16, &[("first", int, 0), ("", tag, 64)]);
    let btf = Btf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("wrapped", "p").unwrap(), 8);
    assert_eq!(btf.member_offset("wrapped", "q").unwrap(), 12);
}

#[test]
fn bitfield_members_are_errors() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let narrow = b.int_bits("int", 4, 3, 0);
    // kind_flag set: high 8 bits of the offset are the bitfield size.
    b.composite(
        kind::STRUCT,
        "kbits",
        8,
        true,
        &[
            ("flags", int, 3 << 24),
            ("more", int, (5 << 24) | 3),
            ("whole", int, 32),
        ],
    );
    // kind_flag clear: a narrow INT, or an offset that is not byte aligned.
    b.strukt(
        "ibits",
        8,
        &[("n", narrow, 0), ("odd", int, 3), ("ok", int, 32)],
    );
    let btf = Btf::parse(&b.build()).unwrap();
    for (s, m) in [
        ("kbits", "flags"),
        ("kbits", "more"),
        ("ibits", "n"),
        ("ibits", "odd"),
    ] {
        let err = btf.member_offset(s, m).unwrap_err();
        assert!(matches!(err, BtfError::Bitfield { .. }), "{s}.{m}: {err}");
        assert_eq!(
            err.to_string(),
            format!("btf: member `{m}` of `{s}` is a bitfield")
        );
        assert!(btf.has_member(s, m), "bitfields still count as present");
    }
    assert_eq!(btf.member_offset("kbits", "whole").unwrap(), 4);
    assert_eq!(btf.member_offset("ibits", "ok").unwrap(), 4);
}

#[test]
fn fwd_and_empty_declarations_are_skipped() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    b.head("task", kind::FWD, false, 0, 0);
    b.strukt("task", 0, &[]);
    b.strukt("task", 16, &[("pid", int, 0), ("tgid", int, 32)]);
    b.strukt("task", 99, &[("other", int, 0)]);
    b.strukt("empty", 0, &[]);
    let btf = Btf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("task", "tgid").unwrap(), 4);
    assert_eq!(btf.struct_size("task").unwrap(), 16);
    assert!(
        !btf.has_member("task", "other"),
        "the first full definition wins"
    );
    assert_eq!(btf.struct_size("empty").unwrap(), 0);
}

#[test]
fn fwd_only_is_not_found() {
    let mut b = Builder::new();
    b.head("opaque", kind::FWD, false, 0, 0);
    let btf = Btf::parse(&b.build()).unwrap();
    assert!(matches!(
        btf.struct_size("opaque"),
        Err(BtfError::StructNotFound(_))
    ));
}

#[test]
fn missing_struct_and_member_errors() {
    let btf = Btf::parse(&simple_blob()).unwrap();
    let err = btf.member_offset("task_struct", "pid").unwrap_err();
    assert_eq!(err.to_string(), "btf: struct `task_struct` not found");
    let err = btf.member_offset("foo", "nope").unwrap_err();
    assert_eq!(
        err.to_string(),
        "btf: member `nope` not found in struct `foo`"
    );
    assert!(btf.struct_size("task_struct").is_err());
    assert!(!btf.has_member("task_struct", "pid"));
    // Names of non-composite types are not structs.
    assert!(btf.struct_size("int").is_err());
    assert!(btf.struct_size("u32_t").is_err());
}

#[test]
fn bad_magic_and_version() {
    let mut blob = simple_blob();
    blob[0] = 0x34;
    blob[1] = 0x12;
    let err = Btf::parse(&blob).unwrap_err();
    assert_eq!(err.to_string(), "btf: bad magic 0x1234 (expected 0xeb9f)");

    let mut blob = simple_blob();
    blob[2] = 2;
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::UnsupportedVersion(2))
    ));
    assert!(Btf::parse(&[]).is_err());
}

#[test]
fn unknown_kind_is_an_error() {
    let mut b = Builder::new();
    b.int("int", 4);
    b.head("mystery", 25, false, 0, 0);
    let err = Btf::parse(&b.build()).unwrap_err();
    assert!(
        matches!(err, BtfError::UnknownKind { id: 2, kind: 25 }),
        "{err}"
    );
}

#[test]
fn bad_string_offset_is_an_error() {
    let mut b = Builder::new();
    b.head("", kind::INT, false, 0, 4);
    b.u32(32);
    let mut blob = b.build();
    // Point the type's name past the end of the string section.
    blob[24..28].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(
        Btf::parse(&blob),
        Err(BtfError::BadStringOffset { offset: 1000, .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let blob = simple_blob();
    assert!(exercise(&blob).is_ok());
    for len in 0..blob.len() {
        let res = exercise(&blob[..len]);
        assert!(res.is_err(), "truncated to {len} bytes parsed");
    }
}

#[test]
fn truncated_type_section_is_an_error() {
    // Shrink the declared type section (keeping the string section in place) so that it ends
    // inside a type: only lengths landing on a type boundary may parse.
    let blob = simple_blob();
    let type_len = u32::from_le_bytes(blob[12..16].try_into().unwrap());
    let mut ok = 0;
    for len in 0..type_len {
        let mut b = blob.clone();
        b[12..16].copy_from_slice(&len.to_le_bytes());
        match exercise(&b) {
            Ok(_) => ok += 1,
            Err(e) => assert!(
                matches!(e, BtfError::Truncated { .. } | BtfError::UnknownKind { .. }),
                "{len}: {e}"
            ),
        }
    }
    assert!(ok > 1, "type boundaries should parse");
    let mut b = blob.clone();
    b[12..16].copy_from_slice(&(type_len - 1).to_le_bytes());
    let err = Btf::parse(&b).unwrap_err();
    assert!(err.to_string().starts_with("btf: truncated "), "{err}");
}

#[test]
fn garbage_never_panics() {
    let valid = simple_blob();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for round in 0..20_000 {
        let mut bytes = valid.clone();
        if round % 4 == 0 {
            // Pure noise of random length, sometimes behind a valid magic.
            let len = (rng(&mut state) % 256) as usize;
            bytes = (0..len).map(|_| rng(&mut state) as u8).collect();
            if round % 8 == 0 && bytes.len() >= 3 {
                bytes[..3].copy_from_slice(&[0x9f, 0xeb, 1]);
            }
        } else {
            // Mutate a few bytes of a valid blob (header included).
            for _ in 0..1 + rng(&mut state) % 4 {
                let i = (rng(&mut state) as usize) % bytes.len();
                bytes[i] = rng(&mut state) as u8;
            }
        }
        let _ = exercise(&bytes);
    }
}

#[test]
fn cyclic_types_error_instead_of_overflowing() {
    let mut b = Builder::new();
    // Type 1: a typedef to itself; type 2: a struct with an anonymous member of its own type.
    b.wrap(kind::TYPEDEF, "loop_t", 1);
    b.strukt("selfish", 8, &[("", 2, 0)]);
    b.strukt("looped", 8, &[("", 1, 0)]);
    let btf = Btf::parse(&b.build()).unwrap();
    assert!(matches!(
        btf.member_offset("selfish", "x"),
        Err(BtfError::TypeChainTooDeep(_))
    ));
    assert!(matches!(
        btf.member_offset("looped", "x"),
        Err(BtfError::TypeChainTooDeep(_))
    ));
    assert!(!btf.has_member("selfish", "x"));
}

#[test]
fn dangling_type_id_is_an_error() {
    let mut b = Builder::new();
    b.strukt("dangling", 8, &[("", 77, 0)]);
    let btf = Btf::parse(&b.build()).unwrap();
    assert!(matches!(
        btf.member_offset("dangling", "x"),
        Err(BtfError::BadTypeId(77))
    ));
}

#[test]
fn from_path_reports_io_errors() {
    let err = Btf::from_path(std::path::Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
    assert!(matches!(err, BtfError::Io { .. }));
    assert!(
        err.to_string().contains("/nonexistent/btf/vmlinux"),
        "{err}"
    );
}

#[test]
fn host_vmlinux() {
    let path = std::path::Path::new(super::VMLINUX_BTF);
    if !path.exists() {
        eprintln!("skipping: {} not present", path.display());
        return;
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipping: cannot read {}: {e}", path.display());
            return;
        }
    };
    let start = std::time::Instant::now();
    let btf = Btf::parse(&bytes).unwrap();
    eprintln!(
        "parsed {} ({} bytes) in {:?}: {btf:?}",
        path.display(),
        bytes.len(),
        start.elapsed()
    );
    for m in ["real_parent", "tgid", "cred", "mm", "signal", "exit_code"] {
        assert!(btf.has_member("task_struct", m), "task_struct.{m}");
        btf.member_offset("task_struct", m).unwrap();
    }
    let arg_start = btf.member_offset("mm_struct", "arg_start").unwrap();
    let arg_end = btf.member_offset("mm_struct", "arg_end").unwrap();
    assert!(
        arg_start < arg_end,
        "arg_start {arg_start} >= arg_end {arg_end}"
    );
    assert_eq!(btf.member_offset("qstr", "name").unwrap(), 8);
    assert!(
        btf.struct_size("task_struct").unwrap() > btf.member_offset("task_struct", "tgid").unwrap()
    );
    assert!(
        btf.has_member("task_struct", "start_boottime")
            || btf.has_member("task_struct", "real_start_time")
    );
}
