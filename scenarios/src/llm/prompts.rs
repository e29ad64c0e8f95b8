//! Prompt sets: where an LLM scenario's prompts come from, loaded once per run and then picked
//! at random per request.
//!
//! Three sources: a file of one prompt per line (ai-on-gke's Locust benchmark's
//! `filtered_prompts.txt`, with its `load_data.py` knobs `max_prompt_len`, `max_output_len`,
//! `max_num_prompts`), a ShareGPT JSON file (first human turn; expected output length from the
//! answer when a tokenizer is loaded), and synthetic prompts of exactly N tokens drawn from length
//! distributions. Lengths are counted by [`TokenCounter::count_text`] (a tokenizer, else words).
//! Loading is seeded: every worker builds the same set from the same seed. Relative paths are the
//! caller's to resolve.

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tokenizer::{TokenCountMethod, TokenCounter};

/// One prompt, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The text.
    pub text: String,
    /// Its length under the set's counting rule ([`PromptSet::count_rule`]), when known.
    pub input_tokens: Option<u32>,
    /// The `max_tokens` to ask for.
    pub max_output_tokens: u32,
}

/// The prompts of a run: never empty.
#[derive(Debug, Clone)]
pub struct PromptSet {
    prompts: Vec<Prompt>,
    rule: TokenCountMethod,
}

/// Where prompts come from, as written in a scenario file (`source = "lines"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum PromptSource {
    /// One prompt per line.
    Lines(FileSource),
    /// A ShareGPT JSON file: `[{"conversations": [{"from": "human", "value": ..}, ..]}, ..]`.
    #[serde(rename = "sharegpt")]
    ShareGpt(FileSource),
    /// Generated prompts of given lengths.
    Synthetic(SyntheticSource),
}

impl PromptSource {
    /// The file this source reads, if it reads one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            PromptSource::Lines(f) | PromptSource::ShareGpt(f) => Some(&f.path),
            PromptSource::Synthetic(_) => None,
        }
    }
}

/// A prompt file and the Locust benchmark's filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// The file.
    pub path: PathBuf,
    /// Drop prompts shorter than this (the Locust benchmark: 4, "TGI errors on too-short inputs").
    #[serde(default = "default::min_len")]
    pub min_prompt_len: u32,
    /// Drop prompts longer than this (the Locust benchmark's `max_prompt_len`, 1024).
    #[serde(default = "default::max_len")]
    pub max_prompt_len: u32,
    /// The `max_tokens` of every request (the Locust benchmark's `max_output_len`, 1024). ShareGPT
    /// with a tokenizer: the answer's length instead, and longer answers are dropped.
    #[serde(default = "default::max_len")]
    pub max_output_len: u32,
    /// Keep at most this many, sampled with the RNG seed (the Locust benchmark's `max_num_prompts`;
    /// it defaults to 100 there, to all here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_prompts: Option<usize>,
}

/// Synthetic prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSource {
    /// Prompt lengths, in tokens.
    pub input: LengthDist,
    /// `max_tokens` per request.
    pub output: LengthDist,
    /// How many distinct prompts to generate.
    #[serde(default = "default::count")]
    pub count: usize,
}

/// A distribution of lengths in tokens (`{ dist = "normal", mean = 512, stddev = 64 }`).
/// Samples are rounded and kept at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "lowercase", deny_unknown_fields)]
pub enum LengthDist {
    /// Always `tokens`.
    Fixed {
        /// The length.
        tokens: u32,
    },
    /// Uniform over `min..=max`.
    Uniform {
        /// Shortest.
        min: u32,
        /// Longest.
        max: u32,
    },
    /// Normal, clamped to `min..=max` when given.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation (≥ 0).
        stddev: f64,
        /// Clamp below.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u32>,
        /// Clamp above.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u32>,
    },
}

