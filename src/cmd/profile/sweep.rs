//! `stampede profile sweep`: an LLM scenario measured once per rate and request type, each
//! step a whole run (a master on 127.0.0.1 and local worker processes, as `stampede run`),
//! each step's figures appended as one benchmark row in the CSV schema of ig-wva's Performance
//! Profile Generator.
//!
//! Self-contained on purpose: it drives the master through its public API (`Master::start`,
//! `next_finished`, `MasterHandle::stop_run`) and owns its worker processes; the rows, buckets
//! and knee search are in `stampede_profiles::sweep`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use stampede_master::summary::RunSummary;
use stampede_master::{Master, MasterConfig};
use stampede_profiles::bench_csv;
use stampede_profiles::data::Data;
use stampede_profiles::profile::{self, Point};
use stampede_profiles::sweep::{self, Search, Shape, StepFigures, WorkerFields};
use stampede_scenarios::llm::{LengthDist, PromptSource, SyntheticSource};
use stampede_scenarios::units::HumanDuration;
use stampede_scenarios::{Arrival, Kind, Overrides, ScenarioConfig};
use tokio::process::Child;

use crate::cli::Exit;
use crate::cmd::common;
use crate::cmd::run::{reap, worker_command};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `stampede profile sweep`.
#[derive(Debug, Args)]
pub struct SweepOpt {
    /// The LLM scenario (`kind = "llm"`): its target, backend, model, `[llm]` settings and
    /// `[worker_type]` are used; its load and prompts are replaced per step.
    pub scenario: PathBuf,
    /// Rates to measure, requests per second (`2,4,8,16,32,64`).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "R,R,...",
        required_unless_present = "search"
    )]
    pub rates: Vec<f64>,
    /// Instead of fixed rates, narrow in on the highest rate within --slo-ms: measure
    /// --min-rate and --max-rate, then halve the bracket until it is within --precision.
    #[arg(long, requires = "slo_ms", conflicts_with = "rates")]
    pub search: bool,
    /// The TPOT SLO (p90 latency per output token, ms) for --search, and for the profile and
    /// plots printed at the end.
    #[arg(long, value_name = "MS")]
    pub slo_ms: Option<f32>,
    /// Lowest rate of --search.
    #[arg(long, default_value_t = 1.0, value_name = "R")]
    pub min_rate: f64,
    /// Highest rate of --search.
    #[arg(long, default_value_t = 64.0, value_name = "R")]
    pub max_rate: f64,
    /// Most steps per request type in --search.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_steps: usize,
    /// --search stops when the bracket is this narrow, relative to its top (0.05: 5 %).
    #[arg(long, default_value_t = 0.05, value_name = "X")]
    pub precision: f64,
    /// Request types to sweep: input and output token buckets, power-of-two ranges, as
    /// IN:OUT (`2-3:32-63,512-1023:128-255`). Prompts have the middle length of the input
    /// bucket, answers that of the output bucket.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "128-255:128-255",
        value_name = "IN:OUT,..."
    )]
    pub request_types: Vec<Shape>,
    /// How long each step runs (default: the scenario's duration).
    #[arg(long, value_name = "DURATION")]
    pub step_duration: Option<HumanDuration>,
    /// Spacing of arrivals: `poisson` (default) or `constant`.
    #[arg(long, value_name = "KIND")]
    pub arrival: Option<Arrival>,
    /// Local worker processes per step.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// Base URL of the model server, replacing the scenario's target.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Where each step's results go (`step-NN-.../summary.json`, the CSVs) and, unless --csv
    /// says otherwise, `benchmarks.csv`.
    #[arg(long, default_value = "profile-sweep", value_name = "DIR")]
    pub out: PathBuf,
    /// The CSV to append the rows to (default: OUT/benchmarks.csv; created with its header).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// The worker type's accelerator: the rows' `accelerator_type`, what a profile matches on
    /// (default: the scenario's `[worker_type] accelerator_type`, else `unknown`).
    #[arg(long, value_name = "NAME")]
    pub accelerator_type: Option<String>,
    /// Accelerators per model server replica (default: `[worker_type]`'s, else 1).
    #[arg(long, value_name = "N")]
    pub accelerator_count: Option<u32>,
    /// The model's name in the rows (default: `[worker_type]`'s, else `[llm] model`).
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
    /// The model server's kind, `vLLM`, `TGI`, ... (default: `[worker_type]`'s).
    #[arg(long, value_name = "NAME")]
    pub model_server_type: Option<String>,
    /// The model server's image (default: `[worker_type]`'s).
    #[arg(long, value_name = "IMAGE")]
    pub model_server_image: Option<String>,
}

/// One measured step.
struct Step {
    shape: Shape,
    figures: StepFigures,
}

