//! `stampede placement`: `generate` and `fit` on the law's runs, `serve` answering the two example
//! requests of PEPPER's Profiler's README with the Profiler's shapes, bad input, a missing model,
//! and the cluster form against a real Prometheus scraping node-exporter-like servers started here.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stampede_placement::law;
use stampede_placement::row::NodeState;

use crate::util::{
    Proc, PrometheusServer, STARTUP, Scenario, Target, TestDir, http, stampede, wait_until,
};

/// The Profiler README's standalone example, byte for byte as its curl sends it.
const README_STANDALONE: &str = r#"{       "model" : "model",
        "conv_layers" : 66666666,
        "pool_layers" : 77777777,
        "fc_layers" : 34535353535,
        "filter_details" : 66,
        "total_parameters" : 10000000000000000000,
        "model_input_size": 345343543,
        "cpu_usage(percentage)": 95,
        "disk_usage(percentage)":75,
        "device_type": "Raspberry Pi 4B",
        "model_output_size": 123421435}"#;

/// The Profiler README's cluster example.
const README_CLUSTER: &str = r#"{       "model" : "model",
        "conv_layers" : 66666666,
        "pool_layers" : 77777777,
        "fc_layers" : 34535353535,
        "filter_details" : 66,
        "total_parameters" : 10000000000000000000,
        "model_input_size": 345343543,
        "model_output_size": 123421435}"#;

/// A model fitted once for the whole test binary on 2000 rows of the law (30 models).
fn shared_model() -> &'static Path {
    static MODEL: OnceLock<(TestDir, PathBuf)> = OnceLock::new();
    let (_, path) = MODEL.get_or_init(|| {
        let dir = TestDir::new();
        let runs = dir.join("runs.csv");
        let f = Proc::run(
            &[
                "placement",
                "generate",
                "--rows",
                "2000",
                "--out",
                runs.to_str().unwrap(),
            ],
            dir.path(),
            STARTUP,
        );
        f.assert_code(0);
        let model = dir.join("model.json");
        let f = Proc::run(
            &[
                "placement",
                "fit",
                "--data",
                "runs.csv",
                "--out",
                "model.json",
            ],
            dir.path(),
            Duration::from_secs(300),
        );
        f.assert_code(0);
        (dir, model)
    });
    path
}

/// `stampede placement serve` on 127.0.0.1:0.
struct Service {
    proc: Proc,
    addr: SocketAddr,
}

impl Service {
    fn start(model: &Path, extra: &[&str]) -> Service {
        let mut cmd = stampede();
        cmd.env_remove("PROMETHEUS_IP")
            .args([
                "placement",
                "serve",
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--model",
            ])
            .arg(model)
            .args(extra);
        let proc = Proc::spawn("placement serve", cmd);
        const PREFIX: &str = "stampede placement serve listening on http://";
        let line = proc.wait_stdout_line(PREFIX, STARTUP);
        let addr = line[line.find(PREFIX).unwrap() + PREFIX.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("odd address in {line:?}: {e}"));
        Service { proc, addr }
    }

    fn post(&self, body: &str) -> http::Response {
        http::post_json(self.addr, "/api/profiling", &[], body)
    }
}

