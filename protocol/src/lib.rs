//! The master ↔ worker contract of Stampede: the messages, how they are framed on QUIC streams,
//! the handshake, and the TLS/transport settings both ends must agree on.
//!
//! This crate knows nothing of scenarios or of how load is generated: a scenario travels as TOML
//! text and measurements travel as named series (HDR histograms) and named counters, so a new
//! request driver or load model never changes the wire. The prose specification, with every
//! message and the order they come in, is `protocol/SPEC.md`.
//!
//! # Layout
//! - [`message`]: every message type, with its place in the conversation.
//! - [`frame`]: length-prefixed postcard frames over any async byte stream, with a size limit.
//! - [`handshake`]: the first exchange on the control stream: both sides prove they know the
//!   token (an HMAC over the connection's TLS exporter secret), then the version check.
//! - [`transport`]: QUIC endpoint configuration (the master's certificate and how a worker
//!   checks it, idle timeout, keep-alive, the limits before auth).

pub mod frame;
pub mod handshake;
pub mod message;
pub mod transport;

pub use frame::{FrameError, MAX_FRAME, PRE_AUTH_FRAME, read_frame, write_frame};
pub use handshake::HandshakeError;
pub use message::*;

/// The protocol version spoken by this build. A master refuses a worker speaking another one.
///
/// History: 1, the first; 2 added [`Report::records`] (per-request CSV
/// rows); 3 added [`Report::gauges`] (worker readings such as its host's CPU usage); 4 added
/// [`Assign::run_seed`] (one arrival sequence shared by all workers); 5 made
/// [`Assign::scenario`] an assignment (the scenario under `[scenario]`, what the master prepared
/// beside it), since a scenario file can no longer carry the prepared prompts; 6 replaced the
/// token in [`Hello`] by proofs over the connection's TLS exporter secret ([`MasterProof`]
/// first, from the master, on a control stream the master opens).
pub const PROTOCOL_VERSION: u16 = 6;

/// The ALPN token of the Stampede protocol on QUIC.
pub const ALPN: &[u8] = b"stampede/1";

/// The default port a master listens on for workers.
pub const DEFAULT_PORT: u16 = 7400;

/// Wall-clock time now, in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
