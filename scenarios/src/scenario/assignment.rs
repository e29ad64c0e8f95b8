//! The assignment: a scenario as the master sends it to workers, as TOML text. The file form
//! (overrides applied) under `[scenario]`, and what the master filled in that a scenario file
//! cannot set: an `llm` scenario's prompts, tokenizer text and `--requests-csv` under `[llm]`,
//! the PEM text of
//! the files `[tls]` names under `[tls]`. Workers read it back with
//! [`ScenarioConfig::from_assignment`], which validates it as a file is validated.

use serde::{Deserialize, Serialize};

use super::{ScenarioConfig, ScenarioFile};
use crate::driver::llm::ResolvedPrompt;
use crate::model::ScenarioError;
use crate::model::locate::toml_error;
use crate::tls::TlsMaterial;

/// A scenario as the master assigns it to workers: the file form (overrides applied) and what
/// the master filled in that a scenario file cannot set.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    /// The scenario.
    scenario: ScenarioFile,
    /// `[llm]`'s prepared parts, for an `llm` scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    llm: Option<PreparedLlm>,
    /// The PEM text of the files `[tls]` names, read by the master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<TlsMaterial>,
}

/// The parts of `[llm]` the master prepares: [`crate::driver::llm::LlmFile::resolved`],
/// [`crate::driver::llm::LlmFile::requests_csv`] and
/// [`crate::driver::llm::LlmFile::tokenizer_json`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreparedLlm {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    resolved: Vec<ResolvedPrompt>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    requests_csv: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokenizer: Option<String>,
}

impl ScenarioConfig {
    /// The scenario as TOML text, as sent to workers: the file form under `[scenario]`, and
    /// what the master prepared that a file cannot set (the prompts, `--requests-csv`) under
    /// `[llm]`. Read back by [`ScenarioConfig::from_assignment`].
    pub fn to_assignment(&self) -> String {
        let mut scenario = self.file.clone();
        let llm = scenario.llm.as_mut().map(|l| PreparedLlm {
            resolved: std::mem::take(&mut l.resolved),
            requests_csv: l.requests_csv,
            tokenizer: l.tokenizer_json.take(),
        });
        let tls = scenario
            .tls
            .as_mut()
            .map(|t| std::mem::take(&mut t.material))
            .filter(|m| !m.is_empty());
        // The invariant: an Assignment holds only strings, numbers, tables and arrays, which
        // TOML can always represent, so serialization cannot fail.
        toml::to_string(&Assignment { scenario, llm, tls })
            .expect("an Assignment is always representable as TOML")
    }

    /// Parse and validate an assignment ([`ScenarioConfig::to_assignment`]); `origin` names
    /// the text in errors.
    pub fn from_assignment(text: &str, origin: &str) -> Result<ScenarioConfig, ScenarioError> {
        let assignment: Assignment =
            toml::from_str(text).map_err(|e| toml_error(&e, text, origin))?;
        let mut file = assignment.scenario;
        if let (Some(llm), Some(prepared)) = (file.llm.as_mut(), assignment.llm) {
            llm.resolved = prepared.resolved;
            llm.requests_csv = prepared.requests_csv;
            llm.tokenizer_json = prepared.tokenizer;
        }
        if let (Some(tls), Some(material)) = (file.tls.as_mut(), assignment.tls) {
            tls.material = material;
        }
        ScenarioConfig::from_file(file, origin)
    }
}
