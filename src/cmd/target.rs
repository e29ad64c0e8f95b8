//! `stampede target http`, `llm`, `registry` and `scheduler`: the built-in targets, until
//! Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use stampede_targets::http::{HttpTargetConfig, HttpTargetStats};
use stampede_targets::llm::{LlmTargetConfig, LlmTargetStats};
use stampede_targets::registry::{RegistryConfig, RegistryStats};
use stampede_targets::scheduler::{SchedulerConfig, SchedulerStats};
use stampede_targets::tls::{ServerTls, Transport};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    Exit, TargetHttpOpt, TargetLlmOpt, TargetRegistryOpt, TargetSchedulerOpt, TargetServeOpt,
};

pub async fn http(opt: TargetHttpOpt) -> anyhow::Result<Exit> {
    if !(0.0..=1.0).contains(&opt.error_rate) {
        anyhow::bail!("--error-rate {} must be between 0 and 1", opt.error_rate);
    }
    if !(100..=999).contains(&opt.error_status) {
        anyhow::bail!("--error-status {} is not an HTTP status", opt.error_status);
    }
    let transport = transport(&opt.serve, opt.bind)?;
    let listener = tokio::net::TcpListener::bind(opt.bind)
        .await
        .with_context(|| format!("binding {}", opt.bind))?;
    let addr = listener.local_addr()?;
    println!(
        "stampede target http listening on {}://{addr}{}",
        transport.scheme(),
        described(&transport)
    );
    let config = HttpTargetConfig {
        body_size: opt.body_size.0 as usize,
        delay: opt.delay.0,
        jitter: opt.jitter.0,
        error_rate: opt.error_rate,
        error_status: opt.error_status,
        transport,
    };
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = super::common::StopSignals::new().recv().await;
        on_signal.cancel();
    });
    let stats = Arc::new(HttpTargetStats::default());
    stampede_targets::http::serve(listener, config, stats.clone(), shutdown).await?;
    eprintln!(
        "served {} requests ({} injected errors)",
        stats.requests(),
        stats.errors()
    );
    Ok(Exit::Success)
}

pub async fn llm(opt: TargetLlmOpt) -> anyhow::Result<Exit> {
    for (flag, rate) in [
        ("--error-rate", opt.error_rate),
        ("--fault-rate", opt.fault_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            anyhow::bail!("{flag} {rate} must be between 0 and 1");
        }
    }
    let max_batch = usize::try_from(opt.max_batch.0)
        .ok()
        .filter(|&n| n <= tokio::sync::Semaphore::MAX_PERMITS)
        .with_context(|| format!("--max-batch {} is too large", opt.max_batch.0))?;
    let max_model_len = u32::try_from(opt.max_model_len.0)
        .ok()
        .filter(|&n| n > 0)
        .with_context(|| {
            format!(
                "--max-model-len {} must be between 1 and {}",
                opt.max_model_len.0,
                u32::MAX
            )
        })?;
    let config = LlmTargetConfig {
        model: opt.model,
        any_model: opt.any_model,
        ttft: opt.ttft,
        tpot: opt.tpot,
        output_len: opt.output_len,
        max_batch,
        batch_knee: opt.batch_knee,
        batch_slope: opt.batch_slope,
        max_model_len,
        error_rate: opt.error_rate,
        fault_rate: opt.fault_rate,
        faults: opt.faults,
        seed: opt.seed,
        vllm_stream_delimiter: opt.vllm_stream_delimiter,
        triton_exclude_input: !opt.triton_include_input,
        precise_timing: opt.precise_timing,
        transport: transport(&opt.serve, opt.bind)?,
    };
    let listener = tokio::net::TcpListener::bind(opt.bind)
        .await
        .with_context(|| format!("binding {}", opt.bind))?;
    let addr = listener.local_addr()?;
    println!(
        "stampede target llm serving `{}` on {}://{addr} (ttft {}, tpot {}){}",
        config.model,
        config.transport.scheme(),
        config.ttft,
        config.tpot,
        described(&config.transport)
    );
    let grpc = match opt.grpc_bind {
        Some(bind) => {
            let l = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("binding --grpc-bind {bind}"))?;
            // TLS with the HTTP port's certificate under --tls; h2c is gRPC's own plaintext.
            let scheme = match config.transport {
                Transport::Tls(_) => "https",
                Transport::Http1 | Transport::H2c => "http",
            };
            println!(
                "stampede target llm serving JetStream gRPC on {scheme}://{}",
                l.local_addr()?
            );
            Some(l)
        }
        None => None,
    };
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = super::common::StopSignals::new().recv().await;
        on_signal.cancel();
    });
    let stats = Arc::new(LlmTargetStats::new());
    stampede_targets::llm::serve_with_grpc(listener, grpc, config, stats.clone(), shutdown).await?;
    let totals = stats.snapshot();
    eprintln!(
        "served {} requests ({} failures), {} prompt and {} completion tokens",
        totals.requests, totals.failures, totals.prompt_tokens, totals.completion_tokens
    );
    Ok(Exit::Success)
}

