//! Who a worker trusts, against real `stampede worker` and `stampede master` processes: a
//! rogue master with its own certificate and no token, a relay that forwards a real master's
//! proof, masters with another token, short and generated tokens, and pinned certificates.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stampede_protocol::handshake::CLOSE_MASTER_UNPROVEN;
use stampede_protocol::{
    Assign, MasterProof, PRE_AUTH_FRAME, Share, ToWorker, read_frame, transport, unix_now_ns,
    write_frame,
};
use stampede_scenarios::{Overrides, ScenarioConfig};

use super::{
    TOKEN, Watched, printed_after, quic_client, quic_server, runtime, token_file, wait_joined,
    worker_with_file,
};
use crate::util::{MasterProc, Proc, TestDir, WorkerProc, stampede, wait_until};

/// What a rogue master saw of the workers that connected to it.
#[derive(Debug, Default)]
struct Observed {
    /// Connections made to it.
    connections: usize,
    /// Every byte a worker sent on any stream.
    bytes: Vec<u8>,
    /// The application code a worker closed its connection with.
    close_code: Option<u64>,
}

/// Serve one worker connection as a master that does not know the token: open the control
/// stream, send `proof` (made up, or another connection's), and with `orders` an assignment
/// and a start for load on that address anyway. Keeps every byte the worker sends on any
/// stream, and the code it closes with.
async fn serve_rogue(
    conn: quinn::Connection,
    proof: [u8; 32],
    orders: Option<SocketAddr>,
    seen: Arc<Mutex<Observed>>,
) {
    seen.lock().unwrap().connections += 1;
    let Ok((mut send, recv)) = conn.open_bi().await else {
        return;
    };
    tokio::spawn(keep_bytes(recv, seen.clone()));
    let _ = write_frame(&mut send, &MasterProof { proof }).await;
    if let Some(target) = orders {
        let text = format!(
            "name = \"stolen\"\ntarget = \"http://{target}\"\nduration = \"5s\"\n\
             [load]\nmodel = \"closed\"\nusers = 4\n[[requests]]\npath = \"/\"\n"
        );
        let scenario = ScenarioConfig::parse(&text, "rogue.toml", &Overrides::default()).unwrap();
        let assign = ToWorker::Assign(Assign {
            run_id: 1,
            scenario: scenario.to_assignment(),
            share: Share::whole(),
            scale: 1.0,
            run_seed: 0,
        });
        let start = ToWorker::Start {
            run_id: 1,
            at_unix_ns: unix_now_ns(),
            elapsed_ms: 0,
        };
        let _ = write_frame(&mut send, &assign).await;
        let _ = write_frame(&mut send, &start).await;
    }
    let streams = {
        let (conn, seen) = (conn.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Ok(r) = conn.accept_uni() => { tokio::spawn(keep_bytes(r, seen.clone())); }
                    Ok((_, r)) = conn.accept_bi() => { tokio::spawn(keep_bytes(r, seen.clone())); }
                    else => break,
                }
            }
        })
    };
    if let quinn::ConnectionError::ApplicationClosed(c) = conn.closed().await {
        seen.lock().unwrap().close_code = Some(c.error_code.into_inner());
    }
    streams.abort();
}

async fn keep_bytes(mut recv: quinn::RecvStream, seen: Arc<Mutex<Observed>>) {
    let mut buf = [0u8; 4096];
    while let Ok(Some(n)) = recv.read(&mut buf).await {
        seen.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
    }
}

