use super::*;

fn body(backend: Backend, req: &LlmRequest<'_>) -> String {
    String::from_utf8(backend.request_body(req)).unwrap()
}

fn events(
    parser: &mut EventParser,
    data: &str,
) -> Result<Vec<StreamEvent<'static>>, ResponseError> {
    Ok(parser
        .parse("message", data)?
        .map(|e| match e {
            StreamEvent::Token { text, count } => StreamEvent::Token {
                text: Cow::Owned(text.into_owned()),
                count,
            },
            StreamEvent::Usage(u) => StreamEvent::Usage(u),
            StreamEvent::Done => StreamEvent::Done,
            StreamEvent::Ignored => StreamEvent::Ignored,
        })
        .collect())
}

fn token(text: &str) -> StreamEvent<'static> {
    StreamEvent::Token {
        text: Cow::Owned(text.to_string()),
        count: 1,
    }
}

fn usage(prompt: Option<u32>, completion: u32) -> StreamEvent<'static> {
    StreamEvent::Usage(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
    })
}

fn parser(backend: Backend, prompt: &str) -> EventParser {
    backend.event_parser(prompt).unwrap()
}

#[test]
fn names_round_trip() {
    for b in Backend::ALL {
        assert_eq!(b.name().parse::<Backend>(), Ok(b));
        assert_eq!(b.to_string(), b.name());
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            format!("\"{}\"", b.name())
        );
        let back: Backend = serde_json::from_str(&format!("\"{}\"", b.name())).unwrap();
        assert_eq!(back, b);
    }
    assert_eq!(
        "tensorrt_llm_triton".parse::<Backend>(),
        Ok(Backend::Triton)
    );
    let alias: Backend = serde_json::from_str("\"tensorrt_llm_triton\"").unwrap();
    assert_eq!(alias, Backend::Triton);
    let err = "pathways".parse::<Backend>().unwrap_err();
    assert!(err.to_string().contains("openai-chat"), "{err}");
}

#[test]
fn paths_and_streaming() {
    let p = |b: Backend, s| b.path("llama", s);
    assert_eq!(p(Backend::OpenAi, true), "/v1/completions");
    assert_eq!(p(Backend::OpenAiChat, false), "/v1/chat/completions");
    assert_eq!(p(Backend::Vllm, true), "/generate");
    assert_eq!(p(Backend::Tgi, false), "/generate");
    assert_eq!(p(Backend::Tgi, true), "/generate_stream");
    assert_eq!(p(Backend::Triton, false), "/v2/models/llama/generate");
    assert_eq!(p(Backend::Triton, true), "/v2/models/llama/generate_stream");
    assert_eq!(
        Backend::Triton.path("", false),
        "/v2/models/ensemble/generate"
    );
    assert_eq!(p(Backend::Sax, false), "/generate");
    assert!(!Backend::Sax.supports_streaming());
    assert!(Backend::Sax.event_parser("").is_none());
    assert_eq!(Backend::Vllm.framing(), Framing::Records);
    assert_eq!(Backend::Tgi.framing(), Framing::Sse);
}

#[test]
fn locust_benchmark_bodies_key_for_key() {
    let mut req = LlmRequest::new("Hi \"there\"", "sax-model", 1024);
    // ai-on-gke's Locust benchmark asks TGI for no details; the default does
    // (`tgi_details_by_default`).
    req.details = false;
    assert_eq!(
        body(Backend::Vllm, &req),
        r#"{"prompt":"Hi \"there\"","n":1,"best_of":1,"use_beam_search":false,"temperature":1.0,"top_p":1.0,"max_tokens":1024,"ignore_eos":false,"stream":false}"#
    );
    assert_eq!(
        body(Backend::Tgi, &req),
        r#"{"inputs":"Hi \"there\"","parameters":{"best_of":1,"max_new_tokens":1024,"do_sample":true}}"#
    );
    assert_eq!(
        body(Backend::Triton, &req),
        r#"{"text_input":"Hi \"there\"","max_tokens":1024,"beam_width":1,"temperature":1.0,"top_p":1.0,"bad_words":"","stop_words":"","stream":false}"#
    );
    assert_eq!(
        body(Backend::Sax, &req),
        r#"{"model":"sax-model","prompt":"Hi \"there\"","n":1,"best_of":1,"use_beam_search":false,"temperature":1.0,"top_p":1.0,"top_k":50,"max_tokens":1024,"stream":false}"#
    );
}

