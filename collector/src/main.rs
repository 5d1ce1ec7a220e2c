//! `collector`: receive sensor events over gRPC, store them in SQLite, query them.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use collector::{
    config::CollectorConfig,
    ingest_stream::now_ns,
    jetstream, render, serve, sessions,
    store::{self, query::Filter},
    timearg::parse_time_arg,
};

#[derive(Parser)]
#[command(
    name = "collector",
    version,
    about = "Receives and stores sensor events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server (and the metrics endpoint).
    Serve(ServeArgs),
    /// Print stored events matching filters, oldest first.
    Query(QueryArgs),
    /// Per-session timelines: the login and the commands run under each session id.
    Sessions(SessionArgs),
    /// One session as a self-contained HTML page (login, timeline, process tree, files,
    /// connections, privilege changes, logout), for a responder to look at or attach.
    Report(ReportArgs),
    /// Fleet mode: copy the JetStream stream into the SQLite database with a durable
    /// consumer (resumes where it stopped; reports its lag).
    Consume(ConsumeArgs),
    /// Print the built-in configuration defaults as TOML, or check a config file.
    Config(ConfigArgs),
    /// A small CA and the certificates it signs (one per sensor host, one for the collector).
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create DIR/ca.pem and DIR/ca.key (mode 0600); an existing CA is never replaced.
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Sign a sensor's client certificate: its only DNS name is HOST, the host its events
    /// must carry. Writes DIR/HOST.pem and DIR/HOST.key.
    Sensor {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        host: String,
    },
    /// Sign the collector's server certificate for every NAME sensors connect to (DNS names
    /// or IP addresses). Writes DIR/<first NAME>.pem and .key.
    Collector {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long = "name", required = true)]
        names: Vec<String>,
    },
}

#[derive(Args)]
struct ConfigArgs {
    /// Validate FILE like `serve` would (syntax, unknown keys, values); print "FILE: ok" and
    /// exit 0, or the error and exit 1.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Synchronous {
    /// fsync the WAL on every commit: nothing acknowledged is lost, even on power loss.
    Full,
    /// fsync at checkpoints only: faster; a power loss may lose recent acknowledged batches.
    Normal,
}

#[derive(Args)]
struct ConsumeArgs {
    /// TOML config file (its [jetstream] and [storage] sections); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// SQLite database file to fill.
    #[arg(long)]
    db: Option<PathBuf>,
    /// NATS server URLs, comma separated.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Durable consumer name (one running `consume` per name).
    #[arg(long)]
    durable: Option<String>,
    /// Exit once nothing is left to read, printing a JSON report on stdout.
    #[arg(long)]
    until_caught_up: bool,
    /// Print the consumer's position and lag as JSON and exit.
    #[arg(long)]
    status: bool,
    /// Prometheus metrics address (collector_consume_lag_messages, ...); empty = off.
    #[arg(long, default_value = "")]
    metrics_listen: String,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC listen address: unix:/path (local mode) or host:port.
    #[arg(long)]
    listen: Option<String>,
    /// SQLite database file.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Prometheus metrics address; "" disables.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Server certificate chain (PEM); enables TLS together with --tls-key.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the server certificate.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to.
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs --client-ca).
    #[arg(long)]
    require_client_cert: bool,
    /// SQLite synchronous mode (default: the config's, else full).
    #[arg(long, value_enum)]
    synchronous: Option<Synchronous>,
    /// Largest gRPC message accepted, in bytes (a bigger batch is refused with a clear error).
    #[arg(long)]
    max_message_bytes: Option<usize>,
    /// Most events accepted in one batch.
    #[arg(long)]
    max_batch_events: Option<u32>,
    /// Allow plaintext gRPC on a non-loopback address.
    #[arg(long)]
    allow_plaintext: bool,
    /// Write {"grpc": ADDR, "metrics": ADDR} here once listening (for scripts and tests).
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[derive(Args)]
struct DbArgs {
    /// SQLite database file (default: the config's, else /var/lib/collector/events.db).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Read the database path from this collector config.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Host name (repeatable).
    #[arg(long)]
    host: Vec<String>,
    /// Event kind (repeatable).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        sensor_proto::v1::Kind::ALL.map(sensor_proto::v1::Kind::as_str)))]
    kind: Vec<String>,
    /// From this time: RFC 3339, Unix seconds, or a duration ago (15m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Only events of this process id (the process itself, not its children).
    #[arg(long)]
    pid: Option<u32>,
    /// A uid / login uid (number) or a user name.
    #[arg(long)]
    user: Option<String>,
    /// Audit session id.
    #[arg(long)]
    session: Option<u32>,
    /// Substring of argv, exe or file path.
    #[arg(long)]
    text: Option<String>,
    /// Only events of this sensor id.
    #[arg(long)]
    sensor: Option<String>,
    /// At most this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// Newest first.
    #[arg(long)]
    newest_first: bool,
    /// Output format: a table for people, JSON lines (the event model plus sensor_id and
    /// boot_id), or OCSF 1.5.0 JSON lines.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueryFormat {
    Table,
    Json,
    Ocsf,
}