/// The top-level keys of a JSON object in the order the text has them.
fn key_order(text: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let mut keys: Vec<(usize, String)> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {text}"))
        .keys()
        .map(|k| {
            // Top-level keys follow `{` or `,` directly in the compact answer.
            let needle = format!("\"{k}\":");
            let at = text
                .match_indices(&needle)
                .map(|(i, _)| i)
                .find(|&i| depth_at(text, i) == 1)
                .unwrap_or_else(|| panic!("{k} not at depth 1 in {text}"));
            (at, k.clone())
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

/// Nesting depth of objects and arrays at byte `at` (strings skipped).
fn depth_at(text: &str, at: usize) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.as_bytes()[..at].iter() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => depth += 1,
            (false, _, b'}' | b']') => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// `text` without the whitespace between JSON tokens (none of the README's strings has any).
fn compact(text: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    for c in text.chars() {
        if c == '"' {
            in_string = !in_string;
        }
        if in_string || !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

#[test]
fn fit_prints_cross_validation_and_importances_and_writes_a_self_describing_model() {
    let dir = TestDir::new();
    let f = Proc::run(
        &[
            "placement",
            "generate",
            "--rows",
            "300",
            "--models",
            "8",
            "--out",
            "runs.csv",
        ],
        dir.path(),
        STARTUP,
    );
    f.assert_code(0);
    assert!(dir.read("runs.csv").starts_with("model,conv_layers,pool_layers,fc_layers,filter_details,total_parameters,model_input_size,model_output_size,cpu_usage(percentage),disk_usage(percentage),device_type,execution_time\n"));
    let f = Proc::run(
        &[
            "placement",
            "fit",
            "--data",
            "runs.csv",
            "--out",
            "m.json",
            "--trees",
            "100",
        ],
        dir.path(),
        Duration::from_secs(120),
    );
    f.assert_code(0);
    for needle in [
        "10-fold cross-validation",
        "MAE ",
        "RMSE ",
        "R² ",
        "feature importances",
        "total_parameters",
        "device_type",
        "cpu_usage(percentage)",
        "model written to m.json",
    ] {
        assert!(f.stdout.contains(needle), "no {needle:?} in\n{}", f.show());
    }
    let doc = dir.read_json("m.json");
    assert_eq!(doc["format"], "stampede-placement-model");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["training"]["rows"], 300);
    assert_eq!(doc["training"]["cross_validation"]["folds"], 10);
    assert_eq!(doc["algorithm"]["params"]["iterations"], 100);
    assert!(doc["categories"]["device_type"].as_array().unwrap().len() >= 2);
    assert_eq!(doc["training"]["importances"].as_array().unwrap().len(), 10);

    // Errors name the file, line and column.
    dir.write(
        "bad.csv",
        &format!(
            "{}\nm,1,2,3,4,5,6,7,50,50,d,-1\n",
            stampede_placement::row::COLUMNS.join(",")
        ),
    );
    let f = Proc::run(
        &["placement", "fit", "--data", "bad.csv"],
        dir.path(),
        STARTUP,
    );
    f.assert_code(1);
    assert!(
        f.stderr
            .contains("bad.csv:2: execution_time: `-1` is not a positive number"),
        "{}",
        f.show()
    );
}

#[test]
fn the_readme_standalone_example_gets_the_profilers_shape_with_the_body_echoed_exactly() {
    let service = Service::start(shared_model(), &[]);
    let r = service.post(README_STANDALONE);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        key_order(&r.body),
        [
            "message",
            "model_characteristics",
            "profiling_prediction",
            "status"
        ]
    );
    let v = r.json();
    assert_eq!(v["message"], "Profiling data received");
    assert_eq!(v["status"], "success");
    // Echoed exactly: same keys in the same order, the 20-digit integer as sent.
    let echoed = format!("\"model_characteristics\":{}", compact(README_STANDALONE));
    assert!(r.body.contains(&echoed), "{}\nlacks\n{echoed}", r.body);
    let p = &v["profiling_prediction"];
    let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["model", "predicted_execution_time"]);
    assert_eq!(p["model"], "model");
    assert!(p["predicted_execution_time"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn standalone_predictions_of_held_out_runs_are_within_ten_percent_of_the_law() {
    let service = Service::start(shared_model(), &[]);
    let rows = law::generate(60, 30, 99);
    let mut errors: Vec<f64> = rows
        .iter()
        .map(|row| {
            let s = &row.spec;
            let body = serde_json::json!({
                "model": s.model, "conv_layers": s.conv_layers, "pool_layers": s.pool_layers,
                "fc_layers": s.fc_layers, "filter_details": s.filter_details,
                "total_parameters": s.total_parameters, "model_input_size": s.model_input_size,
                "model_output_size": s.model_output_size,
                "cpu_usage(percentage)": row.node.cpu_usage,
                "disk_usage(percentage)": row.node.disk_usage,
                "device_type": row.node.device_type,
            });
            let r = service.post(&body.to_string());
            assert_eq!(r.status, 200, "{r:?}");
            let predicted = r.json()["profiling_prediction"]["predicted_execution_time"]
                .as_f64()
                .unwrap();
            let truth = law::time(&row.spec, &row.node).unwrap();
            ((predicted - truth) / truth).abs()
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    assert!(
        median < 0.10,
        "median relative error {median:.3}: {errors:?}"
    );
}

#[test]
fn bad_input_gets_400_naming_the_field_and_a_missing_model_503_until_one_is_made() {
    let dir = TestDir::new();
    let path = dir.join("model.json");
    let service = Service::start(&path, &[]);
    let r = service.post(README_STANDALONE);
    assert_eq!(r.status, 503, "{r:?}");
    let v = r.json();
    assert_eq!(v["status"], "error");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("no model file at") && m.contains("stampede placement fit --data"),
        "{m}"
    );

    // The model appears: the next request uses it, no restart.
    std::fs::copy(shared_model(), &path).unwrap();
    let r = service.post(README_STANDALONE);
    assert_eq!(r.status, 200, "{r:?}");

    let cases: &[(&str, &str, &str)] = &[
        ("\"conv_layers\" : 66666666,", "", "conv_layers: missing"),
        (
            "\"pool_layers\" : 77777777",
            "\"pool_layers\" : \"lots\"",
            "pool_layers: must be a whole number",
        ),
        (
            "\"fc_layers\" : 34535353535",
            "\"fc_layers\" : -1",
            "fc_layers: `-1` is negative",
        ),
        (
            "10000000000000000000",
            "18446744073709551616",
            "total_parameters: `18446744073709551616` is past the largest count",
        ),
        (
            "\"cpu_usage(percentage)\": 95",
            "\"cpu_usage(percentage)\": \"high\"",
            "cpu_usage(percentage): must be a number",
        ),
        (
            "\"disk_usage(percentage)\":75,",
            "",
            "disk_usage(percentage): missing",
        ),
        (
            "\"Raspberry Pi 4B\"",
            "\"Cray-1\"",
            "device_type: `Cray-1` is not a device the model was trained on",
        ),
        (
            "\"model\" : \"model\"",
            "\"model\" : 1",
            "model: must be a string",
        ),
    ];
    for (from, to, expected) in cases {
        let body = README_STANDALONE.replace(from, to);
        assert_ne!(body, README_STANDALONE, "{from}");
        let r = service.post(&body);
        assert_eq!(r.status, 400, "{expected}: {r:?}");
        let v = r.json();
        assert_eq!(v["status"], "error");
        assert!(
            v["message"].as_str().unwrap().starts_with(expected),
            "{expected}: {v}"
        );
    }
    let r = service.post("not json");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"),
        "{r:?}"
    );

    // No Prometheus configured: the cluster form says how to get one.
    let r = service.post(README_CLUSTER);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("--prometheus"),
        "{r:?}"
    );
    let mut proc = service.proc;
    assert!(proc.is_running(), "the service died: {}", proc.stderr());
}

/// A tiny HTTP server answering every GET with `body(path)`; stops when dropped.
struct FakeHttp {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeHttp {
    fn start(body: impl Fn(&str) -> String + Send + 'static) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let text = body(&path);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        FakeHttp { addr, stop }
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A node as node exporter and the characterization agent would show it: its CPUs busy at a
/// set share (the idle counters grow at 1 - busy per second), `/` used at a set share.
///
/// `rate(...[1m])` is only right once a minute of samples is in the window, so the first
/// scrapes carry explicit timestamps 55, 35 and 15 s in the past (Prometheus honours sample
/// timestamps): from the fourth scrape on, the last minute is covered as if the node had been
/// scraped for long.
struct FakeNode {
    name: &'static str,
    device: &'static str,
    busy: f64,
    disk: f64,
    scrapes: Arc<AtomicU32>,
    http: FakeHttp,
}

impl FakeNode {
    fn start(name: &'static str, device: &'static str, busy: f64, disk: f64) -> FakeNode {
        let scrapes = Arc::new(AtomicU32::new(0));
        let count = scrapes.clone();
        let http = FakeHttp::start(move |_| {
            let k = count.fetch_add(1, Ordering::SeqCst);
            let behind = [55_000, 35_000, 15_000]
                .get(k as usize)
                .copied()
                .unwrap_or(0);
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                - behind;
            // Counters from a fixed origin, so they only ever grow.
            let t = (ts - 1_700_000_000_000) as f64 / 1000.0;
            let mut s = String::from("# TYPE node_cpu_seconds_total counter\n");
            for cpu in 0..2 {
                s += &format!(
                    "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"idle\"}} {} {ts}\n",
                    t * (1.0 - busy)
                );
                s += &format!(
                    "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"user\"}} {} {ts}\n",
                    t * busy
                );
            }
            let size = 100e9;
            s += "# TYPE node_filesystem_avail_bytes gauge\n";
            s += &format!(
                "node_filesystem_avail_bytes{{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"}} {} {ts}\n",
                size * (1.0 - disk / 100.0)
            );
            s += &format!(
                "node_filesystem_avail_bytes{{device=\"tmpfs\",fstype=\"tmpfs\",mountpoint=\"/run\"}} 1000 {ts}\n"
            );
            s += "# TYPE node_filesystem_size_bytes gauge\n";
            s += &format!(
                "node_filesystem_size_bytes{{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"}} {size} {ts}\n"
            );
            s += &format!(
                "node_filesystem_size_bytes{{device=\"tmpfs\",fstype=\"tmpfs\",mountpoint=\"/run\"}} 100000 {ts}\n"
            );
            s += "# TYPE char_node_device_model gauge\n";
            s += &format!(
                "char_node_device_model{{char_node_name=\"{name}\",char_node_class=\"Computer\",char_node_device_model_name=\"{device}\",char_node_uuid=\"uuid-{name}\"}} 1 {ts}\n"
            );
            s
        });
        FakeNode {
            name,
            device,
            busy: busy * 100.0,
            disk,
            scrapes,
            http,
        }
    }
}

#[test]
fn the_cluster_form_names_the_node_that_is_fastest_under_its_current_load() {
    // The NUC is the fastest device but is 95 % busy; the Jetson Nano, idle, wins. A model
    // that ignored the load would name the NUC.
    let nodes = [
        FakeNode::start("nuc-1", "Intel NUC", 0.95, 40.0),
        FakeNode::start("jetson-1", "Jetson Nano", 0.10, 60.0),
        FakeNode::start("rpi-1", "Raspberry Pi 4B", 0.0, 20.0),
        FakeNode::start("tpu-1", "Coral TPU", 0.0, 20.0),
    ];
    let targets: Vec<SocketAddr> = nodes.iter().map(|n| n.http.addr).collect();
    let Some(prometheus) = PrometheusServer::start(&targets) else {
        return;
    };
    let service = Service::start(
        shared_model(),
        &["--prometheus", &format!("http://{}", prometheus.addr)],
    );
    // A model of the law's zoo, so the law can say which node is truly fastest.
    let spec = law::zoo(30).remove(4);
    let body = serde_json::json!({
        "model": spec.model, "conv_layers": spec.conv_layers, "pool_layers": spec.pool_layers,
        "fc_layers": spec.fc_layers, "filter_details": spec.filter_details,
        "total_parameters": spec.total_parameters, "model_input_size": spec.model_input_size,
        "model_output_size": spec.model_output_size,
    })
    .to_string();
    // Five scrapes of every node: a minute of samples up to now (see FakeNode).
    wait_until(
        Duration::from_secs(40),
        "five scrapes of every node",
        || {
            nodes
                .iter()
                .all(|n| n.scrapes.load(Ordering::SeqCst) >= 5)
                .then_some(())
        },
    );
    let r = service.post(&body);
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    assert_eq!(
        key_order(&r.body),
        [
            "message",
            "model_characteristics",
            "node_predictions",
            "profiling_prediction",
            "skipped_nodes",
            "status"
        ]
    );
    let p = &v["profiling_prediction"];
    let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "class",
            "device_model",
            "model",
            "node",
            "node_uuid",
            "predicted_execution_time"
        ]
    );
    assert_eq!(p["node"], "jetson-1", "{v:#}");
    assert_eq!(p["device_model"], "Jetson Nano");
    assert_eq!(p["class"], "Computer");
    assert_eq!(p["node_uuid"], "uuid-jetson-1");
    assert_eq!(p["model"], spec.model.as_str());
    // Every node, fastest first, with the load Prometheus reported; the order is the law's.
    let list = v["node_predictions"].as_array().unwrap();
    let order: Vec<&str> = list.iter().map(|n| n["node"].as_str().unwrap()).collect();
    let mut truth: Vec<(f64, &str)> = nodes[..3]
        .iter()
        .map(|n| {
            let seen = list.iter().find(|x| x["node"] == n.name).unwrap();
            let cpu = seen["cpu_usage(percentage)"].as_f64().unwrap();
            let disk = seen["disk_usage(percentage)"].as_f64().unwrap();
            assert!(
                (cpu - n.busy).abs() < 3.0,
                "{}: cpu {cpu} vs {}",
                n.name,
                n.busy
            );
            assert!(
                (disk - n.disk).abs() < 1e-6,
                "{}: disk {disk} vs {}",
                n.name,
                n.disk
            );
            let node = NodeState {
                cpu_usage: cpu,
                disk_usage: disk,
                device_type: n.device.into(),
            };
            (law::time(&spec, &node).unwrap(), n.name)
        })
        .collect();
    truth.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        order,
        truth.iter().map(|t| t.1).collect::<Vec<_>>(),
        "{v:#}"
    );
    assert_eq!(
        list[0]["predicted_execution_time"],
        p["predicted_execution_time"]
    );
    // The node of a device the model never saw is named, not guessed.
    assert_eq!(v["skipped_nodes"][0]["node"], "tpu-1", "{v:#}");
    assert!(
        v["skipped_nodes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("Coral TPU")
    );

    // The README's own cluster example: the Profiler's shape, and its body echoed exactly.
    let r = service.post(README_CLUSTER);
    assert_eq!(r.status, 200, "{r:?}");
    let echoed = format!("\"model_characteristics\":{}", compact(README_CLUSTER));
    assert!(r.body.contains(&echoed), "{}\nlacks\n{echoed}", r.body);
    let v = r.json();
    assert_eq!(v["message"], "Profiling data received");
    assert_eq!(v["status"], "success");
    assert_eq!(v["profiling_prediction"]["model"], "model");
    assert!(
        v["profiling_prediction"]["predicted_execution_time"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    // PROMETHEUS_IP (the Profiler's host:port) works as well as --prometheus.
    let mut cmd = stampede();
    cmd.env("PROMETHEUS_IP", prometheus.addr.to_string())
        .args([
            "placement",
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--model",
        ])
        .arg(shared_model());
    let proc = Proc::spawn("placement serve (PROMETHEUS_IP)", cmd);
    let line = proc.wait_stdout_line("listening on http://", STARTUP);
    let addr: SocketAddr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let r = http::post_json(addr, "/api/profiling", &[], &body);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["profiling_prediction"]["node"], "jetson-1");
}

#[test]
fn prometheus_unreachable_or_without_nodes_is_a_502_naming_it() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let service = Service::start(shared_model(), &["--prometheus", &closed.to_string()]);
    let r = service.post(README_CLUSTER);
    assert_eq!(r.status, 502, "{r:?}");
    let m = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        m.contains(&format!("Prometheus at http://{closed} is unreachable")),
        "{m}"
    );

    // A server that answers every query with an empty vector knows no nodes.
    let empty = FakeHttp::start(|_| {
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string()
    });
    let service = Service::start(
        shared_model(),
        &["--prometheus", &format!("http://{}", empty.addr)],
    );
    let r = service.post(README_CLUSTER);
    assert_eq!(r.status, 502, "{r:?}");
    let m = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        m.contains(&format!(
            "Prometheus at http://{} knows no nodes",
            empty.addr
        )),
        "{m}"
    );

    // Seen by a received query: the Profiler's PromQL goes out as written.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let recording = FakeHttp::start(move |path| {
        log.lock().unwrap().push(path.to_string());
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string()
    });
    let service = Service::start(
        shared_model(),
        &["--prometheus", &recording.addr.to_string()],
    );
    assert_eq!(service.post(README_CLUSTER).status, 502);
    let paths = seen.lock().unwrap().clone();
    assert!(
        paths
            .iter()
            .any(|p| p.contains("node_cpu_seconds_total%7Bmode%3D%22idle%22%7D%5B1m%5D")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.contains("node_filesystem_avail_bytes")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("query=char_node_device_model")),
        "{paths:?}"
    );
}