/// What every step shares.
struct Sweep {
    base: ScenarioConfig,
    opt: SweepOpt,
    csv: PathBuf,
    worker: WorkerFields,
    interrupts: common::Interrupts,
    done: Vec<Step>,
    planned: usize,
}

pub async fn run(opt: SweepOpt) -> anyhow::Result<Exit> {
    if opt.workers == 0 {
        bail!("--workers must be at least 1");
    }
    if let Some(r) = opt.rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        bail!("--rates: {r} is not a rate above 0");
    }
    if opt.search && !(opt.min_rate > 0.0 && opt.max_rate > opt.min_rate) {
        bail!("--search needs 0 < --min-rate < --max-rate");
    }
    if let Some(slo) = opt.slo_ms
        && !(slo.is_finite() && slo > 0.0)
    {
        bail!("--slo-ms {slo}: the SLO must be a number of milliseconds above 0");
    }
    let mut base = ScenarioConfig::load(&opt.scenario)?;
    if base.kind != Kind::Llm {
        bail!(
            "{} is a `{}` scenario; a profile sweep needs kind = \"llm\"",
            opt.scenario.display(),
            base.kind
        );
    }
    if let Some(t) = &opt.target {
        base = base.retarget(t)?;
    }
    let (base, target) = common::start_builtin(base, LOOPBACK).await?;
    if let Some(t) = &target {
        eprintln!("built-in target listening on {}", t.addresses());
    }
    std::fs::create_dir_all(&opt.out).with_context(|| format!("creating {}", opt.out.display()))?;
    let csv = opt
        .csv
        .clone()
        .unwrap_or_else(|| opt.out.join(stampede_profiles::source::RESULTS_CSV));
    let worker = worker_fields(&base, &opt);
    if worker.accelerator_type == "unknown" {
        eprintln!(
            "note: no accelerator type (--accelerator-type or [worker_type] accelerator_type in \
             the scenario): rows say `unknown`"
        );
    }
    let planned = if opt.search {
        opt.max_steps * opt.request_types.len()
    } else {
        opt.rates.len() * opt.request_types.len()
    };
    let mut sweep = Sweep {
        base,
        csv,
        worker,
        interrupts: common::interrupts(),
        done: Vec::new(),
        planned,
        opt,
    };
    let shapes = sweep.opt.request_types.clone();
    'shapes: for shape in shapes {
        if sweep.opt.search {
            let slo = f64::from(sweep.opt.slo_ms.unwrap_or(f32::MAX));
            let mut search =
                Search::new(sweep.opt.min_rate, sweep.opt.max_rate, sweep.opt.precision);
            for _ in 0..sweep.opt.max_steps {
                let Some(rate) = search.next() else { break };
                let Some(f) = sweep.step(shape, rate).await? else {
                    break 'shapes;
                };
                let latency = f.p90_per_output_token_ms();
                search.record(rate, f.successes() > 0 && latency <= slo);
            }
        } else {
            for rate in sweep.opt.rates.clone() {
                if sweep.step(shape, rate).await?.is_none() {
                    break 'shapes;
                }
            }
        }
    }
    drop(target);
    sweep.conclude().await
}

impl Sweep {
    /// Run one step and append its row; `None` when interrupted (the step's row is still
    /// written if the run finished).
    async fn step(&mut self, shape: Shape, rate: f64) -> anyhow::Result<Option<StepFigures>> {
        if self.interrupts.first.is_cancelled() {
            return Ok(None);
        }
        let n = self.done.len() + 1;
        let name = format!(
            "step-{n:02}-in-{}-out-{}-rate-{}",
            shape.input.range(),
            shape.output.range(),
            rate
        );
        let dir = self.opt.out.join(&name);
        let scenario = self.scenario(shape, rate)?;
        let label = format!(
            "step {n}/{} {} @ {rate} req/s",
            self.planned.max(n),
            shape.describe()
        );
        let summary = self.run_one(scenario, &dir, &label).await?;
        let Some(summary) = summary else {
            return Ok(None);
        };
        let figures = figures(&summary, rate);
        let row = sweep::row(shape, &self.worker, &figures, &name);
        bench_csv::append(&self.csv, std::slice::from_ref(&row))
            .with_context(|| format!("appending to {}", self.csv.display()))?;
        eprintln!(
            "{label}: {} ok, {} failed, {:.2} req/s done; p90 per output token {:.2} ms, TTFT {:.1} ms, E2E {:.1} ms",
            figures.successes(),
            figures.failures,
            row.metrics_achieved_request_rate,
            row.metrics_p90_per_output_token_latency_mean,
            figures.p90_ttft_ms,
            figures.p90_e2e_ms
        );
        self.done.push(Step {
            shape,
            figures: figures.clone(),
        });
        if self.interrupts.first.is_cancelled() {
            return Ok(None);
        }
        Ok(Some(figures))
    }

