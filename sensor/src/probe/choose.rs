//! The mode choice (pure): each rung of the ladder usable or not, with why, and the pick.
use super::types::{HostCapabilities, Mode, ModeDecision, RequestedMode, Rung};

/// Decide the capture mode from the probed capabilities.
///
/// * `ebpf_offsets`: result of resolving the kernel struct offsets from BTF
///   (done by the caller); `Err(text)` if some could not be resolved.
/// * `audit_implemented`: whether this build has the audit source; when false
///   the audit rung is unusable with reason "audit source not built yet".
///
/// The eBPF rung is usable iff BTF, the bpf() syscall, ring buffer maps,
/// tracefs and the offsets are all OK and lockdown is not "confidentiality";
/// its reason lists every failing condition. The audit rung is usable iff the
/// audit netlink check passed and the audit source is built.
///
/// `Auto` picks the first usable rung of [`Mode::LADDER`]; a forced mode is
/// chosen if usable, otherwise the decision has `mode: None` and says why.
pub fn choose_mode(
    caps: &HostCapabilities,
    ebpf_offsets: Result<(), String>,
    audit_implemented: bool,
    requested: RequestedMode,
) -> ModeDecision {
    let rungs: Vec<Rung> = Mode::LADDER
        .iter()
        .map(|&mode| match mode {
            Mode::Ebpf => ebpf_rung(caps, &ebpf_offsets),
            Mode::Audit => audit_rung(caps, audit_implemented),
        })
        .collect();

    let (mode, reason) = match requested {
        RequestedMode::Auto => {
            let mut skipped = Vec::new();
            let mut chosen = None;
            for r in &rungs {
                if r.usable {
                    chosen = Some(r.mode);
                    break;
                }
                skipped.push(format!("{} skipped [{}]", r.mode, r.reason));
            }
            match chosen {
                Some(m) if skipped.is_empty() => {
                    (Some(m), format!("auto: {m} is the first usable rung"))
                }
                Some(m) => (Some(m), format!("auto: {}, {m} usable", skipped.join(", "))),
                None => (
                    None,
                    format!("auto: no usable capture mode: {}", skipped.join(", ")),
                ),
            }
        }
        RequestedMode::Ebpf | RequestedMode::Audit => {
            let want = if requested == RequestedMode::Ebpf {
                Mode::Ebpf
            } else {
                Mode::Audit
            };
            let rung = rungs
                .iter()
                .find(|r| r.mode == want)
                .expect("every mode has a rung");
            if rung.usable {
                (Some(want), format!("requested {want}: usable"))
            } else {
                (
                    None,
                    format!("requested {want} is not usable: {}", rung.reason),
                )
            }
        }
    };

    ModeDecision {
        mode,
        reason,
        rungs,
    }
}

fn ebpf_rung(caps: &HostCapabilities, offsets: &Result<(), String>) -> Rung {
    let mut failing = Vec::new();
    if !caps.btf.ok {
        failing.push(format!("BTF unavailable: {}", caps.btf.detail));
    }
    if !caps.bpf_syscall.ok {
        failing.push(format!(
            "bpf() syscall unusable: {}",
            caps.bpf_syscall.detail
        ));
    }
    if !caps.ringbuf.ok {
        failing.push(format!(
            "BPF ring buffer unavailable: {}",
            caps.ringbuf.detail
        ));
    }
    if !caps.tracefs.ok {
        failing.push(format!("tracefs unavailable: {}", caps.tracefs.detail));
    }
    if let Err(e) = offsets {
        failing.push(format!("kernel struct offsets unresolved: {e}"));
    }
    if caps.lockdown.as_deref() == Some("confidentiality") {
        failing.push(
            "kernel lockdown is confidentiality (BPF may not read kernel memory)".to_string(),
        );
    }
    if failing.is_empty() {
        let lockdown = caps.lockdown.as_deref().unwrap_or("not reported");
        Rung {
            mode: Mode::Ebpf,
            usable: true,
            reason: format!(
                "BTF, bpf(), ring buffer, tracefs and kernel offsets available; lockdown {lockdown}"
            ),
        }
    } else {
        Rung {
            mode: Mode::Ebpf,
            usable: false,
            reason: failing.join("; "),
        }
    }
}