/// A worker pointed at a master that does not know its token (a typo, DNS, a man in the
/// middle) leaves before saying anything: the rogue master gets no byte, so nothing to reuse
/// or to guess the token from offline, and the load it orders is never sent.
#[test]
fn rogue_master_learns_nothing_and_sends_no_load() {
    let dir = TestDir::new();
    let watched = Watched::start();
    let rt = runtime();
    let server = quic_server(&rt);
    let addr = server.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Observed::default()));
    let target = watched.addr;
    rt.spawn({
        let seen = seen.clone();
        async move {
            while let Some(incoming) = server.accept().await {
                if let Ok(conn) = incoming.await {
                    tokio::spawn(serve_rogue(conn, [0x5a; 32], Some(target), seen.clone()));
                }
            }
        }
    });
    let file = token_file(&dir, TOKEN);
    let started = Instant::now();
    let mut worker = worker_with_file(addr, &file, "victim", &[]);
    let done = worker.proc.wait_exit(Duration::from_secs(15));
    let took = started.elapsed();
    assert_ne!(done.code(), 0, "{}", done.show());
    assert!(
        done.stderr
            .contains("did not prove it knows this worker's token")
            && done.stderr.contains("nothing was sent to it"),
        "{}",
        done.show()
    );
    wait_until(Duration::from_secs(5), "the worker's close", || {
        seen.lock().unwrap().close_code.map(|_| ())
    });
    // Time for load the worker might (wrongly) have started.
    std::thread::sleep(Duration::from_secs(1));
    let seen = seen.lock().unwrap();
    println!(
        "rogue master: {} connection(s); {} bytes received from the worker; the worker closed with code {:?} and exited after {took:?}; the target it ordered load on saw {} connection(s)",
        seen.connections,
        seen.bytes.len(),
        seen.close_code,
        watched.connections()
    );
    assert_eq!(seen.connections, 1);
    assert!(seen.bytes.is_empty(), "the worker sent {:?}", seen.bytes);
    assert_eq!(seen.close_code, Some(CLOSE_MASTER_UNPROVEN.into()));
    assert_eq!(watched.connections(), 0, "load reached the rogue's target");
}

/// A relay between a worker and the real master forwards the real master's proof: it was made
/// for the relay's own connection to the master, so the worker refuses it and sends nothing;
/// the relay has nothing to complete auth with on either side. The same worker then joins the
/// real master directly.
#[test]
fn relayed_master_proof_is_refused_and_the_worker_says_nothing() {
    let dir = TestDir::new();
    let file = token_file(&dir, TOKEN);
    let master = MasterProc::start(&[
        "--api",
        "127.0.0.1:0",
        "--token-file",
        file.to_str().unwrap(),
    ]);
    let rt = runtime();
    let relay = quic_server(&rt);
    let relay_addr = relay.local_addr().unwrap();
    let upstream = quic_client(&rt, [127, 0, 0, 1]);
    let seen = Arc::new(Mutex::new(Observed::default()));
    let relayed = Arc::new(Mutex::new(Vec::<[u8; 32]>::new()));
    let real = master.quic;
    rt.spawn({
        let (seen, relayed) = (seen.clone(), relayed.clone());
        async move {
            while let Some(incoming) = relay.accept().await {
                let Ok(conn) = incoming.await else { continue };
                // The relay's own connection to the real master, and the proof it gets there.
                let up = upstream
                    .connect(real, transport::SERVER_NAME)
                    .unwrap()
                    .await
                    .unwrap();
                let (_up_send, mut up_recv) = up.accept_bi().await.unwrap();
                let proof: MasterProof = read_frame(&mut up_recv, PRE_AUTH_FRAME).await.unwrap();
                relayed.lock().unwrap().push(proof.proof);
                serve_rogue(conn, proof.proof, None, seen.clone()).await;
                drop(up);
            }
        }
    });
    let mut worker = worker_with_file(relay_addr, &file, "relayed", &[]);
    let done = worker.proc.wait_exit(Duration::from_secs(15));
    assert_ne!(done.code(), 0, "{}", done.show());
    assert!(
        done.stderr
            .contains("did not prove it knows this worker's token"),
        "{}",
        done.show()
    );
    wait_until(Duration::from_secs(5), "the worker's close", || {
        seen.lock().unwrap().close_code.map(|_| ())
    });
    let logged = master
        .proc
        .wait_stderr_line("failed to authenticate", Duration::from_secs(10));
    {
        let seen = seen.lock().unwrap();
        println!(
            "relay: forwarded {} proof(s) of the real master; the worker closed with code {:?} after sending {} bytes; the master logged: {}",
            relayed.lock().unwrap().len(),
            seen.close_code,
            seen.bytes.len(),
            logged.trim()
        );
        assert_eq!(relayed.lock().unwrap().len(), 1);
        assert!(seen.bytes.is_empty(), "the worker sent {:?}", seen.bytes);
        assert_eq!(seen.close_code, Some(CLOSE_MASTER_UNPROVEN.into()));
    }
    assert!(master.workers().is_empty());
    let started = Instant::now();
    let _direct = worker_with_file(master.quic, &file, "direct", &[]);
    wait_joined(&master, "direct");
    println!(
        "the same worker, pointed at the real master, joined in {:?}",
        started.elapsed()
    );
}

