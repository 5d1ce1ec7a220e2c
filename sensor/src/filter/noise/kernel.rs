//! The rules the kernel can take: execs dropped by exact comm, before the ring buffer.
use super::glob::Glob;
use super::{NoiseConfig, NoiseRule, COMM_MAX};

/// Whether the rule's decision on a `process_exec` depends only on exact comm names, so the
/// kernel can take it: it applies to execs (its `kinds` are empty or include
/// `process_exec`), it has `comm` entries that are all literal (no glob metacharacters, at
/// most 15 bytes), and no other condition.
pub fn is_kernel_comm_rule(r: &NoiseRule) -> bool {
    let execs = r.kinds.is_empty() || r.kinds.iter().any(|k| k == "process_exec");
    let only_comm = r.exe.is_empty()
        && r.argv.is_empty()
        && r.argv_glob.is_empty()
        && r.parent_exe.is_empty()
        && r.users.is_empty()
        && r.path_prefix.is_empty();
    execs
        && only_comm
        && !r.comm.is_empty()
        && r.comm.iter().all(|c| {
            !c.is_empty()
                && c.len() <= COMM_MAX
                && Glob::new(c).ok().and_then(|g| g.literal().map(|l| l == c)) == Some(true)
        })
}

/// The comm key the kernel compares: the name, NUL-padded to `TASK_COMM_LEN` (16).
pub fn comm_key(comm: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    let b = comm.as_bytes();
    let n = b.len().min(COMM_MAX);
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// Comms whose execs the kernel may drop, each with the index of the rule (in
/// [`NoiseConfig::all_rules`] order) that owns it; first rule wins for a comm listed twice.
/// Empty when the filter is disabled.
pub fn kernel_comm_rules(cfg: &NoiseConfig) -> Vec<([u8; 16], u32)> {
    let mut out: Vec<([u8; 16], u32)> = Vec::new();
    if !cfg.enabled {
        return out;
    }
    // A comm-only rule that comes after a rule which could *keep*... rules only drop, so the
    // first dropping rule decides; an earlier non-kernel rule matching the same exec only
    // changes which counter is bumped.
    for (i, r) in cfg.all_rules().enumerate() {
        if !is_kernel_comm_rule(r) {
            continue;
        }
        for c in &r.comm {
            let k = comm_key(c);
            if !out.iter().any(|(x, _)| *x == k) {
                out.push((k, i as u32));
            }
        }
    }
    out
}

/// The comms whose execs can be dropped in the kernel (pure "drop exec by exact comm" rules).
pub fn kernel_comm_filter(cfg: &NoiseConfig) -> Vec<[u8; 16]> {
    kernel_comm_rules(cfg).into_iter().map(|(k, _)| k).collect()
}
