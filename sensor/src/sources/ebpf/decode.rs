//! Pure decoding of ring-buffer records (bytes written by `sensor-ebpf`) into values that
//! borrow their strings from the record. Nothing here touches the kernel, so every case is
//! unit-tested from byte fixtures.
use std::borrow::Cow;

use sensor_common::{
    ConnectEvent, CredSnap, EventHeader, ExecEvent, ExitEvent, ForkEvent, PathWalk, PrivilegeEvent,
    ProcessInfo, ARGV_BUF, CWD_PARTS, EXEC_FIXED_LEN, FILENAME_LEN, FLAG_ARGV_TRUNCATED,
    KIND_CONNECT, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_PRIVILEGE,
};

use crate::escape::until_nul;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    ShortHeader(usize),
    #[error("record kind {kind} claims {claimed} bytes but {available} arrived")]
    SizeMismatch {
        kind: u32,
        claimed: u32,
        available: usize,
    },
    #[error("record kind {kind} of {len} bytes is shorter than the {min} its layout needs")]
    TooShort { kind: u32, len: usize, min: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("exec record field {field} = {value} exceeds its bound {bound}")]
    OutOfBounds {
        field: &'static str,
        value: u32,
        bound: usize,
    },
}

/// An exec record, borrowing its strings from the ring-buffer record it was decoded from
/// (normalizing escapes them into the event; nothing is copied in between).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord<'a> {
    pub header: EventHeader,
    pub process: ProcessInfo,
    pub filename: &'a [u8],
    /// Arguments as the process received them; the last one may be cut when `argv_truncated`,
    /// or, when `argv_omitted` > 0, head and tail around a marker (see [`crate::sources::argv`]).
    pub argv: Vec<Cow<'a, [u8]>>,
    /// argv bytes left out between head and tail.
    pub argv_omitted: usize,
    /// Working directory, absolute (complete only when the cwd flags are clear).
    pub cwd: Vec<u8>,
    /// The executable's resolved path (complete only when the exe flags are clear).
    pub exe: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    pub header: EventHeader,
    pub process: ProcessInfo,
    pub status: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRecord {
    pub header: EventHeader,
    pub process: ProcessInfo,
    pub family: u16,
    pub sock_type: u16,
    pub dst_port: u16,
    pub ret: i32,
    pub dst_addr: [u8; 16],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivilegeRecord {
    pub header: EventHeader,
    pub process: ProcessInfo,
    pub old: CredSnap,
    pub new: CredSnap,
    pub via: u32,
    pub syscall_nr: u32,
}

/// A new process (not a thread): header pid/tgid and `process` are the child's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkRecord {
    pub header: EventHeader,
    pub process: ProcessInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Exec(Box<ExecRecord<'a>>),
    Fork(ForkRecord),
    Exit(ExitRecord),
    Connect(ConnectRecord),
    Privilege(PrivilegeRecord),
}

impl Record<'_> {
    pub fn header(&self) -> &EventHeader {
        match self {
            Record::Exec(e) => &e.header,
            Record::Fork(f) => &f.header,
            Record::Exit(e) => &e.header,
            Record::Connect(e) => &e.header,
            Record::Privilege(e) => &e.header,
        }
    }
}

