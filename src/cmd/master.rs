//! `stampede master`: wait for workers, run the scenario (when they have joined, when the
//! API says so, or when `s` is pressed in the terminal UI), serve the API, and in headless
//! mode exit with the run's verdict.

use stampede_master::tui::LogLines;
use stampede_master::{Master, MasterConfig};
use stampede_protocol::transport::MasterIdentity;

use super::common::{self, Followed, TuiSettings};
use super::run::stop_grace;
use crate::cli::{Exit, MasterOpt};

pub async fn run(opt: MasterOpt, logs: LogLines) -> anyhow::Result<Exit> {
    let tui = common::use_tui(&opt.flags);
    // `--tui` without a terminal goes on headless.
    let headless = opt.flags.headless || (opt.flags.tui && !tui);
    let scenario = match &opt.scenario {
        Some(path) => Some(common::load_scenario(path, &opt.flags)?),
        None if headless => {
            anyhow::bail!("--headless needs --scenario: there is nothing to run otherwise")
        }
        None => None,
    };
    // The built-in target, if any, runs for the master's lifetime (until `_target` drops).
    let (scenario, _target) = match scenario {
        Some(s) => {
            let (s, target) = common::start_builtin(s, opt.bind.ip()).await?;
            if let Some(t) = &target {
                eprintln!("built-in target listening on {}", t.addresses());
            }
            (Some(s), target)
        }
        None => match opt
            .flags
            .target
            .as_deref()
            .and_then(|t| t.strip_prefix("builtin:"))
        {
            Some(kind) => {
                let t = common::start_target(kind, opt.bind.ip()).await?;
                eprintln!("built-in target listening on {}", t.addresses());
                (None, Some(t))
            }
            None => (None, None),
        },
    };
    // What runs the API builds (the health workload) aim at.
    let target = match (&scenario, &_target) {
        (Some(s), _) => Some(s.target.to_string()),
        (None, Some(t)) => Some(t.url.clone()),
        (None, None) => opt.flags.target.clone(),
    };
    // Every run is kept; an API-driven master keeps them even without --out.
    let runs_dir = match (&opt.flags.out, opt.api) {
        (Some(out), _) => Some(out.join("runs")),
        (None, Some(_)) => common::default_data_dir().map(|d| d.join("runs")),
        (None, None) => None,
    };
    if let Some(dir) = &runs_dir {
        eprintln!("runs kept in {}", dir.display());
    }
    let token = common::master_token(&opt.token, opt.bind.port())?;
    let identity = match (&opt.cert, &opt.key) {
        (Some(cert), Some(key)) => Some(MasterIdentity::from_pem_files(cert, key)?),
        _ => None,
    };
    let expect = opt.expect_workers.or(headless.then_some(1));
    let sweep = scenario.as_ref().and_then(|s| s.sweep.clone());
    if sweep.is_some() && (tui || !(headless || opt.expect_workers.is_some())) {
        anyhow::bail!(
            "a sweep runs its steps one after another by itself: give --headless or --expect-workers N (not --tui)"
        );
    }
    let grace = scenario
        .as_ref()
        .map_or(std::time::Duration::from_secs(15), stop_grace);
    let scenario_line = scenario.as_ref().map(common::scenario_line);
    let scenario_for_report = scenario.clone();
    let interrupts = common::interrupts();
    let mut master = Master::start(
        MasterConfig {
            bind: opt.bind,
            token,
            identity,
            scenario: scenario.clone(),
            // A sweep starts its steps itself.
            auto_start_at: if sweep.is_some() { None } else { expect },
            out: opt.flags.out.clone(),
            records: common::record_paths(&opt.flags),
            runs_dir,
            target,
            api: opt.api,
            stop_grace: grace,
            tolerate_worker_loss: opt.flags.tolerate_worker_loss,
        },
        interrupts.first.clone(),
    )
    .await?;
    eprintln!(
        "master certificate SHA-256 fingerprint: {} (workers may pin it with --master-fingerprint)",
        master.fingerprint
    );
    eprintln!("master listening for workers on {} (QUIC)", master.addr);
    if let Some(api) = master.api_addr {
        eprintln!("API on http://{api}");
    }
    if let (Some(sweep), Some(base), Some(n)) = (&sweep, &scenario, expect) {
        let swept = match super::sweep::wait_for_workers(&master, n, &interrupts).await {
            Ok(()) => {
                super::sweep::run_sweep(
                    &mut master,
                    base,
                    sweep,
                    opt.flags.out.as_deref(),
                    &interrupts,
                )
                .await
            }
            Err(e) => Err(e),
        };
        master.shutdown().await;
        return swept;
    }
    if let Some(n) = expect {
        eprintln!("the run starts when {n} worker(s) have joined");
    }
    if tui {
        let settings = TuiSettings {
            join_hint: master.addr.to_string(),
            scenario: scenario_line,
            logs,
        };
        let (ui, mut finished) = common::watch_in_tui(&mut master, &interrupts, settings).await;
        // A run still going on (q pressed twice) is finished by the shutdown.
        finished.extend(master.shutdown().await);
        ui?;
        return Ok(common::conclude_all(
            &finished,
            scenario_for_report.as_ref(),
            opt.flags.out.as_deref(),
            opt.flags.exit_code_on_error,
        )
        .unwrap_or(Exit::Success));
    }
    let exit = loop {
        match common::follow(&mut master, &interrupts, || {}).await {
            Followed::Finished(Some(summary)) => {
                let exit = common::conclude(
                    &summary,
                    opt.flags.out.as_deref(),
                    opt.flags.exit_code_on_error,
                );
                if let Some(s) = &scenario_for_report {
                    common::priority_report(&summary, s, opt.flags.out.as_deref());
                }
                if headless || interrupts.first.is_cancelled() {
                    break exit;
                }
            }
            Followed::Finished(None) => break Exit::Success,
            Followed::Abandoned => {
                // The second signal: write what the master has, now.
                master.handle().finish_now().await;
                break Exit::Interrupted;
            }
        }
    };
    master.shutdown().await;
    Ok(exit)
}
