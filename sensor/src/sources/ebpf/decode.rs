//! Pure decoding of ring-buffer records (bytes written by `sensor-ebpf`) into values that
//! borrow their strings from the record. Nothing here touches the kernel, so every case is
//! unit-tested from byte fixtures.
use std::borrow::Cow;

use sensor_common::{
    ConnectEvent, CredSnap, EventHeader, ExecEvent, ExitEvent, ForkEvent, PrivilegeEvent,
    ProcessInfo, WalkHead, ARGV_BUF, CWD_PARTS, EXEC_FIXED_LEN, FILENAME_LEN, FLAG_ARGV_TRUNCATED,
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

/// Where `ExecEvent::data` (filename, walk slots, argv) starts in an exec record.
const DATA_AT: usize = std::mem::offset_of!(ExecEvent, data);
const _: () = assert!(DATA_AT == EXEC_FIXED_LEN);

/// Decodes an exec record from its bytes in place: its fixed fields, then the sections of
/// `data` (filename, the cwd and exe walks' slots, argv) borrowed from the record, every
/// length and offset checked against its bound, the layout and the record's length.
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
    let data = &bytes[DATA_AT..];
    let filename_len = bound(
        "filename_len",
        word(offset_of!(ExecEvent, filename_len)),
        FILENAME_LEN,
    )?;
    let cwd: WalkHead = read_pod(at(offset_of!(ExecEvent, cwd)));
    let exe: WalkHead = read_pod(at(offset_of!(ExecEvent, exe)));
    bound("cwd.depth", cwd.depth, CWD_PARTS)?;
    bound("exe.depth", exe.depth, CWD_PARTS)?;
    // Each section starts where the previous one ends, by the program's own rule.
    let (cwd_at, exe_at, argv_at) =
        sensor_common::exec_sections(filename_len as u32, cwd.depth, exe.depth);
    let (cwd_at, exe_at, argv_at) = (cwd_at as usize, exe_at as usize, argv_at as usize);
    if argv_at > data.len() {
        return Err(DecodeError::TooShort {
            kind: KIND_EXEC,
            len: bytes.len(),
            min: DATA_AT + argv_at,
        });
    }
    let argv_len = bound("argv_len", word(offset_of!(ExecEvent, argv_len)), ARGV_BUF)?;
    let argv_len = bound("argv_len", argv_len as u32, data.len() - argv_at)?;
    let head_len = bound(
        "argv_head_len",
        word(offset_of!(ExecEvent, argv_head_len)),
        argv_len,
    )?;
    let cwd = walk_to_path(cwd, &data[cwd_at..exe_at], "cwd")?;
    let exe = walk_to_path(exe, &data[exe_at..argv_at], "exe")?;

    let filename = until_nul(&data[..filename_len]);
    let truncated = process.flags & FLAG_ARGV_TRUNCATED != 0;
    let argv_omitted = word(offset_of!(ExecEvent, argv_omitted)) as usize;
    let argv_buf = &data[argv_at..argv_at + argv_len];
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
/// skipping the steps that crossed a mount. `slots` holds the walk's `depth` slots of
/// `CWD_PART_LEN` bytes, one NUL-terminated component each, in place in the record.
pub fn walk_to_path(
    w: WalkHead,
    slots: &[u8],
    field: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    const PART: usize = sensor_common::CWD_PART_LEN;
    let depth = w.depth as usize;
    if depth > CWD_PARTS || slots.len() < depth * PART {
        return Err(DecodeError::OutOfBounds {
            field,
            value: w.depth,
            bound: (slots.len() / PART).min(CWD_PARTS),
        });
    }
    let mut path = Vec::with_capacity(64);
    for i in (0..depth).rev() {
        if w.mounts & (1 << i) != 0 {
            continue;
        }
        path.push(b'/');
        path.extend_from_slice(until_nul(&slots[i * PART..(i + 1) * PART]));
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
        exec_with_exe(filename, argv, cwd, &[b"usr", b"bin", b"prog"], 0, flags)
    }

    /// An exec record as the program packs it: `cwd` and `exe` outermost component first,
    /// `exe_mounts` the exe walk's mount-crossing steps (innermost step is bit 0).
    pub fn exec_with_exe(
        filename: &[u8],
        argv: &[u8],
        cwd: &[&[u8]],
        exe: &[&[u8]],
        exe_mounts: u32,
        flags: u32,
    ) -> Vec<u8> {
        // SAFETY: all-zero is a valid ExecEvent.
        let mut ev: Box<ExecEvent> = Box::new(unsafe { std::mem::zeroed() });
        ev.process = process();
        ev.process.flags = flags;
        ev.data[..filename.len()].copy_from_slice(filename);
        ev.filename_len = filename.len() as u32 + 1;
        let cwd_at = (filename.len() + 1).next_multiple_of(8);
        let (cwd_head, cwd_bytes) = walk_slots(cwd, 0);
        let exe_at = cwd_at + cwd_bytes.len();
        let (exe_head, exe_bytes) = walk_slots(exe, exe_mounts);
        let argv_at = exe_at + exe_bytes.len();
        ev.data[cwd_at..exe_at].copy_from_slice(&cwd_bytes);
        ev.data[exe_at..argv_at].copy_from_slice(&exe_bytes);
        (ev.cwd, ev.exe) = (cwd_head, exe_head);
        ev.data[argv_at..argv_at + argv.len()].copy_from_slice(argv);
        ev.argv_len = argv.len() as u32;
        let size = EXEC_FIXED_LEN + argv_at + argv.len().div_ceil(8) * 8;
        ev.header = EventHeader {
            kind: KIND_EXEC,
            size: size as u32,
            ktime_ns: 5_000,
            pid: 42,
            tgid: 42,
        };
        as_bytes(&*ev)[..size].to_vec()
    }

    /// A walk's head and slots as the program writes them: `parts` outermost first (the
    /// program walks from the innermost), `mounts` the steps that crossed a mount (their slots
    /// are unused, and `parts` has no component for them).
    pub fn walk_slots(parts: &[&[u8]], mounts: u32) -> (WalkHead, Vec<u8>) {
        const PART: usize = sensor_common::CWD_PART_LEN;
        let mut bytes = Vec::new();
        let mut depth = 0u32;
        let mut names = parts.iter().rev();
        loop {
            let mut slot = [0u8; PART];
            if mounts & (1 << depth) == 0 {
                let Some(part) = names.next() else { break };
                slot[..part.len()].copy_from_slice(part);
            }
            bytes.extend_from_slice(&slot);
            depth += 1;
        }
        (WalkHead { depth, mounts }, bytes)
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
        // innermost first: "b", <mount crossing>, "a"  => /a/b
        let (w, slots) = walk_slots(&[b"a", b"b"], 0b010);
        assert_eq!(
            w,
            WalkHead {
                depth: 3,
                mounts: 0b010
            }
        );
        assert_eq!(slots.len(), 3 * sensor_common::CWD_PART_LEN);
        assert_eq!(walk_to_path(w, &slots, "x").unwrap(), b"/a/b");
        let root = WalkHead {
            depth: 0,
            mounts: 0,
        };
        assert_eq!(walk_to_path(root, b"", "x").unwrap(), b"/");
        // Fewer slots than the steps say: an error, not a panic.
        assert!(walk_to_path(w, &slots[..100], "x").is_err());
    }

    /// A record carries only the slots its walks used and the argv bytes it has.
    #[test]
    fn exec_record_is_as_long_as_what_it_holds() {
        let bytes = exec(b"/bin/true", b"true\0m-1\0", &[b"work", b"main"], 0);
        // "/bin/true\0" -> 16, 2 + 3 slots of 64, 10 bytes of argv -> 16.
        assert_eq!(bytes.len(), EXEC_FIXED_LEN + 16 + 5 * 64 + 16);
        assert!(bytes.len() < 600, "{}", bytes.len());
        // An exe across a mount.
        let bytes = exec_with_exe(b"/x", b"x\0", &[], &[b"mnt", b"bin", b"x"], 0b100, 0);
        let Record::Exec(e) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(e.exe, b"/mnt/bin/x");
    }

    #[test]
    fn section_lengths_are_checked() {
        use std::mem::offset_of;
        let good = exec(b"/bin/x", b"x\0", &[b"tmp"], 0);
        let put = |off: usize, v: u32| {
            let mut b = good.clone();
            b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
            decode(&b).is_err()
        };
        for (field, off) in [
            ("filename_len", offset_of!(ExecEvent, filename_len)),
            ("cwd.depth", offset_of!(ExecEvent, cwd)),
            ("exe.depth", offset_of!(ExecEvent, exe)),
        ] {
            for v in [u32::MAX, 5000, 9] {
                assert!(put(off, v), "{field} = {v}");
            }
        }
        assert!(decode(&good).is_ok());
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
        let off = std::mem::offset_of!(ExecEvent, cwd) + std::mem::offset_of!(WalkHead, depth);
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