/// Why a prompt set could not be built. Displays with the file, and the line or JSON path.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of a prompt file is unusable.
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A ShareGPT file is not JSON at all (a text file given as `sharegpt`, ...).
    #[error("{}: not ShareGPT JSON ({source})", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// Where the JSON parser gave up.
        source: serde_json::Error,
    },
    /// A JSON file is not the expected shape.
    #[error("{}: {json_path}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Where in the document (`$[3].conversations[0].value`).
        json_path: String,
        /// What is wrong.
        message: String,
    },
    /// Nothing was left to send.
    #[error("{what}: no prompts left ({why})")]
    Empty {
        /// The source (file name or `synthetic`).
        what: String,
        /// What removed them.
        why: String,
    },
    /// The source's settings are invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The setting of the source at fault (`min_prompt_len`, `input`, `count`).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl PromptError {
    /// The setting of the source at fault: `path` for what the file holds (or its absence),
    /// the setting itself for an invalid one; `None` when the whole source is (nothing left).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            PromptError::Io { .. }
            | PromptError::Line { .. }
            | PromptError::NotJson { .. }
            | PromptError::Json { .. } => Some("path"),
            PromptError::Invalid { field, .. } => Some(field),
            PromptError::Empty { .. } => None,
        }
    }

    /// What is wrong, without [`PromptError::field`]'s name (the file's name stays: it is the
    /// value at fault).
    pub fn detail(&self) -> String {
        match self {
            PromptError::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl PromptSet {
    /// A set of given prompts; empty is an error.
    pub fn new(prompts: Vec<Prompt>, rule: TokenCountMethod) -> Result<PromptSet, PromptError> {
        if prompts.is_empty() {
            return Err(PromptError::Empty {
                what: "prompt set".into(),
                why: "none given".into(),
            });
        }
        Ok(PromptSet { prompts, rule })
    }

    /// Build the set a source describes. `seed` drives every random choice of the load.
    pub fn load(
        source: &PromptSource,
        counter: &TokenCounter,
        seed: u64,
    ) -> Result<PromptSet, PromptError> {
        let mut rng = SmallRng::seed_from_u64(seed);
        match source {
            PromptSource::Lines(f) => PromptSet::from_lines(f, counter, &mut rng),
            PromptSource::ShareGpt(f) => PromptSet::from_sharegpt(f, counter, &mut rng),
            PromptSource::Synthetic(s) => PromptSet::synthetic(s, counter, &mut rng),
        }
    }

    /// One prompt per line; blank lines are skipped, trailing whitespace trimmed.
    pub fn from_lines(
        src: &FileSource,
        counter: &TokenCounter,
        rng: &mut SmallRng,
    ) -> Result<PromptSet, PromptError> {
        src.check()?;
        let bytes = read(&src.path)?;
        let mut filter = Filter::new(src);
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let text = std::str::from_utf8(line).map_err(|e| PromptError::Line {
                path: src.path.clone(),
                line: i + 1,
                message: format!("not valid UTF-8 (byte {})", e.valid_up_to() + 1),
            })?;
            let text = text.trim_end();
            if text.is_empty() {
                continue;
            }
            let len = counter.count_text(text);
            if filter.keeps_prompt(len) {
                filter.kept.push(Prompt {
                    text: text.to_string(),
                    input_tokens: Some(len),
                    max_output_tokens: src.max_output_len,
                });
            }
        }
        filter.finish(src, counter, rng)
    }

    /// ShareGPT: for each conversation, the first human turn is the prompt and the next
    /// assistant turn the reference answer. Conversations of fewer than two turns or without
    /// a human turn are skipped; a wrongly typed field is an error naming its JSON path.
    pub fn from_sharegpt(
        src: &FileSource,
        counter: &TokenCounter,
        rng: &mut SmallRng,
    ) -> Result<PromptSet, PromptError> {
        src.check()?;
        let bytes = read(&src.path)?;
        let json_err = |json_path: String, message: &str| PromptError::Json {
            path: src.path.clone(),
            json_path,
            message: message.to_string(),
        };
        let root: Value =
            serde_json::from_slice(&bytes).map_err(|source| PromptError::NotJson {
                path: src.path.clone(),
                source,
            })?;
        let Value::Array(items) = root else {
            return Err(json_err("$".into(), "expected an array of conversations"));
        };
        let with_tokenizer = counter.tokenizer().is_some();
        let mut filter = Filter::new(src);
        for (i, item) in items.iter().enumerate() {
            let turns = match item.get("conversations") {
                Some(Value::Array(turns)) => turns,
                Some(_) => {
                    return Err(json_err(
                        format!("$[{i}].conversations"),
                        "expected an array",
                    ));
                }
                None => return Err(json_err(format!("$[{i}]"), "missing `conversations`")),
            };
            let mut roles = Vec::with_capacity(turns.len());
            for (j, turn) in turns.iter().enumerate() {
                let field = |name: &str| match turn.get(name) {
                    Some(Value::String(s)) => Ok(s.as_str()),
                    _ => Err(json_err(
                        format!("$[{i}].conversations[{j}].{name}"),
                        "expected a string",
                    )),
                };
                roles.push((field("from")?, field("value")?));
            }
            if roles.len() < 2 {
                filter.skipped += 1;
                continue;
            }
            let Some(h) = roles.iter().position(|(from, _)| is_human(from)) else {
                filter.skipped += 1;
                continue;
            };
            let prompt = roles[h].1.trim();
            let answer = roles[h + 1..]
                .iter()
                .find(|(from, _)| is_assistant(from))
                .map(|(_, v)| *v);
            let len = counter.count_text(prompt);
            if !filter.keeps_prompt(len) {
                continue;
            }
            let max_output_tokens = match answer {
                Some(answer) if with_tokenizer => {
                    let out = counter.count_text(answer);
                    if !filter.keeps_output(out) {
                        continue;
                    }
                    out
                }
                _ => src.max_output_len,
            };
            filter.kept.push(Prompt {
                text: prompt.to_string(),
                input_tokens: Some(len),
                max_output_tokens,
            });
        }
        filter.finish(src, counter, rng)
    }

    /// `count` prompts whose lengths are drawn from `input`, each exactly that many tokens
    /// under the counter's rule when the tokenizer allows it (`input_tokens` always holds
    /// the true length), with `max_tokens` drawn from `output`.
    pub fn synthetic(
        src: &SyntheticSource,
        counter: &TokenCounter,
        rng: &mut SmallRng,
    ) -> Result<PromptSet, PromptError> {
        src.input.check("input")?;
        src.output.check("output")?;
        if src.count == 0 {
            return Err(PromptError::Invalid {
                field: "count",
                message: "must be ≥ 1".into(),
            });
        }
        let pool = word_pool(counter);
        let mut prompts = Vec::with_capacity(src.count);
        for _ in 0..src.count {
            let want = src.input.sample(rng);
            let (text, len) = synthetic_text(want, &pool, counter, rng);
            prompts.push(Prompt {
                text,
                input_tokens: Some(len),
                max_output_tokens: src.output.sample(rng),
            });
        }
        PromptSet::new(prompts, counter.text_rule())
    }

    /// A prompt chosen uniformly at random.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> &Prompt {
        // The invariant: the set is never empty (checked when built).
        self.prompts
            .choose(rng)
            .expect("prompt sets are never empty")
    }

    /// Every prompt.
    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }

    /// How many prompts.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// Always false: an empty set is refused when built.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// The rule `input_tokens` were counted by (`tokenizer` or `words`).
    pub fn count_rule(&self) -> TokenCountMethod {
        self.rule
    }
}

