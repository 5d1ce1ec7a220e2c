//! The wtmp/btmp follower thread: inotify on the files' directories wakes it on appends,
//! creations and renames (rotation); a poll period covers anything inotify misses.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::map::{LogFile, Sessions};
use super::tail::Tailer;
use super::utmp::{self, RECORD_LEN};
use super::LoginsConfig;
use crate::config::Config;
use crate::sources::source::{stop_blocking, Source, SourceEnv, StartError, StopFuture};
use crate::sources::SourceCtx;
use crate::telemetry::fields::Telemetry;

#[derive(Debug, thiserror::Error)]
pub enum LoginsError {
    #[error("spawning the logins thread: {0}")]
    Thread(#[source] std::io::Error),
}

#[derive(Debug, Default)]
pub struct LoginStats {
    pub corrupt_records: AtomicU64,
    pub torn_bytes: AtomicU64,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
}

pub struct LoginCapture {
    pub stats: Arc<LoginStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LoginCapture {
    pub fn start(cfg: &LoginsConfig, ctx: SourceCtx) -> Result<Self, LoginsError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(LoginStats::default());
        let (cfg, stop2, stats2) = (cfg.clone(), stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("logins".into())
            .spawn(move || follow(&cfg, &ctx, &stop2, &stats2))
            .map_err(LoginsError::Thread)?;
        Ok(Self {
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// Reads what is pending one last time, then stops.
    pub fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Source for LoginCapture {
    fn enabled(cfg: &Config) -> bool {
        cfg.logins.enabled
    }

    fn start(cfg: &Config, env: &SourceEnv) -> Result<Self, StartError> {
        let c = LoginCapture::start(&cfg.logins, env.ctx())?;
        tracing::info!(wtmp = %cfg.logins.wtmp, btmp = %cfg.logins.btmp, "following logins");
        Ok(c)
    }

    fn stats(&self) -> Arc<dyn Telemetry> {
        self.stats.clone()
    }

    fn stop(mut self: Box<Self>) -> StopFuture {
        stop_blocking(move || LoginCapture::stop(&mut self))
    }
}

/// inotify on the directories holding the files (survives rotation). None if unavailable.
fn watch_dirs(paths: &[&Path]) -> Option<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    for p in paths {
        let Some(dir) = p.parent() else { continue };
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        let mask = libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
        // SAFETY: valid C string.
        unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    }
    Some(fd)
}

/// Waits for an inotify event or the timeout, and drains the notification queue.
fn wait(fd: Option<&OwnedFd>, timeout: Duration) {
    let Some(fd) = fd else {
        std::thread::sleep(timeout);
        return;
    };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    if n > 0 {
        let mut buf = [0u8; 4096];
        // SAFETY: valid buffer; non-blocking fd.
        while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

/// loginuid and sessionid of a live process.
fn session_of(pid: i32) -> Option<(u32, u32)> {
    if pid <= 0 {
        return None;
    }
    let read = |f: &str| -> Option<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some((read("loginuid")?, read("sessionid")?))
}

fn follow(cfg: &LoginsConfig, ctx: &SourceCtx, stop: &AtomicBool, stats: &LoginStats) {
    let files = [
        (Path::new(&cfg.wtmp), LogFile::Wtmp),
        (Path::new(&cfg.btmp), LogFile::Btmp),
    ];
    let mut tailers: Vec<(Tailer, LogFile)> = files
        .iter()
        .map(|(p, f)| (Tailer::new(p, RECORD_LEN, cfg.read_existing), *f))
        .collect();
    let inotify = watch_dirs(&[files[0].0, files[1].0]);
    let mut sessions = Sessions::default();
    let period = Duration::from_millis(cfg.poll_interval_ms.clamp(10, 60_000));
    let mut last = vec![Default::default(); tailers.len()];
    loop {
        let stopping = stop.load(Relaxed);
        for (i, (tailer, file)) in tailers.iter_mut().enumerate() {
            let records = match tailer.poll() {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "login file not readable");
                    continue;
                }
            };
            let s = tailer.stats;
            let prev: super::tail::TailStats = last[i];
            stats
                .rotations
                .fetch_add(s.rotations - prev.rotations, Relaxed);
            stats
                .truncations
                .fetch_add(s.truncations - prev.truncations, Relaxed);
            stats
                .torn_bytes
                .fetch_add(s.torn_bytes - prev.torn_bytes, Relaxed);
            last[i] = s;
            for raw in records {
                let rec = match utmp::parse(&raw) {
                    Ok(r) => r,
                    Err(e) => {
                        let n = stats.corrupt_records.fetch_add(1, Relaxed);
                        if n < 10 {
                            tracing::warn!(error = %e, path = %tailer.path().display(), "corrupt login record skipped");
                        }
                        continue;
                    }
                };
                if let Some(ev) = sessions.map(&rec, *file, &ctx.host, &session_of) {
                    ctx.counters.count_event(ev.kind());
                    if ctx.tx.blocking_send(ev).is_err() {
                        return;
                    }
                }
            }
        }
        if stopping {
            return;
        }
        wait(inotify.as_ref(), period);
    }
}
