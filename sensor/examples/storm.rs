//! `storm`: workload generator for benchmarking the sensor (see `scripts/bench`).
//!
//! Subcommands (each prints one line of JSON on stdout):
//!
//! - `storm exec N MARKER`: sequentially spawn and wait for `/bin/true MARKER-<i>`
//!   for i in 1..=N.
//! - `storm connect N`: listen on 127.0.0.1:0 (an accept thread accepts and drops),
//!   then sequentially open and drop N TCP connections to it (at most 64 waiting
//!   to be accepted, so the listen backlog never overflows).
//! - `storm exec-paced RATE SECS MARKER`: spawn `/bin/true MARKER-<i>` at RATE per
//!   second for SECS seconds, on a fixed schedule (children are reaped without
//!   blocking the schedule).
//! - `storm syscalls N [getppid|getuid]`: N `getppid` (default) or `getuid` system calls in
//!   a loop (the cheapest syscalls): the per-syscall cost of programs attached to every
//!   syscall (`raw_syscalls`). As root, `getuid` returns 0, as a successful set*id call does,
//!   which the ia32 exit program looks at further than at other returns.
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRUE: &str = "/bin/true";
/// Connections the connect storm lets wait in the accept queue (backlog is 128).
const MAX_INFLIGHT: u64 = 64;
const USAGE: &str = "usage:\n  storm exec N MARKER\n  storm connect N\n  storm exec-paced RATE \
                     SECS MARKER\n  storm syscalls N [getppid|getuid]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["exec", n, marker] => parse(n, "N").and_then(|n| exec(n, marker)),
        ["connect", n] => parse(n, "N").and_then(connect),
        ["syscalls", n] => parse(n, "N").map(|n| syscalls(n, libc::SYS_getppid)),
        ["syscalls", n, "getppid"] => parse(n, "N").map(|n| syscalls(n, libc::SYS_getppid)),
        ["syscalls", n, "getuid"] => parse(n, "N").map(|n| syscalls(n, libc::SYS_getuid)),
        ["exec-paced", rate, secs, marker] => parse::<f64>(rate, "RATE")
            .and_then(|r| parse::<f64>(secs, "SECS").and_then(|s| exec_paced(r, s, marker))),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(line) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("storm: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what}: not a valid number: {s:?}\n{USAGE}"))
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn exec(n: u64, marker: &str) -> Result<String, String> {
    let start = Instant::now();
    for i in 1..=n {
        let status = Command::new(TRUE)
            .arg(format!("{marker}-{i}"))
            .status()
            .map_err(|e| format!("spawn {TRUE}: {e}"))?;
        if !status.success() {
            return Err(format!("{TRUE} exited with {status}"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"workload\":\"exec\",\"n\":{n},\"secs\":{secs:.6},\"per_sec\":{:.1},\"pid\":{}}}",
        rate(n, secs),
        std::process::id()
    ))
}

fn syscalls(n: u64, nr: libc::c_long) -> String {
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid and getuid take no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::syscall(nr) });
    }
    let secs = start.elapsed().as_secs_f64();
    format!(
        "{{\"workload\":\"syscalls\",\"n\":{n},\"secs\":{secs:.6},\"ns_per_call\":{:.1}}}",
        secs * 1e9 / n.max(1) as f64
    )
}

fn connect(n: u64) -> Result<String, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if conn.is_ok() {
                counter.fetch_add(1, Ordering::Release);
            }
            drop(conn);
        }
    });
    let start = Instant::now();
    for i in 0..n {
        // Keep the accept queue well below the listen backlog (128): a full queue
        // drops the SYN and the connect then waits ~1 s for a retransmit.
        while i - accepted.load(Ordering::Acquire).min(i) >= MAX_INFLIGHT {
            std::thread::yield_now();
        }
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        drop(stream);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"workload\":\"connect\",\"n\":{n},\"secs\":{secs:.6},\"per_sec\":{:.1},\"pid\":{},\"port\":{}}}",
        rate(n, secs),
        std::process::id(),
        addr.port()
    ))
}

fn reap(children: &mut Vec<Child>, failures: &mut u64) -> Result<(), String> {
    let mut i = 0;
    while i < children.len() {
        match children[i].try_wait() {
            Ok(Some(status)) => {
                if !status.success() {
                    *failures += 1;
                }
                // Already reaped by try_wait above.
                drop(children.swap_remove(i));
            }
            Ok(None) => i += 1,
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
    Ok(())
}

fn exec_paced(per_sec: f64, secs: f64, marker: &str) -> Result<String, String> {
    let valid = per_sec > 0.0 && per_sec.is_finite() && secs >= 0.0 && secs.is_finite();
    if !valid {
        return Err(format!("RATE must be > 0 and SECS >= 0\n{USAGE}"));
    }
    let total = (per_sec * secs).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / per_sec);
    let mut children: Vec<Child> = Vec::new();
    let mut failures = 0u64;
    let mut late_max = Duration::ZERO;
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            late_max = late_max.max(now - due);
        }
        let child = Command::new(TRUE)
            .arg(format!("{marker}-{}", i + 1))
            .spawn()
            .map_err(|e| format!("spawn {TRUE}: {e}"))?;
        children.push(child);
        reap(&mut children, &mut failures)?;
    }
    let spawn_secs = start.elapsed().as_secs_f64();
    for mut child in children.drain(..) {
        let status = child.wait().map_err(|e| format!("wait: {e}"))?;
        if !status.success() {
            failures += 1;
        }
    }
    let secs_total = start.elapsed().as_secs_f64();
    if failures > 0 {
        return Err(format!("{failures} of {total} {TRUE} runs failed"));
    }
    Ok(format!(
        "{{\"workload\":\"exec-paced\",\"n\":{total},\"target_per_sec\":{per_sec},\"secs\":{secs_total:.6},\
         \"per_sec\":{:.1},\"late_max_ms\":{:.3},\"pid\":{}}}",
        rate(total, spawn_secs),
        late_max.as_secs_f64() * 1e3,
        std::process::id()
    ))
}