#[derive(Args)]
struct ReportArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Audit session id.
    #[arg(long)]
    session: u32,
    /// Write the page here.
    #[arg(long, value_name = "FILE")]
    html: PathBuf,
    /// Host of the session (needed when several hosts have a session with this id).
    #[arg(long)]
    host: Option<String>,
    /// Only events at or after this time: RFC 3339, Unix seconds, or a duration ago.
    #[arg(long)]
    since: Option<String>,
    /// Only events before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
}

#[derive(Args)]
struct SessionArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Only sessions of this host (repeatable).
    #[arg(long)]
    host: Vec<String>,
    /// Only this audit session id.
    #[arg(long)]
    session: Option<u32>,
    /// Only sessions of this user.
    #[arg(long)]
    user: Option<String>,
    /// Build sessions from events at or after this time: RFC 3339, Unix seconds, or a duration
    /// ago (15m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Build sessions from events before this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// One JSON object per session instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only at a terminal: a log in a file, a pipe or the journal has none.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COLLECTOR_LOG")
                // tonic reports refused TLS handshakes (no or untrusted client certificate)
                // only at debug level, under this target.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "info,tonic::transport::server::io_stream=debug",
                    )
                }),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(a) => run_serve(a),
        Command::Query(a) => run_query(a),
        Command::Sessions(a) => run_sessions(a),
        Command::Report(a) => run_report(a),
        Command::Consume(a) => run_consume(a),
        Command::Certs(c) => run_certs(c),
        Command::Config(ConfigArgs { check: Some(file) }) => {
            match CollectorConfig::load(&file).and_then(|c| c.validate()) {
                Ok(()) => {
                    println!("{}: ok", file.display());
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    std::process::exit(1);
                }
            }
        }
        Command::Config(ConfigArgs { check: None }) => {
            print!("{}", CollectorConfig::defaults_toml());
            Ok(())
        }
    }
}

fn run_serve(a: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => CollectorConfig::load(p)?,
        None => CollectorConfig::default(),
    };
    if let Some(v) = a.listen {
        cfg.server.listen = v;
    }
    if let Some(v) = a.db {
        cfg.storage.path = v;
    }
    if let Some(v) = a.metrics_listen {
        cfg.metrics.listen = v;
    }
    if a.tls_cert.is_some() {
        cfg.tls.cert_file = a.tls_cert;
    }
    if a.tls_key.is_some() {
        cfg.tls.key_file = a.tls_key;
    }
    if a.client_ca.is_some() {
        cfg.tls.client_ca_file = a.client_ca;
    }
    cfg.tls.require_client_cert |= a.require_client_cert;
    cfg.server.allow_plaintext |= a.allow_plaintext;
    if let Some(v) = a.synchronous {
        cfg.storage.synchronous = match v {
            Synchronous::Full => "full",
            Synchronous::Normal => "normal",
        }
        .into();
    }
    if let Some(v) = a.max_message_bytes {
        cfg.server.max_message_bytes = v;
    }
    if let Some(v) = a.max_batch_events {
        cfg.server.max_batch_events = v;
    }
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ready_file = a.ready_file;
    rt.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        };
        let mut ready_err = None;
        serve::serve(cfg, shutdown, |bound| {
            if let Some(path) = &ready_file {
                let text = serde_json::json!({
                    "grpc": bound.grpc,
                    "metrics": bound.metrics.map(|m| m.to_string()),
                })
                .to_string();
                if let Err(e) = write_atomic(path, text.as_bytes()) {
                    ready_err = Some(e);
                }
            }
        })
        .await?;
        if let Some(e) = ready_err {
            return Err(e);
        }
        anyhow::Ok(())
    })
}

fn run_certs(c: CertsCommand) -> anyhow::Result<()> {
    use collector::certs::{init_ca, issue, Role};
    match c {
        CertsCommand::Init { dir } => {
            let p = init_ca(&dir)?;
            println!("{}", p.display());
        }
        CertsCommand::Sensor { dir, host } => {
            let (c, k) = issue(&dir, &[host], Role::Sensor)?;
            println!("{}\n{}", c.display(), k.display());
        }
        CertsCommand::Collector { dir, names } => {
            let (c, k) = issue(&dir, &names, Role::Collector)?;
            println!("{}\n{}", c.display(), k.display());
        }
    }
    Ok(())
}

