//! `sensor_health` events: mode and reason, events and drops per kind, CPU, RSS, lag.
use std::sync::Arc;
use std::time::Instant;

use super::{
    counters::Counters,
    fields::{HealthFields, Telemetry},
    selfstat,
};
use crate::{
    event::{Event, Health, Kind, Source},
    timefmt::unix_now_ns,
};

/// Everything needed to build a health event at any moment.
pub struct HealthReporter {
    pub mode: String,
    /// The reason at start; the components' live reasons are appended when they have
    /// something to say.
    pub reason: String,
    pub host: String,
    pub started: Instant,
    pub counters: Arc<Counters>,
    /// Every component's counters (sources first), written in this order after `counters`.
    /// The shedding counters are not here: the pipeline's entry writes them into each health
    /// event as it passes (see `pipeline::shed::Admission`).
    pub components: Vec<Arc<dyn Telemetry>>,
}

impl HealthReporter {
    /// The reason as of now: the start-up reason plus what changed since.
    pub fn reason(&self) -> String {
        std::iter::once(self.reason.clone())
            .chain(self.components.iter().filter_map(|c| c.live_reason()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every loss counter and every event/fact counter, by name, without counting a health
    /// event (for the status file).
    pub fn fields(&self) -> HealthFields {
        let mut f = HealthFields::default();
        self.counters.report(&mut f);
        for c in &self.components {
            c.report(&mut f);
        }
        f
    }

    pub fn event(&self) -> Event {
        let usage = selfstat::read(None);
        self.counters.count_event(Kind::SensorHealth);
        let HealthFields { drops, events } = self.fields();
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
            drops: drops.into_iter().collect(),
            events: events.into_iter().collect(),
            cpu: usage.cpu_seconds,
            rss_bytes: usage.rss_bytes,
            lag_ms: self.counters.take_max_lag_us() as f64 / 1000.0,
        });
        ev
    }
}
