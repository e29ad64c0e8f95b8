//! GET one URL's body over `http://` or `https://`, within one deadline, following a few
//! redirects. TLS is rustls (ring) trusting the system's root certificates, or the PEM file in
//! `SSL_CERT_FILE` / the folder in `SSL_CERT_DIR` when either is set (read once per process).
//!
//! Called by [`crate::source`] for CSV URLs and by [`crate::gcs`] for objects and metadata
//! tokens. Deliberately small: HTTP/1.1, GET only, one connection per request, no proxies, no
//! cookies, no client certificates. Every failure is one [`FetchError`] line naming the URL.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// How much of an error answer's body is read for its message.
const ERROR_BODY: usize = 4096;
/// How much of that message is kept on the error line.
const ERROR_DETAIL: usize = 200;

/// One GET: where, with which headers, how long it may take and how much body it may bring.
#[derive(Debug, Clone)]
pub struct Get {
    /// The `http://` or `https://` URL.
    pub url: String,
    /// Extra request headers (`Host` and `User-Agent` are set already). Sent to the URL's
    /// host only: a redirect to another host or port drops them, so a token never leaks.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The deadline for everything: connecting, TLS, redirects, headers and body.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_body: usize,
}

/// Why a GET failed: the URL asked for, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {cause}")]
pub struct FetchError {
    /// The URL asked for (not where a redirect led).
    pub url: String,
    /// What went wrong.
    pub cause: Cause,
}

/// What went wrong in a GET.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The text is not an absolute http(s) URL.
    #[error("not an http:// or https:// URL: {0}")]
    BadUrl(String),
    /// The TCP connection failed (refused, no route, name not found).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// No root certificate could be loaded to check servers against.
    #[error("no trusted root certificates: {0}")]
    NoRoots(String),
    /// The TLS handshake failed; the text says why (an untrusted certificate, a wrong name).
    #[error("{0}")]
    Tls(String),
    /// The server answered, but not with 2xx (redirects aside).
    #[error("answered HTTP {status}{}", detail_suffix(.detail))]
    Status {
        /// The status.
        status: StatusCode,
        /// The message of the answer's body, on one line (empty when it had none).
        detail: String,
    },
    /// The connection broke, or the answer was not HTTP or too large.
    #[error("{0}")]
    Http(String),
    /// Too many redirects, or one without a usable `Location`.
    #[error("{0}")]
    Redirect(String),
    /// The deadline passed.
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl Get {
    /// A GET of `url` with no extra headers.
    pub fn new(url: &str, timeout: Duration, max_body: usize) -> Get {
        Get {
            url: url.to_string(),
            headers: Vec::new(),
            timeout,
            max_body,
        }
    }

    /// Add a request header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Get {
        self.headers.push((name, value));
        self
    }

    /// Send it: the body of a 2xx answer.
    pub async fn send(&self) -> Result<Vec<u8>, FetchError> {
        let fail = |cause| FetchError {
            url: self.url.clone(),
            cause,
        };
        tokio::time::timeout(self.timeout, self.follow())
            .await
            .map_err(|_| fail(Cause::Timeout(self.timeout)))?
            .map_err(fail)
    }

    /// GET, then GET where each redirect points, up to [`MAX_REDIRECTS`].
    async fn follow(&self) -> Result<Vec<u8>, Cause> {
        let first: Uri = self
            .url
            .parse()
            .map_err(|e| Cause::BadUrl(format!("{e}")))?;
        let first = Target::of(&first)?;
        let mut target = first.clone();
        for _ in 0..=MAX_REDIRECTS {
            // Headers (a bearer token) go to the host they were meant for only.
            let headers: &[(HeaderName, HeaderValue)] = if target.same_origin(&first) {
                &self.headers
            } else {
                &[]
            };
            let response = target.get(headers).await?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| {
                        Cause::Redirect(format!("answered HTTP {status} without a Location"))
                    })?;
                target = target.join(location)?;
                continue;
            }
            if !status.is_success() {
                let detail = error_detail(response.into_body()).await;
                return Err(Cause::Status { status, detail });
            }
            let body = Limited::new(response.into_body(), self.max_body)
                .collect()
                .await
                .map_err(|e| Cause::Http(format!("reading the body: {e}")))?;
            let mut buf = body.aggregate();
            let mut out = vec![0; buf.remaining()];
            buf.copy_to_slice(&mut out);
            return Ok(out);
        }
        Err(Cause::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    tls: bool,
    /// The host name or IP (no IPv6 brackets).
    host: String,
    port: u16,
    /// `host[:port]` as written, for the `Host` header.
    authority: String,
    /// The path and query.
    path: String,
}

