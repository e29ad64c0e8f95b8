#[cfg(feature = "hf-tokenizer")]
use std::sync::Arc;

use super::*;
#[cfg(feature = "hf-tokenizer")]
use crate::llm::tokenizer::HfTokenizer;
use crate::llm::tokenizer::count_words;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn words() -> TokenCounter {
    TokenCounter::default()
}

fn rng() -> SmallRng {
    SmallRng::seed_from_u64(7)
}

fn write(dir: &tempfile::TempDir, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn shipped_prompt_file_loads() {
    let set =
        PromptSet::from_lines(&FileSource::new(data("prompts.txt")), &words(), &mut rng()).unwrap();
    // 52 lines; "Hello!" is one word, below the minimum of 4.
    assert_eq!(set.len(), 51);
    assert!(set.prompts().iter().all(|p| p.max_output_tokens == 1024));
    assert_eq!(set.count_rule(), TokenCountMethod::Words);
    let first = &set.prompts()[0];
    assert_eq!(first.text, "What is a load test?");
    assert_eq!(first.input_tokens, Some(5));
}

#[test]
fn lines_filters_and_samples_like_the_locust_benchmark() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "p.txt",
        b"one two three four\r\n\n  \nshort\none two three four five six seven\nA B C D   \n",
    );
    let src = FileSource {
        max_prompt_len: 6,
        max_output_len: 64,
        ..FileSource::new(&path)
    };
    let set = PromptSet::from_lines(&src, &words(), &mut rng()).unwrap();
    let texts: Vec<&str> = set.prompts().iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["one two three four", "A B C D"]);
    assert!(set.prompts().iter().all(|p| p.max_output_tokens == 64));
    let one = FileSource {
        max_num_prompts: Some(1),
        ..src.clone()
    };
    let a = PromptSet::from_lines(&one, &words(), &mut rng()).unwrap();
    let b = PromptSet::from_lines(&one, &words(), &mut rng()).unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a.prompts(), b.prompts(), "same seed, same sample");
}

#[test]
fn lines_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "bad.txt", b"fine prompt with words\nbad \xff byte\n");
    let err = PromptSet::from_lines(&FileSource::new(&path), &words(), &mut rng()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}:2: not valid UTF-8 (byte 5)", path.display())
    );
    let empty = write(&dir, "empty.txt", b"hi\n\nyo\n");
    let err = PromptSet::from_lines(&FileSource::new(&empty), &words(), &mut rng()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: no prompts left", empty.display())),
        "{msg}"
    );
    assert!(msg.contains("2 shorter than 4"), "{msg}");
    let missing = dir.path().join("nope.txt");
    let err = PromptSet::from_lines(&FileSource::new(&missing), &words(), &mut rng()).unwrap_err();
    assert!(err.to_string().starts_with(&missing.display().to_string()));
    let bad = FileSource {
        min_prompt_len: 10,
        max_prompt_len: 5,
        ..FileSource::new(&path)
    };
    assert!(matches!(
        PromptSet::from_lines(&bad, &words(), &mut rng()),
        Err(PromptError::Invalid {
            field: "min_prompt_len",
            ..
        })
    ));
}

#[test]
fn shipped_sharegpt_sample_loads() {
    let src = FileSource {
        max_output_len: 200,
        ..FileSource::new(data("sharegpt-sample.json"))
    };
    let set = PromptSet::from_sharegpt(&src, &words(), &mut rng()).unwrap();
    // 12 conversations: one has a single turn, one a two-word prompt.
    assert_eq!(set.len(), 10);
    // Without a tokenizer, every request asks for max_output_len.
    assert!(set.prompts().iter().all(|p| p.max_output_tokens == 200));
    assert!(
        set.prompts()
            .iter()
            .any(|p| p.text == "Describe a load balancer in one sentence please.")
    );
}

