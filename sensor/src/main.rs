//! `sensor`: watch this host and print security events as JSON lines.
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sensor::{
    config::Config,
    probe::{self, RequestedMode},
    runtime::{self, RunOptions, AUDIT_IMPLEMENTED},
    sources::ebpf,
};

#[derive(Parser)]
#[command(name = "sensor", version, about = "Linux host security sensor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture events and write them as JSON lines.
    Run {
        /// auto (probe and choose), ebpf or audit. Overrides the config file.
        #[arg(long)]
        mode: Option<String>,
        /// `json` or `-` for stdout, a file path, or `grpc://host:port` / `https://host:port` to
        /// ship to a collector. Overrides the config file.
        #[arg(long)]
        output: Option<String>,
        /// Config file (default /etc/sensor/sensor.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seconds between health events. Overrides the config file.
        #[arg(long)]
        health_interval: Option<u64>,
    },
    /// Print the host's capabilities and the mode `run --mode auto` would choose.
    Probe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print configuration.
    Config {
        /// Print the built-in defaults as TOML.
        #[arg(long)]
        defaults: bool,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SENSOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Run {
            mode,
            output,
            config,
            health_interval,
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(m) = mode {
                cfg.sensor.mode = m;
            }
            if let Some(o) = output {
                if ["grpc://", "grpcs://", "https://", "http://"]
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
            cfg.validate()?;
            let requested: RequestedMode = cfg.sensor.mode.parse().context("--mode")?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(runtime::run(RunOptions {
                config: cfg,
                requested,
            }))?;
        }
        Command::Probe { json } => {
            let caps = probe::probe();
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
                let cfg = Config::load(None).unwrap_or_default();
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
        Command::Config { defaults } => {
            if defaults {
                print!("{}", Config::defaults_toml());
            } else {
                print!("{}", toml::to_string_pretty(&Config::load(None)?)?);
            }
        }
    }
    Ok(())
}
