//! Helpers that build what the end-to-end tests need: a scratch directory with scenario files
//! ([`TestDir`], [`Scenario`]), the `stampede` binary as child processes that are killed on
//! drop ([`Proc`], [`Target`], [`MasterProc`], [`WorkerProc`]), a tiny HTTP/1.1 client
//! ([`http`]), and bounded waiting ([`wait_until`]).
//!
//! Everything listens on `127.0.0.1:0` and reports the port it got; no test uses a fixed port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The token of the tests' masters and workers (at least 16 bytes, as a master requires).
pub const TOKEN: &str = "stampede-e2e-token";

/// The API's `Authorization` header value for [`TOKEN`].
pub const BEARER: &str = "Bearer stampede-e2e-token";

/// How long a component may take to start and print its address.
pub const STARTUP: Duration = Duration::from_secs(15);

/// The `stampede` binary with a clean environment: no colours in logs, no inherited token,
/// master address or log filter.
pub fn stampede() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stampede"));
    cmd.env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("STAMPEDE_LOG")
        .env_remove("STAMPEDE_TOKEN")
        .env_remove("STAMPEDE_MASTER")
        // An API-driven master keeps its runs in the data directory: never the user's.
        .env(
            "XDG_DATA_HOME",
            std::env::temp_dir().join("stampede-e2e-data"),
        )
        .stdin(Stdio::null());
    cmd
}

/// The workspace root (where `scenarios/examples/` lives).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Poll `f` every 50 ms until it gives a value; panic naming `what` after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary directory for scenario files and results, removed on drop.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh, empty directory.
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("stampede-e2e-")
                .tempdir()
                .expect("create a temporary directory"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `name` inside the directory (not created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `contents` to `name` and return its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The text of `name`.
    pub fn read(&self, name: &str) -> String {
        let path = self.join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// `name` parsed as JSON.
    pub fn read_json(&self, name: &str) -> Value {
        let text = self.read(name);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}\n{text}"))
    }
}

/// A scenario file against an HTTP target with one request, `GET /` named `index`.
pub struct Scenario {
    target: String,
    duration: String,
    load: String,
    thresholds: Vec<String>,
}

impl Scenario {
    /// Closed model: `users` users, all started within ~0.1 s.
    pub fn closed(target: &str, users: u64) -> Scenario {
        Scenario {
            target: target.to_string(),
            duration: "2s".into(),
            load: format!(
                "model = \"closed\"\nusers = {users}\nspawn_rate = {}\n",
                users * 10
            ),
            thresholds: Vec::new(),
        }
    }

    /// The run's duration (`3s`).
    pub fn duration(mut self, d: &str) -> Scenario {
        self.duration = d.to_string();
        self
    }

    /// Add a threshold, e.g. `("p99_ms", "< 5")`.
    pub fn threshold(mut self, metric: &str, condition: &str) -> Scenario {
        self.thresholds
            .push(format!("{metric} = \"{condition}\"\n"));
        self
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let (target, duration, load) = (&self.target, &self.duration, &self.load);
        let mut s = format!(
            r#"name = "e2e"
target = "{target}"
duration = "{duration}"

[load]
{load}
[http]
timeout = "2s"

[[requests]]
name = "index"
method = "GET"
path = "/"
"#
        );
        if !self.thresholds.is_empty() {
            s.push_str("\n[thresholds]\n");
            for t in &self.thresholds {
                s.push_str(t);
            }
        }
        s
    }

    /// Write it as `scenario.toml` in `dir`.
    pub fn write_to(&self, dir: &TestDir) -> PathBuf {
        dir.write("scenario.toml", &self.toml())
    }
}

/// Text a child process wrote to one of its pipes, read by a thread as it arrives.
#[derive(Clone, Default)]
struct Captured(Arc<(Mutex<CapturedText>, Condvar)>);

#[derive(Default)]
struct CapturedText {
    text: String,
    closed: bool,
}

impl Captured {
    fn follow(&self, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let me = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line).unwrap_or(0);
                let (lock, cond) = &*me.0;
                let mut state = lock.lock().unwrap();
                if n == 0 {
                    state.closed = true;
                    cond.notify_all();
                    return;
                }
                state.text.push_str(&String::from_utf8_lossy(&line));
                cond.notify_all();
            }
        })
    }

    fn text(&self) -> String {
        self.0.0.lock().unwrap().text.clone()
    }

    /// The first line containing `needle`, waiting up to `timeout`; `None` if it did not
    /// come (or the pipe closed without it).
    fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.0;
        let mut state = lock.lock().unwrap();
        loop {
            if let Some(line) = state.text.lines().find(|l| l.contains(needle)) {
                return Some(line.to_string());
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = cond.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    /// Wait until the pipe is closed (the process and any child holding it are gone).
    fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.0;
        let mut state = lock.lock().unwrap();
        while !state.closed {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            state = cond.wait_timeout(state, deadline - now).unwrap().0;
        }
    }
}

