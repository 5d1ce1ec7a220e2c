//! Unit tests of the `assemble` module.
use super::super::record::{parse, tests::session};
use super::*;

fn records() -> Vec<Record> {
    session()
        .iter()
        .map(|(t, p)| parse(*t, p).unwrap())
        .collect()
}

fn run(asm: &mut Assembler, recs: impl IntoIterator<Item = Record>) -> Vec<Group> {
    let mut out = Vec::new();
    for (i, r) in recs.into_iter().enumerate() {
        out.extend(asm.push(r, i as u64));
    }
    out
}

#[test]
fn real_session_groups_by_serial() {
    let mut asm = Assembler::new(64, 10_000);
    let mut groups = run(&mut asm, records());
    let open_at_end = asm.open_groups();
    groups.extend(asm.flush_all());
    // Serials 4..=71, each one group, except those closed early by a stand-alone record.
    let serials: Vec<u64> = groups.iter().map(|g| g.serial).collect();
    let mut sorted = serials.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, (4..=71).collect::<Vec<_>>());
    assert_eq!(serials.len(), 68);
    // Only the CONFIG_CHANGE of the rule itself (serial 4, no EOE) was still open.
    assert_eq!(open_at_end, 1);
    let s = asm.stats();
    assert_eq!((s.serial_gaps, s.incomplete, s.late_records), (0, 0, 0));
    assert_eq!((s.overflow_flushes, s.records_dropped), (0, 0));
    assert_eq!(s.groups, 68);

    let exec = groups.iter().find(|g| g.serial == 6).unwrap();
    let types: Vec<u16> = exec.records.iter().map(|r| r.rtype).collect();
    assert_eq!(types, vec![1300, 1321, 1309, 1307, 1302, 1302, 1327]);
    assert!(exec.complete && !exec.truncated);
    assert_eq!(exec.time_ms, 1_795_805_362_236);
    // The split argv: 12 EXECVE records in one group.
    let long = groups.iter().find(|g| g.serial == 8).unwrap();
    assert_eq!(long.all(types::EXECVE).count(), 12);
    // ANOM_ABEND stands alone and completes at once.
    let abend = groups.iter().find(|g| g.serial == 15).unwrap();
    assert!(abend.complete);
    assert_eq!(abend.records.len(), 1);
    // LOGIN shares serial 31 with the SYSCALL of the write that set loginuid.
    let login = groups.iter().find(|g| g.serial == 31).unwrap();
    assert_eq!(
        login.records.iter().map(|r| r.rtype).collect::<Vec<_>>(),
        vec![1006, 1300, 1327]
    );
}

#[test]
fn interleaved_serials_still_group() {
    let recs = records();
    let a: Vec<Record> = recs.iter().filter(|r| r.serial == 6).cloned().collect();
    let b: Vec<Record> = recs.iter().filter(|r| r.serial == 7).cloned().collect();
    let mut mixed = Vec::new();
    let mut bi = b.into_iter();
    for r in a {
        mixed.push(r);
        if let Some(x) = bi.next() {
            mixed.push(x);
        }
    }
    mixed.extend(bi);
    let mut asm = Assembler::new(8, 1000);
    let groups = run(&mut asm, mixed);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].serial, 7); // EOE of 7 arrives first
    assert_eq!(groups[1].records.len(), 7);
    assert_eq!(asm.stats().serial_gaps, 0);
}

#[test]
fn missing_eoe_is_flushed_on_timeout() {
    let recs: Vec<Record> = records()
        .into_iter()
        .filter(|r| r.serial == 6 && r.rtype != types::EOE)
        .collect();
    let mut asm = Assembler::new(8, 500);
    for r in recs {
        assert!(asm.push(r, 100).is_empty());
    }
    assert!(asm.flush_expired(599).is_empty());
    let g = asm.flush_expired(600);
    assert_eq!(g.len(), 1);
    assert!(!g[0].complete);
    assert_eq!(g[0].records.len(), 7);
    let s = asm.stats();
    assert_eq!((s.timeouts, s.incomplete, s.groups), (1, 1, 1));
    // The EOE arriving after the flush is late, not a new group.
    let eoe = parse(types::EOE, b"audit(1795805362.236:6): ").unwrap();
    assert!(asm.push(eoe, 700).is_empty());
    assert_eq!(asm.stats().late_records, 1);
    assert_eq!(asm.open_groups(), 0);
}

#[test]
fn push_also_flushes_expired_groups() {
    let mut asm = Assembler::new(8, 50);
    let r = |s: u64| {
        parse(
            types::CONFIG_CHANGE,
            format!("audit(1.000:{s}): op=x").as_bytes(),
        )
        .unwrap()
    };
    assert!(asm.push(r(1), 0).is_empty());
    let out = asm.push(r(2), 60);
    assert_eq!(out.iter().map(|g| g.serial).collect::<Vec<_>>(), vec![1]);
    assert_eq!(asm.stats().incomplete, 0); // no SYSCALL: not counted as incomplete
    assert_eq!(asm.stats().timeouts, 1);
}

