//! The Performance Profile Generator's GCS source (`--gcs_csv_bucket B --gcs_csv_object O`): the
//! object read with the GCS JSON API, `GET {endpoint}/storage/v1/b/{bucket}/o/{object}?alt=media`.
//!
//! The endpoint is `https://storage.googleapis.com`, or `STORAGE_EMULATOR_HOST` when set
//! (`localhost:9023` means `http://localhost:9023`, as Google's Go client reads it). The
//! credentials, first found: `GOOGLE_OAUTH_ACCESS_TOKEN` (e.g. `gcloud auth
//! print-access-token`); the GCE / GKE metadata server's token for the default service
//! account (`GCE_METADATA_HOST` moves it); none, for public objects. Not a full ADC chain:
//! service-account key files and `gcloud` user credentials are not read.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::fetch::{Cause, FetchError, Get};

/// The public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// Where the metadata server is when `GCE_METADATA_HOST` does not say.
const METADATA_HOST: &str = "metadata.google.internal";
/// How long the metadata server may take: off GCE it is not there, and that must not hold up
/// every profile.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// How long "no metadata server" is believed before asking again.
const METADATA_RETRY: Duration = Duration::from_secs(60);
/// A metadata token is used until this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// An object name in a URL path: everything but unreserved characters percent-encoded
/// (`/` too, as the JSON API wants).
const OBJECT_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One object in a bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct GcsObject {
    /// The bucket name.
    pub bucket: String,
    /// The object name (a path like `runs/2024/bench.csv`).
    pub object: String,
}

/// Where the credentials for a read came from (logged, and named in an auth error).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Credentials {
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`.
    EnvToken,
    /// The metadata server's token.
    Metadata,
    /// None: only public objects can be read.
    Anonymous,
}

impl std::fmt::Display for GcsObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gs://{}/{}", self.bucket, self.object)
    }
}

impl GcsObject {
    /// The object's media URL at `endpoint` (no trailing slash).
    pub fn media_url(&self, endpoint: &str) -> String {
        format!(
            "{endpoint}/storage/v1/b/{}/o/{}?alt=media",
            utf8_percent_encode(&self.bucket, OBJECT_NAME),
            utf8_percent_encode(&self.object, OBJECT_NAME)
        )
    }

    /// Read the object with the credentials found (see the module docs).
    pub async fn fetch(&self, timeout: Duration, max_body: usize) -> Result<Vec<u8>, FetchError> {
        let url = self.media_url(&endpoint(std::env::var("STORAGE_EMULATOR_HOST").ok()));
        let (token, credentials) = match env_token() {
            Some(t) => (Some(t), Credentials::EnvToken),
            None => match metadata_token().await {
                Some(t) => (Some(t), Credentials::Metadata),
                None => (None, Credentials::Anonymous),
            },
        };
        tracing::debug!(%url, ?credentials, "reading {self}");
        let mut get = Get::new(&url, timeout, max_body);
        if let Some(token) = token {
            let value =
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| FetchError {
                    url: url.clone(),
                    cause: Cause::Http("the access token is not a valid header value".into()),
                })?;
            get = get.header(http::header::AUTHORIZATION, value);
        }
        get.send().await.map_err(|e| with_auth_hint(e, credentials))
    }
}

/// The API endpoint: the emulator's when `STORAGE_EMULATOR_HOST` is set (`http://` unless it
/// names a scheme), else the public one.
pub fn endpoint(emulator: Option<String>) -> String {
    match emulator.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) if h.contains("://") => h.trim_end_matches('/').to_string(),
        Some(h) => format!("http://{}", h.trim_end_matches('/')),
        None => DEFAULT_ENDPOINT.to_string(),
    }
}

