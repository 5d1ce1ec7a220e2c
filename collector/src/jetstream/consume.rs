//! `collector consume`: a durable pull consumer that copies the stream into the SQLite
//! store, so `collector query` and `collector sessions` work in fleet mode too.
//!
//! Each fetched message is committed to SQLite (de-duplicated by (sensor id, boot id, seq))
//! before it is acknowledged to JetStream, so a crash between the two only redelivers
//! messages that the store then recognises as duplicates. The durable consumer remembers
//! what was acknowledged: a restarted `consume` resumes there. Lag is the number of
//! messages the stream holds that this consumer has not acknowledged yet (JetStream's
//! `num_pending` + `num_ack_pending`).
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, pull, PullConsumer};
use prost::Message as _;
use sensor_proto::v1::{Batch, Hello};
use serde::Serialize;
use tokio_stream::StreamExt as _;

use super::JsError;
use crate::config::CollectorConfig;
use crate::ingest_stream::now_ns;
use crate::metrics::Metrics;
use crate::store::{self, writer::Writer, Synchronous};
use crate::validate::{check_storage_id, validate_batch, Limits};
use sensor_proto::error_chain::error_chain;

/// What one `consume` run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub stream: String,
    pub durable: String,
    /// Messages read and acknowledged (batches and Hellos).
    pub messages: u64,
    /// Events in those messages, and how many of them were new to the database.
    pub events: u64,
    pub events_stored: u64,
    pub duplicates: u64,
    /// Messages that were not sensor batches (logged and acknowledged, not stored).
    pub skipped: u64,
    /// Messages of the stream not yet acknowledged by this consumer, at the end.
    pub lag_messages: u64,
    pub seconds: f64,
}

/// The consumer's position, for `collector consume --status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub stream: String,
    pub durable: String,
    pub stream_messages: u64,
    pub stream_last_seq: u64,
    pub delivered_stream_seq: u64,
    pub ack_floor_stream_seq: u64,
    pub num_pending: u64,
    pub num_ack_pending: usize,
    pub lag_messages: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Stop once nothing is left to read (instead of waiting for new messages).
    pub until_caught_up: bool,
    /// How often the progress line (lag included) is logged.
    pub report_every: Duration,
}

/// How long `consume` keeps trying to reach the stream and its consumer at start (a
/// cluster that is electing leaders answers with errors or timeouts for a while).
const START_PATIENCE: Duration = Duration::from_secs(60);

