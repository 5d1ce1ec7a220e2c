//! Drains the ring buffer with tokio's AsyncFd, decodes and normalizes each record, and sends
//! the events downstream. Backpressure: when the channel is full the reader waits, the ring
//! buffer absorbs the burst, and anything the kernel cannot reserve is counted in `DROPS`.
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use super::decode::{decode, Record};
use super::normalize::{fork_start, normalize};
use super::ring_mmap::MappedRing;
use crate::{
    enrich::ProcessFeed,
    event::Event,
    telemetry::counters::Counters,
    timefmt::{monotonic_now_ns, Clocks},
};

/// Remembers recently reported process exits so a racing second "group dead" exit of the same
/// process (two threads past `signal->live == 0`) is reported once.
pub struct RecentExits {
    set: HashSet<(u32, u64)>,
    order: VecDeque<(u32, u64)>,
    cap: usize,
}

impl RecentExits {
    pub fn new(cap: usize) -> Self {
        Self {
            set: HashSet::with_capacity(cap),
            order: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// True the first time a (tgid, start) pair is seen.
    pub fn first(&mut self, tgid: u32, start: u64) -> bool {
        if !self.set.insert((tgid, start)) {
            return false;
        }
        self.order.push_back((tgid, start));
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Longest a record waits in the ring buffer before the reader looks.
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

pub struct ReaderCtx {
    pub tx: mpsc::Sender<Event>,
    pub counters: Arc<Counters>,
    pub shutdown: watch::Receiver<bool>,
    pub host: String,
    pub clocks: Clocks,
    /// Forks and the drain watermark, for the enrichment stage (a [`ProcessFeed::producer`]).
    pub feed: ProcessFeed,
}

/// What the reader has sent so far.
struct Progress {
    exits: RecentExits,
    /// Events sent on `tx` (forks not included).
    sent: u64,
}

/// Runs until shutdown; then drains what is already in the ring and returns.
pub async fn run_reader(ring: MappedRing, mut ctx: ReaderCtx) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd owns the ring buffer,
    // and `as_raw_fd` always returns that same fd.
    let mut afd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut progress = Progress {
        exits: RecentExits::new(8192),
        sent: 0,
    };
    // Records are submitted without a wakeup until a quarter of the ring is full, so the
    // reader also drains on a short timer: bounded latency, one wakeup per batch.
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = afd.readable_mut() => {
                let mut guard = guard?;
                if !drain(guard.get_inner_mut(), &ctx, &mut progress).await {
                    return Ok(());
                }
                guard.clear_ready();
            }
            _ = tick.tick() => {
                if !drain(afd.get_mut(), &ctx, &mut progress).await {
                    return Ok(());
                }
            }
            _ = ctx.shutdown.changed() => {
                drain(afd.get_mut(), &ctx, &mut progress).await;
                return Ok(());
            }
        }
    }
}

/// What one ring-buffer record turned into, once the record is released. (A transient value
/// on the stack, moved once: the fork's `ProcessStart` is not boxed.)
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Nothing to send (malformed, a duplicate exit, or dropped by normalizing).
    Skip,
    Fork(crate::enrich::ProcessStart),
    Event(Event),
}

/// Decodes one record in place (its strings are borrowed from the ring, not copied) and
/// builds what is sent for it.
fn step(bytes: &[u8], ctx: &ReaderCtx, progress: &mut Progress) -> Step {
    let record = match decode(bytes) {
        Ok(r) => r,
        Err(e) => {
            let n = ctx.counters.decode_errors.fetch_add(1, Relaxed);
            if n < 10 {
                tracing::warn!(error = %e, "dropping malformed ring buffer record");
            }
            return Step::Skip;
        }
    };
    match &record {
        Record::Exit(x)
            if !progress
                .exits
                .first(x.header.tgid, x.process.start_boottime_ns) =>
        {
            ctx.counters.duplicate_exits.fetch_add(1, Relaxed);
            return Step::Skip;
        }
        Record::Fork(f) => {
            let mut start = fork_start(f);
            start.after_events = progress.sent;
            return Step::Fork(start);
        }
        _ => {}
    }
    match normalize(&record, &ctx.clocks, &ctx.host) {
        Some(event) => Step::Event(event),
        None => Step::Skip,
    }
}

/// Reads every available record. Returns false when downstream has gone away.
async fn drain(ring: &mut MappedRing, ctx: &ReaderCtx, progress: &mut Progress) -> bool {
    // Every record committed before this instant is read below (or was read before).
    let started = monotonic_now_ns();
    loop {
        // The record is released (its ring space handed back) before anything is awaited.
        let next = match ring.next() {
            Some(item) => step(&item, ctx, progress),
            None => {
                ctx.feed.delivered_through(started, progress.sent);
                return true;
            }
        };
        match next {
            Step::Skip => {}
            Step::Fork(start) => {
                if !ctx.feed.fork(start).await {
                    return false;
                }
            }
            Step::Event(event) => {
                ctx.counters.count_event(event.kind());
                if ctx.tx.send(event).await.is_err() {
                    return false;
                }
                progress.sent += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_exits_dedupes_and_is_bounded() {
        let mut r = RecentExits::new(2);
        assert!(r.first(1, 10));
        assert!(!r.first(1, 10));
        assert!(r.first(1, 11), "same pid, new start time: pid reuse");
        assert!(r.first(2, 10));
        assert!(r.first(1, 10), "evicted after cap");
        assert_eq!(r.set.len(), 2);
    }
}
