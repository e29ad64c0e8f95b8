//! `[llm]`: the `llm` driver's table of the scenario file, the prompts the master resolves
//! into it ([`ResolvedPrompt`]), and the command-line overrides that reach it (`--backend`,
//! `--model`, `--requests-csv`). Shapes and plain edits only; the checks are the driver's
//! ([`super::validate`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::Overrides;
use crate::units::HumanDuration;

/// `[llm]`: what the `llm` driver sends and how it reads the answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmFile {
    /// The server's API: `openai`, `openai-chat`, `vllm`, `tgi`, `triton`, `sax`.
    #[serde(default = "default::backend")]
    pub backend: String,
    /// The model name sent to the server (OpenAI `model`, Triton's model in the path, SAX's
    /// `model`).
    #[serde(default = "default::model")]
    pub model: String,
    /// Ask for a streamed answer (where the backend has one): TTFT and ITL need it.
    #[serde(default = "default::yes")]
    pub stream: bool,
    /// Sampling temperature (default: that of ai-on-gke's Locust benchmark, from `best_of` and beam
    /// search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// The `best_of` of ai-on-gke's Locust benchmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<u32>,
    /// The `use_beam_search` of ai-on-gke's Locust benchmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_beam_search: Option<bool>,
    /// Ask the server to generate `max_tokens` whatever the end-of-sequence token says
    /// (vLLM's `ignore_eos`; ai-on-gke's Locust benchmark sends it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// A Hugging Face `tokenizer.json` (read locally; relative to the scenario file) to count
    /// prompt and output tokens where the server gives no usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<std::path::PathBuf>,
    /// The text of `tokenizer`, read by the master ([`super::resolve_prompts`]) and sent in
    /// the assignment, so workers open no file. Never read from a scenario file.
    #[serde(skip)]
    pub tokenizer_json: Option<String>,
    /// The preferred way to count output tokens: `usage` (default), `tokenizer`, `chunks`,
    /// `words`; the next available is used when it has nothing to count with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_count: Option<crate::llm::TokenCountMethod>,
    /// Per-request timeout (default 300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Headers sent with every request (`Authorization = "Bearer ..."`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Seed of the prompt sampling (prompt choice, synthetic prompts); 0 by default.
    #[serde(default)]
    pub seed: u64,
    /// Where prompts come from: `{ source = "lines", path = "prompts.txt" }`, `sharegpt`, or
    /// `synthetic` with input and output length distributions.
    pub prompts: crate::llm::PromptSource,
    /// The prompts themselves, filled in by the master from `prompts` before it sends the
    /// scenario to its workers (so workers need no prompt file). Never read from a scenario
    /// file: they travel in the assignment ([`crate::ScenarioConfig::to_assignment`]).
    #[serde(skip)]
    pub resolved: Vec<ResolvedPrompt>,
    /// Send one CSV row per request to the master (the `requests` record stream, written to
    /// `requests.csv`); set by `--requests-csv` only, and sent in the assignment.
    #[serde(skip)]
    pub requests_csv: bool,
}

impl LlmFile {
    /// Apply the overrides that reach `[llm]`: `--backend`, `--model`, `--requests-csv`.
    pub(crate) fn apply(&mut self, o: &Overrides) {
        if let Some(b) = &o.backend {
            self.backend = b.clone();
        }
        if let Some(m) = &o.model {
            self.model = m.clone();
        }
        if o.requests_csv {
            self.requests_csv = true;
        }
    }

    /// Make the files it names (prompts, tokenizer) relative to `dir`, the scenario's folder.
    pub(crate) fn relative_to(&mut self, dir: &Path) {
        self.prompts = self.prompts.relative_to(dir);
        if let Some(t) = self.tokenizer.as_mut().filter(|t| t.is_relative()) {
            *t = dir.join(&*t);
        }
    }
}

/// One prompt as the master sends it to workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedPrompt {
    /// The text.
    pub text: String,
    /// Its length in tokens, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    /// The `max_tokens` to ask for.
    pub max_tokens: u32,
}

mod default {
    pub fn backend() -> String {
        "openai".into()
    }
    pub fn model() -> String {
        "stampede-sim".into()
    }
    pub fn yes() -> bool {
        true
    }
}
