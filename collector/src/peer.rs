//! Who is on the other end of a stream, from what the transport proved, never from what the
//! sensor says:
//! - a client certificate (verified by TLS against `tls.client_ca_file`): the host is its
//!   first DNS subject alternative name;
//! - the local socket: a root process on this host (SO_PEERCRED checked at accept);
//! - nothing (plaintext loopback TCP, or TLS without a client certificate): unauthenticated.
//!
//! The identity qualifies the sensor id under which batches are stored and de-duplicated
//! ([`Peer::storage_id`]), so one identity can never write into, or occupy the seqs of,
//! another identity's sensor record.
use tonic::transport::server::UdsConnectInfo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A verified client certificate naming this host.
    Certificate { host: String },
    /// A root process on this host, over the local socket.
    LocalRoot,
    /// No credentials.
    Unauthenticated,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("client certificate is not valid X.509: {0}")]
    BadCertificate(String),
    #[error("client certificate has no DNS subject alternative name (the sensor's host)")]
    NoHostName,
}

/// The host a client certificate (DER) names: its first DNS subject alternative name,
/// lower-cased.
pub fn cert_host(der: &[u8]) -> Result<String, PeerError> {
    let der = rustls_pki_types::CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| PeerError::BadCertificate(format!("{e:?}")))?;
    let host = cert
        .valid_dns_names()
        .find(|n| !n.starts_with('*'))
        .ok_or(PeerError::NoHostName)?;
    Ok(host.to_ascii_lowercase())
}

impl Peer {
    /// Reads the peer from a request's connection info.
    pub fn of<T>(req: &tonic::Request<T>) -> Result<Peer, PeerError> {
        if let Some(certs) = req.peer_certs() {
            if let Some(first) = certs.first() {
                return Ok(Peer::Certificate {
                    host: cert_host(first)?,
                });
            }
        }
        if let Some(uds) = req.extensions().get::<UdsConnectInfo>() {
            // The accept loop admits only allowed uids; checked again here.
            if uds
                .peer_cred
                .is_some_and(|c| crate::listen::peer_uid_allowed(c.uid()))
            {
                return Ok(Peer::LocalRoot);
            }
        }
        Ok(Peer::Unauthenticated)
    }

    /// The host every Hello and event of this peer must carry, when the transport proved one.
    pub fn host(&self) -> Option<&str> {
        match self {
            Peer::Certificate { host } => Some(host),
            _ => None,
        }
    }

    /// Label for logs and metrics.
    pub fn describe(&self) -> String {
        match self {
            Peer::Certificate { host } => format!("certificate {host}"),
            Peer::LocalRoot => "local root".into(),
            Peer::Unauthenticated => "unauthenticated".into(),
        }
    }

    /// The sensor id batches are stored and de-duplicated under: the sensor's own id for the
    /// local root sensor, `<id>@<host>` for a certificate, `<id>@unauthenticated:` without
    /// credentials. Sensor ids cannot contain `@`, and a DNS name cannot contain `:`, so
    /// two identities never share a storage id.
    pub fn storage_id(&self, sensor_id: &str) -> String {
        match self {
            Peer::LocalRoot => sensor_id.to_string(),
            Peer::Certificate { host } => format!("{sensor_id}@{host}"),
            Peer::Unauthenticated => format!("{sensor_id}@unauthenticated:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_ids_never_collide_across_identities() {
        let a = Peer::Certificate { host: "a".into() };
        let b = Peer::Certificate { host: "b".into() };
        let ids = [
            a.storage_id("s"),
            b.storage_id("s"),
            Peer::LocalRoot.storage_id("s"),
            Peer::Unauthenticated.storage_id("s"),
        ];
        for (i, x) in ids.iter().enumerate() {
            for y in &ids[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(a.host(), Some("a"));
        assert_eq!(Peer::LocalRoot.host(), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            cert_host(b"not der"),
            Err(PeerError::BadCertificate(_))
        ));
    }
}
