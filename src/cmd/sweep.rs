//! Sweeps: one scenario run once per rate (or users) value, one after another, each step a full
//! run reported on its own (`<out>/step-NN-<rate|users>-<v>/` holds that step's summary), then
//! `<out>/sweep.json`, `<out>/sweep.csv` and a table of all steps on stdout.
//!
//! `run` and `master` call [`run_sweep`] when the scenario has a `[sweep]` (or the command line
//! `--sweep-rates`/`--sweep-users`). Other commands reuse [`run_step`]: one step on a master
//! whose workers have joined, returning its figures. Nothing here starts a master, workers or a
//! target: the caller has them, and the master never learns that runs form a sweep.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;
use stampede_master::Master;
use stampede_master::summary::RunSummary;
use stampede_scenarios::{ScenarioConfig, Sweep};

use super::common::{self, Followed, Interrupts};
use crate::cli::Exit;

/// One step of a sweep: which, and at what value.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    /// 1-based position in the sweep.
    pub number: usize,
    /// What the sweep varies: `rate` or `users`.
    pub axis: &'static str,
    /// The rate (requests/s) or users of this step.
    pub value: f64,
}

impl StepSpec {
    /// The steps of `sweep`, in order.
    pub fn all(sweep: &Sweep) -> Vec<StepSpec> {
        sweep
            .values()
            .into_iter()
            .enumerate()
            .map(|(i, value)| StepSpec {
                number: i + 1,
                axis: sweep.axis(),
                value,
            })
            .collect()
    }

    /// The folder of this step's results: `step-01-rate-2`, `step-03-users-32`,
    /// `step-02-rate-2.5`.
    pub fn dir_name(&self) -> String {
        format!(
            "step-{:02}-{}-{}",
            self.number,
            self.axis,
            format_value(self.value)
        )
    }
}

/// What one step measured: the figures of the sweep's table and files. LLM figures are
/// `None` for other kinds of scenario.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// 1-based position in the sweep.
    pub step: usize,
    /// `rate` or `users`.
    pub axis: &'static str,
    /// The step's rate (requests/s) or users.
    pub value: f64,
    /// Where the step's results were written (`None` without `--out`).
    pub dir: Option<PathBuf>,
    /// Requests completed (successes and failures).
    pub requests: u64,
    /// Requests failed.
    pub failures: u64,
    /// Seconds from the start of load to the end of the step.
    pub duration_s: f64,
    /// Requests completed per second.
    pub achieved_rps: f64,
    /// Latency (E2E) p50 and p99, ms.
    pub latency_p50_ms: f64,
    /// Latency p99, ms.
    pub latency_p99_ms: f64,
    /// Output tokens per second.
    pub output_tokens_per_second: Option<f64>,
    /// Input and output tokens per second.
    pub total_tokens_per_second: Option<f64>,
    /// Requests per second that met every SLO of `[slo]`.
    pub goodput_rps: Option<f64>,
    /// Time to first token, p50, ms.
    pub ttft_p50_ms: Option<f64>,
    /// Time to first token, p99, ms.
    pub ttft_p99_ms: Option<f64>,
    /// Time per output token, p50, ms.
    pub tpot_p50_ms: Option<f64>,
    /// Time per output token, p99, ms.
    pub tpot_p99_ms: Option<f64>,
    /// Whether every threshold held.
    pub passed: bool,
    /// The step's whole summary (as in its `summary.json`).
    #[serde(skip)]
    pub summary: Arc<RunSummary>,
    /// How the step ended, as an exit code.
    #[serde(skip)]
    pub exit: Exit,
}

impl StepResult {
    /// The figures of a finished run.
    pub fn of(spec: &StepSpec, dir: Option<PathBuf>, summary: Arc<RunSummary>, exit: Exit) -> Self {
        let doc = stampede_master::results::summary_json(&summary);
        let llm = &doc["llm"];
        let at = |pointer: &str| llm.pointer(pointer).and_then(Value::as_f64);
        let duration_s = summary.duration_s();
        let total = &summary.total;
        StepResult {
            step: spec.number,
            axis: spec.axis,
            value: spec.value,
            dir,
            requests: total.requests,
            failures: total.failures,
            duration_s,
            achieved_rps: if duration_s > 0.0 {
                total.requests as f64 / duration_s
            } else {
                0.0
            },
            latency_p50_ms: total.latency_ms(0.50),
            latency_p99_ms: total.latency_ms(0.99),
            output_tokens_per_second: at("/output_tokens_per_second"),
            total_tokens_per_second: at("/total_tokens_per_second"),
            goodput_rps: at("/goodput_rps"),
            ttft_p50_ms: at("/ttft_ms/p50"),
            ttft_p99_ms: at("/ttft_ms/p99"),
            tpot_p50_ms: at("/tpot_ms/p50"),
            tpot_p99_ms: at("/tpot_ms/p99"),
            passed: summary.passed(),
            summary,
            exit,
        }
    }
}

