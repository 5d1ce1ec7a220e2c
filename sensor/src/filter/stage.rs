//! The filter step: noise rules, then argv redaction. [`Filter::pass`] runs inside the
//! pipeline task, between enrichment and the output (docs/ARCHITECTURE.md#pipeline).
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::noise::{NoiseFilter, Verdict};
use super::redact::Redactor;
use super::FilterStats;
use crate::event::Event;

/// The noise rules, the redactor and their counters.
pub struct Filter {
    noise: NoiseFilter,
    redactor: Redactor,
    stats: Arc<FilterStats>,
    /// The last argv redaction left unchanged. Redaction depends on the argv alone, so the
    /// same argv again needs no scan: the events of one process (a file storm, its connects)
    /// carry the same argv each time, and scanning it per event was ~8% of the sensor's CPU
    /// in a file storm.
    clean: Vec<String>,
}

impl Filter {
    pub fn new(noise: NoiseFilter, redactor: Redactor, stats: Arc<FilterStats>) -> Self {
        Self {
            noise,
            redactor,
            stats,
            clean: Vec::new(),
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
        let changed = self.redact(ev);
        if changed > 0 {
            self.stats.redacted_events.fetch_add(1, Relaxed);
            self.stats.redacted_args.fetch_add(changed as u64, Relaxed);
        }
        self.stats.passed.fetch_add(1, Relaxed);
        true
    }

    /// Redacts the event's argv unless it is the last argv found clean; returns how many
    /// arguments changed.
    fn redact(&mut self, ev: &mut Event) -> usize {
        if !self.redactor.enabled() {
            return 0;
        }
        let Some(argv) = ev.process.as_mut().and_then(|p| p.argv.as_mut()) else {
            return 0;
        };
        if !self.clean.is_empty() && argv.args == self.clean {
            return 0;
        }
        let changed = self.redactor.redact_argv(&mut argv.args);
        if changed == 0 {
            self.clean.clone_from(&argv.args);
        }
        changed
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

    #[test]
    fn drops_counts_redacts_and_forwards() {
        let (f, r) = FilterConfig::default().build().unwrap();
        let stats = Arc::new(FilterStats::for_filter(&f));
        let mut filter = Filter::new(f, r, stats.clone());
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
        let mut out = Vec::new();
        for mut e in events {
            if filter.pass(&mut e) {
                out.push(e);
            }
        }
        filter.publish();
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

    #[test]
    fn a_clean_argv_is_not_scanned_again_and_nothing_else_is_skipped() {
        let (f, r) = FilterConfig::default().build().unwrap();
        let stats = Arc::new(FilterStats::for_filter(&f));
        let mut filter = Filter::new(f, r, stats.clone());
        let clean = ["python3", "storm.py", "/srv/data"];
        let secret = ["python3", "storm.py", "/srv/data", "--password=hunter2"];
        let argv_of = |e: &Event| {
            e.process
                .as_ref()
                .unwrap()
                .argv
                .as_ref()
                .unwrap()
                .args
                .clone()
        };
        let mut order = Vec::new();
        for argv in [&clean[..], &clean, &secret, &clean, &secret, &secret[..3]] {
            let mut e = ev(Kind::File, 9, "python3", argv);
            assert!(filter.pass(&mut e));
            order.push(argv_of(&e));
        }
        // The remembered clean argv is the first one; the secret is redacted every time, also
        // right after a clean event and when it differs from the clean argv by one argument.
        assert_eq!(filter.clean, clean.map(String::from));
        for (i, got) in order.iter().enumerate() {
            let want_redacted = i == 2 || i == 4;
            assert_eq!(
                got.iter().any(|a| a == "--password=[REDACTED]"),
                want_redacted,
                "{i}: {got:?}"
            );
            assert!(!got.iter().any(|a| a.contains("hunter2")), "{i}: {got:?}");
        }
        assert_eq!(stats.redacted_events.load(Relaxed), 2);
    }
}
