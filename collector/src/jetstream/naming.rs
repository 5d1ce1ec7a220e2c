//! How a sensor batch becomes JetStream messages: subjects, message ids and the split into
//! messages. Pure functions, unit-tested.
//!
//! - Subject: `<prefix>.<host>.<kind>`, each token sanitised (no `.`, spaces, `*`, `>` or
//!   control characters), so consumers can filter by host or kind with NATS wildcards.
//! - Message id (`Nats-Msg-Id`, JetStream's de-duplication key), derived from
//!   (sensor id, boot id, seq), where the sensor id is the storage id the collector gave the
//!   batch (qualified by the stream's authenticated identity, see `peer::Peer::storage_id`),
//!   so one identity's messages never share an id with another's:
//!   - per event: `<sensor>:<boot>:<seq>`;
//!   - per group: `<sensor>:<boot>:<first>-<last>:<count>:<digest>`, where the group is a
//!     set of events of one (host, kind) from one batch and `digest` is FNV-1a over their
//!     seqs. Two messages share an id only when they hold the same (sensor, boot, seq)
//!     set, i.e. the same events; so a replayed message is dropped by JetStream and a
//!     different grouping of the same events is stored again (a duplicate the consumer
//!     removes by (sensor, boot, seq)), never lost.
//!
//! Ids escape every byte outside `[A-Za-z0-9._-]` as `%XX`, so any sensor or boot id is a
//! safe header value and the mapping stays one to one.
use prost::Message as _;
use sensor_proto::v1::{Batch, Event, Kind};

/// One JetStream message of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub subject: String,
    pub msg_id: String,
    /// Events in it.
    pub events: u32,
    /// An encoded `sensor.v1.Batch` holding those events (batch_id 0).
    pub payload: Vec<u8>,
}

/// How events are grouped into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One message per event: exact per-event de-duplication, one publish per event.
    Event,
    /// One message per (host, kind) of a batch, split to fit `max_payload`.
    Batch,
}

impl Granularity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "event" => Some(Self::Event),
            "batch" => Some(Self::Batch),
            _ => None,
        }
    }
}

/// A subject token: `.`, whitespace, `*`, `>` and control characters become `_`; an empty
/// token becomes `_`.
pub fn subject_token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

pub fn subject(prefix: &str, host: &str, kind: &str) -> String {
    format!("{prefix}.{}.{}", subject_token(host), subject_token(kind))
}

/// Subject of a sensor's Hello (its version, kernel and mode for the `sensors` table).
pub fn hello_subject(prefix: &str, host: &str) -> String {
    subject(prefix, host, "sensor_hello")
}