/// A worker refuses a master with another token, which learns why from the close code only,
/// and joins the master that has its token.
#[test]
fn a_master_with_another_token_is_refused_and_its_own_admits() {
    let dir = TestDir::new();
    let file = token_file(&dir, TOKEN);
    let other = MasterProc::start(&["--token", "not the suite's token, 16+ bytes"]);
    let own = MasterProc::start(&[
        "--api",
        "127.0.0.1:0",
        "--token-file",
        file.to_str().unwrap(),
    ]);
    let mut refused = worker_with_file(other.quic, &file, "w", &[]);
    let done = refused.proc.wait_exit(Duration::from_secs(15));
    assert_ne!(done.code(), 0, "{}", done.show());
    assert!(
        done.stderr
            .contains("did not prove it knows this worker's token"),
        "{}",
        done.show()
    );
    let line = other
        .proc
        .wait_stderr_line("refused this master's token proof", Duration::from_secs(5));
    println!("the master with another token logged: {}", line.trim());
    let _admitted = worker_with_file(own.quic, &file, "w", &[]);
    wait_joined(&own, "w");
}

/// Tokens shorter than 16 bytes are refused wherever they come from, with the reason.
#[test]
fn short_tokens_are_refused() {
    let dir = TestDir::new();
    let short = dir.write("short.txt", "short\n");
    let cases: [(&str, Vec<&str>, Option<&str>); 4] = [
        ("master --token", vec!["master", "--token", "short"], None),
        ("master STAMPEDE_TOKEN", vec!["master"], Some("short")),
        (
            "worker --token-file",
            vec![
                "worker",
                "--master",
                "127.0.0.1:9",
                "--token-file",
                short.to_str().unwrap(),
            ],
            None,
        ),
        (
            "worker --token",
            vec![
                "worker",
                "--master",
                "127.0.0.1:9",
                "--token",
                "0123456789abcde",
            ],
            None,
        ),
    ];
    for (what, args, env) in cases {
        let mut cmd = stampede();
        cmd.args(["--log", "off"]).args(&args);
        if let Some(t) = env {
            cmd.env("STAMPEDE_TOKEN", t);
        }
        let mut proc = Proc::spawn(what, cmd);
        let done = proc.wait_exit(Duration::from_secs(10));
        assert_eq!(done.code(), 1, "{what}: {}", done.show());
        let last = done.stderr.lines().last().unwrap_or("");
        assert!(
            last.starts_with("error: ") && last.contains("bytes long; at least 16 are needed"),
            "{what}: {}",
            done.show()
        );
        println!("{what}: {last}");
    }
}

