//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes of postcard.
//!
//! Used on every Stampede stream. Generic over tokio's `AsyncRead`/`AsyncWrite`, so the codec is
//! tested on in-memory pipes without sockets. It does not retry or buffer across frames: a
//! decoding error ends the stream.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frames larger than this are refused before anything is allocated (a report of a few hundred
/// request names with full histograms stays far below it). The limit between authenticated
/// peers.
pub const MAX_FRAME: u32 = 16 * 1024 * 1024;

/// The limit before a peer has authenticated: the proofs and the hello are a few hundred
/// bytes, so a stranger announcing more is refused before anything is allocated for it.
pub const PRE_AUTH_FRAME: u32 = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream cleanly between frames.
    #[error("stream closed by peer")]
    Closed,
    /// The length prefix announced more than the limit the reader (or [`write_frame`]'s
    /// [`MAX_FRAME`]) allows.
    #[error("frame of {len} bytes is larger than the {limit}-byte limit")]
    TooLarge {
        /// The length announced (or encoded).
        len: u32,
        /// The limit it exceeds.
        limit: u32,
    },
    /// The bytes are not a valid message of the expected type.
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    /// The stream failed (connection lost, reset, closed mid-frame).
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The peer went away (closed, reset or the connection dropped) rather than misbehaved.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, FrameError::Closed | FrameError::Io(_))
    }
}

/// Encode `msg` and write it as one frame.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = postcard::to_stdvec(msg)?;
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_FRAME,
        });
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    Ok(())
}

/// Read one frame of at most `limit` bytes ([`MAX_FRAME`] between authenticated peers,
/// [`PRE_AUTH_FRAME`] before) and decode it as `T`. A clean end of stream before the first
/// byte of a frame is [`FrameError::Closed`]; an end inside a frame is an I/O error.
pub async fn read_frame<R, T>(r: &mut R, limit: u32) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let body = read_body(r, limit).await?;
    Ok(postcard::from_bytes(&body)?)
}