fn env_token() -> Option<String> {
    std::env::var("GOOGLE_OAUTH_ACCESS_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A 401 or 403 says which credentials were used and how to give others.
fn with_auth_hint(mut error: FetchError, credentials: Credentials) -> FetchError {
    if let Cause::Status { status, detail } = &mut error.cause
        && (*status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN)
    {
        let used = match credentials {
            Credentials::EnvToken => "the token in GOOGLE_OAUTH_ACCESS_TOKEN was refused",
            Credentials::Metadata => "the metadata server's service-account token was refused",
            Credentials::Anonymous => {
                "no credentials were sent (no GOOGLE_OAUTH_ACCESS_TOKEN, no metadata server)"
            }
        };
        let sep = if detail.is_empty() { "" } else { "; " };
        detail.push_str(&format!(
            "{sep}{used}: set GOOGLE_OAUTH_ACCESS_TOKEN=$(gcloud auth print-access-token) or \
             grant the service account read access"
        ));
    }
    error
}

/// What the metadata server last said, and until when to believe it.
struct Remembered {
    token: Option<String>,
    until: Instant,
}

/// The default service account's token from the metadata server, if there is one. Kept until
/// shortly before it expires; "no server" is kept for [`METADATA_RETRY`], so a laptop asks
/// once a minute at most. A `std` mutex: held only to read or replace the value, never across
/// an await.
async fn metadata_token() -> Option<String> {
    static REMEMBERED: Mutex<Option<Remembered>> = Mutex::new(None);
    let now = Instant::now();
    if let Ok(guard) = REMEMBERED.lock()
        && let Some(r) = guard.as_ref().filter(|r| r.until > now)
    {
        return r.token.clone();
    }
    let (token, lifetime) = match ask_metadata().await {
        Ok((token, expires_in)) => (Some(token), expires_in.saturating_sub(TOKEN_MARGIN)),
        Err(e) => {
            tracing::debug!("no metadata server token: {e}");
            (None, METADATA_RETRY)
        }
    };
    if let Ok(mut guard) = REMEMBERED.lock() {
        *guard = Some(Remembered {
            token: token.clone(),
            until: now + lifetime,
        });
    }
    token
}

/// One token request: the token and how long it lives.
async fn ask_metadata() -> Result<(String, Duration), String> {
    let host = std::env::var("GCE_METADATA_HOST")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| METADATA_HOST.to_string());
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let body = Get::new(&url, METADATA_TIMEOUT, 64 << 10)
        .header(
            HeaderName::from_static("metadata-flavor"),
            HeaderValue::from_static("Google"),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let answer: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
    let token = answer["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("{url}: no access_token in the answer"))?;
    let expires_in = answer["expires_in"].as_u64().unwrap_or(300);
    Ok((token.to_string(), Duration::from_secs(expires_in)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_urls_and_endpoints() {
        let o = GcsObject {
            bucket: "my-bucket".into(),
            object: "runs/a b/bench+1.csv".into(),
        };
        assert_eq!(o.to_string(), "gs://my-bucket/runs/a b/bench+1.csv");
        assert_eq!(
            o.media_url(DEFAULT_ENDPOINT),
            "https://storage.googleapis.com/storage/v1/b/my-bucket/o/runs%2Fa%20b%2Fbench%2B1.csv?alt=media"
        );
        assert_eq!(endpoint(None), DEFAULT_ENDPOINT);
        assert_eq!(endpoint(Some(String::new())), DEFAULT_ENDPOINT);
        assert_eq!(
            endpoint(Some("localhost:9023".into())),
            "http://localhost:9023"
        );
        assert_eq!(
            endpoint(Some("https://gcs.test:4443/".into())),
            "https://gcs.test:4443"
        );
    }

    #[test]
    fn refused_credentials_are_named() {
        let e = FetchError {
            url: "u".into(),
            cause: Cause::Status {
                status: StatusCode::FORBIDDEN,
                detail: "denied".into(),
            },
        };
        let msg = with_auth_hint(e, Credentials::Anonymous).to_string();
        assert!(msg.starts_with("u: answered HTTP 403 Forbidden: denied; no credentials"));
        assert!(msg.contains("GOOGLE_OAUTH_ACCESS_TOKEN"), "{msg}");
    }
}