/// A master given no token makes one, prints it once with how a worker passes it, and that
/// token works from the environment, a file, and the command line (which warns).
#[test]
fn a_generated_token_is_printed_once_and_works_from_env_file_and_flag() {
    let dir = TestDir::new();
    let master = MasterProc::start(&["--api", "127.0.0.1:0"]);
    let token = printed_after(&master, "no token given: generated one, shown only now: ");
    assert_eq!(token.len(), 32, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let stderr = master.proc.stderr();
    assert_eq!(stderr.matches("shown only now").count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "STAMPEDE_TOKEN={token} stampede worker --master HOST:"
        )),
        "{stderr}"
    );

    let mut from_env = WorkerProc::command(master.quic);
    from_env
        .env("STAMPEDE_TOKEN", &token)
        .args(["--name", "from-env"]);
    let from_env = WorkerProc::spawn("from-env", from_env);
    wait_joined(&master, "from-env");
    let file = token_file(&dir, &token);
    let from_file = worker_with_file(master.quic, &file, "from-file", &[]);
    wait_joined(&master, "from-file");
    let from_flag = WorkerProc::start(master.quic, &token, "from-flag");
    wait_joined(&master, "from-flag");
    const WARNING: &str = "--token is visible to every user of this machine in the process list";
    from_flag
        .proc
        .wait_stderr_line(WARNING, Duration::from_secs(5));
    assert!(!from_env.proc.stderr().contains(WARNING));
    assert!(!from_file.proc.stderr().contains(WARNING));
    println!(
        "generated token of {} hex digits; joined with it from STAMPEDE_TOKEN, --token-file and --token (warned)",
        token.len()
    );
}

/// `--master-fingerprint` and `--master-ca` pin the master's certificate: the wrong one is
/// refused at the TLS handshake, at once and with the reason; the right one joins.
#[test]
fn pinned_master_certificates() {
    let dir = TestDir::new();
    let file = token_file(&dir, TOKEN);
    let token_arg = [
        "--api",
        "127.0.0.1:0",
        "--token-file",
        file.to_str().unwrap(),
    ];
    let master = MasterProc::start(&token_arg);
    let fingerprint = printed_after(&master, "master certificate SHA-256 fingerprint: ");
    assert_eq!(fingerprint.len(), 64, "{fingerprint}");
    let wrong = "00".repeat(32);
    let started = Instant::now();
    let mut refused = worker_with_file(
        master.quic,
        &file,
        "wrong-pin",
        &["--master-fingerprint", &wrong],
    );
    let done = refused.proc.wait_exit(Duration::from_secs(15));
    assert_ne!(done.code(), 0, "{}", done.show());
    assert!(
        done.stderr
            .contains("does not match --master-fingerprint or --master-ca"),
        "{}",
        done.show()
    );
    println!("wrong fingerprint refused after {:?}", started.elapsed());
    let _pinned = worker_with_file(
        master.quic,
        &file,
        "pinned",
        &["--master-fingerprint", &fingerprint],
    );
    wait_joined(&master, "pinned");
    let names: Vec<_> = master.workers().iter().map(|w| w["name"].clone()).collect();
    assert_eq!(names, ["pinned"]);

    // A master with a certificate from a CA, for 127.0.0.1.
    let pki = crate::tls::Pki::make(&dir);
    let (cert, key) = &pki.server;
    let mut args = token_arg.to_vec();
    args.extend([
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let with_ca = MasterProc::start(&args);
    let mut other_ca = worker_with_file(
        with_ca.quic,
        &file,
        "other-ca",
        &["--master-ca", dir.join("other-ca.pem").to_str().unwrap()],
    );
    let done = other_ca.proc.wait_exit(Duration::from_secs(15));
    assert_ne!(done.code(), 0, "{}", done.show());
    assert!(done.stderr.contains("does not match"), "{}", done.show());
    let _ca = worker_with_file(
        with_ca.quic,
        &file,
        "ca",
        &["--master-ca", pki.ca.to_str().unwrap()],
    );
    wait_joined(&with_ca, "ca");
    println!("--master-ca: another CA refused, the master's CA joined");
}