#[cfg(feature = "hf-tokenizer")]
#[test]
fn sharegpt_output_lengths_from_the_answer_with_a_tokenizer() {
    let tok = Arc::new(HfTokenizer::from_file(&data("tiny-tokenizer.json")).unwrap());
    let counter = TokenCounter::new(TokenCountMethod::Tokenizer, Some(tok)).unwrap();
    let src = FileSource {
        max_output_len: 30,
        ..FileSource::new(data("sharegpt-sample.json"))
    };
    let set = PromptSet::from_sharegpt(&src, &counter, &mut rng()).unwrap();
    assert_eq!(set.count_rule(), TokenCountMethod::Tokenizer);
    // "It spreads incoming requests across several servers so that none of them is
    // overwhelmed." is 15 tokens (14 words and a full stop).
    let lb = set
        .prompts()
        .iter()
        .find(|p| p.text.starts_with("Describe a load balancer"))
        .unwrap();
    assert_eq!(lb.max_output_tokens, 15);
    assert_eq!(lb.input_tokens, Some(9));
    assert!(
        set.prompts()
            .iter()
            .all(|p| (4..=30).contains(&p.max_output_tokens))
    );
    assert!(
        set.len() < 10,
        "long answers are dropped, as benchmark_serving does"
    );
}

#[test]
fn sharegpt_errors_name_the_json_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 4] = [
        (r#"{"a": 1}"#, "$: expected an array of conversations"),
        (
            r#"[{"conversations": []}, {"id": 1}]"#,
            "$[1]: missing `conversations`",
        ),
        (
            r#"[{"conversations": {}}]"#,
            "$[0].conversations: expected an array",
        ),
        (
            r#"[{"conversations": [{"from": "human", "value": "a b c d"}, {"from": "gpt", "value": 3}]}]"#,
            "$[0].conversations[1].value: expected a string",
        ),
    ];
    for (json, want) in cases {
        let path = write(&dir, "s.json", json.as_bytes());
        let err =
            PromptSet::from_sharegpt(&FileSource::new(&path), &words(), &mut rng()).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: {want}", path.display()));
    }
    let path = write(&dir, "syntax.json", b"[\n  {\"conversations\": [\n");
    let err = PromptSet::from_sharegpt(&FileSource::new(&path), &words(), &mut rng()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(": not ShareGPT JSON (EOF while parsing") && msg.contains("line 3"),
        "{msg}"
    );
}

#[test]
fn synthetic_lengths_under_the_words_rule() {
    let src = SyntheticSource {
        input: LengthDist::Uniform { min: 5, max: 50 },
        output: LengthDist::Fixed { tokens: 128 },
        count: 40,
    };
    let set = PromptSet::synthetic(&src, &words(), &mut rng()).unwrap();
    assert_eq!(set.len(), 40);
    for p in set.prompts() {
        let n = count_words(&p.text);
        assert_eq!(p.input_tokens, Some(n));
        assert!((5..=50).contains(&n));
        assert_eq!(p.max_output_tokens, 128);
    }
    let again = PromptSet::synthetic(&src, &words(), &mut rng()).unwrap();
    assert_eq!(set.prompts(), again.prompts(), "seeded");
    assert!(set.prompts()[0].text != set.prompts()[1].text);
}

#[cfg(feature = "hf-tokenizer")]
#[test]
fn synthetic_lengths_exact_under_a_bpe_tokenizer() {
    use crate::llm::tokenizer::tests::tiny_bpe;
    let (_dir, tok) = tiny_bpe();
    let counter = TokenCounter::new(TokenCountMethod::Usage, Some(tok.clone())).unwrap();
    let pool: Vec<&str> = word_pool(&counter).iter().map(|&(w, _)| w).collect();
    assert_eq!(pool, ["the", "and", "in", "on", "an"]);
    let src = SyntheticSource {
        input: LengthDist::Normal {
            mean: 40.0,
            stddev: 10.0,
            min: Some(10),
            max: Some(60),
        },
        output: LengthDist::Uniform { min: 1, max: 3 },
        count: 25,
    };
    let set = PromptSet::synthetic(&src, &counter, &mut rng()).unwrap();
    for p in set.prompts() {
        let n = tok.count(&p.text).unwrap();
        assert_eq!(p.input_tokens, Some(n));
        assert!((10..=60).contains(&n), "{n}");
        assert!((1..=3).contains(&p.max_output_tokens));
    }
}

