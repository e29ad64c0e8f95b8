//! The cluster's nodes as a Prometheus server sees them: CPU usage from node exporter's
//! `node_cpu_seconds_total` (idle mode, 1 m rate), disk usage of `/` from
//! `node_filesystem_avail_bytes` / `node_filesystem_size_bytes`, and each node's device from
//! the characterization agent's `char_node_device_model`, joined per scrape target.
//!
//! Called by the server for each cluster-form request (three instant queries over HTTP/1.1,
//! `GET /api/v1/query`). Plain `http://` only; it caches nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// CPU busy, percent, per scrape target: 100 minus the idle share averaged over its CPUs.
pub const CPU_QUERY: &str =
    r#"100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m])))"#;
/// Used share of `/`, percent, per scrape target.
pub const DISK_QUERY: &str = r#"max by (instance) (100 * (1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"}))"#;
/// One series per node, its labels naming the node and its device.
pub const DEVICE_QUERY: &str = "char_node_device_model";

/// How long one query may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A Prometheus server's address.
#[derive(Debug, Clone, PartialEq)]
pub struct Prometheus {
    /// `host:port`.
    authority: String,
    /// Path prefix before `/api/v1/query` (empty, or e.g. `/prometheus`).
    prefix: String,
}

/// Why the nodes could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// No connection, or no answer in time.
    #[error("Prometheus at {addr} is unreachable: {reason}")]
    Unreachable {
        /// The server.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// It answered, but not with query results.
    #[error("Prometheus at {addr} answered `{query}` with {message}")]
    Answer {
        /// The server.
        addr: String,
        /// The query.
        query: String,
        /// What it said.
        message: String,
    },
    /// It knows no node.
    #[error(
        "Prometheus at {addr} knows no nodes: no `{DEVICE_QUERY}` series (is the characterization agent scraped?)"
    )]
    NoNodes {
        /// The server.
        addr: String,
    },
}

/// A node: its identity from the characterization agent, its load from node exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The scrape target (`instance` label).
    pub instance: String,
    /// `char_node_name`.
    pub name: String,
    /// `char_node_class`.
    pub class: String,
    /// `char_node_device_model_name`: the device type the model knows.
    pub device_model: String,
    /// `char_node_uuid`.
    pub uuid: String,
    /// CPU busy over the last minute, percent; `None` if node exporter has no data for it.
    pub cpu_usage: Option<f64>,
    /// Used share of `/`, percent; `None` if node exporter has no data for it.
    pub disk_usage: Option<f64>,
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (NaN if Prometheus said so).
    pub value: f64,
}

