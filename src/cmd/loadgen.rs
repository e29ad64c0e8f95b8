//! `stampede loadgen`: the command line of the MLPerf-LoadGen priority runner (`loadgen_runner.py`)
//! on Stampede. It builds a `priority` scenario from the flags (or from `--scenario` with the flags
//! applied), runs it on local worker processes or, with `--listen`, on a fleet of
//! `stampede worker`s, and writes what the runner writes: the per-request CSV (`--metrics-csv`),
//! the per-class table on stdout, and per class a LoadGen-style summary in
//! `--output-dir/tier{T}_{slo}/`. An `https://` scheduler is reached over TLS (grpc's
//! `secure_channel`) with the `--ca`, `--insecure`, `--client-cert`, `--client-key` and
//! `--server-name` of the other commands; their files are read here and travel to the workers in
//! the scenario.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::bail;
use stampede_master::state::RunStatus;
use stampede_master::{Master, MasterConfig};
use stampede_scenarios::driver::priority::{PriorityFile, STREAM};
use stampede_scenarios::model::TlsOverrides;
use stampede_scenarios::units::{Count, HumanDuration, Rate};
use stampede_scenarios::{Kind, Overrides, ScenarioConfig};

use super::common;
use super::run::{follow_to_end, reap, spawn_workers, stop_grace, wait_for_workers};
use crate::cli::{Exit, LoadgenOpt};

