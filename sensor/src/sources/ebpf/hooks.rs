//! Which program attaches where, and what to do when a kernel lacks a hook.
//!
//! The syscall tracepoints see native calls with their results, but ignore compat (ia32,
//! `int 0x80`) syscalls and never see io_uring operations. Connects on those paths are caught
//! by cgroup `connect4`/`connect6` programs on the cgroup v2 root, which every connect passes
//! in the kernel; where they cannot be attached (no cgroup v2, no cgroup BPF), the blind spot
//! that leaves is named in the health reason. The cgroup hook runs before the connection is
//! made; the real result comes from `raw_syscalls:sys_exit` for a compat syscall and from
//! `io_uring_complete` for an io_uring request (`sensor-ebpf/src/compat_syscall.rs`,
//! `uring_connect.rs`). ia32 credential changes are reported at the call by the
//! `raw_syscalls` programs; the exec and exit programs compare credentials as a safety net
//! (`sensor-ebpf/src/cred_watch.rs`).
use std::path::{Path, PathBuf};

use aya::{
    programs::{
        cgroup_sock_addr::CgroupSockAddr, CgroupAttachMode, Program, ProgramError, RawTracePoint,
        TracePoint,
    },
    Ebpf,
};
use sensor_common::{HOOK_COMPAT_EXIT, HOOK_URING};

use super::EbpfError;

/// Native credential-changing syscalls.
pub const CRED_SYSCALLS: [&str; 7] = [
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "capset",
];

/// Tracepoint programs and their (category, event) attachments, in attach order: exit halves
/// before entry halves, so no event whose start we report can miss its end.
pub fn tracepoints() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let sys = |prefix: &str, names: &[&str]| -> Vec<(&'static str, String)> {
        names
            .iter()
            .map(|n| ("syscalls", format!("{prefix}_{n}")))
            .collect()
    };
    vec![
        (
            "sched_process_exit",
            vec![("sched", "sched_process_exit".into())],
        ),
        ("exec_cred_enter", sys("sys_enter", &["execve", "execveat"])),
        (
            "sched_process_exec",
            vec![("sched", "sched_process_exec".into())],
        ),
        (
            "sys_exit_connect",
            vec![("syscalls", "sys_exit_connect".into())],
        ),
        (
            "sys_enter_connect",
            vec![("syscalls", "sys_enter_connect".into())],
        ),
        ("cred_change_exit", sys("sys_exit", &CRED_SYSCALLS)),
        ("cred_change_enter", sys("sys_enter", &CRED_SYSCALLS)),
    ]
}

/// The cgroup connect programs (attached after `sys_enter_connect`, which they rely on to skip
/// native connects).
pub const CGROUP_CONNECT: [&str; 2] = ["cgroup_connect4", "cgroup_connect6"];

/// What is unseen when the cgroup connect programs cannot be attached.
pub const CONNECT_BLIND_SPOT: &str =
    "net_connect: connects through the ia32 entry (int 0x80) and io_uring are not seen";

/// What is unknown when the `raw_syscalls` programs cannot be attached.
pub const COMPAT_BLIND_SPOT: &str = "ia32 (int 0x80) syscalls: connects are reported without \
     their result (`attempted`) and set*id/capset only at the next exec or exit";

/// What is unknown when io_uring requests cannot be paired with their completions.
pub const URING_BLIND_SPOT: &str =
    "io_uring connects are reported without their result (`attempted`)";

/// The `raw_syscalls` program: the exit half only (docs/ARCHITECTURE.md, "ia32").
const COMPAT_PROGRAMS: [(&str, &str); 1] = [("compat_sys_exit", "sys_exit")];

/// Whether `name` is one of the `raw_syscalls` programs (run on every syscall).
pub fn is_syscall_hook(name: &str) -> bool {
    COMPAT_PROGRAMS.iter().any(|(n, _)| *n == name)
}

fn error_text(name: &str, e: &(dyn std::error::Error + 'static)) -> String {
    // The kernel's errno is at the end of the source chain.
    format!(
        "program {name}: {}",
        sensor_proto::error_chain::error_chain(e)
    )
}

/// Loads each named program as a `P` and attaches it to its point with `attach` (which loads
/// and attaches). The one loop for the optional hooks; errors name the program.
fn load_and_attach<P, A>(
    ebpf: &mut Ebpf,
    programs: impl IntoIterator<Item = (&'static str, A)>,
    attach: impl Fn(&mut P, A) -> Result<(), ProgramError>,
) -> Result<(), String>
where
    for<'a> &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    for (name, point) in programs {
        let err = |e: ProgramError| error_text(name, &e);
        let prog: &mut P = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the object"))?
            .try_into()
            .map_err(err)?;
        attach(prog, point).map_err(err)?;
    }
    Ok(())
}

