//! Filter stage benchmark (plain `harness = false`): events per second through the default
//! noise rules, through argv redaction, and through both as the pipeline task's filter step
//! (`Filter::pass`). The workload is a mix of execs (some filtered, some carrying secrets, most
//! plain), their exits, connects and file events.
//!
//! `cargo bench -p sensor --bench filter_throughput` (env: BENCH_FILTER_N, default 1000000).
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use sensor::event::{Event, FileActivity, Kind, Process, Source};
use sensor::filter::{Filter, FilterConfig, FilterStats, Verdict};

const ARGVS: &[&[&str]] = &[
    &["/usr/bin/date", "+%s"],
    &["who", "-b"],
    &["ls", "-la", "--color=auto", "/var/log"],
    &[
        "/usr/bin/python3",
        "/opt/app/worker.py",
        "--queue",
        "default",
        "--concurrency",
        "4",
    ],
    &["grep", "-r", "error", "/var/log/syslog"],
    &["mysql", "-uroot", "-phunter2", "-e", "select 1"],
    &[
        "curl",
        "-sS",
        "-H",
        "Authorization: Bearer abc.def.ghi",
        "https://api.example.com/v1/x",
    ],
    &["sh", "-c", "cd /srv && ./deploy.sh --env prod --verbose"],
    &["git", "log", "--oneline", "-n", "20"],
    &[
        "/usr/lib/jvm/java-17/bin/java",
        "-Xmx2g",
        "-Dfile.encoding=UTF-8",
        "-jar",
        "/opt/svc/app.jar",
        "--server.port=8080",
    ],
    &["systemctl", "is-active", "nginx"],
    &["tput", "colors"],
];

fn event(i: usize) -> Event {
    let argv = ARGVS[i % ARGVS.len()];
    let comm = argv[0].rsplit('/').next().unwrap();
    let pid = 10_000 + i as u32;
    let kind = match i % 5 {
        0..=2 => Kind::ProcessExec,
        3 => Kind::NetConnect,
        _ => Kind::File,
    };
    let mut ev = Event::new(kind, Source::Ebpf, 1_767_225_600_000_000_000, "bench");
    ev.process = Some(Process {
        pid,
        ppid: 1,
        start_boottime_ns: 1_000 + i as u64,
        comm: comm.into(),
        exe: Some(format!("/usr/bin/{comm}")),
        argv: Some(argv.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    });
    ev.file = (kind == Kind::File).then(|| FileActivity {
        path: "/etc/hosts".into(),
        ops: vec!["open".into()],
        new_path: None,
    });
    ev
}

fn exit_of(e: &Event) -> Event {
    let mut x = e.clone();
    x.set_kind(Kind::ProcessExit);
    x
}

fn report(name: &str, n: usize, secs: f64) {
    println!(
        "{name:<34} {n:>9} events  {:>12.0} events/s  {:>8.1} ns/event",
        n as f64 / secs,
        secs * 1e9 / n as f64
    );
}

/// Distinct template events (a working set that stays in cache, as in a live pipeline).
const TEMPLATES: usize = 4096;

fn main() {
    let n: usize = std::env::var("BENCH_FILTER_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let cfg = FilterConfig::default();
    // Every exec is followed by its exit, as in a real stream.
    let mut events = Vec::with_capacity(TEMPLATES * 2);
    for i in 0..TEMPLATES {
        let e = event(i);
        let x = (e.kind() == Kind::ProcessExec).then(|| exit_of(&e));
        events.push(e);
        events.extend(x);
    }
    let at = |i: usize| &events[i % events.len()];
    println!(
        "filter_throughput: {n} events cycling over {} templates (execs with their exits, connects, file events), default rules and redaction",
        events.len()
    );

    // 1. Noise rules only.
    let (mut filter, redactor) = cfg.build().unwrap();
    let t = Instant::now();
    let mut dropped = 0usize;
    for i in 0..n {
        if filter.check(black_box(at(i))) != Verdict::Keep {
            dropped += 1;
        }
    }
    report("noise rules", n, t.elapsed().as_secs_f64());
    println!(
        "  dropped {dropped} ({:.1}%)",
        100.0 * dropped as f64 / n as f64
    );

    // 2. Redaction of a fresh copy of each argv (the copy is timed separately).
    let argv = |i: usize| at(i).process.as_ref().unwrap().argv.clone().unwrap().args;
    let t = Instant::now();
    for i in 0..n {
        black_box(argv(i));
    }
    let copy_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut changed = 0usize;
    for i in 0..n {
        let mut a = argv(i);
        changed += redactor.redact_argv(black_box(&mut a));
    }
    let secs = t.elapsed().as_secs_f64();
    report("argv copy (baseline)", n, copy_secs);
    report("argv copy + redaction", n, secs);
    report(
        "redaction alone (difference)",
        n,
        (secs - copy_secs).max(1e-9),
    );
    println!("  redacted {changed} arguments");

    // 3. The filter step as the pipeline task runs it (`Filter::pass`: noise rules, then
    //    redaction of kept events, with their counters), on fresh copies.
    let (noise, redactor) = cfg.build().unwrap();
    let stats = Arc::new(FilterStats::for_filter(&noise));
    let mut step = Filter::new(noise, redactor, stats.clone());
    let t = Instant::now();
    let mut kept = 0usize;
    for i in 0..n {
        let mut e = at(i).clone();
        if step.pass(&mut e) {
            kept += 1;
        }
        black_box(e);
    }
    step.publish();
    report(
        "event copy + Filter::pass (noise + redaction)",
        n,
        t.elapsed().as_secs_f64(),
    );
    println!(
        "  kept {kept}; counts {:?}",
        sensor::telemetry::fields::fields_of(&*stats).events
    );
}
