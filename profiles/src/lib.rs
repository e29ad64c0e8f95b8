//! Capacity profiles, as ig-wva's Performance Profile Generator computes them: the highest
//! request rate each worker type sustains for each request type within its TPOT latency SLO,
//! computed from benchmark data (the generator's CSV schema, which Stampede's sweeps write) and
//! served as the generator's gRPC service.
//!
//! # Layout
//! - [`profile`]: the algorithm: per worker type × request type, interpolate the rate at the SLO.
//! - [`data`]: loaded benchmark data (mock or rows) and the points one pair gets from it.
//! - [`source`]: where data comes from (mock, CSV file, URL, GCS, sweep results) and loading it.
//! - [`fetch`]: GET a URL over http or https (rustls, system roots or `SSL_CERT_FILE`).
//! - [`gcs`]: a CSV object in GCS through the JSON API, with a token from the environment or
//!   the metadata server.
//! - [`bench_csv`]: reading the generator's benchmark CSV schema and writing sweep rows in it.
//! - [`json`]: workload files in, grpcurl-style profile JSON out.
//! - [`server`]: the gRPC service with health and reflection, and its graceful shutdown.
//! - [`sweep`]: token buckets, a sweep step's figures as a benchmark row, the knee search.
//! - [`plot`]: an SVG of latency against rate per entry, with the SLO and the chosen rate.

pub mod bench_csv;
pub mod data;
pub mod fetch;
pub mod gcs;
pub mod json;
pub mod plot;
pub mod profile;
pub mod server;
pub mod source;
pub mod sweep;
