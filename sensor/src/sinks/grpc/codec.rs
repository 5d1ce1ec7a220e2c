//! The stream's wire codec: [`Outbound`] messages up (a spooled batch goes out as its stored
//! bytes, not encoded again), `sensor.v1.CollectorMessage` down.
use prost::Message as _;
use sensor_proto::v1::{self as pb};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// A message for the collector. Batches go as the spool holds them (an encoded
/// `sensor.v1.Batch`), so a batch is encoded once, not again for the wire or after a
/// reconnect.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Hello(pb::Hello),
    Batch(Vec<u8>),
}

/// `SensorMessage.batch` is field 2, length-delimited.
const BATCH_KEY: u8 = (2 << 3) | 2;

fn put_varint(mut v: u64, dst: &mut impl prost::bytes::BufMut) {
    while v >= 0x80 {
        dst.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    dst.put_u8(v as u8);
}

/// Writes `item` as the bytes of a `sensor.v1.SensorMessage`.
pub fn encode_outbound(item: &Outbound, dst: &mut impl prost::bytes::BufMut) {
    match item {
        Outbound::Hello(h) => {
            let m = pb::SensorMessage {
                msg: Some(pb::sensor_message::Msg::Hello(h.clone())),
            };
            // Into a growable buffer: cannot run out of space.
            let _ = m.encode(dst);
        }
        Outbound::Batch(b) => {
            dst.put_u8(BATCH_KEY);
            put_varint(b.len() as u64, dst);
            dst.put_slice(b);
        }
    }
}

/// The stream's codec: [`Outbound`] up, `CollectorMessage` down.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamCodec;
#[derive(Debug)]
pub struct OutEncoder;
#[derive(Debug)]
pub struct InDecoder;

impl Codec for StreamCodec {
    type Encode = Outbound;
    type Decode = pb::CollectorMessage;
    type Encoder = OutEncoder;
    type Decoder = InDecoder;
    fn encoder(&mut self) -> OutEncoder {
        OutEncoder
    }
    fn decoder(&mut self) -> InDecoder {
        InDecoder
    }
}

impl Encoder for OutEncoder {
    type Item = Outbound;
    type Error = Status;
    fn encode(&mut self, item: Outbound, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        encode_outbound(&item, dst);
        Ok(())
    }
}

impl Decoder for InDecoder {
    type Item = pb::CollectorMessage;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        pb::CollectorMessage::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("bad message from the collector: {e}")))
    }
}
