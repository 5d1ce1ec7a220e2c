use super::*;
use crate::test_dir::TestDir;
use std::fs::OpenOptions;

fn tmp(tag: &str) -> TestDir {
    TestDir::new(&format!("spool-{tag}"))
}

fn opts(max: u64, seg: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes: max,
        segment_bytes: seg,
        fsync: FsyncPolicy::Never,
    }
}

fn ev(seq: u64, kind: pb::Kind) -> pb::Event {
    pb::Event {
        seq,
        kind: kind as i32,
        host: "h".repeat(100),
        ..Default::default()
    }
}

/// Batch of `n` events starting at `seq`, alternating exec and exit.
fn batch(seq: u64, n: u64) -> pb::Batch {
    pb::Batch {
        sensor_id: "s".into(),
        boot_id: "b".into(),
        first_seq: seq,
        events: (seq..seq + n)
            .map(|s| {
                let k = if s % 2 == 0 {
                    pb::Kind::ProcessExit
                } else {
                    pb::Kind::ProcessExec
                };
                ev(s, k)
            })
            .collect(),
        batch_id: 0,
        sent_unix_ns: 0,
    }
}

#[test]
fn frames_scan_and_torn_tails() {
    let p1 = batch(1, 2).encode_to_vec();
    let p2 = batch(3, 1).encode_to_vec();
    let mut data = MAGIC.to_vec();
    data.extend(encode_frame(0, &p1));
    let good = data.len();
    data.extend(encode_frame(FLAG_RESCUED, &p2));
    let (f, end, torn) = scan_frames(&data);
    assert_eq!((f.len(), end, torn), (2, data.len(), false));
    assert_eq!(f[1].flags, FLAG_RESCUED);
    // Every truncation inside the second frame is a torn tail at `good`.
    for cut in good + 1..data.len() {
        let (f, end, torn) = scan_frames(&data[..cut]);
        assert_eq!((f.len(), end, torn), (1, good, true), "cut {cut}");
    }
    // A flipped bit fails the CRC.
    let mut bad = data.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(scan_frames(&bad).1, good);
    // Bad magic: nothing is trusted.
    assert_eq!(scan_frames(b"garbage!xx").0.len(), 0);
    assert!(!scan_frames(&[]).2);
}

#[test]
fn append_read_ack_delete() {
    let d = tmp("ack");
    let (mut s, rec) = Spool::open(&d, opts(1 << 20, 16 << 10)).unwrap();
    assert_eq!(rec, Recovery::default());
    let mut ids = Vec::new();
    for i in 0..50 {
        let mut b = batch(i * 10 + 1, 10);
        let a = s.append(&mut b).unwrap();
        assert_eq!(a.eviction, Eviction::default());
        assert_eq!(b.batch_id, a.batch_id);
        assert_eq!(a.payload, b.encode_to_vec());
        assert_eq!(s.read_payload(a.batch_id).unwrap(), a.payload);
        ids.push(a.batch_id);
    }
    assert!(s.segment_count() > 1, "rotated");
    assert_eq!(s.pending_events(), 500);
    let oldest = s
        .oldest_pending_unix_ms()
        .expect("pending batches have an age");
    assert!(oldest > 0 && oldest <= now_unix_ms());
    assert_eq!(s.read(ids[7]).unwrap(), {
        let mut b = batch(71, 10);
        b.batch_id = ids[7];
        b
    });
    assert_eq!(s.next_pending(None).unwrap().batch_id, ids[0]);
    assert_eq!(s.next_pending(Some(ids[3])).unwrap().batch_id, ids[4]);
    for id in &ids[..49] {
        assert_eq!(s.ack(*id).unwrap(), Some(10));
    }
    assert_eq!(s.ack(ids[0]).unwrap(), None, "twice");
    assert_eq!(s.segment_count(), 1, "fully acked segments are deleted");
    assert_eq!(s.next_pending(None).unwrap().batch_id, ids[49]);
    s.ack(ids[49]).unwrap();
    assert_eq!(s.segment_count(), 0);
    assert_eq!(s.oldest_pending_unix_ms(), None);
    assert_eq!(s.total_bytes(), 0);
    assert_eq!(
        std::fs::read_dir(s.dir()).unwrap().count(),
        0,
        "no files left"
    );
}

