//! `sensor run`: build the pipeline (sources -> enrich -> filter -> sink), start the sources
//! the probe and the config ask for, report health, and stop cleanly on SIGINT/SIGTERM after
//! flushing everything already read (see docs/ARCHITECTURE.md, "Pipeline").
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{
    config::Config,
    enrich::{self, CacheStats, ProcessCache, ProcessFeed},
    event::Event,
    filter::{Filter, FilterStats},
    hostname::kernel_hostname,
    limits::{self, memory::MemoryPlan},
    pipeline::{
        self,
        shed::{Admission, ShedStats},
    },
    probe::{self, RequestedMode},
    sinks::{self, grpc::ShipStats},
    sources::{build, ebpf, SourceEnv, StartError},
    telemetry::{
        counters::Counters,
        fields::Telemetry,
        health::HealthReporter,
        status::writer::{self as status, StatusInputs, StatusWriter},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] StartError),
    #[error(transparent)]
    Sink(#[from] sinks::SinkError),
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

pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    let cfg = opts.config;
    let caps = probe::probe(cfg.ebpf.ia32_hooks);
    let offsets = ebpf::resolve_offsets().map_err(|e| e.to_string());
    let decision = probe::choose_mode(
        &caps,
        offsets.as_ref().map(|_| ()).map_err(Clone::clone),
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
    let plan = memory_plan(&cfg);
    let (pipeline, feed) = Pipeline::start(&cfg, &plan, &host, &counters)?;
    let tx = pipeline.tx.clone();

    let env = SourceEnv {
        tx: tx.clone(),
        counters: counters.clone(),
        host: host.clone(),
        feed,
        filter_stats: pipeline.filter_stats.clone(),
        shed_stats: pipeline.shed_stats.clone(),
        offsets,
    };
    let running = build::start_all(&cfg, &decision, opts.requested, &env)?;
    // Only the sources' producers hold the feed now: it closes when they stop.
    drop(env);
    limits::memory::release_startup_memory();
    tracing::info!(mode = %running.mode, reason = %running.reason, "capturing");
    let reporter = Arc::new(HealthReporter {
        mode: running.mode.to_string(),
        reason: running.reason,
        host,
        started: Instant::now(),
        counters,
        components: running
            .sources
            .iter()
            .map(|s| s.stats())
            .chain(pipeline.components())
            .collect(),
    });
    let _ = tx.send(reporter.event()).await;
    let status_writer = StatusWriter::new(
        cfg.status.clone(),
        StatusInputs {
            reporter: reporter.clone(),
            shed: pipeline.shed_stats.clone(),
            ship: (cfg.output.target == "grpc")
                .then(|| (cfg.ship.address.clone(), pipeline.ship_stats.clone())),
            output_target: cfg.output.target.clone(),
            cpu_budget_percent: cfg.limits.cpu_percent,
            memory_ceiling_bytes: plan.ceiling_bytes,
            nice: limits::priority::current_nice(),
        },
    );
    let status_task = tokio::spawn(status::run(status_writer, pipeline.limits_stop_rx.clone()));

    wait_for_stop(&reporter, &tx, cfg.health.interval_secs).await?;
    for source in running.sources {
        source.stop().await;
    }
    // Everything read is queued; report the final counts, then let the sink drain and flush.
    let _ = tx.send(reporter.event()).await;
    drop(tx);
    pipeline.drain(status_task).await;
    Ok(())
}

/// The task after the sources (enrich, filter and, for JSON lines, the sink), the gRPC sink's
/// task when shipping, and the governor, running.
struct Pipeline {
    /// The sources' channel into the pipeline task.
    tx: mpsc::Sender<Event>,
    filter_stats: Arc<FilterStats>,
    shed_stats: Arc<ShedStats>,
    cache_stats: Arc<Mutex<CacheStats>>,
    attrib_stats: Arc<pipeline::AttribStats>,
    ship_stats: Arc<ShipStats>,
    /// In the order they drain: the pipeline task, then the gRPC sink's task if any.
    stages: Vec<JoinHandle<()>>,
    governor: JoinHandle<()>,
    ship_stop: watch::Sender<bool>,
    limits_stop: watch::Sender<bool>,
    limits_stop_rx: watch::Receiver<bool>,
}

impl Pipeline {
    /// sources -> (channel) -> one task: shed admission, enrich, filter (noise rules,
    /// redaction), then the JSON lines sink or (channel) the gRPC sink's task: nothing
    /// unredacted is ever written or shipped. Also returns the process feed the sources
    /// produce into.
    fn start(
        cfg: &Config,
        plan: &MemoryPlan,
        host: &str,
        counters: &Arc<Counters>,
    ) -> Result<(Self, ProcessFeed), RunError> {
        let (tx, rx) = mpsc::channel(plan.channel_capacity);
        let (noise, redactor) = cfg
            .filter
            .build()
            .map_err(|e| RunError::Config(e.to_string()))?;
        let filter_stats = Arc::new(FilterStats::for_filter(&noise));
        let ship_stats = Arc::new(ShipStats::default());
        let (ship_stop, ship_stop_rx) = watch::channel(false);
        let (output, sink) = sinks::open(
            cfg,
            plan.channel_capacity,
            host,
            counters.clone(),
            ship_stats.clone(),
            ship_stop_rx,
        )?;
        let enrich_cfg = enrich::EnrichConfig {
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
        let attrib_stats = Arc::new(pipeline::AttribStats::default());
        let task = tokio::spawn(pipeline::run_stage(
            rx,
            pipeline::Downstream {
                filter: Filter::new(noise, redactor, filter_stats.clone()),
                output,
            },
            cache,
            cache_stats.clone(),
            enrich_cfg,
            Admission::new(counters.clone(), shed_stats.clone()),
            pipeline::Attribution {
                feed: feed_input,
                stats: attrib_stats.clone(),
            },
        ));
        let (limits_stop, limits_stop_rx) = watch::channel(false);
        let governor = tokio::spawn(limits::task::run_governor(
            cfg.limits.clone(),
            plan.ceiling_bytes,
            shed_stats.clone(),
            limits_stop_rx.clone(),
        ));
        let pipeline = Pipeline {
            tx,
            filter_stats,
            shed_stats,
            cache_stats,
            attrib_stats,
            ship_stats,
            stages: std::iter::once(task).chain(sink).collect(),
            governor,
            ship_stop,
            limits_stop,
            limits_stop_rx,
        };
        Ok((pipeline, feed))
    }

    /// The stages' counters for health (the shedder's are written at admission).
    fn components(&self) -> [Arc<dyn Telemetry>; 4] {
        [
            self.cache_stats.clone(),
            self.attrib_stats.clone(),
            self.ship_stats.clone(),
            self.filter_stats.clone(),
        ]
    }

    /// Once every sender of the sources' channel is gone: lets each stage drain in turn (the
    /// gRPC sink then waits for its acknowledgements), then stops the governor and the
    /// status writer.
    async fn drain(self, status_task: JoinHandle<()>) {
        let _ = self.ship_stop.send(true);
        drop(self.tx);
        for stage in self.stages {
            let _ = stage.await;
        }
        let _ = self.limits_stop.send(true);
        let _ = self.governor.await;
        let _ = status_task.await;
    }
}

/// The memory ceiling sizes the process cache and the queues: the sources' queue, and the
/// gRPC sink's when shipping.
fn memory_plan(cfg: &Config) -> MemoryPlan {
    let queues = if cfg.output.target == "grpc" { 2 } else { 1 };
    let plan = limits::memory::plan(
        cfg.limits.memory_mb,
        cfg.enrich.max_entries,
        cfg.sensor.channel_capacity,
        queues,
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
    plan
}

/// Sends a health event every `interval_secs` until SIGTERM or SIGINT.
async fn wait_for_stop(
    reporter: &HealthReporter,
    tx: &mpsc::Sender<Event>,
    interval_secs: u64,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interval = Duration::from_secs(interval_secs);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = ticker.tick() => { let _ = tx.send(reporter.event()).await; }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(()); }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); return Ok(()); }
        }
    }
}
