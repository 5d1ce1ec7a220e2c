//! The collector: receives sensor batches over one gRPC stream per sensor, stores them in
//! SQLite (de-duplicated by (identity, sensor id, boot id, seq), acknowledged after commit) or, in
//! fleet mode, publishes them to a NATS JetStream stream (acknowledged after JetStream's
//! acks) that `collector consume` copies into SQLite; answers queries and session
//! timelines, and exposes Prometheus metrics.
pub mod certs;
pub mod config;
pub mod http;
pub mod ingest_stream;
pub mod ingest_svc;
pub mod jetstream;
pub mod listen;
pub mod metrics;
pub mod peer;
pub mod render;
pub mod report;
pub mod serve;
pub mod sessions;
pub mod sink;
pub mod store;
pub mod stream_quota;
pub mod timearg;
pub mod validate;
pub mod wire_scan;
