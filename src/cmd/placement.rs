//! `stampede placement {fit, serve, record, generate}`: device placement (as PEPPER's Profiler does
//! it) on the command line. The work is in the `stampede-placement` crate; this reads flags,
//! prints, and maps errors.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use stampede_placement::model::{Fitted, Params, PlacementModel};
use stampede_placement::prometheus::Prometheus;
use stampede_placement::server::{self, ServerConfig};
use stampede_placement::{law, record, row};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    Exit, PlacementFitOpt, PlacementGenerateOpt, PlacementRecordOpt, PlacementServeOpt,
};

pub async fn fit(opt: PlacementFitOpt) -> anyhow::Result<Exit> {
    if opt.folds < 2 {
        anyhow::bail!("--folds {} must be at least 2", opt.folds);
    }
    if opt.trees == 0 || opt.depth == 0 {
        anyhow::bail!("--trees and --depth must be at least 1");
    }
    if !(opt.learning_rate > 0.0 && opt.learning_rate <= 1.0) {
        anyhow::bail!("--learning-rate {} must be in (0, 1]", opt.learning_rate);
    }
    let mut rows = Vec::new();
    for path in &opt.data {
        let more = row::read_csv(path)?;
        eprintln!("read {} rows from {}", more.len(), path.display());
        rows.extend(more);
    }
    let params = Params {
        iterations: opt.trees,
        learning_rate: opt.learning_rate,
        max_depth: opt.depth,
        seed: opt.seed,
    };
    let sources = opt.data.iter().map(|p| p.display().to_string()).collect();
    let folds = opt.folds;
    let fitted =
        tokio::task::spawn_blocking(move || PlacementModel::fit(&rows, &params, folds, sources))
            .await
            .context("training stopped")??;
    print_fit(&fitted);
    fitted
        .model
        .save(&opt.out)
        .context("writing the model file")?;
    println!("model written to {}", opt.out.display());
    Ok(Exit::Success)
}

fn print_fit(f: &Fitted) {
    let t = &f.model.file.training;
    let p = &f.model.file.algorithm.params;
    let devices: Vec<String> = t.devices.iter().map(|(d, n)| format!("{d} {n}")).collect();
    println!(
        "{} rows, {} models, {} devices ({})",
        t.rows,
        t.models,
        t.devices.len(),
        devices.join(", ")
    );
    let cv = &f.cross_validation;
    println!(
        "{}-fold cross-validation (gradient-boosted trees: {} trees of depth {}, learning rate {}):",
        cv.folds, p.iterations, p.max_depth, p.learning_rate
    );
    println!("  MAE   {:.6} s", cv.mae_s);
    println!("  RMSE  {:.6} s", cv.rmse_s);
    println!("  R²    {:.4}", cv.r2);
    println!(
        "  median relative error {:.1} %",
        cv.median_relative_error * 100.0
    );
    println!("feature importances (permutation: growth of the held-out MAE when shuffled):");
    for i in &f.importances {
        println!(
            "  {:<24} {:>12.6} s  {:>5.1} %",
            i.feature,
            i.mae_increase_s,
            i.share * 100.0
        );
    }
}

pub async fn serve(opt: PlacementServeOpt) -> anyhow::Result<Exit> {
    let prometheus = opt
        .prometheus
        .as_deref()
        .map(Prometheus::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--prometheus / PROMETHEUS_IP: {e}"))?;
    let addr = SocketAddr::new(opt.bind, opt.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    match &prometheus {
        Some(p) => eprintln!(
            "cluster requests read nodes from Prometheus at {}",
            p.addr()
        ),
        None => eprintln!(
            "no Prometheus (--prometheus or PROMETHEUS_IP): only standalone requests (with \
             device_type) can be answered"
        ),
    }
    println!("stampede placement serve listening on http://{addr}");
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = super::common::StopSignals::new().recv().await;
        on_signal.cancel();
    });
    server::serve(
        listener,
        ServerConfig {
            model: opt.model,
            prometheus,
        },
        shutdown,
    )
    .await
    .context("serving /api/profiling")?;
    Ok(Exit::Success)
}

pub fn record(opt: PlacementRecordOpt) -> anyhow::Result<Exit> {
    let scenario = stampede_scenarios::ScenarioConfig::load(&opt.scenario)?;
    let placement = scenario.file.placement.as_ref().with_context(|| {
        format!(
            "{} has no [placement] table: add one naming the model (model, conv_layers, \
             pool_layers, fc_layers, filter_details, total_parameters, model_input_size, \
             model_output_size) and the nodes' device (device_type, or devices by worker name)",
            opt.scenario.display()
        )
    })?;
    let (file, summary) = record::read_summary(&opt.results)?;
    let recorded = record::rows_from_run(placement, &summary)?;
    let rows: Vec<row::Row> = recorded.rows.iter().map(|(_, r)| r.clone()).collect();
    row::append_csv(&opt.data, &rows)?;
    println!(
        "appended {} row(s) from {} to {}:",
        rows.len(),
        file.display(),
        opt.data.display()
    );
    for (worker, r) in &recorded.rows {
        println!(
            "  {worker}: {} on {}, CPU {:.1} %, disk {:.1} %, mean {:.6} s",
            r.spec.model, r.node.device_type, r.node.cpu_usage, r.node.disk_usage, r.execution_time
        );
    }
    for s in &recorded.skipped {
        eprintln!("skipped {}: {}", s.worker, s.reason);
    }
    for n in &recorded.notes {
        eprintln!("note: {n}");
    }
    Ok(Exit::Success)
}

pub fn generate(opt: PlacementGenerateOpt) -> anyhow::Result<Exit> {
    let rows = law::generate(opt.rows.0 as usize, opt.models.0 as usize, opt.seed);
    match &opt.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            row::write_rows(std::io::BufWriter::new(file), &rows, true)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} rows to {}", rows.len(), path.display());
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            row::write_rows(&mut lock, &rows, true).context("writing to standard output")?;
            lock.flush()?;
        }
    }
    Ok(Exit::Success)
}
