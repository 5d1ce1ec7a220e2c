//! The pipeline task: capture -> (bounded channel) -> shed admission -> enrich -> filter ->
//! output, one batch at a time, with plain calls after the channel (no hop, no wake-up
//! between the stages; docs/ARCHITECTURE.md#pipeline).
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::order::{AttribStats, Orderer};
use crate::enrich::feed::{process_feed, FeedInput, Watermark};
use crate::enrich::{CacheStats, EnrichConfig, ProcessCache};
use crate::{
    event::{Event, Kind},
    filter::Filter,
    pipeline::shed::Admission,
    sinks::{json::FLUSH_INTERVAL, Output},
    timefmt::monotonic_now_ns,
};

/// Events taken from the channel per batch (stats are published after each batch).
const BATCH: usize = 256;

/// What follows enrichment in the same task: the filter (noise rules, redaction), then the
/// output, so nothing unredacted is written or shipped.
pub struct Downstream {
    pub filter: Filter,
    pub output: Output,
}

impl Downstream {
    /// After a batch: the filter's counts are published, the output writes what is due.
    fn end_batch(&mut self) {
        self.filter.publish();
        self.output.end_batch();
    }
}

fn publish(stats: &Mutex<CacheStats>, cache: &ProcessCache) {
    *stats.lock().unwrap_or_else(|e| e.into_inner()) = cache.stats();
}

/// Runs the sweep off the async workers when the runtime allows it: with 100k entries it
/// lists /proc and re-reads up to [`crate::enrich::cache::SWEEP_STAT_BUDGET`] stat files.
fn sweep(cache: &mut ProcessCache) -> usize {
    let now = monotonic_now_ns();
    let root = cache.proc_root().to_path_buf();
    let multi = Handle::try_current()
        .map(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
        .unwrap_or(false);
    if multi {
        tokio::task::block_in_place(|| cache.sweep(now, &root))
    } else {
        cache.sweep(now, &root)
    }
}

/// What the stage needs for attribution beyond the events: the forks and watermark of the
/// process-record sources, and the counters it keeps.
pub struct Attribution {
    pub feed: FeedInput,
    pub stats: Arc<AttribStats>,
}

impl Attribution {
    /// No process-record source (tests, tools): nothing is ever held.
    pub fn none() -> Self {
        Self {
            feed: process_feed(1).1,
            stats: Arc::default(),
        }
    }
}

/// How often held events are re-checked against the watermark while any are held.
const HELD_RECHECK: Duration = Duration::from_millis(5);

struct Out<'a> {
    down: &'a mut Downstream,
    order: &'a mut Orderer,
    cache: &'a mut ProcessCache,
    admission: &'a mut Admission,
    attrib: &'a AttribStats,
}

impl Out<'_> {
    /// Sheds, enriches, filters and outputs one event; false once the output is gone.
    async fn send(&mut self, mut ev: Event, now: u64) -> bool {
        if !self.admission.admit(&mut ev, now) {
            return true;
        }
        self.order.prepare(&ev, self.cache, self.attrib);
        self.cache.enrich(&mut ev, now);
        if ev
            .process
            .as_ref()
            .is_some_and(|p| !p.incomplete.is_empty())
        {
            self.attrib.count_incomplete(ev.kind(), ev.source());
        }
        if !self.down.filter.pass(&mut ev) {
            return true;
        }
        if !self.down.output.send(ev, now).await {
            tracing::warn!("pipeline: output closed; stopping");
            return false;
        }
        true
    }

    async fn send_all(&mut self, evs: &mut Vec<Event>, now: u64) -> bool {
        for ev in evs.drain(..) {
            if !self.send(ev, now).await {
                return false;
            }
        }
        true
    }

    /// Sends the held events the watermark or their deadline now releases (`released` is
    /// the reused buffer); false once the output is gone.
    async fn release(&mut self, mark: &Watermark, released: &mut Vec<Event>, now: u64) -> bool {
        self.order
            .release(self.cache, now, mark, self.attrib, released);
        self.send_all(released, now).await
    }
}

