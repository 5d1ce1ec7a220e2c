//! The file-activity capture: chooses a rung by trying it (FID -> fd -> inotify), starts one
//! thread per kernel interface, and exposes the counters for the health event.
use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::emit::{Sink, SinkParts};
use super::fanotify_fd::{self, FdGroup, FD_OPS};
use super::fanotify_fid::{self, FidGroup};
use super::filter::PathFilter;
use super::inotify::Watcher;
use super::roots::Plan;
use super::{FileModeRequest, FileStats, FilesConfig, OpSet};
use crate::config::Config;
use crate::event::Source;
use crate::sources::source::{stop_blocking, SourceEnv, StartError, StopFuture};
use crate::sources::SourceCtx;
use crate::telemetry::fields::Telemetry;

/// The rung in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    FanotifyFid,
    FanotifyFd,
    Inotify,
}

impl FileMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FileMode::FanotifyFid => "fanotify-fid",
            FileMode::FanotifyFd => "fanotify-fd",
            FileMode::Inotify => "inotify",
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("file activity capture is disabled (files.enabled = false)")]
    Disabled,
    #[error("invalid files config: {0}")]
    Config(String),
    #[error("files.mode = {mode} is unavailable: {reason}")]
    Forced { mode: FileMode, reason: String },
    #[error("no file activity capture is usable: {0}")]
    Unavailable(String),
    #[error("spawning a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// `"{call}: EPERM (Operation not permitted)"` for the last OS error.
pub(super) fn errno_text(call: &str) -> String {
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(n) => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            format!("{call}: {} ({text})", crate::probe::errno_name(n))
        }
        None => format!("{call}: {e}"),
    }
}

/// How long the fanotify readers let events queue after a read that emptied the queue. The
/// kernel merges the events of one object (same directory, name, object and pid) while they
/// wait, so a file created, written, closed and deleted within the pause is one event instead
/// of four, and the writers stop waking the reader on every event (measured with
/// `scripts/bench-files`; see docs/ARCHITECTURE.md#files).
pub(super) const FANOTIFY_BATCH_PAUSE: Duration = Duration::from_millis(1);

/// A read within this many bytes of the buffer's end counts as full: larger than any one
/// fanotify or inotify event (metadata, FID records with a handle of `MAX_HANDLE_SZ` and two
/// names of up to 255 bytes).
const BATCH_FULL_MARGIN: usize = 4096;

/// A read of `n` bytes into a buffer of `cap` could not have taken one more event: more may
/// be queued (read on). Otherwise the queue was empty when the read took its last event.
pub(super) fn batch_full(n: usize, cap: usize) -> bool {
    n + BATCH_FULL_MARGIN > cap
}

