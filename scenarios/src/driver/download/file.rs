//! `[download]`: the `download` driver's table of the scenario file. Its checks are the
//! driver's ([`super::validate`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::units::{Count, HumanDuration};

/// `[download]`: what the `download` driver fetches, and how it checks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadFile {
    /// The request's name in reports (default `GET <path>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path appended to the target URL; `{model_id}` and `{version}` are replaced (default
    /// `/performance/{model_id}/{version}/model.zip`, the ACME performance track's endpoint).
    #[serde(default = "default::download_path")]
    pub path: String,
    /// The model, as Hugging Face names it (default `arnir0/Tiny-LLM`); sanitized into the
    /// path as the ACME performance track does (`/` → `_`: `arnir0_Tiny-LLM`).
    #[serde(default = "default::model_id")]
    pub model_id: String,
    /// The version in the path (default `main`).
    #[serde(default = "default::version")]
    pub version: String,
    /// Expected SHA-256 of every body (hex); a body that differs is a `checksum mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Expected body length; a complete body of another length is a `size mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_bytes: Option<Count>,
    /// Per-download timeout, from its scheduled start (default: the run's duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Bytes read from the socket at a time, per connection (default 64k): the only buffer a
    /// download has, whatever the body's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<Count>,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Default for DownloadFile {
    fn default() -> Self {
        DownloadFile {
            name: None,
            path: default::download_path(),
            model_id: default::model_id(),
            version: default::version(),
            sha256: None,
            expected_bytes: None,
            timeout: None,
            buffer: None,
            headers: BTreeMap::new(),
        }
    }
}

mod default {
    pub fn download_path() -> String {
        "/performance/{model_id}/{version}/model.zip".into()
    }
    pub fn model_id() -> String {
        "arnir0/Tiny-LLM".into()
    }
    pub fn version() -> String {
        "main".into()
    }
}
