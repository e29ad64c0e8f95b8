//! TLS for the load drivers: the scenario's `[tls]` table, the rustls client configuration it
//! makes (the system's roots plus `ca`, mutual TLS, `insecure`, ALPN), and the failure kinds a
//! TLS connection records (`tls: invalid peer certificate: UnknownIssuer`, ...).
//!
//! The master reads the files `[tls]` names and ships their PEM text to the workers inside the
//! assignment ([`TlsFile::resolve`]); a worker builds its [`TlsClient`] from that text and
//! never opens a file. Connecting and timing the handshake is [`crate::driver::transport`]'s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use stampede_protocol::transport::AnyCertificate;

use crate::recorder::Failure;

/// `[tls]`: how to trust the target and who to be to it. Paths are relative to the scenario
/// file; the master reads them ([`TlsFile::resolve`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM file of certificates to trust, in addition to the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Skip certificate verification (the handshake's signatures are still checked). Warned
    /// about once, and recorded in summary.json.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// PEM certificate (chain) presented to the server: mutual TLS, with `client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// The name sent as SNI and checked in the certificate, instead of the target's host (for
    /// a target given by IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The files' contents, read by the master: what workers build their client from.
    #[serde(skip)]
    pub material: TlsMaterial,
}

/// The PEM text of the files a [`TlsFile`] names, as the master read them. Travels in the
/// assignment, so workers need no copies of the files.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TlsMaterial {
    /// `ca`'s certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// `client_cert`'s chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// `client_key`'s key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

impl TlsMaterial {
    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }
}

/// Why `[tls]` cannot be used: each names the setting, and the file where there is one.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("tls.{field}: {path}: {source}")]
    Read {
        /// The setting (`ca`, `client_cert`, `client_key`).
        field: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what the setting needs.
    #[error("tls.{field}: {what}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong, naming the file.
        what: String,
    },
}

impl TlsError {
    /// The setting at fault (`tls.ca`, ...).
    pub fn field(&self) -> String {
        match self {
            TlsError::Read { field, .. } | TlsError::Invalid { field, .. } => {
                format!("tls.{field}")
            }
        }
    }

    /// The message without the setting.
    pub fn detail(&self) -> String {
        match self {
            TlsError::Read { path, source, .. } => format!("{path}: {source}"),
            TlsError::Invalid { what, .. } => what.clone(),
        }
    }
}

impl TlsFile {
    /// The same settings with paths taken relative to `dir` (the scenario's folder).
    pub fn relative_to(&self, dir: &Path) -> TlsFile {
        let join = |p: &Option<PathBuf>| {
            p.as_ref().map(|p| {
                if p.is_relative() {
                    dir.join(p)
                } else {
                    p.clone()
                }
            })
        };
        TlsFile {
            ca: join(&self.ca),
            client_cert: join(&self.client_cert),
            client_key: join(&self.client_key),
            ..self.clone()
        }
    }

    /// Read the files into [`TlsFile::material`] and check them: a CA file must hold PEM
    /// certificates, a client certificate needs its key and the key must be the certificate's.
    /// Done by the master before a run, so a bad file is an error before any load is sent.
    pub fn resolve(&mut self) -> Result<(), TlsError> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            let (field, other) = if self.client_cert.is_some() {
                ("client_key", "client_cert")
            } else {
                ("client_cert", "client_key")
            };
            return Err(TlsError::Invalid {
                field,
                what: format!("mutual TLS needs both client_cert and client_key; {other} is set"),
            });
        }
        let read = |field: &'static str, path: &Option<PathBuf>| -> Result<_, TlsError> {
            path.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p).map_err(|source| TlsError::Read {
                        field,
                        path: p.display().to_string(),
                        source,
                    })
                })
                .transpose()
        };
        let material = TlsMaterial {
            ca: read("ca", &self.ca)?,
            client_cert: read("client_cert", &self.client_cert)?,
            client_key: read("client_key", &self.client_key)?,
        };
        let names = Names {
            ca: path_text(&self.ca),
            client_cert: path_text(&self.client_cert),
            client_key: path_text(&self.client_key),
        };
        Identity::of(&material, &names)?;
        self.material = material;
        Ok(())
    }
}

fn path_text(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map_or_else(String::new, |p| p.display().to_string())
}

/// File names for error messages (the worker has only the text: it names the setting).
#[derive(Default)]
struct Names {
    ca: String,
    client_cert: String,
    client_key: String,
}