/// Polls `fd` and hands each read to `handle` until `stop` is set or a callback returns
/// false. `on_idle` runs when nothing arrived for 100 ms. After `stop`, what is already queued
/// is drained for at most a second (a filesystem mark on a busy disk is never empty).
///
/// `pause`: after a read that did not fill the buffer, wait this long before the next one, so
/// that a storm is read in batches: the first event after a quiet spell is read at once, the
/// ones behind it wait at most `pause` (see docs/ARCHITECTURE.md#files).
pub(super) fn read_loop(
    fd: RawFd,
    buf_size: usize,
    pause: Duration,
    stop: &AtomicBool,
    mut on_idle: impl FnMut() -> bool,
    mut handle: impl FnMut(&[u8]) -> bool,
) {
    let mut buf = vec![0u8; buf_size];
    let mut drain_until: Option<Instant> = None;
    let mut errors = 0u32;
    loop {
        if drain_until.is_none() && stop.load(Relaxed) {
            drain_until = Some(Instant::now() + Duration::from_secs(1));
        }
        if drain_until.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = if drain_until.is_some() { 0 } else { 100 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        }
        if r == 0 {
            if !on_idle() || drain_until.is_some() {
                break;
            }
            continue;
        }
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                _ => {
                    errors += 1;
                    if errors <= 10 {
                        tracing::warn!(error = %e, "reading file events failed");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            continue;
        }
        if n == 0 {
            continue;
        }
        if !handle(&buf[..n as usize]) {
            return;
        }
        let full = batch_full(n as usize, buf.len());
        if !pause.is_zero() && !full && drain_until.is_none() {
            std::thread::sleep(pause);
        }
    }
    on_idle();
}

/// A rung that opened: what to run.
enum Setup {
    Fid {
        group: FidGroup,
        extra: Option<Watcher>,
    },
    Fd {
        group: FdGroup,
        extra: Option<Watcher>,
    },
    Inotify(Watcher),
}

/// The body of one capture thread, given the stop flag.
type Job = Box<dyn FnOnce(&AtomicBool) + Send>;

/// A running file capture. `stop` joins its threads.
pub struct FileCapture {
    pub mode: FileMode,
    /// Why this rung: what it covers, and the error of every rung skipped before it.
    pub reason: String,
    pub stats: Arc<FileStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

struct Prepared {
    ops: OpSet,
    plan: Plan,
    filter: Arc<PathFilter>,
    stats: Arc<FileStats>,
}

fn prepare(cfg: &FilesConfig) -> Result<Prepared, FilesError> {
    if !cfg.enabled {
        return Err(FilesError::Disabled);
    }
    cfg.validate().map_err(FilesError::Config)?;
    let ops = OpSet::parse(&cfg.ops).map_err(FilesError::Config)?;
    let plan = Plan::new(&cfg.watch, &cfg.exclude, &cfg.ignore_paths);
    let filter = Arc::new(PathFilter::new(
        &plan.watch_patterns,
        &plan.exclude_patterns,
        &plan.ignore_patterns,
    ));
    let stats = Arc::new(FileStats::default());
    let missing = plan.missing();
    stats.trees_missing.store(missing.len() as u64, Relaxed);
    if !missing.is_empty() {
        tracing::info!(trees = ?missing, "watched trees that do not exist (yet): fanotify covers them by path once created, inotify does not");
    }
    Ok(Prepared {
        ops,
        plan,
        filter,
        stats,
    })
}

/// Tries the rungs in order; returns the first that opens (its setup, or None in a dry run)
/// with what it covers and the reasons of the rungs skipped before it.
fn choose(
    cfg: &FilesConfig,
    p: &Prepared,
    dry_run: bool,
) -> Result<(FileMode, Option<Setup>, String), FilesError> {
    let ladder: &[FileMode] = match cfg.mode {
        FileModeRequest::Auto => &[
            FileMode::FanotifyFid,
            FileMode::FanotifyFd,
            FileMode::Inotify,
        ],
        FileModeRequest::FanotifyFid => &[FileMode::FanotifyFid],
        FileModeRequest::FanotifyFd => &[FileMode::FanotifyFd],
        FileModeRequest::Inotify => &[FileMode::Inotify],
    };
    let mut skipped: Vec<String> = Vec::new();
    for &mode in ladder {
        let attempt = match mode {
            FileMode::FanotifyFid => try_fid(cfg, p, dry_run),
            FileMode::FanotifyFd => try_fd(cfg, p, dry_run),
            FileMode::Inotify => try_inotify(p, dry_run),
        };
        match attempt {
            Ok((setup, reason)) => {
                let reason = if skipped.is_empty() {
                    reason
                } else {
                    format!("{reason} (skipped {})", skipped.join("; "))
                };
                return Ok((mode, setup, reason));
            }
            Err(e) => {
                if cfg.mode != FileModeRequest::Auto {
                    return Err(FilesError::Forced { mode, reason: e });
                }
                tracing::info!(mode = %mode, reason = %e, "file capture rung unavailable");
                skipped.push(format!("{mode}: {e}"));
            }
        }
    }
    Err(FilesError::Unavailable(skipped.join("; ")))
}

type Attempt = Result<(Option<Setup>, String), String>;

fn try_fid(cfg: &FilesConfig, p: &Prepared, dry_run: bool) -> Attempt {
    let trees = &p.plan.trees;
    let limits = fanotify_fid::MarkLimits {
        ignore: cfg.max_ignore_marks,
        dirs: cfg.max_dir_marks,
    };
    let g = fanotify_fid::open(
        trees,
        p.ops,
        cfg.unlimited_queue,
        limits,
        &p.filter,
        &p.stats,
    )?;
    let mut reason = g.describe();
    if g.unmarked.is_empty() {
        return Ok((
            (!dry_run).then_some(Setup::Fid {
                group: g,
                extra: None,
            }),
            reason,
        ));
    }
    let why: Vec<String> = g
        .unmarked
        .iter()
        .map(|(i, e)| format!("{}: {e}", trees[*i].pattern))
        .collect();
    let left: Vec<PathBuf> = g
        .unmarked
        .iter()
        .flat_map(|(i, _)| trees[*i].paths.iter().cloned())
        .collect();
    if dry_run {
        reason.push_str(&format!(
            "; inotify (no pid) for trees fanotify cannot mark ({})",
            why.join("; ")
        ));
        return Ok((None, reason));
    }
    let extra = if left.is_empty() {
        None
    } else {
        match Watcher::open(&left, p.ops, p.filter.clone(), p.stats.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                reason.push_str(&format!("; inotify: {e}"));
                None
            }
        }
    };
    reason.push_str(&format!(
        "; {} for trees fanotify could not mark ({})",
        if extra.is_some() {
            "inotify (no pid)"
        } else {
            "NOTHING"
        },
        why.join("; ")
    ));
    Ok((Some(Setup::Fid { group: g, extra }), reason))
}

fn try_fd(cfg: &FilesConfig, p: &Prepared, dry_run: bool) -> Attempt {
    let g = fanotify_fd::open(&p.plan.trees, p.ops, cfg.unlimited_queue)?;
    let mut reason = g.describe();
    let structural = p.ops & !FD_OPS;
    let names = structural.names().join("/");
    let mut extra = None;
    if structural.is_empty() {
    } else if !cfg.fd_mode_inotify {
        reason.push_str(&format!(
            "; {names} not reported (mount marks cannot, fd_mode_inotify = false)"
        ));
    } else if dry_run {
        reason.push_str(&format!("; {names} from inotify without pid"));
    } else {
        match Watcher::open(
            &p.plan.walk_roots(),
            structural,
            p.filter.clone(),
            p.stats.clone(),
        ) {
            Ok(w) => {
                reason.push_str(&format!(
                    "; {names} from inotify without pid ({} watches)",
                    w.watches()
                ));
                extra = Some(w);
            }
            Err(e) => reason.push_str(&format!("; {names} not reported (inotify: {e})")),
        }
    }
    Ok(((!dry_run).then_some(Setup::Fd { group: g, extra }), reason))
}

fn try_inotify(p: &Prepared, dry_run: bool) -> Attempt {
    let roots = p.plan.walk_roots();
    if roots.is_empty() {
        return Err("none of the watched trees exists".into());
    }
    if dry_run {
        // Availability only; the walk over the trees happens at start.
        // SAFETY: plain flags.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(errno_text("inotify_init1"));
        }
        // SAFETY: a fresh fd we own.
        drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
        return Ok((None, "recursive inotify (events carry no pid)".into()));
    }
    let w = Watcher::open(&roots, p.ops, p.filter.clone(), p.stats.clone())?;
    let reason = format!(
        "recursive inotify over {} directories (events carry no pid)",
        w.watches()
    );
    Ok((Some(Setup::Inotify(w)), reason))
}

