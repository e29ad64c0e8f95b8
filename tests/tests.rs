//! End-to-end tests: the `stampede` binary as real processes (master, workers, built-in
//! target) talking QUIC and HTTP on 127.0.0.1, checked against what the target saw and what
//! the results files say.

// `eqnice!`: assert_eq for long text with a readable diff.
#[macro_use]
mod macros;

// Helpers named for what they build: TestDir, Scenario, Proc, Target, MasterProc, WorkerProc,
// a raw HTTP/1.1 client.
mod util;

// `dashboards/`: every panel query parses under promtool and names exported metrics only.
mod dashboards;
// API: `/api/workers`, starting a run with `POST /api/runs`, /metrics, and a master that
// shrugs off garbage on its ports.
mod api;
// `stampede check` and invalid scenarios.
mod check;
// `download` scenarios against `stampede target registry`: a simultaneous start across two
// workers (one with a skewed clock), bytes and checksums, the worker's memory, bad answers.
mod downloads;
// `[http] version = "2"` over h2c against an in-test HTTP/2 server and nginx: requests and
// connections counted on both sides, an HTTP/1.1-only server as a named failure.
mod http2;
// The fault and abuse suite: a rogue master, a relay, a flood of unauthenticated
// connections, assignments a worker refuses, tokens and pinned certificates.
mod faults;
// The ACME performance track's health API: the workload's 202/poll/complete cycle, 401, bad JSON,
// runs kept across a master restart.
mod health;
// `stampede master` and `stampede worker` as separate processes: exact counts, a worker or the
// master killed, a wrong token.
mod distributed;
// `llm` scenarios against `stampede target llm`: token counts per backend, broken streams.
mod llm;
// `/metrics` under promtool before, during, across a worker loss and between runs; a real
// Prometheus scraping the master: a rate and a histogram_quantile p99 against summary.json.
mod metrics;
// docker-compose.yml on the Docker engine: scale to 3 workers, kill one container mid-run, the
// headless profile (skips without an engine).
mod docker;
// `stampede placement`: fit on the law's runs, PEPPER's Profiler's requests and shapes, bad input,
// the cluster form against a real Prometheus.
mod placement;
// `priority` traffic (the MLPerf-LoadGen priority runner's): `stampede loadgen` against
// `stampede target scheduler` over gRPC, the CSV, LoadGen summaries, bad flags, a scheduler down or
// slow.
mod priority;
// `stampede profile`: the Performance Profile Generator's grpcurl session through a
// reflection-driven client, health and graceful shutdown, CSV files and URLs, bad input.
mod profiles;
// `stampede run`: the example, the open model's rate, failures, thresholds and exit codes.
mod run;
// `stampede target http --tls --cert-out F`: an https URL, a TLS answer verified with F; --h2c
// with --tls refused.
mod target_tls;
// `https://` targets against nginx with certificates made by rcgen: counts against its access
// log, TLS 1.3, an untrusted CA, --insecure, SNI, mutual TLS, plaintext behind https, bad files.
mod tls;
// `--tui` in tmux: workers listed, s/+/x/q steer the run, the terminal comes back (panics too);
// without a terminal it goes on headless.
mod tui;
