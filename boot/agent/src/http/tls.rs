//! HTTPS to the netdeploy server: TLS with rustls (ring's algorithms) over the socket, accepting
//! exactly the certificate whose DER SHA-256 is the pin the boot gave (`netdeploy.pin`,
//! `NetdeployServerPin`). No certificate authority is trusted and no name is checked: the pin
//! alone says which server this is, the handshake's signatures prove the server holds that
//! certificate's key. Without a pin there is no HTTPS at all, never trust on first use.

use std::io;
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;

use netdeploy_wire::cert_pin::CertPin;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use sha2::{Digest, Sha256};

use super::HttpError;

/// The pin of a DER certificate.
pub fn pin_of(der: &[u8]) -> CertPin {
    CertPin::from_digest(Sha256::digest(der).into())
}

/// The server presented another certificate than the pinned one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server's certificate is {presented}, not the pinned {expected}: refused \
     (check netdeploy.pin or NetdeployServerPin against `netdeploy tls fingerprint`)"
)]
pub struct PinMismatch {
    pub expected: CertPin,
    pub presented: CertPin,
}

/// Accepts the pinned certificate only, and checks the handshake's signatures with the
/// provider's algorithms as any verifier does.
#[derive(Debug)]
pub struct PinnedCertificate {
    pin: CertPin,
    provider: Arc<CryptoProvider>,
}

impl PinnedCertificate {
    pub fn new(pin: CertPin) -> PinnedCertificate {
        PinnedCertificate {
            pin,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = pin_of(end_entity);
        if presented == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                expected: self.pin,
                presented,
            }))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client configuration that trusts `pin` alone.
pub fn client_config(pin: CertPin) -> Result<Arc<rustls::ClientConfig>, HttpError> {
    let verifier = Arc::new(PinnedCertificate::new(pin));
    let mut config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS over `tcp`, the handshake done: the server's certificate was the pinned one.
pub fn connect(
    mut tcp: TcpStream,
    host: IpAddr,
    pin: CertPin,
) -> Result<StreamOwned<ClientConnection, TcpStream>, HttpError> {
    let mut conn = ClientConnection::new(client_config(pin)?, ServerName::IpAddress(host.into()))
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            // The alert that says why goes out before the socket closes.
            let _ = conn.write_tls(&mut tcp);
            return Err(handshake_error(e));
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// A pin mismatch as itself; any other TLS failure with rustls's words.
fn handshake_error(e: io::Error) -> HttpError {
    let mismatch = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|r| match r {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
                o.0.downcast_ref::<PinMismatch>().cloned()
            }
            _ => None,
        });
    match mismatch {
        Some(m) => HttpError::WrongCertificate(m),
        None if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
            HttpError::Tls(e.to_string())
        }
        None => HttpError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Client, Url};
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// A certificate and its key, made by rcgen for `127.0.0.1`.
    fn certificate() -> (
        CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (
            cert.der().clone(),
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    /// An HTTPS server on a loopback port that answers each request `200 hello`; returns its
    /// URL and its certificate. Each connection is served on its own thread.
    fn https_server() -> (String, CertificateDer<'static>) {
        let (cert, key) = certificate();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for tcp in listener.incoming().map_while(Result::ok) {
                let config = config.clone();
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = StreamOwned::new(conn, tcp);
                    let mut reader = BufReader::new(&mut tls);
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                        if line == "\r\n" {
                            break;
                        }
                        line.clear();
                    }
                    let _ = tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                    );
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        (url, cert)
    }

    fn client(pin: Option<CertPin>) -> Client {
        Client {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            pin,
        }
    }

    #[test]
    fn the_pinned_certificate_is_accepted() {
        let (url, cert) = https_server();
        let r = client(Some(pin_of(&cert)))
            .get(&Url::parse(&format!("{url}/x")).unwrap(), None)
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.read_body(100).unwrap(), b"hello");
    }

    #[test]
    fn another_certificate_is_refused_naming_both_pins() {
        let (url, cert) = https_server();
        let wrong = CertPin::from_digest([7; 32]);
        let err = client(Some(wrong))
            .get(&Url::parse(&format!("{url}/x")).unwrap(), None)
            .err()
            .expect("a wrong certificate was accepted");
        match &err {
            HttpError::WrongCertificate(m) => {
                assert_eq!(m.expected, wrong);
                assert_eq!(m.presented, pin_of(&cert));
            }
            e => panic!("unexpected error {e}"),
        }
        let text = err.to_string();
        assert!(text.contains(&wrong.to_string()), "{text}");
        assert!(text.contains(&pin_of(&cert).to_string()), "{text}");
        assert!(err.refuses_server());
    }

    #[test]
    fn https_without_a_pin_is_refused() {
        let (url, _) = https_server();
        let err = client(None)
            .get(&Url::parse(&format!("{url}/x")).unwrap(), None)
            .err()
            .expect("https without a pin was used");
        assert!(matches!(err, HttpError::NoPin { .. }), "{err}");
        assert!(err.refuses_server());
    }

    #[test]
    fn verifier_accepts_the_pinned_der_only() {
        let (cert, _) = certificate();
        let (other, _) = certificate();
        let verifier = PinnedCertificate::new(pin_of(&cert));
        let name = ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into());
        let now = UnixTime::now();
        assert!(verifier
            .verify_server_cert(&cert, &[], &name, &[], now)
            .is_ok());
        match verifier.verify_server_cert(&other, &[], &name, &[], now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
                let m = o.0.downcast_ref::<PinMismatch>().unwrap();
                assert_eq!(m.presented, pin_of(&other));
            }
            r => panic!("another certificate gave {r:?}"),
        }
    }
}
