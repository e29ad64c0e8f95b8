//! What the HTTP API's handlers share: [`ApiState`], the token check of requests that change
//! a run (Bearer, or HTTP Basic with the token as password), JSON bodies and errors, and the
//! scenario a start request asks for.
//!
//! Used by the API (`api`) and the routes merged into it (`compat`, `health`);
//! holds no routes itself.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde_json::json;
use stampede_scenarios::{Arrival, Overrides, ScenarioConfig};
use tokio::sync::{mpsc, watch};

use crate::coordinator::{Archive, Event};
use crate::metrics::Exporter;
use crate::snapshot::Snapshot;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Latest snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// To the coordinator.
    pub events: mpsc::Sender<Event>,
    /// Finished runs.
    pub archive: Arc<Archive>,
    /// The token for changes.
    pub token: Arc<str>,
    /// The master's scenario, the base for `POST /api/runs` overrides.
    pub scenario: Option<ScenarioConfig>,
    /// The Prometheus exporter.
    pub exporter: Arc<Exporter>,
    /// The master's `--out` directory, where `GET /run` (Locust compatibility) writes its
    /// result files.
    pub out: Option<PathBuf>,
    /// Where finished runs are kept (`<runs_dir>/<run_id>/`): `GET /run`'s result file goes
    /// into its run's directory there when there is no `--out`.
    pub runs_dir: Option<PathBuf>,
    /// The master's `--target`, for runs the API builds (the health workload).
    pub target: Option<String>,
}

/// A JSON error answer: `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The token a request presents: `Authorization: Bearer <token>`, or `Basic` credentials
/// whose password is the token (any user name), as Locust's clients and browsers send.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    if let Some(t) = value.strip_prefix("Bearer ") {
        return Some(t.trim().to_string());
    }
    let decoded = BASIC_CREDENTIALS
        .decode(value.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

/// Check the token of a request that starts, stops or changes a run: 401 without it or with
/// another (with `WWW-Authenticate`, so a browser or Locust client can ask for it).
pub fn authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let refuse = |m: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, m);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer, Basic realm=\"stampede\""),
        );
        Err(Box::new(r))
    };
    match presented_token(headers) {
        Some(t) if t.as_bytes() == state.token.as_bytes() => Ok(()),
        Some(_) => refuse("wrong token"),
        None => refuse(
            "this endpoint needs the master's token: `Authorization: Bearer <token>` (or HTTP \
             Basic auth with the token as password)",
        ),
    }
}

/// Parse a JSON request body: `Ok(None)` when empty, 400 naming the reason when it is not
/// valid JSON or not the expected shape.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        ))
    })
}

/// Standard base64 with or without padding, as browsers and Locust's clients send Basic
/// credentials.
const BASIC_CREDENTIALS: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Body of `POST /api/runs`: every field optional; overrides of the master's scenario, or a
/// whole scenario as TOML text.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    pub scenario_toml: Option<String>,
    pub duration: Option<String>,
    pub users: Option<u64>,
    pub spawn_rate: Option<f64>,
    pub rate: Option<f64>,
    pub arrival: Option<String>,
    /// Gamma arrivals of this shape (open models).
    pub burstiness: Option<f64>,
    pub target: Option<String>,
}

/// The scenario a start request asks for: the master's (or the body's TOML) with overrides.
pub fn scenario_for(s: &ApiState, b: &StartBody) -> Result<Option<ScenarioConfig>, String> {
    let arrival = b
        .arrival
        .as_deref()
        .map(str::parse::<Arrival>)
        .transpose()?;
    let duration = b
        .duration
        .as_deref()
        .map(stampede_scenarios::units::parse_duration)
        .transpose()?;
    let overrides = Overrides {
        duration,
        users: b.users,
        spawn_rate: b.spawn_rate,
        rate: b.rate,
        arrival,
        burstiness: b.burstiness,
        target: b.target.clone(),
        ..Overrides::default()
    };
    let base = match &b.scenario_toml {
        Some(text) => ScenarioConfig::parse(text, "<request body>", &Overrides::default())
            .map_err(|e| e.to_string())?,
        None => match &s.scenario {
            Some(sc) => sc.clone(),
            None => return Err("the master has no scenario: send `scenario_toml`".into()),
        },
    };
    if matches!(base.target, stampede_scenarios::Target::Builtin(_)) && overrides.target.is_none() {
        return Err("the scenario's target is built in; give a `target` URL".into());
    }
    let config = base.with_overrides(&overrides).map_err(|e| e.to_string())?;
    if b.burstiness.is_some() && !config.load.is_open() {
        return Err(
            "`burstiness` shapes open-model arrivals; this run's load is closed (give `rate` too)"
                .into(),
        );
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Basic credentials decode with or without padding; the password is the token.
    #[test]
    fn basic_credentials_give_the_password() {
        let token = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            presented_token(&headers)
        };
        // "locust:t" and "u:secret".
        assert_eq!(token("Basic bG9jdXN0OnQ="), Some("t".into()));
        assert_eq!(token("Basic bG9jdXN0OnQ"), Some("t".into()));
        assert_eq!(token("Basic dTpzZWNyZXQ="), Some("secret".into()));
        assert_eq!(token("Bearer abc "), Some("abc".into()));
        assert_eq!(token("Basic not*base64"), None);
        assert_eq!(token("Basic bm9jb2xvbg=="), None, "no colon");
    }
}
