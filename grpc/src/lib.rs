//! Generated gRPC code: one module per proto package under `proto/`, plus the encoded file
//! descriptor set for server reflection.

/// `proto/scheduler.proto`, kept verbatim from the MLPerf-LoadGen priority runner's
/// (`loadgen_runner.py`) instructions.
pub mod scheduler {
    tonic::include_proto!("scheduler");
}

/// `proto/common.proto`: the worker and request types of ig-wva's Performance Profile
/// Generator.
pub mod common {
    tonic::include_proto!("common");
}

/// `proto/profiler_service.proto`: ig-wva's Performance Profile Generator service.
pub mod profiler_service {
    tonic::include_proto!("profiler_service");
}

/// `proto/profiler_service_alias.proto`: the same service under the full name the Performance
/// Profile Generator's README calls it by. Nested like its proto package, so the generated code
/// finds [`profiler_service`]'s messages at `super::super::...`.
pub mod experimental {
    /// Package path segment.
    pub mod users {
        /// Package path segment.
        pub mod benjaminbraun {
            /// Package path segment.
            pub mod gateway_autoscaling {
                /// The Performance Profile Generator's README's name for its service.
                pub mod performance_profiler {
                    tonic::include_proto!(
                        "experimental.users.benjaminbraun.gateway_autoscaling.performance_profiler"
                    );
                }
            }
        }
    }
}

/// `proto/jetstream.proto`: JetStream's `Orchestrator` (the `jetstream` LLM backend and the
/// built-in LLM target's gRPC side), with JetStream's own package, names and field numbers.
pub mod jetstream {
    tonic::include_proto!("jetstream_proto");
}

/// Every compiled proto file, encoded as a `FileDescriptorSet` (for gRPC server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
