//! The gRPC service, a drop-in for ig-wva's Performance Profile Generator binary:
//! `profiler_service.PerformanceProfileGenerator/GenerateProfile` (also under the longer name the
//! generator's README calls it by), `grpc.health.v1.Health` (SERVING for the service and for "")
//! and server reflection (v1 and v1alpha), so grpcurl works without proto files.
//!
//! Called by `stampede profile serve`. Data is loaded again for every request; on shutdown
//! health turns NOT_SERVING first, then the server stops taking calls and finishes those
//! going on (a few seconds at most: a health watch stream does not hold it up).

use std::sync::Arc;
use std::time::Duration;

use stampede_grpc::experimental::users::benjaminbraun::gateway_autoscaling::performance_profiler as readme_alias;
use stampede_grpc::profiler_service::performance_profile_generator_server::{
    PerformanceProfileGenerator, PerformanceProfileGeneratorServer,
};
use stampede_grpc::profiler_service::{GenerateProfileRequest, GenerateProfileResponse};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

use crate::profile;
use crate::source::Source;

/// The service's full name, as health checks ask for it.
pub const SERVICE_NAME: &str = "profiler_service.PerformanceProfileGenerator";

/// How long calls going on may take to finish after a shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// The service: a data source, loaded per request.
#[derive(Debug, Clone)]
pub struct Generator {
    source: Arc<Source>,
}

impl Generator {
    /// A service answering from `source`.
    pub fn new(source: Source) -> Generator {
        Generator {
            source: Arc::new(source),
        }
    }

    /// Answer one request: INVALID_ARGUMENT for a bad workload, UNAVAILABLE when the data's
    /// URL does not answer, INTERNAL when the data cannot be read.
    pub async fn answer(
        &self,
        request: GenerateProfileRequest,
    ) -> Result<GenerateProfileResponse, Status> {
        let workload = request.workload_definition.unwrap_or_default();
        profile::validate(&workload).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let loaded = self.source.load().await.map_err(|e| {
            tracing::error!("loading benchmark data: {e}");
            if e.is_unavailable() {
                Status::unavailable(format!("benchmark data: {e}"))
            } else {
                Status::internal(format!("failed to load benchmark data: {e}"))
            }
        })?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let profile = profile::generate(&workload, &loaded.data)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(known) = loaded.data.known() {
            for e in profile.entries.iter().filter(|e| e.points.is_empty()) {
                tracing::info!("{}", known.explain(&e.worker, &e.request));
            }
        }
        Ok(profile.to_response())
    }
}

#[tonic::async_trait]
impl PerformanceProfileGenerator for Generator {
    async fn generate_profile(
        &self,
        request: Request<GenerateProfileRequest>,
    ) -> Result<Response<GenerateProfileResponse>, Status> {
        self.answer(request.into_inner()).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl readme_alias::performance_profile_generator_server::PerformanceProfileGenerator for Generator {
    async fn generate_profile(
        &self,
        request: Request<GenerateProfileRequest>,
    ) -> Result<Response<GenerateProfileResponse>, Status> {
        self.answer(request.into_inner()).await.map(Response::new)
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reflection could not read the descriptors (a build problem).
    #[error("building the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serve on `listener` until `shutdown` is cancelled: health goes NOT_SERVING (for the
/// service and ""), then new calls are refused and calls going on get 5 s to finish.
pub async fn serve(
    listener: TcpListener,
    source: Source,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let generator = Generator::new(source);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(stampede_grpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(stampede_grpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let stopping = shutdown.clone();
    let signal = async move {
        stopping.cancelled().await;
        reporter
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    };
    let server = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(PerformanceProfileGeneratorServer::new(generator.clone()))
        .add_service(
            readme_alias::performance_profile_generator_server::PerformanceProfileGeneratorServer::new(
                generator,
            ),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            signal,
        );
    tokio::select! {
        r = server => r?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("calls still open {} s after the shutdown began; stopping anyway", DRAIN.as_secs());
        }
    }
    Ok(())
}