/// How a process ended, with everything it wrote.
#[derive(Debug)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Finished {
    /// The exit code; panics (showing the output) if it was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal ({})\n{}", self.status, self.show()))
    }

    /// Assert the exit code, showing the output if it differs.
    pub fn assert_code(&self, expected: i32) {
        assert_eq!(
            self.status.code(),
            Some(expected),
            "unexpected exit status\n{}",
            self.show()
        );
    }

    /// Both outputs, for failure messages.
    pub fn show(&self) -> String {
        format!(
            "---- stdout ----\n{}\n---- stderr ----\n{}",
            self.stdout, self.stderr
        )
    }
}

/// A `stampede` child process with its output captured; killed (SIGKILL) on drop.
pub struct Proc {
    name: String,
    child: Child,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Spawn `cmd` (its stdout and stderr are captured). `name` appears in failure messages.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let (stdout, stderr) = (Captured::default(), Captured::default());
        let readers = vec![
            stdout.follow(child.stdout.take().expect("piped stdout")),
            stderr.follow(child.stderr.take().expect("piped stderr")),
        ];
        Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Spawn `stampede ARGS` and wait (at most `timeout`) for it to exit.
    pub fn run(args: &[&str], cwd: &Path, timeout: Duration) -> Finished {
        let mut cmd = stampede();
        cmd.args(args).current_dir(cwd);
        Proc::spawn(&format!("stampede {}", args.join(" ")), cmd).wait_exit(timeout)
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The first stdout line containing `needle`; panics after `timeout`.
    pub fn wait_stdout_line(&self, needle: &str, timeout: Duration) -> String {
        self.stdout
            .wait_line(needle, timeout)
            .unwrap_or_else(|| self.fail(&format!("no stdout line containing {needle:?}")))
    }

    /// The first stderr line containing `needle`; panics after `timeout`.
    pub fn wait_stderr_line(&self, needle: &str, timeout: Duration) -> String {
        self.stderr
            .wait_line(needle, timeout)
            .unwrap_or_else(|| self.fail(&format!("no stderr line containing {needle:?}")))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send it `signal` (`INT`, `TERM`), or its whole process group with `group` (a terminal's
    /// Ctrl-C; it must lead its group).
    pub fn signal(&self, signal: &str, group: bool) {
        let pid = self.pid();
        let to = if group {
            format!("-{pid}")
        } else {
            pid.to_string()
        };
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}").as_str(), "--", &to])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} {to}");
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait for it to exit; `None` if it is still running after `timeout`.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Option<Finished> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Grandchildren may hold the pipes a little longer; do not wait for them forever.
        self.stdout.wait_closed(Duration::from_secs(5));
        self.stderr.wait_closed(Duration::from_secs(5));
        Some(Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        })
    }

    /// Wait for it to exit; panics (showing its output) if it runs past `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Finished {
        match self.try_wait_exit(timeout) {
            Some(f) => f,
            None => self.fail(&format!("still running after {timeout:?}")),
        }
    }

    /// SIGKILL it (`Child::kill` on Unix) and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{}: {what}\n---- stdout ----\n{}\n---- stderr ----\n{}",
            self.name,
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        // The readers end when the pipes close; detach them if a grandchild keeps one open.
        for r in self.readers.drain(..) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

/// `stampede target http` on 127.0.0.1:0.
pub struct Target {
    /// The process, killed when the target is dropped.
    _proc: Proc,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
}

/// What `GET /__stampede/stats` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetStats {
    /// Requests served.
    pub requests: u64,
    /// Injected errors.
    pub errors: u64,
}

impl Target {
    /// A target with default settings.
    pub fn start() -> Target {
        Target::start_with(&[])
    }

