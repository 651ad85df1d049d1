//! HTTPS: the server's certificate and key, their pin, and the rustls configuration of the
//! HTTPS listener (docs/security.md).
//!
//! The certificate comes from `http.tls.cert` and `http.tls.key`, or, when neither is set, is
//! made on first start and kept in the data directory ([`SELF_SIGNED_DIR`]), so that its
//! fingerprint, the pin the agent and the media carry, stays the same across restarts.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netdeploy_wire::cert_pin::CertPin;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;

use crate::config::{CertificateSource, TlsConfig};

/// Below the data directory: the self-signed certificate (`server.crt`) and its key
/// (`server.key`, mode 0600).
pub const SELF_SIGNED_DIR: &str = "tls";
const CERT_FILE: &str = "server.crt";
const KEY_FILE: &str = "server.key";

/// Why the certificate cannot be used; names the configuration field to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{field}: cannot read {path}: {source}")]
    Read {
        field: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field}: {path} holds no PEM certificate")]
    NoCertificate { field: &'static str, path: PathBuf },
    #[error("{field}: {path} holds no PEM private key ({reason})")]
    NoKey {
        field: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("http.tls.key: {key} does not go with the certificate {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("server.data_dir: cannot keep the self-signed certificate in {path}: {source}")]
    Keep {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
}

/// The certificate the HTTPS listener presents.
pub struct ServerCertificate {
    /// The chain, the server's own certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the server's own certificate: what the agent pins.
    pub pin: CertPin,
    /// The PEM file it was read from (the self-signed one in the data directory, or
    /// `http.tls.cert`).
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// True when it was made by this call (first start).
    pub made: bool,
}

impl std::fmt::Debug for ServerCertificate {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("pin", &self.pin)
            .field("cert_path", &self.cert_path)
            .field("made", &self.made)
            .finish_non_exhaustive()
    }
}

/// The addresses a self-signed certificate names: the server address, then every served
/// interface's.
pub fn served_names(config: &crate::config::Config) -> Vec<IpAddr> {
    let mut names = vec![IpAddr::V4(config.server_address)];
    for iface in &config.interfaces {
        let a = IpAddr::V4(iface.address);
        if !names.contains(&a) {
            names.push(a);
        }
    }
    names
}

/// The pin of a DER certificate.
pub fn pin_of(der: &[u8]) -> CertPin {
    CertPin::from_digest(sha2::Sha256::digest(der).into())
}

/// The configured certificate, or the kept self-signed one, made first (for `names`, the
/// served addresses) when there is none yet.
pub fn certificate(
    tls: &TlsConfig,
    data_dir: &Path,
    names: &[IpAddr],
) -> Result<ServerCertificate, TlsError> {
    match &tls.certificate {
        CertificateSource::Files { cert, key } => {
            read_pair(cert, "http.tls.cert", key, "http.tls.key", false)
        }
        CertificateSource::SelfSigned => {
            let dir = data_dir.join(SELF_SIGNED_DIR);
            let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
            let made = if cert.is_file() && key.is_file() {
                false
            } else {
                make_self_signed(&dir, &cert, &key, names)?;
                true
            };
            read_pair(&cert, "server.data_dir", &key, "server.data_dir", made)
        }
    }
}

fn read_pair(
    cert: &Path,
    cert_field: &'static str,
    key: &Path,
    key_field: &'static str,
    made: bool,
) -> Result<ServerCertificate, TlsError> {
    let read = |path: &Path, field| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            field,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert, cert_field)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            field: cert_field,
            path: cert.to_owned(),
        });
    };
    let pin = pin_of(leaf);
    let key_pem = read(key, key_field)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        field: key_field,
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(ServerCertificate {
        chain,
        key: key_der,
        pin,
        cert_path: cert.to_owned(),
        key_path: key.to_owned(),
        made,
    })
}

/// An ECDSA P-256 certificate for `names` and `localhost`, the key written first with mode
/// 0600. Each file is written beside its place and renamed into it, so a crash leaves either
/// nothing or a whole file.
fn make_self_signed(dir: &Path, cert: &Path, key: &Path, names: &[IpAddr]) -> Result<(), TlsError> {
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key_pair = rcgen::KeyPair::generate().map_err(generate)?;
    let mut sans: Vec<String> = names.iter().map(IpAddr::to_string).collect();
    sans.push("localhost".into());
    let mut params = rcgen::CertificateParams::new(sans).map_err(generate)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "netdeploy");
    let certificate = params.self_signed(&key_pair).map_err(generate)?;
    let keep = |path: &Path, source| TlsError::Keep {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| keep(dir, e))?;
    write_new(key, key_pair.serialize_pem().as_bytes(), 0o600).map_err(|e| keep(key, e))?;
    write_new(cert, certificate.pem().as_bytes(), 0o644).map_err(|e| keep(cert, e))?;
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The rustls configuration of the HTTPS listener: TLS 1.2 and 1.3 with ring's algorithms,
/// HTTP/1.1 announced by ALPN. Fails when the key does not go with the certificate.
pub fn server_config(
    certificate: &ServerCertificate,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mismatch = |e: rustls::Error| TlsError::Mismatch {
        cert: certificate.cert_path.clone(),
        key: certificate.key_path.clone(),
        reason: e.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(mismatch)?
    .with_no_client_auth()
    .with_single_cert(certificate.chain.clone(), certificate.key.clone_key())
    .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn self_signed() -> TlsConfig {
        TlsConfig {
            port: 0,
            certificate: CertificateSource::SelfSigned,
            handshake_timeout: Duration::from_secs(10),
            allow_plain_http: false,
        }
    }

    #[test]
    fn self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["10.77.0.1".parse().unwrap()];
        let first = certificate(&self_signed(), dir.path(), &names).unwrap();
        assert!(first.made);
        let key = dir.path().join(SELF_SIGNED_DIR).join(KEY_FILE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = certificate(&self_signed(), dir.path(), &names).unwrap();
        assert!(!again.made);
        assert_eq!(again.pin, first.pin);
        assert_eq!(again.pin, pin_of(&again.chain[0]));
        server_config(&again).unwrap();
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_the_key_field() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        certificate(&self_signed(), a.path(), &[]).unwrap();
        certificate(&self_signed(), b.path(), &[]).unwrap();
        let tls = TlsConfig {
            certificate: CertificateSource::Files {
                cert: a.path().join(SELF_SIGNED_DIR).join(CERT_FILE),
                key: b.path().join(SELF_SIGNED_DIR).join(KEY_FILE),
            },
            ..self_signed()
        };
        let pair = certificate(&tls, a.path(), &[]).unwrap();
        let err = server_config(&pair).unwrap_err();
        assert!(err.to_string().starts_with("http.tls.key: "), "{err}");
    }

    #[test]
    fn a_file_without_a_certificate_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let tls = TlsConfig {
            certificate: CertificateSource::Files {
                cert: cert.clone(),
                key: cert.clone(),
            },
            ..self_signed()
        };
        let err = certificate(&tls, dir.path(), &[]).unwrap_err();
        assert!(err.to_string().starts_with("http.tls.cert: "), "{err}");
    }
}
