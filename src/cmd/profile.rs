//! `stampede profile {generate, serve, sweep}`: capacity profiles (as ig-wva's Performance Profile
//! Generator computes them) on the command line. The algorithm, the data sources and the gRPC
//! service are in `stampede-profiles`; this reads flags (the generator's spellings too), prints,
//! and maps errors to one line.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use stampede_profiles::gcs::GcsObject;
use stampede_profiles::source::Source;
use stampede_profiles::{json, plot, profile};
use tokio_util::sync::CancellationToken;

use crate::cli::Exit;

mod sweep;

/// `stampede profile ...`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Print the profile of a workload as JSON, exactly as grpcurl prints the served one;
    /// on stderr, TTFT and E2E at each chosen rate (when the data has them) and why a pair
    /// found no data.
    ///
    /// The workload file is the body of the Performance Profile Generator's grpcurl request
    /// (`{"workload_definition": {"worker_types": [...], "request_types": [...]}}`) or the workload
    /// alone.
    ///
    /// Example: stampede profile generate --csv sweep/benchmarks.csv --workload workload.json
    Generate(GenerateOpt),
    /// Serve ig-wva's Performance Profile Generator over gRPC (plaintext HTTP/2): the service
    /// `profiler_service.PerformanceProfileGenerator` (also under the name the generator's README
    /// calls), `grpc.health.v1.Health` and server reflection. The generator's flags work as written
    /// (`--use_mock_data`, `--csv_file_path=PATH`, `--gcs_csv_bucket=B --gcs_csv_object=O`,
    /// `-port 8080`); kebab-case too.
    ///
    /// Stops on SIGINT or SIGTERM: health turns NOT_SERVING first, then calls going on finish.
    ///
    /// Example: stampede profile serve --port 8080 --use_mock_data
    Serve(ServeOpt),
    /// Measure an LLM scenario at several rates per request type and append one row per
    /// (accelerator type, input bucket, output bucket, rate) to a CSV in the Performance Profile
    /// Generator's schema (the data `generate` and `serve` read, and the generator itself too).
    ///
    /// Each step runs the scenario (master and local worker processes, as `stampede run`)
    /// at one rate, open model, with prompts of the request type's lengths (the middle of
    /// each bucket, `ignore_eos` so every answer has that length). Each step's results are
    /// kept in `--out/step-NN-in-A-B-out-C-D-rate-R/`, the rows in `--out/benchmarks.csv`.
    ///
    /// Example: stampede profile sweep llm.toml --rates 2,4,8,16,32 --request-types
    /// 2-3:32-63,512-1023:128-255 --accelerator-type NVIDIA_L4 --out sweep/
    Sweep(sweep::SweepOpt),
}

impl ProfileCommand {
    /// Whether this is the long-lived server (which logs at info by default).
    pub fn is_serve(&self) -> bool {
        matches!(self, ProfileCommand::Serve(_))
    }
}

/// The benchmark data: one of these.
#[derive(Debug, Clone, Args)]
pub struct SourceFlags {
    /// Use the Performance Profile Generator's mock data (worker_mock_01 × request_mock_01/02/03).
    #[arg(
        long = "use_mock_data",
        visible_alias = "use-mock-data",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub use_mock_data: Option<bool>,
    /// A benchmark CSV in the Performance Profile Generator's schema: a file, or an `http://` or
    /// `https://` URL (read again for every profile; https trusts the system's CA certificates, or
    /// those in SSL_CERT_FILE / SSL_CERT_DIR). Needs the columns accelerator_type, input_range,
    /// output_range, metrics_request_rate, metrics_p90_per_output_token_latency_mean.
    #[arg(
        long = "csv_file_path",
        visible_aliases = ["csv-file-path", "csv", "csv_url", "csv-url"],
        value_name = "PATH|URL"
    )]
    pub csv_file_path: Option<String>,
    /// The GCS bucket of a benchmark CSV (with --gcs_csv_object), as the Performance Profile
    /// Generator reads it. Fetched for every profile with the GCS JSON API at
    /// `https://storage.googleapis.com`, or at STORAGE_EMULATOR_HOST when set. Credentials:
    /// GOOGLE_OAUTH_ACCESS_TOKEN when set, else the GCE/GKE metadata server's service-account token
    /// (GCE_METADATA_HOST moves it), else none (public objects).
    #[arg(
        long = "gcs_csv_bucket",
        visible_alias = "gcs-csv-bucket",
        value_name = "BUCKET"
    )]
    pub gcs_csv_bucket: Option<String>,
    /// The object name of the benchmark CSV in --gcs_csv_bucket (e.g. path/to/data.csv).
    #[arg(
        long = "gcs_csv_object",
        visible_alias = "gcs-csv-object",
        value_name = "OBJECT"
    )]
    pub gcs_csv_object: Option<String>,
    /// A folder of `stampede profile sweep` results: every benchmarks.csv in it and in its
    /// subfolders.
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// The Performance Profile Generator's Spanner source: not supported (its table and query are
    /// not published); answered with an error pointing at the other sources.
    #[arg(long = "spanner_db", alias = "spanner-db", hide = true)]
    pub spanner_db: Option<String>,
}