fn attach_compat(ebpf: &mut Ebpf) -> Result<(), String> {
    load_and_attach(ebpf, COMPAT_PROGRAMS, |p: &mut RawTracePoint, point| {
        p.load()?;
        p.attach(point).map(drop)
    })
}

fn attach_uring(ebpf: &mut Ebpf) -> Result<(), String> {
    let tracefs = super::tracefs::find().ok_or("no tracefs")?;
    let u = super::offsets::uring_tracepoints(&tracefs)
        .ok_or("the io_uring tracepoints carry no request pointer on this kernel (5.12+ needed)")?;
    let programs = [
        ("uring_complete", "io_uring_complete"),
        ("uring_submit", u.submit_event),
    ];
    load_and_attach(ebpf, programs, |p: &mut TracePoint, event| {
        p.load()?;
        p.attach("io_uring", event).map(drop)
    })
}

/// Tells the cgroup connect programs which result hooks are attached.
fn set_hooks(ebpf: &mut Ebpf, bits: u32) -> Result<(), String> {
    let map = ebpf.map_mut("HOOKS").ok_or("map HOOKS missing")?;
    let mut hooks: aya::maps::Array<_, u32> =
        aya::maps::Array::try_from(map).map_err(|e| format!("map HOOKS: {e}"))?;
    hooks.set(0, bits, 0).map_err(|e| format!("map HOOKS: {e}"))
}

