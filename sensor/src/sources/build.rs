//! Builds the configured sources from the probe's mode decision and the config: the process
//! capture the decision chose (eBPF, falling back to audit when the programs fail to load),
//! then every side source the config enables (see docs/ARCHITECTURE.md, "Sources").
use super::audit::source::AuditCapture;
use super::conntrack::source::ConntrackCapture;
use super::ebpf::source::EbpfSource;
use super::files::source::FileCapture;
use super::logins::source::LoginCapture;
use super::source::{Source, SourceEnv, StartError};
use crate::config::Config;
use crate::probe::{Mode, ModeDecision, RequestedMode};

/// The started sources, the mode the process capture runs in, and the reason in words.
pub struct Running {
    pub mode: Mode,
    pub reason: String,
    pub sources: Vec<Box<dyn Source>>,
}

type Start = fn(&Config, &SourceEnv) -> Option<Result<Box<dyn Source>, StartError>>;

/// Sources that run beside the process capture, whatever its mode, in start order.
const SIDE_SOURCES: [(&str, Start); 3] = [
    ("logins", start_if_enabled::<LoginCapture>),
    ("files", start_if_enabled::<FileCapture>),
    ("conntrack", start_if_enabled::<ConntrackCapture>),
];

fn start_if_enabled<S: Source>(
    cfg: &Config,
    env: &SourceEnv,
) -> Option<Result<Box<dyn Source>, StartError>> {
    S::enabled(cfg).then(|| S::start(cfg, env).map(|s| Box::new(s) as Box<dyn Source>))
}

fn boxed<S: Source>(s: S) -> Box<dyn Source> {
    Box::new(s)
}

/// Starts the process capture the decision chose, then the side sources. A side source that
/// fails to start is logged (and named in the reason when it says so); the sensor runs on.
pub fn start_all(
    cfg: &Config,
    decision: &ModeDecision,
    requested: RequestedMode,
    env: &SourceEnv,
) -> Result<Running, StartError> {
    let (mode, process, reason) = start_process_capture(cfg, decision, requested, env)?;
    let mut reasons = vec![reason];
    let mut sources = vec![process];
    for (name, start) in SIDE_SOURCES {
        match start(cfg, env) {
            None => {}
            Some(Ok(s)) => {
                reasons.extend(s.reason());
                sources.push(s);
            }
            Some(Err(e)) => {
                tracing::error!(source = name, error = %e, "source failed to start");
                reasons.extend(e.reason());
            }
        }
    }
    Ok(Running {
        mode,
        reason: reasons.join("; "),
        sources,
    })
}

/// The fallback ladder's last step: a verifier rejection, lockdown or a denied bpf() at load
/// time falls back to audit when the mode was chosen automatically and audit is usable.
fn start_process_capture(
    cfg: &Config,
    decision: &ModeDecision,
    requested: RequestedMode,
    env: &SourceEnv,
) -> Result<(Mode, Box<dyn Source>, String), StartError> {
    let mode = decision
        .mode
        .ok_or_else(|| StartError::NoMode(decision.reason.clone()))?;
    let audit_usable = decision
        .rungs
        .iter()
        .any(|r| r.mode == Mode::Audit && r.usable);
    let with_reason = |s: &dyn Source| {
        std::iter::once(decision.reason.clone())
            .chain(s.reason())
            .collect::<Vec<_>>()
            .join("; ")
    };
    if mode == Mode::Ebpf {
        match <EbpfSource as Source>::start(cfg, env) {
            Ok(s) => {
                let s = boxed(s);
                let reason = with_reason(&*s);
                return Ok((mode, s, reason));
            }
            Err(e) if requested == RequestedMode::Auto && audit_usable => {
                tracing::warn!(error = %e, "eBPF load failed; falling back to audit");
                let s = <AuditCapture as Source>::start(cfg, env)?;
                let note = s.reason().unwrap_or_default();
                let inner = match &e {
                    StartError::Ebpf(inner) => inner.to_string(),
                    other => other.to_string(),
                };
                return Ok((
                    Mode::Audit,
                    boxed(s),
                    format!("auto: eBPF failed to load ({inner}); audit: {note}"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    let s = boxed(<AuditCapture as Source>::start(cfg, env)?);
    let reason = with_reason(&*s);
    Ok((mode, s, reason))
}
