//! Mutual authentication on the control stream, then the worker's introduction. Both sides of
//! every check live here so they cannot drift apart.
//!
//! Each side proves it knows the shared [`Token`] without sending it: an HMAC-SHA256 keyed by
//! the token over the side's [`Role`] and the connection's TLS exporter secret (RFC 5705,
//! [`EXPORTER_LABEL`]). That secret is unique to one TLS session, so a proof seen on one
//! connection is worthless on any other: a relay between a worker and a master holds two
//! sessions, and neither proof it sees fits the other. The master proves first
//! ([`MasterProof`]); the worker checks it before it says anything, so a rogue master learns
//! nothing from a worker but that it connected.
//!
//! [`join`] and [`open`] run the exchange on a QUIC connection (the master opens the control
//! stream); [`introduce`] and [`challenge`] work on any pair of byte streams, for tests. None
//! sets a timer: callers bound the exchange by [`AUTH_TIMEOUT`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::PROTOCOL_VERSION;
use crate::frame::{FrameError, PRE_AUTH_FRAME, decode, read_body, read_frame, write_frame};
use crate::message::{Hello, HelloReply, MasterProof};

/// The RFC 5705 label of the exporter secret both proofs are computed over.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-stampede-worker-auth-v1";

/// How long a new connection has, from its first packet, to complete the QUIC handshake and
/// authenticate; the worker waits as long for the master's proof.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest token accepted, in bytes: 16, so a token is not guessed from a proof.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Application close code: the master closes a peer that did not authenticate, saying no more.
pub const CLOSE_UNAUTHENTICATED: u32 = 3;

/// Application close code: a worker closes a master whose proof is wrong.
pub const CLOSE_MASTER_UNPROVEN: u32 = 4;

/// The shared secret of a master and its workers (and the API's bearer token). Its `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Shorter than [`MIN_TOKEN_BYTES`].
    #[error(
        "the token is {len} bytes long; at least {MIN_TOKEN_BYTES} are needed (a master given none makes one and prints it; `openssl rand -hex 16` makes one too)"
    )]
    TooShort {
        /// Its length in bytes.
        len: usize,
    },
}

impl Token {
    /// `text` as a token, if it is at least [`MIN_TOKEN_BYTES`] long.
    pub fn new(text: impl Into<String>) -> Result<Token, TokenError> {
        let text = text.into();
        if text.len() < MIN_TOKEN_BYTES {
            return Err(TokenError::TooShort { len: text.len() });
        }
        Ok(Token(text.into()))
    }

    /// A fresh token: 128 random bits from the operating system, as 32 hex digits.
    pub fn generate() -> Token {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 16];
        // The invariant: the system random source only fails if the OS has none (no
        // getrandom, no /dev/urandom), and then rustls could not run either.
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system's random source works");
        Token(hex(&bytes).into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Which side a proof speaks for: a master's proof never passes as a worker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that accepts connections and assigns runs.
    Master,
    /// The side that connects and generates load.
    Worker,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Master => b"stampede master",
            Role::Worker => b"stampede worker",
        }
    }
}

/// A connection's TLS exporter secret: the same on both ends of one connection, different on
/// every other.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// The exporter secret of `conn` under [`EXPORTER_LABEL`].
    pub fn of(conn: &quinn::Connection) -> Result<Secret, HandshakeError> {
        let mut out = [0u8; 32];
        conn.export_keying_material(&mut out, EXPORTER_LABEL, b"")
            .map_err(|_| HandshakeError::Exporter)?;
        Ok(Secret(out))
    }

    /// A secret from raw bytes (tests, and streams that are not QUIC connections).
    pub fn from_bytes(bytes: [u8; 32]) -> Secret {
        Secret(bytes)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `role`'s proof on the connection whose secret is `secret`:
/// `HMAC-SHA256(token, role label | 0x00 | secret)`.
pub fn prove(token: &Token, secret: &Secret, role: Role) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_str().as_bytes());
    let tag = hmac::sign(&key, &message(secret, role));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `proof` is `role`'s proof under `token` on this connection (compared in constant
