//! Counting tokens: the server's own usage report when it gives one, a Hugging Face
//! `tokenizer.json` read from a local file, the streamed chunks, or, as a last resort,
//! whitespace-separated words.
//!
//! [`TokenCounter::count_output`] walks a fixed fallback chain from the configured
//! [`TokenCountMethod`] and says which rule produced each count, so a report can tell exact
//! counts from estimates. Tokenizers are never downloaded: the
//! `AutoTokenizer.from_pretrained(name)` of ai-on-gke's Locust benchmark becomes a path to the
//! model's `tokenizer.json`. Counts never include special tokens (the benchmark's
//! `tokenizer.encode` adds BOS for Llama-style tokenizers, so its counts run one higher).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::backend::Usage;

/// How output tokens are counted, as written in scenario files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenCountMethod {
    /// The server's report (OpenAI `usage.completion_tokens`, TGI `generated_tokens`): exact,
    /// and what the server billed.
    #[default]
    Usage,
    /// Encode the output text with the configured `tokenizer.json` (what ai-on-gke's Locust
    /// benchmark does).
    Tokenizer,
    /// One token per streamed chunk (exact for TGI, which sends one event per token; a lower
    /// bound for OpenAI servers, which may batch several tokens into a chunk under load).
    Chunks,
    /// Whitespace-separated words: the rule of last resort for a whole answer with no usage
    /// and no tokenizer. English runs about 1.3 tokens per word; CJK text has few spaces.
    Words,
}

/// Why a tokenizer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read or is not a `tokenizer.json`.
    #[error("{}: cannot load tokenizer: {message}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// This build has no tokenizer support (the `hf-tokenizer` feature is off).
    #[error("{}: this build of Stampede has no tokenizer support (feature `hf-tokenizer`)", path.display())]
    Unsupported {
        /// The file that was asked for.
        path: PathBuf,
    },
    /// Counting by `tokenizer` was asked for without a tokenizer file.
    #[error("token count method `tokenizer` needs a tokenizer file")]
    Missing,
    /// The tokenizer failed on a text.
    #[error("tokenizer failed: {0}")]
    Encode(String),
}

/// A Hugging Face tokenizer loaded from a local `tokenizer.json`.
pub struct HfTokenizer {
    path: PathBuf,
    #[cfg(feature = "hf-tokenizer")]
    inner: tokenizers::Tokenizer,
}

/// What a request's answer offers for counting its tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputFacts<'a> {
    /// The output text (without the prompt).
    pub text: &'a str,
    /// The server's usage report, if any.
    pub usage: Option<Usage>,
    /// Tokens counted from stream events; `None` for a whole answer.
    pub streamed_tokens: Option<u32>,
}

/// A token count and the rule that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// The count.
    pub tokens: u32,
    /// The rule used (after fallbacks).
    pub method: TokenCountMethod,
}

/// Counts tokens by a configured method, falling back when its facts are missing.
#[derive(Debug, Clone, Default)]
pub struct TokenCounter {
    method: TokenCountMethod,
    tokenizer: Option<Arc<HfTokenizer>>,
}

impl TokenCountMethod {
    /// Every method, in fallback order.
    pub const ALL: [TokenCountMethod; 4] = [
        TokenCountMethod::Usage,
        TokenCountMethod::Tokenizer,
        TokenCountMethod::Chunks,
        TokenCountMethod::Words,
    ];

    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            TokenCountMethod::Usage => "usage",
            TokenCountMethod::Tokenizer => "tokenizer",
            TokenCountMethod::Chunks => "chunks",
            TokenCountMethod::Words => "words",
        }
    }
}

impl fmt::Display for TokenCountMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TokenCountMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<TokenCountMethod, String> {
        TokenCountMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown token count method `{s}` (usage, tokenizer, chunks, words)")
            })
    }
}

impl HfTokenizer {
    /// Load a `tokenizer.json`. Nothing is fetched: the file must be local.
    pub fn from_file(path: &Path) -> Result<HfTokenizer, TokenizerError> {
        #[cfg(feature = "hf-tokenizer")]
        {
            let inner =
                tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            Ok(HfTokenizer {
                path: path.to_path_buf(),
                inner,
            })
        }
        #[cfg(not(feature = "hf-tokenizer"))]
        {
            Err(TokenizerError::Unsupported {
                path: path.to_path_buf(),
            })
        }
    }

