//! JSON-lines sink: assigns sequence numbers, writes through the one event JSON writer,
//! flushes on a timer.
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use sensor_proto::json::write_event;

use super::ocsf::LineFormat;
use crate::{event::Event, telemetry::counters::Counters};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot open output {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where events go: "-" (or "json") is stdout, anything else a file opened for append
/// (created 0600; a symbolic link, FIFO, hard link or another user's file there is refused).
/// An `ocsf` / `ocsf:PATH` target opens stdout / PATH (see [`super::ocsf::split_target`]).
pub fn open(target: &str) -> Result<Box<dyn Write + Send>, OutputError> {
    let (_, target) = super::ocsf::split_target(target);
    if target == "-" || target == "json" {
        return Ok(Box::new(std::io::stdout()));
    }
    let path = std::path::Path::new(target);
    let err = |e: crate::safefs::SafeFsError| OutputError::Open {
        path: target.to_string(),
        source: e.into_io(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::safefs::ensure_parent(dir).map_err(err)?;
    }
    let f = crate::safefs::open_append(path, 0o600).map_err(err)?;
    Ok(Box::new(f))
}

/// Appends one event as a JSON line, written by the one event writer
/// (`sensor_proto::json`, the collector's too) from the event's wire message.
pub fn write_line(event: Event, buf: &mut Vec<u8>) {
    write_event(&event.msg, buf);
    buf.push(b'\n');
    event.recycle();
}

/// Longest an event waits in the output buffer before it is written.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
/// Buffered bytes that trigger a write before the interval.
const FLUSH_BYTES: usize = 256 * 1024;

/// The JSON (or OCSF) lines sink, run inside the pipeline task (docs/ARCHITECTURE.md#pipeline):
/// assigns `seq`, serializes each event into a buffer, and writes the buffer when it grows
/// past 256 KiB ([`LineSink::end_batch`]) or when the pipeline's [`FLUSH_INTERVAL`] timer
/// fires ([`LineSink::write_out`]): one write per batch, not per event.
pub struct LineSink {
    out: Box<dyn Write + Send>,
    format: LineFormat,
    buf: Vec<u8>,
    /// Events in `buf`.
    pending: u64,
    seq: u64,
    counters: Arc<Counters>,
}

impl LineSink {
    pub fn new(out: Box<dyn Write + Send>, format: LineFormat, counters: Arc<Counters>) -> Self {
        Self {
            out,
            format,
            buf: Vec::with_capacity(FLUSH_BYTES + 64 * 1024),
            pending: 0,
            seq: 0,
            counters,
        }
    }

    /// Numbers and serializes one event; `now` (CLOCK_MONOTONIC ns) measures its lag.
    pub fn push(&mut self, mut ev: Event, now: u64) {
        self.seq += 1;
        ev.seq = self.seq;
        if let Some(k) = ev.ktime_ns {
            self.counters.observe_lag_us(now.saturating_sub(k) / 1000);
        }
        match self.format {
            LineFormat::Json => write_line(ev, &mut self.buf),
            LineFormat::Ocsf => super::ocsf::write_line(ev, &mut self.buf),
        }
        self.pending += 1;
    }

    /// After a batch: writes when the buffer is past its threshold.
    pub fn end_batch(&mut self) {
        if self.buf.len() >= FLUSH_BYTES {
            self.write_out();
        }
    }

    /// Whether lines wait to be written (the flush timer runs only then).
    pub fn waiting(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Writes and flushes the buffer. The write may block (a slow pipe): on the multi-thread
    /// runtime it is done in place with `block_in_place` so other tasks keep running.
    pub fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let (out, buf) = (&mut self.out, &self.buf);
        let mut write = || out.write_all(buf).and_then(|()| out.flush());
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if multi {
            tokio::task::block_in_place(write)
        } else {
            write()
        };
        match result {
            Ok(()) => {
                self.counters.written.fetch_add(self.pending, Relaxed);
            }
            Err(e) => {
                self.counters.write_errors.fetch_add(self.pending, Relaxed);
                tracing::error!(error = %e, "writing events failed");
            }
        }
        self.buf.clear();
        self.pending = 0;
    }
}
