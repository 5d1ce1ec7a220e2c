//! `GET /metrics` (Prometheus text) and `GET /` over HTTP/1.1, served by axum: any other path
//! is 404, another method on a known path 405, a malformed request 400 (hyper's parser).
use std::future::IntoFuture as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr`; serve with [`serve`].
pub async fn bind(addr: &str) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// The routes: `/metrics` and `/`. Every response closes its connection (one request per
/// connection, as scrapers expect from a small exporter; nothing idles open).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/", get(|| async { "collector: see /metrics\n" }))
        .with_state(metrics)
        .layer(axum::middleware::map_response(close_connection))
}

async fn close_connection(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn render(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}

/// Answers until `shutdown` changes. Returns at once then, without waiting for open
/// keep-alive connections (a scraper may hold one indefinitely).
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        r = axum::serve(listener, router(metrics)).into_future() => {
            if let Err(e) = r {
                tracing::warn!(error = %e, "metrics endpoint failed");
            }
        }
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn ask(addr: std::net::SocketAddr, req: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn routes() {
        let l = bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve(l, Arc::new(Metrics::default()), rx));
        // No `Connection: close` from the client: the server closes after answering.
        let close = "\r\n";
        let r = ask(
            addr,
            format!("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n{close}").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("text/plain; version=0.0.4"), "{r}");
        assert!(r.contains("collector_events_received_total"), "{r}");
        let r = ask(
            addr,
            format!("POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n{close}").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 405"), "{r}");
        let r = ask(
            addr,
            format!("GET /x HTTP/1.1\r\nHost: a\r\n{close}").as_bytes(),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");
        // A keep-alive connection left open does not hold up the shutdown.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let r = ask(addr, b"\x00\x01garbage\r\n\r\n").await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        tx.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .unwrap();
    }
}