#[cfg(feature = "hf-tokenizer")]
#[test]
fn synthetic_text_converges_with_multi_token_words() {
    use crate::llm::tokenizer::tests::tiny_bpe;
    let (_dir, tok) = tiny_bpe();
    let counter = TokenCounter::new(TokenCountMethod::Usage, Some(tok)).unwrap();
    // Words of 1 to 4 tokens (`then` is `the` + `n`): still exact.
    let pool = [("the", 1), ("cat", 3), ("and", 1), ("then", 2), ("word", 4)];
    let mut r = rng();
    for want in [1, 2, 7, 33, 100] {
        let (text, len) = synthetic_text(want, &pool, &counter, &mut r);
        assert_eq!(len, counter.count_text(&text));
        assert_eq!(len, want, "{text}");
    }
    // A pool that costs more than it says is corrected against the real count.
    let lying = [("word", 1), ("the", 1)];
    for want in [3, 10, 40] {
        let (text, len) = synthetic_text(want, &lying, &counter, &mut r);
        assert_eq!(len, counter.count_text(&text));
        assert!(len.abs_diff(want) <= 3, "{want} → {len}");
    }
}

#[test]
fn length_distributions() {
    let mut r = rng();
    assert_eq!(LengthDist::Fixed { tokens: 9 }.sample(&mut r), 9);
    for _ in 0..200 {
        let u = LengthDist::Uniform { min: 3, max: 5 }.sample(&mut r);
        assert!((3..=5).contains(&u));
        let n = LengthDist::Normal {
            mean: 2.0,
            stddev: 50.0,
            min: None,
            max: Some(10),
        }
        .sample(&mut r);
        assert!((1..=10).contains(&n), "never below 1");
    }
    let point = LengthDist::Normal {
        mean: 7.4,
        stddev: 0.0,
        min: None,
        max: None,
    };
    assert_eq!(point.sample(&mut r), 7);
    let bad = SyntheticSource {
        input: LengthDist::Uniform { min: 9, max: 3 },
        output: LengthDist::Fixed { tokens: 1 },
        count: 1,
    };
    let err = PromptSet::synthetic(&bad, &words(), &mut r).unwrap_err();
    assert!(err.to_string().starts_with("input: uniform"), "{err}");
}

#[test]
fn sources_from_toml() {
    #[derive(Deserialize)]
    struct File {
        prompts: PromptSource,
    }
    let f: File = toml::from_str(
        "[prompts]\nsource = \"lines\"\npath = \"prompts.txt\"\nmax_prompt_len = 512\n",
    )
    .unwrap();
    let PromptSource::Lines(lines) = &f.prompts else {
        panic!("lines expected")
    };
    assert_eq!((lines.max_prompt_len, lines.max_output_len), (512, 1024));
    let moved = f.prompts.relative_to(Path::new("/scenarios"));
    assert!(
        matches!(moved, PromptSource::Lines(l) if l.path == Path::new("/scenarios/prompts.txt"))
    );
    let f: File = toml::from_str(
        "[prompts]\nsource = \"synthetic\"\ncount = 3\ninput = { dist = \"normal\", mean = 100, stddev = 10 }\noutput = { dist = \"fixed\", tokens = 64 }\n",
    )
    .unwrap();
    assert!(matches!(
        f.prompts,
        PromptSource::Synthetic(SyntheticSource { count: 3, .. })
    ));
    let f: File = toml::from_str("[prompts]\nsource = \"sharegpt\"\npath = \"s.json\"\n").unwrap();
    assert!(matches!(f.prompts, PromptSource::ShareGpt(_)));
    let bad = toml::from_str::<File>("[prompts]\nsource = \"lines\"\npath = \"p\"\nmax_len = 3\n");
    assert!(bad.is_err(), "unknown fields are refused");
}

#[test]
fn load_is_seeded_and_pick_is_uniform() {
    let src = PromptSource::Synthetic(SyntheticSource {
        input: LengthDist::Fixed { tokens: 8 },
        output: LengthDist::Fixed { tokens: 8 },
        count: 4,
    });
    let a = PromptSet::load(&src, &words(), 42).unwrap();
    let b = PromptSet::load(&src, &words(), 42).unwrap();
    let c = PromptSet::load(&src, &words(), 43).unwrap();
    assert_eq!(a.prompts(), b.prompts());
    assert_ne!(a.prompts(), c.prompts());
    let mut r = rng();
    let mut seen = [0u32; 4];
    for _ in 0..4000 {
        let p = a.pick(&mut r);
        let i = a.prompts().iter().position(|q| std::ptr::eq(q, p)).unwrap();
        seen[i] += 1;
    }
    assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    assert!(PromptSet::new(Vec::new(), TokenCountMethod::Words).is_err());
}