    /// A target with extra flags (`--delay 30ms`, ...).
    pub fn start_with(args: &[&str]) -> Target {
        let mut cmd = stampede();
        cmd.args(["target", "http", "--bind", "127.0.0.1:0"])
            .args(args);
        let proc = Proc::spawn("target", cmd);
        const PREFIX: &str = "stampede target http listening on ";
        let line = proc.wait_stdout_line(PREFIX, STARTUP);
        let url = line[line.find(PREFIX).unwrap() + PREFIX.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let addr = url
            .split_once("://")
            .and_then(|(_, a)| a.parse().ok())
            .unwrap_or_else(|| panic!("target printed an odd URL: {line:?}"));
        Target {
            _proc: proc,
            url,
            addr,
        }
    }

    /// Its counters.
    pub fn stats(&self) -> TargetStats {
        let r = http::get(self.addr, "/__stampede/stats");
        assert_eq!(r.status, 200, "target stats: {r:?}");
        let v = r.json();
        TargetStats {
            requests: v["requests"].as_u64().expect("requests"),
            errors: v["errors"].as_u64().expect("errors"),
        }
    }
}

/// `stampede target registry` on 127.0.0.1:0.
pub struct Registry {
    _proc: Proc,
    /// Its base URL.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
}

impl Registry {
    /// A simulated model registry with these extra flags (`--bandwidth 40M`).
    pub fn start_with(args: &[&str]) -> Registry {
        let mut cmd = stampede();
        cmd.args(["target", "registry", "--bind", "127.0.0.1:0"])
            .args(args);
        let proc = Proc::spawn("registry", cmd);
        let line = proc.wait_stdout_line("stampede target registry serving", STARTUP);
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        let addr = url
            .split_once("://")
            .and_then(|(_, a)| a.parse().ok())
            .unwrap_or_else(|| panic!("registry printed an odd URL: {line:?}"));
        Registry {
            _proc: proc,
            url,
            addr,
        }
    }

    /// `GET /__stampede/stats` as JSON.
    pub fn stats(&self) -> Value {
        let r = http::get(self.addr, "/__stampede/stats");
        assert_eq!(r.status, 200, "registry stats: {r:?}");
        r.json()
    }
}

/// `stampede target llm` on 127.0.0.1:0.
pub struct LlmTarget {
    _proc: Proc,
    /// Its base URL.
    pub url: String,
    /// JetStream's gRPC URL, when started with `--grpc-bind`.
    pub grpc_url: Option<String>,
    /// Its address.
    pub addr: SocketAddr,
}

impl LlmTarget {
    /// A simulated model server with these extra flags (`--ttft 20ms`, ...).
    pub fn start_with(args: &[&str]) -> LlmTarget {
        let mut cmd = stampede();
        cmd.args(["target", "llm", "--bind", "127.0.0.1:0"])
            .args(args);
        let proc = Proc::spawn("llm-target", cmd);
        let line = proc.wait_stdout_line("stampede target llm serving", STARTUP);
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        let addr = url
            .split_once("://")
            .and_then(|(_, a)| a.parse().ok())
            .unwrap_or_else(|| panic!("target printed an odd URL: {line:?}"));
        // With --grpc-bind, JetStream's gRPC port comes next.
        let grpc_url = args.contains(&"--grpc-bind").then(|| {
            let line = proc.wait_stdout_line("serving JetStream gRPC on", STARTUP);
            line.split_whitespace()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))
                .unwrap_or_else(|| panic!("no URL in {line:?}"))
                .to_string()
        });
        LlmTarget {
            _proc: proc,
            url,
            addr,
            grpc_url,
        }
    }

    /// `GET /__stampede/stats` as JSON.
    pub fn stats(&self) -> Value {
        let r = http::get(self.addr, "/__stampede/stats");
        assert_eq!(r.status, 200, "target stats: {r:?}");
        r.json()
    }

    /// Zero its counters.
    pub fn reset(&self) {
        let r = http::post_json(self.addr, "/__stampede/stats/reset", &[], "");
        assert!(r.status < 300, "reset: {r:?}");
    }
}

/// `stampede master --bind 127.0.0.1:0 ARGS`, with the addresses it printed.
pub struct MasterProc {
    /// The process.
    pub proc: Proc,
    /// Where workers connect (QUIC).
    pub quic: SocketAddr,
    /// The HTTP API, if `--api` was given.
    pub api: Option<SocketAddr>,
}

impl MasterProc {
    /// Start a master with these extra arguments and wait until it listens.
    pub fn start(args: &[&str]) -> MasterProc {
        let mut cmd = stampede();
        cmd.args(["master", "--bind", "127.0.0.1:0"]).args(args);
        let proc = Proc::spawn("master", cmd);
        const QUIC: &str = "master listening for workers on ";
        let line = proc.wait_stderr_line(QUIC, STARTUP);
        let rest = &line[line.find(QUIC).unwrap() + QUIC.len()..];
        let quic = rest
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("master printed an odd QUIC line: {line:?}"));
        let api = args.contains(&"--api").then(|| {
            const API: &str = "API on http://";
            let line = proc.wait_stderr_line(API, STARTUP);
            line[line.find(API).unwrap() + API.len()..]
                .split_whitespace()
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("master printed an odd API line: {line:?}"))
        });
        MasterProc { proc, quic, api }
    }

    /// The API address; panics if it was started without `--api`.
    pub fn api(&self) -> SocketAddr {
        self.api.expect("the master was started without --api")
    }

    /// `GET /api/workers`: the workers array.
    pub fn workers(&self) -> Vec<Value> {
        let r = http::get(self.api(), "/api/workers");
        assert_eq!(r.status, 200, "GET /api/workers: {r:?}");
        r.json()["workers"]
            .as_array()
            .expect("`workers` array")
            .clone()
    }
}

