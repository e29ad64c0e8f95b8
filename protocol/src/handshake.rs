//! The first exchange on the control stream: the worker says [`Hello`], the master answers
//! [`HelloReply`]. Both sides of the check live here so they cannot drift apart.
//!
//! It does not open streams or connections; callers hand in the two halves of the control stream.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::PROTOCOL_VERSION;
use crate::frame::{FrameError, read_frame, write_frame};
use crate::message::{Hello, HelloReply};

/// Why a worker was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The master refused the worker; the reason is the master's own words.
    #[error("refused by master: {0}")]
    Refused(String),
    /// The stream failed or carried something that is not a handshake.
    #[error("handshake failed: {0}")]
    Frame(#[from] FrameError),
}

impl HandshakeError {
    /// A refusal is final: retrying with the same settings cannot succeed.
    pub fn is_refusal(&self) -> bool {
        matches!(self, HandshakeError::Refused(_))
    }
}

/// Worker side: send `hello`, wait for the reply, return the worker id the master gave.
pub async fn introduce<R, W>(
    send: &mut W,
    recv: &mut R,
    hello: &Hello,
) -> Result<u64, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    write_frame(send, hello).await?;
    match read_frame::<_, HelloReply>(recv).await? {
        HelloReply::Welcome { worker_id, .. } => Ok(worker_id),
        HelloReply::Refused { reason } => Err(HandshakeError::Refused(reason)),
    }
}

/// Master side: decide whether `hello` may join. `Err` holds the one-line reason sent back.
pub fn admit(hello: &Hello, token: &str) -> Result<(), String> {
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version mismatch: worker speaks v{}, master speaks v{} (run the same Stampede release on both)",
            hello.version, PROTOCOL_VERSION
        ));
    }
    if !constant_time_eq(hello.token.as_bytes(), token.as_bytes()) {
        return Err("wrong token (check --token or STAMPEDE_TOKEN on the worker)".to_string());
    }
    Ok(())
}

/// Compare without an early exit, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(!x);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u16, token: &str) -> Hello {
        Hello {
            version,
            token: token.into(),
            name: "w".into(),
            cores: 1,
            build: "t".into(),
        }
    }

    #[test]
    fn admit_checks_version_then_token() {
        assert!(admit(&hello(PROTOCOL_VERSION, "s"), "s").is_ok());
        let e = admit(&hello(PROTOCOL_VERSION, "x"), "s").unwrap_err();
        assert!(e.contains("wrong token"), "{e}");
        let e = admit(&hello(PROTOCOL_VERSION + 1, "s"), "s").unwrap_err();
        assert!(e.contains("version mismatch"), "{e}");
        assert!(admit(&hello(PROTOCOL_VERSION, ""), "s").is_err());
        assert!(admit(&hello(PROTOCOL_VERSION, "ss"), "s").is_err());
    }

    #[tokio::test]
    async fn refusal_reaches_the_worker() {
        let (mut w, mut m) = tokio::io::duplex(4096);
        let master = tokio::spawn(async move {
            let h: Hello = read_frame(&mut m).await.unwrap();
            let reason = admit(&h, "right").unwrap_err();
            write_frame(&mut m, &HelloReply::Refused { reason })
                .await
                .unwrap();
        });
        let (mut r, mut s) = tokio::io::split(&mut w);
        let err = introduce(&mut s, &mut r, &hello(PROTOCOL_VERSION, "wrong"))
            .await
            .unwrap_err();
        assert!(err.is_refusal());
        assert!(err.to_string().contains("wrong token"), "{err}");
        master.await.unwrap();
    }
}
