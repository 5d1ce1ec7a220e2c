//! `collector certs`: a small CA for one fleet, and certificates signed by it: one per
//! sensor host (client authentication; the host is the certificate's DNS name, which is the
//! identity the collector stores that sensor's events under) and one for the collector
//! (server authentication). Keys are written mode 0600 and never overwritten.
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The CA's subject; an issued certificate's issuer must equal it byte for byte.
const CA_NAME: &str = "sensor collector CA";
/// Validity of every certificate, days.
const DAYS: i64 = 825;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a new file (never replacing one) with `mode`.
fn write_new(path: &Path, data: &str, mode: u32) -> Result<(), CertError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(DAYS);
}

fn ca_params() -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

/// Files of the CA in `dir`.
pub fn ca_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// Creates `dir/ca.pem` and `dir/ca.key`.
pub fn init_ca(dir: &Path) -> Result<PathBuf, CertError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (cert, key_path) = ca_files(dir);
    let key = KeyPair::generate()?;
    let key_pem = key.serialize_pem();
    let mut p = ca_params()?;
    validity(&mut p);
    let ca = CertifiedIssuer::self_signed(p, key)?;
    write_new(&key_path, &key_pem, 0o600)?;
    write_new(&cert, &ca.pem(), 0o644)?;
    Ok(cert)
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A sensor: client authentication, named by its host.
    Sensor,
    /// The collector: server authentication for the names sensors connect to.
    Collector,
}

/// True for a DNS name a certificate can carry for a sensor (the host it identifies).
pub fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Issues `dir/<first name>.pem` and `.key` signed by the CA in `dir`.
pub fn issue(dir: &Path, names: &[String], role: Role) -> Result<(PathBuf, PathBuf), CertError> {
    let first = names
        .first()
        .ok_or_else(|| CertError::Invalid("give at least one name".into()))?;
    if role == Role::Sensor {
        if names.len() != 1 {
            return Err(CertError::Invalid(
                "a sensor certificate names exactly one host".into(),
            ));
        }
        if !valid_host_name(first) {
            return Err(CertError::Invalid(format!(
                "{first:?} is not a DNS host name (letters, digits, '-', '.')"
            )));
        }
    }
    let (ca_cert, ca_key) = ca_files(dir);
    let key_pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
    if !ca_cert.exists() {
        return Err(CertError::Invalid(format!(
            "{} missing: run `collector certs init` first",
            ca_cert.display()
        )));
    }
    let ca_key = KeyPair::from_pem(&key_pem)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut p = CertificateParams::new(names.to_vec())?;
    p.distinguished_name
        .push(DnType::CommonName, first.as_str());
    p.extended_key_usages = vec![match role {
        Role::Sensor => ExtendedKeyUsagePurpose::ClientAuth,
        Role::Collector => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut p);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &issuer)?;
    let safe: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (cp, kp) = (
        dir.join(format!("{safe}.pem")),
        dir.join(format!("{safe}.key")),
    );
    write_new(&kp, &key.serialize_pem(), 0o600)?;
    write_new(&cp, &cert.pem(), 0o644)?;
    Ok((cp, kp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_sensor_and_collector_certificates_the_collector_can_read() {
        let dir = std::env::temp_dir().join(format!("certs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        init_ca(&dir).unwrap();
        assert!(init_ca(&dir).is_err(), "an existing CA is never replaced");
        let (cp, kp) = issue(&dir, &["web-1.example.org".into()], Role::Sensor).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&kp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let pem = std::fs::read_to_string(&cp).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = b64_decode(&b64);
        assert_eq!(crate::peer::cert_host(&der).unwrap(), "web-1.example.org");
        issue(
            &dir,
            &["collector.example.org".into(), "10.0.0.5".into()],
            Role::Collector,
        )
        .unwrap();
        assert!(issue(&dir, &["a b".into()], Role::Sensor).is_err());
        assert!(issue(&dir, &["a".into(), "b".into()], Role::Sensor).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn b64_decode(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                n |= u32::from(val(c)) << (18 - 6 * i);
            }
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }
}
