//! JetStream's gRPC front, `jetstream_proto.Orchestrator`, on the simulated engine: `Decode`
//! streams one `DecodeResponse` per output token (`stream_content.samples[0]` with the token's
//! text and its one id), `HealthCheck` says live.
//!
//! Served on its own port (gRPC needs HTTP/2; the HTTP APIs are HTTP/1.1) by [`serve`], which
//! shares the HTTP side's engine: the same batch slots, slowdown, seeds and truth statistics.
//! Prompt tokens are the words of `text_content` or the length of `token_content`. Injected
//! errors are `INTERNAL`; the `close_mid_stream` fault ends the stream with `ABORTED` at its
//! middle token; `malformed_json` and `unknown_event` have no gRPC form and are never drawn here
//! (counted, the one would be a failure no client sees).
//! With `--precise-timing` a request is timed from its arrival at the socket (kernel receive
//! timestamps, as on the HTTP side), carried to the handler as the connection's info. With the
//! HTTP side's TLS (`--tls`) this port speaks TLS too, with the same certificate (h2 by ALPN).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use prost::Message;
use stampede_grpc::jetstream::decode_request::Content;
use stampede_grpc::jetstream::decode_response::stream_content::Sample;
use stampede_grpc::jetstream::decode_response::{self, StreamContent};
use stampede_grpc::jetstream::orchestrator_server::{Orchestrator, OrchestratorServer};
use stampede_grpc::jetstream::{
    DecodeRequest, DecodeResponse, HealthCheckRequest, HealthCheckResponse,
};
use stampede_kstamp::stamped::{Arrival, StampedStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use super::Fault;
use super::engine::{Encoder, End, Finish, Job, Token, count_words};
use super::server::{Shared, pick_fault};
use crate::tls::Transport;

/// Serve `Orchestrator` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let stamp = shared.config.precise_timing;
    let tls = match &shared.config.transport {
        Transport::Tls(tls) => Some(tls.clone()),
        Transport::Http1 | Transport::H2c => None,
    };
    let server = tonic::transport::Server::builder()
        .add_service(OrchestratorServer::new(JetStream { shared }));
    let stop = shutdown.clone().cancelled_owned();
    match tls {
        // The HTTP port's certificate: gRPC clients offer `h2` by ALPN. Reads are stamped
        // under TLS, so a request's arrival is still its TCP bytes'.
        Some(tls) => {
            let incoming = crate::scheduler::tls::incoming_with(
                &tls,
                listener,
                shutdown,
                move |tcp| StampedStream::new(tcp, stamp).0,
                |stream, _| GrpcStream {
                    arrival: stream.get_ref().0.arrival().clone(),
                    stream: Either::Right(Box::new(stream)),
                },
            );
            server.serve_with_incoming_shutdown(incoming, stop).await?;
        }
        None => {
            let incoming = futures_util::stream::unfold(listener, move |listener| async move {
                let accepted = listener.accept().await.map(|(stream, _)| {
                    // Tokens are small writes that must leave at once.
                    let _ = stream.set_nodelay(true);
                    let (stream, arrival) = StampedStream::new(stream, stamp);
                    GrpcStream {
                        stream: Either::Left(stream),
                        arrival,
                    }
                });
                Some((accepted, listener))
            });
            server.serve_with_incoming_shutdown(incoming, stop).await?;
        }
    }
    Ok(())
}

/// An accepted connection (plaintext, or TLS over it) whose reads note their arrival; the
/// [`Arrival`] is the connection info tonic hands each request (in its extensions).
struct GrpcStream {
    /// Boxed under TLS: rustls' state is a few KiB.
    stream: Either<StampedStream, Box<tokio_rustls::server::TlsStream<StampedStream>>>,
    arrival: Arrival,
}

impl Connected for GrpcStream {
    type ConnectInfo = Arrival;

