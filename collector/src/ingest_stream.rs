//! The gRPC `Ingest` service: one task per sensor stream. Batches are validated, handed to
//! the sink (SQLite writer or JetStream), and acknowledged in order once stored. A bad
//! message ends that stream only, with a readable status; other streams and stored data are
//! untouched.
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use sensor_proto::v1::{
    collector_message, sensor_message, Ack, CollectorMessage, ProtocolVersion, SensorMessage,
    Welcome,
};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::ingest_svc::Inbound;
use crate::metrics::Metrics;
use crate::peer::Peer;
use crate::sink::{Receipt, Sink};
use crate::stream_quota::StreamQuota;
use crate::validate::{check_event_hosts, check_hello, validate_batch, BatchError, Limits};

/// What a stream's Hello established.
struct Sensor {
    /// The id the sensor gave.
    sensor_id: String,
    /// The id its batches are stored and de-duplicated under (qualified by the peer).
    storage_id: String,
    host: String,
}

/// Batches of one stream waiting for their commit, acknowledged in this order.
const MAX_PENDING: usize = 64;

#[derive(Clone)]
pub struct IngestService {
    pub sink: Sink,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub max_message_bytes: usize,
    /// Turns true when the collector stops: open streams end with UNAVAILABLE.
    pub shutdown: watch::Receiver<bool>,
    /// Events decoded and not yet stored, over all streams (`server.max_inflight_events`).
    pub inflight: Arc<Semaphore>,
    /// Open streams per certificate host (`server.max_streams_per_host`).
    pub streams_per_host: Arc<StreamQuota>,
}

type Out = mpsc::Sender<Result<CollectorMessage, Status>>;

enum Pending {
    Ack {
        batch_id: u64,
        sensor_id: String,
        host: String,
        newest_event_ns: i64,
        rx: Receipt,
        /// Its share of the in-flight budget, returned once it is stored (or failed).
        _permit: OwnedSemaphorePermit,
    },
    Fail(Status),
}

/// What a stream answers: the Welcome, then Acks in batch order, or an error status.
pub type OutStream = ReceiverStream<Result<CollectorMessage, Status>>;

