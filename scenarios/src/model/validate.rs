//! The checks of a scenario's common parts that serde cannot make: each turns a table as
//! written into its validated value (a [`Target`], a [`LoadModel`], thresholds) or says which
//! field is wrong and why, as `Err((field, message))`. The scenario runs them in order around
//! its kind's own checks ([`crate::scenario`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::file::{HttpFile, LoadFile, PlacementFile, WorkerTypeFile};
use super::{DEFAULT_DURATION, DEFAULT_SIMULTANEOUS_USERS, Target};
use crate::load::{Arrival, LoadModel, Stage, StageTarget};
use crate::threshold::Threshold;
use crate::tls::TlsFile;
use crate::units::{Count, HumanDuration};

fn err<T>(field: &str, message: String) -> Result<T, (String, String)> {
    Err((field.to_string(), message))
}

/// `target`: a base URL, or a built-in target (`builtin:http`).
pub fn target(text: &str) -> Result<Target, (String, String)> {
    let target = match text.strip_prefix("builtin:") {
        Some(kind) if super::BUILTIN_TARGETS.contains(&kind) => Target::Builtin(kind.to_string()),
        Some(kind) => {
            return err(
                "target",
                format!(
                    "unknown built-in target `{kind}` (known: {})",
                    super::BUILTIN_TARGETS.join(", ")
                ),
            );
        }
        None => Target::Url(parse_base_url(text).map_err(|m| ("target".to_string(), m))?),
    };
    Ok(target)
}

/// `[load]`: the load model.
pub fn load(file: &LoadFile) -> Result<LoadModel, (String, String)> {
    let load = match file {
        LoadFile::Closed { users, spawn_rate } => {
            if users.0 == 0 {
                return err("load.users", "must be at least 1".into());
            }
            let spawn_rate = spawn_rate.map(|r| r.0).unwrap_or(f64::INFINITY);
            if spawn_rate.is_nan() || spawn_rate <= 0.0 {
                return err("load.spawn_rate", "must be above 0 users per second".into());
            }
            LoadModel::Closed {
                users: users.0,
                spawn_rate,
            }
        }
        LoadFile::Simultaneous { users, mode } => {
            let users = users.map_or(DEFAULT_SIMULTANEOUS_USERS, |u| u.0);
            if users == 0 {
                return err("load.users", "must be at least 1".into());
            }
            LoadModel::Simultaneous { users, mode: *mode }
        }
        LoadFile::Open {
            rate,
            arrival,
            burstiness,
            max_in_flight,
        } => {
            if rate.0 <= 0.0 {
                return err("load.rate", "must be above 0 requests per second".into());
            }
            let (arrival, burstiness) = validate_arrival(*arrival, *burstiness)?;
            LoadModel::Open {
                rate: rate.0,
                arrival,
                burstiness,
                max_in_flight: validate_in_flight(*max_in_flight)?,
            }
        }
        LoadFile::Stages {
            arrival,
            burstiness,
            max_in_flight,
            stages,
        } => {
            let (arrival, burstiness) = validate_arrival(*arrival, *burstiness)?;
            if stages.is_empty() {
                return err("load.stages", "needs at least one stage".into());
            }
            let by_users = stages[0].users.is_some();
            let mut out = Vec::with_capacity(stages.len());
            for (i, s) in stages.iter().enumerate() {
                let field = format!("load.stages[{i}]");
                let target = match (s.users, s.rate) {
                    (Some(u), None) if by_users => u.0 as f64,
                    (None, Some(r)) if !by_users => r.0,
                    (Some(_), Some(_)) => {
                        return Err((field, "give `users` or `rate`, not both".into()));
                    }
                    (None, None) => return Err((field, "needs `users` or `rate`".into())),
                    _ => return Err((
                        field,
                        "all stages must use the same kind of target (all `users` or all `rate`)"
                            .into(),
                    )),
                };
                if s.duration.0.is_zero() {
                    return Err((format!("{field}.duration"), "must be above 0".into()));
                }
                out.push(Stage {
                    duration: s.duration.0,
                    target,
                });
            }
            LoadModel::Stages {
                target: if by_users {
                    StageTarget::Users
                } else {
                    StageTarget::Rate
                },
                stages: out,
                arrival,
                burstiness,
                max_in_flight: validate_in_flight(*max_in_flight)?,
            }
        }
    };
    Ok(load)
}