impl FileCapture {
    /// Starts capturing into `ctx.tx`. A forced mode (`files.mode`) that is unavailable is an
    /// error; `auto` falls down the ladder and says why in `reason`.
    pub fn start(cfg: &FilesConfig, ctx: SourceCtx) -> Result<FileCapture, FilesError> {
        let p = prepare(cfg)?;
        let (mode, setup, reason) = choose(cfg, &p, false)?;
        let Some(setup) = setup else {
            return Err(FilesError::Unavailable("no setup".into()));
        };
        tracing::info!(mode = %mode, reason = %reason, "file activity capture");
        let stop = Arc::new(AtomicBool::new(false));
        let parts = SinkParts {
            tx: ctx.tx,
            counters: ctx.counters,
            host: ctx.host,
            filter: p.filter.clone(),
            stats: p.stats.clone(),
            coalesce_window: Duration::from_millis(cfg.coalesce_modify_ms),
        };
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Job| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&stop))
                .map_err(FilesError::Thread)
        };
        let ops = p.ops;
        let (main, extra): (Job, Option<Watcher>) = match setup {
            Setup::Fid { group, extra } => {
                p.stats.marks.store(group.marked.len() as u64, Relaxed);
                let sink = Sink::new(parts.clone(), Source::Fanotify, ops);
                (Box::new(move |s| fanotify_fid::run(group, sink, s)), extra)
            }
            Setup::Fd { group, extra } => {
                p.stats.marks.store(group.marked.len() as u64, Relaxed);
                let sink = Sink::new(parts.clone(), Source::Fanotify, ops & FD_OPS);
                (Box::new(move |s| fanotify_fd::run(group, sink, s)), extra)
            }
            Setup::Inotify(w) => {
                let sink = Sink::new(parts.clone(), Source::Inotify, ops);
                (Box::new(move |s| w.run(sink, s)), None)
            }
        };
        let thread_name = match mode {
            FileMode::FanotifyFid | FileMode::FanotifyFd => "files-fanotify",
            FileMode::Inotify => "files-inotify",
        };
        threads.push(spawn(thread_name, main)?);
        if let Some(w) = extra {
            // In fd mode inotify adds what mount marks cannot see; in FID mode it covers the
            // trees no filesystem mark reaches. Either way only those ops / trees.
            let extra_ops = if mode == FileMode::FanotifyFd {
                ops & !FD_OPS
            } else {
                ops
            };
            let sink = Sink::new(parts, Source::Inotify, extra_ops);
            match spawn("files-inotify", Box::new(move |s| w.run(sink, s))) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.store(true, Relaxed);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(FileCapture {
            mode,
            reason,
            stats: p.stats,
            stop,
            threads,
        })
    }

    /// The rung `start` would pick and why, without walking the trees or reading events
    /// (for `sensor probe`). fanotify marks are added and removed again.
    pub fn probe(cfg: &FilesConfig) -> Result<(FileMode, String), FilesError> {
        let p = prepare(cfg)?;
        let (mode, _setup, reason) = choose(cfg, &p, true)?;
        Ok((mode, reason))
    }

    /// Stops reading (after draining what is queued, bounded) and joins the threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl crate::sources::Source for FileCapture {
    fn enabled(cfg: &Config) -> bool {
        cfg.files.enabled
    }

    fn start(cfg: &Config, env: &SourceEnv) -> Result<Self, StartError> {
        let mut fcfg = cfg.files.clone();
        // The sensor must not report (and feed on) its own writes.
        let (_, out_path) = crate::sinks::ocsf::split_target(&cfg.output.target);
        if !["-", "json", "grpc"].contains(&out_path) {
            fcfg.ignore_paths.push(out_path.to_string());
        }
        fcfg.ignore_paths
            .push(cfg.ship.spool_dir.to_string_lossy().into_owned());
        let c = tokio::task::block_in_place(|| FileCapture::start(&fcfg, env.ctx()))?;
        tracing::info!(mode = %c.mode, reason = %c.reason, "file activity");
        Ok(c)
    }

    fn reason(&self) -> Option<String> {
        Some(format!("files: {}", self.mode))
    }

    fn stats(&self) -> Arc<dyn Telemetry> {
        self.stats.clone()
    }

    fn stop(mut self: Box<Self>) -> StopFuture {
        stop_blocking(move || FileCapture::stop(&mut self))
    }
}