#[test]
fn overflow_flushes_oldest() {
    let mut asm = Assembler::new(2, 10_000);
    let sys = |s: u64| {
        parse(
            types::SYSCALL,
            format!("audit(1.000:{s}): arch=c000003e syscall=59 pid=1").as_bytes(),
        )
        .unwrap()
    };
    assert!(asm.push(sys(1), 0).is_empty());
    assert!(asm.push(sys(2), 0).is_empty());
    let out = asm.push(sys(3), 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].serial, 1);
    assert!(!out[0].complete);
    let s = asm.stats();
    assert_eq!((s.overflow_flushes, s.incomplete, s.timeouts), (1, 1, 0));
    assert_eq!(asm.open_groups(), 2);
    let rest = asm.flush_all();
    assert_eq!(
        rest.iter().map(|g| g.serial).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(asm.stats().groups, 3);
}

#[test]
fn byte_budgets_bound_memory() {
    // Per-group budget: the 12 EXECVE records of serial 8 (~100 KiB) under a 20 KiB cap.
    let recs: Vec<Record> = records().into_iter().filter(|r| r.serial == 8).collect();
    let mut asm = Assembler::new(8, 1000).with_byte_limits(20 * 1024, 1 << 30);
    let groups = run(&mut asm, recs);
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert!(g.truncated && g.complete);
    assert!(g.all(types::EXECVE).count() < 12);
    // CWD, PATH and PROCTITLE still made it.
    for t in [types::CWD, types::PATH, types::PROCTITLE] {
        assert!(g.first(t).is_some(), "{t}");
    }
    assert!(asm.stats().records_dropped > 0);

    // Total budget: two big groups cannot both stay open.
    let mut asm = Assembler::new(64, 1000).with_byte_limits(1 << 20, 16 * 1024);
    let big: Vec<Record> = records()
        .into_iter()
        .filter(|r| r.serial == 8 && r.rtype == types::EXECVE)
        .collect();
    let mut out = Vec::new();
    for r in big.iter().take(3).cloned() {
        out.extend(asm.push(r, 0));
    }
    for r in big.iter().take(3).cloned() {
        let mut r = r;
        r.serial = 9;
        out.extend(asm.push(r, 0));
    }
    assert_eq!(out.first().map(|g| g.serial), Some(8));
    assert!(asm.stats().overflow_flushes >= 1);
    assert!(asm.total_bytes <= 16 * 1024);
}

#[test]
fn a_record_larger_than_the_budget_still_opens_a_non_empty_group() {
    // Found by the fuzz target: the first record was dropped and an empty group came out.
    let big = records()
        .into_iter()
        .find(|r| r.serial == 8 && r.rtype == types::EXECVE)
        .unwrap();
    let mut asm = Assembler::new(4, 10).with_byte_limits(1024, 1 << 20);
    assert!(asm.push(big.clone(), 0).is_empty());
    let mut second = big;
    second.truncate_fields(1);
    asm.push(second, 0);
    let g = asm.flush_all();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].records.len(), 1);
    assert!(g[0].truncated);
}

#[test]
fn serial_gaps_are_counted_after_timeout() {
    // Drop every record of serials 10 and 11 (a lost exec and its exit) from the capture.
    let recs: Vec<Record> = records()
        .into_iter()
        .filter(|r| r.serial != 10 && r.serial != 11)
        .collect();
    let mut asm = Assembler::new(64, 100);
    for r in recs {
        asm.push(r, 0);
    }
    assert_eq!(asm.stats().serial_gaps, 0); // still within the reorder window
    asm.flush_expired(100);
    assert_eq!(asm.stats().serial_gaps, 2);

    // A late serial inside the window is not a gap.
    let mut asm = Assembler::new(64, 100);
    let r = |s: u64| {
        parse(
            types::CONFIG_CHANGE,
            format!("audit(1.000:{s}): a=1").as_bytes(),
        )
        .unwrap()
    };
    asm.push(r(1), 0);
    asm.push(r(3), 0);
    asm.push(r(2), 10);
    asm.flush_all();
    assert_eq!(asm.stats().serial_gaps, 0);

    // A huge jump is a reset, not four billion gaps; so is a huge step back.
    let mut asm = Assembler::new(64, 100);
    asm.push(r(5), 0);
    asm.push(r(5 + (1 << 32)), 0);
    asm.push(r(6), 0);
    asm.flush_all();
    let s = asm.stats();
    assert_eq!((s.serial_gaps, s.serial_resets), (0, 2));

    // A large but plausible jump counts every missing serial, with bounded memory.
    let mut asm = Assembler::new(64, 100);
    asm.push(r(1), 0);
    asm.push(r(10_002), 0);
    assert!(asm.gaps.missing.len() <= MAX_MISSING);
    asm.flush_all();
    assert_eq!(asm.stats().serial_gaps, 10_000);
}

#[test]
fn push_payload_counts_parse_errors() {
    let mut asm = Assembler::new(4, 100);
    let err = asm.push_payload(1300, b"garbage", 0).unwrap_err();
    assert!(err.to_string().contains("1300"));
    assert_eq!(asm.stats().parse_errors, 1);
    let ok = asm
        .push_payload(
            types::USER_ACCT,
            b"audit(1.000:1): pid=1 msg='op=x res=success'",
            0,
        )
        .unwrap();
    assert_eq!(ok.len(), 1);
}

#[test]
fn unknown_types_group_without_error() {
    let mut asm = Assembler::new(4, 100);
    let a = parse(9999, b"audit(1.000:1): whatever text=1").unwrap();
    let b = parse(types::EOE, b"audit(1.000:1): ").unwrap();
    assert!(asm.push(a, 0).is_empty());
    let g = asm.push(b, 0);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].records[0].rtype, 9999);
}
