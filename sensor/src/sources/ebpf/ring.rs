//! The eBPF ring buffer (`EVENTS`), from the kernel's side of it to the sources' channel:
//! [`MappedRing`] maps it into this process once, and [`run_reader`] drains it (woken by
//! tokio's AsyncFd or a timer), decodes and normalizes each record in place and sends the
//! events downstream. Backpressure: when the channel is full the reader waits, the ring
//! buffer absorbs the burst, and anything the kernel cannot reserve is counted in `DROPS`.
//!
//! Mapping once: the kernel backs a BPF ring buffer's data pages twice in a row in its own address space, so
//! a record that wraps past the end is contiguous, and a consumer that maps the whole area
//! (as the aya consumer does) has every data page in its resident set twice from the moment
//! it maps it: a 4 MiB ring counted as 8 MiB of RSS although it is 4 MiB of kernel memory.
//! This consumer maps the producer page and the data pages once, copies the rare record that
//! wraps into a scratch buffer, and so holds the ring's real size in its RSS
//! (docs/ARCHITECTURE.md#ebpf-and-tracefs).
//!
//! Layout (the kernel's BPF ring buffer ABI): page 0 holds `consumer_pos` (the only page the
//! consumer may write); page 1 `producer_pos`; the data pages follow. Each record starts at
//! an 8-byte aligned position with an 8-byte header: a `u32` length whose top bit marks a
//! record still being written (busy) and the next bit a discarded one, then a `u32` page
//! offset. The next record starts at the length plus header rounded up to 8.
use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::Arc;

