//! `stampede profile`: the seed's grpcurl session replayed against the real server by a
//! client that, like grpcurl, knows no proto file (descriptors come from server reflection,
//! messages are built from the seed's JSON); health and graceful shutdown; bad input as gRPC
//! statuses and one-line errors; CSV files and URLs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::str::FromStr;
use std::time::Duration;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::{Value, json};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::util::{Proc, STARTUP, TestDir, stampede};

/// The seed's grpcurl request body, verbatim.
const SEED_REQUEST: &str = r#"{
  "workload_definition": {
    "worker_types": [
      {
        "id": "worker_mock_01",
        "model_name": "mock_model_gemma",
        "accelerator_type": "mock_accel_l4",
        "accelerator_count": 1,
        "model_server_type": "TGI",
        "model_server_image": "tgi_image_v1"
      }
    ],
    "request_types": [
      {
        "id": "request_mock_01",
        "latency_slo_tpot_ms": 250.0,
        "input_size_bucket": "S",
        "output_size_bucket": "S"
      },
      {
        "id": "request_mock_02_slo_unattainable",
        "latency_slo_tpot_ms": 50.0,
        "input_size_bucket": "M",
        "output_size_bucket": "M"
      },
      {
        "id": "request_mock_03_ok_highest_rate",
        "latency_slo_tpot_ms": 150.0,
        "input_size_bucket": "L",
        "output_size_bucket": "L"
      }
    ]
  }
}"#;

/// The seed's README calls the service by this name.
const SEED_SERVICE: &str = "experimental.users.benjaminbraun.gateway_autoscaling.performance_profiler.PerformanceProfileGenerator";
/// The service's proto name (what health is asked about).
const SERVICE: &str = "profiler_service.PerformanceProfileGenerator";

/// `stampede profile serve --port=0 ARGS` and the port it printed.
pub fn start_profile_server(args: &[&str]) -> (Proc, u16) {
    let mut cmd = stampede();
    cmd.args(["profile", "serve", "--port=0"]).args(args);
    let proc = Proc::spawn("profile serve", cmd);
    let line = proc.wait_stdout_line("Server listening at ", STARTUP);
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (proc, port)
}

/// A grpcurl-like client: descriptors by reflection, JSON in and out.
struct Reflecting {
    channel: tonic::transport::Channel,
    pool: DescriptorPool,
}

impl Reflecting {
    async fn connect(port: u16) -> Reflecting {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://localhost:{port}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        Reflecting {
            channel,
            pool: DescriptorPool::new(),
        }
    }

    async fn ask(&self, request: MessageRequest) -> MessageResponse {
        let mut client = ServerReflectionClient::new(self.channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut answers = client
            .server_reflection_info(futures_util::stream::iter(vec![req]))
            .await
            .expect("reflection call")
            .into_inner();
        answers
            .message()
            .await
            .expect("reflection answer")
            .and_then(|a| a.message_response)
            .expect("a reflection answer")
    }

    /// `grpcurl list`.
    async fn services(&self) -> Vec<String> {
        match self.ask(MessageRequest::ListServices(String::new())).await {
            MessageResponse::ListServicesResponse(l) => {
                l.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("list services answered {other:?}"),
        }
    }

    /// Learn the file defining `symbol`, and the files it imports.
    async fn learn(&mut self, symbol: &str) {
        let mut wanted = vec![MessageRequest::FileContainingSymbol(symbol.to_string())];
        let mut files: Vec<prost_types::FileDescriptorProto> = Vec::new();
        while let Some(req) = wanted.pop() {
            let MessageResponse::FileDescriptorResponse(f) = self.ask(req).await else {
                panic!("no descriptor for {symbol}");
            };
            for bytes in f.file_descriptor_proto {
                let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
                if files.iter().any(|g| g.name == file.name) {
                    continue;
                }
                for dep in &file.dependency {
                    if self.pool.get_file_by_name(dep).is_none()
                        && !files.iter().any(|g| g.name.as_deref() == Some(dep))
                    {
                        wanted.push(MessageRequest::FileByFilename(dep.clone()));
                    }
                }
                files.push(file);
            }
        }
        self.pool
            .add_file_descriptor_protos(files)
            .expect("descriptors from reflection");
    }

    /// `grpcurl -d JSON localhost:PORT service/method`: the answer as JSON (defaults kept).
    async fn call(
        &mut self,
        service: &str,
        method: &str,
        body: &str,
    ) -> Result<Value, tonic::Status> {
        if self.pool.get_service_by_name(service).is_none() {
            self.learn(service).await;
        }
        let svc = self
            .pool
            .get_service_by_name(service)
            .unwrap_or_else(|| panic!("reflection does not know {service}"));
        let m = svc
            .methods()
            .find(|m| m.name() == method)
            .unwrap_or_else(|| panic!("{service} has no {method}"));
        let mut de = serde_json::Deserializer::from_str(body);
        let request = DynamicMessage::deserialize(m.input(), &mut de).expect("request JSON");
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.expect("channel ready");
        let path = http::uri::PathAndQuery::from_str(&format!("/{service}/{method}")).unwrap();
        let answer = grpc
            .unary(tonic::Request::new(request), path, DynamicCodec(m.output()))
            .await?
            .into_inner();
        let options = SerializeOptions::new().skip_default_fields(false);
        Ok(answer
            .serialize_with_options(serde_json::value::Serializer, &options)
            .expect("answer to JSON"))
    }
}

/// Encodes any dynamic message; decodes answers of one message type.
#[derive(Clone)]
struct DynamicCodec(MessageDescriptor);

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicCodec;
    type Decoder = DynamicCodec;
    fn encoder(&mut self) -> DynamicCodec {
        self.clone()
    }
    fn decoder(&mut self) -> DynamicCodec {
        self.clone()
    }
}