/// time).
pub fn verify(token: &Token, secret: &Secret, role: Role, proof: &[u8; 32]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_str().as_bytes());
    hmac::verify(&key, &message(secret, role), proof).is_ok()
}

fn message(secret: &Secret, role: Role) -> Vec<u8> {
    let mut m = Vec::with_capacity(48);
    m.extend_from_slice(role.label());
    m.push(0);
    m.extend_from_slice(&secret.0);
    m
}

/// Why a worker did not get in (the worker's view).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The master's proof is wrong: it does not know this worker's token. Nothing was sent.
    #[error(
        "the master did not prove it knows this worker's token: the tokens differ (check --token-file or STAMPEDE_TOKEN on both sides), or it is not your master; nothing was sent to it"
    )]
    MasterUnproven,
    /// The master refused the worker; the reason is the master's own words.
    #[error("refused by master: {0}")]
    Refused(String),
    /// The TLS session has no exporter secret (not a TLS 1.3 QUIC connection).
    #[error("the connection has no TLS exporter secret to authenticate over")]
    Exporter,
    /// The connection ended before the master opened the control stream.
    #[error("the master closed the connection before proving it knows the token ({0})")]
    Connection(#[from] quinn::ConnectionError),
    /// The stream failed or carried something that is not a handshake.
    #[error("handshake failed: {0}")]
    Frame(#[from] FrameError),
}

impl HandshakeError {
    /// A refusal is final: retrying with the same settings cannot succeed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            HandshakeError::Refused(_) | HandshakeError::MasterUnproven
        )
    }
}

/// What a worker says about itself once the master has proved itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Introduction {
    /// A human name for the worker.
    pub name: String,
    /// Cores available to the worker.
    pub cores: u32,
    /// The worker's Stampede version string.
    pub build: String,
}

/// Worker side: check the master's proof, then send this worker's proof and `me`, and return
/// the worker id the master gave. Nothing is written unless the master's proof is right.
pub async fn introduce<R, W>(
    send: &mut W,
    recv: &mut R,
    token: &Token,
    secret: &Secret,
    me: &Introduction,
) -> Result<u64, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let master: MasterProof = read_frame(recv, PRE_AUTH_FRAME).await?;
    if !verify(token, secret, Role::Master, &master.proof) {
        return Err(HandshakeError::MasterUnproven);
    }
    let hello = Hello {
        proof: prove(token, secret, Role::Worker),
        version: PROTOCOL_VERSION,
        name: me.name.clone(),
        cores: me.cores,
        build: me.build.clone(),
    };
    write_frame(send, &hello).await?;
    match read_frame::<_, HelloReply>(recv, PRE_AUTH_FRAME).await? {
        HelloReply::Welcome { worker_id, .. } => Ok(worker_id),
        HelloReply::Refused { reason } => Err(HandshakeError::Refused(reason)),
    }
}

/// Worker side on a QUIC connection: accept the control stream the master opens, check its
/// proof, introduce this worker, and lift the connection's pre-auth limits. Returns the
/// control stream's halves and the worker id.
pub async fn join(
    conn: &quinn::Connection,
    token: &Token,
    me: &Introduction,
) -> Result<(quinn::SendStream, quinn::RecvStream, u64), HandshakeError> {
    let secret = Secret::of(conn)?;
    let (mut send, mut recv) = conn.accept_bi().await?;
    let id = introduce(&mut send, &mut recv, token, &secret, me).await?;
    crate::transport::authenticated(conn, 0);
    Ok((send, recv, id))
}

/// Master side on a QUIC connection: open the control stream and run [`challenge`]. On success
/// the caller lifts the limits ([`crate::transport::authenticated`]) and sends the welcome.
pub async fn open(
    conn: &quinn::Connection,
    token: &Token,
) -> Result<(quinn::SendStream, quinn::RecvStream, Hello), AdmitError> {
    let secret = Secret::of(conn).map_err(|_| AdmitError::NoExporter)?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| AdmitError::NoHello(FrameError::Io(e.into())))?;
    let hello = challenge(&mut send, &mut recv, token, &secret).await?;
    Ok((send, recv, hello))
}