impl IngestService {
    /// `/sensor.v1.Ingest/Stream` (served by `ingest_svc`, whose decoder keeps each
    /// message's bytes so the events are stored as received).
    pub async fn stream(
        &self,
        request: Request<Streaming<Inbound>>,
    ) -> Result<Response<OutStream>, Status> {
        let auth = Peer::of(&request).map_err(|e| {
            self.metrics.reject("bad_certificate");
            Status::unauthenticated(e.to_string())
        })?;
        let slot = match auth.host() {
            Some(host) => match self.streams_per_host.open(host) {
                Some(slot) => Some(slot),
                None => {
                    self.metrics.reject("streams_per_host");
                    return Err(Status::resource_exhausted(format!(
                        "host {host} already has {} streams open (server.max_streams_per_host)",
                        self.streams_per_host.max()
                    )));
                }
            },
            None => None,
        };
        let peer = match request.remote_addr() {
            Some(a) => format!("{a} ({})", auth.describe()),
            None => auth.describe(),
        };
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(MAX_PENDING * 2);
        let svc = self.clone();
        tokio::spawn(async move {
            svc.metrics.streams_active.fetch_add(1, Relaxed);
            svc.metrics.streams_total.fetch_add(1, Relaxed);
            tracing::info!(%peer, "sensor stream opened");
            svc.handle(inbound, tx, &peer, &auth).await;
            svc.metrics.streams_active.fetch_sub(1, Relaxed);
            drop(slot);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The status for an error the transport reported on the inbound stream, or `None` when the
/// sensor simply went away.
pub fn inbound_error_status(status: &Status) -> Option<(Status, &'static str)> {
    match status.code() {
        Code::OutOfRange | Code::ResourceExhausted => Some((
            Status::resource_exhausted(format!("rejected message: {}", status.message())),
            // The bounded decoder's counts (see `ingest_svc::scan_status`), or the size.
            if status
                .message()
                .starts_with(crate::ingest_svc::COUNT_REJECTED)
            {
                "too_many_events"
            } else {
                "too_large"
            },
        )),
        Code::Internal => Some((
            Status::invalid_argument(format!("malformed message: {}", status.message())),
            "malformed",
        )),
        // The bounded decoder's own verdict (see `ingest_svc`), already worded.
        Code::InvalidArgument => Some((
            Status::invalid_argument(status.message().to_string()),
            "malformed",
        )),
        _ => None,
    }
}

impl IngestService {
    async fn handle(&self, mut inbound: Streaming<Inbound>, out: Out, peer: &str, auth: &Peer) {
        let welcome = CollectorMessage {
            msg: Some(collector_message::Msg::Welcome(Welcome {
                version: env!("CARGO_PKG_VERSION").into(),
                protocol_version: ProtocolVersion::ProtocolVersion1 as i32,
                max_message_bytes: self.max_message_bytes as u64,
                max_batch_events: self.limits.max_batch_events,
            })),
        };
        if out.send(Ok(welcome)).await.is_err() {
            return;
        }
        let (pend_tx, pend_rx) = mpsc::channel(MAX_PENDING);
        let acker = tokio::spawn(ack_loop(pend_rx, out.clone(), self.metrics.clone()));
        let mut sensor: Option<Sensor> = None;
        let mut shutdown = self.shutdown.clone();
        loop {
            let msg = tokio::select! {
                m = inbound.message() => m,
                _ = stopped(&mut shutdown) => {
                    let _ = pend_tx
                        .send(Pending::Fail(Status::unavailable("collector shutting down")))
                        .await;
                    break;
                }
            };
            // The decoded message, and what it was decoded from (its bytes are stored).
            let (msg, received) = match msg {
                Ok(Some(mut m)) => (Ok(Some(std::mem::take(&mut m.msg))), Some(m)),
                Ok(None) => (Ok(None), None),
                Err(e) => (Err(e), None),
            };
            let fail = match msg {
                Ok(Some(SensorMessage {
                    msg: Some(sensor_message::Msg::Hello(h)),
                })) => match self.hello(h, sensor.as_ref(), peer, auth).await {
                    Ok(s) => {
                        sensor = Some(s);
                        continue;
                    }
                    Err(f) => f,
                },
                Ok(Some(SensorMessage {
                    msg: Some(sensor_message::Msg::Batch(b)),
                })) => {
                    let id = sensor.as_ref().map(|s| s.sensor_id.as_str());
                    // With a certificate, every event must carry its host; the local root
                    // sensor is trusted, and an unauthenticated one is kept apart by its
                    // storage id.
                    let checked = validate_batch(&b, id, self.limits).and_then(|()| {
                        let Some(host) = auth.host() else {
                            return Ok(());
                        };
                        check_event_hosts(&b, host).map_err(|(e, n)| {
                            self.metrics
                                .events_refused_host
                                .fetch_add(n as u64, Relaxed);
                            e
                        })
                    });
                    match checked {
                        Ok(()) => {
                            let mut b = b;
                            let newest_event_ns =
                                b.events.iter().map(|e| e.time_unix_ns).max().unwrap_or(0);
                            let s = sensor.as_ref().expect("checked above");
                            let host = s.host.clone();
                            b.sensor_id = s.storage_id.clone();
                            let (batch_id, sensor_id) = (b.batch_id, b.sensor_id.clone());
                            // Waits (reading nothing more from this stream) while other
                            // batches use up the budget.
                            let Ok(permit) = self
                                .inflight
                                .clone()
                                .acquire_many_owned(b.events.len() as u32)
                                .await
                            else {
                                break;
                            };
                            let bodies = received
                                .map(|m| m.event_bodies(b.events.len()))
                                .unwrap_or_default();
                            let rx = match self.sink.submit(b, bodies, now_ns()).await {
                                Ok(rx) => rx,
                                Err(e) => {
                                    self.metrics.store_errors.fetch_add(1, Relaxed);
                                    tracing::warn!(%sensor_id, batch_id, error = %e,
                                        "batch not stored: not acknowledged; ending the stream so the sensor resends");
                                    let _ = pend_tx
                                        .send(Pending::Fail(Status::unavailable(format!(
                                            "storage failed: {e}"
                                        ))))
                                        .await;
                                    break;
                                }
                            };
                            let p = Pending::Ack {
                                batch_id,
                                sensor_id,
                                host,
                                newest_event_ns,
                                rx,
                                _permit: permit,
                            };
                            if pend_tx.send(p).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        Err(e) => (e.status(), e.reason()),
                    }
                }
                Ok(Some(SensorMessage { msg: None })) => (
                    Status::invalid_argument("malformed message: SensorMessage without content"),
                    "malformed",
                ),
                Ok(None) => break,
                Err(status) => match inbound_error_status(&status) {
                    Some(f) => f,
                    None => {
                        tracing::info!(%peer, code = ?status.code(), error = %status.message(), "sensor stream ended");
                        break;
                    }
                },
            };
            let (status, reason) = fail;
            self.metrics.reject(reason);
            tracing::warn!(%peer, code = ?status.code(), error = %status.message(), "rejected sensor message; ending its stream");
            let _ = pend_tx.send(Pending::Fail(status)).await;
            break;
        }
        drop(pend_tx);
        let _ = acker.await;
        tracing::info!(%peer, "sensor stream closed");
    }

    async fn hello(
        &self,
        mut h: sensor_proto::v1::Hello,
        current: Option<&Sensor>,
        peer: &str,
        auth: &Peer,
    ) -> Result<Sensor, (Status, &'static str)> {
        let bad = |e: BatchError| (e.status(), e.reason());
        check_hello(&h, auth.host()).map_err(bad)?;
        if let Some(s) = current {
            if s.sensor_id != h.sensor_id {
                return Err(bad(BatchError::SensorMismatch {
                    batch: h.sensor_id.clone(),
                    hello: s.sensor_id.clone(),
                }));
            }
        }
        if h.protocol_version > ProtocolVersion::ProtocolVersion1 as i32 {
            return Err((
                Status::failed_precondition(format!(
                    "protocol version {} is newer than this collector's (1)",
                    h.protocol_version
                )),
                "protocol_version",
            ));
        }
        tracing::info!(%peer, sensor_id = %h.sensor_id, host = %h.host, version = %h.version,
            kernel = %h.kernel, mode = %h.mode, "sensor hello");
        let s = Sensor {
            sensor_id: h.sensor_id.clone(),
            storage_id: auth.storage_id(&h.sensor_id),
            host: h.host.clone(),
        };
        // The stored record is the identity's own: another identity's Hello cannot touch it.
        h.sensor_id = s.storage_id.clone();
        self.sink
            .record_hello(h, now_ns())
            .await
            .map_err(|e| (Status::unavailable(e.to_string()), "store"))?;
        Ok(s)
    }
}

async fn ack_loop(mut pending: mpsc::Receiver<Pending>, out: Out, metrics: Arc<Metrics>) {
    while let Some(p) = pending.recv().await {
        match p {
            Pending::Ack {
                batch_id,
                sensor_id,
                host,
                newest_event_ns,
                rx,
                _permit,
            } => match rx.await {
                Ok(o) => {
                    metrics.batch_stored(
                        &sensor_id,
                        &host,
                        o.stored.into(),
                        o.duplicates.into(),
                        newest_event_ns,
                        now_ns(),
                    );
                    let ack = CollectorMessage {
                        msg: Some(collector_message::Msg::Ack(Ack {
                            batch_id,
                            stored: o.stored,
                            duplicates: o.duplicates,
                        })),
                    };
                    if out.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    metrics.store_errors.fetch_add(1, Relaxed);
                    tracing::warn!(%sensor_id, batch_id, error = %e,
                            "batch not stored: not acknowledged; ending the stream so the sensor resends");
                    let _ = out
                        .send(Err(Status::unavailable(format!("storage failed: {e}"))))
                        .await;
                    return;
                }
            },
            Pending::Fail(status) => {
                let _ = out.send(Err(status)).await;
                return;
            }
        }
    }
}

/// Resolves once `rx` is true (never, when its sender is gone while false).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_errors_map_to_clear_codes() {
        let (s, r) = inbound_error_status(&Status::out_of_range("too large: 5 > 4")).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("too large"));
        assert_eq!(r, "too_large");
        let (s, _) = inbound_error_status(&Status::internal("failed to decode")).unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().starts_with("malformed message"));
        let (s, r) =
            inbound_error_status(&Status::invalid_argument("malformed message: x")).unwrap();
        assert_eq!((s.code(), r), (Code::InvalidArgument, "malformed"));
        assert!(inbound_error_status(&Status::cancelled("gone")).is_none());
        assert!(inbound_error_status(&Status::unknown("h2 reset")).is_none());
    }
}
