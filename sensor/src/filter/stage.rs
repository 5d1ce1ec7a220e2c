//! The filter step: noise rules, then argv redaction. [`Filter::pass`] runs inside the
//! pipeline task, between enrichment and the output (docs/ARCHITECTURE.md#pipeline);
//! [`run_filter_stage`] runs the same step as a task between two channels (benches, tests).
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::noise::{NoiseFilter, Verdict};
use super::redact::Redactor;
use super::FilterStats;
use crate::event::Event;

/// Events taken from the channel per batch by [`run_filter_stage`].
const BATCH: usize = 256;

/// The noise rules, the redactor and their counters.
pub struct Filter {
    noise: NoiseFilter,
    redactor: Redactor,
    stats: Arc<FilterStats>,
}

impl Filter {
    pub fn new(noise: NoiseFilter, redactor: Redactor, stats: Arc<FilterStats>) -> Self {
        Self {
            noise,
            redactor,
            stats,
        }
    }

    /// Applies the noise rules (counting each drop under its rule) and, to a kept event,
    /// redaction. False when the event is dropped.
    pub fn pass(&mut self, ev: &mut Event) -> bool {
        match self.noise.check(ev) {
            Verdict::Keep => {}
            Verdict::Drop(rule) => {
                self.stats.count_rule(rule);
                return false;
            }
            Verdict::DropExit(_) => {
                self.stats.exits_dropped.fetch_add(1, Relaxed);
                return false;
            }
        }
        let changed = self.redactor.redact_event(ev);
        if changed > 0 {
            self.stats.redacted_events.fetch_add(1, Relaxed);
            self.stats.redacted_args.fetch_add(changed as u64, Relaxed);
        }
        self.stats.passed.fetch_add(1, Relaxed);
        true
    }

    /// Publishes the exit tracker's counts (after each batch).
    pub fn publish(&self) {
        let c = self.noise.tracker_counts();
        self.stats.tracking_evictions.store(c.evictions, Relaxed);
        self.stats
            .exit_inconsistencies
            .store(c.inconsistencies, Relaxed);
    }
}

/// Receives until `rx` closes: [`Filter::pass`] on each event, and forwards the kept ones
/// with `tx.send().await` (backpressure, no drops here). Returns once `rx` is closed and
/// drained, or when the output side is gone.
pub async fn run_filter_stage(
    mut rx: mpsc::Receiver<Event>,
    tx: mpsc::Sender<Event>,
    noise: NoiseFilter,
    redactor: Redactor,
    stats: Arc<FilterStats>,
) {
    let mut filter = Filter::new(noise, redactor, stats);
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        for mut ev in batch.drain(..) {
            if filter.pass(&mut ev) && tx.send(ev).await.is_err() {
                filter.publish();
                return;
            }
        }
        filter.publish();
    }
    filter.publish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Kind, Process, Source};
    use crate::filter::FilterConfig;

    fn ev(kind: Kind, pid: u32, comm: &str, argv: &[&str]) -> Event {
        let mut e = Event::new(kind, Source::Audit, 0, "h");
        e.process = Some(Process {
            pid,
            comm: comm.into(),
            argv: Some(argv.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        });
        e
    }

    #[tokio::test]
    async fn drops_counts_redacts_and_forwards() {
        let (f, r) = FilterConfig::default().build().unwrap();
        let stats = Arc::new(FilterStats::for_filter(&f));
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(1000);
        let task = tokio::spawn(run_filter_stage(in_rx, out_tx, f, r, stats.clone()));
        let events = vec![
            ev(Kind::ProcessExec, 1, "date", &["date", "+%s"]),
            ev(Kind::ProcessExit, 1, "date", &[]),
            ev(Kind::ProcessExec, 2, "who", &["who", "-b"]),
            ev(Kind::ProcessExit, 2, "who", &[]),
            ev(Kind::ProcessExec, 3, "data", &["data", "+%s"]),
            ev(
                Kind::ProcessExec,
                4,
                "mysql",
                &["mysql", "--password=hunter2"],
            ),
            ev(Kind::ProcessExit, 3, "data", &[]),
            ev(Kind::ProcessExit, 4, "mysql", &[]),
        ];
        for e in events {
            in_tx.send(e).await.unwrap();
        }
        drop(in_tx);
        task.await.unwrap();
        let mut out = Vec::new();
        while let Ok(e) = out_rx.try_recv() {
            out.push(e);
        }
        let comms: Vec<(Kind, &str)> = out
            .iter()
            .map(|e| (e.kind(), e.process.as_ref().unwrap().comm.as_str()))
            .collect();
        assert_eq!(
            comms,
            vec![
                (Kind::ProcessExec, "data"),
                (Kind::ProcessExec, "mysql"),
                (Kind::ProcessExit, "data"),
                (Kind::ProcessExit, "mysql"),
            ]
        );
        let json =
            serde_json::to_string(&out.iter().map(Event::to_json).collect::<Vec<_>>()).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("--password=[REDACTED]"));
        let n = crate::telemetry::fields::fields_of(&*stats).events;
        assert_eq!(n["filtered_routine_info"], 2);
        assert_eq!(n["filter_exits_dropped"], 2);
        assert_eq!((n["redacted_events"], n["redacted_args"]), (1, 1));
        assert_eq!(stats.passed.load(Relaxed), 4);
    }

    #[tokio::test]
    async fn stops_when_output_is_gone() {
        let (f, r) = FilterConfig::default().build().unwrap();
        let stats = Arc::new(FilterStats::for_filter(&f));
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = mpsc::channel(1);
        drop(out_rx);
        let task = tokio::spawn(run_filter_stage(in_rx, out_tx, f, r, stats));
        in_tx
            .send(ev(Kind::ProcessExec, 1, "x", &["x"]))
            .await
            .unwrap();
        task.await.unwrap();
        assert!(
            in_tx
                .send(ev(Kind::ProcessExec, 1, "x", &["x"]))
                .await
                .is_err()
                || in_tx.is_closed()
        );
    }
}
