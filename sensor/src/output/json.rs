//! JSON-lines sink: assigns sequence numbers, serializes, writes, flushes when idle.
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{counters::Counters, event::Event, timefmt::monotonic_now_ns};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot open output {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where events go: "-" (or "json") is stdout, anything else a file opened for append.
pub fn open(target: &str) -> Result<Box<dyn Write + Send>, OutputError> {
    if target == "-" || target == "json" {
        return Ok(Box::new(std::io::stdout()));
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .map_err(|source| OutputError::Open {
            path: target.to_string(),
            source,
        })?;
    Ok(Box::new(f))
}

/// Serializes one event as a JSON line.
pub fn to_line(event: &Event) -> Vec<u8> {
    let mut line = serde_json::to_vec(event).unwrap_or_else(|e| {
        // Event contains only strings, numbers and maps: this cannot fail, but never lose it.
        format!(
            "{{\"seq\":{},\"kind\":\"serialization_error\",\"error\":{:?}}}",
            event.seq,
            e.to_string()
        )
        .into_bytes()
    });
    line.push(b'\n');
    line
}

/// Runs until the channel closes; returns after the final flush. Blocking writes happen on a
/// blocking thread so a slow consumer of stdout cannot stall the runtime.
pub async fn run_sink(
    mut rx: mpsc::Receiver<Event>,
    out: Box<dyn Write + Send>,
    counters: Arc<Counters>,
) {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
    let mut seq: u64 = 0;
    let mut batch = Vec::with_capacity(1024);
    loop {
        if rx.recv_many(&mut batch, 1024).await == 0 {
            break;
        }
        let now = monotonic_now_ns();
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut n = 0u64;
        for mut ev in batch.drain(..) {
            seq += 1;
            ev.seq = seq;
            if let Some(k) = ev.ktime_ns {
                counters.observe_lag_us(now.saturating_sub(k) / 1000);
            }
            buf.extend_from_slice(&to_line(&ev));
            n += 1;
        }
        let idle = rx.is_empty();
        out = match tokio::task::spawn_blocking(move || {
            let r = out
                .write_all(&buf)
                .and_then(|()| if idle { out.flush() } else { Ok(()) });
            (out, r)
        })
        .await
        {
            Ok((out, Ok(()))) => {
                counters.written.fetch_add(n, Relaxed);
                out
            }
            Ok((out, Err(e))) => {
                counters.write_errors.fetch_add(n, Relaxed);
                tracing::error!(error = %e, "writing events failed");
                out
            }
            Err(e) => {
                tracing::error!(error = %e, "output thread failed");
                return;
            }
        };
    }
    if let Err(e) = out.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}