    fn connect_info(&self) -> Arrival {
        self.arrival.clone()
    }
}

impl AsyncRead for GrpcStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The service: the shared engine and config.
struct JetStream {
    shared: Arc<Shared>,
}

type DecodeStream = Pin<Box<dyn Stream<Item = Result<DecodeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Orchestrator for JetStream {
    type DecodeStream = DecodeStream;

    async fn decode(
        &self,
        request: Request<DecodeRequest>,
    ) -> Result<Response<DecodeStream>, Status> {
        let now = Instant::now();
        // When the request's last bytes reached the socket, if the connection stamps arrivals.
        let body_read = request
            .extensions()
            .get::<Arrival>()
            .and_then(Arrival::last)
            .map(Instant::from_std)
            .filter(|&at| at <= now)
            .unwrap_or(now);
        let shared = &self.shared;
        let stats = shared.engine.stats.clone();
        stats.request();
        let request = request.into_inner();
        let prompt_tokens = match &request.content {
            Some(Content::TextContent(t)) => count_words(&t.text),
            Some(Content::TokenContent(t)) => t.token_ids.len() as u64,
            None => {
                stats.bad_request();
                return Err(Status::invalid_argument(
                    "DecodeRequest needs text_content or token_content",
                ));
            }
        };
        let max_tokens = match u32::try_from(request.max_tokens) {
            Ok(n) if n > 0 => n,
            _ => {
                stats.bad_request();
                return Err(Status::invalid_argument(format!(
                    "max_tokens must be positive, got {}",
                    request.max_tokens
                )));
            }
        };
        let context = u64::from(shared.config.max_model_len);
        if prompt_tokens + u64::from(max_tokens) > context {
            stats.bad_request();
            return Err(Status::invalid_argument(format!(
                "prompt ({prompt_tokens} tokens) plus max_tokens {max_tokens} exceeds {context}"
            )));
        }
        let mut rng = shared.engine.next_rng();
        let config = &shared.config;
        if config.error_rate > 0.0 && rand::Rng::random_bool(&mut rng, config.error_rate) {
            stats.injected_error();
            return Err(Status::internal("injected error"));
        }
        // The only fault a gRPC stream can show.
        let fault = pick_fault(config, &mut rng, |fault| fault == Fault::CloseMidStream);
        let job = Job {
            prompt_tokens,
            max_tokens,
            min_tokens: 0,
            ignore_eos: false,
            stream: true,
            encoder: Box::new(JetStreamEncoder),
        };
        let mut generation = shared.engine.start(job, rng, body_read, fault);
        let stream = futures_util::stream::poll_fn(move |cx| {
            generation.poll_step(cx).map(|step| {
                step.map(|frame| match frame {
                    Ok(bytes) => DecodeResponse::decode(bytes.as_slice())
                        .map_err(|e| Status::internal(format!("encoding a token: {e}"))),
                    Err(cut) => Err(Status::aborted(cut.to_string())),
                })
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn health_check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse { is_live: true }))
    }
}

/// One `DecodeResponse` per token, encoded as the engine's frame (decoded again by the stream:
/// the engine speaks bytes, tonic messages).
struct JetStreamEncoder;

impl Encoder for JetStreamEncoder {
    fn token(&mut self, out: &mut Vec<u8>, token: &Token, _finish: Option<Finish>) {
        let message = DecodeResponse {
            content: Some(decode_response::Content::StreamContent(StreamContent {
                samples: vec![Sample {
                    text: token.text.to_string(),
                    // Ids are drawn below the 32,000-word vocabulary: they fit an int32.
                    token_ids: vec![token.id as i32],
                }],
            })),
        };
        message.encode_raw(out);
    }

    fn end(&mut self, _out: &mut Vec<u8>, _end: &End) {}

    fn malformed(&mut self, _out: &mut Vec<u8>) {}

    fn unknown_event(&mut self, _out: &mut Vec<u8>) {}
}
