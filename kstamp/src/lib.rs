//! Kernel time for Stampede's measurements, used by the request drivers, the worker's engine
//! and the built-in targets: when the kernel received a TCP stream's bytes, and sleeps on a
//! timerfd. Not part of the master–worker contract (that is `stampede-protocol`), and it knows
//! nothing of HTTP, gRPC or scenarios.
//!
//! # Layout
//! - [`stamps`]: kernel receive timestamps (`SO_TIMESTAMPNS`) of a TCP socket's reads.
//! - [`stamped`]: a TCP stream whose every read carries its bytes' arrival time, for TLS and
//!   HTTP/2 stacks that read through it.
//! - [`timer`]: sleeps until an instant on a timerfd (a tokio sleep elsewhere than Linux).

pub mod stamped;
pub mod stamps;
pub mod timer;
