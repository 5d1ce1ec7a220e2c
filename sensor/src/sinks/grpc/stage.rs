//! The shipping stage: the gRPC counterpart of `sinks::json::run_sink`.
//!
//! It assigns `seq` (unique per (sensor id, boot id), see [`super::ids`]), converts events
//! to protobuf, batches them by size and time, writes each batch to the spool, streams
//! spooled batches in order with at most `max_in_flight` unacknowledged, and deletes a batch
//! only when its Ack arrives. The network never blocks intake: while the collector is away
//! batches pile up in the (bounded) spool.
//!
//! Batching adapts to load: a batch is sealed when it is full, when its oldest event is
//! `batch_max_delay_ms` old, or at once when the channel is drained and nothing is in
//! flight (low latency when quiet, large batches under load).
//!
//! Shutdown: when `shutdown` turns true the stage keeps reading until the channel closes
//! (at most 2 s), seals the open batch into the spool, then waits up to
//! `drain_timeout_secs` for outstanding acknowledgements. What is still unacknowledged is
//! sent after the next start.
//!
//! A batch the spool cannot take (disk full, I/O error) is not lost: it stays in memory,
//! in order, and is written again every [`SPOOL_RETRY`] until the disk has room (the spool
//! cuts a partial frame back first). While they hold `memory_cache_bytes` or more, intake
//! pauses and the channel's own drop counting applies. The condition shows in health
//! (`spool_unwritten`, `spool_write_failures`) and in the status file.
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use sensor_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::client::{self, LinkEvent, Outbound, Target, TlsFiles};
use super::hello;
use super::ids::{self, SeqAllocator};
use super::spool::{Eviction, FsyncPolicy, Spool, SpoolOptions};
use super::{ShipConfig, ShipError, ShipStats};
use crate::event::{Event, Kind};
use crate::telemetry::counters::Counters;
use crate::timefmt::{monotonic_now_ns, unix_now_ns};

/// How long to keep reading after the shutdown signal while waiting for the channel to close.
const INPUT_GRACE: Duration = Duration::from_secs(2);
/// How often a batch the spool could not take is written again.
const SPOOL_RETRY: Duration = Duration::from_secs(1);

