//! The `jetstream` sink of `collector serve`. A batch is split into messages
//! ([`naming::plan`]), every message is published with its `Nats-Msg-Id`, and the batch
//! counts as stored only when JetStream has acknowledged every one of them. A publish error
//! or an acknowledgement timeout fails the batch: the sensor gets no Ack, its stream ends,
//! and it resends from its spool (the message ids make the resend safe).
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use sensor_proto::v1::{Batch, Hello};

use super::naming::{self, Granularity};
use super::JsError;
use crate::config::JetStreamSection;
use sensor_proto::error_chain::error_chain;

/// The NATS default, used while the server has not told us its limit yet.
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// What JetStream said about one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Events in messages JetStream stored now.
    pub stored: u32,
    /// Events in messages JetStream dropped as duplicates (same id within the window).
    pub duplicates: u32,
    pub messages: u32,
}

#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    granularity: Granularity,
    timeout: Duration,
}

impl Publisher {
    pub fn new(client: async_nats::Client, cfg: &JetStreamSection) -> Publisher {
        Publisher {
            js: super::context(client.clone(), cfg),
            client,
            prefix: cfg.subject_prefix.clone(),
            granularity: Granularity::parse(&cfg.granularity).unwrap_or(Granularity::Batch),
            timeout: Duration::from_secs(cfg.publish_timeout_secs),
        }
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    fn max_payload(&self) -> usize {
        match self.client.server_info().max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            n => n,
        }
    }

    /// Publishes every message of a validated batch. Returns once they are all handed to
    /// the connection; the returned future resolves when JetStream acknowledged them all
    /// (or with the first failure).
    pub async fn submit(
        &self,
        batch: Batch,
    ) -> Result<impl Future<Output = Result<Published, JsError>> + Send + 'static, JsError> {
        let planned = naming::plan(batch, &self.prefix, self.granularity, self.max_payload());
        let mut acks: Vec<(u32, PublishAckFuture)> = Vec::with_capacity(planned.len());
        for m in planned {
            let publish = PublishMessage::build()
                .payload(m.payload.into())
                .message_id(&m.msg_id);
            let ack = self
                .js
                .send_publish(m.subject, publish)
                .await
                .map_err(|e| JsError::Publish(error_chain(&e)))?;
            acks.push((m.events, ack));
        }
        let timeout = self.timeout;
        Ok(async move {
            let mut out = Published::default();
            for (events, ack) in acks {
                let a = ack.await.map_err(|e| {
                    if e.kind() == jetstream::context::PublishErrorKind::TimedOut {
                        JsError::AckTimeout(timeout)
                    } else {
                        JsError::Publish(error_chain(&e))
                    }
                })?;
                out.messages += 1;
                if a.duplicate {
                    out.duplicates += events;
                } else {
                    out.stored += events;
                }
            }
            Ok(out)
        })
    }

    /// Publishes a sensor's Hello (host facts for the consumers' `sensors` table). Not
    /// waited for: a lost Hello costs only metadata, and the next stream sends it again.
    pub async fn publish_hello(&self, hello: &Hello) -> Result<(), JsError> {
        use prost::Message as _;
        let subject = naming::hello_subject(&self.prefix, &hello.host);
        let ack = self
            .js
            .send_publish(
                subject,
                PublishMessage::build().payload(hello.encode_to_vec().into()),
            )
            .await
            .map_err(|e| JsError::Publish(error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = ack.await {
                tracing::debug!(error = %e, "JetStream did not store a Hello");
            }
        });
        Ok(())
    }
}
