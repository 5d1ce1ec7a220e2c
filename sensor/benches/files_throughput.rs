//! File-activity decode benchmark (plain `harness = false`): throughput of the pure fanotify
//! buffer parser on FID-mode events shaped like the kernel's, and of the path filter that
//! follows it on every event of a filesystem mark.
//!
//! `cargo bench -p sensor --bench files_throughput` (env: BENCH_FILES_ROUNDS, default 200).
use std::hint::black_box;
use std::time::Instant;

use sensor::sources::files::fanotify_parse::{
    encode_event, events, ops_of_mask, EncodeInfo, INFO_DFID_NAME, INFO_FID, INFO_NEW_DFID_NAME,
    INFO_OLD_DFID_NAME,
};
use sensor::sources::files::filter::PathFilter;
use sensor::sources::files::DEFAULT_WATCH;

const FSID: [u8; 8] = [0xa4, 0xd0, 0x24, 0xb5, 0xf9, 0x3a, 0xa8, 0x77];

/// One 256 KiB read's worth of events: mostly modify/close_write with DFID_NAME + FID,
/// some creates and deletes, one rename in 32.
fn buffer() -> (Vec<u8>, usize) {
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut n = 0usize;
    while buf.len() < 256 * 1024 - 256 {
        let dir = (n as u32 % 64).to_ne_bytes();
        let dir_handle = [dir[0], dir[1], 0x21, 0x00, 0x9e, 0xb1, 0x68, 0xc0];
        let child = (n as u64).to_ne_bytes();
        let name = format!("file-{n:06}.o");
        let dfid = EncodeInfo {
            info_type: INFO_DFID_NAME,
            fsid: FSID,
            handle_type: 1,
            handle: &dir_handle,
            name: Some(name.as_bytes()),
        };
        let fid = EncodeInfo {
            info_type: INFO_FID,
            fsid: FSID,
            handle_type: 1,
            handle: &child,
            name: None,
        };
        let ev = match n % 32 {
            0 => encode_event(
                libc::FAN_RENAME,
                -1,
                1234,
                &[
                    EncodeInfo {
                        info_type: INFO_OLD_DFID_NAME,
                        ..dfid
                    },
                    EncodeInfo {
                        info_type: INFO_NEW_DFID_NAME,
                        name: Some(b"renamed.o"),
                        ..dfid
                    },
                    fid,
                ],
            ),
            1..=4 => encode_event(libc::FAN_CREATE, -1, 1234, &[dfid, fid]),
            5..=8 => encode_event(libc::FAN_DELETE, -1, 1234, &[dfid]),
            _ => encode_event(
                libc::FAN_MODIFY | libc::FAN_CLOSE_WRITE,
                -1,
                1234,
                &[dfid, fid],
            ),
        };
        buf.extend_from_slice(&ev);
        n += 1;
    }
    (buf, n)
}

fn main() {
    let rounds: usize = std::env::var("BENCH_FILES_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let (buf, per_buf) = buffer();
    println!(
        "buffer: {} bytes, {per_buf} events ({:.0} bytes/event)",
        buf.len(),
        buf.len() as f64 / per_buf as f64
    );

    // Warm up, then measure parsing alone.
    let mut sink = 0u64;
    for ev in events(&buf) {
        sink = sink.wrapping_add(ev.unwrap().mask);
    }
    let t = Instant::now();
    let mut parsed = 0usize;
    for _ in 0..rounds {
        for ev in events(black_box(&buf)) {
            let ev = ev.unwrap();
            sink =
                sink.wrapping_add(ev.mask ^ u64::from(ev.info.dfid.map_or(0, |d| d.fid.handle[0])));
            sink = sink.wrapping_add(u64::from(ops_of_mask(ev.mask).0));
            parsed += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "parse: {parsed} events in {:.1} ms = {:.1} M events/s, {:.0} MiB/s ({:.0} ns/event)",
        secs * 1e3,
        parsed as f64 / secs / 1e6,
        (buf.len() * rounds) as f64 / secs / (1024.0 * 1024.0),
        secs * 1e9 / parsed as f64
    );

    // The path decision that follows on every event (default trees, a few ignores).
    let ignore = ["/var/lib/sensor", "/var/log/sensor.jsonl"];
    let filter = PathFilter::new(&DEFAULT_WATCH, &["/etc/ssl/certs"], &ignore);
    let paths: Vec<Vec<u8>> = [
        "/work/main/target/debug/deps/libfoo-0123456789abcdef.rlib",
        "/etc/passwd",
        "/home/alice/.ssh/authorized_keys",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/var/lib/sensor/spool/000001.batch",
        "/etc/ssl/certs/ca.pem",
        "/tmp/cc0Xyz.s",
        "/usr/local/bin/evil",
    ]
    .iter()
    .map(|p| p.as_bytes().to_vec())
    .collect();
    let n = rounds * 10_000;
    let t = Instant::now();
    let mut kept = 0usize;
    for i in 0..n {
        if filter.wants(black_box(&paths[i % paths.len()])) {
            kept += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "filter: {n} decisions in {:.1} ms = {:.0} ns/decision ({kept} kept)",
        secs * 1e3,
        secs * 1e9 / n as f64
    );
    black_box(sink);
}