/// Runs until the input channel closes or `shutdown` turns true (then drains, see the
/// module note). Fails only at start: bad config, unreadable TLS files, unusable spool.
pub async fn run_shipper(
    rx: mpsc::Receiver<Event>,
    cfg: ShipConfig,
    counters: Arc<Counters>,
    stats: Arc<ShipStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ShipError> {
    cfg.validate()?;
    let targets = Target::all_from_config(&cfg)?;
    let tls = TlsFiles::load(&cfg)?;
    let mut links = Vec::with_capacity(targets.len());
    for t in &targets {
        let files = if t.tls { tls.as_ref() } else { None };
        links.push(client::Link {
            uri: t.uri(),
            tls: t.tls,
            endpoint: client::endpoint(&cfg, t, files)?,
            unix: t.unix.clone(),
        });
    }
    let dir = cfg.spool_dir.clone();
    crate::safefs::ensure_dir(&dir, 0o700).map_err(super::spool::SpoolError::from)?;
    let sensor_id = ids::sensor_id(&dir)?;
    let boot_id = ids::boot_id();
    let policy = FsyncPolicy::parse(&cfg.fsync).unwrap_or(FsyncPolicy::Interval)(
        Duration::from_millis(cfg.fsync_interval_ms.max(1)),
    );
    let (spool, rec) = Spool::open(
        &dir,
        SpoolOptions {
            max_bytes: cfg.spool_max_bytes,
            segment_bytes: cfg.segment_bytes,
            fsync: policy,
        },
    )?;
    stats.recovered_batches.fetch_add(rec.batches, Relaxed);
    stats
        .truncated_bytes
        .fetch_add(rec.truncated_bytes, Relaxed);
    stats
        .spool_corrupt_batches
        .fetch_add(rec.corrupt_batches, Relaxed);
    if rec.batches > 0 || rec.corrupt_batches > 0 {
        tracing::info!(
            batches = rec.batches,
            events = rec.events,
            segments = rec.segments,
            truncated_bytes = rec.truncated_bytes,
            corrupt_batches = rec.corrupt_batches,
            "spool recovered: unacknowledged batches will be sent"
        );
    }
    let seqs = SeqAllocator::open(&dir, &boot_id, spool.max_seq_for_boot(&boot_id))?;
    let uris: Vec<&str> = links.iter().map(|l| l.uri.as_str()).collect();
    tracing::info!(collector = %uris.join(","), tls = links[0].tls, sensor_id = %sensor_id, boot_id = %boot_id,
        spool = %dir.display(), "shipping events over gRPC");

    let (link_tx, link_rx) = mpsc::channel(256);
    let link = tokio::spawn(client::run_link(cfg.clone(), links, link_tx, stats.clone()));
    let caps_rx = hello::probe_host_in_background();
    let hello = hello::first_hello(&cfg, &sensor_id, &boot_id);
    let json_copy = match &cfg.json_copy {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| ShipError::JsonCopy {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let max_events = cfg.batch_max_events;
    let mut stage = Stage {
        json_copy,
        cfg,
        counters,
        stats,
        spool,
        seqs,
        sensor_id,
        boot_id,
        hello,
        batch: Vec::new(),
        batch_bytes: 0,
        batch_started: None,
        batch_min_ktime: None,
        max_events,
        out: None,
        in_flight: VecDeque::new(),
        cursor: None,
        cache: BTreeMap::new(),
        cache_bytes: 0,
        unspooled: VecDeque::new(),
        unspooled_bytes: 0,
        retry_at: None,
    };
    stage.update_gauges();
    stage.run(rx, link_rx, caps_rx, shutdown).await;
    link.abort();
    let _ = link.await;
    if let Err(e) = stage.spool.sync() {
        tracing::error!(error = %e, "final spool sync failed");
    }
    stage.stats.connected.store(false, Relaxed);
    Ok(())
}

struct Stage {
    /// `ship.json_copy`, open for append.
    json_copy: Option<std::fs::File>,
    cfg: ShipConfig,
    counters: Arc<Counters>,
    stats: Arc<ShipStats>,
    spool: Spool,
    seqs: SeqAllocator,
    sensor_id: String,
    boot_id: String,
    hello: pb::Hello,
    /// The open batch (seq assigned when sealed).
    batch: Vec<pb::Event>,
    batch_bytes: usize,
    batch_started: Option<Instant>,
    batch_min_ktime: Option<u64>,
    /// Events per batch: the config's, lowered by the collector's Welcome.
    max_events: usize,
    /// The open stream, if any.
    out: Option<mpsc::Sender<Outbound>>,
    /// Batches sent on this stream and not yet acknowledged, in order.
    in_flight: VecDeque<u64>,
    /// The last batch id sent on this stream.
    cursor: Option<u64>,
    /// Sealed, not yet sent batches kept encoded in memory (the rest are read back from
    /// the spool).
    cache: BTreeMap<u64, Vec<u8>>,
    cache_bytes: usize,
    /// Sealed batches the spool could not take yet, oldest first (seqs assigned).
    unspooled: VecDeque<pb::Batch>,
    /// Their encoded size.
    unspooled_bytes: usize,
    /// When to write them again.
    retry_at: Option<Instant>,
}

impl Stage {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Event>,
        mut link_rx: mpsc::Receiver<LinkEvent>,
        mut caps_rx: oneshot::Receiver<(String, Vec<String>)>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let max_delay = Duration::from_millis(self.cfg.batch_max_delay_ms);
        let mut buf: Vec<Event> = Vec::with_capacity(1024);
        let mut input_open = true;
        let mut caps_pending = true;
        let mut stopping = *shutdown.borrow();
        let mut grace_until = stopping.then(|| Instant::now() + INPUT_GRACE);
        let mut drain_until: Option<Instant> = None;
        loop {
            let far = Instant::now() + Duration::from_secs(3600);
            let batch_due = self.batch_started.map(|t| t + max_delay);
            let sync_due = self.spool.sync_due().map(Instant::from_std);
            tokio::select! {
                biased;
                ev = link_rx.recv() => match ev {
                    Some(ev) => self.on_link(ev),
                    None => {
                        // The link task ended (it only does when we are gone): keep spooling.
                        self.out = None;
                    }
                },
                r = &mut caps_rx, if caps_pending => {
                    caps_pending = false;
                    if let Ok((kernel, caps)) = r {
                        self.hello.kernel = kernel;
                        self.hello.capabilities = caps;
                        self.send_hello();
                    }
                }
                _ = tokio::time::sleep_until(self.retry_at.unwrap_or(far)), if self.retry_at.is_some() => {
                    self.flush_unspooled();
                }
                n = rx.recv_many(&mut buf, 1024), if input_open && self.unspooled_bytes < self.cfg.memory_cache_bytes => {
                    if n == 0 {
                        input_open = false;
                    } else {
                        for ev in buf.drain(..) {
                            self.on_event(ev);
                        }
                    }
                }
                _ = tokio::time::sleep_until(batch_due.unwrap_or(far)), if batch_due.is_some() => {
                    self.seal();
                }
                _ = tokio::time::sleep_until(sync_due.unwrap_or(far)), if sync_due.is_some() => {
                    if let Err(e) = self.spool.sync() {
                        tracing::error!(error = %e, "spool fdatasync failed");
                    }
                }
                r = shutdown.changed(), if !stopping => {
                    if r.is_err() || *shutdown.borrow() {
                        stopping = true;
                        grace_until = Some(Instant::now() + INPUT_GRACE);
                    }
                }
                _ = tokio::time::sleep_until(grace_until.unwrap_or(far)), if input_open && grace_until.is_some() => {
                    tracing::warn!("input still open {INPUT_GRACE:?} after shutdown; stop reading");
                    input_open = false;
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                    tracing::warn!(
                        pending_batches = self.spool.pending_batches(),
                        pending_events = self.spool.pending_events(),
                        "drain timeout: unacknowledged batches stay in the spool for the next start"
                    );
                    break;
                }
            }
            // Quiet link and nothing more queued: ship now rather than wait for the timer.
            if !self.batch.is_empty()
                && self.out.is_some()
                && self.in_flight.is_empty()
                && rx.is_empty()
            {
                self.seal();
            }
            if !input_open && drain_until.is_none() {
                self.seal();
                drain_until =
                    Some(Instant::now() + Duration::from_secs(self.cfg.drain_timeout_secs));
                tracing::info!(
                    pending_batches = self.spool.pending_batches(),
                    "input closed: draining the spool"
                );
            }
            self.pump();
            if drain_until.is_some()
                && self.spool.pending_batches() == 0
                && self.unspooled.is_empty()
            {
                tracing::info!("all batches acknowledged");
                break;
            }
        }
        self.flush_unspooled();
        if !self.unspooled.is_empty() {
            let lost: u64 = self.unspooled.iter().map(|b| b.events.len() as u64).sum();
            self.counters.write_errors.fetch_add(lost, Relaxed);
            self.stats.spool_write_errors.fetch_add(lost, Relaxed);
            tracing::error!(
                events = lost,
                "stopping with batches the spool never took; events lost"
            );
        }
    }

    fn on_event(&mut self, ev: Event) {
        if ev.kind() == Kind::SensorHealth {
            if let Some(h) = &ev.health {
                if h.mode != self.hello.mode {
                    self.hello.mode = h.mode.clone();
                    self.send_hello();
                }
            }
        }
        if !ev.host.is_empty() && ev.host != self.hello.host {
            self.hello.host = ev.host.clone();
            self.send_hello();
        }
        if let Some(k) = ev.ktime_ns {
            self.batch_min_ktime = Some(self.batch_min_ktime.map_or(k, |m| m.min(k)));
        }
        let p = ev.into_msg();
        self.batch_bytes += p.encoded_len() + 4;
        self.batch.push(p);
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        if self.batch.len() >= self.max_events || self.batch_bytes >= self.cfg.batch_max_bytes {
            self.seal();
        }
    }

    /// Assigns seq numbers to the open batch and writes it to the spool.
    fn seal(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.batch);
        let n = events.len() as u64;
        self.batch_bytes = 0;
        self.batch_started = None;
        if let Some(k) = self.batch_min_ktime.take() {
            self.counters
                .observe_lag_us(monotonic_now_ns().saturating_sub(k) / 1000);
        }
        let first = self.seqs.take(n);
        let mut batch = pb::Batch {
            sensor_id: self.sensor_id.clone(),
            boot_id: self.boot_id.clone(),
            first_seq: first,
            events,
            batch_id: 0,
            sent_unix_ns: 0,
        };
        for (i, e) in batch.events.iter_mut().enumerate() {
            e.seq = first + i as u64;
        }
        self.write_json_copy(&batch.events);
        batch.sent_unix_ns = unix_now_ns();
        self.unspooled_bytes += batch.encoded_len();
        self.unspooled.push_back(batch);
        self.flush_unspooled();
    }

    /// Writes the batches waiting for the spool, oldest first, until one fails.
    fn flush_unspooled(&mut self) {
        while let Some(batch) = self.unspooled.front_mut() {
            let n = batch.events.len() as u64;
            match self.spool.append(batch) {
                Ok(a) => {
                    self.unspooled.pop_front();
                    self.counters.written.fetch_add(n, Relaxed);
                    self.stats.batches_spooled.fetch_add(1, Relaxed);
                    self.stats.events_spooled.fetch_add(n, Relaxed);
                    self.on_eviction(&a.eviction);
                    if self.cache_bytes + a.payload.len() <= self.cfg.memory_cache_bytes {
                        self.cache_bytes += a.payload.len();
                        self.cache.insert(a.batch_id, a.payload);
                    }
                    if self.retry_at.take().is_some() {
                        tracing::info!("the spool takes batches again");
                        self.stats.set_spool_error(String::new());
                    }
                }
                Err(e @ super::spool::SpoolError::TooLarge(_)) => {
                    // Can never fit, whatever the disk: counted as lost.
                    self.unspooled.pop_front();
                    self.counters.write_errors.fetch_add(n, Relaxed);
                    self.stats.spool_write_errors.fetch_add(n, Relaxed);
                    tracing::error!(error = %e, events = n, "batch too large for the spool; events lost");
                }
                Err(e) => {
                    self.stats.spool_write_failures.fetch_add(1, Relaxed);
                    if self.retry_at.is_none() {
                        tracing::error!(error = %e, events = n,
                            "cannot write batch to the spool; keeping it in memory and retrying");
                    }
                    self.stats.set_spool_error(e.to_string());
                    self.retry_at = Some(Instant::now() + SPOOL_RETRY);
                    break;
                }
            }
        }
        self.unspooled_bytes = self.unspooled.iter().map(|b| b.encoded_len()).sum();
        self.update_gauges();
    }

    /// `ship.json_copy`: the sealed events as JSON lines, seq included.
    fn write_json_copy(&mut self, events: &[pb::Event]) {
        let Some(f) = &mut self.json_copy else {
            return;
        };
        let mut buf = Vec::with_capacity(events.len() * 512);
        for e in events {
            sensor_proto::json::write_event(e, &mut buf);
            buf.push(b'\n');
        }
        if let Err(e) = std::io::Write::write_all(f, &buf) {
            tracing::error!(error = %e, events = events.len(), "writing ship.json_copy failed");
        }
    }

    fn on_eviction(&mut self, ev: &Eviction) {
        if ev.segments == 0 {
            return;
        }
        for (slot, n) in ev.lost.0.iter().enumerate() {
            self.stats.evicted[slot].fetch_add(*n, Relaxed);
        }
        self.stats
            .rescued_exits
            .fetch_add(ev.rescued_exits, Relaxed);
        let spool = &self.spool;
        let mut freed = 0;
        self.cache.retain(|id, payload| {
            let keep = spool.is_pending(*id);
            if !keep {
                freed += payload.len();
            }
            keep
        });
        self.cache_bytes -= freed;
    }

    fn send_hello(&mut self) {
        if let Some(out) = &self.out {
            let mut h = self.hello.clone();
            h.sent_unix_ns = unix_now_ns();
            if out.try_send(Outbound::Hello(h)).is_err() {
                tracing::debug!("could not queue a Hello update; it goes with the next connect");
            }
        }
    }

    fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Up(tx) => {
                self.out = Some(tx);
                self.in_flight.clear();
                self.cursor = None;
                self.max_events = self.cfg.batch_max_events;
                self.send_hello();
                tracing::info!(
                    pending_batches = self.spool.pending_batches(),
                    pending_events = self.spool.pending_events(),
                    "stream open: sending spooled batches"
                );
            }
            LinkEvent::Welcome(w) => {
                if w.max_batch_events > 0 {
                    self.max_events = self.cfg.batch_max_events.min(w.max_batch_events as usize);
                }
                tracing::debug!(collector_version = %w.version, max_batch_events = w.max_batch_events, "collector welcome");
            }
            LinkEvent::Ack(a) => {
                // Only a batch sent on this stream and not yet acknowledged can be
                // acknowledged: an ack for any other id (a collector impostor's, or a
                // confused one's) deletes nothing and is counted.
                let Some(pos) = self.in_flight.iter().position(|&id| id == a.batch_id) else {
                    self.stats.acks_unknown.fetch_add(1, Relaxed);
                    tracing::warn!(
                        batch_id = a.batch_id,
                        "ack for a batch id not in flight on this stream; ignored"
                    );
                    return;
                };
                self.in_flight.remove(pos);
                match self.spool.ack(a.batch_id) {
                    Ok(Some(n)) => {
                        self.stats.batches_acked.fetch_add(1, Relaxed);
                        self.stats.events_acked.fetch_add(n, Relaxed);
                        self.stats
                            .duplicates
                            .fetch_add(u64::from(a.duplicates), Relaxed);
                    }
                    Ok(None) => {
                        tracing::debug!(batch_id = a.batch_id, "ack for a batch no longer spooled")
                    }
                    Err(e) => tracing::error!(error = %e, "spool ack failed"),
                }
                self.update_gauges();
            }
            LinkEvent::Down(_) => {
                // The link task logged why. Unacked batches are sent again on the next stream.
                self.out = None;
                self.in_flight.clear();
                self.cursor = None;
            }
        }
    }

    /// Sends spooled batches in order while the window allows.
    fn pump(&mut self) {
        while self.out.is_some() && self.in_flight.len() < self.cfg.max_in_flight {
            let Some(p) = self.spool.next_pending(self.cursor) else {
                return;
            };
            let payload = match self.cache.remove(&p.batch_id) {
                Some(b) => {
                    self.cache_bytes -= b.len();
                    b
                }
                None => match self.spool.read_payload(p.batch_id) {
                    Ok(b) => b,
                    Err(e) => {
                        // Unreadable on disk: it can never be delivered; count and skip it.
                        tracing::error!(error = %e, "dropping unreadable spooled batch");
                        self.stats.spool_corrupt_batches.fetch_add(1, Relaxed);
                        let _ = self.spool.ack(p.batch_id);
                        continue;
                    }
                },
            };
            let msg = Outbound::Batch(payload);
            let Some(out) = &self.out else { return };
            match out.try_send(msg) {
                Ok(()) => {
                    self.in_flight.push_back(p.batch_id);
                    self.cursor = Some(p.batch_id);
                    self.stats.batches_sent.fetch_add(1, Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.out = None;
                    return;
                }
            }
        }
    }

    fn update_gauges(&self) {
        self.stats.spool_unwritten_events.store(
            self.unspooled.iter().map(|b| b.events.len() as u64).sum(),
            Relaxed,
        );
        self.stats
            .spool_bytes
            .store(self.spool.total_bytes(), Relaxed);
        self.stats
            .spool_pending_events
            .store(self.spool.pending_events(), Relaxed);
        self.stats
            .spool_oldest_unix_ms
            .store(self.spool.oldest_pending_unix_ms().unwrap_or(0), Relaxed);
    }
}
