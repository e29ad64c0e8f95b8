//! QUIC endpoint settings shared by master and worker: TLS 1.3, the Stampede ALPN, a 1 s
//! keep-alive and a 4 s idle timeout (so a killed peer is noticed within about 4 s on both
//! sides), and the limits a connection has until its peer has authenticated.
//!
//! The master presents its own certificate ([`MasterIdentity`]: `--cert/--key`, else a
//! self-signed one made at start-up). A worker checks it as [`MasterTrust`] says: by default
//! not at all, since the token proof of [`crate::handshake`] is what authenticates the master;
//! pinned to a CA or to the certificate's SHA-256 fingerprint when the operator asks. It does
//! not create endpoints; callers do.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use crate::ALPN;
use crate::frame::PRE_AUTH_FRAME;

/// The name in the master's self-signed certificate and the SNI workers send when they do not
/// check the master's name.
pub const SERVER_NAME: &str = "stampede-master";

/// How long a silent peer is given before the connection is declared lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// How often an otherwise quiet connection sends a keep-alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Bytes a peer may send on all streams together before it has authenticated: the proof or
/// hello frame and a little slack. Raised by [`authenticated`].
pub const PRE_AUTH_WINDOW: u32 = PRE_AUTH_FRAME + 16 * 1024;

/// Why an endpoint configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Generating the self-signed certificate failed.
    #[error("generating the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A certificate, key or CA file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A file holds no PEM of the kind expected.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What was expected and not found.
        what: &'static str,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the TLS configuration.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
}

/// The master's certificate chain and key.
pub struct MasterIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for MasterIdentity {
    fn clone(&self) -> Self {
        MasterIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for MasterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl MasterIdentity {
    /// A fresh self-signed certificate for [`SERVER_NAME`] (its fingerprint changes every start).
    pub fn self_signed() -> Result<MasterIdentity, TransportError> {
        let cert = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])?;
        let key = PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
        Ok(MasterIdentity {
            chain: vec![cert.cert.der().clone()],
            key: key.into(),
        })
    }

    /// A certificate chain and its private key from PEM files (`--cert FILE --key FILE`).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<MasterIdentity, TransportError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<_, _>>()
            .ok()
            .filter(|c: &Vec<_>| !c.is_empty())
            .ok_or_else(|| TransportError::Pem {
                path: cert.display().to_string(),
                what: "no PEM certificate in it",
            })?;
        let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TransportError::Pem {
            path: key.display().to_string(),
            what: "no PEM private key in it",
        })?;
        Ok(MasterIdentity { chain, key })
    }

    /// The SHA-256 of the leaf certificate's DER, lower-case hex: what `--master-fingerprint`
    /// takes.
    pub fn fingerprint(&self) -> String {
        crate::handshake::hex(&fingerprint(&self.chain[0]))
    }
}

/// How a worker checks the master's certificate.
#[derive(Debug, Clone)]
pub enum MasterTrust {
    /// Any certificate: the token proof authenticates the master.
    Token,
    /// The leaf certificate's DER must have this SHA-256 (`--master-fingerprint`).
    Fingerprint([u8; 32]),
    /// The chain must lead to one of these roots and name the master's host (`--master-ca`).
    Roots(Arc<rustls::RootCertStore>),
}

impl MasterTrust {
    /// Roots from a PEM file of CA certificates.
    pub fn ca_file(path: &Path) -> Result<MasterTrust, TransportError> {
        let mut roots = rustls::RootCertStore::empty();
        let pem = read(path)?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|_| TransportError::Pem {
                path: path.display().to_string(),
                what: "not a PEM certificate",
            })?;
            roots.add(cert)?;
        }
        if roots.is_empty() {
            return Err(TransportError::Pem {
                path: path.display().to_string(),
                what: "no PEM certificate in it",
            });
        }
        Ok(MasterTrust::Roots(Arc::new(roots)))
    }

    /// A fingerprint as printed by the master: 64 hex digits, colons allowed.
    pub fn fingerprint(text: &str) -> Result<MasterTrust, String> {
        let digits: String = text.chars().filter(|c| *c != ':').collect();
        let bad = || {
            format!(
                "`{text}` is not a SHA-256 fingerprint (64 hex digits, as `stampede master` prints it)"
            )
        };
        if digits.len() != 64 || !digits.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(MasterTrust::Fingerprint(out))
    }

    /// Whether the master's name is checked: then the worker sends the master's host as SNI.
    pub fn checks_name(&self) -> bool {
        matches!(self, MasterTrust::Roots(_))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|source| TransportError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// SHA-256 of a certificate's DER.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Before auth: no stream from the peer but the one the handshake needs, and at most
/// [`PRE_AUTH_WINDOW`] bytes buffered for it. `bidi` and `uni` are the streams the peer may
/// open.
fn transport(bidi: u32, uni: u32) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // The invariant: 4 s is a valid QUIC idle timeout (far below the 2^62 ms limit).
    t.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("4 s fits a VarInt")));
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_concurrent_bidi_streams(bidi.into());
    t.max_concurrent_uni_streams(uni.into());
    t.receive_window(PRE_AUTH_WINDOW.into());
    Arc::new(t)
}

