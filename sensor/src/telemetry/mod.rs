//! The sensor's own figures: event and loss counters, `sensor_health` events, the status file
//! and self-measured CPU/RSS.
pub mod counters;
pub mod fields;
pub mod health;
pub mod selfstat;
pub mod status;