    /// The scenario of one step: the request type's lengths, this rate, open model.
    fn scenario(&self, shape: Shape, rate: f64) -> anyhow::Result<ScenarioConfig> {
        let mut file = self.base.file.clone();
        // A step is one rate: the scenario's own `[sweep]`, if any, is this command's job here.
        file.sweep = None;
        let duration = self.opt.step_duration.map_or(self.base.duration, |d| d.0);
        let Some(llm) = file.llm.as_mut() else {
            bail!(
                "{}: an llm scenario needs an [llm] table",
                self.opt.scenario.display()
            );
        };
        llm.prompts = PromptSource::Synthetic(SyntheticSource {
            input: LengthDist::Fixed {
                tokens: shape.input.tokens(),
            },
            output: LengthDist::Fixed {
                tokens: shape.output.tokens(),
            },
            count: 16,
        });
        llm.resolved.clear();
        // Every answer the bucket's length, so E2E ÷ tokens is the same for each.
        llm.ignore_eos = Some(true);
        if llm.timeout.is_none() {
            // Past the knee queues grow; a step should not wait minutes for its stragglers.
            llm.timeout = Some(HumanDuration((duration * 3).max(Duration::from_secs(30))));
        }
        let config = ScenarioConfig::from_file(file, &self.opt.scenario.display().to_string())?;
        let mut config = config.with_overrides(&Overrides {
            rate: Some(rate),
            arrival: self.opt.arrival,
            duration: Some(duration),
            ..Overrides::default()
        })?;
        config.resolve_files(&self.opt.scenario.display().to_string())?;
        Ok(config)
    }

