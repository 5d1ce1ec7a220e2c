//! `collector serve`: open the sink (the SQLite database and its writer, or in fleet mode a
//! NATS connection and the JetStream stream), start the gRPC server (TLS when configured)
//! and the metrics endpoint; stop on the shutdown future, ending open streams.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::{CollectorConfig, ConfigError};
use crate::ingest_stream::IngestService;
use crate::ingest_svc::IngestServer;
use crate::jetstream::{self, publish::Publisher};
use crate::listen::{self, ListenAddr, Listener};
use crate::metrics::Metrics;
use crate::sink::Sink;
use crate::store::{self, writer::Writer, StoreError, Synchronous};
use crate::stream_quota::StreamQuota;
use crate::validate::Limits;
use crate::wire_scan::ScanLimits;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {what} {path}: {source}")]
    ReadPem {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error(transparent)]
    Metrics(#[from] crate::http::HttpError),
    #[error("TLS setup: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("gRPC server: {0}")]
    Transport(#[source] tonic::transport::Error),
    #[error("cannot start the writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    JetStream(#[from] crate::jetstream::JsError),
}

/// The opened sink, and what to wait for when stopping.
enum Opened {
    Sqlite(std::thread::JoinHandle<()>),
    JetStream(async_nats::Client, tokio::task::JoinHandle<()>),
}

async fn open_sink(cfg: &CollectorConfig) -> Result<(Sink, Opened), ServeError> {
    if cfg.storage.sink == "jetstream" {
        let j = &cfg.jetstream;
        let client = jetstream::connect(j, "collector").await?;
        let publisher = Publisher::new(client.clone(), j);
        // Until the stream exists publishes fail (no ack), so this may run in the background
        // while the cluster comes up.
        let js = publisher.context().clone();
        let j2 = j.clone();
        let ensure = tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match jetstream::ensure_stream(&js, &j2).await {
                    Ok(_) => {
                        tracing::info!(stream = %j2.stream, replicas = j2.replicas, "JetStream stream ready");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                            "JetStream stream not ready; batches are not acknowledged");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        tracing::info!(servers = %j.servers.join(","), stream = %j.stream, granularity = %j.granularity,
            "sink: JetStream");
        return Ok((
            Sink::JetStream(Box::new(publisher)),
            Opened::JetStream(client, ensure),
        ));
    }
    let sync = Synchronous::parse(&cfg.storage.synchronous).unwrap_or(Synchronous::Full);
    let opened = store::open_rw(&cfg.storage.path, sync)?;
    let existing = store::query::count(&opened.conn)?;
    tracing::info!(db = %cfg.storage.path.display(), synchronous = %cfg.storage.synchronous,
        stored_events = existing, "sink: SQLite");
    let (writer, writer_thread) = Writer::spawn(
        opened,
        cfg.storage.max_events_per_commit,
        cfg.storage.path.clone(),
    )
    .map_err(ServeError::Thread)?;
    Ok((Sink::Sqlite(writer), Opened::Sqlite(writer_thread)))
}

/// Where the servers listen once bound (port 0 in the config picks a free port).
#[derive(Debug, Clone)]
pub struct Bound {
    /// `host:port`, or `unix:/path` in local mode.
    pub grpc: String,
    pub metrics: Option<SocketAddr>,
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::ReadPem {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn tls_config(cfg: &CollectorConfig) -> Result<Option<ServerTlsConfig>, ServeError> {
    let t = &cfg.tls;
    let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) else {
        return Ok(None);
    };
    let identity = Identity::from_pem(read("certificate", cert)?, read("key", key)?);
    let mut tls = ServerTlsConfig::new()
        .identity(identity)
        .timeout(Duration::from_secs(cfg.server.tls_handshake_timeout_secs));
    if let Some(ca) = &t.client_ca_file {
        tls = tls
            .client_ca_root(Certificate::from_pem(read("client CA", ca)?))
            .client_auth_optional(!t.require_client_cert);
    }
    Ok(Some(tls))
}

/// Runs until `shutdown` resolves. `on_ready` is called once both listeners are bound.
pub async fn serve(
    cfg: CollectorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
    on_ready: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    cfg.validate()?;
    let (sink, opened) = open_sink(&cfg).await?;
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let want = cfg.server.max_connections as u64 + 256;
    let fds = listen::raise_fd_limit(want);
    if fds < want {
        tracing::warn!(
            open_files = fds,
            max_connections = cfg.server.max_connections,
            "the open-file limit is below server.max_connections + 256; raise LimitNOFILE"
        );
    }
    let listener = Listener::bind(&ListenAddr::parse(&cfg.server.listen)).await?;
    let grpc = listener.describe();
    let metrics_task = if cfg.metrics.listen.is_empty() {
        None
    } else {
        let l = crate::http::bind(&cfg.metrics.listen).await?;
        let addr = l.local_addr().ok();
        let task = tokio::spawn(crate::http::serve(l, metrics.clone(), stop_rx.clone()));
        Some((addr, task))
    };

    let svc = IngestService {
        sink,
        metrics: metrics.clone(),
        limits: Limits {
            max_batch_events: cfg.server.max_batch_events,
        },
        max_message_bytes: cfg.server.max_message_bytes,
        shutdown: stop_rx.clone(),
        inflight: Arc::new(Semaphore::new(cfg.server.max_inflight_events)),
        streams_per_host: StreamQuota::new(cfg.server.max_streams_per_host),
    };
    let scan = ScanLimits {
        max_events: cfg.server.max_batch_events as usize,
        max_elements: cfg.server.max_message_elements,
    };
    let service = IngestServer::new(svc, scan, cfg.server.max_message_bytes);

    let mut builder =
        Server::builder().max_concurrent_streams(Some(cfg.server.max_streams_per_connection));
    if cfg.server.keepalive_secs > 0 {
        builder = builder
            .http2_keepalive_interval(Some(Duration::from_secs(cfg.server.keepalive_secs)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    }
    let tls = tls_config(&cfg)?;
    let tls_on = tls.is_some();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(ServeError::Tls)?;
    }
    let bound = Bound {
        grpc: grpc.clone(),
        metrics: metrics_task.as_ref().and_then(|(a, _)| *a),
    };
    tracing::info!(
        grpc = %bound.grpc,
        metrics = ?bound.metrics,
        tls = tls_on,
        client_cert_required = cfg.tls.require_client_cert,
        sink = %cfg.storage.sink,
        "collector listening"
    );
    on_ready(bound);

    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let _ = server_stop_rx.await;
    };
    let max_conn = cfg.server.max_connections;
    // Plaintext listeners wait for the HTTP/2 preface under the same deadline as a TLS
    // handshake, so idle sockets cannot hold connection permits.
    let preface = (!tls_on).then(|| Duration::from_secs(cfg.server.tls_handshake_timeout_secs));
    let router = builder.add_service(service);
    let server = match listener {
        Listener::Tcp(l) => tokio::spawn(router.serve_with_incoming_shutdown(
            ReceiverStream::new(listen::tcp_incoming(l, max_conn, preface, metrics.clone())),
            stop,
        )),
        Listener::Unix(l, _) => tokio::spawn(router.serve_with_incoming_shutdown(
            ReceiverStream::new(listen::unix_incoming(l, max_conn, preface, metrics.clone())),
            stop,
        )),
    };
    shutdown.await;
    tracing::info!("collector stopping");
    // Open streams end first (they would keep a graceful HTTP/2 shutdown waiting), then the
    // server; stored data is already committed.
    let _ = stop_tx.send(true);
    let _ = server_stop_tx.send(());
    let result = match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(r)) => r.map_err(ServeError::Transport),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "gRPC server task failed");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("gRPC server did not stop within 10 s");
            Ok(())
        }
    };
    if let Some((_, task)) = metrics_task {
        let _ = task.await;
    }
    match opened {
        // The writer thread ends when the last stream task has dropped its handle.
        Opened::Sqlite(writer_thread) => {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::task::spawn_blocking(move || writer_thread.join()),
            )
            .await;
        }
        // Unacknowledged publishes stay unacknowledged to the sensors (they resend).
        Opened::JetStream(client, ensure) => {
            ensure.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
        }
    }
    tracing::info!("collector stopped");
    result
}
