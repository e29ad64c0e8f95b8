//! `https://` targets against a real nginx on loopback (Debian's 1.22, `listen ... ssl http2`)
//! with certificates made here by rcgen: counts against nginx's access log, the TLS version it
//! logged, a CA that does not sign the server's certificate, SNI, mutual TLS, a plaintext
//! server behind an `https://` URL, bad certificate files, and downloads of a real file over
//! HTTP/2. Skips, saying why, without nginx.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Proc, TestDir, wait_until};

/// A short run's limit: its duration plus start-up, final reports and the results.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A CA, the certificates it signed, and their keys, as PEM files in a folder; also written
/// there, named by the scenarios: `other-ca.pem` (a second CA, which signed nothing the
/// servers present), `client.pem`/`client.key` (a client certificate signed by the CA) and
/// `stray.key` (a key of no certificate here).
pub(crate) struct Pki {
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// `localhost`, `127.0.0.1` and `api.test`: the default server's certificate and key.
    pub server: (PathBuf, PathBuf),
    /// `other.test`: the second virtual server's.
    pub other: (PathBuf, PathBuf),
    /// `localhost` and `127.0.0.1`, signed by the CA, valid only in 2020.
    pub expired: (PathBuf, PathBuf),
}

impl Pki {
    pub(crate) fn make(dir: &TestDir) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let ca_of = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca, ca_key) = ca_of("stampede test CA");
        let (other_ca, _) = ca_of("another CA");
        let leaf_in = |names: &[&str], client: bool, file: &str, expired: bool| {
            let key = KeyPair::generate().unwrap();
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            params.extended_key_usages = vec![if client {
                ExtendedKeyUsagePurpose::ClientAuth
            } else {
                ExtendedKeyUsagePurpose::ServerAuth
            }];
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (
                dir.write(&format!("{file}.pem"), &cert.pem()),
                dir.write(&format!("{file}.key"), &key.serialize_pem()),
            )
        };
        let leaf = |names: &[&str], client: bool, file: &str| leaf_in(names, client, file, false);
        dir.write("other-ca.pem", &other_ca.pem());
        leaf(&["client.test"], true, "client");
        dir.write("stray.key", &KeyPair::generate().unwrap().serialize_pem());
        Pki {
            ca: dir.write("ca.pem", &ca.pem()),
            server: leaf(&["localhost", "127.0.0.1", "api.test"], false, "server"),
            other: leaf(&["other.test"], false, "other"),
            expired: leaf_in(&["localhost", "127.0.0.1"], false, "expired", true),
        }
    }
}

/// A free port on 127.0.0.1 (bound and released: nginx takes it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx on loopback, in a folder of its own (whose `files/` it serves as `/files/` on `tls`
/// and `h2c`); stopped on drop.
pub(crate) struct Nginx {
    child: Child,
    log: PathBuf,
    /// `ssl http2`: `api.test` (default) and `other.test` by SNI.
    pub tls: u16,
    /// `ssl` with `ssl_verify_client on` (the CA's clients only).
    pub mtls: u16,
    /// Plaintext HTTP/1.1.
    pub plain: u16,
    /// Plaintext HTTP/2 (h2c, prior knowledge).
    pub h2c: u16,
    /// `ssl` without `http2`: an HTTP/1.1-only TLS server.
    pub h1_only: u16,
}

