//! `stampede target http --tls --cert-out FILE` as a real process: it prints an `https://` URL
//! and answers a TLS request from a client that trusts only FILE; `--h2c` with `--tls` is
//! refused on the command line.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::util::{Proc, STARTUP, TestDir, stampede, workspace_root};

#[test]
fn target_http_tls_answers_a_client_that_trusts_the_cert_out_file() {
    let dir = TestDir::new();
    let pem_file = dir.join("target.pem");
    let mut cmd = stampede();
    cmd.args([
        "target",
        "http",
        "--bind",
        "127.0.0.1:0",
        "--tls",
        "--cert-out",
    ])
    .arg(&pem_file);
    let proc = Proc::spawn("target", cmd);
    const PREFIX: &str = "stampede target http listening on https://";
    let line = proc.wait_stdout_line(PREFIX, STARTUP);
    let rest = &line[line.find(PREFIX).unwrap() + PREFIX.len()..];
    let addr: SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pem_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    for name in ["localhost", "127.0.0.1"] {
        let server = ServerName::try_from(name).unwrap().to_owned();
        let mut tls = rustls::ClientConnection::new(Arc::new(config.clone()), server).unwrap();
        let mut tcp = TcpStream::connect(addr).unwrap();
        let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
        stream
            .write_all(b"GET /__stampede/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        // The target closes after answering (`connection: close`); a missing close_notify is
        // not the point here.
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{name}: {answer:?}");
        assert!(
            answer.ends_with(r#"{"requests":0,"errors":0}"#),
            "{name}: {answer:?}"
        );
    }
}

#[test]
fn target_http_refuses_h2c_with_tls() {
    let finished = Proc::run(
        &["target", "http", "--tls", "--h2c"],
        workspace_root(),
        STARTUP,
    );
    finished.assert_code(2);
    assert!(
        finished.stderr.contains("cannot be used with")
            && finished.stderr.contains("--h2c")
            && finished.stderr.contains("--tls"),
        "{}",
        finished.show()
    );
}
