//! The one outbound connection: address and TLS policy, and the link task that keeps one
//! bidirectional gRPC stream open (HTTP/2 keepalive, gzip, reconnect with jittered
//! exponential backoff) and reports what happens to the stage as [`LinkEvent`]s.
//!
//! TLS uses rustls with only the configured CA as trust anchor (no system roots are
//! compiled in). Plaintext is refused unless `allow_plaintext_loopback = true` and the
//! address is a loopback address.
use super::backoff::{seed, Backoff};
pub use super::codec::Outbound;
use super::codec::StreamCodec;
use std::error::Error as _;
use std::net::IpAddr;

use sensor_proto::error_chain::error_chain;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sensor_proto::v1::{self as pb, collector_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::{ShipConfig, ShipStats};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid collector address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error(
        "refusing plaintext gRPC to {addr}: set ship.ca_file to use TLS, or, for a collector \
         on this host only, set ship.allow_plaintext_loopback = true with a loopback address"
    )]
    PlaintextRefused { addr: String },
    #[error("{addr} asks for TLS but ship.ca_file is not set")]
    NoCa { addr: String },
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Where to connect and whether with TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Local mode: the collector's Unix socket (host and port are then unused).
    pub unix: Option<std::path::PathBuf>,
}

/// True for 127.0.0.0/8, ::1 (also IPv4-mapped) and `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback(),
        Ok(IpAddr::V6(a)) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
        Err(_) => false,
    }
}

impl Target {
    /// Parses `address` and applies the TLS policy.
    pub fn from_config(cfg: &ShipConfig) -> Result<Target, ClientError> {
        Self::parse(&cfg.address, cfg)
    }

    /// `address`, then each of `fallback_addresses`, in the order they are tried.
    pub fn all_from_config(cfg: &ShipConfig) -> Result<Vec<Target>, ClientError> {
        std::iter::once(&cfg.address)
            .chain(&cfg.fallback_addresses)
            .map(|a| Self::parse(a, cfg))
            .collect()
    }

    /// Parses one collector address under `cfg`'s TLS policy.
    pub fn parse(address: &str, cfg: &ShipConfig) -> Result<Target, ClientError> {
        let addr = address.trim();
        let bad = |reason: &str| ClientError::Address {
            addr: addr.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = addr.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(bad("unix: needs an absolute socket path"));
            }
            return Ok(Target {
                host: "localhost".into(),
                port: 0,
                tls: false,
                unix: Some(path.into()),
            });
        }
        let (scheme, rest) = match addr.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, addr),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("no path allowed"));
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, p) = r
                .split_once("]:")
                .ok_or_else(|| bad("expected [v6]:port"))?;
            (format!("[{h}]"), p)
        } else {
            let (h, p) = rest
                .rsplit_once(':')
                .ok_or_else(|| bad("expected host:port"))?;
            (h.to_string(), p)
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("empty host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let tls = match scheme.as_deref() {
            Some("https" | "grpcs") => {
                if cfg.ca_file.is_none() {
                    return Err(ClientError::NoCa {
                        addr: addr.to_string(),
                    });
                }
                true
            }
            Some("http") => false,
            Some("grpc") | None => cfg.ca_file.is_some(),
            Some(_) => return Err(bad("scheme must be grpc, grpcs, https or http")),
        };
        let loopback_ok = cfg.allow_plaintext_loopback && is_loopback_host(&host);
        if !tls && !loopback_ok {
            return Err(ClientError::PlaintextRefused {
                addr: addr.to_string(),
            });
        }
        Ok(Target {
            host,
            port,
            tls,
            unix: None,
        })
    }

    pub fn uri(&self) -> String {
        if let Some(p) = &self.unix {
            return format!("unix:{}", p.display());
        }
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The name the server certificate must carry.
    pub fn server_name(&self, cfg: &ShipConfig) -> String {
        if cfg.server_name.is_empty() {
            self.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        } else {
            cfg.server_name.clone()
        }
    }
}

/// The PEM material of a TLS connection, read once at start.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl TlsFiles {
    /// `None` when the target is plaintext.
    pub fn load(cfg: &ShipConfig) -> Result<Option<TlsFiles>, ClientError> {
        if !Target::all_from_config(cfg)?.iter().any(|t| t.tls) {
            return Ok(None);
        }
        let ca_path = cfg.ca_file.as_deref().ok_or_else(|| ClientError::NoCa {
            addr: cfg.address.clone(),
        })?;
        let ca = read("CA file", ca_path)?;
        if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
            return Err(ClientError::Tls(format!(
                "{} holds no PEM certificate",
                ca_path.display()
            )));
        }
        let identity = match (&cfg.client_cert_file, &cfg.client_key_file) {
            (Some(c), Some(k)) => Some((read("client certificate", c)?, read("client key", k)?)),
            _ => None,
        };
        Ok(Some(TlsFiles { ca, identity }))
    }
}