impl Nginx {
    /// Start nginx with the certificates of `pki`, or `None` (printing why) without nginx.
    pub(crate) fn start(dir: &TestDir, pki: &Pki) -> Option<Nginx> {
        let Some(bin) = nginx_binary() else {
            eprintln!("skipping: nginx is not installed (apt-get install nginx-light)");
            return None;
        };
        let (tls, mtls, plain, h2c) = (free_port(), free_port(), free_port(), free_port());
        let h1_only = free_port();
        let root = dir.path().display().to_string();
        let p = |f: &Path| f.display().to_string();
        let (cert, key) = (p(&pki.server.0), p(&pki.server.1));
        let (ocert, okey) = (p(&pki.other.0), p(&pki.other.1));
        let ca = p(&pki.ca);
        let conf = format!(
            r#"worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format t '$ssl_server_name $server_protocol $ssl_protocol $status $request_uri';
    keepalive_requests 1000000;
    access_log {root}/access.log t;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen 127.0.0.1:{tls} ssl http2 default_server;
        server_name api.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "api\n"; }}
        location /files/ {{ root {root}; }}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl http2;
        server_name other.test;
        ssl_certificate {ocert};
        ssl_certificate_key {okey};
        location / {{ return 200 "other\n"; }}
    }}
    server {{
        listen 127.0.0.1:{mtls} ssl;
        server_name mtls.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location / {{ return 200 "mtls\n"; }}
    }}
    server {{
        listen 127.0.0.1:{plain};
        server_name plain.test;
        location / {{ return 200 "plain\n"; }}
    }}
    server {{
        listen 127.0.0.1:{h1_only} ssl;
        server_name h1.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "h1\n"; }}
    }}
    server {{
        listen 127.0.0.1:{h2c} http2;
        server_name h2c.test;
        location / {{ return 200 "h2c\n"; }}
        location /files/ {{ root {root}; }}
    }}
}}
"#
        );
        let conf_path = dir.write("nginx.conf", &conf);
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx {
            child,
            log: dir.join("access.log"),
            tls,
            mtls,
            plain,
            h2c,
            h1_only,
        };
        wait_until(Duration::from_secs(10), "nginx listening", || {
            [tls, mtls, plain, h2c, h1_only]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
                .then_some(())
        });
        Some(nginx)
    }

    /// The access log's lines so far (`sni_name protocol tls_protocol status uri`; `-` for no
    /// SNI name).
    pub(crate) fn log(&self) -> Vec<String> {
        // nginx writes each line as the request ends; a run's last answers are logged by the
        // time its results are written.
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Forget the log so far (the file is truncated; nginx appends).
    pub(crate) fn clear_log(&self) {
        std::fs::write(&self.log, "").unwrap();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (killed outright, it would leave them running
        // and listening).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A scenario of `users` users for `duration` against `target`, with `extra` TOML after it.
fn scenario(dir: &TestDir, target: &str, duration: &str, extra: &str) -> PathBuf {
    dir.write(
        "s.toml",
        &format!(
            r#"name = "tls"
target = "{target}"
duration = "{duration}"

[load]
model = "closed"
users = 4
spawn_rate = 100

[http]
timeout = "2s"
version = "1.1"

[[requests]]
name = "index"
path = "/"

{extra}"#
        ),
    )
}

/// `stampede run` with two workers and `--out`; the finished process and summary.json.
fn run(dir: &TestDir, scenario: &Path, flags: &[&str]) -> (crate::util::Finished, Value) {
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let mut args = vec![
        "run",
        scenario.to_str().unwrap(),
        "--workers",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    let done = Proc::run(&args, dir.path(), RUN_LIMIT);
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map(|t| serde_json::from_str(&t).expect("summary.json is JSON"))
        .unwrap_or(Value::Null);
    (done, summary)
}

fn total(summary: &Value, field: &str) -> u64 {
    summary["total"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("total.{field} in {summary:#}"))
}

/// The failure kinds of a run, with their counts.
fn failure_kinds(summary: &Value) -> Vec<(String, u64)> {
    summary["failures"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| {
                    (
                        f["error"].as_str().unwrap_or_default().to_string(),
                        f["occurrences"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn https_counts_equal_nginx_access_log() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let Some(nginx) = Nginx::start(&dir, &pki) else {
        return;
    };
    let target = format!("https://localhost:{}", nginx.tls);
    let s = scenario(&dir, &target, "2s", "[tls]\nca = \"ca.pem\"\n");
    let (done, summary) = run(&dir, &s, &[]);
    done.assert_code(0);
    crate::run::validate_summary(&summary);
    let requests = total(&summary, "requests");
    assert!(requests > 100, "only {requests} requests\n{}", done.show());
    assert_eq!(total(&summary, "failures"), 0, "{}", done.show());
    let log = nginx.log();
    assert_eq!(
        log.len() as u64,
        requests,
        "nginx logged {} lines",
        log.len()
    );
    assert!(
        log.iter().all(|l| l == "localhost HTTP/1.1 TLSv1.3 200 /"),
        "not all TLSv1.3 HTTP/1.1 200s: {:?}",
        log.iter()
            .find(|l| *l != "localhost HTTP/1.1 TLSv1.3 200 /")
    );
    // Keep-alive: each user opens one connection and reuses it.
    let metrics = &summary["requests"][0]["metrics"];
    let handshakes = metrics["tls_handshake"]["count"].as_u64().unwrap_or(0);
    let connects = metrics["connect"]["count"].as_u64().unwrap_or(0);
    assert!(
        (1..=8).contains(&handshakes),
        "{handshakes} handshakes for 4 users"
    );
    assert_eq!(connects, handshakes, "a TLS handshake per connect");
    let counters = &summary["requests"][0]["counters"];
    let (new, reused) = (
        counters["connections_new"].as_u64().unwrap_or(0),
        counters["connections_reused"].as_u64().unwrap_or(0),
    );
    assert_eq!(new, handshakes);
    assert_eq!(new + reused, requests, "{counters:#}");
}

#[test]
fn an_untrusted_certificate_is_a_tls_failure_not_a_hang() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let Some(nginx) = Nginx::start(&dir, &pki) else {
        return;
    };
    let target = format!("https://localhost:{}", nginx.tls);
    // The other CA signed nothing nginx presents.
    let s = scenario(&dir, &target, "1s", "[tls]\nca = \"other-ca.pem\"\n");
    let started = std::time::Instant::now();
    let (done, summary) = run(&dir, &s, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let requests = total(&summary, "requests");
    assert!(requests > 0, "{}", done.show());
    assert_eq!(total(&summary, "failures"), requests, "{}", done.show());
    assert_eq!(
        failure_kinds(&summary),
        vec![(
            "tls: invalid peer certificate: UnknownIssuer".to_string(),
            requests
        )],
        "{}",
        done.show()
    );
    assert!(nginx.log().is_empty(), "no request reached nginx");
    assert!(
        done.stderr.contains("--ca") && done.stderr.contains("--insecure"),
        "no hint naming --ca and --insecure:\n{}",
        done.show()
    );

    // --insecure: the same server is accepted, and the run says so.
    let (done, summary) = run(&dir, &s, &["--insecure"]);
    done.assert_code(0);
    assert_eq!(total(&summary, "failures"), 0, "{}", done.show());
    assert!(
        done.stderr.contains("verification is OFF"),
        "{}",
        done.show()
    );
    assert_eq!(summary["tls"]["insecure"], true, "{summary:#}");
}

#[test]
fn sni_reaches_the_server() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let Some(nginx) = Nginx::start(&dir, &pki) else {
        return;
    };
    // By IP address: no SNI name (rustls sends none for an IP), so nginx's default server
    // answers with its certificate, valid for 127.0.0.1.
    let target = format!("https://127.0.0.1:{}", nginx.tls);
    let s = scenario(&dir, &target, "1s", "[tls]\nca = \"ca.pem\"\n");
    let (done, summary) = run(&dir, &s, &[]);
    done.assert_code(0);
    assert_eq!(total(&summary, "failures"), 0, "{}", done.show());
    assert!(
        nginx.log().iter().all(|l| l.starts_with("- ")),
        "{:?}",
        nginx.log().first()
    );
    // --server-name other.test: SNI picks the second server, whose certificate names it.
    nginx.clear_log();
    let (done, summary) = run(&dir, &s, &["--server-name", "other.test"]);
    done.assert_code(0);
    assert_eq!(total(&summary, "failures"), 0, "{}", done.show());
    let log = nginx.log();
    assert_eq!(log.len() as u64, total(&summary, "requests"));
    assert!(
        log.iter().all(|l| l.starts_with("other.test ")),
        "{:?}",
        log.first()
    );
    // A name the certificate does not hold is refused.
    let (_, summary) = run(&dir, &s, &["--server-name", "nobody.test"]);
    let kinds = failure_kinds(&summary);
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert_eq!(kinds[0].0, "tls: invalid peer certificate: NotValidForName");
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let Some(nginx) = Nginx::start(&dir, &pki) else {
        return;
    };
    let target = format!("https://localhost:{}", nginx.mtls);
    let with_cert =
        "[tls]\nca = \"ca.pem\"\nclient_cert = \"client.pem\"\nclient_key = \"client.key\"\n";
    let s = scenario(&dir, &target, "1s", with_cert);
    let (done, summary) = run(&dir, &s, &[]);
    done.assert_code(0);
    let requests = total(&summary, "requests");
    assert!(requests > 0);
    assert_eq!(total(&summary, "failures"), 0, "{}", done.show());
    let log = nginx.log();
    assert_eq!(log.len() as u64, requests);
    assert!(
        log.iter().all(|l| l == "localhost HTTP/1.1 TLSv1.3 200 /"),
        "{:?}",
        log[0]
    );
    // Without the certificate nginx answers 400 (no required SSL certificate was sent).
    let s = scenario(&dir, &target, "1s", "[tls]\nca = \"ca.pem\"\n");
    let (_, summary) = run(&dir, &s, &[]);
    assert_eq!(total(&summary, "failures"), total(&summary, "requests"));
    assert_eq!(failure_kinds(&summary)[0].0, "HTTP 400");
}

#[test]
fn a_plaintext_server_behind_https_is_a_named_failure() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let Some(nginx) = Nginx::start(&dir, &pki) else {
        return;
    };
    let target = format!("https://127.0.0.1:{}", nginx.plain);
    let s = scenario(&dir, &target, "1s", "");
    let (done, summary) = run(&dir, &s, &[]);
    let requests = total(&summary, "requests");
    assert!(requests > 0, "{}", done.show());
    assert_eq!(
        failure_kinds(&summary),
        vec![(
            "protocol: plaintext answer on a TLS connection".to_string(),
            requests
        )]
    );
}

#[test]
fn bad_certificate_files_are_errors_before_the_run() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    dir.write("notpem.txt", "not a certificate\n");
    let cases: [(&str, &str); 4] = [
        ("ca = \"notpem.txt\"", "tls.ca: "),
        ("ca = \"missing.pem\"", "missing.pem"),
        (
            "client_cert = \"client.pem\"\nclient_key = \"stray.key\"",
            "stray.key is not the key of",
        ),
        (
            "client_cert = \"client.pem\"",
            "both client_cert and client_key",
        ),
    ];
    let _ = &pki;
    for (tls, want) in cases {
        let s = scenario(
            &dir,
            "https://127.0.0.1:1",
            "1s",
            &format!("[tls]\n{tls}\n"),
        );
        for verb in ["check", "run"] {
            let done = Proc::run(&[verb, s.to_str().unwrap()], dir.path(), RUN_LIMIT);
            assert_eq!(done.code(), 1, "{verb} with {tls}\n{}", done.show());
            let line = done
                .stderr
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or_else(|| panic!("no error line\n{}", done.show()));
            assert!(line.contains(want), "{verb} {tls}: {line}");
            assert!(line.contains("s.toml"), "names the scenario: {line}");
        }
    }
}

#[test]
fn https_example_runs_as_it_ships() {
    let dir = TestDir::new();
    let out = dir.join("out");
    let done = Proc::run(
        &[
            "run",
            "scenarios/examples/https.toml",
            "--duration",
            "2s",
            "--out",
            out.to_str().unwrap(),
        ],
        crate::util::workspace_root(),
        RUN_LIMIT,
    );
    done.assert_code(0);
    assert!(
        done.stderr.contains("listening on https://")
            || done.stdout.contains("listening on https://"),
        "the built-in target serves TLS\n{}",
        done.show()
    );
    let summary = dir.read_json("out/summary.json");
    crate::run::validate_summary(&summary);
    assert!(summary["target"].as_str().unwrap().starts_with("https://"));
    assert_eq!(total(&summary, "failures"), 0, "{}", done.show());
    for r in summary["requests"].as_array().unwrap() {
        let requests = r["requests"].as_u64().unwrap();
        let c = &r["counters"];
        let new = c["connections_new"].as_u64().unwrap_or(0);
        let reused = c["connections_reused"].as_u64().unwrap_or(0);
        assert_eq!(new + reused, requests, "{r:#}");
    }
    let handshakes: u64 = summary["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metrics"]["tls_handshake"]["count"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        (1..=100).contains(&handshakes),
        "{handshakes} TLS handshakes for 50 users"
    );
}

#[test]
fn an_expired_certificate_is_a_named_failure() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let target = crate::util::Target::start_with(&[
        "--cert",
        pki.expired.0.to_str().unwrap(),
        "--key",
        pki.expired.1.to_str().unwrap(),
    ]);
    assert!(target.url.starts_with("https://"), "{}", target.url);
    let s = scenario(&dir, &target.url, "1s", "[tls]\nca = \"ca.pem\"\n");
    let (done, summary) = run(&dir, &s, &[]);
    let requests = total(&summary, "requests");
    assert!(requests > 0, "{}", done.show());
    assert_eq!(
        failure_kinds(&summary),
        vec![(
            "tls: invalid peer certificate: Expired".to_string(),
            requests
        )],
        "{}",
        done.show()
    );
}

#[test]
fn http2_counts_equal_nginx_access_log_over_tls_and_h2c() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let Some(nginx) = Nginx::start(&dir, &pki) else {
        return;
    };
    // Over TLS, by ALPN: `auto` picks h2 where nginx offers it, as `2` does.
    for version in ["auto", "2"] {
        nginx.clear_log();
        let target = format!("https://localhost:{}", nginx.tls);
        let s = scenario(&dir, &target, "2s", "[tls]\nca = \"ca.pem\"\n");
        let (done, summary) = run(&dir, &s, &["--http-version", version]);
        done.assert_code(0);
        let requests = total(&summary, "requests");
        assert!(
            requests > 100,
            "{version}: {requests} requests\n{}",
            done.show()
        );
        assert_eq!(total(&summary, "failures"), 0, "{version}: {}", done.show());
        let log = nginx.log();
        assert_eq!(
            log.len() as u64,
            requests,
            "{version}: nginx logged {}",
            log.len()
        );
        assert!(
            log.iter().all(|l| l == "localhost HTTP/2.0 TLSv1.3 200 /"),
            "{version}: {:?}",
            log.iter()
                .find(|l| *l != "localhost HTTP/2.0 TLSv1.3 200 /")
        );
        // 4 users on 2 workers share one connection per worker.
        let new = summary["requests"][0]["counters"]["connections_new"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            (1..=4).contains(&new),
            "{version}: {new} connections for 2 workers"
        );
    }
    // h2c: HTTP/2 with prior knowledge on nginx's plaintext HTTP/2 listener.
    nginx.clear_log();
    let s = scenario(&dir, &format!("http://127.0.0.1:{}", nginx.h2c), "2s", "");
    let (done, summary) = run(&dir, &s, &["--http-version", "2"]);
    done.assert_code(0);
    let requests = total(&summary, "requests");
    assert!(requests > 100, "h2c: {requests}\n{}", done.show());
    assert_eq!(total(&summary, "failures"), 0, "h2c: {}", done.show());
    let log = nginx.log();
    assert_eq!(log.len() as u64, requests);
    assert!(
        log.iter().all(|l| l == "- HTTP/2.0 - 200 /"),
        "{:?}",
        log.first()
    );
}

#[test]
fn http2_against_an_http1_only_server_is_a_named_failure() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let Some(nginx) = Nginx::start(&dir, &pki) else {
        return;
    };
    let target = format!("https://localhost:{}", nginx.h1_only);
    let s = scenario(&dir, &target, "1s", "[tls]\nca = \"ca.pem\"\n");
    let started = std::time::Instant::now();
    let (done, summary) = run(&dir, &s, &["--http-version", "2"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let requests = total(&summary, "requests");
    assert!(requests > 0, "{}", done.show());
    let kinds = failure_kinds(&summary);
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert!(kinds[0].0.starts_with("http2: "), "{kinds:?}");
    assert_eq!(kinds[0].1, requests);
    // `auto` falls back to HTTP/1.1 there.
    nginx.clear_log();
    let (done, summary) = run(&dir, &s, &["--http-version", "auto"]);
    done.assert_code(0);
    assert_eq!(total(&summary, "failures"), 0, "{}", done.show());
    assert!(
        nginx
            .log()
            .iter()
            .all(|l| l == "localhost HTTP/1.1 TLSv1.3 200 /")
    );
}

/// A file of `len` bytes (the registry's pattern) in `dir/files/`, and its SHA-256 in hex.
fn served_file(dir: &TestDir, name: &str, len: usize) -> String {
    let mut bytes = vec![0u8; len];
    stampede_targets::registry::fill(0, &mut bytes);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let path = dir.join("files").join(name);
    std::fs::write(&path, &bytes).unwrap();
    let out = Command::new("sha256sum").arg(&path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A download scenario of 4 users fetching `path` from `target` for 2 s, with `extra` TOML.
fn download_scenario(dir: &TestDir, target: &str, download: &str, extra: &str) -> PathBuf {
    dir.write(
        "d.toml",
        &format!(
            r#"name = "dl"
target = "{target}"
kind = "download"
duration = "2s"

[load]
model = "closed"
users = 4
spawn_rate = 100

[download]
timeout = "5s"
{download}

{extra}"#
        ),
    )
}

/// `kind = "download"` over HTTP/2 against nginx serving a real file: over TLS by ALPN
/// (`auto` and `2`) and as h2c (`2` on `http://`), every download's bytes and digest checked,
/// and as many downloads as nginx logged, all `HTTP/2.0`; a `Range` header gets its 206 with
/// exactly the bytes asked for.
#[test]
fn downloads_over_http2_equal_nginx_access_log() {
    let dir = TestDir::new();
    let pki = Pki::make(&dir);
    let Some(nginx) = Nginx::start(&dir, &pki) else {
        return;
    };
    let len = 2_000_003;
    let sha = served_file(&dir, "model.bin", len);
    let whole = format!(
        "path = \"/files/model.bin\"\nsha256 = \"{sha}\"\nexpected_bytes = {len}\nname = \"model\""
    );
    let tls_target = format!("https://localhost:{}", nginx.tls);
    let h2c_target = format!("http://127.0.0.1:{}", nginx.h2c);
    let cases = [
        (
            &tls_target,
            "auto",
            "localhost HTTP/2.0 TLSv1.3 200 /files/model.bin",
        ),
        (
            &tls_target,
            "2",
            "localhost HTTP/2.0 TLSv1.3 200 /files/model.bin",
        ),
        (&h2c_target, "2", "- HTTP/2.0 - 200 /files/model.bin"),
    ];
    for (target, version, line) in cases {
        nginx.clear_log();
        let tls = if target.starts_with("https:") {
            "[tls]\nca = \"ca.pem\"\n"
        } else {
            ""
        };
        let s = download_scenario(&dir, target, &whole, tls);
        let (done, summary) = run(&dir, &s, &["--http-version", version]);
        done.assert_code(0);
        crate::run::validate_summary(&summary);
        let requests = total(&summary, "requests");
        assert!(
            requests >= 4,
            "{target} {version}: {requests}\n{}",
            done.show()
        );
        assert_eq!(total(&summary, "failures"), 0, "{version}: {}", done.show());
        assert_eq!(summary["metrics"]["total_bytes"], requests * len as u64);
        assert_eq!(summary["metrics"]["ttfb_ms"]["count"], requests);
        assert_eq!(
            summary["metrics"]["per_client_throughput"]["count"],
            requests
        );
        let log = nginx.log();
        assert_eq!(log.len() as u64, requests, "{target} {version}: {log:?}");
        assert!(
            log.iter().all(|l| l == line),
            "{target} {version}: {:?}",
            log.iter().find(|l| *l != line)
        );
        // 4 users on 2 workers: one shared connection per worker.
        let c = &summary["requests"][0]["counters"];
        let new = c["connections_new"].as_u64().unwrap_or(0);
        assert!(
            (1..=4).contains(&new),
            "{version}: {new} connections\n{c:#}"
        );
        assert_eq!(
            new + c["connections_reused"].as_u64().unwrap_or(0),
            requests
        );
    }

    // A byte range over h2: 206 and exactly its bytes.
    nginx.clear_log();
    let range = "path = \"/files/model.bin\"\nexpected_bytes = 1000\n\
                 headers = { range = \"bytes=1000-1999\" }";
    let s = download_scenario(&dir, &tls_target, range, "[tls]\nca = \"ca.pem\"\n");
    let (done, summary) = run(&dir, &s, &["--http-version", "2"]);
    done.assert_code(0);
    let requests = total(&summary, "requests");
    assert_eq!(total(&summary, "failures"), 0, "{}", done.show());
    assert_eq!(summary["metrics"]["total_bytes"], requests * 1000);
    let log = nginx.log();
    assert_eq!(log.len() as u64, requests);
    assert!(
        log.iter()
            .all(|l| l == "localhost HTTP/2.0 TLSv1.3 206 /files/model.bin"),
        "{:?}",
        log.first()
    );
}