/// Receives until `rx` closes, enriches, filters and outputs each event (backpressure: a slow
/// output slows this task, never drops here), sweeps every `cfg.sweep_interval_secs`,
/// publishes the cache and filter stats after each batch and flushes the output's lines
/// every [`FLUSH_INTERVAL`] while any wait.
/// Forks from the feed are applied in capture order, and events of not-yet-known processes
/// wait up to `cfg.process_wait_ms` for them (see [`super::order`]).
/// Returns once `rx` is closed and drained and everything was output and flushed (or the
/// output is gone, in which case the remaining events cannot be delivered and the task stops).
pub async fn run_stage(
    mut rx: mpsc::Receiver<Event>,
    mut down: Downstream,
    mut cache: ProcessCache,
    stats: Arc<Mutex<CacheStats>>,
    cfg: EnrichConfig,
    mut admission: Admission,
    attribution: Attribution,
) {
    let Attribution {
        feed:
            FeedInput {
                rx: mut forks,
                watermark,
                cgroup_reads,
            },
        stats: attrib,
    } = attribution;
    cache.use_cgroup_reads(cgroup_reads);
    let mut order = Orderer::new(cfg.process_wait_ms);
    let mut forks_open = true;
    let period = Duration::from_secs(cfg.sweep_interval_secs.max(1));
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut flush = interval_at(Instant::now() + FLUSH_INTERVAL, FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(BATCH);
    let mut released = Vec::new();
    publish(&stats, &cache);
    // The stage's borrows for one send (they are released between sends: the orderer and
    // the cache are also used on their own in the loop).
    macro_rules! out {
        () => {
            Out {
                down: &mut down,
                order: &mut order,
                cache: &mut cache,
                admission: &mut admission,
                attrib: &attrib,
            }
        };
    }
    'run: loop {
        let recheck = order.next_deadline().map(|d| {
            let left = Duration::from_nanos(d.saturating_sub(monotonic_now_ns()));
            tokio::time::sleep(left.min(HELD_RECHECK))
        });
        tokio::select! {
            biased;
            f = forks.recv(), if forks_open => {
                match f {
                    Some(f) => order.push_fork(f, &mut cache, &attrib),
                    None => forks_open = false,
                }
                while let Ok(f) = forks.try_recv() {
                    order.push_fork(f, &mut cache, &attrib);
                }
                if !out!().release(&watermark, &mut released, monotonic_now_ns()).await {
                    break 'run;
                }
                down.end_batch();
            }
            _ = flush.tick(), if down.output.waiting() => down.output.flush(),
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                let now = monotonic_now_ns();
                for ev in batch.drain(..) {
                    // A fork sent before a ring-buffer event is already in the fork channel.
                    while let Ok(f) = forks.try_recv() {
                        order.push_fork(f, &mut cache, &attrib);
                    }
                    let Some(ev) = order.take(ev, &mut cache, now, &watermark, &attrib) else {
                        continue;
                    };
                    let exec = ev.kind() == Kind::ProcessExec;
                    if !out!().send(ev, now).await {
                        break 'run;
                    }
                    if exec
                        && order.held_len() > 0
                        && !out!().release(&watermark, &mut released, now).await
                    {
                        break 'run;
                    }
                }
                if !out!().release(&watermark, &mut released, now).await {
                    break 'run;
                }
                down.end_batch();
                publish(&stats, &cache);
            }
            _ = async { if let Some(r) = recheck { r.await } }, if order.held_len() > 0 => {
                if !out!().release(&watermark, &mut released, monotonic_now_ns()).await {
                    break 'run;
                }
                down.end_batch();
            }
            _ = ticker.tick() => {
                let removed = sweep(&mut cache);
                tracing::debug!(removed, entries = cache.len(), "process cache sweep");
                publish(&stats, &cache);
            }
        }
    }
    // Input closed: what is still held goes out with what is known.
    while let Ok(f) = forks.try_recv() {
        order.push_fork(f, &mut cache, &attrib);
    }
    order.drain_all(&attrib, &mut released);
    out!().send_all(&mut released, monotonic_now_ns()).await;
    publish(&stats, &cache);
    down.filter.publish();
    down.output.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Kind, Process, Source};

    fn admission() -> Admission {
        Admission::new(Arc::default(), Arc::default())
    }

    fn filter() -> (Filter, Arc<crate::filter::FilterStats>) {
        let (noise, redactor) = crate::filter::FilterConfig::default().build().unwrap();
        let stats = Arc::new(crate::filter::FilterStats::for_filter(&noise));
        (Filter::new(noise, redactor, stats.clone()), stats)
    }

    /// The default filter, then a channel (as to the gRPC shipper's task).
    fn down(tx: mpsc::Sender<Event>) -> Downstream {
        Downstream {
            filter: filter().0,
            output: Output::Task(tx),
        }
    }

    fn event(kind: Kind, pid: u32, exe: Option<&str>) -> Event {
        let mut e = Event::new(kind, Source::Ebpf, 0, "h");
        e.process = Some(Process {
            pid,
            ppid: 0,
            start_boottime_ns: 7_000_000_000,
            comm: "t".into(),
            exe: exe.map(str::to_string),
            argv: exe.map(|e| vec![e.to_string(), "x".into()].into()),
            cwd: exe.map(|_| "/".to_string()),
            cgroup_id: 0,
            ..Process::default()
        });
        e
    }

    /// The task over `down`, with a cache over an empty /proc, the default shedding and no
    /// process feed.
    fn spawn_task(
        rx: mpsc::Receiver<Event>,
        down: Downstream,
        stats: Arc<Mutex<CacheStats>>,
        cfg: EnrichConfig,
        tag: &str,
    ) -> (tokio::task::JoinHandle<()>, crate::test_dir::TestDir) {
        let (cache, dir) = ProcessCache::over_empty_proc(&format!("enrich-stage-{tag}"));
        let task = run_stage(
            rx,
            down,
            cache,
            stats,
            cfg,
            admission(),
            Attribution::none(),
        );
        (tokio::spawn(task), dir)
    }

    #[tokio::test]
    async fn forwards_everything_in_order_with_backpressure() {
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(1);
        let stats = Arc::new(Mutex::new(CacheStats::default()));
        let (stage, _dir) = spawn_task(
            in_rx,
            down(out_tx),
            stats.clone(),
            EnrichConfig::default(),
            "order",
        );
        const N: u32 = 500;
        let producer = tokio::spawn(async move {
            for pid in 1..=N {
                in_tx
                    .send(event(Kind::ProcessExec, 10_000 + pid, Some("/bin/x")))
                    .await
                    .unwrap();
                in_tx
                    .send(event(Kind::NetConnect, 10_000 + pid, None))
                    .await
                    .unwrap();
            }
        });
        let mut got = Vec::new();
        while let Some(ev) = out_rx.recv().await {
            got.push(ev);
            if got.len().is_multiple_of(100) {
                tokio::task::yield_now().await;
            }
        }
        producer.await.unwrap();
        stage.await.unwrap();
        assert_eq!(got.len(), 2 * N as usize);
        for pair in got.chunks(2) {
            let (a, b) = (
                pair[0].process.as_ref().unwrap(),
                pair[1].process.as_ref().unwrap(),
            );
            assert_eq!(
                (pair[0].kind(), pair[1].kind()),
                (Kind::ProcessExec, Kind::NetConnect)
            );
            assert_eq!(a.pid, b.pid);
            assert_eq!(b.exe.as_deref(), Some("/bin/x"));
            assert_eq!(b.args(), Some(&["/bin/x".to_string(), "x".into()][..]));
        }
        let s = *stats.lock().unwrap();
        assert_eq!(s.entries, u64::from(N));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweeps_on_the_interval_and_stops_when_input_closes() {
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        let stats = Arc::new(Mutex::new(CacheStats::default()));
        let cfg = EnrichConfig {
            sweep_interval_secs: 1,
            ..EnrichConfig::default()
        };
        let (stage, _dir) = spawn_task(in_rx, down(out_tx), stats.clone(), cfg, "sweep");
        // pid 4242 is not in the (empty) proc root: the sweep marks it lost.
        in_tx
            .send(event(Kind::ProcessExec, 4242, Some("/bin/y")))
            .await
            .unwrap();
        assert!(out_rx.recv().await.is_some());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stats.lock().unwrap().exit_pending == 0 {
            assert!(std::time::Instant::now() < deadline, "no sweep ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(in_tx);
        stage.await.unwrap();
        assert!(out_rx.recv().await.is_none());
    }

    /// The output's receiver is gone (the gRPC sink's task ended) while the sources still
    /// send: the task stops at the first event it cannot output instead of waiting for its
    /// input to close, publishes its stats, and releases the sources' channel so their
    /// senders see it closed.
    #[tokio::test]
    async fn stops_when_the_output_is_closed_though_input_is_open() {
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel(1);
        drop(out_rx);
        let stats = Arc::new(Mutex::new(CacheStats::default()));
        let (stage, _dir) = spawn_task(
            in_rx,
            down(out_tx),
            stats.clone(),
            EnrichConfig::default(),
            "closed",
        );
        in_tx
            .send(event(Kind::ProcessExec, 4343, Some("/bin/z")))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), stage)
            .await
            .expect("the task kept running after its output closed")
            .unwrap();
        assert!(
            in_tx
                .send(event(Kind::ProcessExec, 4344, Some("/bin/z")))
                .await
                .is_err(),
            "the sources' channel is still open"
        );
        // The exec was enriched before the output refused it, and the stats say so.
        assert_eq!(stats.lock().unwrap().entries, 1);
    }

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn filters_redacts_and_writes_lines_in_the_same_task() {
        use crate::sinks::{json::LineSink, ocsf::LineFormat};
        let (in_tx, in_rx) = mpsc::channel(4);
        let written = Shared::default();
        let counters = Arc::new(crate::telemetry::counters::Counters::default());
        let (filter, fstats) = filter();
        let down = Downstream {
            filter,
            output: Output::Lines(LineSink::new(
                Box::new(written.clone()),
                LineFormat::Json,
                counters.clone(),
            )),
        };
        let (stage, _dir) = spawn_task(
            in_rx,
            down,
            Arc::default(),
            EnrichConfig::default(),
            "lines",
        );
        let with = |kind, pid, comm: &str, argv: &[&str]| {
            let mut e = event(kind, pid, Some("/bin/x"));
            let p = e.process.as_mut().unwrap();
            p.comm = comm.into();
            p.argv = Some(
                argv.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .into(),
            );
            e
        };
        for e in [
            with(Kind::ProcessExec, 11, "date", &["date", "+%s"]),
            with(Kind::ProcessExit, 11, "date", &[]),
            with(
                Kind::ProcessExec,
                12,
                "mysql",
                &["mysql", "--password=hunter2"],
            ),
            with(Kind::ProcessExit, 12, "mysql", &[]),
        ] {
            in_tx.send(e).await.unwrap();
        }
        // Lines wait for the flush timer (or the end), not for the next event.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while written.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no timed flush");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(in_tx);
        stage.await.unwrap();
        let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<(u64, &str, &str)> = lines
            .iter()
            .map(|v| {
                (
                    v["seq"].as_u64().unwrap(),
                    v["kind"].as_str().unwrap(),
                    v["process"]["comm"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![(1, "process_exec", "mysql"), (2, "process_exit", "mysql")]
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("--password=[REDACTED]"), "{text}");
        let n = crate::telemetry::fields::fields_of(&*fstats).events;
        assert_eq!(n["filtered_routine_info"], 1);
        assert_eq!(n["filter_exits_dropped"], 1);
        assert_eq!(n["redacted_events"], 1);
        assert_eq!(
            counters.written.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }
}