fn run_consume(a: ConsumeArgs) -> anyhow::Result<()> {
    let mut cfg = match &a.config {
        Some(p) => CollectorConfig::load(p)?,
        None => CollectorConfig::default(),
    };
    if let Some(v) = a.db {
        cfg.storage.path = v;
    }
    if !a.servers.is_empty() {
        cfg.jetstream.servers = a.servers;
    }
    if let Some(v) = a.durable {
        cfg.jetstream.durable = v;
    }
    cfg.jetstream.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if a.status {
            let s = jetstream::consume::status(&cfg).await?;
            println!("{}", serde_json::to_string(&s)?);
            return anyhow::Ok(());
        }
        let metrics = std::sync::Arc::new(collector::metrics::Metrics::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let http = if a.metrics_listen.is_empty() {
            None
        } else {
            let l = collector::http::bind(&a.metrics_listen).await?;
            tracing::info!(metrics = ?l.local_addr().ok(), "metrics endpoint");
            Some(tokio::spawn(collector::http::serve(
                l,
                metrics.clone(),
                stop_rx,
            )))
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        };
        let opts = jetstream::consume::Options {
            until_caught_up: a.until_caught_up,
            report_every: std::time::Duration::from_secs(5),
        };
        let report = jetstream::consume::run(&cfg, opts, metrics, shutdown).await?;
        let _ = stop_tx.send(true);
        if let Some(h) = http {
            let _ = h.await;
        }
        tracing::info!(
            messages = report.messages,
            events = report.events,
            stored = report.events_stored,
            duplicates = report.duplicates,
            lag_messages = report.lag_messages,
            "consume stopped"
        );
        println!("{}", serde_json::to_string(&report)?);
        anyhow::Ok(())
    })
}

fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn db_path(a: &DbArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &a.db {
        return Ok(p.clone());
    }
    Ok(match &a.config {
        Some(c) => CollectorConfig::load(c)?.storage.path,
        None => CollectorConfig::default().storage.path,
    })
}

fn time_arg(v: &Option<String>, now: i64, flag: &str) -> anyhow::Result<Option<i64>> {
    v.as_deref()
        .map(|s| parse_time_arg(s, now))
        .transpose()
        .with_context(|| flag.to_string())
}

fn run_query(a: QueryArgs) -> anyhow::Result<()> {
    for k in &a.kind {
        if sensor_proto::names::kind_from_name(k).is_none() {
            anyhow::bail!(
                "--kind {k:?}: expected one of {}",
                sensor_proto::v1::Kind::ALL
                    .map(sensor_proto::v1::Kind::as_str)
                    .join(", ")
            );
        }
    }
    let now = now_ns();
    let filter = Filter {
        hosts: a.host,
        kinds: a.kind,
        since_ns: time_arg(&a.since, now, "--since")?,
        until_ns: time_arg(&a.until, now, "--until")?,
        pid: a.pid,
        user: a.user,
        session: a.session,
        text: a.text,
        sensor_id: a.sensor,
        with_session: false,
        limit: a.limit,
        newest_first: a.newest_first,
    };
    let conn = store::open_ro(&db_path(&a.db)?)?;
    let rows = store::query::fetch(&conn, &filter)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    use std::io::Write as _;
    let format = if a.json { QueryFormat::Json } else { a.format };
    match format {
        QueryFormat::Json => {
            for r in &rows {
                out.write_all(&render::stored_line(r))?;
            }
        }
        QueryFormat::Ocsf => {
            for r in &rows {
                writeln!(out, "{}", render::stored_ocsf(r))?;
            }
        }
        QueryFormat::Table => write!(out, "{}", render::table(&rows))?,
    }
    out.flush()?;
    Ok(())
}

fn run_report(a: ReportArgs) -> anyhow::Result<()> {
    let now = now_ns();
    let window = collector::report::Window {
        host: a.host,
        since_ns: time_arg(&a.since, now, "--since")?,
        until_ns: time_arg(&a.until, now, "--until")?,
    };
    let conn = store::open_ro(&db_path(&a.db)?)?;
    let (html, events) = collector::report::build(&conn, a.session, &window)?;
    std::fs::write(&a.html, html).with_context(|| format!("writing {}", a.html.display()))?;
    eprintln!(
        "{}: session {}, {events} events",
        a.html.display(),
        a.session
    );
    Ok(())
}

fn run_sessions(a: SessionArgs) -> anyhow::Result<()> {
    let now = now_ns();
    let filter = Filter {
        hosts: a.host,
        kinds: sessions::TIMELINE_KINDS.map(String::from).to_vec(),
        since_ns: time_arg(&a.since, now, "--since")?,
        until_ns: time_arg(&a.until, now, "--until")?,
        user: a.user,
        session: a.session,
        with_session: true,
        ..Default::default()
    };
    let conn = store::open_ro(&db_path(&a.db)?)?;
    let rows = store::query::fetch(&conn, &filter)?;
    let grouped = sessions::group(&rows);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    use std::io::Write as _;
    if a.json {
        for s in &grouped {
            writeln!(out, "{}", sessions::session_json(s))?;
        }
    } else {
        write!(out, "{}", sessions::render_text(&grouped))?;
    }
    out.flush()?;
    Ok(())
}
