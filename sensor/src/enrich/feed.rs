//! What the process-record sources (the eBPF ring-buffer reader, the audit proc connector) tell
//! the pipeline task (its process cache) besides events: new processes (forks, which are not output events) and
//! how far they have delivered (a watermark).
//!
//! A fork travels on its own bounded channel. A fork from the ring-buffer reader names how many
//! events the reader had sent before it, and the stage applies it right after taking those
//! (see [`super::order`]), so a child inherits its parent's image as it was at fork time even
//! when the parent exec'd later.
//!
//! The watermark says "every record of this producer that happened at or before this
//! CLOCK_MONOTONIC ns has been sent". An event of a process the cache does not know, newer
//! than the watermark, may still be overtaking the fork or exec of its process (fanotify
//! delivers at once, the ring buffer in batches): the stage holds it for a bounded time.
//!
//! A source without the cgroup in its events (audit) also reads `/proc/<pid>/cgroup` when it
//! captures an exec and leaves the read for the cache ([`CgroupReads`]).
use std::sync::{Arc, Mutex};

use super::cgroup_reads::CgroupReads;

use tokio::sync::mpsc;

use crate::event::Process;

/// A new process the cache should learn of, in capture order.
#[derive(Debug, Clone)]
pub struct ProcessStart {
    /// CLOCK_MONOTONIC ns of the fork.
    pub ktime_ns: u64,
    /// Ring-buffer events the reader had sent before this fork (0 from other producers): the
    /// stage applies the fork once it has taken that many.
    pub after_events: u64,
    /// True from a producer whose forks are ordered with its events (the ring buffer). A fork
    /// from an unordered producer (the proc connector, while the exec of the parent comes
    /// through audit, possibly later) is applied on demand instead: just before an event of
    /// the child or of a descendant is enriched, so the child copies its parent's latest image.
    pub in_order: bool,
    /// The child. `comm` empty when the producer knows only pids (the proc connector): the
    /// child then takes its parent's comm and credentials from the cache.
    pub process: Process,
}

/// One producer's progress: every record it saw happen at or before `through_ns` has been
/// sent, `sent` ring-buffer events among them.
#[derive(Debug, Default, Clone, Copy)]
struct Mark {
    through_ns: u64,
    sent: u64,
}

/// The producers' progress, as the stage sees it.
#[derive(Debug, Default)]
pub struct Watermark {
    marks: Mutex<Vec<Arc<Mutex<Mark>>>>,
}

impl Watermark {
    fn register(&self) -> Arc<Mutex<Mark>> {
        let m = Arc::new(Mutex::new(Mark::default()));
        self.marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m.clone());
        m
    }

    /// True when every producer has delivered everything up to `at_ns` and the stage (having
    /// taken `taken` ring-buffer events) has taken all of it. True without producers.
    pub fn passed(&self, at_ns: u64, taken: u64) -> bool {
        self.marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .all(|m| {
                let m = *m.lock().unwrap_or_else(|e| e.into_inner());
                m.through_ns >= at_ns && m.sent <= taken
            })
    }
}

/// The producer side; one per producing task ([`ProcessFeed::producer`]).
#[derive(Debug, Clone)]
pub struct ProcessFeed {
    tx: mpsc::Sender<ProcessStart>,
    marks: Arc<Watermark>,
    mark: Option<Arc<Mutex<Mark>>>,
    /// Cgroup reads made at capture, for the cache.
    pub cgroup_reads: Arc<CgroupReads>,
}

impl ProcessFeed {
    /// A handle with its own watermark: the stage waits for the slowest producer.
    pub fn producer(&self) -> ProcessFeed {
        ProcessFeed {
            mark: Some(self.marks.register()),
            ..self.clone()
        }
    }

    /// Sends a fork to the stage (waits when the channel is full). False once the stage is gone.
    pub async fn fork(&self, start: ProcessStart) -> bool {
        self.tx.send(start).await.is_ok()
    }

    /// [`Self::fork`] for producer threads.
    pub fn fork_blocking(&self, start: ProcessStart) -> bool {
        self.tx.blocking_send(start).is_ok()
    }

    /// Everything this producer saw happen at or before `ktime_ns` has been sent, `sent`
    /// ring-buffer events in all (0 for a producer that sends none).
    pub fn delivered_through(&self, ktime_ns: u64, sent: u64) {
        if let Some(m) = &self.mark {
            let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
            m.through_ns = m.through_ns.max(ktime_ns);
            m.sent = m.sent.max(sent);
        }
    }
}

/// The stage's side.
#[derive(Debug)]
pub struct FeedInput {
    pub rx: mpsc::Receiver<ProcessStart>,
    pub watermark: Arc<Watermark>,
    /// Cgroup reads the sources made at capture ([`ProcessFeed::cgroup_reads`]).
    pub cgroup_reads: Arc<CgroupReads>,
}

/// A feed and its stage input. `capacity` bounds the forks in flight.
pub fn process_feed(capacity: usize) -> (ProcessFeed, FeedInput) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let marks = Arc::new(Watermark::default());
    let cgroup_reads = Arc::new(CgroupReads::default());
    (
        ProcessFeed {
            tx,
            marks: marks.clone(),
            mark: None,
            cgroup_reads: cgroup_reads.clone(),
        },
        FeedInput {
            rx,
            watermark: marks,
            cgroup_reads,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watermark_is_the_slowest_producer_and_counts_taken_events() {
        let (feed, input) = process_feed(4);
        let w = &input.watermark;
        assert!(w.passed(u64::MAX, 0), "no producer: nothing to wait for");
        let a = feed.producer();
        let b = feed.producer();
        assert!(!w.passed(1, 0));
        a.delivered_through(100, 0);
        assert!(!w.passed(1, 0));
        b.delivered_through(50, 3);
        assert!(w.passed(50, 3));
        assert!(
            !w.passed(50, 2),
            "3 events were sent before the mark; 2 taken"
        );
        assert!(!w.passed(51, 3));
        b.delivered_through(40, 1);
        assert!(w.passed(50, 3), "never goes back");
    }

    #[tokio::test]
    async fn forks_are_delivered_in_order() {
        let (feed, mut input) = process_feed(4);
        let p = feed.producer();
        for pid in [10, 11] {
            let start = ProcessStart {
                ktime_ns: u64::from(pid),
                after_events: 0,
                in_order: true,
                process: Process {
                    pid,
                    ..Process::default()
                },
            };
            assert!(p.fork(start).await);
        }
        assert_eq!(input.rx.recv().await.unwrap().process.pid, 10);
        assert_eq!(input.rx.recv().await.unwrap().process.pid, 11);
    }
}