impl Encoder for DynamicCodec {
    type Item = DynamicMessage;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: DynamicMessage,
        dst: &mut EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for DynamicCodec {
    type Item = DynamicMessage;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, tonic::Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// An f32 field of a JSON answer, printed as grpcurl prints it.
fn f32_text(v: &Value) -> String {
    format!("{}", v.as_f64().expect("a number") as f32)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn sigterm(proc: &Proc) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &proc.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[test]
fn the_seeds_grpcurl_session_through_reflection() {
    let (mut server, port) = start_profile_server(&["--use_mock_data"]);
    assert!(server.stdout().contains("Using mock data source."));
    let line = server.wait_stdout_line("Server listening at", STARTUP);
    assert_eq!(line, format!("Server listening at [::]:{port}"));
    runtime().block_on(async {
        let mut c = Reflecting::connect(port).await;
        let services = c.services().await;
        for s in [SERVICE, SEED_SERVICE, "grpc.health.v1.Health"] {
            assert!(services.iter().any(|x| x == s), "{s} not in {services:?}");
        }
        // grpcurl -plaintext -d '{"service": "..."}' localhost:8080 grpc.health.v1.Health/Check
        for service in [SERVICE, ""] {
            let body = json!({ "service": service }).to_string();
            let health = c.call("grpc.health.v1.Health", "Check", &body).await.unwrap();
            assert_eq!(health, json!({"status": "SERVING"}), "health of {service:?}");
        }
        // The seed's GenerateProfile call, under both names.
        for service in [SEED_SERVICE, SERVICE] {
            let answer = c.call(service, "GenerateProfile", SEED_REQUEST).await.unwrap();
            let entries = answer["performanceProfile"]["entries"].as_array().unwrap();
            let got: Vec<(String, String, String, String)> = entries
                .iter()
                .map(|e| {
                    (
                        e["workerTypeId"].as_str().unwrap().to_string(),
                        e["requestTypeId"].as_str().unwrap().to_string(),
                        f32_text(&e["maxThroughputRps"]),
                        e["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let want = [
                ("request_mock_01", "23.333334", "OK"),
                ("request_mock_02_slo_unattainable", "0", "SLO_UNATTAINABLE"),
                ("request_mock_03_ok_highest_rate", "25", "OK_USING_HIGHEST_RATE"),
            ];
            assert_eq!(got.len(), 3, "{answer}");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(
                    (g.0.as_str(), g.1.as_str(), g.2.as_str(), g.3.as_str()),
                    ("worker_mock_01", w.0, w.1, w.2)
                );
            }
        }
        // Bad input is a status with a message, not a crash.
        let e = c
            .call(SERVICE, "GenerateProfile", r#"{"workload_definition": {"worker_types": [{"id": "w"}]}}"#)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("worker_types and request_types"), "{e:?}");
        let e = c
            .call(SERVICE, "GenerateProfile", r#"{"workload_definition": {"worker_types": [{"id": "w"}], "request_types": [{"id": "r", "latency_slo_tpot_ms": -1}]}}"#)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("request type `r`"), "{e:?}");
        // Unknown ids: NO_DATA_FOUND entries.
        let answer = c
            .call(SERVICE, "GenerateProfile", r#"{"workload_definition": {"worker_types": [{"id": "w9"}], "request_types": [{"id": "r9", "latency_slo_tpot_ms": 10}]}}"#)
            .await
            .unwrap();
        assert_eq!(answer["performanceProfile"]["entries"][0]["status"], "NO_DATA_FOUND");
    });
    assert!(server.is_running());
    sigterm(&server);
    let done = server.wait_exit(Duration::from_secs(15));
    done.assert_code(0);
    assert!(
        done.stdout
            .contains("Received signal terminated, shutting down gracefully..."),
        "{}",
        done.show()
    );
    assert!(
        done.stdout.contains("gRPC server stopped."),
        "{}",
        done.show()
    );
}

#[test]
fn health_turns_not_serving_before_the_server_stops() {
    let (mut server, port) = start_profile_server(&["--use-mock-data"]);
    runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let mut watch = health
            .watch(tonic_health::pb::HealthCheckRequest {
                service: SERVICE.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(
            first.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
        sigterm(&server);
        let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("a health update after SIGTERM")
            .expect("the watch stream")
            .expect("an update");
        assert_eq!(
            next.status(),
            tonic_health::pb::health_check_response::ServingStatus::NotServing
        );
    });
    server.wait_exit(Duration::from_secs(15)).assert_code(0);
}

const CSV_HEADER: &str = "input_power_of_2,input_range,output_power_of_2,output_range,bucket_description,metrics_request_rate,metrics_p90_per_output_token_latency_mean,accelerator_type\n";

fn workload(accelerator: &str, slo: f32) -> String {
    json!({"workload_definition": {
        "worker_types": [{"id": "l4", "accelerator_type": accelerator, "accelerator_count": 1}],
        "request_types": [
            {"id": "small", "input_size_bucket": "2-3", "output_size_bucket": "32-63", "latency_slo_tpot_ms": slo},
            {"id": "unknown", "input_size_bucket": "4096-8191", "output_size_bucket": "512-1023", "latency_slo_tpot_ms": slo}
        ]
    }})
    .to_string()
}

#[test]
fn generate_from_csv_files_and_urls_with_bad_rows_and_bad_sources() {
    let dir = TestDir::new();
    let csv = format!(
        "{CSV_HEADER}\
         1,2-3,5,32-63,In:2-3 Out:32-63,4,10,NVIDIA_L4\n\
         1,2-3,5,32-63,In:2-3 Out:32-63,8,n/a,NVIDIA_L4\n\
         1,2-3,5,32-63,In:2-3 Out:32-63,16,30,NVIDIA_L4\n"
    );
    let path = dir.write("bench.csv", &csv);
    dir.write("w.json", &workload("NVIDIA_L4", 20.0));
    let run = |args: &[&str]| Proc::run(args, dir.path(), Duration::from_secs(30));
    let done = run(&[
        "profile",
        "generate",
        "--csv",
        "bench.csv",
        "--workload",
        "w.json",
    ]);
    done.assert_code(0);
    let out: Value = serde_json::from_str(&done.stdout).expect("JSON on stdout");
    let entries = &out["performanceProfile"]["entries"];
    assert_eq!(entries[0]["maxThroughputRps"], json!(10));
    assert_eq!(entries[0]["status"], "OK");
    assert_eq!(entries[1]["status"], "NO_DATA_FOUND");
    assert!(
        done.stderr
            .contains("bench.csv:3: cannot parse latency 'n/a'"),
        "{}",
        done.show()
    );
    assert!(
        done.stderr
            .contains("no data for buckets In:4096-8191 Out:512-1023"),
        "{}",
        done.show()
    );

    // The same file over HTTP.
    let url = serve_file_once(csv.clone());
    let done = run(&[
        "profile",
        "generate",
        "--csv_file_path",
        &url,
        "--workload",
        "w.json",
    ]);
    done.assert_code(0);
    assert!(
        done.stdout.contains("\"maxThroughputRps\": 10,"),
        "{}",
        done.show()
    );

    // A URL that does not answer, a missing column, an empty workload, a bad SLO: one line each.
    let dead = format!("http://127.0.0.1:{}/bench.csv", free_port());
    let done = run(&[
        "profile",
        "generate",
        "--csv",
        &dead,
        "--workload",
        "w.json",
    ]);
    done.assert_code(1);
    assert_one_line_error(&done.stderr, &format!("{dead}: cannot connect"));
    std::fs::write(
        &path,
        "accelerator_type,input_range,output_range,metrics_request_rate\nL4,2-3,2-3,1\n",
    )
    .unwrap();
    let done = run(&[
        "profile",
        "generate",
        "--csv",
        "bench.csv",
        "--workload",
        "w.json",
    ]);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        "missing required column 'metrics_p90_per_output_token_latency_mean' in CSV header from bench.csv",
    );
    let done = run(&["profile", "serve", "--port=0", "--csv_file_path=bench.csv"]);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        "missing required column 'metrics_p90_per_output_token_latency_mean'",
    );
    dir.write("empty.json", r#"{"workload_definition": {}}"#);
    let done = run(&[
        "profile",
        "generate",
        "--use_mock_data",
        "--workload",
        "empty.json",
    ]);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        "WorkloadDefinition with worker_types and request_types must be provided",
    );
    dir.write("zero.json", &workload("NVIDIA_L4", 0.0));
    let done = run(&[
        "profile",
        "generate",
        "--use_mock_data",
        "--workload",
        "zero.json",
    ]);
    done.assert_code(1);
    assert_one_line_error(&done.stderr, "latency_slo_tpot_ms must be a number above 0");
    let done = run(&["profile", "serve", "--port=0"]);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        "a data source must be specified: use --use_mock_data, --csv_file_path PATH|URL, or --results DIR",
    );
}

#[test]
fn the_served_profile_reads_a_csv_file_again_for_each_request() {
    let dir = TestDir::new();
    let path = dir.write(
        "bench.csv",
        &format!("{CSV_HEADER}1,2-3,5,32-63,x,4,10,NVIDIA_L4\n"),
    );
    let csv = path.to_str().unwrap().to_string();
    let (mut server, port) = start_profile_server(&["-csv_file_path", &csv]);
    runtime().block_on(async {
        let mut c = Reflecting::connect(port).await;
        let body = workload("NVIDIA_L4", 20.0);
        let a = c.call(SERVICE, "GenerateProfile", &body).await.unwrap();
        assert_eq!(
            a["performanceProfile"]["entries"][0]["status"],
            "OK_USING_HIGHEST_RATE"
        );
        assert_eq!(
            f32_text(&a["performanceProfile"]["entries"][0]["maxThroughputRps"]),
            "4"
        );
        std::fs::write(
            &path,
            format!(
                "{CSV_HEADER}1,2-3,5,32-63,x,4,10,NVIDIA_L4\n1,2-3,5,32-63,x,16,30,NVIDIA_L4\n"
            ),
        )
        .unwrap();
        let a = c.call(SERVICE, "GenerateProfile", &body).await.unwrap();
        assert_eq!(a["performanceProfile"]["entries"][0]["status"], "OK");
        assert_eq!(
            f32_text(&a["performanceProfile"]["entries"][0]["maxThroughputRps"]),
            "10"
        );
        // The file gone: INTERNAL with the reason, and the server goes on.
        std::fs::remove_file(&path).unwrap();
        let e = c.call(SERVICE, "GenerateProfile", &body).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert!(e.message().contains("cannot read"), "{e:?}");
    });
    assert!(server.is_running());
}

fn assert_one_line_error(stderr: &str, needle: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{stderr}");
    assert!(
        lines[0].contains(needle),
        "{needle:?} not in {:?}",
        lines[0]
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Answer GET requests with `body` (any path) from a thread; the URL of the file.
fn serve_file_once(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/csv\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/bench.csv")
}

/// The sweep's LLM scenario: prompts and load are replaced per step.
const SWEEP_SCENARIO: &str = r#"name = "sweep"
target = "http://127.0.0.1:1"
kind = "llm"
duration = "2s"
[load]
model = "open"
rate = 1
[llm]
backend = "openai"
model = "stampede-sim"
stream = true
[llm.prompts]
source = "synthetic"
input = { dist = "fixed", tokens = 2 }
output = { dist = "fixed", tokens = 8 }
[worker_type]
accelerator_type = "SIM_L4"
model_server_type = "stampede-target-llm"
"#;

#[test]
fn a_sweep_finds_the_targets_knee_and_generate_and_serve_read_its_csv() {
    // 4 requests generating at once before every token slows down; an answer of 11 tokens
    // takes 20 ms + 10 × 10 ms unhindered, so the knee is at 4 / 0.12 s = 33.3 req/s.
    let target = crate::util::LlmTarget::start_with(&[
        "--ttft",
        "20ms",
        "--tpot",
        "10ms",
        "--batch-knee",
        "4",
        "--batch-slope",
        "1",
    ]);
    let knee = 4.0 / 0.120;
    let dir = TestDir::new();
    dir.write("llm.toml", SWEEP_SCENARIO);
    let done = Proc::run(
        &[
            "profile",
            "sweep",
            "llm.toml",
            "--target",
            &target.url,
            "--search",
            "--min-rate",
            "10",
            "--max-rate",
            "60",
            "--precision",
            "0.04",
            "--max-steps",
            "8",
            "--request-types",
            "2-3:8-15",
            "--arrival",
            "constant",
            "--step-duration",
            "2s",
            "--slo-ms",
            "25",
            "--out",
            "out",
        ],
        dir.path(),
        Duration::from_secs(180),
    );
    done.assert_code(0);
    let line = done
        .stdout
        .lines()
        .find(|l| l.starts_with("In:2-3 Out:8-15 within 25 ms per output token: "))
        .unwrap_or_else(|| panic!("no profile line\n{}", done.show()));
    let found: f32 = line
        .split_whitespace()
        .nth(8)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {line:?}"));
    assert!(line.contains("req/s (OK)"), "{line}");
    let off = (f64::from(found) - knee).abs() / knee;
    assert!(
        off < 0.10,
        "knee found at {found} req/s, the target's is {knee:.1} ({:.1} % off)\n{}",
        off * 100.0,
        done.show()
    );
    // One row per step, in the seed's schema, each step's results kept.
    let csv = dir.read("out/benchmarks.csv");
    let header = csv.lines().next().unwrap();
    for col in [
        "input_power_of_2",
        "input_range",
        "output_power_of_2",
        "output_range",
        "bucket_description",
        "metrics_request_rate",
        "metrics_avg_input_len_mean",
        "metrics_avg_output_len_mean",
        "metrics_p90_per_output_token_latency_mean",
        "metrics_output_tokens_per_min_mean",
        "metrics_num_prompts_attempted_mean",
        "metrics_num_prompts_succeeded_mean",
        "accelerator_type",
    ] {
        assert!(header.split(',').any(|c| c == col), "{col} not in {header}");
    }
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(rows.len() >= 4 && rows.len() <= 8, "{csv}");
    assert!(
        rows.iter().all(|r| r.contains(",In:2-3 Out:8-15,")
            && r.contains(",SIM_L4,1,stampede-sim,stampede-target-llm,")),
        "{csv}"
    );
    let steps = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            p.join("summary.json").exists().then_some(p)
        })
        .count();
    assert_eq!(steps, rows.len());
    assert!(
        dir.read("out/plots/SIM_L4__In_2-3_Out_8-15.svg")
            .contains("SLO 25 ms")
    );

    // `generate` on the CSV and the served profile from --results agree with the sweep.
    let body = json!({"workload_definition": {
        "worker_types": [{"id": "sim", "accelerator_type": "SIM_L4"}],
        "request_types": [{"id": "small", "input_size_bucket": "2-3", "output_size_bucket": "8-15", "latency_slo_tpot_ms": 25.0}]
    }}).to_string();
    dir.write("w.json", &body);
    let generated = Proc::run(
        &[
            "profile",
            "generate",
            "--csv",
            "out/benchmarks.csv",
            "--workload",
            "w.json",
        ],
        dir.path(),
        Duration::from_secs(30),
    );
    generated.assert_code(0);
    let out: Value = serde_json::from_str(&generated.stdout).unwrap();
    assert_eq!(
        f32_text(&out["performanceProfile"]["entries"][0]["maxThroughputRps"]),
        format!("{found}")
    );
    assert!(
        generated.stderr.contains("p90 TTFT"),
        "{}",
        generated.show()
    );
    let results = dir.join("out");
    let (_server, port) = start_profile_server(&["--results", results.to_str().unwrap()]);
    runtime().block_on(async {
        let mut c = Reflecting::connect(port).await;
        let a = c.call(SERVICE, "GenerateProfile", &body).await.unwrap();
        let e = &a["performanceProfile"]["entries"][0];
        assert_eq!(e["status"], "OK");
        assert_eq!(f32_text(&e["maxThroughputRps"]), format!("{found}"));
    });

    // Not an LLM scenario: one line.
    let http = crate::util::workspace_root().join("scenarios/examples/http.toml");
    let bad = Proc::run(
        &["profile", "sweep", http.to_str().unwrap(), "--rates", "1"],
        dir.path(),
        Duration::from_secs(30),
    );
    bad.assert_code(1);
    assert_one_line_error(&bad.stderr, "a profile sweep needs kind = \"llm\"");
}