pub async fn registry(opt: TargetRegistryOpt) -> anyhow::Result<Exit> {
    let bandwidth = opt.bandwidth.map(|r| r.0);
    if let Some(b) = bandwidth
        && !(b.is_finite() && b > 0.0)
    {
        anyhow::bail!("--bandwidth {b} must be above 0 bytes per second");
    }
    let transport = transport(&opt.serve, opt.bind)?;
    let listener = tokio::net::TcpListener::bind(opt.bind)
        .await
        .with_context(|| format!("binding {}", opt.bind))?;
    let addr = listener.local_addr()?;
    println!(
        "stampede target registry serving {} models on {}://{addr} (Tiny-LLM: \
         /performance/{}/{}/model.zip, {} bytes, sha256 {}){}",
        stampede_targets::registry::MODELS,
        transport.scheme(),
        stampede_targets::registry::sanitize(stampede_targets::registry::TINY_LLM),
        stampede_targets::registry::VERSION,
        stampede_targets::registry::TINY_LLM_BYTES,
        stampede_targets::registry::TINY_LLM_SHA256,
        described(&transport),
    );
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = super::common::StopSignals::new().recv().await;
        on_signal.cancel();
    });
    let stats = Arc::new(RegistryStats::new());
    stampede_targets::registry::serve(
        listener,
        RegistryConfig {
            bandwidth,
            transport,
        },
        stats.clone(),
        shutdown,
    )
    .await?;
    let c = stats.counts();
    eprintln!("served {} requests, {} body bytes", c.requests, c.bytes);
    Ok(Exit::Success)
}

pub async fn scheduler(opt: TargetSchedulerOpt) -> anyhow::Result<Exit> {
    if opt.gpus == 0 {
        anyhow::bail!("--gpus must be at least 1");
    }
    let mut config = SchedulerConfig {
        gpus: opt.gpus,
        ..SchedulerConfig::default()
    };
    if !opt.models.is_empty() {
        config.service_times = opt.models.iter().map(|(m, t)| (m.clone(), t.0)).collect();
    }
    config.tls = scheduler_tls(&opt)?;
    let listener = tokio::net::TcpListener::bind(opt.bind)
        .await
        .with_context(|| format!("binding {}", opt.bind))?;
    let addr = listener.local_addr()?;
    let models: Vec<String> = config
        .service_times
        .iter()
        .map(|(m, t)| format!("{m} {}", stampede_scenarios::units::format_duration(*t)))
        .collect();
    let over = if config.tls.is_some() {
        "over TLS, "
    } else {
        ""
    };
    println!(
        "stampede target scheduler on {addr} (gRPC scheduler.SchedulerService, {over}{} GPU(s); {})",
        config.gpus,
        models.join(", ")
    );
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = super::common::StopSignals::new().recv().await;
        on_signal.cancel();
    });
    let stats = Arc::new(SchedulerStats::default());
    stampede_targets::scheduler::serve(listener, config, stats.clone(), shutdown).await?;
    let c = stats.counts();
    eprintln!(
        "received {} requests: {} completed, {} expired, {} invalid; by tier {:?}, expired by tier {:?}",
        c.received, c.completed, c.expired, c.invalid, c.received_by_tier, c.expired_by_tier
    );
    Ok(Exit::Success)
}

/// The transport `opt` asks for: TLS with the given or a self-signed certificate (written to
/// `--cert-out` if asked), h2c, or plaintext HTTP/1.1. Clap already refuses `--h2c` with TLS.
fn transport(opt: &TargetServeOpt, bind: SocketAddr) -> anyhow::Result<Transport> {
    let tls = match (&opt.cert, &opt.key) {
        (Some(cert), Some(key)) => Some(ServerTls::from_pem_files(cert, key)?),
        // Clap makes --cert and --key require each other.
        (Some(_), None) | (None, Some(_)) => anyhow::bail!("--cert and --key go together"),
        (None, None) if opt.tls => {
            Some(ServerTls::self_signed(bind.ip()).context("making a self-signed certificate")?)
        }
        (None, None) => None,
    };
    let Some(tls) = tls else {
        if let Some(out) = &opt.cert_out {
            anyhow::bail!(
                "--cert-out {} writes the TLS certificate: add --tls",
                out.display()
            );
        }
        return Ok(if opt.h2c {
            Transport::H2c
        } else {
            Transport::Http1
        });
    };
    if let Some(out) = &opt.cert_out {
        std::fs::write(out, tls.certificate_pem())
            .with_context(|| format!("writing the certificate to --cert-out {}", out.display()))?;
    }
    Ok(Transport::Tls(Arc::new(tls)))
}

/// What to add to the "listening on" line about the transport.
fn described(transport: &Transport) -> String {
    match transport {
        Transport::Http1 => String::new(),
        Transport::H2c => " (HTTP/1.1 and h2c)".into(),
        Transport::Tls(tls) if tls.names().is_empty() => " (TLS, certificate from --cert)".into(),
        Transport::Tls(tls) => format!(
            " (TLS, self-signed certificate for {})",
            tls.names().join(", ")
        ),
    }
}

/// The scheduler's TLS from `--tls`, `--cert`/`--key` and `--cert-out`: none without them.
fn scheduler_tls(
    opt: &TargetSchedulerOpt,
) -> anyhow::Result<Option<stampede_targets::scheduler::tls::SchedulerTls>> {
    use stampede_targets::scheduler::tls::SchedulerTls;
    use stampede_targets::tls::ServerTls;
    let tls = match (&opt.cert, &opt.key) {
        (Some(cert), Some(key)) => SchedulerTls::from(ServerTls::from_pem_files(cert, key)?),
        _ if opt.tls => SchedulerTls::self_signed()?,
        _ => {
            if opt.cert_out.is_some() {
                anyhow::bail!("--cert-out needs --tls (or --cert and --key)");
            }
            return Ok(None);
        }
    };
    if let Some(out) = &opt.cert_out {
        std::fs::write(out, tls.cert_pem())
            .with_context(|| format!("writing --cert-out {}", out.display()))?;
    }
    Ok(Some(tls))
}