/// The endpoint of the one connection: keepalive instead of request timeouts.
pub fn endpoint(
    cfg: &ShipConfig,
    target: &Target,
    tls: Option<&TlsFiles>,
) -> Result<Endpoint, ClientError> {
    let connect_timeout = Duration::from_secs(cfg.connect_timeout_secs.max(1));
    let uri = if target.unix.is_some() {
        // Only the authority of the request; the connection is the Unix socket.
        "http://localhost".to_string()
    } else {
        target.uri()
    };
    let mut ep = Endpoint::from_shared(uri)
        .map_err(|e| ClientError::Address {
            addr: cfg.address.clone(),
            reason: e.to_string(),
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .user_agent(concat!("sensor/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    if cfg.keepalive_interval_secs > 0 {
        ep = ep
            .http2_keep_alive_interval(Duration::from_secs(cfg.keepalive_interval_secs))
            .keep_alive_timeout(Duration::from_secs(cfg.keepalive_timeout_secs.max(1)))
            .keep_alive_while_idle(true);
    }
    if let Some(t) = tls {
        let mut tc = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&t.ca))
            .domain_name(target.server_name(cfg))
            .timeout(connect_timeout);
        if let Some((cert, key)) = &t.identity {
            tc = tc.identity(Identity::from_pem(cert, key));
        }
        ep = ep
            .tls_config(tc)
            .map_err(|e| ClientError::Tls(error_chain(&e)))?;
    }
    Ok(ep)
}

/// What the link task tells the stage.
#[derive(Debug)]
pub enum LinkEvent {
    /// A stream is open; send on this (the Hello first).
    Up(mpsc::Sender<Outbound>),
    Welcome(pb::Welcome),
    Ack(pb::Ack),
    /// The stream or the connection attempt failed; in-flight batches are not acknowledged.
    Down(String),
}

fn status_chain(s: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", s.code(), s.message());
    if let Some(src) = s.source() {
        let t = error_chain(src);
        if t.starts_with(s.message()) {
            out = format!("{:?}: {t}", s.code());
        } else if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
    }
    out
}

/// A plain-words reason for TLS refusals, so the log says what to fix.
pub fn tls_hint(chain: &str) -> Option<&'static str> {
    let c = chain.to_ascii_lowercase();
    if c.contains("unknownissuer") || c.contains("invalid peer certificate: unknown") {
        Some("the collector's certificate does not chain to the pinned CA (ship.ca_file)")
    } else if c.contains("notvalidforname") {
        Some("the collector's certificate does not name this address (ship.server_name)")
    } else if c.contains("expired") {
        Some("the collector's certificate has expired or is not yet valid")
    } else if c.contains("certificaterequired") || c.contains("certificate required") {
        Some("the collector requires a client certificate (ship.client_cert_file, ship.client_key_file)")
    } else if c.contains("badcertificate")
        || c.contains("unknownca")
        || c.contains("unknown ca")
        || c.contains("bad certificate")
    {
        Some("the collector rejected our client certificate")
    } else if c.contains("tls") || c.contains("handshake") || c.contains("certificate") {
        Some("TLS handshake failed")
    } else {
        None
    }
}

/// A stream that stayed up this long counts as healthy: the backoff starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// Where an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect or the TLS handshake as the client sees it.
    Connect,
    /// After the handshake, before the collector said anything.
    Open,
    /// On an established stream.
    Stream,
}

/// The reason to log for a failed attempt: TLS alerts by name, and for a TLS connection
/// closed right after the handshake, the likely cause (TLS 1.3 clients learn about a
/// refused client certificate only at their first read, often as a bare broken pipe).
pub fn failure_hint(
    chain: &str,
    phase: Phase,
    tls: bool,
    has_identity: bool,
) -> Option<&'static str> {
    if let Some(h) = tls_hint(chain) {
        return Some(h);
    }
    let c = chain.to_ascii_lowercase();
    let closed = [
        "broken pipe",
        "connection reset",
        "closed",
        "eof",
        "transport error",
    ]
    .iter()
    .any(|w| c.contains(w));
    if tls && phase == Phase::Open && closed {
        return Some(if has_identity {
            "the collector closed the connection after the TLS handshake: it probably rejected our client certificate"
        } else {
            "the collector closed the connection after the TLS handshake: it probably requires a client certificate (ship.client_cert_file, ship.client_key_file)"
        });
    }
    None
}

/// One collector the link may connect to.
#[derive(Debug, Clone)]
pub struct Link {
    pub uri: String,
    pub tls: bool,
    pub endpoint: Endpoint,
    /// Local mode: connect to this socket (after its checks) instead of `uri`.
    pub unix: Option<std::path::PathBuf>,
}

