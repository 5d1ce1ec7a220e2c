//! The `sensor probe` text report (pure).
use super::types::{Check, HostCapabilities, ModeDecision};

/// Human-readable report for `sensor probe`: one line per capability, then each
/// rung (usable/skipped with its reason), then the chosen mode.
pub fn render_report(caps: &HostCapabilities, decision: &ModeDecision) -> String {
    use std::fmt::Write as _;

    fn line(out: &mut String, name: &str, c: &Check) {
        let status = if c.ok { "ok" } else { "FAIL" };
        let _ = writeln!(out, "{name:<16} {status:<4}  {}", c.detail);
    }

    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {}", "kernel release", caps.kernel_release);
    line(&mut out, "btf", &caps.btf);
    line(&mut out, "bpf syscall", &caps.bpf_syscall);
    line(&mut out, "bpf ringbuf", &caps.ringbuf);
    line(&mut out, "tracefs", &caps.tracefs);
    let lockdown = caps
        .lockdown
        .as_deref()
        .unwrap_or("not reported (/sys/kernel/security/lockdown absent)");
    let _ = writeln!(out, "{:<16} {lockdown}", "lockdown");
    line(&mut out, "audit netlink", &caps.audit);
    line(&mut out, "audit beside", &caps.audit_coexist);
    line(&mut out, "fanotify fid", &caps.fanotify_fid);
    line(&mut out, "fanotify fd", &caps.fanotify_fd);
    line(&mut out, "conntrack", &caps.conntrack);
    for c in &caps.coverage {
        let _ = writeln!(out, "{:<28} {:<5}  {}", c.what, c.status(), c.detail);
    }
    for r in &decision.rungs {
        let state = if r.usable { "usable" } else { "skipped" };
        let _ = writeln!(out, "rung {:<11} {state:<7}  {}", r.mode.as_str(), r.reason);
    }
    match decision.mode {
        Some(m) => {
            let _ = writeln!(out, "mode: {m} ({})", decision.reason);
        }
        None => {
            let _ = writeln!(out, "mode: none ({})", decision.reason);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::choose_mode;
    use crate::probe::types::{good_caps, RequestedMode};

    #[test]
    fn report_mentions_everything() {
        let caps = good_caps();
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        let r = render_report(&caps, &d);
        assert!(r.contains("6.1.0-test"));
        assert!(r.contains("rung ebpf"));
        assert!(r.contains("usable"));
        assert!(r.contains("skipped  audit source not built yet"), "{r}");
        assert!(r
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("mode: ebpf ("));

        let mut caps = good_caps();
        caps.tracefs = Check::fail("tracefs not mounted");
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        let r = render_report(&caps, &d);
        assert!(r.contains("FAIL"));
        assert!(r
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("mode: none ("));
    }
}