/// Run one step: `scenario` (already at the step's value) on the master's connected workers,
/// its results in `dir` when given; progress on stderr, the run's table on stdout. A first
/// Ctrl-C stops the run (its results still count, and `interrupts.first` tells the caller to
/// go no further); a second abandons it (an error).
pub async fn run_step(
    master: &mut Master,
    scenario: &ScenarioConfig,
    spec: &StepSpec,
    dir: Option<&Path>,
    interrupts: &Interrupts,
) -> anyhow::Result<StepResult> {
    // A summary announced earlier (a run started elsewhere) is not this step's.
    while master.try_next_finished().is_some() {}
    let handle = master.handle();
    let run_id = handle
        .start_run(Some(scenario.clone()), dir.map(Path::to_path_buf))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start step {}: {e}", spec.number))?;
    let stopper = handle.clone();
    let followed = common::follow(master, interrupts, move || {
        let h = stopper.clone();
        tokio::spawn(async move {
            let _ = h.stop_run(run_id).await;
        });
    })
    .await;
    match followed {
        Followed::Finished(Some(summary)) => {
            let exit = common::conclude(&summary, dir, None);
            Ok(StepResult::of(
                spec,
                dir.map(Path::to_path_buf),
                summary,
                exit,
            ))
        }
        Followed::Finished(None) => {
            bail!("the master stopped before step {} finished", spec.number)
        }
        Followed::Abandoned => bail!("interrupted during step {}", spec.number),
    }
}

/// Run every step of `sweep` over `base` on the master's connected workers, then write
/// `sweep.json` and `sweep.csv` to `out` (when given) and print the table. The exit code is
/// the worst of the steps' (a breached threshold in any step gives 3).
pub async fn run_sweep(
    master: &mut Master,
    base: &ScenarioConfig,
    sweep: &Sweep,
    out: Option<&Path>,
    interrupts: &Interrupts,
) -> anyhow::Result<Exit> {
    let specs = StepSpec::all(sweep);
    let mut results = Vec::with_capacity(specs.len());
    for spec in &specs {
        let scenario = base
            .sweep_step(sweep, spec.value)
            .with_context(|| format!("step {} ({} {})", spec.number, spec.axis, spec.value))?;
        println!(
            "== step {}/{}: {} {} ==",
            spec.number,
            specs.len(),
            spec.axis,
            format_value(spec.value)
        );
        let dir = out.map(|o| o.join(spec.dir_name()));
        let result = run_step(master, &scenario, spec, dir.as_deref(), interrupts).await?;
        results.push(result);
        if interrupts.first.is_cancelled() {
            eprintln!(
                "interrupted: the sweep ends after step {} of {}",
                spec.number,
                specs.len()
            );
            break;
        }
    }
    if let Some(out) = out {
        write_files(out, base, sweep, &results)?;
    }
    println!("{}", table(&base.name, sweep, &results));
    if let Some(out) = out {
        eprintln!(
            "sweep written to {} and {}",
            out.join("sweep.json").display(),
            out.join("sweep.csv").display()
        );
    }
    let worst = results.iter().map(|r| r.exit).max_by_key(|e| severity(*e));
    Ok(match worst {
        Some(e) if results.len() == specs.len() => e,
        Some(e) if severity(e) > severity(Exit::Interrupted) => e,
        _ => Exit::Interrupted,
    })
}