    /// A `tokenizer.json`'s text, read elsewhere (the master reads the file and sends the text
    /// to its workers); `path` names it in errors and reports.
    pub fn from_json(text: &str, path: &Path) -> Result<HfTokenizer, TokenizerError> {
        #[cfg(feature = "hf-tokenizer")]
        {
            let inner: tokenizers::Tokenizer =
                text.parse()
                    .map_err(|e: tokenizers::Error| TokenizerError::Load {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })?;
            Ok(HfTokenizer {
                path: path.to_path_buf(),
                inner,
            })
        }
        #[cfg(not(feature = "hf-tokenizer"))]
        {
            let _ = text;
            Err(TokenizerError::Unsupported {
                path: path.to_path_buf(),
            })
        }
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens of `text`, without special tokens.
    pub fn count(&self, text: &str) -> Result<u32, TokenizerError> {
        #[cfg(feature = "hf-tokenizer")]
        {
            let encoding = self
                .inner
                .encode_fast(text, false)
                .map_err(|e| TokenizerError::Encode(e.to_string()))?;
            Ok(u32::try_from(encoding.len()).unwrap_or(u32::MAX))
        }
        #[cfg(not(feature = "hf-tokenizer"))]
        {
            let _ = text;
            Err(TokenizerError::Unsupported {
                path: self.path.clone(),
            })
        }
    }
}

impl fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenCounter {
    /// A counter by `method`; `tokenizer` is required for [`TokenCountMethod::Tokenizer`] and
    /// used by every other method as a fallback and for prompt lengths.
    pub fn new(
        method: TokenCountMethod,
        tokenizer: Option<Arc<HfTokenizer>>,
    ) -> Result<TokenCounter, TokenizerError> {
        if method == TokenCountMethod::Tokenizer && tokenizer.is_none() {
            return Err(TokenizerError::Missing);
        }
        Ok(TokenCounter { method, tokenizer })
    }

    /// The configured method.
    pub fn method(&self) -> TokenCountMethod {
        self.method
    }

    /// The tokenizer, if one was loaded.
    pub fn tokenizer(&self) -> Option<&HfTokenizer> {
        self.tokenizer.as_deref()
    }

    /// The rule [`count_text`](Self::count_text) uses: the tokenizer if loaded, else words.
    pub fn text_rule(&self) -> TokenCountMethod {
        if self.tokenizer.is_some() {
            TokenCountMethod::Tokenizer
        } else {
            TokenCountMethod::Words
        }
    }

    /// The length of a text (a prompt, a reference answer) under [`text_rule`](Self::text_rule).
    /// A tokenizer failure falls back to words.
    pub fn count_text(&self, text: &str) -> u32 {
        self.tokenizer
            .as_ref()
            .and_then(|t| t.count(text).ok())
            .unwrap_or_else(|| count_words(text))
    }