/// Percent-escapes every byte outside `[A-Za-z0-9._-]`.
pub fn id_token(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub fn event_msg_id(sensor: &str, boot: &str, seq: u64) -> String {
    format!("{}:{}:{seq}", id_token(sensor), id_token(boot))
}

/// FNV-1a 64 over the seqs (little endian).
pub fn seq_digest(seqs: impl Iterator<Item = u64>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in seqs {
        for b in s.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

pub fn group_msg_id(sensor: &str, boot: &str, events: &[Event]) -> String {
    let first = events.first().map_or(0, |e| e.seq);
    let last = events.last().map_or(0, |e| e.seq);
    format!(
        "{}:{}:{first}-{last}:{}:{:016x}",
        id_token(sensor),
        id_token(boot),
        events.len(),
        seq_digest(events.iter().map(|e| e.seq))
    )
}

fn kind_of(e: &Event) -> &'static str {
    Kind::try_from(e.kind).unwrap_or(Kind::Unspecified).as_str()
}

/// Room kept in `max_payload` for the headers and the Batch envelope.
const HEADROOM: usize = 1024;

/// Splits a validated batch into messages. `max_payload` is the server's limit (payload and
/// headers); a group is cut into chunks whose payload stays under it (deterministically:
/// the same events and limit give the same chunks, hence the same ids).
pub fn plan(
    mut batch: Batch,
    prefix: &str,
    granularity: Granularity,
    max_payload: usize,
) -> Vec<Planned> {
    let all = std::mem::take(&mut batch.events);
    let batch = &batch;
    let envelope = |events: Vec<Event>| Batch {
        sensor_id: batch.sensor_id.clone(),
        boot_id: batch.boot_id.clone(),
        first_seq: events.first().map_or(0, |e| e.seq),
        events,
        batch_id: 0,
        sent_unix_ns: batch.sent_unix_ns,
    };
    let mut out = Vec::new();
    match granularity {
        Granularity::Event => {
            for e in all {
                let subject = subject(prefix, &e.host, kind_of(&e));
                let msg_id = event_msg_id(&batch.sensor_id, &batch.boot_id, e.seq);
                out.push(Planned {
                    subject,
                    msg_id,
                    events: 1,
                    payload: envelope(vec![e]).encode_to_vec(),
                });
            }
        }
        Granularity::Batch => {
            // Groups in order of first appearance; each keeps its events' seq order.
            let mut groups: Vec<((String, &'static str), Vec<Event>)> = Vec::new();
            for e in all {
                let kind = kind_of(&e);
                match groups
                    .iter_mut()
                    .find(|((h, k), _)| *k == kind && *h == e.host)
                {
                    Some((_, v)) => v.push(e),
                    None => groups.push(((e.host.clone(), kind), vec![e])),
                }
            }
            let limit = max_payload.saturating_sub(HEADROOM).max(1);
            for ((host, kind), events) in groups {
                let subject = subject(prefix, &host, kind);
                let mut chunk: Vec<Event> = Vec::new();
                let mut bytes = 0usize;
                for e in events {
                    let n = e.encoded_len() + 8;
                    if !chunk.is_empty() && bytes + n > limit {
                        out.push(finish(
                            &subject,
                            batch,
                            envelope(std::mem::take(&mut chunk)),
                        ));
                        bytes = 0;
                    }
                    bytes += n;
                    chunk.push(e);
                }
                if !chunk.is_empty() {
                    out.push(finish(&subject, batch, envelope(chunk)));
                }
            }
        }
    }
    out
}

fn finish(subject: &str, batch: &Batch, b: Batch) -> Planned {
    Planned {
        subject: subject.to_string(),
        msg_id: group_msg_id(&batch.sensor_id, &batch.boot_id, &b.events),
        events: b.events.len() as u32,
        payload: b.encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::v1::{Process, Source};

    fn ev(seq: u64, host: &str, kind: Kind) -> Event {
        Event {
            seq,
            host: host.into(),
            kind: kind as i32,
            source: Source::Ebpf as i32,
            process: Some(Process {
                comm: "x".repeat(100),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn batch(events: Vec<Event>) -> Batch {
        Batch {
            sensor_id: "sensor 1".into(),
            boot_id: "b-1".into(),
            first_seq: events[0].seq,
            events,
            batch_id: 77,
            sent_unix_ns: 5,
        }
    }

    #[test]
    fn tokens_are_safe() {
        assert_eq!(subject_token("web1.example.com"), "web1_example_com");
        assert_eq!(subject_token("a b*c>d\n"), "a_b_c_d_");
        assert_eq!(subject_token(""), "_");
        assert_eq!(
            subject("sensor", "h.x", "process_exec"),
            "sensor.h_x.process_exec"
        );
        assert_eq!(id_token("a:b/c\r\n"), "a%3Ab%2Fc%0D%0A");
        assert_eq!(event_msg_id("s 1", "b", 9), "s%201:b:9");
    }

    #[test]
    fn batch_granularity_groups_by_host_and_kind() {
        let b = batch(vec![
            ev(10, "h", Kind::ProcessExec),
            ev(11, "h", Kind::ProcessExit),
            ev(12, "h", Kind::ProcessExec),
            ev(13, "g", Kind::ProcessExec),
        ]);
        let p = plan(b.clone(), "sensor", Granularity::Batch, 1 << 20);
        let got: Vec<(&str, u32)> = p.iter().map(|m| (m.subject.as_str(), m.events)).collect();
        assert_eq!(
            got,
            [
                ("sensor.h.process_exec", 2),
                ("sensor.h.process_exit", 1),
                ("sensor.g.process_exec", 1)
            ]
        );
        let first = Batch::decode(p[0].payload.as_slice()).unwrap();
        assert_eq!(
            first.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [10, 12]
        );
        assert_eq!(first.first_seq, 10);
        assert_eq!(first.sensor_id, "sensor 1");
        assert_eq!(first.batch_id, 0);
        assert!(
            p[0].msg_id.starts_with("sensor%201:b-1:10-12:2:"),
            "{}",
            p[0].msg_id
        );
        // Every event is in exactly one message.
        let total: u32 = p.iter().map(|m| m.events).sum();
        assert_eq!(total, 4);
    }

    #[test]
    fn ids_are_stable_for_a_replay_and_differ_for_other_events() {
        let b = batch(vec![
            ev(1, "h", Kind::ProcessExec),
            ev(3, "h", Kind::ProcessExec),
        ]);
        let mut replay = b.clone();
        replay.batch_id = 999; // a resend gets another spool id; the events are the same
        let ids = |b: &Batch| -> Vec<String> {
            plan(b.clone(), "p", Granularity::Batch, 1 << 20)
                .into_iter()
                .map(|m| m.msg_id)
                .collect()
        };
        assert_eq!(ids(&b), ids(&replay));
        let other = batch(vec![
            ev(1, "h", Kind::ProcessExec),
            ev(2, "h", Kind::ProcessExec),
            ev(3, "h", Kind::ProcessExec),
        ]);
        assert_ne!(ids(&b), ids(&other));
        // Same first, last and count, different seqs: the digest tells them apart.
        let a = batch(vec![
            ev(1, "h", Kind::File),
            ev(2, "h", Kind::File),
            ev(4, "h", Kind::File),
        ]);
        let c = batch(vec![
            ev(1, "h", Kind::File),
            ev(3, "h", Kind::File),
            ev(4, "h", Kind::File),
        ]);
        assert_ne!(ids(&a), ids(&c));
    }

    #[test]
    fn large_groups_are_split_under_max_payload() {
        let events: Vec<Event> = (1..=200).map(|s| ev(s, "h", Kind::ProcessExec)).collect();
        let b = batch(events);
        let limit = 8 * 1024;
        let p = plan(b.clone(), "p", Granularity::Batch, limit);
        assert!(p.len() > 2, "{}", p.len());
        for m in &p {
            assert!(
                m.payload.len() + m.msg_id.len() + 64 < limit,
                "{}",
                m.payload.len()
            );
        }
        let seqs: Vec<u64> = p
            .iter()
            .flat_map(|m| Batch::decode(m.payload.as_slice()).unwrap().events)
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        assert_eq!(
            p,
            plan(b.clone(), "p", Granularity::Batch, limit),
            "deterministic"
        );
    }

    #[test]
    fn event_granularity_is_one_message_per_event() {
        let b = batch(vec![
            ev(5, "h", Kind::ProcessExec),
            ev(6, "h", Kind::NetConnect),
        ]);
        let p = plan(b.clone(), "p", Granularity::Event, 1 << 20);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].msg_id, "sensor%201:b-1:6");
        assert_eq!(p[1].subject, "p.h.net_connect");
        assert_eq!(
            Batch::decode(p[1].payload.as_slice()).unwrap().events.len(),
            1
        );
    }
}