impl PromptSource {
    /// The same source with a relative path taken from `dir` (the scenario file's folder).
    pub fn relative_to(&self, dir: &Path) -> PromptSource {
        let mut s = self.clone();
        if let PromptSource::Lines(f) | PromptSource::ShareGpt(f) = &mut s
            && f.path.is_relative()
        {
            f.path = dir.join(&f.path);
        }
        s
    }
}

impl FileSource {
    /// A source with the Locust benchmark's defaults.
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource {
            path: path.into(),
            min_prompt_len: default::min_len(),
            max_prompt_len: default::max_len(),
            max_output_len: default::max_len(),
            max_num_prompts: None,
        }
    }

    fn check(&self) -> Result<(), PromptError> {
        let invalid = |field, message| Err(PromptError::Invalid { field, message });
        if self.min_prompt_len > self.max_prompt_len {
            return invalid(
                "min_prompt_len",
                format!(
                    "{} is above max_prompt_len ({})",
                    self.min_prompt_len, self.max_prompt_len
                ),
            );
        }
        if self.max_output_len == 0 {
            return invalid("max_output_len", "must be ≥ 1".into());
        }
        if self.max_num_prompts == Some(0) {
            return invalid("max_num_prompts", "must be ≥ 1".into());
        }
        Ok(())
    }
}