    /// The output tokens of one answer. The configured method is tried first, then usage,
    /// tokenizer, chunks and words, in that order, skipping those without facts: usage needs
    /// a report, the tokenizer a file, chunks a streamed answer; words always apply.
    pub fn count_output(&self, facts: &OutputFacts<'_>) -> TokenCount {
        let chain = std::iter::once(self.method).chain(TokenCountMethod::ALL);
        for method in chain {
            let tokens = match method {
                TokenCountMethod::Usage => facts.usage.map(|u| u.completion_tokens),
                TokenCountMethod::Tokenizer => self
                    .tokenizer
                    .as_ref()
                    .and_then(|t| t.count(facts.text).ok()),
                TokenCountMethod::Chunks => facts.streamed_tokens,
                TokenCountMethod::Words => Some(count_words(facts.text)),
            };
            if let Some(tokens) = tokens {
                return TokenCount { tokens, method };
            }
        }
        // Unreachable in practice: `Words` always counts. Kept total without a panic.
        TokenCount {
            tokens: count_words(facts.text),
            method: TokenCountMethod::Words,
        }
    }
}

/// Whitespace-separated words in `text`.
pub fn count_words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The hand-written WordLevel tokenizer shipped in `scenarios/data/`.
    #[cfg(feature = "hf-tokenizer")]
    pub(crate) fn tiny_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiny-tokenizer.json")
    }

    /// A hand-written BPE tokenizer: letters, plus merges making `the`, `and`, `on` and `in`
    /// single tokens; every other word costs one token per letter.
    #[cfg(feature = "hf-tokenizer")]
    pub(crate) const TINY_BPE: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
      "decoder": null,
      "model": {"type": "BPE", "dropout": null, "unk_token": null,
        "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
        "byte_fallback": false, "ignore_merges": false,
        "vocab": {"a":0,"b":1,"c":2,"d":3,"e":4,"f":5,"g":6,"h":7,"i":8,"j":9,"k":10,"l":11,
          "m":12,"n":13,"o":14,"p":15,"q":16,"r":17,"s":18,"t":19,"u":20,"v":21,"w":22,"x":23,
          "y":24,"z":25,"th":26,"the":27,"an":28,"and":29,"on":30,"in":31},
        "merges": ["t h", "th e", "a n", "an d", "o n", "i n"]}
    }"#;

    #[cfg(feature = "hf-tokenizer")]
    pub(crate) fn tiny_bpe() -> (tempfile::TempDir, Arc<HfTokenizer>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, TINY_BPE).unwrap();
        let t = HfTokenizer::from_file(&path).unwrap();
        (dir, Arc::new(t))
    }

    fn facts(text: &str, usage: Option<u32>, streamed: Option<u32>) -> OutputFacts<'_> {
        OutputFacts {
            text,
            usage: usage.map(|c| Usage {
                prompt_tokens: None,
                completion_tokens: c,
            }),
            streamed_tokens: streamed,
        }
    }

    #[test]
    fn method_names_round_trip() {
        for m in TokenCountMethod::ALL {
            assert_eq!(m.name().parse::<TokenCountMethod>(), Ok(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
        }
        assert!("bytes".parse::<TokenCountMethod>().is_err());
    }

    #[test]
    fn fallback_chain_without_tokenizer() {
        let c = TokenCounter::new(TokenCountMethod::Usage, None).unwrap();
        let count = |f| c.count_output(&f);
        let t = "four words right here";
        assert_eq!(
            count(facts(t, Some(9), Some(7))),
            TokenCount {
                tokens: 9,
                method: TokenCountMethod::Usage
            }
        );
        assert_eq!(
            count(facts(t, None, Some(7))),
            TokenCount {
                tokens: 7,
                method: TokenCountMethod::Chunks
            }
        );
        assert_eq!(
            count(facts(t, None, None)),
            TokenCount {
                tokens: 4,
                method: TokenCountMethod::Words
            }
        );
        let chunks = TokenCounter::new(TokenCountMethod::Chunks, None).unwrap();
        assert_eq!(
            chunks.count_output(&facts(t, Some(9), Some(7))).method,
            TokenCountMethod::Chunks
        );
        assert_eq!(
            chunks.count_output(&facts(t, Some(9), None)).method,
            TokenCountMethod::Usage,
            "a whole answer has no chunks: next in the chain"
        );
        assert_eq!(
            TokenCounter::new(TokenCountMethod::Tokenizer, None).unwrap_err(),
            TokenizerError::Missing
        );
        assert_eq!(c.text_rule(), TokenCountMethod::Words);
        assert_eq!(c.count_text("  a b\tc\n"), 3);
    }

    #[cfg(feature = "hf-tokenizer")]
    #[test]
    fn word_level_tokenizer_from_data_dir() {
        let t = Arc::new(HfTokenizer::from_file(&tiny_path()).unwrap());
        // Whitespace pre-tokenizer: words and punctuation runs; unknown words are [UNK].
        assert_eq!(t.count("the model answers the prompt.").unwrap(), 6);
        assert_eq!(t.count("zyzzyva").unwrap(), 1);
        assert_eq!(t.count("").unwrap(), 0);
        let c = TokenCounter::new(TokenCountMethod::Tokenizer, Some(t)).unwrap();
        assert_eq!(c.text_rule(), TokenCountMethod::Tokenizer);
        assert_eq!(
            c.count_output(&facts("hello, world", Some(40), Some(2))),
            TokenCount {
                tokens: 3,
                method: TokenCountMethod::Tokenizer
            }
        );
        let usage = TokenCounter::new(TokenCountMethod::Usage, c.tokenizer.clone()).unwrap();
        assert_eq!(
            usage.count_output(&facts("hello, world", None, Some(2))),
            TokenCount {
                tokens: 3,
                method: TokenCountMethod::Tokenizer
            },
            "no usage: the tokenizer comes before chunks"
        );
    }

    #[cfg(feature = "hf-tokenizer")]
    #[test]
    fn bpe_tokenizer_merges() {
        let (_dir, t) = tiny_bpe();
        assert_eq!(t.count("the").unwrap(), 1);
        assert_eq!(t.count("and the cat").unwrap(), 5);
        assert_eq!(t.count("then").unwrap(), 2);
    }

    #[cfg(not(feature = "hf-tokenizer"))]
    #[test]
    fn without_the_feature_loading_says_so() {
        let err = HfTokenizer::from_file(Path::new("tokenizer.json")).unwrap_err();
        assert!(err.to_string().contains("hf-tokenizer"), "{err}");
    }

    #[cfg(feature = "hf-tokenizer")]
    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{\"model\": 1}").unwrap();
        let err = HfTokenizer::from_file(&path).unwrap_err();
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        let err = HfTokenizer::from_file(&dir.path().join("none.json")).unwrap_err();
        assert!(matches!(err, TokenizerError::Load { .. }), "{err}");
    }
}