/// Why a peer was not admitted (the master's view). The `Display` texts hold nothing the peer
/// chose, except the version of a peer that proved the token.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The peer's proof is wrong: it does not know the token. It got no answer.
    #[error("wrong token proof")]
    WrongProof,
    /// The peer sent no hello, or something that is not one. It got no answer.
    #[error("{}", no_hello(.0))]
    NoHello(FrameError),
    /// The connection has no TLS exporter secret (cannot happen with TLS 1.3).
    #[error("has no TLS exporter secret")]
    NoExporter,
    /// The worker proved the token but speaks another protocol version; it was told so.
    #[error(
        "protocol version mismatch: worker speaks v{worker}, master speaks v{PROTOCOL_VERSION} (run the same Stampede release on both)"
    )]
    Version {
        /// The worker's version.
        worker: u16,
    },
}

impl AdmitError {
    /// The peer proved it knows the token (and was refused for another reason).
    pub fn is_authenticated(&self) -> bool {
        matches!(self, AdmitError::Version { .. })
    }
}

fn no_hello(e: &FrameError) -> &'static str {
    match e {
        FrameError::Closed => "closed the stream before its hello",
        FrameError::TooLarge { .. } => "announced a frame over the limit before authenticating",
        FrameError::Decode(_) => "sent something that is not a Stampede hello",
        FrameError::Io(_) => "left before its hello",
    }
}

/// The first fields of every [`Hello`] from version 6 on: enough to check the proof, then the
/// version, before the rest is decoded.
#[derive(Deserialize, Serialize)]
struct HelloHead {
    proof: [u8; 32],
    version: u16,
}