impl Prometheus {
    /// From `http://host:port[/prefix]` or the `PROMETHEUS_IP` form of PEPPER's Profiler,
    /// `host:port`.
    pub fn parse(text: &str) -> Result<Prometheus, String> {
        let t = text.trim();
        if t.starts_with("https://") {
            return Err(format!(
                "`{t}`: only plain http:// is supported; put a TLS-terminating proxy aside"
            ));
        }
        let rest = t.strip_prefix("http://").unwrap_or(t);
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains(['?', '#', '@', ' ']) {
            return Err(format!(
                "`{t}` is not a Prometheus address (host:port or http://host:port)"
            ));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:9090")
        };
        Ok(Prometheus {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The server as errors name it.
    pub fn addr(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }

    /// The cluster's nodes, in the order of their `char_node_device_model` series.
    pub async fn nodes(&self) -> Result<Vec<Node>, PromError> {
        let (devices, cpu, disk) = tokio::try_join!(
            self.query(DEVICE_QUERY),
            self.query(CPU_QUERY),
            self.query(DISK_QUERY)
        )?;
        if devices.is_empty() {
            return Err(PromError::NoNodes { addr: self.addr() });
        }
        Ok(join(&devices, &cpu, &disk))
    }

    /// Run an instant query.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PromError> {
        let path = format!("{}/api/v1/query?query={}", self.prefix, encode(promql));
        let body = tokio::time::timeout(TIMEOUT, self.get(&path))
            .await
            .map_err(|_| PromError::Unreachable {
                addr: self.addr(),
                reason: format!("no answer within {} s", TIMEOUT.as_secs()),
            })??;
        let answer = |message: String| PromError::Answer {
            addr: self.addr(),
            query: promql.to_string(),
            message,
        };
        let doc: QueryAnswer = serde_json::from_slice(&body.1).map_err(|e| {
            answer(format!(
                "HTTP {} and a body that is not a query answer ({e})",
                body.0
            ))
        })?;
        if doc.status != "success" {
            return Err(answer(format!(
                "an error: {}",
                doc.error.unwrap_or_else(|| doc.status.clone())
            )));
        }
        let data = doc.data.ok_or_else(|| answer("no data".into()))?;
        if data.result_type != "vector" {
            return Err(answer(format!("a {}, not a vector", data.result_type)));
        }
        Ok(data
            .result
            .into_iter()
            .map(|r| Sample {
                labels: r.metric,
                value: r.value.1.parse().unwrap_or(f64::NAN),
            })
            .collect())
    }

    /// GET `path`: the status and the body.
    async fn get(&self, path: &str) -> Result<(u16, Bytes), PromError> {
        let unreachable = |reason: String| PromError::Unreachable {
            addr: self.addr(),
            reason,
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(format!("cannot make the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(format!("the answer broke off: {e}")))?
            .to_bytes();
        Ok((status, body))
    }
}

#[derive(Deserialize)]
struct QueryAnswer {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<QueryResult>,
}

#[derive(Deserialize)]
struct QueryResult {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

/// Join the device series with CPU and disk per scrape target: the same `instance`, or, where
/// the characterization agent and node exporter are scraped on other ports of one host, the
/// only series of the same host.
pub fn join(devices: &[Sample], cpu: &[Sample], disk: &[Sample]) -> Vec<Node> {
    let label = |s: &Sample, k: &str| s.labels.get(k).cloned().unwrap_or_default();
    devices
        .iter()
        .map(|d| {
            let instance = label(d, "instance");
            Node {
                name: label(d, "char_node_name"),
                class: label(d, "char_node_class"),
                device_model: label(d, "char_node_device_model_name"),
                uuid: label(d, "char_node_uuid"),
                cpu_usage: lookup(cpu, &instance).map(|v| v.clamp(0.0, 100.0)),
                disk_usage: lookup(disk, &instance).map(|v| v.clamp(0.0, 100.0)),
                instance,
            }
        })
        .collect()
}

fn lookup(samples: &[Sample], instance: &str) -> Option<f64> {
    fn of(s: &Sample) -> &str {
        s.labels.get("instance").map_or("", String::as_str)
    }
    let value = |s: &Sample| Some(s.value).filter(|v| v.is_finite());
    if let Some(s) = samples.iter().find(|s| of(s) == instance) {
        return value(s);
    }
    let host = host_of(instance);
    let mut same_host = samples.iter().filter(|s| host_of(of(s)) == host);
    match (same_host.next(), same_host.next()) {
        (Some(s), None) => value(s),
        _ => None,
    }
}

/// `host` of `host:port` (`[v6]:port` too).
fn host_of(instance: &str) -> &str {
    match instance.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => instance,
    }
}

/// Percent-encode a query parameter (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(instance: &str, value: f64, extra: &[(&str, &str)]) -> Sample {
        let mut labels: BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("instance".into(), instance.into());
        Sample { labels, value }
    }

    #[test]
    fn addresses_take_both_forms() {
        let p = Prometheus::parse("10.0.0.5:9090").unwrap();
        assert_eq!(p.addr(), "http://10.0.0.5:9090");
        let p = Prometheus::parse("http://prom.local/prometheus/").unwrap();
        assert_eq!(p.addr(), "http://prom.local:9090/prometheus");
        assert!(
            Prometheus::parse("https://x:1")
                .unwrap_err()
                .contains("only plain http")
        );
        assert!(Prometheus::parse("").is_err());
    }

    #[test]
    fn nodes_join_per_instance_or_else_per_host() {
        let dev = |i: &str, n: &str| {
            sample(
                i,
                1.0,
                &[
                    ("char_node_name", n),
                    ("char_node_class", "Computer"),
                    ("char_node_device_model_name", "Jetson Nano"),
                    ("char_node_uuid", "u"),
                ],
            )
        };
        let devices = [dev("a:9100", "a"), dev("b:8000", "b"), dev("c:9100", "c")];
        let cpu = [
            sample("a:9100", 20.0, &[]),
            sample("b:9100", 140.0, &[]),
            sample("d:9100", 5.0, &[]),
        ];
        let disk = [sample("a:9100", 50.0, &[]), sample("b:9100", f64::NAN, &[])];
        let nodes = join(&devices, &cpu, &disk);
        assert_eq!(nodes[0].name, "a");
        assert_eq!(
            (nodes[0].cpu_usage, nodes[0].disk_usage),
            (Some(20.0), Some(50.0))
        );
        assert_eq!(nodes[1].device_model, "Jetson Nano");
        assert_eq!(
            (nodes[1].cpu_usage, nodes[1].disk_usage),
            (Some(100.0), None)
        );
        assert_eq!((nodes[2].cpu_usage, nodes[2].disk_usage), (None, None));
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode("rate(x{mode=\"idle\"}[1m])"),
            "rate%28x%7Bmode%3D%22idle%22%7D%5B1m%5D%29"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let p = Prometheus::parse(&addr.to_string()).unwrap();
        let e = p.nodes().await.unwrap_err();
        assert!(matches!(e, PromError::Unreachable { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("Prometheus at http://{addr} is unreachable")),
            "{e}"
        );
    }
}
