//! Built-in systems under test for Stampede demos, tests and benchmarks.
//!
//! A load tester needs something to point at that is fast, predictable and
//! tunable (latency, errors, payload size) without installing a real service.
//! This crate holds those targets; it knows nothing about workers, masters or
//! the wire protocol.
//!
//! # Layout
//!
//! - [`http`]: an HTTP/1.1 (and, when asked, HTTP/2) keep-alive server that answers every request with a
//!   static body after a configurable delay, injects errors at a given rate, and
//!   exposes its own counters under `/__stampede/`.
//! - [`llm`]: a simulated LLM inference server speaking the HTTP APIs of vLLM (OpenAI and
//!   `/generate`), TGI, Triton/TensorRT-LLM and SAX, with a continuous-batching timing model and
//!   exact statistics of what it emitted.
//! - [`registry`]: a simulated model registry (the ACME performance track's): 500 models,
//!   Tiny-LLM's 24.8 MB `model.zip` generated on the fly, byte ranges, a bandwidth limit, faults on
//!   request.
//! - [`scheduler`]: a simulated GPU scheduler (the system the MLPerf-LoadGen priority runner
//!   drives) serving `scheduler.proto` over gRPC: per-model service times, a queue ordered by tier
//!   then deadline, expired requests refused; over TLS with a given or self-signed certificate
//!   (`scheduler::tls`).
//! - [`tls`]: how the HTTP targets speak ([`tls::Transport`]: plaintext HTTP/1.1, h2c, or TLS
//!   with HTTP/2 by ALPN) and their certificate, from PEM files or self-signed.
//!
//! The accept loop they share (TLS handshakes, HTTP/1.1 or HTTP/2 per connection, graceful
//! shutdown) is the private `accept` module.

mod accept;
pub mod http;
pub mod llm;
pub mod registry;
pub mod scheduler;
pub mod tls;