/// Master side: prove this master knows the token, then read the worker's hello and admit it
/// if its proof is right and it speaks this version. An authenticated worker of another
/// version is sent [`HelloReply::Refused`]; a peer that did not authenticate gets no answer.
/// The caller sends the welcome.
pub async fn challenge<R, W>(
    send: &mut W,
    recv: &mut R,
    token: &Token,
    secret: &Secret,
) -> Result<Hello, AdmitError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let proof = MasterProof {
        proof: prove(token, secret, Role::Master),
    };
    write_frame(send, &proof)
        .await
        .map_err(AdmitError::NoHello)?;
    let body = read_body(recv, PRE_AUTH_FRAME)
        .await
        .map_err(AdmitError::NoHello)?;
    let head: HelloHead = decode(&body).map_err(AdmitError::NoHello)?;
    if !verify(token, secret, Role::Worker, &head.proof) {
        return Err(AdmitError::WrongProof);
    }
    if head.version != PROTOCOL_VERSION {
        let refusal = AdmitError::Version {
            worker: head.version,
        };
        let reply = HelloReply::Refused {
            reason: refusal.to_string(),
        };
        let _ = write_frame(send, &reply).await;
        return Err(refusal);
    }
    decode(&body).map_err(AdmitError::NoHello)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn token(t: &str) -> Token {
        Token::new(t).unwrap()
    }

    fn me() -> Introduction {
        Introduction {
            name: "w".into(),
            cores: 2,
            build: "t".into(),
        }
    }

    /// A master and a worker on an in-memory pipe, each with its own token and secret. Returns
    /// both results and every byte each side wrote.
    async fn exchange(
        master: (&str, [u8; 32]),
        worker: (&str, [u8; 32]),
    ) -> (
        Result<Hello, AdmitError>,
        Result<u64, HandshakeError>,
        Vec<u8>,
        Vec<u8>,
    ) {
        // Each direction is its own pipe, read back afterwards by a tap.
        let (m_tx, mut w_rx) = tokio::io::duplex(1 << 16);
        let (w_tx, mut m_rx) = tokio::io::duplex(1 << 16);
        let (m_tap_tx, mut m_tap) = tokio::io::duplex(1 << 16);
        let (w_tap_tx, mut w_tap) = tokio::io::duplex(1 << 16);
        let (mt, ms) = (token(master.0), Secret::from_bytes(master.1));
        let (wt, ws) = (token(worker.0), Secret::from_bytes(worker.1));
        let m = tokio::spawn(async move {
            let mut send = Tee(m_tx, m_tap_tx);
            let r = challenge(&mut send, &mut m_rx, &mt, &ms).await;
            if r.is_ok() {
                let welcome = HelloReply::Welcome {
                    worker_id: 7,
                    version: PROTOCOL_VERSION,
                };
                write_frame(&mut send, &welcome).await.unwrap();
            }
            r
        });
        let w = tokio::spawn(async move {
            let mut send = Tee(w_tx, w_tap_tx);
            introduce(&mut send, &mut w_rx, &wt, &ws, &me()).await
        });
        let (w, m) = (w.await.unwrap(), m.await.unwrap());
        let (mut from_master, mut from_worker) = (Vec::new(), Vec::new());
        m_tap.read_to_end(&mut from_master).await.unwrap();
        w_tap.read_to_end(&mut from_worker).await.unwrap();
        (m, w, from_master, from_worker)
    }

    /// Writes to two pipes: the peer and a tap; dropping it closes both.
    struct Tee(tokio::io::DuplexStream, tokio::io::DuplexStream);

    impl AsyncWrite for Tee {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = match std::pin::Pin::new(&mut self.0).poll_write(cx, buf) {
                std::task::Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            // The tap is as large as everything a handshake writes.
            let _ = std::pin::Pin::new(&mut self.1).poll_write(cx, &buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    const T: &str = "correct horse battery staple";

    #[tokio::test]
    async fn both_proofs_right_admits_and_the_token_never_travels() {
        let (m, w, from_master, from_worker) = exchange((T, [1; 32]), (T, [1; 32])).await;
        assert_eq!(m.unwrap().name, "w");
        assert_eq!(w.unwrap(), 7);
        for bytes in [&from_master, &from_worker] {
            assert!(!bytes.is_empty());
            assert!(
                !bytes.windows(T.len()).any(|win| win == T.as_bytes()),
                "the token is on the wire"
            );
        }
    }

    #[tokio::test]
    async fn a_worker_with_another_token_says_nothing_to_the_master() {
        let other = "another token, 16+ bytes";
        let (m, w, _, from_worker) = exchange((T, [1; 32]), (other, [1; 32])).await;
        assert!(matches!(w, Err(HandshakeError::MasterUnproven)), "{w:?}");
        assert!(w.unwrap_err().is_refusal());
        assert!(from_worker.is_empty(), "the worker wrote {from_worker:?}");
        assert!(
            matches!(m, Err(AdmitError::NoHello(FrameError::Closed))),
            "{m:?}"
        );
    }

    /// The master proof seen on one connection (secret) does not pass on another: a relay
    /// between a worker and a master sees two secrets.
    #[tokio::test]
    async fn a_proof_from_another_connection_fails() {
        let (m, w, _, _) = exchange((T, [1; 32]), (T, [2; 32])).await;
        assert!(matches!(w, Err(HandshakeError::MasterUnproven)), "{w:?}");
        assert!(m.is_err());
        // And a worker's proof replayed into another connection is refused by the master.
        let (a, b) = (Secret::from_bytes([1; 32]), Secret::from_bytes([2; 32]));
        let captured = prove(&token(T), &a, Role::Worker);
        assert!(verify(&token(T), &a, Role::Worker, &captured));
        assert!(!verify(&token(T), &b, Role::Worker, &captured));
    }

    #[test]
    fn roles_differ() {
        let s = Secret::from_bytes([9; 32]);
        let master = prove(&token(T), &s, Role::Master);
        assert_ne!(master, prove(&token(T), &s, Role::Worker));
        assert!(!verify(&token(T), &s, Role::Worker, &master));
        assert!(verify(&token(T), &s, Role::Master, &master));
    }

    #[tokio::test]
    async fn a_forged_worker_proof_gets_no_answer() {
        let (m_tx, mut w_rx) = tokio::io::duplex(1 << 16);
        let (mut w_tx, mut m_rx) = tokio::io::duplex(1 << 16);
        let s = Secret::from_bytes([3; 32]);
        let master = tokio::spawn(async move {
            let mut m_tx = m_tx;
            challenge(&mut m_tx, &mut m_rx, &token(T), &s).await
        });
        let _: MasterProof = read_frame(&mut w_rx, PRE_AUTH_FRAME).await.unwrap();
        // A hello of another version with a made-up proof: no version is told.
        let hello = Hello {
            proof: [0; 32],
            version: PROTOCOL_VERSION + 1,
            name: "evil\n".into(),
            cores: 1,
            build: "x".into(),
        };
        write_frame(&mut w_tx, &hello).await.unwrap();
        let err = master.await.unwrap().unwrap_err();
        assert!(matches!(err, AdmitError::WrongProof), "{err}");
        assert!(!err.is_authenticated());
        let mut rest = Vec::new();
        w_rx.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the master answered {rest:?}");
    }

    #[tokio::test]
    async fn another_version_is_told_after_the_proof() {
        let (m_tx, mut w_rx) = tokio::io::duplex(1 << 16);
        let (mut w_tx, mut m_rx) = tokio::io::duplex(1 << 16);
        let s = Secret::from_bytes([4; 32]);
        let master = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut m_tx = m_tx;
                challenge(&mut m_tx, &mut m_rx, &token(T), &s).await
            })
        };
        let _: MasterProof = read_frame(&mut w_rx, PRE_AUTH_FRAME).await.unwrap();
        let hello = Hello {
            proof: prove(&token(T), &s, Role::Worker),
            version: PROTOCOL_VERSION + 1,
            name: "w".into(),
            cores: 1,
            build: "x".into(),
        };
        write_frame(&mut w_tx, &hello).await.unwrap();
        let err = master.await.unwrap().unwrap_err();
        assert!(err.is_authenticated());
        assert!(err.to_string().contains("version mismatch"), "{err}");
        match read_frame::<_, HelloReply>(&mut w_rx, PRE_AUTH_FRAME).await {
            Ok(HelloReply::Refused { reason }) => {
                assert!(reason.contains("version mismatch"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_huge_hello_is_refused_from_its_length() {
        use tokio::io::AsyncWriteExt;
        let (m_tx, mut w_rx) = tokio::io::duplex(1 << 16);
        let (mut w_tx, mut m_rx) = tokio::io::duplex(1 << 16);
        let master = tokio::spawn(async move {
            let mut m_tx = m_tx;
            challenge(
                &mut m_tx,
                &mut m_rx,
                &token(T),
                &Secret::from_bytes([5; 32]),
            )
            .await
        });
        let _: MasterProof = read_frame(&mut w_rx, PRE_AUTH_FRAME).await.unwrap();
        w_tx.write_all(&(16u32 << 20).to_be_bytes()).await.unwrap();
        let err = master.await.unwrap().unwrap_err();
        assert!(
            matches!(err, AdmitError::NoHello(FrameError::TooLarge { .. })),
            "{err}"
        );
        // The log line holds nothing the peer chose, not even the length it announced.
        assert_eq!(
            err.to_string(),
            "announced a frame over the limit before authenticating"
        );
    }

    #[test]
    fn tokens_are_at_least_16_bytes_and_generated_ones_differ() {
        let e = Token::new("short").unwrap_err();
        assert!(e.to_string().contains("5 bytes long; at least 16"), "{e}");
        assert!(Token::new("sixteen bytes ok").is_ok());
        let (a, b) = (Token::generate(), Token::generate());
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Token(..)");
    }
}
