//! `sensor run`: choose the mode, start capture, health and output, stop cleanly on
//! SIGINT/SIGTERM after flushing everything already read.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::{
    config::Config,
    enrich::shed::{Admission, ShedStats},
    enrich::{self, CacheStats, ProcessCache, ProcessFeed},
    event::Event,
    filter::{stage::run_filter_stage, FilterStats},
    hostname::kernel_hostname,
    limits,
    probe::{self, Mode, ModeDecision, RequestedMode},
    sinks::json,
    sources::{
        audit::source::AuditCapture,
        conntrack::source::ConntrackCapture,
        ebpf::{self, reader::ReaderCtx},
        files::source::FileCapture,
        logins::source::LoginCapture,
        SourceCtx,
    },
    telemetry::counters::Counters,
    telemetry::health::{DropSource, HealthReporter, NoteSource, ReasonSource},
    telemetry::status::writer::{StatusInputs, StatusWriter},
    timefmt::Clocks,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no usable capture mode: {0}")]
    NoMode(String),
    #[error("eBPF capture failed: {0}")]
    Ebpf(#[from] ebpf::EbpfError),
    #[error("audit capture failed: {0}")]
    Audit(#[from] crate::sources::audit::source::AuditSourceError),
    #[error(transparent)]
    Output(#[from] json::OutputError),
    #[error(transparent)]
    Ship(#[from] crate::sinks::grpc::ShipError),
    #[error("config: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub struct RunOptions {
    pub config: Config,
    pub requested: RequestedMode,
}

/// Whether this build can capture through audit.
pub const AUDIT_IMPLEMENTED: bool = true;

/// A started capture path.
enum Capture {
    Ebpf {
        reader: tokio::task::JoinHandle<std::io::Result<()>>,
        stop: watch::Sender<bool>,
        _loaded: aya::Ebpf,
    },
    Audit(AuditCapture),
}

impl Capture {
    /// Stops capturing after draining what the kernel already handed over.
    async fn stop(self) {
        match self {
            Capture::Ebpf {
                reader,
                stop,
                _loaded,
            } => {
                let _ = stop.send(true);
                match reader.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "ring buffer reader failed"),
                    Err(e) => tracing::error!(error = %e, "ring buffer reader panicked"),
                }
                drop(_loaded);
            }
            Capture::Audit(a) => {
                let _ = tokio::task::spawn_blocking(move || a.stop()).await;
            }
        }
    }
}

/// The decided mode and reason after trying to start it (eBPF load failures fall back).
struct Started {
    mode: Mode,
    reason: String,
    capture: Capture,
    drops: DropSource,
    notes: Option<NoteSource>,
    /// A part of the reason that can change while running.
    live: Option<ReasonSource>,
}

#[allow(clippy::too_many_arguments)]
fn start_ebpf(
    cfg: &Config,
    filter_stats: &Arc<FilterStats>,
    shed_stats: &Arc<ShedStats>,
    offsets: Result<sensor_common::KernelOffsets, ebpf::EbpfError>,
    tx: &mpsc::Sender<Event>,
    counters: &Arc<Counters>,
    host: &str,
    feed: &ProcessFeed,
) -> Result<(Capture, DropSource, Vec<String>), ebpf::EbpfError> {
    let noise_comms = crate::filter::noise::kernel_comm_rules(&cfg.filter.noise);
    let capture = ebpf::load(
        offsets,
        cfg.ebpf.ring_buffer_bytes,
        &noise_comms,
        cfg.sensor.argv_max_bytes,
    )?;
    let ebpf::EbpfCapture {
        ebpf: loaded,
        ring,
        drops,
        noise,
        shed,
        blind_spots,
    } = capture;
    // The governor's level reaches the programs, which then drop connects at the source.
    let shed = Mutex::new(shed);
    shed_stats.set_hook(Box::new(move |level| {
        if let Err(e) = shed.lock().unwrap_or_else(|e| e.into_inner()).set(level) {
            tracing::warn!(error = %e, "cannot publish the shedding level to the kernel");
        }
    }));
    // The kernel's noise counts are published into the filter's stats at each health event.
    let fstats = filter_stats.clone();
    let publish_noise = move || {
        let (per_rule, exits) = noise.snapshot();
        for (i, n) in per_rule.into_iter().enumerate() {
            fstats.set_kernel_drops(i, n);
        }
        fstats.set_kernel_exit_drops(exits);
    };
    let drops = Arc::new(drops);
    let (stop_tx, stop_rx) = watch::channel(false);
    let reader = tokio::spawn(ebpf::run_reader(
        ring,
        ReaderCtx {
            tx: tx.clone(),
            counters: counters.clone(),
            shutdown: stop_rx,
            host: host.to_string(),
            clocks: Clocks::now(),
            feed: feed.producer(),
        },
    ));
    Ok((
        Capture::Ebpf {
            reader,
            stop: stop_tx,
            _loaded: loaded,
        },
        Box::new(move || {
            publish_noise();
            drops.snapshot()
        }),
        blind_spots,
    ))
}

type AuditStart = (Capture, DropSource, NoteSource, String, ReasonSource);

fn start_audit(
    cfg: &Config,
    tx: &mpsc::Sender<Event>,
    counters: &Arc<Counters>,
    host: &str,
    feed: &ProcessFeed,
) -> Result<AuditStart, RunError> {
    let audit_cfg = crate::sources::audit::source::AuditConfig {
        argv_bound: cfg.sensor.argv_max_bytes as usize,
        ..cfg.audit.clone()
    };
    let capture = AuditCapture::start(
        &audit_cfg,
        SourceCtx {
            tx: tx.clone(),
            counters: counters.clone(),
            host: host.to_string(),
        },
        feed,
    )?;
    let mut note = capture.arrangement.clone();
    for b in &capture.blind_spots {
        note.push_str(&format!("; blind spot: {b}"));
    }
    if !capture.exits_from_proc_connector {
        note.push_str(
            "; proc connector unavailable: exits from exit_group only, deaths by signal not seen",
        );
    }
    let stats = capture.stats.clone();
    let notes_stats = capture.stats.clone();
    let handover = capture.handover.clone();
    let live = capture.handover.clone();
    Ok((
        Capture::Audit(capture),
        Box::new(move || stats.drops()),
        Box::new(move || {
            let mut n = notes_stats.notes();
            n.insert(
                "audit_slot_handovers".into(),
                u64::from(handover.happened()),
            );
            n.insert(
                "audit_handover_duplicates_dropped".into(),
                handover
                    .duplicates_dropped
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            n
        }),
        note,
        Box::new(move || live.describe()),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn start(
    cfg: &Config,
    filter_stats: &Arc<FilterStats>,
    shed_stats: &Arc<ShedStats>,
    offsets: Result<sensor_common::KernelOffsets, ebpf::EbpfError>,
    decision: &ModeDecision,
    requested: RequestedMode,
    tx: &mpsc::Sender<Event>,
    counters: &Arc<Counters>,
    host: &str,
    feed: &ProcessFeed,
) -> Result<Started, RunError> {
    let mode = decision
        .mode
        .ok_or_else(|| RunError::NoMode(decision.reason.clone()))?;
    let audit_usable = decision
        .rungs
        .iter()
        .any(|r| r.mode == Mode::Audit && r.usable);
    if mode == Mode::Ebpf {
        match start_ebpf(
            cfg,
            filter_stats,
            shed_stats,
            offsets,
            tx,
            counters,
            host,
            feed,
        ) {
            Ok((capture, drops, blind_spots)) => {
                // A hook this kernel lacks leaves a named blind spot in the health reason.
                let reason = std::iter::once(decision.reason.clone())
                    .chain(blind_spots.iter().map(|b| format!("blind spot: {b}")))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Ok(Started {
                    mode,
                    reason,
                    capture,
                    drops,
                    notes: None,
                    live: None,
                });
            }
            // A verifier rejection, lockdown or a denied bpf() at load time: fall back.
            Err(e) if requested == RequestedMode::Auto && audit_usable => {
                tracing::warn!(error = %e, "eBPF load failed; falling back to audit");
                let (capture, drops, notes, note, live) =
                    start_audit(cfg, tx, counters, host, feed)?;
                return Ok(Started {
                    mode: Mode::Audit,
                    reason: format!("auto: eBPF failed to load ({e}); audit: {note}"),
                    capture,
                    drops,
                    notes: Some(notes),
                    live: Some(live),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (capture, drops, notes, note, live) = start_audit(cfg, tx, counters, host, feed)?;
    Ok(Started {
        mode,
        reason: format!("{}; {note}", decision.reason),
        capture,
        drops,
        notes: Some(notes),
        live: Some(live),
    })
}

pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    tune_allocator();
    let cfg = opts.config;
    let caps = probe::probe();
    let offsets = ebpf::resolve_offsets();
    let decision = probe::choose_mode(
        &caps,
        offsets.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        AUDIT_IMPLEMENTED,
        opts.requested,
    );
    for rung in &decision.rungs {
        tracing::info!(mode = %rung.mode, usable = rung.usable, reason = %rung.reason, "probe");
    }
    let host = if cfg.sensor.host.is_empty() {
        kernel_hostname()
    } else {
        cfg.sensor.host.clone()
    };
    let counters = Arc::new(Counters::default());
    // The memory ceiling sizes the process cache and the three queues below.
    let plan = limits::memory::plan(
        cfg.limits.memory_mb,
        cfg.enrich.max_entries,
        cfg.sensor.channel_capacity,
        3,
    );
    if plan.cache_entries < cfg.enrich.max_entries
        || plan.channel_capacity < cfg.sensor.channel_capacity
    {
        tracing::info!(
            memory_mb = cfg.limits.memory_mb,
            cache_entries = plan.cache_entries,
            channel_capacity = plan.channel_capacity,
            "memory ceiling lowered the process cache or queue sizes"
        );
    }
    // sources -> enrich -> filter (noise rules, redaction) -> sink: nothing unredacted is
    // ever written or shipped.
    let (tx, enrich_rx) = mpsc::channel(plan.channel_capacity);
    let (enriched_tx, filter_rx) = mpsc::channel(plan.channel_capacity);
    let (out_tx, rx) = mpsc::channel(plan.channel_capacity);
    let (noise, redactor) = cfg
        .filter
        .build()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let filter_stats = Arc::new(FilterStats::for_filter(&noise));
    let filter_stage = tokio::spawn(run_filter_stage(
        filter_rx,
        out_tx,
        noise,
        redactor,
        filter_stats.clone(),
    ));
    let ship_stats = Arc::new(crate::sinks::grpc::ShipStats::default());
    let (ship_stop_tx, ship_stop_rx) = watch::channel(false);
    let sink = if cfg.output.target == "grpc" {
        // Fail fast on TLS files, spool directory and the plaintext policy.
        cfg.ship.check()?;
        let (c, st, mut ship_cfg) = (counters.clone(), ship_stats.clone(), cfg.ship.clone());
        ship_cfg.host = host.clone();
        tracing::info!(address = %cfg.ship.address, "shipping to the collector");
        tokio::spawn(async move {
            if let Err(e) = crate::sinks::grpc::run_shipper(rx, ship_cfg, c, st, ship_stop_rx).await
            {
                tracing::error!(error = %e, "shipper failed");
            }
        })
    } else {
        let out = json::open(&cfg.output.target)?;
        let (format, _) = crate::sinks::ocsf::split_target(&cfg.output.target);
        tokio::spawn(json::run_sink(rx, out, format, counters.clone()))
    };
    let enrich_cfg = crate::enrich::EnrichConfig {
        max_entries: plan.cache_entries,
        ..cfg.enrich.clone()
    };
    let mut cache = ProcessCache::new(&enrich_cfg);
    let scanned = cache.scan_proc(std::path::Path::new("/proc"));
    tracing::info!(scanned, "process cache filled from /proc");
    let cache_stats = Arc::new(Mutex::new(cache.stats()));
    let shed_stats = Arc::new(ShedStats::default());
    // Forks and delivery watermarks of the process-record sources, beside the events.
    let (feed, feed_input) = enrich::process_feed(plan.channel_capacity);
    let attrib_stats = Arc::new(enrich::AttribStats::default());
    let enrich_stage = tokio::spawn(enrich::run_stage(
        enrich_rx,
        enriched_tx,
        cache,
        cache_stats.clone(),
        enrich_cfg,
        Admission::new(counters.clone(), shed_stats.clone()),
        enrich::Attribution {
            feed: feed_input,
            stats: attrib_stats.clone(),
        },
    ));
    let (limits_stop_tx, limits_stop_rx) = watch::channel(false);
    let governor = tokio::spawn(limits::task::run_governor(
        cfg.limits.clone(),
        plan.ceiling_bytes,
        shed_stats.clone(),
        limits_stop_rx.clone(),
    ));

    let started = start(
        &cfg,
        &filter_stats,
        &shed_stats,
        offsets,
        &decision,
        opts.requested,
        &tx,
        &counters,
        &host,
        &feed,
    )
    .await?;
    // Only the capture's producers hold the feed now: it closes when they stop.
    drop(feed);
    let aux = start_aux(&cfg, &tx, &counters, &host);
    release_startup_memory();
    tracing::info!(mode = %started.mode, reason = %started.reason, "capturing");
    let reporter = Arc::new(HealthReporter {
        mode: started.mode.to_string(),
        reason: std::iter::once(started.reason.clone())
            .chain(aux.reasons.iter().cloned())
            .collect::<Vec<_>>()
            .join("; "),
        live_reasons: started.live.into_iter().collect(),
        host: host.clone(),
        started: Instant::now(),
        counters: counters.clone(),
        kernel_drops: std::iter::once(started.drops)
            .chain(aux.drops)
            .chain(std::iter::once(ship_drops(ship_stats.clone())))
            .collect(),
        notes: started
            .notes
            .into_iter()
            .chain(aux.notes)
            .chain(std::iter::once(cache_notes(cache_stats)))
            .chain(std::iter::once({
                let a = attrib_stats.clone();
                Box::new(move || a.notes()) as NoteSource
            }))
            .chain(std::iter::once(ship_notes(ship_stats.clone())))
            .chain(std::iter::once({
                let f = filter_stats.clone();
                Box::new(move || f.notes()) as NoteSource
            }))
            .chain(std::iter::once({
                let sh = shed_stats.clone();
                Box::new(move || sh.notes()) as NoteSource
            }))
            .collect(),
        extra_drops: vec![{
            let sh = shed_stats.clone();
            Box::new(move || sh.drops()) as NoteSource
        }],
    });
    let _ = tx.send(reporter.event()).await;
    let status_writer = StatusWriter::new(
        cfg.status.clone(),
        StatusInputs {
            reporter: reporter.clone(),
            shed: shed_stats.clone(),
            ship: (cfg.output.target == "grpc").then(|| (cfg.ship.address.clone(), ship_stats)),
            output_target: cfg.output.target.clone(),
            cpu_budget_percent: cfg.limits.cpu_percent,
            memory_ceiling_bytes: plan.ceiling_bytes,
            nice: crate::limits::priority::current_nice(),
        },
    );
    let status_task = tokio::spawn(crate::telemetry::status::writer::run(
        status_writer,
        limits_stop_rx,
    ));

    let interval = Duration::from_secs(cfg.health.interval_secs);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = ticker.tick() => { let _ = tx.send(reporter.event()).await; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
        }
    }
    started.capture.stop().await;
    for stop in aux.stoppers {
        let _ = tokio::task::spawn_blocking(stop).await;
    }
    // Everything read is queued; report the final counts, then let the sink drain and flush.
    let _ = tx.send(reporter.event()).await;
    let _ = ship_stop_tx.send(true);
    drop(tx);
    let _ = enrich_stage.await;
    let _ = filter_stage.await;
    let _ = sink.await;
    let _ = limits_stop_tx.send(true);
    let _ = governor.await;
    let _ = status_task.await;
    Ok(())
}

/// Process-cache figures for the health event (evictions are not losses: the events still
/// ship, only their enrichment may be thinner).
fn cache_notes(stats: Arc<Mutex<CacheStats>>) -> NoteSource {
    Box::new(move || {
        let s = *stats.lock().unwrap_or_else(|e| e.into_inner());
        [
            ("process_cache_entries", s.entries),
            ("process_cache_evictions", s.evictions),
            ("process_cache_swept_lost", s.swept_lost),
            ("process_cache_proc_reads", s.proc_reads),
            ("process_cache_proc_misses", s.proc_misses),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    })
}

fn ship_drops(stats: Arc<crate::sinks::grpc::ShipStats>) -> DropSource {
    Box::new(move || stats.drops())
}

fn ship_notes(stats: Arc<crate::sinks::grpc::ShipStats>) -> NoteSource {
    Box::new(move || {
        stats
            .events()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    })
}

/// A source that runs beside the process capture: its loss and fact counters for health, and
/// a blocking stop that leaves the counters readable for the final health event.
trait SideSource: Send + 'static {
    fn drops(&self) -> Vec<(&'static str, u64)>;
    fn notes(&self) -> std::collections::BTreeMap<String, u64>;
    fn stop(&mut self);
}

impl SideSource for LoginCapture {
    fn drops(&self) -> Vec<(&'static str, u64)> {
        LoginCapture::drops(self)
    }
    fn notes(&self) -> std::collections::BTreeMap<String, u64> {
        LoginCapture::notes(self)
    }
    fn stop(&mut self) {
        LoginCapture::stop(self);
    }
}

impl SideSource for FileCapture {
    fn drops(&self) -> Vec<(&'static str, u64)> {
        FileCapture::drops(self)
    }
    fn notes(&self) -> std::collections::BTreeMap<String, u64> {
        FileCapture::notes(self)
    }
    fn stop(&mut self) {
        FileCapture::stop(self);
    }
}

impl SideSource for ConntrackCapture {
    fn drops(&self) -> Vec<(&'static str, u64)> {
        ConntrackCapture::drops(self)
    }
    fn notes(&self) -> std::collections::BTreeMap<String, u64> {
        ConntrackCapture::notes(self)
    }
    fn stop(&mut self) {
        ConntrackCapture::stop(self);
    }
}

/// Sources that run beside the process capture, whatever its mode.
#[derive(Default)]
struct Aux {
    /// What each side source chose, appended to the health reason.
    reasons: Vec<String>,
    stoppers: Vec<Box<dyn FnOnce() + Send>>,
    drops: Vec<DropSource>,
    notes: Vec<NoteSource>,
}

impl Aux {
    /// Registers a started side source. Health keeps reading its counters after it stopped,
    /// so the final health event includes what it counted while draining.
    fn add<S: SideSource>(&mut self, source: S) {
        let shared = Arc::new(Mutex::new(source));
        let (d, n) = (shared.clone(), shared.clone());
        self.drops.push(Box::new(move || {
            d.lock().map(|s| s.drops()).unwrap_or_default()
        }));
        self.notes.push(Box::new(move || {
            n.lock().map(|s| s.notes()).unwrap_or_default()
        }));
        self.stoppers.push(Box::new(move || {
            if let Ok(mut s) = shared.lock() {
                s.stop();
            }
        }));
    }
}

fn start_aux(cfg: &Config, tx: &mpsc::Sender<Event>, counters: &Arc<Counters>, host: &str) -> Aux {
    let mut aux = Aux::default();
    let ctx = || SourceCtx {
        tx: tx.clone(),
        counters: counters.clone(),
        host: host.to_string(),
    };
    if cfg.logins.enabled {
        match LoginCapture::start(&cfg.logins, ctx()) {
            Ok(c) => {
                tracing::info!(wtmp = %cfg.logins.wtmp, btmp = %cfg.logins.btmp, "following logins");
                aux.add(c);
            }
            Err(e) => tracing::error!(error = %e, "logins source failed to start"),
        }
    }
    if cfg.files.enabled {
        let mut fcfg = cfg.files.clone();
        // The sensor must not report (and feed on) its own writes.
        let (_, out_path) = crate::sinks::ocsf::split_target(&cfg.output.target);
        if !["-", "json", "grpc"].contains(&out_path) {
            fcfg.ignore_paths.push(out_path.to_string());
        }
        fcfg.ignore_paths
            .push(cfg.ship.spool_dir.to_string_lossy().into_owned());
        let started = tokio::task::block_in_place(|| FileCapture::start(&fcfg, ctx()));
        match started {
            Ok(c) => {
                tracing::info!(mode = %c.mode, reason = %c.reason, "file activity");
                aux.reasons.push(format!("files: {}", c.mode));
                aux.add(c);
            }
            Err(e) => {
                tracing::warn!(error = %e, "file activity capture unavailable");
                aux.reasons.push(format!("files: unavailable ({e})"));
            }
        }
    }
    if cfg.conntrack.enabled {
        let (will, why) =
            crate::sources::conntrack::probe().will_flow(cfg.conntrack.add_tracking_table);
        if !will {
            tracing::warn!(reason = %why, "conntrack enabled but flow events may not arrive");
        }
        match ConntrackCapture::start(&cfg.conntrack, ctx()) {
            Ok(c) => {
                tracing::info!("conntrack flows enabled");
                aux.add(c);
            }
            Err(e) => tracing::error!(error = %e, "conntrack source failed to start; no flows"),
        }
    }
    aux
}

/// glibc raises its mmap threshold after large frees, after which the next large buffers
/// (the second big read at start-up) come from the heap and stay resident: keep large
/// allocations in mmap so they go back to the OS when freed. Called first thing in `run`.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 * 1024);
    }
}

/// Loading parsed ~5 MB of kernel BTF; hand the freed heap back to the OS so it does not
/// count against the sensor's resident memory for the rest of its life.
fn release_startup_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