impl LengthDist {
    /// Draw one length (≥ 1).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let v = match *self {
            LengthDist::Fixed { tokens } => tokens,
            LengthDist::Uniform { min, max } => rng.random_range(min..=max.max(min)),
            LengthDist::Normal {
                mean,
                stddev,
                min,
                max,
            } => {
                // `check` refused a negative or non-finite deviation; 0 is a point mass.
                let x = Normal::new(mean, stddev.max(0.0))
                    .map(|n| n.sample(rng))
                    .unwrap_or(mean);
                let x = x.round().clamp(1.0, f64::from(u32::MAX)) as u32;
                x.clamp(min.unwrap_or(1), max.unwrap_or(u32::MAX))
            }
        };
        v.max(1)
    }

    fn check(&self, what: &'static str) -> Result<(), PromptError> {
        let bad = |message: String| {
            Err(PromptError::Invalid {
                field: what,
                message,
            })
        };
        match *self {
            LengthDist::Fixed { tokens: 0 } => bad("tokens must be ≥ 1".into()),
            LengthDist::Uniform { min, max } if min > max || max == 0 => bad(format!(
                "uniform needs 0 ≤ min ≤ max, max ≥ 1 (got {min}..={max})"
            )),
            LengthDist::Normal { mean, stddev, .. }
                if !mean.is_finite() || !stddev.is_finite() || stddev < 0.0 =>
            {
                bad(format!(
                    "normal needs a finite mean and stddev ≥ 0 (got {mean}, {stddev})"
                ))
            }
            LengthDist::Normal {
                min: Some(lo),
                max: Some(hi),
                ..
            } if lo > hi => bad(format!("normal min ({lo}) is above max ({hi})")),
            _ => Ok(()),
        }
    }
}

/// The Locust benchmark's filters and sampling, shared by the file sources.
struct Filter {
    min: u32,
    max: u32,
    max_out: u32,
    kept: Vec<Prompt>,
    too_short: usize,
    too_long: usize,
    skipped: usize,
}

impl Filter {
    fn new(src: &FileSource) -> Filter {
        Filter {
            min: src.min_prompt_len,
            max: src.max_prompt_len,
            max_out: src.max_output_len,
            kept: Vec::new(),
            too_short: 0,
            too_long: 0,
            skipped: 0,
        }
    }

    fn keeps_prompt(&mut self, len: u32) -> bool {
        self.keeps(len, self.max)
    }

    fn keeps_output(&mut self, len: u32) -> bool {
        self.keeps(len, self.max_out)
    }

    fn keeps(&mut self, len: u32, max: u32) -> bool {
        if len < self.min {
            self.too_short += 1;
            false
        } else if len > max {
            self.too_long += 1;
            false
        } else {
            true
        }
    }

