//! The fault and abuse suite: Stampede attacked on purpose, as an operator's security team
//! would before letting it run in a lab. Each case starts real `stampede` processes and points
//! them at, or floods them with, in-test peers that speak the protocol with bad intent; each
//! prints what it measured. Long cases are `#[ignore]` and named `stress_*`.
//!
//! The helpers here build those peers: a QUIC server with its own certificate
//! ([`quic_server`]), a TCP listener that counts who connects to it ([`Watched`]), and a token
//! file ([`token_file`]).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stampede_protocol::transport::{self, MasterIdentity, MasterTrust};

use crate::util::{MasterProc, TestDir, WorkerProc, wait_until};

// A rogue master, a relay, wrong and short tokens, generated tokens, certificate pinning.
mod auth;
// What a worker refuses to do: open a local file an assignment names, load a target it was not
// allowed.
mod assignments;
// 500 unauthenticated connections announcing 16 MiB frames: the master's memory stays bounded.
mod flood;

/// A token of the suite (not [`crate::util::TOKEN`], so a mix-up shows).
pub const TOKEN: &str = "faults-suite-token-0123456789";

/// A runtime for the in-test peers, next to the blocking process helpers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A QUIC server on 127.0.0.1:0 with a fresh self-signed certificate, like a master's but
/// without its limits: a rogue master takes whatever a worker would send.
pub fn quic_server(rt: &tokio::runtime::Runtime) -> quinn::Endpoint {
    let _guard = rt.enter();
    let mut config = transport::server_config(MasterIdentity::self_signed().unwrap()).unwrap();
    config.transport_config(Arc::new(quinn::TransportConfig::default()));
    quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A QUIC client endpoint bound to `ip` (any port) that checks no certificate.
pub fn quic_client(rt: &tokio::runtime::Runtime, ip: [u8; 4]) -> quinn::Endpoint {
    let _guard = rt.enter();
    let mut ep = quinn::Endpoint::client(SocketAddr::from((ip, 0))).unwrap();
    ep.set_default_client_config(transport::client_config(&MasterTrust::Token).unwrap());
    ep
}

/// A TCP listener that counts the connections made to it: the target a test watches for load.
pub struct Watched {
    /// Its address.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Watched {
    /// Listen on 127.0.0.1:0 and count connections from now on.
    pub fn start() -> Watched {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                count.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Watched { addr, accepted }
    }

    /// Connections so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Write `token` and a newline to `token.txt` in `dir`.
pub fn token_file(dir: &TestDir, token: &str) -> PathBuf {
    dir.write("token.txt", &format!("{token}\n"))
}

/// A worker named `name` joining `master` with the token in `file`, plus `args`.
pub fn worker_with_file(
    master: SocketAddr,
    file: &std::path::Path,
    name: &str,
    args: &[&str],
) -> WorkerProc {
    let mut cmd = WorkerProc::command(master);
    cmd.args(["--token-file", file.to_str().unwrap(), "--name", name])
        .args(args);
    WorkerProc::spawn(name, cmd)
}

/// Wait until the master's API lists a worker called `name`.
pub fn wait_joined(master: &MasterProc, name: &str) {
    wait_until(Duration::from_secs(15), &format!("{name} to join"), || {
        master
            .workers()
            .iter()
            .any(|w| w["name"] == name)
            .then_some(())
    });
}

/// The value after `prefix` on the first stderr line of `proc` that has it.
pub fn printed_after(master: &MasterProc, prefix: &str) -> String {
    let line = master.proc.wait_stderr_line(prefix, Duration::from_secs(5));
    line[line.find(prefix).unwrap() + prefix.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
