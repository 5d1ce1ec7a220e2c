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
    #[error(
        "{field} must be 1..={MAX_ID_LEN} bytes (stored ids 1..={MAX_STORAGE_ID_LEN}), got {len}"
    )]
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
    #[error("sensor_id must not contain '@' or control characters")]
    BadIdChars,
    #[error("Hello {field} is {len} bytes, more than {limit}")]
    HelloField {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("host {claimed:?} differs from the authenticated host {authenticated:?}")]
    HostMismatch {
        claimed: String,
        authenticated: String,
    },
    #[error("event {index}: host {host:?} differs from the stream's host {expected:?}")]
    EventHost {
        index: usize,
        host: String,
        expected: String,
    },
}

impl BatchError {
    /// RESOURCE_EXHAUSTED for size limits, INVALID_ARGUMENT for everything else.
    pub fn status(&self) -> tonic::Status {
        let msg = format!("rejected batch: {self}");
        match self {
            BatchError::TooManyEvents { .. } => tonic::Status::resource_exhausted(msg),
            BatchError::HostMismatch { .. } | BatchError::EventHost { .. } => {
                tonic::Status::permission_denied(msg)
            }
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
            BatchError::BadIdChars => "bad_id",
            BatchError::HelloField { .. } => "hello_field",
            BatchError::HostMismatch { .. } | BatchError::EventHost { .. } => "host_mismatch",
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

/// Longest storage id (`<sensor id>@<identity>`, see `peer::Peer::storage_id`).
pub const MAX_STORAGE_ID_LEN: usize = 512;

/// A sensor id as stored (and as found in the JetStream stream): 1..=512 bytes.
pub fn check_storage_id(id: &str) -> Result<(), BatchError> {
    if id.is_empty() || id.len() > MAX_STORAGE_ID_LEN {
        return Err(BatchError::BadId {
            field: "sensor_id",
            len: id.len(),
        });
    }
    Ok(())
}

/// Longest Hello text field (host, version, kernel, mode, each capability), in bytes.
pub const MAX_HELLO_FIELD: usize = 255;
/// Most capabilities a Hello may list.
pub const MAX_CAPABILITIES: usize = 64;

/// A sensor id: [`check_id`], and no `@` (it separates the authenticated identity in the
/// storage id) or control characters.
pub fn check_sensor_id(id: &str) -> Result<(), BatchError> {
    check_id("sensor_id", id)?;
    if id.chars().any(|c| c == '@' || c.is_control()) {
        return Err(BatchError::BadIdChars);
    }
    Ok(())
}

/// Checks every field of a Hello for its length, and its host against the authenticated
/// one (when the transport proved one).
pub fn check_hello(
    h: &sensor_proto::v1::Hello,
    authenticated_host: Option<&str>,
) -> Result<(), BatchError> {
    check_sensor_id(&h.sensor_id)?;
    check_id("boot_id", &h.boot_id)?;
    let long = |field: &'static str, v: &str| {
        if v.len() > MAX_HELLO_FIELD {
            Err(BatchError::HelloField {
                field,
                len: v.len(),
                limit: MAX_HELLO_FIELD,
            })
        } else {
            Ok(())
        }
    };
    long("host", &h.host)?;
    long("version", &h.version)?;
    long("kernel", &h.kernel)?;
    long("mode", &h.mode)?;
    if h.capabilities.len() > MAX_CAPABILITIES {
        return Err(BatchError::HelloField {
            field: "capabilities",
            len: h.capabilities.len(),
            limit: MAX_CAPABILITIES,
        });
    }
    for c in &h.capabilities {
        long("capability", c)?;
    }
    if let Some(a) = authenticated_host {
        if !h.host.eq_ignore_ascii_case(a) {
            return Err(BatchError::HostMismatch {
                claimed: h.host.clone(),
                authenticated: a.to_string(),
            });
        }
    }
    Ok(())
}

/// Every event of a batch must carry the stream's host; returns the first that does not,
/// and how many do not.
pub fn check_event_hosts(batch: &Batch, host: &str) -> Result<(), (BatchError, usize)> {
    let mut bad = batch
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.host.eq_ignore_ascii_case(host));
    if let Some((index, e)) = bad.next() {
        let n = 1 + bad.count();
        return Err((
            BatchError::EventHost {
                index,
                host: e.host.clone(),
                expected: host.to_string(),
            },
            n,
        ));
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
    check_storage_id(&batch.sensor_id)?;
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
                kind: kind.as_str(),
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
        b.sensor_id = "x".repeat(600);
        assert!(validate_batch(&b, Some(&"x".repeat(600)), L).is_err());
    }

    #[test]
    fn hello_fields_and_hosts() {
        use sensor_proto::v1::Hello;
        let ok = Hello {
            sensor_id: "s".into(),
            boot_id: "b".into(),
            host: "Web1".into(),
            ..Default::default()
        };
        check_hello(&ok, None).unwrap();
        check_hello(&ok, Some("web1")).unwrap();
        let e = check_hello(&ok, Some("web2")).unwrap_err();
        assert_eq!(e.reason(), "host_mismatch");
        assert_eq!(e.status().code(), tonic::Code::PermissionDenied);
        for f in [
            |h: &mut Hello| h.host = "h".repeat(256),
            |h: &mut Hello| h.version = "v".repeat(256),
            |h: &mut Hello| h.kernel = "k".repeat(256),
            |h: &mut Hello| h.mode = "m".repeat(256),
            |h: &mut Hello| h.capabilities = vec!["c".into(); 65],
            |h: &mut Hello| h.capabilities = vec!["c".repeat(256)],
            |h: &mut Hello| h.sensor_id = "a@b".into(),
            |h: &mut Hello| h.boot_id = String::new(),
        ] {
            let mut h = ok.clone();
            f(&mut h);
            assert!(check_hello(&h, None).is_err(), "{h:?}");
        }
        let mut b = batch(&[1, 2, 3]);
        for e in &mut b.events {
            e.host = "h".into();
        }
        check_event_hosts(&b, "h").unwrap();
        b.events[1].host = "victim".into();
        b.events[2].host = "victim".into();
        let (e, n) = check_event_hosts(&b, "h").unwrap_err();
        assert!(matches!(e, BatchError::EventHost { index: 1, .. }));
        assert_eq!(n, 2);
    }
}
