//! Where `collector serve` puts accepted batches: the SQLite writer (default) or a
//! JetStream stream (fleet mode). Either way a batch's [`Receipt`] resolves only once the
//! batch is durably stored, and only then is it acknowledged to the sensor.
use std::future::Future;
use std::pin::Pin;

use prost::bytes::Bytes;
use sensor_proto::v1::{Batch, Hello};

use crate::jetstream::{publish::Publisher, JsError};
use crate::store::{writer::Outcome, writer::Writer, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    JetStream(#[from] JsError),
}

/// Resolves when the batch is stored (or failed to be).
pub type Receipt = Pin<Box<dyn Future<Output = Result<Outcome, SinkError>> + Send>>;

#[derive(Clone)]
pub enum Sink {
    Sqlite(Writer),
    JetStream(Box<Publisher>),
}

impl Sink {
    /// Hands a validated batch over; waits only for queue space (SQLite) or for the
    /// messages to be written to the NATS connection (JetStream). `bodies` are the events'
    /// bytes as received (see `store::writer::Writer::submit_batch`), or empty.
    pub async fn submit(
        &self,
        batch: Batch,
        bodies: Vec<Bytes>,
        received_ns: i64,
    ) -> Result<Receipt, SinkError> {
        match self {
            Sink::Sqlite(w) => {
                let rx = w
                    .submit_batch(
                        batch.sensor_id,
                        batch.boot_id,
                        batch.events,
                        bodies,
                        received_ns,
                    )
                    .await?;
                Ok(Box::pin(async move {
                    Ok(rx.await.unwrap_or(Err(StoreError::WriterGone))?)
                }))
            }
            Sink::JetStream(p) => {
                let acks = p.submit(batch).await?;
                Ok(Box::pin(async move {
                    let r = acks.await?;
                    Ok(Outcome {
                        stored: r.stored,
                        duplicates: r.duplicates,
                    })
                }))
            }
        }
    }

    pub async fn record_hello(&self, hello: Hello, seen_ns: i64) -> Result<(), SinkError> {
        match self {
            Sink::Sqlite(w) => Ok(w.record_hello(hello, seen_ns).await?),
            Sink::JetStream(p) => Ok(p.publish_hello(&hello).await?),
        }
    }
}