/// The root of a cgroup v2 hierarchy in `/proc/self/mountinfo` text (root "/" of the
/// hierarchy mounted somewhere; a hybrid host has it at /sys/fs/cgroup/unified).
pub fn cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mut f = left.split_whitespace();
        let root = f.nth(3)?;
        let mount_point = f.next()?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(unescape(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Where the sensor mounts cgroup v2 when the host has no v2 mount (cgroup v1 only).
const PRIVATE_CGROUP2: &str = "/run/sensor-cgroup2";

/// Opens the cgroup v2 root, mounting the hierarchy privately when no mount exists.
fn open_cgroup2_root() -> Result<std::fs::File, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let root = match cgroup2_root(&mountinfo) {
        Some(root) => root,
        None => mount_cgroup2(Path::new(PRIVATE_CGROUP2))?,
    };
    std::fs::File::open(&root).map_err(|e| format!("{}: {e}", root.display()))
}

fn mount_cgroup2(at: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(at).map_err(|e| format!("{}: {e}", at.display()))?;
    let target =
        std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"cgroup2".as_ptr(),
            target.as_ptr(),
            c"cgroup2".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(format!(
            "no cgroup v2 mount, and mounting one at {} failed: {}",
            at.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(at.to_path_buf())
}

fn program_err(name: &'static str) -> impl Fn(ProgramError) -> EbpfError {
    move |e| EbpfError::Program {
        name,
        source: Box::new(e),
    }
}

fn attach_cgroup_connect(ebpf: &mut Ebpf) -> Result<(), String> {
    let cgroup = open_cgroup2_root()?;
    load_and_attach(
        ebpf,
        CGROUP_CONNECT.map(|name| (name, ())),
        |p: &mut CgroupSockAddr, ()| {
            p.load()?;
            // On 5.7+ aya attaches through a bpf link, which the kernel always adds beside
            // other programs (systemd's, a container runtime's) and which takes no flags:
            // `Single` means flags 0 there (any other mode makes the kernel answer EINVAL).
            p.attach(&cgroup, CgroupAttachMode::Single).map(drop)
        },
    )
}

/// What to do about the ia32 hooks (`ebpf.ia32_hooks` and the kernel's ia32 entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ia32Plan {
    Attach,
    /// The kernel has no ia32 entry: nothing to see, so nothing to pay for.
    NoEntry,
    /// Turned off by configuration: a named blind spot.
    Off,
}

impl Ia32Plan {
    /// The plan for a setting; `probe` (the kernel's ia32 entry) runs only for `auto`.
    pub fn of(
        setting: crate::config::Ia32Hooks,
        probe: impl FnOnce() -> crate::sources::ia32_entry::Ia32Entry,
    ) -> Ia32Plan {
        use crate::{config::Ia32Hooks, sources::ia32_entry::Ia32Entry};
        match setting {
            Ia32Hooks::Off => Ia32Plan::Off,
            Ia32Hooks::Auto => match probe() {
                Ia32Entry::Present => Ia32Plan::Attach,
                Ia32Entry::Absent => Ia32Plan::NoEntry,
            },
        }
    }
}

/// What attaching left: blind spots (hooks this host lacks or that are turned off) and
/// notes (facts about coverage that are not blind spots).
#[derive(Debug, Default)]
pub struct Attached {
    pub blind_spots: Vec<String>,
    pub notes: Vec<String>,
}

/// Attaches everything; says what hooks this host lacks left unseen.
pub fn attach_all(ebpf: &mut Ebpf, ia32: Ia32Plan) -> Result<Attached, EbpfError> {
    for (name, points) in tracepoints() {
        let err = program_err(name);
        let prog: &mut TracePoint = ebpf
            .program_mut(name)
            .ok_or(EbpfError::MissingProgram(name))?
            .try_into()
            .map_err(&err)?;
        prog.load().map_err(&err)?;
        for (category, event) in points {
            prog.attach(category, &event).map_err(&err)?;
        }
    }
    let mut blind = Vec::new();
    let mut notes = Vec::new();
    let mut bits = 0;
    match ia32 {
        Ia32Plan::Attach => match attach_compat(ebpf) {
            Ok(()) => bits |= HOOK_COMPAT_EXIT,
            Err(e) => {
                tracing::warn!(error = %e, "raw_syscalls hooks unavailable");
                blind.push(format!("{COMPAT_BLIND_SPOT} ({e})"));
            }
        },
        Ia32Plan::NoEntry => {
            let note = format!("ia32: {}", crate::sources::ia32_entry::NO_ENTRY);
            tracing::info!("{note}");
            notes.push(note);
        }
        Ia32Plan::Off => {
            tracing::warn!("raw_syscalls hooks turned off (ebpf.ia32_hooks = \"off\")");
            blind.push(format!("{COMPAT_BLIND_SPOT} (ebpf.ia32_hooks = \"off\")"));
        }
    }
    match attach_uring(ebpf) {
        Ok(()) => bits |= HOOK_URING,
        Err(e) => {
            tracing::warn!(error = %e, "io_uring hooks unavailable");
            blind.push(format!("{URING_BLIND_SPOT} ({e})"));
        }
    }
    if let Err(e) = set_hooks(ebpf, bits) {
        blind.push(format!("{COMPAT_BLIND_SPOT}; {URING_BLIND_SPOT} ({e})"));
    }
    if let Err(e) = attach_cgroup_connect(ebpf) {
        tracing::warn!(error = %e, "cgroup connect hooks unavailable");
        for name in CGROUP_CONNECT {
            if let Some(p) = ebpf.program_mut(name) {
                if let Ok(p) = <&mut CgroupSockAddr>::try_from(p) {
                    let _ = p.unload();
                }
            }
        }
        blind.push(format!("{CONNECT_BLIND_SPOT} ({e})"));
    }
    Ok(Attached {
        blind_spots: blind,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_root_on_hybrid_and_v1_hosts() {
        let hybrid = "30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      35 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        // A container's view: a v2 mount of a sub-cgroup is not the root.
        let sub = "40 30 0:27 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(sub), None);
        let v1 = "35 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_root(v1), None);
        let spaced = "31 30 0:27 / /mnt/cg\\0402 rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(spaced), Some(PathBuf::from("/mnt/cg 2")));
    }

    #[test]
    fn ia32_hooks_follow_the_setting_and_the_kernel() {
        use crate::{config::Ia32Hooks, sources::ia32_entry::Ia32Entry};
        assert_eq!(
            Ia32Plan::of(Ia32Hooks::Auto, || Ia32Entry::Present),
            Ia32Plan::Attach
        );
        assert_eq!(
            Ia32Plan::of(Ia32Hooks::Auto, || Ia32Entry::Absent),
            Ia32Plan::NoEntry
        );
        // "off" never probes: the answer would not change anything.
        assert_eq!(
            Ia32Plan::of(Ia32Hooks::Off, || unreachable!("probed with the hooks off")),
            Ia32Plan::Off
        );
    }

    #[test]
    fn exit_halves_attach_before_entry_halves() {
        let names: Vec<&str> = tracepoints().iter().map(|(n, _)| *n).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("sys_exit_connect") < pos("sys_enter_connect"));
        assert!(pos("cred_change_exit") < pos("cred_change_enter"));
        assert!(pos("sched_process_exit") < pos("sched_process_exec"));
    }
}
