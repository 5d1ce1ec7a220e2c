//! Fleet mode: NATS JetStream between stateless collectors and the SQLite consumers.
//!
//! - [`naming`]: subjects, message ids and the split of a batch into messages (pure).
//! - [`publish`]: the `jetstream` sink of `collector serve`: publishes a batch and resolves
//!   only when JetStream acknowledged every message of it.
//! - [`consume`]: `collector consume`, a durable pull consumer that stores the stream in
//!   SQLite (de-duplicated by (sensor id, boot id, seq)) and reports its lag.
//!
//! The stream is created with the `[jetstream]` settings when it is missing.
pub mod consume;
pub mod naming;
pub mod publish;

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::JetStreamSection;
use sensor_proto::error_chain::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum JsError {
    #[error("cannot connect to NATS {servers}: {source}")]
    Connect {
        servers: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("JetStream stream {stream}: {detail}")]
    Stream { stream: String, detail: String },
    #[error("JetStream consumer {durable}: {detail}")]
    Consumer { durable: String, detail: String },
    #[error("JetStream publish failed: {0}")]
    Publish(String),
    #[error("JetStream did not acknowledge within {0:?}")]
    AckTimeout(Duration),
    #[error("fetching from JetStream: {0}")]
    Fetch(String),
    #[error("message {stream_seq} of the stream is not a sensor batch: {source}")]
    Decode {
        stream_seq: u64,
        #[source]
        source: prost::DecodeError,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A NATS connection that keeps reconnecting (also when no server answers at start, so a
/// collector can start before the cluster; until then it acknowledges nothing).
pub async fn connect(cfg: &JetStreamSection, name: &str) -> Result<async_nats::Client, JsError> {
    let servers: Vec<async_nats::ServerAddr> = cfg
        .servers
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| JsError::Connect {
            servers: cfg.servers.join(","),
            source: async_nats::ConnectError::with_source(
                async_nats::ConnectErrorKind::ServerParse,
                e,
            ),
        })?;
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(10))
        .reconnect_delay_callback(|attempts| {
            // 100 ms doubling to 2 s: a restarted node is found quickly.
            Duration::from_millis(100u64 << attempts.min(5) as u32).min(Duration::from_secs(2))
        })
        .connect(servers)
        .await
        .map_err(|source| JsError::Connect {
            servers: cfg.servers.join(","),
            source,
        })
}

/// The JetStream context: publishes wait for room (bounded in-flight acks) and each ack
/// for `publish_timeout_secs`.
pub fn context(client: async_nats::Client, cfg: &JetStreamSection) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(cfg.publish_timeout_secs))
        .max_ack_inflight(cfg.max_ack_inflight)
        .backpressure_on_inflight(true)
        .build(client)
}

/// The stream's configuration from `[jetstream]`.
pub fn stream_config(cfg: &JetStreamSection) -> stream::Config {
    stream::Config {
        name: cfg.stream.clone(),
        subjects: vec![format!("{}.>", cfg.subject_prefix)],
        num_replicas: cfg.replicas,
        retention: match cfg.retention.as_str() {
            "interest" => stream::RetentionPolicy::Interest,
            "workqueue" => stream::RetentionPolicy::WorkQueue,
            _ => stream::RetentionPolicy::Limits,
        },
        storage: match cfg.storage.as_str() {
            "memory" => stream::StorageType::Memory,
            _ => stream::StorageType::File,
        },
        discard: match cfg.discard.as_str() {
            "old" => stream::DiscardPolicy::Old,
            _ => stream::DiscardPolicy::New,
        },
        max_age: Duration::from_secs(cfg.max_age_secs),
        max_bytes: if cfg.max_bytes == 0 {
            -1
        } else {
            cfg.max_bytes
        },
        max_messages: -1,
        max_messages_per_subject: -1,
        max_message_size: -1,
        max_consumers: -1,
        duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
        description: Some("sensor event batches (collector fleet mode)".into()),
        ..Default::default()
    }
}

/// Looks the stream up, creating it when missing.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &JetStreamSection,
) -> Result<stream::Stream, JsError> {
    js.get_or_create_stream(stream_config(cfg))
        .await
        .map_err(|e| JsError::Stream {
            stream: cfg.stream.clone(),
            detail: error_chain(&e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_config_follows_the_section() {
        let mut j = JetStreamSection {
            max_bytes: 0,
            discard: "new".into(),
            ..Default::default()
        };
        let c = stream_config(&j);
        assert_eq!(c.subjects, ["sensor.>"]);
        assert_eq!(c.num_replicas, 3);
        assert_eq!(c.max_bytes, -1);
        assert_eq!(c.discard, stream::DiscardPolicy::New);
        assert_eq!(c.duplicate_window, Duration::from_secs(120));
        j.max_bytes = 1 << 30;
        j.retention = "workqueue".into();
        j.storage = "memory".into();
        let c = stream_config(&j);
        assert_eq!(c.max_bytes, 1 << 30);
        assert_eq!(c.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(c.storage, stream::StorageType::Memory);
    }
}
