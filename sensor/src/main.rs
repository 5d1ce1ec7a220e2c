//! `sensor`: watch this host and print security events as JSON lines.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sensor::{
    config::Config,
    probe::{self, RequestedMode},
    runtime::{self, RunOptions, AUDIT_IMPLEMENTED},
    sources::ebpf,
};

/// glibc behind a per-thread cache of small freed blocks (sensor/src/alloc_cache.rs).
#[global_allocator]
static ALLOC: sensor::alloc_cache::CachingAlloc = sensor::alloc_cache::CachingAlloc;

#[derive(Parser)]
#[command(
    name = "sensor",
    version,
    about = "Linux host security sensor",
    long_about = "Linux host security sensor: process exec/exit, connects, file activity, \
logins and privilege changes, from eBPF tracepoints or (fallback) the audit netlink API, \
written as JSON lines or shipped to a collector over one outbound gRPC stream.\n\n\
Configuration: /etc/sensor/sensor.toml (every option: `sensor config --defaults`; sections \
[sensor] [output] [health] [ebpf] [audit] [logins] [enrich] [ship] [conntrack] [filter] \
[files] [limits] [log] [status])."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    /// Probe the host and choose (eBPF when it loads, else audit).
    Auto,
    /// eBPF tracepoints.
    Ebpf,
    /// The audit netlink API.
    Audit,
}

impl ModeArg {
    fn as_str(self) -> &'static str {
        match self {
            ModeArg::Auto => "auto",
            ModeArg::Ebpf => "ebpf",
            ModeArg::Audit => "audit",
        }
    }
}

/// Exit code of `sensor status` when the status file or the config cannot be read.
const STATUS_UNREADABLE: i32 = 4;

#[derive(Subcommand)]
enum Command {
    /// Capture events and write them as JSON lines or ship them to a collector.
    Run {
        /// Capture mode. Overrides the config file.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// `json` or `-` for stdout, a file path, `ocsf` (OCSF 1.5.0 lines on stdout) or
        /// `ocsf:FILE`, or `unix:/path` / `grpc://host:port` / `https://host:port` to ship to a
        /// collector. Overrides the config file.
        #[arg(long)]
        output: Option<String>,
        /// Config file (default /etc/sensor/sensor.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seconds between health events. Overrides the config file.
        #[arg(long)]
        health_interval: Option<u64>,
        /// Status file for `sensor status`. Overrides status.path of the config file.
        #[arg(long, value_name = "PATH")]
        status: Option<PathBuf>,
    },
    /// Print the host's capabilities and the mode `run --mode auto` would choose.
    Probe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Config file whose settings the report follows (`files`, `ebpf.ia32_hooks`; default
        /// /etc/sensor/sensor.toml if it exists).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Print the running sensor's state from its status file; exit 0 healthy, 1 degraded,
    /// 3 not running, 4 status file or config unreadable (for health checks).
    Status {
        /// Status file (default: status.path of the config, /run/sensor/status.json).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Config file to take status.path from (default /etc/sensor/sensor.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the status file's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the effective configuration, the defaults, or check a config file.
    Config {
        /// Print the built-in defaults as TOML.
        #[arg(long)]
        defaults: bool,
        /// Validate FILE like `run` would; on an error name the key and line, exit 1.
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
}

/// `sensor status`: prints the report and returns the exit code.
fn status(path: Option<PathBuf>, config: Option<PathBuf>, json: bool) -> anyhow::Result<i32> {
    use sensor::telemetry::status::{self, file};
    let path = match path {
        Some(p) => p,
        None => match Config::load(config.as_deref()) {
            Ok(c) => PathBuf::from(c.status.path),
            Err(e) => {
                eprintln!("sensor: cannot read the config: {e:#}");
                return Ok(STATUS_UNREADABLE);
            }
        },
    };
    let s = match file::read(&path) {
        Ok(s) => s,
        Err(e @ status::StatusError::Missing { .. }) => {
            println!("sensor: not running\n  {e}");
            return Ok(3);
        }
        Err(e) => {
            eprintln!("sensor: {e}");
            return Ok(STATUS_UNREADABLE);
        }
    };
    let now = sensor::timefmt::unix_now_ns() as f64 / 1e9;
    let verdict = status::assess(&s, file::live_start_ticks(s.pid), now);
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", status::render::text(&s, &verdict));
    }
    Ok(verdict.exit_code())
}

/// `sensor config --check FILE`.
fn check_config(file: &Path) -> anyhow::Result<i32> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match Config::check(&text, &file.display().to_string()) {
        Ok(_) => {
            println!("{}: ok", file.display());
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        sensor::logging::init(&Default::default());
    }
    match cli.command {
        Command::Run {
            mode,
            output,
            config,
            health_interval,
            status,
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(m) = mode {
                cfg.sensor.mode = m.as_str().into();
            }
            if let Some(o) = output {
                if ["grpc://", "grpcs://", "https://", "http://", "unix:"]
                    .iter()
                    .any(|p| o.starts_with(p))
                {
                    cfg.output.target = "grpc".into();
                    cfg.ship.address = o;
                } else {
                    cfg.output.target = o;
                }
            }
            if let Some(h) = health_interval {
                cfg.health.interval_secs = h;
            }
            if let Some(p) = status {
                cfg.status.path = p.display().to_string();
            }
            cfg.validate()?;
            sensor::logging::init(&cfg.log);
            sensor::logging::abort_on_panic();
            // Before any thread exists: threads inherit the nice value of their creator.
            if let Err(e) = sensor::limits::priority::set_nice(cfg.limits.nice) {
                tracing::warn!(error = %e, "cannot lower the scheduling priority");
            }
            let requested: RequestedMode = cfg.sensor.mode.parse().context("--mode")?;
            sensor::limits::memory::tune_allocator();
            // One worker: the pipeline is one task, and with two workers every wake-up from a
            // source thread also woke the idle worker, which found nothing and parked again
            // (docs/ARCHITECTURE.md, Pipeline). Blocking writes and sweeps use
            // `block_in_place`, which hands the worker to another thread meanwhile.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(runtime::run(RunOptions {
                config: cfg,
                requested,
            }))?;
        }
        Command::Probe { json, config } => {
            let cfg = match config {
                Some(path) => Config::load(Some(&path))?,
                None => Config::load(None).unwrap_or_default(),
            };
            let caps = probe::probe(cfg.ebpf.ia32_hooks);
            let decision = probe::choose_mode(
                &caps,
                ebpf::check_offsets(),
                AUDIT_IMPLEMENTED,
                RequestedMode::Auto,
            );
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"capabilities": caps, "decision": decision})
                    )?
                );
            } else {
                print!("{}", probe::render_report(&caps, &decision));
                match sensor::sources::files::source::FileCapture::probe(&cfg.files) {
                    Ok((mode, why)) => println!("file activity    {mode}  {why}"),
                    Err(e) => println!("file activity    unavailable  {e}"),
                }
                let (flows, why) = sensor::sources::conntrack::events_will_flow();
                println!(
                    "conntrack events {}  {why} (flows are off unless conntrack.enabled = true)",
                    if flows { "yes" } else { "no " }
                );
            }
        }
        Command::Status { path, config, json } => {
            std::process::exit(status(path, config, json)?);
        }
        Command::Config { defaults, check } => {
            if let Some(file) = check {
                std::process::exit(check_config(&file)?);
            }
            if defaults {
                print!("{}", Config::defaults_toml());
            } else {
                print!("{}", toml::to_string_pretty(&Config::load(None)?)?);
            }
        }
    }
    Ok(())
}