/// Why `--spanner_db` cannot be read, and what to use instead.
const SPANNER_UNSUPPORTED: &str = "--spanner_db is not supported: the Performance Profile \
     Generator does not publish the Spanner table schema or query its rows come from; export \
     the rows as a CSV and use --csv_file_path PATH|URL or --gcs_csv_bucket B --gcs_csv_object \
     O, or serve Stampede's sweeps with --results DIR";

impl SourceFlags {
    /// The chosen source; the Performance Profile Generator's order when several are given (mock,
    /// then CSV, then GCS), then `--results`, with a note saying which one is used.
    fn source(&self) -> anyhow::Result<Source> {
        let mut chosen = Vec::new();
        if self.use_mock_data == Some(true) {
            chosen.push(("--use_mock_data", Source::Mock));
        }
        if let Some(csv) = self.csv_file_path.as_deref().filter(|c| !c.is_empty()) {
            chosen.push(("--csv_file_path", Source::csv(csv)));
        }
        let bucket = self.gcs_csv_bucket.as_deref().filter(|b| !b.is_empty());
        let object = self.gcs_csv_object.as_deref().filter(|o| !o.is_empty());
        match (bucket, object) {
            (Some(bucket), Some(object)) => chosen.push((
                "--gcs_csv_bucket",
                Source::Gcs(GcsObject {
                    bucket: bucket.to_string(),
                    object: object.to_string(),
                }),
            )),
            (None, None) => {}
            (Some(_), None) => {
                anyhow::bail!("--gcs_csv_bucket needs --gcs_csv_object OBJECT (the CSV's name)")
            }
            (None, Some(_)) => {
                anyhow::bail!("--gcs_csv_object needs --gcs_csv_bucket BUCKET")
            }
        }
        if let Some(dir) = &self.results {
            chosen.push(("--results", Source::Results(dir.clone())));
        }
        if chosen.is_empty() {
            if self.spanner_db.is_some() {
                anyhow::bail!("{SPANNER_UNSUPPORTED}");
            }
            anyhow::bail!(
                "a data source must be specified: use --use_mock_data, --csv_file_path PATH|URL, \
                 --gcs_csv_bucket B --gcs_csv_object O, or --results DIR"
            );
        }
        if self.spanner_db.is_some() {
            eprintln!("note: --spanner_db is not supported and is ignored");
        }
        if chosen.len() > 1 {
            let names: Vec<&str> = chosen.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "note: several data sources given ({}); using {}",
                names.join(", "),
                names[0]
            );
        }
        Ok(chosen.swap_remove(0).1)
    }
}