/// Which collector to try: stays on one while it works, moves to the next (wrapping
/// around) when an attempt fails or its stream breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    current: usize,
    len: usize,
}

impl Rotation {
    pub fn new(len: usize) -> Self {
        Self {
            current: 0,
            len: len.max(1),
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// Moves to the next collector.
    pub fn fail(&mut self) {
        self.current = (self.current + 1) % self.len;
    }
}

/// Runs the connection until `events` is closed (the stage is gone): one stream at a time,
/// to the current collector of `links`, moving to the next one after a failure, with the
/// jittered backoff between attempts.
pub async fn run_link(
    cfg: ShipConfig,
    links: Vec<Link>,
    events: mpsc::Sender<LinkEvent>,
    stats: Arc<ShipStats>,
) {
    if links.is_empty() {
        return;
    }
    let mut rotation = Rotation::new(links.len());
    let has_identity = cfg.client_cert_file.is_some();
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.backoff_initial_ms),
        Duration::from_millis(cfg.backoff_max_ms),
        seed(),
    );
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        let Link {
            uri,
            tls,
            endpoint,
            unix,
        } = &links[rotation.current()];
        let tls = *tls;
        let started = Instant::now();
        let (phase, error) = match open_stream(&cfg, endpoint, unix.as_deref()).await {
            Ok((tx, mut inbound)) => {
                if events.send(LinkEvent::Up(tx)).await.is_err() {
                    return;
                }
                let mut heard = false;
                let err = loop {
                    match inbound.message().await {
                        Ok(Some(pb::CollectorMessage { msg: Some(m) })) => {
                            if !heard {
                                heard = true;
                                stats.connects.fetch_add(1, Relaxed);
                                stats.connected.store(true, Relaxed);
                                tracing::info!(collector = %uri, attempt, "connected to collector");
                                attempt = 0;
                            }
                            let ev = match m {
                                collector_message::Msg::Welcome(w) => LinkEvent::Welcome(w),
                                collector_message::Msg::Ack(a) => LinkEvent::Ack(a),
                            };
                            if events.send(ev).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break "the collector closed the stream".to_string(),
                        Err(s) => break status_chain(&s),
                    }
                };
                stats.connected.store(false, Relaxed);
                if !heard {
                    stats.connect_failures.fetch_add(1, Relaxed);
                }
                (if heard { Phase::Stream } else { Phase::Open }, err)
            }
            Err(e) => {
                stats.connect_failures.fetch_add(1, Relaxed);
                e
            }
        };
        if started.elapsed() >= HEALTHY_AFTER {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        let hint = failure_hint(&error, phase, tls, has_identity);
        stats.set_last_error(match hint {
            Some(h) => format!("{h}: {error}"),
            None => error.clone(),
        });
        match hint {
            Some(h) => {
                tracing::error!(collector = %uri, error = %error, retry_in_ms = delay.as_millis() as u64,
                "collector refused the connection: {h}; events stay in the spool")
            }
            None => {
                tracing::warn!(collector = %uri, error = %error, retry_in_ms = delay.as_millis() as u64,
                "collector unreachable; events stay in the spool")
            }
        }
        if events.send(LinkEvent::Down(error)).await.is_err() {
            return;
        }
        rotation.fail();
        if links.len() > 1 {
            tracing::info!(next = %links[rotation.current()].uri, "trying the next collector");
        }
        tokio::time::sleep(delay).await;
    }
}

type Inbound = tonic::Streaming<pb::CollectorMessage>;

const STREAM_PATH: &str = "/sensor.v1.Ingest/Stream";

async fn open_stream(
    cfg: &ShipConfig,
    endpoint: &Endpoint,
    unix: Option<&std::path::Path>,
) -> Result<(mpsc::Sender<Outbound>, Inbound), (Phase, String)> {
    let channel = match unix {
        None => endpoint.connect().await,
        Some(p) => {
            let p = p.to_path_buf();
            endpoint
                .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
                    let p = p.clone();
                    async move {
                        let s = super::local::connect(p).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                    }
                }))
                .await
        }
    }
    .map_err(|e| (Phase::Connect, error_chain(&e)))?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(4 * 1024 * 1024);
    if cfg.compression == "gzip" {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| (Phase::Connect, error_chain(&e)))?;
    // Room for the whole in-flight window plus Hellos.
    let (tx, rx) = mpsc::channel(cfg.max_in_flight + 4);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(STREAM_PATH);
    let resp = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            path,
            StreamCodec,
        )
        .await
        .map_err(|s| (Phase::Open, status_chain(&s)))?;
    Ok((tx, resp.into_inner()))
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