async fn consumer(cfg: &CollectorConfig) -> Result<(async_nats::Client, PullConsumer), JsError> {
    let j = &cfg.jetstream;
    let client = super::connect(j, "collector-consume").await?;
    let js = super::context(client.clone(), j);
    let deadline = Instant::now() + START_PATIENCE;
    loop {
        match try_consumer(&js, cfg).await {
            Ok(c) => return Ok((client, c)),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "JetStream not ready; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn try_consumer(
    js: &async_nats::jetstream::Context,
    cfg: &CollectorConfig,
) -> Result<PullConsumer, JsError> {
    let j = &cfg.jetstream;
    let stream = super::ensure_stream(js, j).await?;
    stream
        .get_or_create_consumer(
            &j.durable,
            pull::Config {
                durable_name: Some(j.durable.clone()),
                description: Some("collector consume -> SQLite".into()),
                filter_subject: format!("{}.>", j.subject_prefix),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: (j.fetch_batch * 4) as i64,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| JsError::Consumer {
            durable: j.durable.clone(),
            detail: error_chain(&e),
        })
}

fn status_of(
    cfg: &CollectorConfig,
    s: &async_nats::jetstream::stream::Info,
    c: &consumer::Info,
) -> Status {
    Status {
        stream: cfg.jetstream.stream.clone(),
        durable: cfg.jetstream.durable.clone(),
        stream_messages: s.state.messages,
        stream_last_seq: s.state.last_sequence,
        delivered_stream_seq: c.delivered.stream_sequence,
        ack_floor_stream_seq: c.ack_floor.stream_sequence,
        num_pending: c.num_pending,
        num_ack_pending: c.num_ack_pending,
        lag_messages: c.num_pending + c.num_ack_pending as u64,
    }
}

/// The durable consumer's position and lag (creates the consumer when missing).
pub async fn status(cfg: &CollectorConfig) -> Result<Status, JsError> {
    let j = &cfg.jetstream;
    let (client, mut c) = consumer(cfg).await?;
    let js = super::context(client, j);
    let mut stream = js
        .get_stream(&j.stream)
        .await
        .map_err(|e| JsError::Stream {
            stream: j.stream.clone(),
            detail: error_chain(&e),
        })?;
    let s = stream.info().await.map_err(|e| JsError::Stream {
        stream: j.stream.clone(),
        detail: error_chain(&e),
    })?;
    let s = s.clone();
    let ci = c.info().await.map_err(|e| JsError::Consumer {
        durable: j.durable.clone(),
        detail: error_chain(&e),
    })?;
    Ok(status_of(cfg, &s, ci))
}

/// Reads the stream into the database until `shutdown` resolves (or, with
/// `until_caught_up`, until nothing is left).
pub async fn run(
    cfg: &CollectorConfig,
    opts: Options,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Report, JsError> {
    let j = &cfg.jetstream;
    let sync = Synchronous::parse(&cfg.storage.synchronous).unwrap_or(Synchronous::Full);
    let opened = store::open_rw(&cfg.storage.path, sync)?;
    let (writer, writer_thread) = Writer::spawn(
        opened,
        cfg.storage.max_events_per_commit,
        cfg.storage.path.clone(),
    )
    .map_err(|e| JsError::Store(store::StoreError::Commit(e.to_string())))?;
    let (_client, mut c) = consumer(cfg).await?;
    tracing::info!(stream = %j.stream, durable = %j.durable, db = %cfg.storage.path.display(),
        "consuming the stream into SQLite");
    let started = Instant::now();
    let mut report = Report {
        stream: j.stream.clone(),
        durable: j.durable.clone(),
        ..Default::default()
    };
    let mut last_report = Instant::now();
    tokio::pin!(shutdown);
    let result = loop {
        let fetched = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            r = fetch(&c, j.fetch_batch) => r,
        };
        let msgs = match fetched {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "fetch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if msgs.is_empty() {
            let lag = match c.info().await {
                Ok(i) => Some(i.num_pending + i.num_ack_pending as u64),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "consumer info failed");
                    None
                }
            };
            if let Some(l) = lag {
                report.lag_messages = l;
                metrics.consume_lag_messages.store(l, Relaxed);
                if opts.until_caught_up && l == 0 {
                    break Ok(());
                }
            }
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        if let Err(e) = store_and_ack(&writer, &msgs, &mut report, &metrics).await {
            break Err(e);
        }
        if last_report.elapsed() >= opts.report_every {
            last_report = Instant::now();
            tracing::info!(
                messages = report.messages,
                events = report.events,
                stored = report.events_stored,
                duplicates = report.duplicates,
                lag_messages = report.lag_messages,
                "consume progress"
            );
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    drop(writer);
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    result.map(|()| report)
}

async fn fetch(c: &PullConsumer, n: usize) -> Result<Vec<async_nats::jetstream::Message>, JsError> {
    let mut batch = c
        .fetch()
        .max_messages(n)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .map_err(|e| JsError::Fetch(error_chain(&e)))?;
    let mut out = Vec::with_capacity(n);
    while let Some(m) = batch.next().await {
        out.push(m.map_err(|e| JsError::Fetch(error_chain(&*e)))?);
    }
    Ok(out)
}

/// Commits every message of `msgs`, then acknowledges them.
async fn store_and_ack(
    writer: &Writer,
    msgs: &[async_nats::jetstream::Message],
    report: &mut Report,
    metrics: &Metrics,
) -> Result<(), JsError> {
    let mut pending = Vec::with_capacity(msgs.len());
    for m in msgs {
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
        let skip = |reason: String| {
            // Not a sensor message (something else published on our subjects): it can never
            // be stored, so it is counted, logged and acknowledged instead of blocking the
            // consumer forever.
            tracing::error!(stream_seq = seq, subject = %m.subject, %reason, "skipping a message that is not a sensor batch");
        };
        if m.subject.as_str().ends_with(".sensor_hello") {
            match Hello::decode(m.payload.as_ref()) {
                Ok(h) if check_storage_id(&h.sensor_id).is_ok() => {
                    writer.record_hello(h, now_ns()).await?;
                }
                Ok(_) => {
                    skip("Hello without a sensor id".into());
                    report.skipped += 1;
                }
                Err(e) => {
                    skip(
                        JsError::Decode {
                            stream_seq: seq,
                            source: e,
                        }
                        .to_string(),
                    );
                    report.skipped += 1;
                }
            }
            continue;
        }
        let b = match Batch::decode(m.payload.as_ref()) {
            Ok(b) => b,
            Err(e) => {
                skip(
                    JsError::Decode {
                        stream_seq: seq,
                        source: e,
                    }
                    .to_string(),
                );
                report.skipped += 1;
                continue;
            }
        };
        let limits = Limits {
            max_batch_events: u32::MAX,
        };
        if let Err(e) = validate_batch(&b, Some(&b.sensor_id), limits) {
            skip(e.to_string());
            report.skipped += 1;
            continue;
        }
        let n = b.events.len() as u64;
        let rx = writer
            .submit_batch(b.sensor_id, b.boot_id, b.events, Vec::new(), now_ns())
            .await?;
        pending.push((n, rx));
    }
    for (n, rx) in pending {
        let o = rx.await.map_err(|_| store::StoreError::WriterGone)??;
        report.events += n;
        report.events_stored += u64::from(o.stored);
        report.duplicates += u64::from(o.duplicates);
        metrics
            .events_stored
            .fetch_add(u64::from(o.stored), Relaxed);
        metrics
            .duplicates
            .fetch_add(u64::from(o.duplicates), Relaxed);
    }
    for m in msgs {
        m.ack()
            .await
            .map_err(|e| JsError::Fetch(format!("ack: {}", error_chain(&*e))))?;
    }
    report.messages += msgs.len() as u64;
    if let Some(last) = msgs.last().and_then(|m| m.info().ok()) {
        report.lag_messages = last.pending;
        metrics.consume_lag_messages.store(last.pending, Relaxed);
    }
    Ok(())
}