/// Wait until `n` workers have joined the master (or a Ctrl-C).
pub async fn wait_for_workers(
    master: &Master,
    n: usize,
    interrupts: &Interrupts,
) -> anyhow::Result<()> {
    let mut snaps = master.snapshots.clone();
    let mut announced = false;
    loop {
        let joined = snaps.borrow_and_update().workers.len();
        if joined >= n {
            return Ok(());
        }
        if !announced {
            eprintln!("the sweep starts when {n} worker(s) have joined");
            announced = true;
        }
        tokio::select! {
            r = snaps.changed() => if r.is_err() { bail!("the master stopped") },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = interrupts.first.cancelled() => bail!("interrupted while waiting for workers"),
        }
    }
}

/// The CSV header of `sweep.csv`.
pub const SWEEP_CSV_HEADER: &str = "step,axis,value,requests,failures,duration_s,achieved_rps,\
output_tokens_per_second,total_tokens_per_second,goodput_rps,ttft_p50_ms,ttft_p99_ms,tpot_p50_ms,tpot_p99_ms,\
latency_p50_ms,latency_p99_ms,passed,dir";

fn write_files(
    out: &Path,
    base: &ScenarioConfig,
    sweep: &Sweep,
    results: &[StepResult],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let steps: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut step = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Some(map) = step.as_object_mut() {
                map.insert("load".into(), Value::from(r.summary.load.clone()));
                map.insert("value".into(), json_value(r.value));
            }
            step
        })
        .collect();
    let doc = serde_json::json!({
        "scenario": base.name,
        "kind": base.kind,
        "target": base.target.to_string(),
        "axis": sweep.axis(),
        "values": sweep.values().into_iter().map(json_value).collect::<Vec<_>>(),
        "steps": steps,
    });
    let path = out.join("sweep.json");
    let text = serde_json::to_string_pretty(&doc).context("encoding sweep.json")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    let mut csv = String::from(SWEEP_CSV_HEADER);
    csv.push('\n');
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for r in results {
        csv.push_str(&format!(
            "{},{},{},{},{},{:.3},{:.3},{},{},{},{},{},{},{},{:.3},{:.3},{},{}\n",
            r.step,
            r.axis,
            format_value(r.value),
            r.requests,
            r.failures,
            r.duration_s,
            r.achieved_rps,
            opt(r.output_tokens_per_second),
            opt(r.total_tokens_per_second),
            opt(r.goodput_rps),
            opt(r.ttft_p50_ms),
            opt(r.ttft_p99_ms),
            opt(r.tpot_p50_ms),
            opt(r.tpot_p99_ms),
            r.latency_p50_ms,
            r.latency_p99_ms,
            r.passed,
            r.dir
                .as_ref()
                .and_then(|d| d.file_name())
                .map_or(String::new(), |d| d.to_string_lossy().into_owned()),
        ));
    }
    let path = out.join("sweep.csv");
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The table of all steps, for stdout.
pub fn table(name: &str, sweep: &Sweep, results: &[StepResult]) -> String {
    let mut out = format!(
        "Sweep of `{name}` by {} ({} of {} steps)\n",
        sweep.axis(),
        results.len(),
        sweep.values().len()
    );
    out.push_str(&format!(
        "{:>8} {:>10} {:>8} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        sweep.axis(),
        "achieved/s",
        "fails",
        "out tok/s",
        "total tok/s",
        "goodput",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "TPOT p99",
        "p50 ms",
        "p99 ms"
    ));
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for r in results {
        out.push_str(&format!(
            "{:>8} {:>10.2} {:>8} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9.1} {:>9.1}\n",
            format_value(r.value),
            r.achieved_rps,
            r.failures,
            cell(r.output_tokens_per_second),
            cell(r.total_tokens_per_second),
            r.goodput_rps.map_or("-".into(), |v| format!("{v:.2}")),
            cell(r.ttft_p50_ms),
            cell(r.ttft_p99_ms),
            cell(r.tpot_p50_ms),
            cell(r.tpot_p99_ms),
            r.latency_p50_ms,
            r.latency_p99_ms,
        ));
    }
    out
}

/// A value as steps name it: `2`, `2.5`, `0.25`.
fn format_value(v: f64) -> String {
    whole(v).map_or_else(|| v.to_string(), |n| n.to_string())
}

/// `v` as an integer, if it is one.
fn whole(v: f64) -> Option<i64> {
    (v.fract() == 0.0 && v.abs() < 1e15).then_some(v as i64)
}

/// A step's value in JSON: users (and whole rates) as integers, other rates as they are.
fn json_value(v: f64) -> Value {
    whole(v).map_or_else(|| Value::from(v), Value::from)
}

