//! Server-side TLS for the built-in targets: a certificate and key from PEM files, or a
//! self-signed one made at start, turned into rustls configurations (ring) that offer HTTP/2 and
//! HTTP/1.1 by ALPN; and [`Transport`], how a target speaks on its listener.
//!
//! `stampede target … --tls` and `stampede run`'s `builtin:` targets build a [`ServerTls`] and
//! put it in the target's config; the accept loop does the handshakes. This module does no I/O
//! beyond reading the two files, asks for no client certificates and does not reload them.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio_rustls::TlsAcceptor;

/// ALPN name of HTTP/2.
pub(crate) const H2: &[u8] = b"h2";
/// ALPN name of HTTP/1.1.
const HTTP1: &[u8] = b"http/1.1";

/// How a target speaks on its listener. [`Default`] is plaintext HTTP/1.1, as the targets always
/// did; the other two cost nothing unless chosen.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Plaintext HTTP/1.1 only: the fast path the benchmarks measure.
    #[default]
    Http1,
    /// Plaintext, HTTP/1.1 or HTTP/2 with prior knowledge (h2c), told apart per connection by
    /// its first bytes (the HTTP/2 preface).
    H2c,
    /// TLS with this certificate; HTTP/2 when the client offers `h2` by ALPN, else HTTP/1.1.
    Tls(Arc<ServerTls>),
}

impl Transport {
    /// The URL scheme clients use: `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Tls(_) => "https",
            Transport::Http1 | Transport::H2c => "http",
        }
    }
}

/// Why a [`ServerTls`] could not be made. Every message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error(
        "{} is not a PEM certificate (expected a -----BEGIN CERTIFICATE----- block)",
        path.display()
    )]
    NotPemCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no PEM private key.
    #[error(
        "{} is not a PEM private key (expected a -----BEGIN PRIVATE KEY----- block, PKCS#8, RSA or EC)",
        path.display()
    )]
    NotPemKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is of a kind rustls (ring) cannot sign with.
    #[error("{} holds a key that cannot be used: {source}", path.display())]
    UnusableKey {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The key is not the one the certificate was issued for.
    #[error("{} does not match the certificate in {}", key.display(), certificate.display())]
    KeyMismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rcgen could not make the self-signed certificate.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration (no usable protocol version, a certificate it cannot
    /// parse).
    #[error("cannot configure TLS: {0}")]
    Config(#[source] rustls::Error),
}

/// A certificate and key ready to serve, with the rustls configurations made from them.
pub struct ServerTls {
    /// The certificate as PEM, for `--cert-out` and for clients that must trust it.
    certificate_pem: String,
    /// The names a self-signed certificate was made for (empty for one from files), for the
    /// "listening on" line.
    names: Vec<String>,
    /// ALPN `h2`, then `http/1.1`: every target speaks both.
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// A certificate (chain) and its private key from PEM files, as `--cert FILE --key FILE`.
    pub fn from_pem_files(certificate: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let certificate_bytes = read(certificate)?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&certificate_bytes)
                .collect::<Result<_, _>>()
                .ok()
                .filter(|chain: &Vec<_>| !chain.is_empty())
                .ok_or_else(|| TlsError::NotPemCertificate {
                    path: certificate.to_path_buf(),
                })?;
        let key_der =
            PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsError::NotPemKey {
                path: key.to_path_buf(),
            })?;
        let provider = provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|source| TlsError::UnusableKey {
                path: key.to_path_buf(),
                source,
            })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            // `Unknown`: the key cannot tell its public half; rustls itself lets that pass.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(TlsError::KeyMismatch {
                    certificate: certificate.to_path_buf(),
                    key: key.to_path_buf(),
                });
            }
            Err(_) => {
                return Err(TlsError::NotPemCertificate {
                    path: certificate.to_path_buf(),
                });
            }
        }
        // The file as given: it is what clients should trust, intermediates and all.
        let certificate_pem = String::from_utf8_lossy(&certificate_bytes).into_owned();
        ServerTls::build(certificate_pem, Vec::new(), certified)
    }

    /// A self-signed certificate, made now, for `localhost`, `127.0.0.1` and `::1`, plus `bind`
    /// when it is another (specified) address, so clients can check it when they trust
    /// [`ServerTls::certificate_pem`].
    pub fn self_signed(bind: IpAddr) -> Result<ServerTls, TlsError> {
        let mut names = vec![
            "localhost".to_string(),
            Ipv4Addr::LOCALHOST.to_string(),
            Ipv6Addr::LOCALHOST.to_string(),
        ];
        if !bind.is_loopback() && !bind.is_unspecified() {
            names.push(bind.to_string());
        }
        let mut params = rcgen::CertificateParams::new(names.clone())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "stampede built-in target");
        let key_pair = rcgen::KeyPair::generate()?;
        let certificate = params.self_signed(&key_pair)?;
        let key_der = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        let signing_key = provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(TlsError::Config)?;
        let certified = CertifiedKey::new(vec![certificate.der().clone()], signing_key);
        ServerTls::build(certificate.pem(), names, certified)
    }

    /// The certificate as PEM: write it where clients read their trusted roots (`--ca FILE`,
    /// `curl --cacert FILE`).
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The names a self-signed certificate was made for; empty for one read from files.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// An acceptor offering `h2`, then `http/1.1`, by ALPN.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }

    fn build(
        certificate_pem: String,
        names: Vec<String>,
        certified: CertifiedKey,
    ) -> Result<ServerTls, TlsError> {
        let resolver = Arc::new(SingleCertAndKey::from(Arc::new(certified)));
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![H2.to_vec(), HTTP1.to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            certificate_pem,
            names,
        })
    }
}

impl fmt::Debug for ServerTls {
    /// The names only: the key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// rustls's ring provider, explicitly: no process-wide default is installed or assumed.
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_names_the_bind_address_when_it_is_another_ip() {
        let names = |ip: &str| {
            ServerTls::self_signed(ip.parse().expect("test IP"))
                .expect("self-signed")
                .names
        };
        assert_eq!(names("127.0.0.1"), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(names("0.0.0.0"), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(
            names("10.1.2.3"),
            ["localhost", "127.0.0.1", "::1", "10.1.2.3"]
        );
    }

    #[test]
    fn the_pem_is_a_certificate() {
        let tls = ServerTls::self_signed(Ipv4Addr::LOCALHOST.into()).expect("self-signed");
        assert!(
            tls.certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(
            CertificateDer::pem_slice_iter(tls.certificate_pem().as_bytes()).count(),
            1
        );
    }
}
