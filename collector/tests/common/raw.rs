//! gRPC clients for tests: a typed one over `sensor_proto`, and a raw one that sends
//! arbitrary bytes as the message (malformed input).
use prost::bytes::BufMut as _;
use prost::Message as _;
use sensor_proto::v1::{self as pb, ingest_client::IngestClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Status;

pub async fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub async fn tls_channel(
    addr: &str,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(c).unwrap(),
            std::fs::read(k).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// A typed stream: push messages, read replies.
pub struct Stream {
    pub tx: mpsc::Sender<pb::SensorMessage>,
    pub rx: tonic::Streaming<pb::CollectorMessage>,
}

pub async fn open(ch: Channel) -> Result<Stream, Status> {
    let (tx, rx) = mpsc::channel(64);
    let resp = IngestClient::new(ch)
        .stream(ReceiverStream::new(rx))
        .await?;
    Ok(Stream {
        tx,
        rx: resp.into_inner(),
    })
}

impl Stream {
    pub async fn send_hello(&self, h: pb::Hello) {
        self.tx
            .send(pb::SensorMessage {
                msg: Some(pb::sensor_message::Msg::Hello(h)),
            })
            .await
            .unwrap();
    }

    pub async fn send_batch(&self, b: pb::Batch) {
        self.tx
            .send(pb::SensorMessage {
                msg: Some(pb::sensor_message::Msg::Batch(b)),
            })
            .await
            .unwrap();
    }

    /// The next Ack (skipping the Welcome), or the stream's error status.
    pub async fn next_ack(&mut self) -> Result<pb::Ack, Status> {
        loop {
            match self.rx.message().await? {
                Some(pb::CollectorMessage {
                    msg: Some(pb::collector_message::Msg::Ack(a)),
                }) => return Ok(a),
                Some(_) => continue,
                None => return Err(Status::unknown("stream ended without an ack")),
            }
        }
    }
}

/// Sends `bytes` verbatim as the gRPC message payload.
#[derive(Default, Clone)]
pub struct RawCodec;
pub struct RawEncoder;
pub struct ReplyDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::CollectorMessage;
    type Encoder = RawEncoder;
    type Decoder = ReplyDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ReplyDecoder {
        ReplyDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ReplyDecoder {
    type Item = pb::CollectorMessage;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        pb::CollectorMessage::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// Opens a stream that sends each item of `msgs` as raw bytes; returns the final status
/// (or Ok with the number of acks when the server ended the stream cleanly).
pub async fn send_raw(ch: Channel, msgs: Vec<Vec<u8>>) -> Result<usize, Status> {
    let mut grpc = tonic::client::Grpc::new(ch).max_encoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/sensor.v1.Ingest/Stream");
    let resp = grpc
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, RawCodec)
        .await?;
    let mut inbound = resp.into_inner();
    for m in msgs {
        if tx.send(m).await.is_err() {
            break;
        }
    }
    // Half-close: a server that accepted everything then ends the stream cleanly.
    drop(tx);
    let mut acks = 0;
    loop {
        match inbound.message().await? {
            Some(pb::CollectorMessage {
                msg: Some(pb::collector_message::Msg::Ack(_)),
            }) => acks += 1,
            Some(_) => {}
            None => return Ok(acks),
        }
    }
}

/// A SensorMessage as bytes.
pub fn encode(m: &pb::SensorMessage) -> Vec<u8> {
    m.encode_to_vec()
}