/// How bad an exit is, to keep the worst of a sweep's steps.
fn severity(e: Exit) -> u8 {
    match e {
        Exit::Success => 0,
        Exit::OnError(_) => 1,
        Exit::Degraded => 2,
        Exit::ThresholdBreached => 3,
        Exit::Stopped => 4,
        Exit::Incomplete => 5,
        Exit::Interrupted => 6,
        Exit::Error => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_named_by_axis_and_value() {
        let steps = StepSpec::all(&Sweep::Rates(vec![2.0, 2.5, 10.0]));
        let names: Vec<String> = steps.iter().map(StepSpec::dir_name).collect();
        assert_eq!(
            names,
            ["step-01-rate-2", "step-02-rate-2.5", "step-03-rate-10"]
        );
        let users = StepSpec::all(&Sweep::Users(vec![32]));
        assert_eq!(users[0].dir_name(), "step-01-users-32");
        assert!(severity(Exit::ThresholdBreached) > severity(Exit::Success));
    }

    /// An `llm` step of 4 s with 300 input and 900 output tokens.
    fn llm_step() -> StepResult {
        use stampede_master::summary::{AGGREGATED, NameStats};
        let mut total = NameStats::new("", AGGREGATED);
        total.requests = 10;
        for us in [100_000, 200_000] {
            stampede_scenarios::recorder::record_clamped(&mut total.latency, us);
        }
        total.counters.insert("input_tokens".into(), 300);
        total.counters.insert("output_tokens".into(), 900);
        let summary = RunSummary {
            run_id: 1,
            scenario: "llm".into(),
            kind: "llm".into(),
            target: "http://127.0.0.1:8000".into(),
            load: "open: 4 req/s".into(),
            started_unix_ms: 1_700_000_000_000,
            stopped_unix_ms: 1_700_000_004_000,
            ended_unix_ms: 1_700_000_004_000,
            stop_reason: stampede_master::state::RunEnd::DurationReached,
            tolerate_worker_loss: false,
            stats: Vec::new(),
            total,
            failures: Vec::new(),
            history: Vec::new(),
            workers: Vec::new(),
            schedule_lag: None,
            thresholds: Vec::new(),
            events: Vec::new(),
            tls: None,
            specs: stampede_scenarios::Kind::Llm.specs(),
        };
        let spec = &StepSpec::all(&Sweep::Rates(vec![4.0]))[0];
        StepResult::of(spec, None, Arc::new(summary), Exit::Success)
    }

    #[test]
    fn steps_report_total_tokens_per_second() {
        let step = llm_step();
        // (300 input + 900 output tokens) / 4 s.
        assert_eq!(step.total_tokens_per_second, Some(300.0));
        assert_eq!(step.output_tokens_per_second, Some(225.0));

        let dir = tempfile::tempdir().unwrap();
        let base = ScenarioConfig::parse(
            "name = \"llm\"\ntarget = \"http://127.0.0.1:8000\"\nduration = \"4s\"\n\
             [load]\nmodel = \"open\"\nrate = 4\n[[requests]]\npath = \"/\"\n",
            "llm.toml",
            &Default::default(),
        )
        .unwrap();
        let sweep = Sweep::Rates(vec![4.0]);
        write_files(dir.path(), &base, &sweep, std::slice::from_ref(&step)).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("sweep.csv")).unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        let column = header
            .iter()
            .position(|c| *c == "total_tokens_per_second")
            .expect("a total_tokens_per_second column");
        assert_eq!(row[column], "300.000", "{csv}");
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("sweep.json")).unwrap())
                .unwrap();
        assert_eq!(json["steps"][0]["total_tokens_per_second"], 300.0);
        // Whole values are integers (users always are).
        assert_eq!(json["values"], serde_json::json!([4]), "{json:#}");
        assert_eq!(json["steps"][0]["value"], 4, "{json:#}");
        assert_eq!(json_value(2.5), 2.5);

        let table = table("llm", &sweep, &[step]);
        let mut lines = table.lines().skip(1);
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        let cells: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        // "out tok/s" and "total tok/s" are two words each.
        assert_eq!(&head[3..7], ["out", "tok/s", "total", "tok/s"], "{table}");
        assert_eq!(cells[4], "300.0", "{table}");
    }
}
