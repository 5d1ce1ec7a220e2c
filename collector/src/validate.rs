//! Checks a batch before it is stored: pure, so every rejection is unit-tested. A rejected
//! batch ends its own stream with a readable gRPC status; nothing of it is stored.
use sensor_proto::v1::{Batch, Kind, Source};

/// Limits a batch is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch_events: u32,
}

const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("first message must be a Hello")]
    NoHello,
    #[error("{field} must be 1..={MAX_ID_LEN} bytes, got {len}")]
    BadId { field: &'static str, len: usize },
    #[error("batch sensor_id {batch:?} differs from the stream's Hello sensor_id {hello:?}")]
    SensorMismatch { batch: String, hello: String },
    #[error("empty batch (batch_id {0})")]
    Empty(u64),
    #[error("batch of {count} events exceeds the limit of {limit}")]
    TooManyEvents { count: usize, limit: u32 },
    #[error("event {index}: seq {seq} is not greater than the previous seq {prev}")]
    SeqOrder { index: usize, seq: u64, prev: u64 },
    #[error("event 0 has seq {seq} but the batch says first_seq {first_seq}")]
    FirstSeq { seq: u64, first_seq: u64 },
    #[error("event {index}: unknown or unspecified kind {kind}")]
    BadKind { index: usize, kind: i32 },
    #[error("event {index}: unknown source {source_id}")]
    BadSource { index: usize, source_id: i32 },
    #[error("event {index}: {kind} event without process")]
    MissingProcess { index: usize, kind: &'static str },
}

impl BatchError {
    /// RESOURCE_EXHAUSTED for size limits, INVALID_ARGUMENT for everything else.
    pub fn status(&self) -> tonic::Status {
        let msg = format!("rejected batch: {self}");
        match self {
            BatchError::TooManyEvents { .. } => tonic::Status::resource_exhausted(msg),
            _ => tonic::Status::invalid_argument(msg),
        }
    }

    /// Label for the `collector_batches_rejected_total{reason}` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            BatchError::NoHello => "no_hello",
            BatchError::BadId { .. } => "bad_id",
            BatchError::SensorMismatch { .. } => "sensor_mismatch",
            BatchError::Empty(_) => "empty",
            BatchError::TooManyEvents { .. } => "too_many_events",
            BatchError::SeqOrder { .. } | BatchError::FirstSeq { .. } => "bad_seq",
            BatchError::BadKind { .. } | BatchError::BadSource { .. } => "bad_enum",
            BatchError::MissingProcess { .. } => "missing_field",
        }
    }
}

pub fn check_id(field: &'static str, id: &str) -> Result<(), BatchError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(BatchError::BadId {
            field,
            len: id.len(),
        });
    }
    Ok(())
}

/// Validates `batch` for a stream whose Hello named `hello_sensor_id`.
pub fn validate_batch(
    batch: &Batch,
    hello_sensor_id: Option<&str>,
    limits: Limits,
) -> Result<(), BatchError> {
    let hello = hello_sensor_id.ok_or(BatchError::NoHello)?;
    check_id("sensor_id", &batch.sensor_id)?;
    check_id("boot_id", &batch.boot_id)?;
    if batch.sensor_id != hello {
        return Err(BatchError::SensorMismatch {
            batch: batch.sensor_id.clone(),
            hello: hello.to_string(),
        });
    }
    if batch.events.is_empty() {
        return Err(BatchError::Empty(batch.batch_id));
    }
    if batch.events.len() > limits.max_batch_events as usize {
        return Err(BatchError::TooManyEvents {
            count: batch.events.len(),
            limit: limits.max_batch_events,
        });
    }
    if batch.events[0].seq != batch.first_seq {
        return Err(BatchError::FirstSeq {
            seq: batch.events[0].seq,
            first_seq: batch.first_seq,
        });
    }
    let mut prev = 0u64;
    for (index, ev) in batch.events.iter().enumerate() {
        if ev.seq <= prev {
            return Err(BatchError::SeqOrder {
                index,
                seq: ev.seq,
                prev,
            });
        }
        prev = ev.seq;
        let kind = match Kind::try_from(ev.kind) {
            Ok(Kind::Unspecified) | Err(_) => {
                return Err(BatchError::BadKind {
                    index,
                    kind: ev.kind,
                })
            }
            Ok(k) => k,
        };
        if Source::try_from(ev.source).is_err() {
            return Err(BatchError::BadSource {
                index,
                source_id: ev.source,
            });
        }
        if matches!(kind, Kind::ProcessExec | Kind::ProcessExit) && ev.process.is_none() {
            return Err(BatchError::MissingProcess {
                index,
                kind: sensor_proto::names::kind_name(kind),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::v1::{Event, Process};

    const L: Limits = Limits {
        max_batch_events: 3,
    };

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            kind: Kind::ProcessExec as i32,
            source: Source::Ebpf as i32,
            process: Some(Process::default()),
            ..Default::default()
        }
    }

    fn batch(seqs: &[u64]) -> Batch {
        Batch {
            sensor_id: "s".into(),
            boot_id: "b".into(),
            first_seq: seqs.first().copied().unwrap_or(0),
            events: seqs.iter().map(|&s| ev(s)).collect(),
            batch_id: 9,
            sent_unix_ns: 0,
        }
    }

    #[test]
    fn accepts_a_good_batch() {
        validate_batch(&batch(&[1, 2, 4]), Some("s"), L).unwrap();
    }

    #[test]
    fn rejections_and_codes() {
        let e = validate_batch(&batch(&[1]), None, L).unwrap_err();
        assert_eq!(e, BatchError::NoHello);
        let e = validate_batch(&batch(&[1]), Some("other"), L).unwrap_err();
        assert!(matches!(e, BatchError::SensorMismatch { .. }));
        let e = validate_batch(&batch(&[1, 2, 3, 4]), Some("s"), L).unwrap_err();
        assert_eq!(e.status().code(), tonic::Code::ResourceExhausted);
        let e = validate_batch(&batch(&[2, 2]), Some("s"), L).unwrap_err();
        assert!(matches!(e, BatchError::SeqOrder { index: 1, .. }));
        assert_eq!(e.status().code(), tonic::Code::InvalidArgument);
        assert!(e.status().message().contains("seq 2"), "{}", e.status());
        let e = validate_batch(&batch(&[]), Some("s"), L).unwrap_err();
        assert_eq!(e, BatchError::Empty(9));
        let mut b = batch(&[1, 2]);
        b.first_seq = 5;
        assert!(matches!(
            validate_batch(&b, Some("s"), L),
            Err(BatchError::FirstSeq { .. })
        ));
        let mut b = batch(&[1]);
        b.events[0].kind = 99;
        assert!(matches!(
            validate_batch(&b, Some("s"), L),
            Err(BatchError::BadKind { .. })
        ));
        let mut b = batch(&[1]);
        b.events[0].source = -1;
        assert!(matches!(
            validate_batch(&b, Some("s"), L),
            Err(BatchError::BadSource { .. })
        ));
        let mut b = batch(&[1]);
        b.events[0].process = None;
        assert!(matches!(
            validate_batch(&b, Some("s"), L),
            Err(BatchError::MissingProcess { .. })
        ));
        let mut b = batch(&[1]);
        b.boot_id = String::new();
        assert!(matches!(
            validate_batch(&b, Some("s"), L),
            Err(BatchError::BadId { .. })
        ));
        let mut b = batch(&[1]);
        b.sensor_id = "x".repeat(200);
        assert!(validate_batch(&b, Some(&"x".repeat(200)), L).is_err());
    }
}