use aya::maps::MapData;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use super::decode::{decode, Record};
use super::normalize::{fork_start, normalize};
use crate::{
    enrich::ProcessFeed,
    event::Event,
    hashing::PidOrderBuild,
    telemetry::counters::Counters,
    timefmt::{monotonic_now_ns, Clocks},
};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HEADER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("ring buffer size {0} is not a power of two of at least one page")]
    Size(u32),
    #[error("mapping the ring buffer's {what}: {source}")]
    Mmap {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One `mmap`ed range, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(
        fd: RawFd,
        len: usize,
        offset: usize,
        writable: bool,
        what: &'static str,
    ) -> Result<Self, RingError> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks length and offset.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(RingError::Mmap {
                what,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range `new` mapped; nothing borrows it past the ring.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The consumer side of the ring buffer.
pub struct MappedRing {
    consumer_pos: *const AtomicU64,
    producer_pos: *const AtomicU64,
    data: *const u8,
    size: usize,
    /// A record that wraps past the end of the data pages, copied whole.
    scratch: Vec<u8>,
    _mappings: Vec<Mapping>,
    /// Keeps the map (and its fd) open while it is mapped.
    map: Option<MapData>,
}

// SAFETY: the pointers point into mappings the ring owns; the consumer position is written only
// through `&mut self` (a record holds the ring's unique borrow), so moving the ring to another
// thread moves its only consumer.
unsafe impl Send for MappedRing {}

impl MappedRing {
    /// Maps `map`, a `BPF_MAP_TYPE_RINGBUF` of `size` data bytes.
    pub fn new(map: MapData, size: u32) -> Result<Self, RingError> {
        let page = page_size();
        let size_usize = size as usize;
        if !size.is_power_of_two() || size_usize < page {
            return Err(RingError::Size(size));
        }
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::new(fd, page, 0, true, "consumer page")?;
        let producer = Mapping::new(fd, page + size_usize, page, false, "data pages")?;
        Ok(Self {
            consumer_pos: consumer.ptr.cast(),
            producer_pos: producer.ptr.cast(),
            // SAFETY: the producer mapping is `page + size` long.
            data: unsafe { producer.ptr.add(page) },
            size: size_usize,
            scratch: Vec::new(),
            _mappings: vec![consumer, producer],
            map: Some(map),
        })
    }

    fn consumer(&self) -> &AtomicU64 {
        // SAFETY: 8-aligned (page start) in a mapping the ring owns.
        unsafe { &*self.consumer_pos }
    }

    /// The next committed record, or `None` when the ring is empty or the next record is still
    /// being written. The consumer position moves past it when the record is dropped.
    // Not an `Iterator`: each record borrows the ring (a lending iterator).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<RingRecord<'_>> {
        loop {
            let cons = self.consumer().load(Ordering::Acquire);
            // SAFETY: 8-aligned (page start) in a mapping the ring owns.
            let prod = unsafe { &*self.producer_pos }.load(Ordering::Acquire);
            if cons >= prod {
                return None;
            }
            let off = (cons as usize) & (self.size - 1);
            // SAFETY: `off` is 8-aligned and below `size`, inside the data pages.
            let header =
                unsafe { &*self.data.add(off).cast::<AtomicU32>() }.load(Ordering::Acquire);
            if header & BUSY != 0 {
                return None;
            }
            let len = (header & !(BUSY | DISCARD)) as usize;
            let total = (len + HEADER).next_multiple_of(8);
            if total > self.size {
                // The kernel never commits such a record: give up on what is pending rather
                // than read outside the ring; the empty record is counted as undecodable.
                return Some(RingRecord {
                    bytes: &[],
                    consumer: self.consumer(),
                    next: prod,
                });
            }
            let next = cons + total as u64;
            if header & DISCARD != 0 {
                self.consumer().store(next, Ordering::Release);
                continue;
            }
            let start = (off + HEADER) & (self.size - 1);
            if start + len > self.size {
                let first = self.size - start;
                self.scratch.clear();
                // SAFETY: both parts lie inside the data pages (start < size, len - first
                // < size); the kernel does not write a committed record before it is consumed.
                unsafe {
                    self.scratch
                        .extend_from_slice(std::slice::from_raw_parts(self.data.add(start), first));
                    self.scratch
                        .extend_from_slice(std::slice::from_raw_parts(self.data, len - first));
                }
                let ring = &*self;
                return Some(RingRecord {
                    bytes: &ring.scratch,
                    consumer: ring.consumer(),
                    next,
                });
            }
            let ring = &*self;
            return Some(RingRecord {
                // SAFETY: inside the data pages, committed and not yet consumed (see above).
                bytes: unsafe { std::slice::from_raw_parts(ring.data.add(start), len) },
                consumer: ring.consumer(),
                next,
            });
        }
    }
}

impl AsRawFd for MappedRing {
    fn as_raw_fd(&self) -> RawFd {
        self.map.as_ref().map_or(-1, |m| m.fd().as_fd().as_raw_fd())
    }
}

/// One record's bytes; dropping it hands its space back to the kernel.
pub struct RingRecord<'a> {
    bytes: &'a [u8],
    consumer: &'a AtomicU64,
    next: u64,
}

impl std::ops::Deref for RingRecord<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl Drop for RingRecord<'_> {
    fn drop(&mut self) {
        self.consumer.store(self.next, Ordering::Release);
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(4096)
}

// The reader task: ring records -> events on the sources' channel.

/// Remembers recently reported process exits so a racing second "group dead" exit of the same
/// process (two threads past `signal->live == 0`) is reported once. The pairs come from the
/// kernel (no user picks a pid or a start time): slotted in pid order ([`PidOrderBuild`]).
pub struct RecentExits {
    set: HashSet<(u32, u64), PidOrderBuild>,
    order: VecDeque<(u32, u64)>,
    cap: usize,
}

impl RecentExits {
    pub fn new(cap: usize) -> Self {
        Self {
            set: HashSet::with_capacity_and_hasher(cap, PidOrderBuild::default()),
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
    /// Forks and the drain watermark, for the pipeline task (a [`ProcessFeed::producer`]).
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

    /// A ring in ordinary memory: positions and data as the kernel lays them out.
    struct Fake {
        consumer: Box<AtomicU64>,
        producer: Box<AtomicU64>,
        data: Vec<u64>,
    }

    impl Fake {
        fn new(size: usize) -> Self {
            Self {
                consumer: Box::new(AtomicU64::new(0)),
                producer: Box::new(AtomicU64::new(0)),
                data: vec![0; size / 8],
            }
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: a u64 buffer viewed as bytes.
            unsafe {
                std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast(), self.data.len() * 8)
            }
        }

        /// Writes a record the way the kernel does, at the producer position.
        fn push(&mut self, payload: &[u8], flags: u32) {
            let size = self.data.len() * 8;
            let pos = self.producer.load(Ordering::Relaxed) as usize;
            let off = pos & (size - 1);
            let b = self.bytes();
            b[off..off + 4].copy_from_slice(&(payload.len() as u32 | flags).to_ne_bytes());
            for (i, x) in payload.iter().enumerate() {
                b[(off + HEADER + i) & (size - 1)] = *x;
            }
            let total = (payload.len() + HEADER).next_multiple_of(8);
            self.producer.store((pos + total) as u64, Ordering::Release);
        }

        fn ring(&self) -> MappedRing {
            MappedRing {
                consumer_pos: &*self.consumer,
                producer_pos: &*self.producer,
                data: self.data.as_ptr().cast(),
                size: self.data.len() * 8,
                scratch: Vec::new(),
                _mappings: Vec::new(),
                map: None,
            }
        }
    }

    #[test]
    fn reads_records_in_order_and_advances_on_drop() {
        let mut f = Fake::new(64);
        f.push(b"abc", 0);
        f.push(b"0123456789", 0);
        let mut r = f.ring();
        assert_eq!(&*r.next().unwrap(), b"abc");
        assert_eq!(f.consumer.load(Ordering::Relaxed), 16);
        assert_eq!(&*r.next().unwrap(), b"0123456789");
        assert_eq!(f.consumer.load(Ordering::Relaxed), 16 + 24);
        assert!(r.next().is_none());
    }

    #[test]
    fn skips_discarded_and_stops_at_busy() {
        let mut f = Fake::new(128);
        f.push(b"gone", DISCARD);
        f.push(b"kept", 0);
        f.push(b"half", BUSY);
        let mut r = f.ring();
        assert_eq!(&*r.next().unwrap(), b"kept");
        assert!(r.next().is_none(), "busy record not read");
        assert_eq!(f.consumer.load(Ordering::Relaxed), 32);
    }

    #[test]
    fn a_record_wrapping_past_the_end_is_whole() {
        let mut f = Fake::new(64);
        f.push(&[1; 32], 0); // 40 bytes: the next record starts at 40
        {
            let mut r = f.ring();
            assert_eq!(r.next().unwrap().len(), 32);
        }
        let payload: Vec<u8> = (0..20).collect(); // header at 40, payload 48..64 then 0..4
        f.push(&payload, 0);
        let mut r = f.ring();
        assert_eq!(&*r.next().unwrap(), &payload[..]);
        assert_eq!(f.consumer.load(Ordering::Relaxed), 40 + 32);
        // The following record starts at 72 (offset 8) and is read in place.
        f.push(b"after", 0);
        assert_eq!(&*r.next().unwrap(), b"after");
    }

    #[test]
    fn a_header_at_the_last_slot_has_its_payload_at_the_start() {
        let mut f = Fake::new(64);
        f.push(&[7; 48], 0); // 56 bytes: the next header at 56, its payload from 0
        {
            let mut r = f.ring();
            assert_eq!(r.next().unwrap().len(), 48);
        }
        f.push(b"xyz", 0);
        let mut r = f.ring();
        assert_eq!(&*r.next().unwrap(), b"xyz");
    }

    #[test]
    fn an_impossible_length_skips_what_is_pending() {
        let mut f = Fake::new(64);
        let b = f.bytes();
        b[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        f.producer.store(24, Ordering::Release);
        let mut r = f.ring();
        assert!(r.next().unwrap().is_empty());
        assert_eq!(f.consumer.load(Ordering::Relaxed), 24);
        assert!(r.next().is_none());
    }

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