    fn finish(
        mut self,
        src: &FileSource,
        counter: &TokenCounter,
        rng: &mut SmallRng,
    ) -> Result<PromptSet, PromptError> {
        if self.kept.is_empty() {
            let mut why = format!(
                "{} shorter than {} and {} longer than the maximum, counted by {}",
                self.too_short,
                self.min,
                self.too_long,
                counter.text_rule()
            );
            if self.skipped > 0 {
                why.push_str(&format!("; {} conversations unusable", self.skipped));
            }
            return Err(PromptError::Empty {
                what: src.path.display().to_string(),
                why,
            });
        }
        if let Some(n) = src.max_num_prompts.filter(|&n| n < self.kept.len()) {
            let mut chosen = rand::seq::index::sample(rng, self.kept.len(), n).into_vec();
            chosen.sort_unstable();
            let mut all: Vec<Option<Prompt>> = self.kept.into_iter().map(Some).collect();
            self.kept = chosen.into_iter().filter_map(|i| all[i].take()).collect();
        }
        PromptSet::new(self.kept, counter.text_rule())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PromptError> {
    std::fs::read(path).map_err(|source| PromptError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn is_human(from: &str) -> bool {
    matches!(from, "human" | "user")
}

fn is_assistant(from: &str) -> bool {
    matches!(from, "gpt" | "chatgpt" | "assistant" | "bard" | "bing")
}

/// Ordinary English words that synthetic prompts are made of.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are",
    "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by",
    "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there",
    "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other",
    "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make", "like",
    "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no",
    "way", "could", "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its",
    "now", "find", "long", "down", "day", "did", "get", "come", "made", "may", "part", "over",
    "new", "sound", "take", "only", "little", "work", "know", "place", "year", "live", "me",
    "back", "give", "most", "very", "after", "thing", "our", "just", "name", "good", "sentence",
    "man", "think", "say", "great", "where", "help", "through", "much",
];

/// The words synthetic prompts are made of, with their token cost after a space. When the
/// tokenizer has words that are one token alone and one more after another word, only those
/// are used: a text of N of them is N tokens. Without a tokenizer (the words rule) every word
/// costs 1.
fn word_pool(counter: &TokenCounter) -> Vec<(&'static str, u32)> {
    if counter.tokenizer().is_none() {
        return WORDS.iter().map(|&w| (w, 1)).collect();
    }
    let costs: Vec<(&'static str, u32)> = WORDS
        .iter()
        .map(|&w| (w, counter.count_text(&format!("{w} {w}")) / 2))
        .collect();
    let single: Vec<(&'static str, u32)> = costs
        .iter()
        .copied()
        .filter(|&(w, c)| c == 1 && counter.count_text(w) == 1)
        .collect();
    if single.is_empty() { costs } else { single }
}

/// A text of `want` tokens made of random words from `pool`, and its true length: built
/// greedily from the words' costs, then corrected a word at a time against the real count
/// (exact for tokenizers that split on whitespace, the usual case).
fn synthetic_text(
    want: u32,
    pool: &[(&str, u32)],
    counter: &TokenCounter,
    rng: &mut SmallRng,
) -> (String, u32) {
    let cheapest = pool
        .iter()
        .copied()
        .min_by_key(|&(_, c)| c)
        .unwrap_or(("the", 1));
    let mut words: Vec<&str> = Vec::with_capacity(want as usize);
    let mut remaining = want;
    let mut fitting: Vec<&str> = Vec::with_capacity(pool.len());
    while remaining > 0 {
        fitting.clear();
        fitting.extend(
            pool.iter()
                .filter(|&&(_, c)| c <= remaining)
                .map(|&(w, _)| w),
        );
        let Some(&w) = fitting.choose(rng) else {
            break;
        };
        let cost = pool.iter().find(|&&(p, _)| p == w).map_or(1, |&(_, c)| c);
        words.push(w);
        remaining -= cost.max(1).min(remaining);
    }
    let mut text = words.join(" ");
    let mut len = counter.count_text(&text);
    for _ in 0..32 {
        if len == want {
            break;
        }
        if len < want {
            words.push(cheapest.0);
        } else if words.pop().is_none() {
            break;
        }
        text = words.join(" ");
        len = counter.count_text(&text);
    }
    (text, len)
}

mod default {
    pub fn min_len() -> u32 {
        4
    }

    pub fn max_len() -> u32 {
        1024
    }

    pub fn count() -> usize {
        1000
    }
}

#[cfg(test)]
mod tests;