    /// Run a scenario on a fresh master with local workers, a progress bar on the way; its
    /// summary (results written to `dir`), or `None` when interrupted before it finished.
    async fn run_one(
        &self,
        scenario: ScenarioConfig,
        dir: &Path,
        label: &str,
    ) -> anyhow::Result<Option<std::sync::Arc<RunSummary>>> {
        let token = common::random_token();
        let duration = scenario.duration;
        let mut master = Master::start(
            MasterConfig {
                bind: SocketAddr::new(LOOPBACK, 0),
                token: token.clone(),
                identity: None,
                stop_grace: scenario.request_timeout() + Duration::from_secs(5),
                tolerate_worker_loss: false,
                scenario: Some(scenario),
                auto_start_at: Some(self.opt.workers),
                out: Some(dir.to_path_buf()),
                records: Default::default(),
                runs_dir: None,
                target: None,
                api: None,
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .await?;
        let children = spawn_workers(self.opt.workers, master.addr, token.as_str())?;
        let bar = ProgressBar::new(duration.as_secs().max(1));
        // The invariant: the template is a fixed, valid indicatif template.
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} s {msg}")
            .expect("valid template");
        bar.set_style(style.progress_chars("=> "));
        bar.set_message(label.to_string());
        let mut snaps = master.snapshots.clone();
        let handle = master.handle();
        let mut stopping = false;
        let deadline = tokio::time::Instant::now() + duration * 4 + Duration::from_secs(60);
        let finished = loop {
            tokio::select! {
                s = master.next_finished() => break s,
                r = snaps.changed() => {
                    if r.is_err() {
                        break None;
                    }
                    let snap = snaps.borrow_and_update().clone();
                    if let Some(run) = &snap.run {
                        bar.set_position(run.elapsed_s.min(run.duration_s) as u64);
                        bar.set_message(format!("{label} · {} reqs · {} fails", run.total.requests, run.total.failures));
                    }
                }
                _ = self.interrupts.first.cancelled(), if !stopping => {
                    stopping = true;
                    eprintln!("interrupted: finishing this step, then stopping the sweep (Ctrl-C again to quit at once)");
                    if let Some(id) = snaps.borrow().run.as_ref().map(|r| r.id) {
                        let _ = handle.stop_run(id).await;
                    }
                }
                _ = self.interrupts.second.cancelled() => break None,
                _ = tokio::time::sleep_until(deadline) => {
                    bar.finish_and_clear();
                    master.shutdown().await;
                    reap(children).await;
                    bail!("{label}: no result {} s after it should have ended", (deadline - tokio::time::Instant::now()).as_secs());
                }
            }
        };
        bar.finish_and_clear();
        let rest = master.shutdown().await;
        reap(children).await;
        Ok(finished.or_else(|| rest.into_iter().last()))
    }

    /// Say where things are; with --slo-ms, the profile of what was measured and its plots.
    async fn conclude(self) -> anyhow::Result<Exit> {
        eprintln!(
            "{} step(s); rows appended to {}; step results in {}",
            self.done.len(),
            self.csv.display(),
            self.opt.out.display()
        );
        if self.done.is_empty() {
            return Ok(Exit::Interrupted);
        }
        let Some(slo) = self.opt.slo_ms else {
            return Ok(Exit::Success);
        };
        // This sweep's points only (the CSV may hold earlier ones too).
        let rows = self
            .done
            .iter()
            .map(|s| stampede_profiles::data::Row {
                accelerator_type: self.worker.accelerator_type.clone(),
                input_range: s.shape.input.range(),
                output_range: s.shape.output.range(),
                point: Point {
                    rate: s.figures.rate as f32,
                    tpot_ms: s.figures.p90_per_output_token_ms() as f32,
                    ttft_ms: Some(s.figures.p90_ttft_ms as f32),
                    e2e_ms: Some(s.figures.p90_e2e_ms as f32),
                },
            })
            .collect();
        let workload = stampede_grpc::profiler_service::WorkloadDefinition {
            worker_types: vec![stampede_grpc::common::WorkerType {
                id: self.worker.accelerator_type.clone(),
                accelerator_type: self.worker.accelerator_type.clone(),
                accelerator_count: self.worker.accelerator_count as i32,
                model_name: self.worker.model_name.clone(),
                model_server_type: self.worker.model_server_type.clone(),
                model_server_image: self.worker.model_server_image.clone(),
            }],
            request_types: self
                .opt
                .request_types
                .iter()
                .map(|s| stampede_grpc::common::RequestType {
                    id: s.describe(),
                    input_size_bucket: s.input.range(),
                    output_size_bucket: s.output.range(),
                    latency_slo_tpot_ms: slo,
                })
                .collect(),
        };
        let profile = profile::generate(&workload, &Data::Table(rows))?;
        for e in &profile.entries {
            let c = &e.choice;
            let at = match (c.ttft_ms, c.e2e_ms) {
                (Some(t), Some(e)) => format!("; there p90 TTFT {t:.1} ms, p90 E2E {e:.1} ms"),
                _ => String::new(),
            };
            println!(
                "{} within {slo} ms per output token: {} req/s ({}){at}",
                e.request.id,
                c.max_rps,
                c.status.as_str_name()
            );
        }
        super::write_plots(&self.opt.out.join("plots"), &profile)?;
        Ok(Exit::Success)
    }
}

/// The worker type of the rows: flags, else the scenario's `[worker_type]`, else defaults.
fn worker_fields(base: &ScenarioConfig, opt: &SweepOpt) -> WorkerFields {
    let table = base.file.worker_type.as_ref();
    let model = base
        .file
        .llm
        .as_ref()
        .map(|l| l.model.clone())
        .unwrap_or_default();
    WorkerFields {
        accelerator_type: opt
            .accelerator_type
            .clone()
            .or_else(|| table.map(|t| t.accelerator_type.clone()))
            .unwrap_or_else(|| "unknown".to_string()),
        accelerator_count: opt
            .accelerator_count
            .or_else(|| table.map(|t| t.accelerator_count))
            .unwrap_or(1),
        model_name: opt
            .model_name
            .clone()
            .or_else(|| table.and_then(|t| t.model_name.clone()))
            .unwrap_or(model),
        model_server_type: opt
            .model_server_type
            .clone()
            .or_else(|| table.map(|t| t.model_server_type.clone()))
            .unwrap_or_default(),
        model_server_image: opt
            .model_server_image
            .clone()
            .or_else(|| table.map(|t| t.model_server_image.clone()))
            .unwrap_or_default(),
    }
}

/// A step's figures from its run.
fn figures(summary: &RunSummary, rate: f64) -> StepFigures {
    let t = &summary.total;
    let p90 = |name: &str| {
        t.metrics
            .get(name)
            .filter(|h| !h.is_empty())
            .map_or(0.0, |h| h.value_at_quantile(0.90) as f64 / 1000.0)
    };
    let counter = |name: &str| t.counters.get(name).copied().unwrap_or(0);
    StepFigures {
        rate,
        duration_s: summary.duration_s(),
        requests: t.requests,
        failures: t.failures,
        input_tokens: counter("input_tokens"),
        output_tokens: counter("output_tokens"),
        p90_e2e_ms: t.latency_ms(0.90),
        p90_ttft_ms: p90("ttft"),
        p90_tpot_ms: p90("tpot"),
        p90_latency_per_output_token_ms: p90("latency_per_output_token"),
    }
}

/// Start `n` local worker processes (this binary) joining `master`.
fn spawn_workers(n: usize, master: SocketAddr, token: &str) -> anyhow::Result<Vec<Child>> {
    let exe = std::env::current_exe().context("finding the stampede binary to start workers")?;
    (0..n)
        .map(|i| {
            worker_command(&exe, master, &format!("sweep-{}", i + 1), token)
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting worker process {}", i + 1))
        })
        .collect()
}
