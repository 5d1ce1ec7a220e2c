//! The real sensor's spool on a tiny filesystem filled to the last byte loses no event once
//! space returns: a 4 MiB tmpfs holds the spool, the collector is down, the disk is filled
//! until a 1-byte write fails, a marker workload runs; the status file shows the spool
//! cannot be written and how many events wait in memory; space is freed, the collector comes
//! up, and every marker exec arrives exactly once, with no write error or corrupt frame
//! counted.
//!
//! Privileged: mounts a tmpfs (removed at the end) and runs the sensor as root (eBPF mode).
mod common;
mod ship_support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use ship_support::{free_port, GrpcSensor, InProcCollector, TempDir};

/// A tmpfs mounted for the test, unmounted (after the sensor stopped) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn status(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn wait_status(path: &Path, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(path);
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "status never showed {what}: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes into `path` until the filesystem refuses even one more byte.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut n = 0u64;
    for size in [chunk.len(), 4096, 1] {
        loop {
            match f.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
    }
    n
}

#[test]
fn full_disk_loses_no_event_once_space_returns() {
    if !common::privileged() {
        return;
    }
    const N: usize = 300;
    let dir = TempDir::new("diskfull");
    let fs = Tmpfs::mount(&dir.path().join("fs"), "4m");
    let spool = fs.0.join("spool");
    let port = free_port();
    let cfg = dir.path().join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ship]\nallow_plaintext_loopback = true\nspool_dir = {spool:?}\n\
             batch_max_delay_ms = 20\nbackoff_initial_ms = 50\nbackoff_max_ms = 500\n"
        ),
    )
    .unwrap();
    let status_path = dir.path().join("status.json");
    let sensor = GrpcSensor::spawn(dir.path(), &cfg, &status_path, &format!("127.0.0.1:{port}"));
    // Started and spooling (health events; the collector is down).
    wait_status(&status_path, "spooled events", 60, |s| {
        s["output"]["collector"]["spool_pending_events"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });

    let filler = fs.0.join("filler");
    let filled = fill(&filler);
    // SAFETY: statvfs on a valid NUL-terminated path into a zeroed struct.
    let free = unsafe {
        let c = std::ffi::CString::new(fs.0.to_str().unwrap()).unwrap();
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st.f_bavail
    };
    assert_eq!(free, 0, "filesystem not full after {filled} bytes");

    let m = common::marker("full");
    for i in 0..N {
        let st = Command::new("/bin/true")
            .args([m.as_str(), &i.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let s = wait_status(&status_path, "the spool write error", 30, |s| {
        let c = &s["output"]["collector"];
        !c["spool_error"].as_str().unwrap_or("").is_empty()
            && c["spool_unwritten_events"].as_u64().unwrap_or(0) > 0
    });
    eprintln!(
        "disk full: {} events held in memory: {}",
        s["output"]["collector"]["spool_unwritten_events"], s["output"]["collector"]["spool_error"]
    );
    assert!(
        sensor.log().contains("keeping it in memory and retrying"),
        "{}",
        sensor.log()
    );

    // Space returns: the held batches reach the spool, then the collector gets them all.
    std::fs::remove_file(&filler).unwrap();
    wait_status(&status_path, "the spool writable again", 30, |s| {
        let c = &s["output"]["collector"];
        c["spool_error"].as_str() == Some("") && c["spool_unwritten_events"].as_u64() == Some(0)
    });
    let col = InProcCollector::start(dir.path(), &format!("127.0.0.1:{port}"), None);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen;
    loop {
        seen = vec![0u32; N];
        for st in ship_support::stored_with(&col.db, &m) {
            let ev = &st.event;
            if ev.kind != sensor_proto::v1::Kind::ProcessExec as i32 {
                continue;
            }
            let args = &ev.process.as_ref().unwrap().argv.as_ref().unwrap().args;
            if args.get(1) == Some(&m) {
                let i: usize = args[2].parse().unwrap();
                seen[i] += 1;
            }
        }
        if seen.iter().all(|&c| c >= 1) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let missing: Vec<usize> = (0..N).filter(|&i| seen[i] == 0).collect();
    let doubled: Vec<usize> = (0..N).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty(),
        "{} execs lost: {missing:?}",
        missing.len()
    );
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");

    let s = status(&status_path);
    let drops = &s["drops"];
    assert_eq!(drops["spool_write_errors"].as_u64(), Some(0), "{s}");
    assert_eq!(drops["spool_corrupt_batches"].as_u64(), Some(0), "{s}");
    assert!(
        !sensor.log().contains("torn or corrupt"),
        "{}",
        sensor.log()
    );
    sensor.stop(40);
    col.stop();
    drop(fs);
}