/// The parsed material: extra roots and the client's identity.
struct Identity {
    roots: Vec<CertificateDer<'static>>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Identity {
    fn of(material: &TlsMaterial, names: &Names) -> Result<Identity, TlsError> {
        let certs = |field: &'static str, pem: &str, name: &str| {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError::Invalid {
                    field,
                    what: format!("{}is not a PEM certificate file: {e}", named(name)),
                })?;
            if certs.is_empty() {
                return Err(TlsError::Invalid {
                    field,
                    what: format!(
                        "{}holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        named(name)
                    ),
                });
            }
            Ok(certs)
        };
        let roots = match &material.ca {
            Some(pem) => certs("ca", pem, &names.ca)?,
            None => Vec::new(),
        };
        let client = match (&material.client_cert, &material.client_key) {
            (Some(cert), Some(key)) => {
                let chain = certs("client_cert", cert, &names.client_cert)?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                    TlsError::Invalid {
                        field: "client_key",
                        what: format!("{}is not a PEM private key: {e}", named(&names.client_key)),
                    }
                })?;
                let signer = provider()
                    .key_provider
                    .load_private_key(key.clone_key())
                    .map_err(|e| TlsError::Invalid {
                        field: "client_key",
                        what: format!("{}cannot be used: {e}", named(&names.client_key)),
                    })?;
                let certified = rustls::sign::CertifiedKey::new(chain.clone(), signer);
                if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
                    certified.keys_match()
                {
                    return Err(TlsError::Invalid {
                        field: "client_key",
                        what: format!(
                            "{}is not the key of {}",
                            named(&names.client_key),
                            if names.client_cert.is_empty() {
                                "client_cert".to_string()
                            } else {
                                names.client_cert.clone()
                            }
                        ),
                    });
                }
                Some((chain, key))
            }
            _ => None,
        };
        Ok(Identity { roots, client })
    }
}

/// `"path "` for a message, or nothing when the path is unknown (on a worker).
fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("{name} ")
    }
}

/// The ring provider every TLS connection of the drivers uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's root certificates (rustls-native-certs: the platform store, `SSL_CERT_FILE`,
/// `SSL_CERT_DIR`), loaded once per process. Empty when there are none: `ca` or `insecure`
/// must then say whom to trust, and an untrusted server is an `UnknownIssuer` failure.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("loading the system's root certificates: {e}");
        }
        found.certs
    })
}

/// Which HTTP versions a connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1` only.
    Http1,
    /// `h2` only.
    Http2,
    /// `h2` preferred, `http/1.1` accepted: the server decides.
    Any,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::Http2 => vec![b"h2".to_vec()],
            Alpn::Any => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }
}

/// A driver's TLS client: one rustls configuration per run and worker, shared by every
/// connection (so sessions resume as a browser's would), and the name to present.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    /// `server_name`, when set: SNI and the certificate's name, instead of the URL's host.
    server_name: Option<ServerName<'static>>,
    /// Verification is off.
    insecure: bool,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("alpn", &self.config.alpn_protocols)
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl TlsClient {
    /// The client of `file` (whose material the master resolved), offering `alpn`.
    pub fn new(file: &TlsFile, alpn: Alpn) -> Result<TlsClient, TlsError> {
        let identity = Identity::of(&file.material, &Names::default())?;
        let versions = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid {
                field: "ca",
                what: format!("TLS setup: {e}"),
            })?;
        let verifying = if file.insecure {
            versions
                .dangerous()
                // `insecure = true`: any certificate, its handshake signatures still checked.
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(system_roots().iter().cloned());
            for cert in identity.roots {
                roots.add(cert).map_err(|e| TlsError::Invalid {
                    field: "ca",
                    what: format!("a certificate cannot be trusted as a root: {e}"),
                })?;
            }
            versions.with_root_certificates(roots)
        };
        let mut config = match identity.client {
            Some((chain, key)) => {
                verifying
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Invalid {
                        field: "client_key",
                        what: e.to_string(),
                    })?
            }
            None => verifying.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.protocols();
        let server_name = match &file.server_name {
            Some(name) => {
                Some(
                    ServerName::try_from(name.clone()).map_err(|_| TlsError::Invalid {
                        field: "server_name",
                        what: format!("`{name}` is not a DNS name or IP address"),
                    })?,
                )
            }
            None => None,
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            insecure: file.insecure,
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// The name to present to a server at `host`: `server_name`, or the host itself (an IP
    /// address in brackets or not).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, Failure> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string())
            .map_err(|_| Failure::Tls("invalid server name".to_string()))
    }

    /// Whether certificate verification is off.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }
}

/// Validate `server_name` for the scenario's checks: `Err(message)`.
pub fn check_server_name(name: &str) -> Result<(), String> {
    ServerName::try_from(name.to_string())
        .map(|_| ())
        .map_err(|_| format!("`{name}` is not a DNS name or IP address"))
}

/// The failure an I/O error of a TLS connection is: the rustls error under it, named, or the
/// I/O kind when there is none.
pub fn failure_of(e: &std::io::Error) -> Option<Failure> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(failure_of_tls(tls))
}

/// The failure kind of a rustls error: fixed words, no names or addresses, so kinds stay few.
pub fn failure_of_tls(e: &rustls::Error) -> Failure {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => {
            Failure::Tls(format!("invalid peer certificate: {}", certificate_kind(c)))
        }
        E::InvalidMessage(_)
        | E::InappropriateHandshakeMessage { .. }
        | E::InappropriateMessage { .. } => {
            // A server that answers a ClientHello with `HTTP/1.1 400 ...` or any other
            // plaintext: its first byte is no TLS record type.
            Failure::Protocol("plaintext answer on a TLS connection")
        }
        E::AlertReceived(alert) => Failure::Tls(format!("handshake: received alert {alert:?}")),
        E::NoApplicationProtocol => {
            Failure::Tls("handshake: no common application protocol (ALPN)".to_string())
        }
        E::PeerIncompatible(why) => Failure::Tls(format!("handshake: peer incompatible: {why:?}")),
        E::PeerMisbehaved(why) => Failure::Tls(format!("handshake: peer misbehaved: {why:?}")),
        E::DecryptError => Failure::Tls("decrypt error".to_string()),
        E::HandshakeNotComplete => Failure::Tls("handshake: not complete".to_string()),
        other => Failure::Tls(format!("handshake: {}", variant(&format!("{other:?}")))),
    }
}