/// Copies the first `size_of::<T>()` bytes (or fewer, zero-filled) into a `T`.
///
/// Only used with the `#[repr(C)]` plain-old-data records of `sensor-common`, for which every
/// bit pattern is valid.
fn read_pod<T: Copy>(bytes: &[u8]) -> T {
    let mut value = std::mem::MaybeUninit::<T>::zeroed();
    let n = bytes.len().min(std::mem::size_of::<T>());
    // SAFETY: T is a repr(C) record of integers and byte arrays (all bit patterns valid); the
    // destination is zero-initialised and at least n bytes long.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.as_mut_ptr().cast::<u8>(), n);
        value.assume_init()
    }
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    if bytes.len() < std::mem::size_of::<EventHeader>() {
        return Err(DecodeError::ShortHeader(bytes.len()));
    }
    let header: EventHeader = read_pod(bytes);
    if header.size as usize > bytes.len() {
        return Err(DecodeError::SizeMismatch {
            kind: header.kind,
            claimed: header.size,
            available: bytes.len(),
        });
    }
    let bytes = &bytes[..header.size as usize];
    let need = |min: usize| {
        if bytes.len() < min {
            Err(DecodeError::TooShort {
                kind: header.kind,
                len: bytes.len(),
                min,
            })
        } else {
            Ok(())
        }
    };
    match header.kind {
        KIND_EXEC => {
            need(EXEC_FIXED_LEN)?;
            decode_exec(bytes).map(|e| Record::Exec(Box::new(e)))
        }
        KIND_EXIT => {
            need(std::mem::size_of::<ExitEvent>())?;
            let ev: ExitEvent = read_pod(bytes);
            Ok(Record::Exit(ExitRecord {
                header: ev.header,
                process: ev.process,
                status: ev.exit_code,
            }))
        }
        KIND_FORK => {
            need(std::mem::size_of::<ForkEvent>())?;
            let ev: ForkEvent = read_pod(bytes);
            Ok(Record::Fork(ForkRecord {
                header: ev.header,
                process: ev.process,
            }))
        }
        KIND_CONNECT => {
            need(std::mem::size_of::<ConnectEvent>())?;
            let ev: ConnectEvent = read_pod(bytes);
            Ok(Record::Connect(ConnectRecord {
                header: ev.header,
                process: ev.process,
                family: ev.family,
                sock_type: ev.sock_type,
                dst_port: ev.dst_port,
                ret: ev.ret,
                dst_addr: ev.dst_addr,
            }))
        }
        KIND_PRIVILEGE => {
            need(std::mem::size_of::<PrivilegeEvent>())?;
            let ev: PrivilegeEvent = read_pod(bytes);
            Ok(Record::Privilege(PrivilegeRecord {
                header: ev.header,
                process: ev.process,
                old: ev.old,
                new: ev.new,
                via: ev.via,
                syscall_nr: ev.syscall_nr,
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

// The argv buffer is the record's variable-length tail.
const ARGV_AT: usize = std::mem::offset_of!(ExecEvent, argv);
const _: () = assert!(ARGV_AT == EXEC_FIXED_LEN);

/// Decodes an exec record from its bytes in place: `ExecEvent` with a full argv buffer is
/// tens of KiB, so it is never copied whole; only its fixed fields are read (the path walks
/// are 1.5 KiB each) and argv is split straight from the record.
fn decode_exec(bytes: &[u8]) -> Result<ExecRecord<'_>, DecodeError> {
    use std::mem::offset_of;
    let at = |off: usize| &bytes[off..];
    let word = |off: usize| read_pod::<u32>(at(off));
    let bound = |field, value: u32, bound: usize| {
        if value as usize > bound {
            Err(DecodeError::OutOfBounds {
                field,
                value,
                bound,
            })
        } else {
            Ok(value as usize)
        }
    };
    let header: EventHeader = read_pod(at(offset_of!(ExecEvent, header)));
    let process: ProcessInfo = read_pod(at(offset_of!(ExecEvent, process)));
    let filename_len = bound(
        "filename_len",
        word(offset_of!(ExecEvent, filename_len)),
        FILENAME_LEN,
    )?;
    let argv_len = bound("argv_len", word(offset_of!(ExecEvent, argv_len)), ARGV_BUF)?;
    let argv_len = bound("argv_len", argv_len as u32, bytes.len() - EXEC_FIXED_LEN)?;
    let head_len = bound(
        "argv_head_len",
        word(offset_of!(ExecEvent, argv_head_len)),
        argv_len,
    )?;
    let cwd = walk_to_path(at(offset_of!(ExecEvent, cwd)), "cwd.depth")?;
    let exe = walk_to_path(at(offset_of!(ExecEvent, exe)), "exe.depth")?;

    let name_at = offset_of!(ExecEvent, filename);
    let filename = until_nul(&bytes[name_at..name_at + filename_len]);
    let truncated = process.flags & FLAG_ARGV_TRUNCATED != 0;
    let argv_omitted = word(offset_of!(ExecEvent, argv_omitted)) as usize;
    let argv_buf = &bytes[ARGV_AT..ARGV_AT + argv_len];
    let argv = if argv_omitted > 0 {
        crate::sources::argv::to_list(
            &argv_buf[..head_len],
            &argv_buf[head_len..],
            argv_omitted,
            true,
        )
        .into_iter()
        .map(Cow::Owned)
        .collect()
    } else {
        split_argv(argv_buf, truncated)
    };
    Ok(ExecRecord {
        header,
        process,
        filename,
        argv,
        argv_omitted,
        cwd,
        exe,
    })
}

/// Joins the components of a kernel path walk (innermost first) into an absolute path,
/// skipping the steps that crossed a mount. `w` holds the bytes of a `PathWalk`, read in place
/// inside the record: the walk is 1.5 KiB, mostly unused parts, so it is never copied out.
pub fn walk_to_path(w: &[u8], field: &'static str) -> Result<Vec<u8>, DecodeError> {
    use std::mem::{offset_of, size_of};
    const PART: usize = sensor_common::CWD_PART_LEN;
    const PARTS_AT: usize = offset_of!(PathWalk, parts);
    const _: () = assert!(PARTS_AT + CWD_PARTS * PART == size_of::<PathWalk>());
    if w.len() < size_of::<PathWalk>() {
        // The caller checked the record's length, so this does not happen; an error, not a
        // panic, if it ever did.
        return Err(DecodeError::TooShort {
            kind: KIND_EXEC,
            len: w.len(),
            min: size_of::<PathWalk>(),
        });
    }
    let depth_word = read_pod::<u32>(&w[offset_of!(PathWalk, depth)..]);
    let mounts = read_pod::<u32>(&w[offset_of!(PathWalk, mounts)..]);
    let depth = depth_word as usize;
    if depth > CWD_PARTS {
        return Err(DecodeError::OutOfBounds {
            field,
            value: depth_word,
            bound: CWD_PARTS,
        });
    }
    let mut path = Vec::with_capacity(64);
    for i in (0..depth).rev() {
        if mounts & (1 << i) != 0 {
            continue;
        }
        let at = PARTS_AT + i * PART;
        path.push(b'/');
        path.extend_from_slice(until_nul(&w[at..at + PART]));
    }
    if path.is_empty() {
        path.push(b'/');
    }
    Ok(path)
}

/// Splits the NUL-separated argv area. Each argument ends with a NUL; an empty argument is a
/// lone NUL. When the area was cut, the bytes after the last NUL are a partial argument.
pub fn split_argv(area: &[u8], truncated: bool) -> Vec<Cow<'_, [u8]>> {
    if area.is_empty() {
        return Vec::new();
    }
    let mut args: Vec<Cow<'_, [u8]>> = area.split(|&b| b == 0).map(Cow::Borrowed).collect();
    // A complete area ends with a NUL, after which `split` yields one empty piece. A cut area
    // (`truncated`) ends inside its last argument, which is kept as a partial argument.
    if area.ends_with(&[0]) {
        args.pop();
    } else {
        debug_assert!(truncated || !args.is_empty());
    }
    args
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Builders of records exactly as the eBPF programs lay them out.
    use super::*;

    pub fn as_bytes<T>(v: &T) -> &[u8] {
        // SAFETY: records are repr(C) POD without padding.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
    }

    pub fn process() -> ProcessInfo {
        let mut p = ProcessInfo::zeroed();
        p.ppid = 10;
        p.uid = 1000;
        p.gid = 1000;
        p.euid = 0;
        p.egid = 1000;
        p.auid = 1000;
        p.session = 3;
        p.start_boottime_ns = 123_456;
        p.cgroup_id = 77;
        p.comm[..4].copy_from_slice(b"bash");
        p.tty[..4].copy_from_slice(b"pts1");
        p
    }

    pub fn exec(filename: &[u8], argv: &[u8], cwd: &[&[u8]], flags: u32) -> Vec<u8> {
        // SAFETY: all-zero is a valid ExecEvent.
        let mut ev: Box<ExecEvent> = Box::new(unsafe { std::mem::zeroed() });
        ev.process = process();
        ev.process.flags = flags;
        ev.filename[..filename.len()].copy_from_slice(filename);
        ev.filename_len = filename.len() as u32 + 1;
        ev.argv[..argv.len()].copy_from_slice(argv);
        ev.argv_len = argv.len() as u32;
        fill_walk(&mut ev.cwd, cwd);
        fill_walk(&mut ev.exe, &[b"usr", b"bin", b"prog"]);
        let size = EXEC_FIXED_LEN + argv.len().div_ceil(8) * 8;
        ev.header = EventHeader {
            kind: KIND_EXEC,
            size: size as u32,
            ktime_ns: 5_000,
            pid: 42,
            tgid: 42,
        };
        as_bytes(&*ev)[..size].to_vec()
    }

    pub fn fill_walk(w: &mut PathWalk, parts: &[&[u8]]) {
        for (i, part) in parts.iter().rev().enumerate() {
            w.parts[i][..part.len()].copy_from_slice(part);
        }
        w.depth = parts.len() as u32;
        w.mounts = 0;
    }

    pub fn exit(status: u32) -> Vec<u8> {
        let ev = ExitEvent {
            header: EventHeader {
                kind: KIND_EXIT,
                size: std::mem::size_of::<ExitEvent>() as u32,
                ktime_ns: 6_000,
                pid: 42,
                tgid: 42,
            },
            process: process(),
            exit_code: status,
            _pad: 0,
        };
        as_bytes(&ev).to_vec()
    }

    pub fn privilege(via: u32, nr: u32, old: CredSnap, new: CredSnap) -> Vec<u8> {
        let ev = PrivilegeEvent {
            header: EventHeader {
                kind: KIND_PRIVILEGE,
                size: std::mem::size_of::<PrivilegeEvent>() as u32,
                ktime_ns: 8_000,
                pid: 42,
                tgid: 42,
            },
            process: process(),
            old,
            new,
            via,
            syscall_nr: nr,
        };
        as_bytes(&ev).to_vec()
    }

    pub fn connect(family: u16, sock_type: u16, addr: &[u8], port: u16, ret: i32) -> Vec<u8> {
        let mut dst_addr = [0u8; 16];
        dst_addr[..addr.len()].copy_from_slice(addr);
        let ev = ConnectEvent {
            header: EventHeader {
                kind: KIND_CONNECT,
                size: std::mem::size_of::<ConnectEvent>() as u32,
                ktime_ns: 7_000,
                pid: 43,
                tgid: 42,
            },
            process: process(),
            family,
            sock_type,
            dst_port: port,
            _pad0: 0,
            ret,
            fd: 3,
            dst_addr,
        };
        as_bytes(&ev).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn exec_round_trip() {
        let bytes = exec(
            b"/usr/bin/printf",
            b"printf\0a b\0\0\"q\"\0x\xffy\0",
            &[b"tmp", b"dir"],
            0,
        );
        let Record::Exec(e) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(e.filename, b"/usr/bin/printf");
        assert_eq!(
            e.argv,
            vec![
                b"printf".to_vec(),
                b"a b".to_vec(),
                b"".to_vec(),
                b"\"q\"".to_vec(),
                b"x\xffy".to_vec()
            ]
        );
        assert_eq!(e.cwd, b"/tmp/dir");
        assert_eq!(e.exe, b"/usr/bin/prog");
        assert_eq!(e.header.tgid, 42);
        assert_eq!(e.process.auid, 1000);
    }

    /// The kernel's head-and-tail layout: `argv_head_len` bytes of head, then the tail, with
    /// the count left out between them.
    #[test]
    fn exec_head_and_tail() {
        let script = format!("{}true payload", " ".repeat(6000));
        let area =
            crate::sources::argv::join(&[b"sh".to_vec(), b"-c".to_vec(), script.into_bytes()]);
        let cut = crate::sources::argv::cut(&area, 4096);
        let mut kept = cut.head.to_vec();
        kept.extend_from_slice(cut.tail);
        let mut bytes = exec(b"/bin/sh", &kept, &[], FLAG_ARGV_TRUNCATED);
        let put = |bytes: &mut Vec<u8>, off: usize, v: u32| {
            bytes[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        };
        put(
            &mut bytes,
            std::mem::offset_of!(ExecEvent, argv_omitted),
            cut.omitted as u32,
        );
        put(
            &mut bytes,
            std::mem::offset_of!(ExecEvent, argv_head_len),
            cut.head.len() as u32,
        );
        let Record::Exec(e) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(e.argv_omitted, cut.omitted);
        assert_eq!(e.argv.len(), 5);
        assert_eq!(e.argv[3], crate::sources::argv::omitted_marker(cut.omitted));
        assert!(e.argv[4].ends_with(b"true payload"));
        // A head length past the bytes used is refused, not trusted.
        put(
            &mut bytes,
            std::mem::offset_of!(ExecEvent, argv_head_len),
            kept.len() as u32 + 1,
        );
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::OutOfBounds {
                field: "argv_head_len",
                ..
            })
        ));
    }

    #[test]
    fn exec_root_cwd_and_no_args() {
        let bytes = exec(b"/bin/true", b"", &[], 0);
        let Record::Exec(e) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(e.cwd, b"/");
        assert!(e.argv.is_empty());
    }

    #[test]
    fn walk_skips_mount_crossings() {
        let mut w: PathWalk = unsafe { std::mem::zeroed() };
        // innermost first: "b", <mount crossing>, "a"  => /a/b
        w.parts[0][..1].copy_from_slice(b"b");
        w.parts[2][..1].copy_from_slice(b"a");
        w.depth = 3;
        w.mounts = 0b010;
        assert_eq!(walk_to_path(fixtures::as_bytes(&w), "x").unwrap(), b"/a/b");
        w.depth = 0;
        assert_eq!(walk_to_path(fixtures::as_bytes(&w), "x").unwrap(), b"/");
    }

    #[test]
    fn truncated_argv_keeps_partial_last_argument() {
        assert_eq!(
            split_argv(b"ls\0-la\0/very/lo", true),
            vec![b"ls".to_vec(), b"-la".to_vec(), b"/very/lo".to_vec()]
        );
        assert_eq!(
            split_argv(b"a\0\0", false),
            vec![b"a".to_vec(), b"".to_vec()]
        );
        assert_eq!(split_argv(b"a\0", true), vec![b"a".to_vec()]);
        assert_eq!(split_argv(b"noterm", false), vec![b"noterm".to_vec()]);
    }

    #[test]
    fn exit_and_connect() {
        let Record::Exit(x) = decode(&exit(7 << 8)).unwrap() else {
            panic!()
        };
        assert_eq!(x.status, 0x700);
        let Record::Connect(c) = decode(&connect(2, 1, &[127, 0, 0, 1], 8080, -111)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (c.family, c.sock_type, c.dst_port, c.ret),
            (2, 1, 8080, -111)
        );
        assert_eq!(&c.dst_addr[..4], &[127, 0, 0, 1]);
        assert_eq!(c.header.pid, 43);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::ShortHeader(3)));
        let mut b = exit(0);
        b.truncate(40);
        assert!(matches!(decode(&b), Err(DecodeError::SizeMismatch { .. })));
        let mut b = exec(b"/bin/x", b"x\0", &[], 0);
        b[0] = 99;
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(99)));
        // argv_len larger than the bytes that arrived
        let mut b = exec(b"/bin/x", b"x\0", &[], 0);
        let off = std::mem::offset_of!(ExecEvent, argv_len);
        b[off..off + 4].copy_from_slice(&4000u32.to_ne_bytes());
        assert!(matches!(
            decode(&b),
            Err(DecodeError::OutOfBounds {
                field: "argv_len",
                ..
            })
        ));
        let mut b = exec(b"/bin/x", b"x\0", &[], 0);
        let off = std::mem::offset_of!(ExecEvent, cwd) + std::mem::offset_of!(PathWalk, depth);
        b[off..off + 4].copy_from_slice(&(CWD_PARTS as u32 + 1).to_ne_bytes());
        assert!(decode(&b).is_err());
        // header says a size smaller than the layout
        let mut b = exit(0);
        b[4..8].copy_from_slice(&30u32.to_ne_bytes());
        assert!(matches!(decode(&b), Err(DecodeError::TooShort { .. })));
    }

    #[test]
    fn every_truncation_of_valid_records_is_handled() {
        for rec in [
            exec(b"/bin/a", b"a\0b\0", &[b"x"], 0),
            exit(9),
            connect(10, 2, &[0; 16], 53, 0),
        ] {
            for n in 0..rec.len() {
                let _ = decode(&rec[..n]);
            }
        }
    }
}