/// `stampede profile generate`.
#[derive(Debug, Args)]
pub struct GenerateOpt {
    #[command(flatten)]
    pub source: SourceFlags,
    /// The workload: JSON as in the Performance Profile Generator's grpcurl request.
    #[arg(long, value_name = "FILE")]
    pub workload: PathBuf,
    /// Also write one SVG per entry here: latency against rate, the SLO line, the chosen rate.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

/// `stampede profile serve`.
#[derive(Debug, Args)]
pub struct ServeOpt {
    /// The port to listen on (the Performance Profile Generator's default).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The address to listen on: all interfaces, IPv6 and IPv4, like the Performance Profile
    /// Generator.
    #[arg(long, default_value_t = IpAddr::V6(Ipv6Addr::UNSPECIFIED), value_name = "IP")]
    pub bind: IpAddr,
    #[command(flatten)]
    pub source: SourceFlags,
}

/// Run a `profile` verb.
pub async fn run(command: ProfileCommand) -> anyhow::Result<Exit> {
    match command {
        ProfileCommand::Generate(o) => generate(o).await,
        ProfileCommand::Serve(o) => serve(o).await,
        ProfileCommand::Sweep(o) => sweep::run(o).await,
    }
}

async fn generate(opt: GenerateOpt) -> anyhow::Result<Exit> {
    let source = opt.source.source()?;
    let workload = json::read_workload(&opt.workload)?;
    profile::validate(&workload).with_context(|| format!("{}", opt.workload.display()))?;
    let loaded = source.load().await?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let profile = profile::generate(&workload, &loaded.data)?;
    println!("{}", json::profile_json(&profile));
    if let Some(dir) = &opt.plot {
        write_plots(dir, &profile)?;
    }
    let known = loaded.data.known();
    for e in &profile.entries {
        let c = &e.choice;
        if e.points.is_empty() {
            if let Some(k) = &known {
                eprintln!("{}", k.explain(&e.worker, &e.request));
            }
            continue;
        }
        let mut at = Vec::new();
        if let Some(t) = c.ttft_ms {
            at.push(format!("p90 TTFT {t:.1} ms"));
        }
        if let Some(t) = c.e2e_ms {
            at.push(format!("p90 E2E {t:.1} ms"));
        }
        eprintln!(
            "{} × {}: {} rps ({}) from {} point(s){}",
            e.worker.id,
            e.request.id,
            c.max_rps,
            c.status.as_str_name(),
            e.points.len(),
            if at.is_empty() {
                String::new()
            } else {
                format!("; at that rate {}", at.join(", "))
            }
        );
    }
    Ok(Exit::Success)
}

/// One SVG per entry with points into `dir`; says where on stderr.
pub fn write_plots(dir: &std::path::Path, profile: &profile::Profile) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for e in profile.entries.iter().filter(|e| !e.points.is_empty()) {
        let path = dir.join(plot::file_name(e));
        std::fs::write(&path, plot::svg(e))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("plot: {}", path.display());
    }
    Ok(())
}

async fn serve(opt: ServeOpt) -> anyhow::Result<Exit> {
    let source = opt.source.source()?;
    println!("{}", source.describe());
    // Read the data once now, so a missing file or column stops the start with one line.
    let loaded = source.load().await?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let addr = SocketAddr::new(opt.bind, opt.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        // No IPv6 here: all IPv4 interfaces instead.
        Err(_) if opt.bind == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], opt.port)))
                .await
                .with_context(|| format!("failed to listen on port {}", opt.port))?
        }
        Err(e) => return Err(e).with_context(|| format!("failed to listen on {addr}")),
    };
    println!("Server listening at {}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let name = termination().await;
        println!("Received signal {name}, shutting down gracefully...");
        on_signal.cancel();
    });
    stampede_profiles::server::serve(listener, source, shutdown).await?;
    println!("gRPC server stopped.");
    Ok(Exit::Success)
}

/// Wait for SIGINT, SIGTERM or SIGHUP; the signal's name, as Go's `os/signal` prints it.
async fn termination() -> &'static str {
    super::common::StopSignals::new()
        .recv()
        .await
        .unwrap_or("interrupt")
}

/// Go's flag package also takes one dash (`-port=8080`, `-use_mock_data`): for
/// `profile serve`, rewrite those to two, so the Performance Profile Generator's command lines
/// work unchanged.
pub fn go_style_flags(args: Vec<OsString>) -> Vec<OsString> {
    let is_serve =
        args.get(1).is_some_and(|a| a == "profile") && args.get(2).is_some_and(|a| a == "serve");
    if !is_serve {
        return args;
    }
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let Some(s) = a.to_str() else { return a };
            let single = s.len() > 2
                && s.starts_with('-')
                && !s.starts_with("--")
                && s.as_bytes()[1].is_ascii_alphabetic();
            if i > 2 && single {
                OsString::from(format!("-{s}"))
            } else {
                a
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_single_dash_flags_become_long_ones() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            go_style_flags(args(&[
                "s",
                "profile",
                "serve",
                "-port=8080",
                "-use_mock_data",
                "-h"
            ])),
            args(&[
                "s",
                "profile",
                "serve",
                "--port=8080",
                "--use_mock_data",
                "-h"
            ])
        );
        let other = args(&["s", "run", "-x"]);
        assert_eq!(go_style_flags(other.clone()), other);
    }
}
