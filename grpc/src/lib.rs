//! Generated gRPC code: one module per proto package under `proto/`, plus the encoded file
//! descriptor set for server reflection.

/// `proto/scheduler.proto`, kept verbatim from the priority-traffic seed.
pub mod scheduler {
    tonic::include_proto!("scheduler");
}

/// Every compiled proto file, encoded as a `FileDescriptorSet` (for gRPC server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