#[test]
fn locust_benchmark_beam_search_derivations() {
    let req = LlmRequest::new("p", "m", 8).with_locust_sampling(4, true);
    assert_eq!((req.temperature, req.beam_width, req.best_of), (0.0, 4, 4));
    assert!(body(Backend::Triton, &req).contains(r#""beam_width":4,"temperature":0.0"#));
    assert!(
        body(Backend::Vllm, &req)
            .contains(r#""best_of":4,"use_beam_search":true,"temperature":0.0"#)
    );
    let sampled = LlmRequest::new("p", "m", 8).with_locust_sampling(3, false);
    assert_eq!((sampled.temperature, sampled.beam_width), (1.0, 1));
}

#[test]
fn openai_bodies() {
    let mut req = LlmRequest::new("Hello", "gpt", 32);
    assert_eq!(
        body(Backend::OpenAi, &req),
        r#"{"model":"gpt","prompt":"Hello","max_tokens":32,"temperature":1.0,"top_p":1.0,"n":1,"stream":false}"#
    );
    req.stream = true;
    assert_eq!(
        body(Backend::OpenAi, &req),
        r#"{"model":"gpt","prompt":"Hello","max_tokens":32,"temperature":1.0,"top_p":1.0,"n":1,"stream":true,"stream_options":{"include_usage":true}}"#
    );
    assert_eq!(
        body(Backend::OpenAiChat, &req),
        r#"{"model":"gpt","messages":[{"role":"user","content":"Hello"}],"max_tokens":32,"temperature":1.0,"top_p":1.0,"n":1,"stream":true,"stream_options":{"include_usage":true}}"#
    );
    req.best_of = 3;
    req.ignore_eos = true;
    let b = body(Backend::OpenAi, &req);
    assert!(
        b.contains(r#""n":1,"best_of":3,"ignore_eos":true,"stream":true"#),
        "{b}"
    );
    assert!(!body(Backend::OpenAiChat, &req).contains("best_of"));
}

#[test]
fn tgi_details_by_default() {
    let mut req = LlmRequest::new("x", "", 5);
    assert_eq!(
        body(Backend::Tgi, &req),
        r#"{"inputs":"x","parameters":{"best_of":1,"max_new_tokens":5,"do_sample":true,"details":true,"decoder_input_details":true}}"#,
        "a whole answer asks for details and the prefill (input) tokens"
    );
    req.stream = true;
    assert_eq!(
        body(Backend::Tgi, &req),
        r#"{"inputs":"x","parameters":{"best_of":1,"max_new_tokens":5,"do_sample":true,"details":true}}"#,
        "a stream asks for details only: TGI refuses decoder_input_details when streaming"
    );
}

#[test]
fn tgi_whole_answer_counts() {
    let parse = |body: &str| Backend::Tgi.parse_response(body.as_bytes(), "x").unwrap();
    // With decoder_input_details: prefill holds one entry per input token.
    let with_prefill = parse(
        r#"{"generated_text":" blue sky","details":{"finish_reason":"length","generated_tokens":3,"seed":7,"prefill":[{"id":1,"text":"<s>","logprob":null},{"id":9,"text":"The","logprob":-2.5},{"id":4,"text":"sky","logprob":-1.0}],"tokens":[{"id":5,"text":" blue","logprob":-0.1,"special":false},{"id":6,"text":" sky","logprob":-0.2,"special":false},{"id":2,"text":"</s>","logprob":-0.3,"special":true}]}}"#,
    );
    assert_eq!(with_prefill.text, " blue sky");
    assert_eq!(
        with_prefill.usage,
        Some(Usage {
            prompt_tokens: Some(3),
            completion_tokens: 3
        })
    );
    // Details without decoder_input_details: an empty prefill says nothing of the input.
    let without = parse(
        r#"[{"generated_text":"a","details":{"finish_reason":"eos_token","generated_tokens":1,"seed":null,"prefill":[],"tokens":[]}}]"#,
    );
    assert_eq!(
        without.usage,
        Some(Usage {
            prompt_tokens: None,
            completion_tokens: 1
        })
    );
}

#[test]
fn whole_answers() {
    let ok =
        |b: Backend, body: &str, prompt: &str| b.parse_response(body.as_bytes(), prompt).unwrap();
    assert_eq!(
        ok(
            Backend::OpenAi,
            r#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":" Paris.","finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#,
            "x"
        ),
        Completion {
            text: " Paris.".into(),
            usage: Some(Usage {
                prompt_tokens: Some(7),
                completion_tokens: 2
            })
        }
    );
    let chat = ok(
        Backend::OpenAiChat,
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hi!\n"}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        "x",
    );
    assert_eq!(chat.text, "Hi!\n");
    let vllm = ok(
        Backend::Vllm,
        r#"{"text":["Once upon a time, there"]}"#,
        "Once upon a time,",
    );
    assert_eq!(vllm.text, " there");
    assert_eq!(vllm.usage, None);
    let tgi = ok(
        Backend::Tgi,
        r#"{"generated_text":" blue","details":{"finish_reason":"length","generated_tokens":2,"seed":null,"prefill":[],"tokens":[]}}"#,
        "x",
    );
    assert_eq!(tgi.text, " blue");
    assert_eq!(tgi.usage.map(|u| u.completion_tokens), Some(2));
    assert_eq!(
        ok(Backend::Tgi, r#"[{"generated_text":"a"}]"#, "x").text,
        "a"
    );
    assert_eq!(
        ok(Backend::Tgi, r#"{"generated_text":"a"}"#, "x").usage,
        None
    );
    let triton = r#"{"model_name":"ensemble","model_version":"1","text_output":"Q? A."}"#;
    assert_eq!(
        ok(Backend::Triton, triton, "Q?").text,
        " A.",
        "echoed prompt stripped"
    );
    assert_eq!(ok(Backend::Triton, triton, "other").text, "Q? A.");
    assert_eq!(
        ok(Backend::Sax, r#"{"choices":[{"text":"ok"}]}"#, "x").text,
        "ok"
    );
}

#[test]
fn whole_answer_errors() {
    let err = |b: Backend, body: &str| b.parse_response(body.as_bytes(), "p").unwrap_err();
    assert_eq!(
        err(Backend::Triton, r#"{"error":"model not ready"}"#),
        ResponseError::ServerError("model not ready".into())
    );
    assert_eq!(
        err(
            Backend::Tgi,
            r#"{"error":"Input validation error","error_type":"validation"}"#
        ),
        ResponseError::ServerError("Input validation error".into())
    );
    assert_eq!(
        err(
            Backend::OpenAi,
            r#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#
        ),
        ResponseError::ServerError("bad model".into())
    );
    assert_eq!(
        err(
            Backend::OpenAiChat,
            r#"{"object":"error","message":"too long","type":"BadRequestError","code":400}"#
        ),
        ResponseError::ServerError("too long".into())
    );
    assert!(matches!(
        err(Backend::OpenAi, "{\"choices\":"),
        ResponseError::Malformed(_)
    ));
    assert!(matches!(
        err(Backend::OpenAi, r#"{"choices":[]}"#),
        ResponseError::Malformed(_)
    ));
    assert!(matches!(
        err(Backend::Vllm, r#"{"text":["unrelated"]}"#),
        ResponseError::Malformed(_)
    ));
    assert!(matches!(
        err(Backend::Sax, "\u{0}\u{1}"),
        ResponseError::Malformed(_)
    ));
    assert!(matches!(
        Backend::Tgi.parse_response(b"\xff", "p").unwrap_err(),
        ResponseError::Malformed(_)
    ));
}

#[test]
fn openai_stream_events() {
    let mut p = parser(Backend::OpenAi, "x");
    assert_eq!(
        events(
            &mut p,
            r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" The","logprobs":null,"finish_reason":null}],"usage":null}"#
        ),
        Ok(vec![token(" The")])
    );
    assert_eq!(
        events(
            &mut p,
            r#"{"choices":[{"index":0,"text":"","finish_reason":"length"}]}"#
        ),
        Ok(vec![StreamEvent::Ignored])
    );
    assert_eq!(
        events(
            &mut p,
            r#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":16,"total_tokens":20}}"#
        ),
        Ok(vec![usage(Some(4), 16)])
    );
    assert_eq!(
        events(
            &mut p,
            r#"{"choices":null,"usage":{"completion_tokens":16}}"#
        ),
        Ok(vec![usage(None, 16)])
    );
    // vLLM's continuous usage stats: a token and the usage so far, in one chunk.
    assert_eq!(
        events(
            &mut p,
            r#"{"choices":[{"text":"!"}],"usage":{"prompt_tokens":4,"completion_tokens":17}}"#
        ),
        Ok(vec![token("!"), usage(Some(4), 17)])
    );
    assert_eq!(events(&mut p, "[DONE]"), Ok(vec![StreamEvent::Done]));
    assert_eq!(events(&mut p, " "), Ok(vec![StreamEvent::Ignored]));
    assert_eq!(
        events(&mut p, r#"{"error":{"message":"overloaded","code":503}}"#),
        Err(ResponseError::ServerError("overloaded".into()))
    );
    assert_eq!(
        events(
            &mut p,
            r#"{"object":"error","message":"context too long","code":400}"#
        ),
        Err(ResponseError::ServerError("context too long".into()))
    );
    assert!(matches!(
        events(&mut p, "{not json"),
        Err(ResponseError::Malformed(_))
    ));
}

#[test]
fn chat_stream_events() {
    let mut p = parser(Backend::OpenAiChat, "x");
    let chunk = |delta: &str| {
        format!(
            r#"{{"id":"c","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{delta},"finish_reason":null}}]}}"#
        )
    };
    assert_eq!(
        events(&mut p, &chunk(r#"{"role":"assistant"}"#)),
        Ok(vec![StreamEvent::Ignored])
    );
    assert_eq!(
        events(&mut p, &chunk(r#"{"role":"assistant","content":""}"#)),
        Ok(vec![StreamEvent::Ignored])
    );
    assert_eq!(
        events(&mut p, &chunk(r#"{"content":"Hel"}"#)),
        Ok(vec![token("Hel")])
    );
    assert_eq!(
        events(
            &mut p,
            &chunk(r#"{"reasoning_content":"hmm","content":null}"#)
        ),
        Ok(vec![token("hmm")])
    );
    assert_eq!(events(&mut p, &chunk("{}")), Ok(vec![StreamEvent::Ignored]));
    assert_eq!(events(&mut p, "[DONE]"), Ok(vec![StreamEvent::Done]));
}

#[test]
fn vllm_cumulative_records() {
    let mut p = parser(Backend::Vllm, "Tell me");
    assert_eq!(
        events(&mut p, r#"{"text": ["Tell me"]}"#),
        Ok(vec![StreamEvent::Ignored])
    );
    assert_eq!(
        events(&mut p, r#"{"text": ["Tell me a"]}"#),
        Ok(vec![token(" a")])
    );
    // Python's json.dumps escapes non-ASCII: the parser then copies.
    assert_eq!(
        events(&mut p, r#"{"text": ["Tell me a caf\u00e9"]}"#),
        Ok(vec![token(" café")])
    );
    assert!(matches!(
        events(&mut p, r#"{"text": ["Tell me"]}"#),
        Err(ResponseError::Malformed(m)) if m.contains("previous record")
    ));
    p.reset("Hello there");
    assert!(matches!(
        events(&mut p, r#"{"text": ["Hi"]}"#),
        Err(ResponseError::Malformed(m)) if m.contains("prompt")
    ));
    let mut multi = parser(Backend::Vllm, "");
    assert_eq!(
        events(&mut multi, r#"{"text": ["ab", "xyz"]}"#),
        Ok(vec![token("ab")]),
        "n > 1: the first sequence"
    );
}

#[test]
fn tgi_stream_events() {
    let mut p = parser(Backend::Tgi, "x");
    let ev = |id: u32, text: &str, special: bool, tail: &str| {
        format!(
            r#"{{"index":{id},"token":{{"id":{id},"text":"{text}","logprob":-0.5,"special":{special}}},{tail}}}"#
        )
    };
    assert_eq!(
        events(
            &mut p,
            &ev(1, " Deep", false, r#""generated_text":null,"details":null"#)
        ),
        Ok(vec![token(" Deep")])
    );
    assert_eq!(
        events(
            &mut p,
            &ev(
                2,
                "</s>",
                true,
                r#""generated_text":" Deep","details":{"finish_reason":"eos_token","generated_tokens":2,"input_length":5,"seed":null}"#
            )
        ),
        Ok(vec![token(""), usage(Some(5), 2), StreamEvent::Done]),
        "a special token is no text but counts as a token"
    );
    assert_eq!(
        events(
            &mut p,
            r#"{"error":"Request failed during generation: out of memory","error_type":"generation"}"#
        ),
        Err(ResponseError::ServerError(
            "Request failed during generation: out of memory".into()
        ))
    );
    assert!(matches!(
        events(&mut p, r#"{"index":1}"#),
        Err(ResponseError::Malformed(_))
    ));
}

#[test]
fn triton_stream_events() {
    let mut p = parser(Backend::Triton, "x");
    assert_eq!(
        events(
            &mut p,
            r#"{"context_logits":0.0,"model_name":"ensemble","model_version":"1","text_output":" a"}"#
        ),
        Ok(vec![token(" a")])
    );
    assert_eq!(
        events(
            &mut p,
            r#"{"model_name":"ensemble","model_version":"1","text_output":""}"#
        ),
        Ok(vec![StreamEvent::Ignored])
    );
    assert_eq!(
        events(
            &mut p,
            r#"{"error":"in ensemble 'ensemble', Encountered error"}"#
        ),
        Err(ResponseError::ServerError(
            "in ensemble 'ensemble', Encountered error".into()
        ))
    );
}

#[test]
fn event_names() {
    let mut p = parser(Backend::OpenAi, "");
    assert_eq!(
        p.parse("error", "upstream timeout").map(|e| e.count()),
        Err(ResponseError::ServerError("upstream timeout".into()))
    );
    assert_eq!(
        p.parse("ping", "{}").map(|e| e.count()),
        Err(ResponseError::UnknownEvent("ping".into()))
    );
}

#[test]
fn tokens_are_borrowed_when_unescaped() {
    let mut p = parser(Backend::OpenAi, "");
    let data = r#"{"choices":[{"text":"plain"}]}"#;
    let first = p.parse("message", data).unwrap().next();
    assert!(matches!(
        first,
        Some(StreamEvent::Token {
            text: Cow::Borrowed("plain"),
            ..
        })
    ));
    let mut t = parser(Backend::Tgi, "");
    let data = r#"{"token":{"id":1,"text":"x","special":false}}"#;
    let first = t.parse("message", data).unwrap().next();
    assert!(matches!(
        first,
        Some(StreamEvent::Token {
            text: Cow::Borrowed("x"),
            ..
        })
    ));
}

#[test]
fn failure_kinds_are_bounded() {
    let kinds = [
        ResponseError::Malformed("a".into()).failure(),
        ResponseError::Malformed("b".into()).failure(),
        ResponseError::UnknownEvent("x".into()).failure(),
        ResponseError::ServerError("y".into()).failure(),
    ];
    assert_eq!(kinds[0], kinds[1]);
    assert!(ResponseError::ServerError("y".into()).is_server_error());
    assert_eq!(kinds[3].to_string(), "protocol: server error in answer");
}

#[test]
fn sax_answers_in_both_shapes() {
    let pretty = "[\n    [\n        \" a b\",\n        -1.5\n    ]\n]";
    let c = Backend::Sax.parse_response(pretty.as_bytes(), "p").unwrap();
    assert_eq!(c.text, " a b");
    let oa = br#"{"choices":[{"text":" c"}]}"#;
    assert_eq!(Backend::Sax.parse_response(oa, "p").unwrap().text, " c");
    assert!(Backend::Sax.parse_response(b"[]", "p").is_err());
    assert!(Backend::Sax.parse_response(b"[[1]]", "p").is_err());
}

/// JetStream's wire form, byte by byte with its proto's field numbers (max_tokens = 4,
/// text_content = 5 holding text = 1, num_samples = 8; stream_content = 3 holding
/// samples = 1 of text = 1 and packed token_ids = 2), so our proto stays JetStream's.
#[test]
fn jetstream_messages_use_jetstreams_field_numbers() {
    use prost::Message;
    assert_eq!(
        Backend::JetStream.path("", true),
        "/jetstream_proto.Orchestrator/Decode"
    );
    assert_eq!("jetstream".parse(), Ok(Backend::JetStream));
    assert!(Backend::JetStream.event_parser("").is_none());
    let body = Backend::JetStream.request_body(&LlmRequest::new("hi", "m", 5));
    assert_eq!(
        body,
        [0x20, 5, 0x2a, 4, 0x0a, 2, b'h', b'i', 0x40, 1],
        "{body:02x?}"
    );
    let wire = [0x1a, 9, 0x0a, 7, 0x0a, 2, b'h', b'i', 0x12, 1, 7];
    let answer = stampede_grpc::jetstream::DecodeResponse::decode(&wire[..]).unwrap();
    let Some(stampede_grpc::jetstream::decode_response::Content::StreamContent(c)) = answer.content
    else {
        panic!("not stream content: {answer:?}");
    };
    assert_eq!(c.samples[0].text, "hi");
    assert_eq!(c.samples[0].token_ids, [7]);
}
