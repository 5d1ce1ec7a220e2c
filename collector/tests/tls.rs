//! TLS on the collector: a pinned CA, and a required client certificate.
mod common;

use common::*;
use common::{certs, raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_required_client_cert() {
    let dir = TempDir::new("tls");
    let pki = certs::make(dir.path(), "good");
    let other = certs::make(dir.path(), "other");
    let c = Collector::start(
        dir.path(),
        &[
            "--tls-cert",
            pki.server_cert.to_str().unwrap(),
            "--tls-key",
            pki.server_key.to_str().unwrap(),
            "--client-ca",
            pki.ca.to_str().unwrap(),
            "--require-client-cert",
        ],
    );

    // Right CA and a client certificate: accepted.
    let ch = raw::tls_channel(&c.grpc, &pki.ca, Some((&pki.client_cert, &pki.client_key)))
        .await
        .unwrap();
    let mut s = raw::open(ch).await.unwrap();
    s.send_hello(hello("s", "b", certs::CLIENT_HOST)).await;
    s.send_batch(batch(
        "s",
        "b",
        1,
        vec![exec_event(1, certs::CLIENT_HOST, 1, None, &["x"])],
    ))
    .await;
    assert_eq!(s.next_ack().await.unwrap().stored, 1);

    // Wrong CA: the client refuses the server.
    let e = raw::tls_channel(
        &c.grpc,
        &other.ca,
        Some((&pki.client_cert, &pki.client_key)),
    )
    .await
    .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");

    // No client certificate: the server refuses (on TLS 1.3 the client learns it at the
    // first read, so the stream fails instead of the connect).
    let r = match raw::tls_channel(&c.grpc, &pki.ca, None).await {
        Err(e) => Err(e),
        Ok(ch) => raw::open(ch)
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}")),
    };
    // The alert races with the client's first write: the client may see the alert or
    // only a closed connection. Either way nothing gets through.
    r.unwrap_err();

    // A client certificate from another CA: refused too.
    let r = match raw::tls_channel(
        &c.grpc,
        &pki.ca,
        Some((&other.client_cert, &other.client_key)),
    )
    .await
    {
        Err(e) => Err(e),
        Ok(ch) => raw::open(ch)
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}")),
    };
    assert!(r.is_err());
    assert_eq!(query(&c.db, &[]).len(), 1);
    drop(s);
    let log = c.stop();
    assert!(log.contains("tls accept error"), "{log}");
}
