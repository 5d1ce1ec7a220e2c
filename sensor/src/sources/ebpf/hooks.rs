//! Which program attaches where, and what to do when a kernel lacks a hook.
//!
//! Connects and credential changes are captured below the syscall layer (fexit on
//! `__sys_connect_file`, kprobes on `commit_creds` / `begin_new_exec`), where native, ia32
//! (`int 0x80`) and io_uring paths all pass. Where those hooks cannot be attached, the syscall
//! tracepoints take over and the blind spot that leaves is named (it goes into the health
//! reason).
use aya::{
    programs::{FExit, KProbe, TracePoint},
    Btf, Ebpf,
};

use super::EbpfError;

/// One attachment of one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A tracepoint program on (category, event).
    Tracepoint(&'static str, String),
    /// A kprobe on a kernel function.
    KProbe(&'static str),
    /// An fexit program on a kernel function (needs its BTF).
    FExit(&'static str),
}

/// Programs in attach order, each with its hooks.
pub type Group = Vec<(&'static str, Vec<Hook>)>;

/// Native credential-changing syscalls (their tracepoints only name the call).
pub const CRED_SYSCALLS: [&str; 7] = [
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "capset",
];

fn sys(prefix: &str, names: &[&str]) -> Vec<Hook> {
    names
        .iter()
        .map(|n| Hook::Tracepoint("syscalls", format!("{prefix}_{n}")))
        .collect()
}

fn tp(category: &'static str, event: &str) -> Vec<Hook> {
    vec![Hook::Tracepoint(category, event.to_string())]
}

/// Always attached: exits before execs, so no event whose start we report misses its end.
pub fn core() -> Group {
    vec![
        ("sched_process_exit", tp("sched", "sched_process_exit")),
        ("sched_process_exec", tp("sched", "sched_process_exec")),
    ]
}

/// A capability with a preferred set of hooks and a fallback, and what the fallback misses.
pub struct Layered {
    pub what: &'static str,
    pub primary: Group,
    pub fallback: Group,
    pub blind_spot: &'static str,
}

pub fn layered() -> Vec<Layered> {
    vec![
        Layered {
            what: "net_connect",
            primary: vec![(
                "connect_file_exit",
                vec![Hook::FExit("__sys_connect_file")],
            )],
            fallback: vec![
                ("sys_exit_connect", tp("syscalls", "sys_exit_connect")),
                ("sys_enter_connect", tp("syscalls", "sys_enter_connect")),
            ],
            blind_spot: "connects through the ia32 entry (int 0x80) and io_uring are not seen",
        },
        Layered {
            what: "privilege_change",
            primary: vec![
                ("cred_call_exit", sys("sys_exit", &CRED_SYSCALLS)),
                ("commit_creds", vec![Hook::KProbe("commit_creds")]),
                ("begin_new_exec", vec![Hook::KProbe("begin_new_exec")]),
                ("cred_call_enter", sys("sys_enter", &CRED_SYSCALLS)),
            ],
            fallback: vec![
                ("exec_cred_enter", sys("sys_enter", &["execve", "execveat"])),
                ("cred_change_exit", sys("sys_exit", &CRED_SYSCALLS)),
                ("cred_change_enter", sys("sys_enter", &CRED_SYSCALLS)),
            ],
            blind_spot: "set*id/capset through the ia32 entry (int 0x80) and ia32 execs of \
                         set-id binaries are not seen",
        },
    ]
}

/// Loads and attaches one program to its hooks. `btf` is parsed on first need (fexit only).
fn attach(
    ebpf: &mut Ebpf,
    name: &'static str,
    hooks: &[Hook],
    btf: &mut Option<Btf>,
) -> Result<(), EbpfError> {
    let err = |e| EbpfError::Program {
        name,
        source: Box::new(e),
    };
    let prog = ebpf
        .program_mut(name)
        .ok_or(EbpfError::MissingProgram(name))?;
    match hooks.first() {
        Some(Hook::Tracepoint(..)) => {
            let prog: &mut TracePoint = prog.try_into().map_err(err)?;
            prog.load().map_err(err)?;
            for hook in hooks {
                if let Hook::Tracepoint(category, event) = hook {
                    prog.attach(category, event).map_err(err)?;
                }
            }
        }
        Some(Hook::KProbe(function)) => {
            let prog: &mut KProbe = prog.try_into().map_err(err)?;
            prog.load().map_err(err)?;
            prog.attach(function, 0).map_err(err)?;
        }
        Some(Hook::FExit(function)) => {
            if btf.is_none() {
                *btf = Some(Btf::from_sys_fs().map_err(|e| EbpfError::Map {
                    name: "kernel BTF",
                    reason: e.to_string(),
                })?);
            }
            let prog: &mut FExit = prog.try_into().map_err(err)?;
            prog.load(function, btf.as_ref().expect("parsed above"))
                .map_err(err)?;
            prog.attach().map_err(err)?;
        }
        None => {}
    }
    Ok(())
}

/// Unloads (and so detaches) the programs of a group that failed half-way.
fn unload(ebpf: &mut Ebpf, group: &Group) {
    for (name, _) in group {
        if let Some(prog) = ebpf.program_mut(name) {
            let _ = prog.unload();
        }
    }
}

/// Attaches everything; returns the blind spots left by hooks this kernel lacks.
pub fn attach_all(ebpf: &mut Ebpf) -> Result<Vec<String>, EbpfError> {
    let mut btf = None;
    for (name, hooks) in core() {
        attach(ebpf, name, &hooks, &mut btf)?;
    }
    let mut blind = Vec::new();
    for layer in layered() {
        let primary = layer
            .primary
            .iter()
            .try_for_each(|(name, hooks)| attach(ebpf, name, hooks, &mut btf));
        if let Err(e) = primary {
            tracing::warn!(what = layer.what, error = %e, "falling back to syscall tracepoints");
            unload(ebpf, &layer.primary);
            for (name, hooks) in &layer.fallback {
                attach(ebpf, name, hooks, &mut btf)?;
            }
            blind.push(format!("{}: {} ({e})", layer.what, layer.blind_spot));
        }
    }
    Ok(blind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_has_hooks_of_one_kind_per_program() {
        for layer in layered() {
            for (name, hooks) in layer.primary.iter().chain(&layer.fallback) {
                assert!(!hooks.is_empty(), "{name}");
                let kind = std::mem::discriminant(&hooks[0]);
                assert!(hooks.iter().all(|h| std::mem::discriminant(h) == kind), "{name}");
            }
        }
    }

    #[test]
    fn exit_halves_attach_before_entry_halves() {
        for layer in layered() {
            for group in [&layer.primary, &layer.fallback] {
                let pos = |needle: &str| group.iter().position(|(n, _)| n.contains(needle));
                if let (Some(exit), Some(enter)) = (pos("exit"), pos("enter")) {
                    assert!(exit < enter, "{}", layer.what);
                }
            }
        }
    }
}
