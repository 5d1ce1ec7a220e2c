//! A CA, a server certificate (localhost, 127.0.0.1, ::1) and a client certificate (for host
//! [`CLIENT_HOST`], the sensor identity the collector reads from it), as PEM files in a
//! directory.
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The host the client certificate names (its DNS subject alternative name).
pub const CLIENT_HOST: &str = "synthetic-host";

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make(dir: &Path, tag: &str) -> Pki {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, format!("{tag} test CA"));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (sc, sk) = leaf(
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        "collector",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (cc, ck) = leaf(
        vec![CLIENT_HOST.into()],
        "sensor",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let w = |name: &str, data: &str| {
        let p = dir.join(format!("{tag}-{name}"));
        std::fs::write(&p, data).unwrap();
        p
    };
    Pki {
        ca: w("ca.pem", &ca.pem()),
        server_cert: w("server.pem", &sc),
        server_key: w("server.key", &sk),
        client_cert: w("client.pem", &cc),
        client_key: w("client.key", &ck),
    }
}
