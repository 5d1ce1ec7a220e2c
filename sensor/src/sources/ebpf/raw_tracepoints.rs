//! Programs attached as raw tracepoints (they get the tracepoint's `TP_PROTO` arguments, such
//! as the child `task_struct` of `sched_process_fork`, which the classic format lacks).
use aya::{programs::RawTracePoint, Ebpf};

use super::EbpfError;

/// (program, raw tracepoint) pairs.
const RAW_TRACEPOINTS: [(&str, &str); 1] = [("sched_process_fork", "sched_process_fork")];

/// Loads and attaches every raw-tracepoint program of the object.
pub fn attach(ebpf: &mut Ebpf) -> Result<(), EbpfError> {
    for (name, point) in RAW_TRACEPOINTS {
        let err = |e| EbpfError::Program {
            name,
            source: Box::new(e),
        };
        let prog: &mut RawTracePoint = ebpf
            .program_mut(name)
            .ok_or(EbpfError::MissingProgram(name))?
            .try_into()
            .map_err(err)?;
        prog.load().map_err(err)?;
        prog.attach(point).map_err(err)?;
    }
    Ok(())
}