/// `duration`: as given, else the stages' sum, else [`DEFAULT_DURATION`]; above 0.
pub fn duration(
    given: Option<HumanDuration>,
    load: &LoadModel,
) -> Result<Duration, (String, String)> {
    let duration = match (given, load) {
        (Some(d), _) => d.0,
        (None, LoadModel::Stages { stages, .. }) => stages.iter().map(|s| s.duration).sum(),
        (None, _) => DEFAULT_DURATION,
    };
    if duration.is_zero() {
        return err("duration", "must be above 0".into());
    }
    Ok(duration)
}

/// `[tls]` and `[http]`: a valid server name, at least one HTTP/2 connection.
pub fn connection(tls: Option<&TlsFile>, http: Option<&HttpFile>) -> Result<(), (String, String)> {
    if let Some(name) = tls.and_then(|t| t.server_name.as_ref()) {
        crate::tls::check_server_name(name).map_err(|m| ("tls.server_name".to_string(), m))?;
    }
    if let Some(h) = http
        && h.connections.is_some_and(|c| c.0 == 0)
    {
        return err("http.connections", "must be at least 1".into());
    }
    Ok(())
}

/// `[worker_type]` and `[placement]`, the tables other tools read.
pub fn tables(
    worker_type: Option<&WorkerTypeFile>,
    placement: Option<&PlacementFile>,
) -> Result<(), (String, String)> {
    if let Some(w) = worker_type
        && w.accelerator_type.trim().is_empty()
    {
        return err("worker_type.accelerator_type", "must not be empty".into());
    }
    if let Some(p) = placement {
        if p.model.trim().is_empty() {
            return err("placement.model", "must not be empty".into());
        }
        if p.device_type.is_none() && p.devices.is_empty() {
            return err(
                "placement",
                "needs `device_type` (every node's device) or `devices` (by worker name)".into(),
            );
        }
        let empty = |d: &String| d.trim().is_empty();
        if p.device_type.as_ref().is_some_and(empty) || p.devices.values().any(empty) {
            return err(
                "placement.devices",
                "a device type must not be empty".into(),
            );
        }
    }
    Ok(())
}

/// `[thresholds]`, in the file's (sorted) order.
pub fn thresholds(table: &BTreeMap<String, String>) -> Result<Vec<Threshold>, (String, String)> {
    let mut thresholds = Vec::new();
    for (key, expr) in table {
        thresholds.push(Threshold::parse(key, expr).map_err(|m| (format!("thresholds.{key}"), m))?);
    }
    Ok(thresholds)
}

/// The arrivals and their gamma shape: `burstiness` makes them gamma (it must be a positive
/// number, and makes no sense with `constant`); gamma without it has shape 1 (Poisson).
fn validate_arrival(
    arrival: Arrival,
    burstiness: Option<f64>,
) -> Result<(Arrival, f64), (String, String)> {
    match (arrival, burstiness) {
        (_, Some(b)) if !(b.is_finite() && b > 0.0) => Err((
            "load.burstiness".into(),
            format!("must be a number above 0 (1 is Poisson, below 1 bursty), not {b}"),
        )),
        (Arrival::Constant, Some(_)) => Err((
            "load.burstiness".into(),
            "applies to gamma arrivals; `arrival = \"constant\"` has none".into(),
        )),
        (_, Some(b)) => Ok((Arrival::Gamma, b)),
        (a, None) => Ok((a, 1.0)),
    }
}

fn validate_in_flight(v: Option<Count>) -> Result<u64, (String, String)> {
    match v {
        Some(Count(0)) => Err(("load.max_in_flight".into(), "must be at least 1".into())),
        Some(Count(n)) => Ok(n),
        None => Ok(crate::load::DEFAULT_MAX_IN_FLIGHT),
    }
}

/// Check a base URL: `http[s]://host:port[/base]`, no query or fragment.
fn parse_base_url(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "`{s}`: unsupported scheme `{other}` (use http:// or https://)"
            ));
        }
        None => return Err(format!("`{s}` has no scheme (write http://{s})")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "`{s}`: a target URL takes no query; put it in the request path"
        ));
    }
    Ok(uri)
}