fn audit_rung(caps: &HostCapabilities, audit_implemented: bool) -> Rung {
    let mut failing = Vec::new();
    if !audit_implemented {
        failing.push("audit source not built yet".to_string());
    }
    if !caps.audit.ok {
        failing.push(format!("audit netlink unavailable: {}", caps.audit.detail));
    }
    if !caps.audit_coexist.ok {
        failing.push(caps.audit_coexist.detail.clone());
    }
    if failing.is_empty() {
        Rung {
            mode: Mode::Audit,
            usable: true,
            reason: format!("audit netlink answers ({})", caps.audit.detail),
        }
    } else {
        Rung {
            mode: Mode::Audit,
            usable: false,
            reason: failing.join("; "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::types::{good_caps, Check};

    fn rung(d: &ModeDecision, m: Mode) -> &Rung {
        d.rungs.iter().find(|r| r.mode == m).unwrap()
    }

    #[test]
    fn all_good_auto_picks_ebpf() {
        let d = choose_mode(&good_caps(), Ok(()), true, RequestedMode::Auto);
        assert_eq!(d.mode, Some(Mode::Ebpf));
        assert_eq!(d.rungs.len(), 2);
        assert_eq!(d.rungs[0].mode, Mode::Ebpf);
        assert_eq!(d.rungs[1].mode, Mode::Audit);
        assert!(rung(&d, Mode::Ebpf).usable);
        assert!(rung(&d, Mode::Audit).usable);
        assert!(d.reason.contains("ebpf"), "{}", d.reason);
    }

    #[test]
    fn no_btf_falls_back_to_audit() {
        let mut caps = good_caps();
        caps.btf = Check::fail("ENOENT from open(/sys/kernel/btf/vmlinux)");
        let d = choose_mode(&caps, Ok(()), true, RequestedMode::Auto);
        assert_eq!(d.mode, Some(Mode::Audit));
        let e = rung(&d, Mode::Ebpf);
        assert!(!e.usable);
        assert!(e.reason.contains("BTF"), "{}", e.reason);
        assert!(d.reason.contains("BTF"), "{}", d.reason);
    }

    #[test]
    fn no_btf_and_no_audit_source_is_none() {
        let mut caps = good_caps();
        caps.btf = Check::fail("ENOENT from open(/sys/kernel/btf/vmlinux)");
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        assert_eq!(d.mode, None);
        assert!(d.reason.contains("BTF"), "{}", d.reason);
        assert!(
            d.reason.contains("audit source not built yet"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn lockdown_confidentiality_blocks_ebpf() {
        let mut caps = good_caps();
        caps.lockdown = Some("confidentiality".into());
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        assert_eq!(d.mode, None);
        let e = rung(&d, Mode::Ebpf);
        assert!(!e.usable);
        assert!(e.reason.contains("confidentiality"), "{}", e.reason);

        // integrity does not block.
        caps.lockdown = Some("integrity".into());
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        assert_eq!(d.mode, Some(Mode::Ebpf));
        // absent does not block.
        caps.lockdown = None;
        let d = choose_mode(&caps, Ok(()), false, RequestedMode::Auto);
        assert_eq!(d.mode, Some(Mode::Ebpf));
    }

    #[test]
    fn ebpf_reason_lists_every_failure() {
        let mut caps = good_caps();
        caps.btf = Check::fail("no btf");
        caps.bpf_syscall = Check::fail("EPERM from bpf(BPF_MAP_CREATE)");
        caps.ringbuf = Check::fail("EINVAL ringbuf");
        caps.tracefs = Check::fail("tracefs not mounted");
        caps.lockdown = Some("confidentiality".into());
        let d = choose_mode(
            &caps,
            Err("task_struct.tgid missing".into()),
            false,
            RequestedMode::Auto,
        );
        let r = &rung(&d, Mode::Ebpf).reason;
        for needle in [
            "BTF",
            "EPERM from bpf(BPF_MAP_CREATE)",
            "ring buffer",
            "tracefs",
            "task_struct.tgid missing",
            "confidentiality",
        ] {
            assert!(r.contains(needle), "missing {needle:?} in {r}");
        }
    }

    #[test]
    fn offsets_error_blocks_ebpf() {
        let d = choose_mode(
            &good_caps(),
            Err("cred.uid".into()),
            true,
            RequestedMode::Auto,
        );
        assert_eq!(d.mode, Some(Mode::Audit));
        assert!(rung(&d, Mode::Ebpf).reason.contains("cred.uid"));
    }

    #[test]
    fn forced_ebpf_unusable_is_none_with_reason() {
        let mut caps = good_caps();
        caps.ringbuf = Check::fail("EINVAL from bpf(BPF_MAP_CREATE, BPF_MAP_TYPE_RINGBUF)");
        let d = choose_mode(&caps, Ok(()), true, RequestedMode::Ebpf);
        assert_eq!(d.mode, None);
        assert!(d.reason.contains("ebpf"), "{}", d.reason);
        assert!(d.reason.contains("ring buffer"), "{}", d.reason);
        // Audit is usable but was not requested: still reported as a rung.
        assert!(rung(&d, Mode::Audit).usable);
    }

    #[test]
    fn forced_modes_when_usable() {
        let d = choose_mode(&good_caps(), Ok(()), true, RequestedMode::Ebpf);
        assert_eq!(d.mode, Some(Mode::Ebpf));
        let d = choose_mode(&good_caps(), Ok(()), true, RequestedMode::Audit);
        assert_eq!(d.mode, Some(Mode::Audit));
    }

    #[test]
    fn audit_not_implemented_is_unusable() {
        let d = choose_mode(&good_caps(), Ok(()), false, RequestedMode::Audit);
        assert_eq!(d.mode, None);
        let a = rung(&d, Mode::Audit);
        assert!(!a.usable);
        assert_eq!(a.reason, "audit source not built yet");
        assert!(d.reason.contains("audit source not built yet"));
    }

    #[test]
    fn audit_beside_auditd_without_multicast_is_unusable() {
        let mut caps = good_caps();
        caps.btf = Check::fail("no btf");
        caps.audit_coexist = Check::fail(format!(
            "the audit daemon slot is held by pid 9 and {}",
            crate::sources::audit::coexist::NO_MULTICAST
        ));
        let d = choose_mode(&caps, Ok(()), true, RequestedMode::Auto);
        assert_eq!(d.mode, None);
        let a = rung(&d, Mode::Audit);
        assert!(!a.usable);
        assert!(
            a.reason
                .contains("reading beside a running auditd is impossible"),
            "{}",
            a.reason
        );
        assert!(
            d.reason
                .contains("reading beside a running auditd is impossible"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn audit_netlink_failure_is_unusable() {
        let mut caps = good_caps();
        caps.audit = Check::fail("EPROTONOSUPPORT from socket(AF_NETLINK, NETLINK_AUDIT)");
        let d = choose_mode(&caps, Ok(()), true, RequestedMode::Audit);
        assert_eq!(d.mode, None);
        assert!(d.reason.contains("EPROTONOSUPPORT"), "{}", d.reason);
    }

    #[test]
    fn mode_serde_and_parse() {
        assert_eq!(serde_json::to_string(&Mode::Ebpf).unwrap(), "\"ebpf\"");
        assert_eq!(
            serde_json::from_str::<Mode>("\"audit\"").unwrap(),
            Mode::Audit
        );
        assert_eq!(
            "AUTO".parse::<RequestedMode>().unwrap(),
            RequestedMode::Auto
        );
        assert_eq!(
            "ebpf".parse::<RequestedMode>().unwrap(),
            RequestedMode::Ebpf
        );
        assert!("kprobe".parse::<RequestedMode>().is_err());
    }
}
