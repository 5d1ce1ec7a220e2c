//! `sensor_health` events: mode and reason, events and drops per kind, CPU, RSS, lag.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::{counters::Counters, selfstat};
use crate::{
    event::{Event, Health, Kind, Source},
    timefmt::unix_now_ns,
};

/// Extra named drop counters from a capture path (e.g. in-kernel ring-buffer reserve failures).
pub type DropSource = Box<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// Extra named facts from a capture path that are not losses (e.g. audit rules repaired).
pub type NoteSource = Box<dyn Fn() -> BTreeMap<String, u64> + Send + Sync>;

/// A part of the reason that can change while running (e.g. the audit daemon slot handed to
/// auditd); `None` while there is nothing to say.
pub type ReasonSource = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// Everything needed to build a health event at any moment.
pub struct HealthReporter {
    pub mode: String,
    pub reason: String,
    /// Appended to `reason` when they have something to say.
    pub live_reasons: Vec<ReasonSource>,
    pub host: String,
    pub started: Instant,
    pub counters: Arc<Counters>,
    pub kernel_drops: Vec<DropSource>,
    /// Merged into `events`.
    pub notes: Vec<NoteSource>,
    /// Loss counters with computed names (load shedding), merged into `drops`.
    pub extra_drops: Vec<NoteSource>,
}

impl HealthReporter {
    /// The reason as of now: the start-up reason plus what changed since.
    pub fn reason(&self) -> String {
        std::iter::once(self.reason.clone())
            .chain(self.live_reasons.iter().filter_map(|r| r()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every loss counter and every event/fact counter, by name, without counting a health
    /// event (for the status file).
    pub fn counts(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let mut drops: BTreeMap<String, u64> = self.counters.drops();
        for kd in &self.kernel_drops {
            for (name, n) in kd() {
                drops.insert(name.to_string(), n);
            }
        }
        for more in &self.extra_drops {
            drops.extend(more());
        }
        let mut events = self.counters.events();
        for notes in &self.notes {
            events.extend(notes());
        }
        (drops, events)
    }

    pub fn event(&self) -> Event {
        let usage = selfstat::read(None);
        self.counters.count_event(Kind::SensorHealth);
        let (drops, events) = self.counts();
        let mut ev = Event::new(
            Kind::SensorHealth,
            Source::Sensor,
            unix_now_ns(),
            &self.host,
        );
        ev.health = Some(Health {
            mode: self.mode.clone(),
            reason: self.reason(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            drops,
            events,
            cpu: usage.cpu_seconds,
            rss_bytes: usage.rss_bytes,
            lag_ms: self.counters.take_max_lag_us() as f64 / 1000.0,
        });
        ev
    }
}