#[test]
fn recovery_after_crash_keeps_unacked_and_cuts_torn_tail() {
    let d = tmp("rec");
    let (mut s, _) = Spool::open(&d, opts(1 << 20, 64 << 10)).unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(s.append(&mut batch(i * 10 + 1, 10)).unwrap().batch_id);
    }
    for id in &ids[..5] {
        s.ack(*id).unwrap();
    }
    let last_seg = s.segments.back().unwrap().path.clone();
    drop(s); // like kill -9: nothing flushed or closed explicitly
             // A torn frame at the end of the newest segment.
    let mut f = OpenOptions::new().append(true).open(&last_seg).unwrap();
    let frame = encode_frame(0, &batch(1000, 3).encode_to_vec());
    f.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(f);
    let (s, rec) = Spool::open(&d, opts(1 << 20, 64 << 10)).unwrap();
    assert_eq!(rec.corrupt_batches, 1);
    assert_eq!(rec.truncated_bytes, (frame.len() / 2) as u64);
    // Acks were in memory: the first segment's acked batches come back (the collector
    // de-duplicates them); nothing unacked is lost.
    assert!(rec.events >= 250, "{rec:?}");
    let mut seen = Vec::new();
    let mut cur = None;
    while let Some(p) = s.next_pending(cur) {
        let b = s.read(p.batch_id).unwrap();
        seen.extend(b.events.iter().map(|e| e.seq));
        cur = Some(p.batch_id);
    }
    for seq in 51..=300 {
        assert!(seen.contains(&seq), "seq {seq} lost");
    }
    assert_eq!(s.max_seq_for_boot("b"), 300);
    assert_eq!(s.max_seq_for_boot("other"), 0);
    // New appends continue with fresh batch ids and a new segment.
    let mut s = s;
    let id = s.append(&mut batch(301, 1)).unwrap().batch_id;
    assert!(id > *ids.last().unwrap());
    let on_disk = std::fs::metadata(&last_seg).unwrap().len();
    assert_eq!(on_disk, s.segments[s.segments.len() - 2].bytes);
}

#[test]
fn full_spool_evicts_oldest_and_rescues_exits() {
    let d = tmp("evict");
    // ~130 bytes per event: a 10-event batch is ~1.3 KB; 64 KiB segments, 256 KiB max.
    let (mut s, _) = Spool::open(&d, opts(256 << 10, 64 << 10)).unwrap();
    let mut total = KindCounts::default();
    let mut lost = KindCounts::default();
    let mut rescued = 0;
    for i in 0..1000u64 {
        let mut b = batch(i * 10 + 1, 10);
        total.add(&KindCounts::of(&b.events));
        let ev = s.append(&mut b).unwrap().eviction;
        lost.add(&ev.lost);
        rescued += ev.rescued_exits;
        assert!(s.total_bytes() <= 256 << 10, "bounded: {}", s.total_bytes());
    }
    assert!(lost.total() > 0);
    // Exits are rescued before they are lost: far fewer exits than execs are lost.
    assert!(rescued > 0);
    assert!(
        lost.get(pb::Kind::ProcessExit) < lost.get(pb::Kind::ProcessExec),
        "{lost:?}"
    );
    // Conservation: every event is pending or counted as lost.
    assert_eq!(s.pending_events() + lost.total(), total.total());
    // What is pending can be read, and includes rescued exits older than the rest.
    let mut cur = None;
    let mut n = 0;
    while let Some(p) = s.next_pending(cur) {
        let b = s.read(p.batch_id).unwrap();
        assert_eq!(b.batch_id, p.batch_id, "the frame's batch id is its index");
        n += b.events.len() as u64;
        cur = Some(p.batch_id);
    }
    assert_eq!(n, s.pending_events());
}

#[test]
fn fsync_policies_parse() {
    let d = Duration::from_millis(5);
    assert_eq!(
        FsyncPolicy::parse("always").unwrap()(d),
        FsyncPolicy::Always
    );
    assert_eq!(
        FsyncPolicy::parse("interval").unwrap()(d),
        FsyncPolicy::Interval(d)
    );
    assert_eq!(FsyncPolicy::parse("never").unwrap()(d), FsyncPolicy::Never);
    assert!(FsyncPolicy::parse("x").is_none());
}