/// Lift the limits of an unauthenticated peer: call once it has proved the token. On the
/// master, the worker may then open its report stream.
pub fn authenticated(conn: &quinn::Connection, report_streams: u32) {
    conn.set_receive_window(quinn::VarInt::MAX);
    if report_streams > 0 {
        conn.set_max_concurrent_uni_streams(report_streams.into());
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The master's server configuration. A worker may open no stream until it has authenticated
/// (the master opens the control stream); then [`authenticated`] allows its report stream.
pub fn server_config(identity: MasterIdentity) -> Result<quinn::ServerConfig, TransportError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(0, 0));
    Ok(config)
}

/// A worker's client configuration: the master may open the control stream, nothing else.
pub fn client_config(trust: &MasterTrust) -> Result<quinn::ClientConfig, TransportError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match trust {
        MasterTrust::Token => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        MasterTrust::Fingerprint(want) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                fingerprint: *want,
                any: AnyCertificate(provider),
            }))
            .with_no_client_auth(),
        MasterTrust::Roots(roots) => builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(1, 0));
    Ok(config)
}

/// Accepts only the certificate whose DER has this SHA-256, and checks the handshake
/// signatures with it.
#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: [u8; 32],
    any: AnyCertificate,
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
        // A fingerprint is public: no need for a constant-time comparison.
        if fingerprint(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.any.supported_verify_schemes()
    }
}

/// Accepts any certificate but still checks the handshake signatures, so the session keys
/// belong to whoever holds the presented certificate's key: a worker's view of the master when
/// the token proof is what authenticates it, and the load drivers' `[tls] insecure = true`.
#[derive(Debug)]
pub struct AnyCertificate(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::Secret;

    /// A master endpoint on 127.0.0.1 and a client connection to it under `trust`; the server
    /// side's connection comes back too.
    async fn pair(
        identity: MasterIdentity,
        trust: &MasterTrust,
    ) -> Result<(quinn::Connection, quinn::Connection, quinn::Endpoint), quinn::ConnectionError>
    {
        let server = quinn::Endpoint::server(
            server_config(identity).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let accepting = tokio::spawn({
            let server = server.clone();
            async move { server.accept().await.unwrap().await }
        });
        let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        client.set_default_client_config(client_config(trust).unwrap());
        let conn = client.connect(addr, SERVER_NAME).unwrap().await?;
        let served = accepting.await.unwrap()?;
        Ok((conn, served, server))
    }

    /// Both ends of a connection see one exporter secret; another connection sees another,
    /// which is why a proof cannot be carried from one connection to the next.
    #[tokio::test]
    async fn exporter_secrets_are_per_connection() {
        let (a_client, a_server, _s1) =
            pair(MasterIdentity::self_signed().unwrap(), &MasterTrust::Token)
                .await
                .unwrap();
        let (b_client, b_server, _s2) =
            pair(MasterIdentity::self_signed().unwrap(), &MasterTrust::Token)
                .await
                .unwrap();
        let (a, b) = (
            Secret::of(&a_client).unwrap(),
            Secret::of(&b_client).unwrap(),
        );
        assert_eq!(a, Secret::of(&a_server).unwrap());
        assert_eq!(b, Secret::of(&b_server).unwrap());
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_pinned_fingerprint_admits_that_certificate_only() {
        let identity = MasterIdentity::self_signed().unwrap();
        let right = MasterTrust::fingerprint(&identity.fingerprint()).unwrap();
        assert!(pair(identity, &right).await.is_ok());
        let other = MasterIdentity::self_signed().unwrap();
        let err = pair(other, &right).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        for text in [hex.as_str(), colons.as_str()] {
            match MasterTrust::fingerprint(text) {
                Ok(MasterTrust::Fingerprint(f)) => assert_eq!(f, [0xab; 32]),
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = MasterTrust::fingerprint("abc").unwrap_err();
        assert!(e.contains("not a SHA-256 fingerprint"), "{e}");
        assert!(MasterTrust::fingerprint(&"zz".repeat(32)).is_err());
    }
}
