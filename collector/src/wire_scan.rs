//! Counts what a `SensorMessage` would decode to, on its wire bytes, before anything is
//! built. Protobuf lets a tiny encoding stand for a large decoded value: `22 00` (two bytes)
//! is one default `Event` of several hundred bytes, so a 16 MiB message of those decodes to
//! gigabytes. The scan walks the message tree along the fields that repeat (events, and the
//! repeated fields inside an event) and refuses the message when a count is over its limit,
//! so the decoder only ever builds a bounded value. Pure and linear in the message size.

/// Limits the scan enforces on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Events in one batch.
    pub max_events: usize,
    /// Elements of every repeated field below the batch (argv strings, ancestors, file ops,
    /// health map entries, incomplete-field names, Hello capabilities), summed.
    pub max_elements: usize,
}

/// What the scan counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: usize,
    pub elements: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("batch of more than {limit} events")]
    TooManyEvents { limit: usize },
    #[error("more than {limit} repeated-field elements in one message")]
    TooManyElements { limit: usize },
    #[error("malformed protobuf at byte {at}: {what}")]
    Malformed { at: usize, what: &'static str },
}

/// The messages whose repeated fields the scan follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    SensorMessage,
    Hello,
    Batch,
    Event,
    Process,
    Argv,
    File,
    Health,
}

/// What a length-delimited field of `msg` is: an event, another repeated element, and/or a
/// message to look into. Other fields (strings, unknown fields) cost no more than their bytes.
fn field(msg: Msg, number: u64) -> (bool, bool, Option<Msg>) {
    // (is an event, is a repeated element, look into)
    match (msg, number) {
        (Msg::SensorMessage, 1) => (false, false, Some(Msg::Hello)),
        (Msg::SensorMessage, 2) => (false, false, Some(Msg::Batch)),
        (Msg::Hello, 7) => (false, true, None),
        (Msg::Batch, 4) => (true, false, Some(Msg::Event)),
        (Msg::Event, 6) => (false, false, Some(Msg::Process)),
        (Msg::Event, 9) => (false, false, Some(Msg::Health)),
        (Msg::Event, 10) => (false, false, Some(Msg::File)),
        (Msg::Process, 16) => (false, false, Some(Msg::Argv)),
        (Msg::Process, 19 | 20) => (false, true, None),
        (Msg::Argv, 1) => (false, true, None),
        (Msg::File, 2) => (false, true, None),
        (Msg::Health, 4 | 5) => (false, true, None),
        _ => (false, false, None),
    }
}

/// Scans an encoded `SensorMessage`.
pub fn scan(buf: &[u8], limits: ScanLimits) -> Result<Counts, ScanError> {
    scan_events(buf, limits, &mut Vec::new())
}

/// [`scan`], and the byte range of every `Batch.events` element in `buf`, in wire order, in
/// `spans` (cleared first). prost appends each such element as one new `Event` decoded from
/// exactly those bytes, and a later `batch` field after another oneof member only drops
/// the events before it, so the decoded batch's `n` events are the last `n` spans (see
/// `docs/ARCHITECTURE.md#collector`).
pub fn scan_events(
    buf: &[u8],
    limits: ScanLimits,
    spans: &mut Vec<std::ops::Range<usize>>,
) -> Result<Counts, ScanError> {
    spans.clear();
    let mut counts = Counts::default();
    walk(buf, 0, Msg::SensorMessage, limits, &mut counts, spans)?;
    Ok(counts)
}

fn varint(buf: &[u8], pos: &mut usize, base: usize) -> Result<u64, ScanError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err(ScanError::Malformed {
                at: base + *pos,
                what: "truncated varint",
            });
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ScanError::Malformed {
        at: base + *pos,
        what: "varint longer than 10 bytes",
    })
}

