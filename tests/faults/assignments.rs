//! A worker does only what it was sent, even for a master that knows the token: an assignment
//! naming a file on the worker's disk is refused (an in-test master, since a real one sends
//! files resolved), and `--allow-target` refuses a real master's run on another target.

use std::time::Duration;

use stampede_protocol::handshake::{self, Token};
use stampede_protocol::{
    Assign, FromWorker, HelloReply, MAX_FRAME, PROTOCOL_VERSION, Share, ToWorker, read_frame,
    transport, unix_now_ns, write_frame,
};
use stampede_scenarios::{Overrides, ScenarioConfig};

use super::{TOKEN, Watched, runtime, token_file, worker_with_file};
use crate::util::{MasterProc, Scenario, Target, TestDir, wait_until};

/// An in-test master with the right token assigns an `llm` run whose prompts are a file on the
/// worker's machine (a real master would have read it and sent the lines): the worker says
/// `Rejected` naming the field and the file, and never connects to the target, even when told
/// to start.
#[test]
fn an_assignment_naming_a_local_prompt_file_is_refused() {
    let dir = TestDir::new();
    let secret = dir.write("secret.txt", "a line only this machine should ever see\n");
    let watched = Watched::start();
    let rt = runtime();
    let endpoint = {
        let _guard = rt.enter();
        let identity = transport::MasterIdentity::self_signed().unwrap();
        quinn::Endpoint::server(
            transport::server_config(identity).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap()
    };
    let addr = endpoint.local_addr().unwrap();
    let text = format!(
        "name = \"exfiltrate\"\nkind = \"llm\"\ntarget = \"http://{}\"\nduration = \"3s\"\n\
         [load]\nmodel = \"closed\"\nusers = 2\n[llm]\nmodel = \"m\"\n\
         prompts = {{ source = \"lines\", path = \"{}\" }}\n",
        watched.addr,
        secret.display()
    );
    // Parsed, not resolved: the assignment names the file and carries none of it.
    let scenario = ScenarioConfig::parse(&text, "evil.toml", &Overrides::default()).unwrap();
    let master = rt.spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        let token = Token::new(TOKEN).unwrap();
        let (mut send, mut recv, hello) = handshake::open(&conn, &token).await.unwrap();
        transport::authenticated(&conn, 1);
        let welcome = HelloReply::Welcome {
            worker_id: 1,
            version: PROTOCOL_VERSION,
        };
        write_frame(&mut send, &welcome).await.unwrap();
        let assign = ToWorker::Assign(Assign {
            run_id: 7,
            scenario: scenario.to_assignment(),
            share: Share::whole(),
            scale: 1.0,
            run_seed: 0,
        });
        write_frame(&mut send, &assign).await.unwrap();
        let reply = loop {
            match read_frame::<_, FromWorker>(&mut recv, MAX_FRAME)
                .await
                .unwrap()
            {
                r @ (FromWorker::Rejected { .. } | FromWorker::Ready { .. }) => break r,
                _ => continue,
            }
        };
        // Told to start anyway.
        let start = ToWorker::Start {
            run_id: 7,
            at_unix_ns: unix_now_ns(),
            elapsed_ms: 0,
        };
        write_frame(&mut send, &start).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        conn.close(0u32.into(), b"done");
        (hello.name, reply)
    });
    let file = token_file(&dir, TOKEN);
    let mut worker = worker_with_file(addr, &file, "careful", &[]);
    let (name, reply) = rt.block_on(master).unwrap();
    assert_eq!(name, "careful");
    let reason = match reply {
        FromWorker::Rejected { run_id: 7, reason } => reason,
        other => panic!("expected a rejection, got {other:?}"),
    };
    println!(
        "worker rejected the assignment: {reason}; the target saw {} connection(s)",
        watched.connections()
    );
    assert!(
        reason.contains(&format!(
            "llm.prompts.path names the file {}",
            secret.display()
        )) && reason.contains("never opens a local file named by an assignment"),
        "{reason}"
    );
    assert!(!reason.contains("only this machine"), "{reason}");
    assert_eq!(watched.connections(), 0);
    let done = worker.proc.wait_exit(Duration::from_secs(10));
    assert!(!done.stderr.contains("panicked"), "{}", done.show());
}

/// Two workers of one master: one may load only another address, and rejects the run naming
/// the target and the flag; the other, allowed this target, runs it all.
#[test]
fn allow_target_refuses_another_target() {
    let target = Target::start();
    let dir = TestDir::new();
    let file = token_file(&dir, TOKEN);
    let scenario = Scenario::closed(&target.url, 4)
        .duration("2s")
        .write_to(&dir);
    let out = dir.join("out");
    let mut master = MasterProc::start(&[
        "--headless",
        "--expect-workers",
        "2",
        "--token-file",
        file.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let port = target.addr.port();
    let elsewhere = format!("127.0.0.1:{},lab-target", port.checked_add(1).unwrap_or(1));
    let here = format!("127.0.0.1:{port}");
    let fenced = worker_with_file(
        master.quic,
        &file,
        "fenced",
        &["--allow-target", &elsewhere],
    );
    let _allowed = worker_with_file(master.quic, &file, "allowed", &["--allow-target", &here]);
    let done = master.proc.wait_exit(Duration::from_secs(30));
    let want = format!(
        "rejected the scenario: target `{}/` is not in this worker's --allow-target list ({elsewhere})",
        target.url
    );
    let line = done
        .stderr
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no line with {want:?}\n{}", done.show()));
    println!("master: {}", line.trim());
    fenced
        .proc
        .wait_stderr_line("assignment rejected: target", Duration::from_secs(5));
    let summary = dir.read_json("out/summary.json");
    let total = summary
        .pointer("/metrics/total_requests")
        .and_then(|v| v.as_u64())
        .unwrap();
    let served = wait_until(Duration::from_secs(5), "the target's count", || {
        Some(target.stats().requests)
    });
    println!("the allowed worker sent {total} requests; the target served {served}");
    assert!(total > 0);
    assert_eq!(served, total);
}