/// `stampede worker` joined to a master.
pub struct WorkerProc {
    /// The process.
    pub proc: Proc,
}

impl WorkerProc {
    /// `stampede worker --master ADDR --connect-timeout 10s`, to which a test adds the token
    /// and anything else.
    pub fn command(master: SocketAddr) -> Command {
        let mut cmd = stampede();
        cmd.args([
            "worker",
            "--master",
            &master.to_string(),
            "--connect-timeout",
            "10s",
        ]);
        cmd
    }

    /// Spawn a worker command built from [`WorkerProc::command`].
    pub fn spawn(name: &str, cmd: Command) -> WorkerProc {
        WorkerProc {
            proc: Proc::spawn(name, cmd),
        }
    }

    /// A worker named `name` with `--token token`.
    pub fn start(master: SocketAddr, token: &str, name: &str) -> WorkerProc {
        let mut cmd = WorkerProc::command(master);
        cmd.args(["--token", token, "--name", name]);
        WorkerProc::spawn(name, cmd)
    }
}

/// A minimal HTTP/1.1 client over a raw `TcpStream` (`Connection: close`, read to end).
pub mod http {
    use super::*;

    /// A response: status, raw header block and body.
    #[derive(Debug)]
    pub struct Response {
        /// The status code.
        pub status: u16,
        /// The header lines, as received.
        pub headers: String,
        /// The body (de-chunked).
        pub body: String,
    }

    impl Response {
        /// The body as JSON; panics if it is not.
        pub fn json(&self) -> Value {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
        }
    }

    /// Send one request and read the whole response.
    pub fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        // A guard against a hung server, not a measurement: a loaded CI machine can take
        // seconds to answer (10 s was seen to run out while other jobs built).
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| {
                bad(format!(
                    "no end of headers: {:?}",
                    String::from_utf8_lossy(&raw)
                ))
            })?;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let rest = &raw[end + 4..];
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line: {head:?}")))?;
        let chunked = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        Ok(Response {
            status,
            headers: head,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// `GET path`; panics on I/O errors.
    pub fn get(addr: SocketAddr, path: &str) -> Response {
        request(addr, "GET", path, &[], None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `POST path` with a JSON body and extra headers; panics on I/O errors.
    pub fn post_json(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        request(addr, "POST", path, &all, Some(body)).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Undo `Transfer-Encoding: chunked`.
    fn dechunk(mut rest: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = String::from_utf8_lossy(&rest[..eol]);
            let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            else {
                break;
            };
            let data = &rest[eol + 2..];
            if n == 0 || data.len() < n {
                break;
            }
            out.extend_from_slice(&data[..n]);
            rest = data[n..].strip_prefix(b"\r\n").unwrap_or(&data[n..]);
        }
        out
    }
}

/// A Prometheus server (Debian's `prometheus`) scraping `targets` every second, from a
/// config and a data directory in a temporary directory; killed when dropped.
pub struct PrometheusServer {
    /// Its HTTP address (the query API at `/api/v1/query`).
    _proc: Proc,
    pub addr: SocketAddr,
    _dir: TestDir,
}

impl PrometheusServer {
    /// Start it, or `None` (saying why) when `prometheus` is not installed.
    pub fn start(targets: &[SocketAddr]) -> Option<PrometheusServer> {
        if std::process::Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping: `prometheus` is not installed (apt-get install prometheus)");
            return None;
        }
        let dir = TestDir::new();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.write(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: nodes\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = std::process::Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(std::process::Stdio::null());
        let proc = Proc::spawn("prometheus", cmd);
        wait_until(Duration::from_secs(30), "prometheus ready", || {
            http::request(addr, "GET", "/-/ready", &[], None)
                .ok()
                .filter(|r| r.status == 200)
        });
        Some(PrometheusServer {
            _proc: proc,
            addr,
            _dir: dir,
        })
    }

    /// An instant query's result vector (`data.result`), panicking on an error answer.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let r = http::get(self.addr, &path);
        assert_eq!(r.status, 200, "{expr}: {r:?}");
        let v = r.json();
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of an instant query, if it has one sample.
    pub fn value(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr);
        let first = result.first()?;
        first["value"][1].as_str()?.parse().ok()
    }
}

/// Percent-encode a query parameter.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `events` lines of a summary.json.
pub fn events(summary: &serde_json::Value) -> Vec<&str> {
    summary["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect()
}