fn walk(
    buf: &[u8],
    base: usize,
    msg: Msg,
    limits: ScanLimits,
    counts: &mut Counts,
    spans: &mut Vec<std::ops::Range<usize>>,
) -> Result<(), ScanError> {
    let mut pos = 0usize;
    while pos < buf.len() {
        let at = base + pos;
        let key = varint(buf, &mut pos, base)?;
        let number = key >> 3;
        if number == 0 {
            return Err(ScanError::Malformed {
                at,
                what: "field number 0",
            });
        }
        let skip = match key & 7 {
            0 => {
                varint(buf, &mut pos, base)?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len = varint(buf, &mut pos, base)?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > buf.len() - pos {
                    return Err(ScanError::Malformed {
                        at,
                        what: "length past the end",
                    });
                }
                let (event, element, inner) = field(msg, number);
                if event {
                    counts.events += 1;
                    if counts.events > limits.max_events {
                        return Err(ScanError::TooManyEvents {
                            limit: limits.max_events,
                        });
                    }
                    spans.push(base + pos..base + pos + len);
                }
                if element {
                    counts.elements += 1;
                    if counts.elements > limits.max_elements {
                        return Err(ScanError::TooManyElements {
                            limit: limits.max_elements,
                        });
                    }
                }
                if let Some(inner) = inner {
                    walk(
                        &buf[pos..pos + len],
                        base + pos,
                        inner,
                        limits,
                        counts,
                        spans,
                    )?;
                }
                len
            }
            _ => {
                return Err(ScanError::Malformed {
                    at,
                    what: "unsupported wire type",
                })
            }
        };
        if skip > buf.len() - pos {
            return Err(ScanError::Malformed {
                at,
                what: "fixed-width value past the end",
            });
        }
        pos += skip;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use sensor_proto::v1::{
        sensor_message, Ancestor, Argv, Batch, Event, File, Health, Hello, Process, SensorMessage,
    };

    const L: ScanLimits = ScanLimits {
        max_events: 3,
        max_elements: 10,
    };

    fn batch_msg(events: Vec<Event>) -> Vec<u8> {
        SensorMessage {
            msg: Some(sensor_message::Msg::Batch(Batch {
                sensor_id: "s".into(),
                events,
                ..Default::default()
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn counts_events_and_nested_elements_of_a_real_encoding() {
        let ev = Event {
            seq: 1,
            process: Some(Process {
                argv: Some(Argv {
                    args: vec!["a".into(), "b".into()],
                    truncated: false,
                    omitted_bytes: 0,
                }),
                ancestors: vec![Ancestor::default()],
                incomplete: vec!["cwd".into()],
                ..Default::default()
            }),
            file: Some(File {
                ops: vec!["create".into()],
                ..Default::default()
            }),
            health: Some(Health {
                drops: [("x".to_string(), 1u64)].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let wide = ScanLimits {
            max_events: 3,
            max_elements: 12,
        };
        let c = scan(&batch_msg(vec![ev.clone(), ev.clone()]), wide).unwrap();
        assert_eq!(
            c,
            Counts {
                events: 2,
                elements: 12
            }
        );
        // One element more than allowed: refused.
        assert_eq!(
            scan(&batch_msg(vec![ev.clone(), ev.clone(), ev]), wide),
            Err(ScanError::TooManyElements { limit: 12 })
        );
    }

    #[test]
    fn the_amplification_message_is_refused_before_decoding() {
        // SensorMessage.batch = Batch { events: [default; n] } as `22 00` pairs.
        let n = 1000usize;
        let inner: Vec<u8> = std::iter::repeat_n([0x22u8, 0x00], n).flatten().collect();
        let mut msg = vec![0x12];
        let mut len = inner.len();
        while len >= 0x80 {
            msg.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        msg.push(len as u8);
        msg.extend_from_slice(&inner);
        assert_eq!(scan(&msg, L), Err(ScanError::TooManyEvents { limit: 3 }));
        // Within the limit it decodes to exactly what was counted.
        let ok = scan(
            &msg,
            ScanLimits {
                max_events: n,
                max_elements: 0,
            },
        )
        .unwrap();
        assert_eq!(ok.events, n);
        let decoded = SensorMessage::decode(msg.as_slice()).unwrap();
        match decoded.msg {
            Some(sensor_message::Msg::Batch(b)) => assert_eq!(b.events.len(), n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nested_repeats_are_bounded_too() {
        let ev = Event {
            process: Some(Process {
                ancestors: vec![Ancestor::default(); 11],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            scan(&batch_msg(vec![ev]), L),
            Err(ScanError::TooManyElements { limit: 10 })
        );
        let hello = SensorMessage {
            msg: Some(sensor_message::Msg::Hello(Hello {
                capabilities: vec![String::new(); 11],
                ..Default::default()
            })),
        };
        assert!(matches!(
            scan(&hello.encode_to_vec(), L),
            Err(ScanError::TooManyElements { .. })
        ));
    }

    #[test]
    fn event_spans_are_the_bytes_prost_decodes_each_event_from() {
        let ev = |seq: u64| Event {
            seq,
            host: format!("h{seq}"),
            ..Default::default()
        };
        let wide = ScanLimits {
            max_events: 10,
            max_elements: 10,
        };
        let check = |msg: &[u8], want: usize| {
            let mut spans = Vec::new();
            scan_events(msg, wide, &mut spans).unwrap();
            let Some(sensor_message::Msg::Batch(b)) = SensorMessage::decode(msg).unwrap().msg
            else {
                panic!("not a batch");
            };
            assert_eq!(b.events.len(), want);
            let tail = &spans[spans.len() - b.events.len()..];
            for (e, r) in b.events.iter().zip(tail) {
                assert_eq!(&Event::decode(&msg[r.clone()]).unwrap(), e);
            }
        };
        let one = batch_msg(vec![ev(1), ev(2)]);
        check(&one, 2);
        // A batch repeated: prost merges, both sets of events count.
        let two = [batch_msg(vec![ev(3)]), batch_msg(vec![ev(4)])].concat();
        check(&two, 2);
        // A Hello in between resets the oneof: only the events after it survive.
        let hello = SensorMessage {
            msg: Some(sensor_message::Msg::Hello(Hello::default())),
        }
        .encode_to_vec();
        let reset = [batch_msg(vec![ev(5), ev(6)]), hello, batch_msg(vec![ev(7)])].concat();
        check(&reset, 1);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &[0x12u8, 0x05, 0x22][..],
            &[0x12, 0x80],
            &[0x0b],
            &[0x00, 0x00],
            &[0x09, 1, 2],
            &[
                0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ] {
            assert!(
                matches!(scan(bad, L), Err(ScanError::Malformed { .. })),
                "{bad:02x?}"
            );
        }
        assert_eq!(scan(&[], L).unwrap(), Counts::default());
    }
}