/// A certificate error's name (`UnknownIssuer`, `Expired`, `NotValidForName`, ...), without
/// the names and times some variants carry.
fn certificate_kind(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::ExpiredContext { .. } => "Expired".into(),
        C::NotValidYetContext { .. } => "NotValidYet".into(),
        C::NotValidForNameContext { .. } => "NotValidForName".into(),
        C::InvalidPurposeContext { .. } => "InvalidPurpose".into(),
        C::ExpiredRevocationListContext { .. } => "ExpiredRevocationList".into(),
        // webpki's own reasons (`CaUsedAsEndEntity`, ...) come as `Other`: name them.
        C::Other(e) => format!("Other({})", variant(&e.to_string())),
        other => variant(&format!("{other:?}")),
    }
}

/// The variant name of a `Debug` text: `Other(..)` → `Other`.
fn variant(debug: &str) -> String {
    debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or(debug)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn files_are_read_and_checked_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("client.test");
        let (_, other_key) = self_signed("other.test");
        let mut ok = TlsFile {
            ca: Some(write(dir.path(), "ca.pem", &cert)),
            client_cert: Some(write(dir.path(), "c.pem", &cert)),
            client_key: Some(write(dir.path(), "k.pem", &key)),
            ..TlsFile::default()
        };
        ok.resolve().unwrap();
        assert_eq!(ok.material.ca.as_deref(), Some(cert.as_str()));
        TlsClient::new(&ok, Alpn::Any).unwrap();

        let not_pem = write(dir.path(), "notpem.txt", "hello\n");
        let mut bad = TlsFile {
            ca: Some(not_pem.clone()),
            ..TlsFile::default()
        };
        let e = bad.resolve().unwrap_err();
        assert_eq!(e.field(), "tls.ca");
        assert!(
            e.to_string()
                .contains("notpem.txt holds no PEM certificate"),
            "{e}"
        );

        let mut mismatch = TlsFile {
            client_cert: Some(write(dir.path(), "c2.pem", &cert)),
            client_key: Some(write(dir.path(), "k2.pem", &other_key)),
            ..TlsFile::default()
        };
        let e = mismatch.resolve().unwrap_err();
        assert_eq!(e.field(), "tls.client_key");
        assert!(e.to_string().contains("k2.pem is not the key of"), "{e}");

        let mut half = TlsFile {
            client_cert: Some(write(dir.path(), "c3.pem", &cert)),
            ..TlsFile::default()
        };
        assert!(
            half.resolve()
                .unwrap_err()
                .to_string()
                .contains("both client_cert and client_key")
        );

        let mut missing = TlsFile {
            ca: Some(dir.path().join("nope.pem")),
            ..TlsFile::default()
        };
        let e = missing.resolve().unwrap_err();
        assert!(e.to_string().starts_with("tls.ca: "), "{e}");
        assert!(e.to_string().contains("nope.pem"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_scenario() {
        let f = TlsFile {
            ca: Some("ca.pem".into()),
            client_cert: Some("/abs/c.pem".into()),
            ..TlsFile::default()
        }
        .relative_to(Path::new("/s"));
        assert_eq!(f.ca.unwrap(), PathBuf::from("/s/ca.pem"));
        assert_eq!(f.client_cert.unwrap(), PathBuf::from("/abs/c.pem"));
    }

    #[test]
    fn failure_kinds_name_the_cause_without_details() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            failure_of_tls(&unknown).to_string(),
            "tls: invalid peer certificate: UnknownIssuer"
        );
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(
            failure_of_tls(&plain).to_string(),
            "protocol: plaintext answer on a TLS connection"
        );
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert_eq!(
            failure_of_tls(&alert).to_string(),
            "tls: handshake: received alert CertificateRequired"
        );
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        assert_eq!(
            failure_of(&io).unwrap().to_string(),
            "tls: invalid peer certificate: UnknownIssuer"
        );
        assert!(failure_of(&std::io::Error::other("x")).is_none());
    }

    #[test]
    fn server_name_overrides_the_host() {
        let plain = TlsClient::new(&TlsFile::default(), Alpn::Http1).unwrap();
        assert_eq!(
            plain.server_name("[::1]").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        let named = TlsClient::new(
            &TlsFile {
                server_name: Some("api.example".into()),
                ..TlsFile::default()
            },
            Alpn::Http1,
        )
        .unwrap();
        assert_eq!(
            named.server_name("127.0.0.1").unwrap(),
            ServerName::try_from("api.example").unwrap()
        );
        assert!(check_server_name("bad name!").is_err());
    }
}