impl Target {
    fn of(uri: &Uri) -> Result<Target, Cause> {
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Cause::BadUrl(uri.to_string())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| Cause::BadUrl(uri.to_string()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(Cause::BadUrl(uri.to_string()));
        }
        Ok(Target {
            tls,
            host,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.to_string(),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string()),
        })
    }

    fn same_origin(&self, other: &Target) -> bool {
        (self.tls, &self.host, self.port) == (other.tls, &other.host, other.port)
    }

    /// Where a `Location` leads from here: an absolute URL, an absolute path, or a path
    /// relative to this one's folder.
    fn join(&self, location: &str) -> Result<Target, Cause> {
        let bad = || Cause::Redirect(format!("a redirect to an unusable Location '{location}'"));
        if location.contains("://") {
            let uri: Uri = location.parse().map_err(|_| bad())?;
            return Target::of(&uri).map_err(|_| bad());
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let here = self.path.split('?').next().unwrap_or("/");
            let folder = &here[..here.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{location}", if folder.is_empty() { "/" } else { folder })
        };
        // The path must be one a request line can carry.
        path.parse::<http::uri::PathAndQuery>().map_err(|_| bad())?;
        Ok(Target {
            path,
            ..self.clone()
        })
    }

    /// One GET on a new connection: the answer's head and its body to come.
    async fn get(
        &self,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<http::Response<Incoming>, Cause> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(Cause::Connect)?;
        let request = {
            let mut r = http::Request::get(self.path.as_str())
                .header(http::header::HOST, self.authority.as_str())
                .header(http::header::USER_AGENT, "stampede-profile");
            for (name, value) in headers {
                r = r.header(name, value);
            }
            r.body(Empty::<Bytes>::new())
                .map_err(|e| Cause::Http(format!("cannot build the request: {e}")))?
        };
        if !self.tls {
            return send(tcp, request).await;
        }
        let config = tls_config()?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| Cause::Tls(format!("'{}' is not a valid TLS server name", self.host)))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Cause::Tls(tls_failure(&e, &self.host)))?;
        send(tls, request).await
    }
}

/// HTTP/1.1 over a connected stream.
async fn send<S>(
    stream: S,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<Incoming>, Cause>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Cause::Http(format!("HTTP handshake failed: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| Cause::Http(format!("no answer: {e}")))
}

/// The message of an error answer, on one line: a JSON `error.message` (as GCS and most APIs
/// send), else the body's text, cut to [`ERROR_DETAIL`] characters.
async fn error_detail(mut body: Incoming) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| match &v["error"] {
            serde_json::Value::String(s) => Some(s.clone()),
            e => e["message"].as_str().map(str::to_string),
        })
        .unwrap_or_else(|| text.into_owned());
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(ERROR_DETAIL) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// Why a TLS handshake failed, in words a user can act on.
fn tls_failure(error: &std::io::Error, host: &str) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake failed: {error}");
    };
    match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "certificate not trusted (unknown issuer): trust its CA with \
                                 SSL_CERT_FILE=ca.pem or SSL_CERT_DIR=DIR"
                .to_string(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("certificate not valid for {host}")
            }
            C::Expired | C::ExpiredContext { .. } => "certificate expired".to_string(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "certificate not valid yet".to_string()
            }
            other => format!("certificate rejected: {other:?}"),
        },
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "TLS handshake failed: the server does not speak TLS on that port (an http:// URL?)"
                .to_string()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// The client configuration: built once, from the roots the environment names or the
/// system's.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, Cause> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(build_tls_config)
        .clone()
        .map_err(Cause::NoRoots)
}

fn build_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(e) => format!(" ({e})"),
            None => String::new(),
        };
        return Err(format!(
            "none found{why}: install the system's CA certificates, or set SSL_CERT_FILE to a \
             PEM file"
        ));
    }
    for e in &found.errors {
        tracing::warn!("loading root certificates: {e}");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::of(&url.parse().unwrap()).unwrap()
    }

    #[test]
    fn redirects_resolve_against_the_current_url() {
        let here = target("https://h:8443/a/b.csv?x=1");
        assert_eq!((here.port, here.tls), (8443, true));
        assert_eq!(here.join("c.csv").unwrap().path, "/a/c.csv");
        assert_eq!(here.join("/d/e.csv?y").unwrap().path, "/d/e.csv?y");
        let away = here.join("http://other/f").unwrap();
        assert_eq!(
            (away.host.as_str(), away.port, away.tls),
            ("other", 80, false)
        );
        assert!(!away.same_origin(&here));
        assert!(here.join("/x").unwrap().same_origin(&here));
        assert!(here.join("bad path").is_err());
        assert_eq!(target("http://[::1]/").host, "::1");
    }

    #[tokio::test]
    async fn errors_are_one_line_naming_the_url() {
        let e = Get::new("ftp://h/x.csv", Duration::from_secs(1), 10)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ftp://h/x.csv: not an http:// or https:// URL: ftp://h/x.csv"
        );
        let status = Cause::Status {
            status: StatusCode::NOT_FOUND,
            detail: "No such object: b/o".into(),
        };
        assert_eq!(
            status.to_string(),
            "answered HTTP 404 Not Found: No such object: b/o"
        );
    }
}