#[test]
fn a_run_with_a_placement_table_records_a_row_per_worker_node() {
    let target = Target::start_with(&["--delay", "20ms"]);
    let dir = TestDir::new();
    let scenario = format!(
        "{}\n[placement]\nmodel = \"tiny-cnn\"\nconv_layers = 3\npool_layers = 2\nfc_layers = 1\n\
         filter_details = 32\ntotal_parameters = \"10000000000000000000\"\nmodel_input_size = 784\n\
         model_output_size = 10\ndevice_type = \"Raspberry Pi 4B\"\n\
         devices = {{ \"local-1\" = \"Intel NUC\" }}\n",
        Scenario::closed(&target.url, 4).duration("3s").toml()
    );
    dir.write("scenario.toml", &scenario);
    let f = Proc::run(
        &["run", "scenario.toml", "--workers", "2", "--out", "results"],
        dir.path(),
        Duration::from_secs(60),
    );
    f.assert_code(0);

    // summary.json: each worker's mean time and its host's CPU and disk usage.
    let summary = dir.read_json("results/summary.json");
    let workers = summary["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{summary:#}");
    let (mut weighted, mut requests) = (0.0, 0.0);
    for w in workers {
        let n = w["requests"].as_f64().unwrap();
        weighted += n * w["mean_ms"].as_f64().unwrap();
        requests += n;
        let cpu = w["gauges"]["host_cpu_percent"].as_f64().unwrap();
        assert!(cpu > 0.0 && cpu <= 100.0, "{w}");
    }
    let mean = summary["metrics"]["latency"]["mean_ms"].as_f64().unwrap();
    assert!(
        (weighted / requests - mean).abs() < 0.01 * mean,
        "{} vs {mean}",
        weighted / requests
    );

    let record = || {
        let f = Proc::run(
            &[
                "placement",
                "record",
                "--scenario",
                "scenario.toml",
                "--results",
                "results",
                "--data",
                "runs.csv",
            ],
            dir.path(),
            STARTUP,
        );
        f.assert_code(0);
        f
    };
    let f = record();
    assert!(f.stdout.contains("appended 2 row(s)"), "{}", f.show());
    let rows = stampede_placement::row::read_csv(&dir.join("runs.csv")).unwrap();
    assert_eq!(rows.len(), 2);
    // The disk usage of `/` as `stat -f` sees it (blocks, available).
    let stat = std::process::Command::new("stat")
        .args(["-f", "-c", "%b %a", "/"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stat.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let disk = 100.0 * (1.0 - v[1] / v[0]);
    let mut devices: Vec<&str> = rows.iter().map(|r| r.node.device_type.as_str()).collect();
    devices.sort();
    assert_eq!(devices, ["Intel NUC", "Raspberry Pi 4B"]);
    for (r, w) in rows.iter().zip(workers) {
        assert_eq!(r.spec.model, "tiny-cnn");
        assert_eq!(r.spec.total_parameters, 10_000_000_000_000_000_000);
        // The target answers after 20 ms: the mean execution time says so.
        assert!((0.020..0.2).contains(&r.execution_time), "{r:?}");
        assert!(
            (r.execution_time * 1000.0 - w["mean_ms"].as_f64().unwrap()).abs() < 1e-9,
            "{r:?} {w}"
        );
        // runs.csv keeps percentages to 6 decimals.
        let cpu = w["gauges"]["host_cpu_percent"].as_f64().unwrap();
        assert!((r.node.cpu_usage - cpu).abs() < 1e-6, "{r:?} vs {cpu}");
        assert!((r.node.disk_usage - disk).abs() < 1.0, "{r:?} vs df {disk}");
    }
    // Appending again keeps one header.
    record();
    assert_eq!(
        stampede_placement::row::read_csv(&dir.join("runs.csv"))
            .unwrap()
            .len(),
        4
    );

    // Without [placement], record says what to add.
    dir.write("plain.toml", &Scenario::closed(&target.url, 1).toml());
    let f = Proc::run(
        &[
            "placement",
            "record",
            "--scenario",
            "plain.toml",
            "--results",
            "results",
            "--data",
            "runs.csv",
        ],
        dir.path(),
        STARTUP,
    );
    f.assert_code(1);
    assert!(
        f.stderr.contains("has no [placement] table"),
        "{}",
        f.show()
    );
}