/// Read one frame's body (without its length prefix) of at most `limit` bytes, undecoded.
/// Nothing is allocated for a frame over the limit.
pub async fn read_body<R>(r: &mut R, limit: u32) -> Result<Vec<u8>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    match r.read(&mut len[..1]).await? {
        0 => return Err(FrameError::Closed),
        _ => r.read_exact(&mut len[1..]).await?,
    };
    let len = u32::from_be_bytes(len);
    if len > limit.min(MAX_FRAME) {
        return Err(FrameError::TooLarge {
            len,
            limit: limit.min(MAX_FRAME),
        });
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// Decode one frame body (without its length prefix); what [`read_frame`] does after reading.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;
    use proptest::prelude::*;

    fn sample_report() -> Report {
        Report {
            run_id: 7,
            seq: 3,
            start_unix_ms: 1_700_000_000_000,
            end_unix_ms: 1_700_000_001_000,
            users: 50,
            target_rate: 123.5,
            series: vec![Series {
                name: "index".into(),
                metric: metric::LATENCY.into(),
                hist: vec![1, 2, 3, 255],
            }],
            counters: vec![Counter {
                name: "index".into(),
                counter: "requests".into(),
                value: 9,
            }],
            failures: vec![FailureCount {
                name: "index".into(),
                kind: "HTTP 500".into(),
                count: 2,
            }],
            records: vec![Rows {
                stream: "requests".into(),
                data: vec![0x78, 0x01, 9, 8, 7],
            }],
            gauges: vec![Gauge {
                name: metric::HOST_CPU.into(),
                value: 37.5,
            }],
            last: true,
        }
    }

    #[tokio::test]
    async fn round_trip_every_message() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let proof = MasterProof { proof: [3; 32] };
        let hello = Hello {
            proof: [9; 32],
            version: 1,
            name: "w".into(),
            cores: 2,
            build: "0.1.0".into(),
        };
        let to_worker = vec![
            ToWorker::Assign(Assign {
                run_id: 1,
                scenario: "name = 'x'".into(),
                share: Share {
                    slot: 1,
                    weights: vec![2, 2],
                },
                scale: 1.1,
                run_seed: 9,
            }),
            ToWorker::Start {
                run_id: 1,
                at_unix_ns: 42,
                elapsed_ms: 5,
            },
            ToWorker::Update {
                run_id: 1,
                share: Share::whole(),
                scale: 0.9,
            },
            ToWorker::Stop {
                run_id: 1,
                reason: "done".into(),
            },
            ToWorker::Ping {
                seq: 4,
                master_ns: 5,
            },
        ];
        let from_worker = vec![
            FromWorker::Ready { run_id: 1 },
            FromWorker::Rejected {
                run_id: 1,
                reason: "bad".into(),
            },
            FromWorker::Pong {
                seq: 4,
                master_ns: 5,
                worker_ns: 6,
            },
            FromWorker::Heartbeat,
        ];
        write_frame(&mut a, &proof).await.unwrap();
        write_frame(&mut a, &hello).await.unwrap();
        for m in &to_worker {
            write_frame(&mut a, m).await.unwrap();
        }
        for m in &from_worker {
            write_frame(&mut a, m).await.unwrap();
        }
        write_frame(&mut a, &sample_report()).await.unwrap();
        drop(a);
        assert_eq!(
            read_frame::<_, MasterProof>(&mut b, MAX_FRAME)
                .await
                .unwrap(),
            proof
        );
        assert_eq!(
            read_frame::<_, Hello>(&mut b, MAX_FRAME).await.unwrap(),
            hello
        );
        for m in &to_worker {
            assert_eq!(
                &read_frame::<_, ToWorker>(&mut b, MAX_FRAME).await.unwrap(),
                m
            );
        }
        for m in &from_worker {
            assert_eq!(
                &read_frame::<_, FromWorker>(&mut b, MAX_FRAME)
                    .await
                    .unwrap(),
                m
            );
        }
        assert_eq!(
            read_frame::<_, Report>(&mut b, MAX_FRAME).await.unwrap(),
            sample_report()
        );
        assert!(matches!(
            read_frame::<_, Report>(&mut b, MAX_FRAME).await,
            Err(FrameError::Closed)
        ));
    }

    /// Record rows cost their own size on the wire (a byte string, not a sequence of varints),
    /// and the layout is `stream: str | data: bytes` after the failures.
    #[test]
    fn rows_are_byte_strings() {
        let rows = Rows {
            stream: "r".into(),
            data: vec![200; 300],
        };
        let body = postcard::to_stdvec(&rows).unwrap();
        // 1 (len) + 1 ("r") + 2 (varint 300) + 300.
        assert_eq!(body.len(), 304);
        assert_eq!(&body[..4], &[1, b'r', 0xAC, 0x02]);
    }

    #[tokio::test]
    async fn oversized_length_is_refused_without_allocating() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = read_frame::<_, Report>(&mut b, MAX_FRAME)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len: u32::MAX, .. }),
            "{err}"
        );
    }

    /// Before auth, a frame announcing 16 MiB is refused from its 4-byte prefix alone, though
    /// authenticated peers may send it.
    #[tokio::test]
    async fn the_reader_sets_the_limit() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&MAX_FRAME.to_be_bytes()).await.unwrap();
        let err = read_body(&mut b, PRE_AUTH_FRAME).await.unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    len: MAX_FRAME,
                    limit: PRE_AUTH_FRAME
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "frame of 16777216 bytes is larger than the 65536-byte limit"
        );
        let (mut a, mut b) = tokio::io::duplex(PRE_AUTH_FRAME as usize + 8);
        let body = vec![7u8; PRE_AUTH_FRAME as usize];
        a.write_all(&PRE_AUTH_FRAME.to_be_bytes()).await.unwrap();
        a.write_all(&body).await.unwrap();
        assert_eq!(read_body(&mut b, PRE_AUTH_FRAME).await.unwrap(), body);
    }

    #[tokio::test]
    async fn truncated_frame_is_an_io_error() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&10u32.to_be_bytes()).await.unwrap();
        a.write_all(&[1, 2, 3]).await.unwrap();
        drop(a);
        let err = read_frame::<_, Report>(&mut b, MAX_FRAME)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Io(_)), "{err}");
        assert!(err.is_disconnect());
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder: they decode or they are refused.
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = decode::<Report>(&body);
            let _ = decode::<ToWorker>(&body);
            let _ = decode::<FromWorker>(&body);
            let _ = decode::<Hello>(&body);
            let _ = decode::<MasterProof>(&body);
            let _ = decode::<HelloReply>(&body);
        }

        /// Mutating a valid report's bytes never panics either (reaches deeper decoder paths).
        #[test]
        fn mutated_reports_never_panic(idx in 0usize..200, byte in any::<u8>()) {
            let mut body = postcard::to_stdvec(&sample_report()).unwrap();
            let i = idx % body.len();
            body[i] = byte;
            let _ = decode::<Report>(&body);
        }

        #[test]
        fn report_round_trip(run_id in any::<u64>(), seq in any::<u64>(), users in any::<u64>(),
                             hist in proptest::collection::vec(any::<u8>(), 0..512),
                             rows in proptest::collection::vec(any::<u8>(), 0..512),
                             name in ".{0,40}") {
            let mut r = sample_report();
            r.run_id = run_id; r.seq = seq; r.users = users;
            r.series[0].hist = hist; r.series[0].name = name.clone();
            r.records[0].data = rows; r.records[0].stream = name;
            let body = postcard::to_stdvec(&r).unwrap();
            prop_assert_eq!(decode::<Report>(&body).unwrap(), r);
        }
    }
}