pub async fn run(opt: LoadgenOpt) -> anyhow::Result<Exit> {
    let scenario = scenario(&opt)?;
    let local = opt.listen.is_none();
    if local && opt.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let bind_ip = opt
        .listen
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip());
    let (scenario, target) = common::start_builtin(scenario, bind_ip).await?;
    if let Some(t) = &target {
        eprintln!("built-in scheduler listening on {}", t.url);
    }
    let token = match opt.listen {
        None if opt.token.token.is_some() || opt.token.token_file.is_some() => {
            bail!("--token and --token-file go with --listen: local workers get a fresh token")
        }
        None => common::random_token(),
        Some(listen) => common::master_token(&opt.token, listen.port())?,
    };
    let interrupts = common::interrupts();
    let mut master = Master::start(
        MasterConfig {
            bind: opt.listen.unwrap_or(SocketAddr::new(bind_ip, 0)),
            token: token.clone(),
            identity: None,
            scenario: Some(scenario.clone()),
            auto_start_at: Some(if local {
                opt.workers
            } else {
                opt.expect_workers
            }),
            out: Some(opt.output_dir.clone()),
            records: BTreeMap::from([(STREAM.to_string(), opt.metrics_csv.clone())]),
            runs_dir: None,
            target: Some(scenario.target.to_string()),
            api: None,
            stop_grace: stop_grace(&scenario),
            tolerate_worker_loss: false,
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    let mut children = Vec::new();
    if local {
        children = spawn_workers(opt.workers, master.addr, token.as_str(), false)?;
        eprintln!(
            "loadgen: {} qps `{}` to {} for {} ms (min {} queries per class) on {} local workers",
            opt.total_qps,
            opt.workload,
            scenario.target,
            opt.duration_ms,
            opt.min_query_count,
            opt.workers
        );
        if let Err(e) = wait_for_workers(&mut master, &mut children, opt.workers).await {
            master.shutdown().await;
            reap(children).await;
            return Err(e);
        }
    } else {
        eprintln!(
            "loadgen master on {} (QUIC): the run starts when {} worker(s) have joined \
             (STAMPEDE_TOKEN=... stampede worker --master HOST:{})",
            master.addr,
            opt.expect_workers,
            master.addr.port()
        );
    }
    let exit = follow_to_end(master, children, &interrupts, |summary| {
        common::priority_report(summary, &scenario, Some(&opt.output_dir));
        if let Some(t) = &target {
            eprintln!(
                "the built-in scheduler received {} requests",
                t.stats.requests()
            );
        }
        eprintln!(
            "{} requests in {:.1} s ({} failed); per-request CSV: {}; run files: {}",
            summary.total.requests,
            summary.duration_s(),
            summary.total.failures,
            opt.metrics_csv.display(),
            opt.output_dir.display()
        );
        for e in &summary.events {
            eprintln!("note: {e}");
        }
        if summary.status() == RunStatus::Failed {
            eprintln!("the run could not finish: {}", summary.stop_reason);
            Exit::Incomplete
        } else {
            Exit::Success
        }
    })
    .await;
    Ok(exit)
}

/// The scenario the flags describe: `--scenario` (or a plain priority scenario) with the
/// target, total rate, duration, workload and minimum count set from the flags.
fn scenario(opt: &LoadgenOpt) -> anyhow::Result<ScenarioConfig> {
    if !(opt.total_qps.is_finite() && opt.total_qps > 0.0) {
        bail!("--total-qps {} must be above 0", opt.total_qps);
    }
    if opt.duration_ms == 0 {
        bail!("--duration-ms must be above 0");
    }
    let url = scheduler_url(&opt.scheduler_url)?;
    let tls = TlsOverrides {
        ca: opt.tls.ca.clone(),
        insecure: opt.tls.insecure,
        client_cert: opt.tls.client_cert.clone(),
        client_key: opt.tls.client_key.clone(),
        server_name: opt.tls.server_name.clone(),
    };
    if !tls.is_empty() && !url.starts_with("https://") {
        bail!(
            "--ca, --insecure, --client-cert, --client-key and --server-name apply to an \
             https:// --scheduler-url; `{url}` is plaintext"
        );
    }
    let mut file = match &opt.scenario {
        Some(path) => {
            let c = ScenarioConfig::load(path)?;
            if c.kind != Kind::Priority {
                bail!(
                    "{}: a `{}` scenario; --scenario needs kind = \"priority\"",
                    path.display(),
                    c.kind
                );
            }
            c.file
        }
        None => toml::from_str::<stampede_scenarios::ScenarioFile>(
            "name = \"loadgen\"\nkind = \"priority\"\ntarget = \"builtin:scheduler\"\n[load]\nmodel = \"open\"\nrate = 1\n",
        )?,
    };
    file.target = url;
    file.duration = Some(HumanDuration(Duration::from_millis(opt.duration_ms)));
    file.load = stampede_scenarios::model::LoadFile::Open {
        rate: Rate(opt.total_qps),
        arrival: Default::default(),
        burstiness: None,
        max_in_flight: None,
    };
    let p = file.priority.get_or_insert_with(PriorityFile::default);
    p.workload = opt.workload.clone();
    p.min_query_count = Some(Count(opt.min_query_count));
    let text = toml::to_string(&file)?;
    let origin = opt
        .scenario
        .as_ref()
        .map_or("<loadgen flags>".to_string(), |p| p.display().to_string());
    let overrides = Overrides {
        tls: tls.clone(),
        ..Overrides::default()
    };
    // Name the flag rather than the field it fills.
    let named = |e: stampede_scenarios::ScenarioError| {
        let flag = match e.field.as_deref() {
            Some("priority.workload") => "--workload",
            Some("target") => "--scheduler-url",
            Some("load.rate") => "--total-qps",
            Some("tls.ca") if tls.ca.is_some() => "--ca",
            Some("tls.client_cert") if tls.client_cert.is_some() => "--client-cert",
            Some("tls.client_key") if tls.client_key.is_some() => "--client-key",
            Some("tls.server_name") if tls.server_name.is_some() => "--server-name",
            _ => return anyhow::Error::from(e),
        };
        anyhow::anyhow!("{flag}: {}", e.message)
    };
    let mut config = ScenarioConfig::parse(&text, &origin, &overrides).map_err(named)?;
    // The TLS files travel inside the scenario, so workers on other hosts need none.
    config.resolve_files(&origin).map_err(named)?;
    Ok(config)
}

/// The MLPerf-LoadGen priority runner's `localhost:50051` as a URL; `http://`, `https://` and
/// `builtin:scheduler` pass as they are.
fn scheduler_url(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    if s.is_empty() {
        bail!("--scheduler-url is empty (give HOST:PORT, e.g. localhost:50051)");
    }
    if s.starts_with("builtin:") || s.starts_with("http://") || s.starts_with("https://") {
        return Ok(s.to_string());
    }
    if s.contains("://") {
        bail!("--scheduler-url `{s}`: use HOST:PORT, http://HOST:PORT or https://HOST:PORT (TLS)");
    }
    Ok(format!("http://{s}"))
}
