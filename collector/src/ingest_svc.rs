//! The `sensor.v1.Ingest` gRPC service with a bounded decoder: every inbound message is
//! first scanned on its wire bytes ([`crate::wire_scan`]) and refused by its event and
//! element counts before prost builds anything. (The generated `IngestServer` decodes with
//! the plain prost codec, which would build millions of events before any check.)
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::bytes::Bytes;
use prost::Message as _;
use sensor_proto::v1::{CollectorMessage, SensorMessage};
use tonic::body::Body;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{http, Body as HttpBody, BoxFuture, Service, StdError};
use tonic::Status;

use crate::ingest_stream::IngestService;
use crate::wire_scan::{scan_events, ScanError, ScanLimits};

/// One decoded `SensorMessage` and the bytes it was decoded from.
pub struct Inbound {
    pub msg: SensorMessage,
    /// The whole message as received.
    pub bytes: Bytes,
    /// Where each `Batch.events` element lies in `bytes`, in wire order (see
    /// [`crate::wire_scan::scan_events`]: the decoded events are the last of these).
    pub spans: Vec<std::ops::Range<usize>>,
}

impl Inbound {
    /// The received bytes of each of the `n` decoded events (not copied), or nothing when
    /// the spans cannot account for them.
    pub fn event_bodies(&self, n: usize) -> Vec<Bytes> {
        let Some(tail) = self.spans.len().checked_sub(n) else {
            return Vec::new();
        };
        self.spans[tail..]
            .iter()
            .map(|r| self.bytes.slice(r.clone()))
            .collect()
    }
}

/// Encodes `CollectorMessage`s, decodes `SensorMessage`s after the scan.
#[derive(Debug, Clone, Copy)]
pub struct IngestCodec {
    pub limits: ScanLimits,
}

pub struct MsgEncoder;
pub struct BoundedDecoder(ScanLimits);

impl Codec for IngestCodec {
    type Encode = CollectorMessage;
    type Decode = Inbound;
    type Encoder = MsgEncoder;
    type Decoder = BoundedDecoder;

    fn encoder(&mut self) -> MsgEncoder {
        MsgEncoder
    }

    fn decoder(&mut self) -> BoundedDecoder {
        BoundedDecoder(self.limits)
    }
}

impl Encoder for MsgEncoder {
    type Item = CollectorMessage;
    type Error = Status;

    fn encode(&mut self, item: CollectorMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encode: {e}")))
    }
}

/// How the message of a status for a message refused by its counts starts.
pub const COUNT_REJECTED: &str = "rejected batch: ";

/// The status a refused message ends its stream with.
pub fn scan_status(e: &ScanError) -> Status {
    match e {
        ScanError::Malformed { .. } => Status::invalid_argument(format!("malformed message: {e}")),
        _ => Status::resource_exhausted(format!("{COUNT_REJECTED}{e}")),
    }
}

impl Decoder for BoundedDecoder {
    type Item = Inbound;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Inbound>, Status> {
        use prost::bytes::Buf as _;
        // Taking the buffer's bytes does not copy them (it is one contiguous buffer).
        let bytes = src.copy_to_bytes(src.remaining());
        let mut spans = Vec::new();
        scan_events(&bytes, self.0, &mut spans).map_err(|e| scan_status(&e))?;
        let msg = SensorMessage::decode(bytes.clone())
            .map_err(|e| Status::invalid_argument(format!("malformed message: {e}")))?;
        Ok(Some(Inbound { msg, bytes, spans }))
    }
}

/// The tower service for `/sensor.v1.Ingest/Stream`.
#[derive(Clone)]
pub struct IngestServer {
    inner: Arc<IngestService>,
    codec: IngestCodec,
    max_message_bytes: usize,
}

impl IngestServer {
    pub fn new(inner: IngestService, limits: ScanLimits, max_message_bytes: usize) -> Self {
        Self {
            inner: Arc::new(inner),
            codec: IngestCodec { limits },
            max_message_bytes,
        }
    }
}

struct StreamSvc(Arc<IngestService>);

impl tonic::server::StreamingService<Inbound> for StreamSvc {
    type Response = CollectorMessage;
    type ResponseStream = crate::ingest_stream::OutStream;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Inbound>>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.stream(request).await })
    }
}

impl<B> Service<http::Request<B>> for IngestServer
where
    B: HttpBody + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != "/sensor.v1.Ingest/Stream" {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let inner = self.inner.clone();
        let codec = self.codec;
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.streaming(StreamSvc(inner), req).await)
        })
    }
}

impl tonic::server::NamedService for IngestServer {
    const NAME: &'static str = "sensor.v1.Ingest";
}
