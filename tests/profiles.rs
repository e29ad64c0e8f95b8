//! `stampede profile`: the grpcurl session of ig-wva's Performance Profile Generator replayed
//! against the real server by a client that, like grpcurl, knows no proto file (descriptors come
//! from server reflection, messages are built from the README's JSON); health and graceful
//! shutdown; bad input as gRPC statuses and one-line errors; CSV files and URLs (https against a
//! test CA given by SSL_CERT_FILE, and an untrusted one); GCS objects through a stand-in for the
//! JSON API and the metadata server.

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

/// The Performance Profile Generator README's grpcurl request body, verbatim.
const README_REQUEST: &str = r#"{
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

/// The Performance Profile Generator's README calls the service by this name.
const README_SERVICE: &str = "experimental.users.benjaminbraun.gateway_autoscaling.performance_profiler.PerformanceProfileGenerator";
/// The service's proto name (what health is asked about).
const SERVICE: &str = "profiler_service.PerformanceProfileGenerator";

/// `stampede profile serve --port=0 ARGS` and the port it printed.
pub fn start_profile_server(args: &[&str]) -> (Proc, u16) {
    start_profile_server_with(args, &[])
}

/// `stampede profile serve --port=0 ARGS` with environment variables `env` (and none of the
/// TLS and Google Cloud ones from the test's own environment).
fn start_profile_server_with(args: &[&str], env: &[(&str, &str)]) -> (Proc, u16) {
    let mut cmd = cloud_free(stampede(), env);
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
    proc.signal("TERM", false);
}

#[test]
fn the_readme_grpcurl_session_through_reflection() {
    let (mut server, port) = start_profile_server(&["--use_mock_data"]);
    assert!(server.stdout().contains("Using mock data source."));
    let line = server.wait_stdout_line("Server listening at", STARTUP);
    assert_eq!(line, format!("Server listening at [::]:{port}"));
    runtime().block_on(async {
        let mut c = Reflecting::connect(port).await;
        let services = c.services().await;
        for s in [SERVICE, README_SERVICE, "grpc.health.v1.Health"] {
            assert!(services.iter().any(|x| x == s), "{s} not in {services:?}");
        }
        // grpcurl -plaintext -d '{"service": "..."}' localhost:8080 grpc.health.v1.Health/Check
        for service in [SERVICE, ""] {
            let body = json!({ "service": service }).to_string();
            let health = c.call("grpc.health.v1.Health", "Check", &body).await.unwrap();
            assert_eq!(health, json!({"status": "SERVING"}), "health of {service:?}");
        }
        // The README's GenerateProfile call, under both names.
        for service in [README_SERVICE, SERVICE] {
            let answer = c.call(service, "GenerateProfile", README_REQUEST).await.unwrap();
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
        "a data source must be specified: use --use_mock_data, --csv_file_path PATH|URL, \
         --gcs_csv_bucket B --gcs_csv_object O, or --results DIR",
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
    // One row per step, in the Performance Profile Generator's schema, each step's results kept.
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

/// A benchmark CSV whose profile for `workload("NVIDIA_L4", 20.0)` is 10 rps, OK.
fn ten_rps_csv() -> String {
    format!(
        "{CSV_HEADER}1,2-3,5,32-63,In:2-3 Out:32-63,4,10,NVIDIA_L4\n\
         1,2-3,5,32-63,In:2-3 Out:32-63,16,30,NVIDIA_L4\n"
    )
}

/// `stampede profile generate` for `workload("NVIDIA_L4", 20.0)` on [`ten_rps_csv`] ended well
/// and printed its profile: OK at 10 rps.
fn assert_generates_ten_rps(done: &crate::util::Finished) {
    done.assert_code(0);
    let out: Value = serde_json::from_str(&done.stdout).expect("JSON on stdout");
    let entry = &out["performanceProfile"]["entries"][0];
    assert_eq!(entry["maxThroughputRps"], json!(10), "{}", done.show());
    assert_eq!(entry["status"], "OK");
}

/// The profile server on gRPC port `grpc`, serving [`ten_rps_csv`], answers `GenerateProfile`
/// for `workload("NVIDIA_L4", 20.0)` with OK at 10 rps.
fn assert_serves_ten_rps(grpc: u16) {
    runtime().block_on(async {
        let mut c = Reflecting::connect(grpc).await;
        let a = c
            .call(SERVICE, "GenerateProfile", &workload("NVIDIA_L4", 20.0))
            .await
            .unwrap();
        let entry = &a["performanceProfile"]["entries"][0];
        assert_eq!(entry["status"], "OK");
        assert_eq!(f32_text(&entry["maxThroughputRps"]), "10");
    });
}

/// The variables that steer TLS roots and Google Cloud access, removed from `cmd` so the
/// test's own environment cannot leak in, then `env` set. The metadata server is pointed at a
/// closed loopback port unless `env` names one.
fn cloud_free(mut cmd: std::process::Command, env: &[(&str, &str)]) -> std::process::Command {
    for name in [
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        "STORAGE_EMULATOR_HOST",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("GCE_METADATA_HOST", format!("127.0.0.1:{}", free_port()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `stampede ARGS` in `dir` with `env` (see [`cloud_free`]), run to its end.
fn run_with_env(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> crate::util::Finished {
    let mut cmd = cloud_free(stampede(), env);
    cmd.args(args).current_dir(dir.path());
    Proc::spawn(&format!("stampede {}", args.join(" ")), cmd).wait_exit(Duration::from_secs(40))
}

/// An HTTP/1.1 answer that closes the connection.
fn http_answer(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A test CA and a certificate it signed for 127.0.0.1 and localhost.
struct TestPki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestPki {
    fn new(name: &str) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        TestPki {
            ca_pem: ca.pem(),
            chain: vec![leaf.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}

/// An https server on 127.0.0.1 (rustls, the leaf of `pki`) from its own thread: `/x.csv`
/// answers `csv`, `/old.csv` redirects there, anything else is 404. Its port.
fn start_https_files(pki: TestPki, csv: String) -> u16 {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain, pki.key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let csv = csv.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    // An untrusting client gives up in the handshake: nothing to answer.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("");
                    let answer = match path {
                        "/x.csv" => http_answer("200 OK", "content-type: text/csv\r\n", &csv),
                        "/old.csv" => http_answer("302 Found", "location: /x.csv\r\n", ""),
                        _ => http_answer("404 Not Found", "", "Not Found\n"),
                    };
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
    });
    port
}

#[test]
fn https_csv_urls_trust_ssl_cert_file_and_refuse_an_untrusted_certificate() {
    let dir = TestDir::new();
    let pki = TestPki::new("stampede test CA");
    let ca = dir.write("ca.pem", &pki.ca_pem);
    let other = dir.write("other-ca.pem", &TestPki::new("someone else").ca_pem);
    let port = start_https_files(pki, ten_rps_csv());
    dir.write("w.json", &workload("NVIDIA_L4", 20.0));
    let trusted = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let url = format!("https://127.0.0.1:{port}/x.csv");

    // `generate`, through a redirect.
    let moved = format!("https://127.0.0.1:{port}/old.csv");
    let args = [
        "profile",
        "generate",
        "--csv",
        &moved,
        "--workload",
        "w.json",
    ];
    assert_generates_ten_rps(&run_with_env(&dir, &args, &trusted));

    // `serve`: read at the start and again for the request.
    let (server, grpc) = start_profile_server_with(&["--csv_file_path", &url], &trusted);
    assert!(
        server
            .stdout()
            .contains(&format!("Using CSV data source at URL: {url}"))
    );
    assert_serves_ten_rps(grpc);
    drop(server);

    // A certificate signed by a CA that is not trusted: one line, exit 1, for both verbs.
    let untrusted = [("SSL_CERT_FILE", other.to_str().unwrap())];
    let args = ["profile", "generate", "--csv", &url, "--workload", "w.json"];
    let done = run_with_env(&dir, &args, &untrusted);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        &format!("{url}: certificate not trusted (unknown issuer)"),
    );
    let serve = ["profile", "serve", "--port=0", "--csv_file_path", &url];
    let done = run_with_env(&dir, &serve, &untrusted);
    done.assert_code(1);
    assert_one_line_error(&done.stderr, &format!("{url}: certificate not trusted"));

    // A file the server does not have.
    let missing = format!("https://127.0.0.1:{port}/nope.csv");
    let args = [
        "profile",
        "generate",
        "--csv",
        &missing,
        "--workload",
        "w.json",
    ];
    let done = run_with_env(&dir, &args, &trusted);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        &format!("{missing}: answered HTTP 404 Not Found: Not Found"),
    );
}

/// What the fake GCS saw: one line per request, `PATH authorization=VALUE`.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A stand-in for the GCS JSON API and the GCE metadata server on 127.0.0.1, from its own
/// thread. Objects are keyed by the path the API must be asked with (the object name percent-
/// encoded); `private` ones need `Bearer env-token` or `Bearer meta-token`. The metadata
/// server hands out `meta-token` to requests with `Metadata-Flavor: Google`. Its port and
/// what it saw.
fn start_fake_gcs(objects: Vec<(String, String, bool)>) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let (mut authorization, mut flavor) = (String::new(), String::new());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some((name, value)) = line.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "authorization" => authorization = value.trim().to_string(),
                        "metadata-flavor" => flavor = value.trim().to_string(),
                        _ => {}
                    }
                }
                line.clear();
            }
            log.lock()
                .unwrap()
                .push(format!("{path} authorization={authorization}"));
            let json = "content-type: application/json\r\n";
            let answer = if path == "/computeMetadata/v1/instance/service-accounts/default/token" {
                if flavor == "Google" {
                    let token =
                        r#"{"access_token":"meta-token","expires_in":3599,"token_type":"Bearer"}"#;
                    http_answer("200 OK", json, token)
                } else {
                    http_answer(
                        "403 Forbidden",
                        "",
                        "Missing Metadata-Flavor:Google header.",
                    )
                }
            } else {
                match objects.iter().find(|(p, _, _)| *p == path) {
                    Some((_, body, private))
                        if !private
                            || authorization == "Bearer env-token"
                            || authorization == "Bearer meta-token" =>
                    {
                        http_answer("200 OK", "content-type: text/csv\r\n", body)
                    }
                    Some(_) => http_answer(
                        "401 Unauthorized",
                        json,
                        r#"{"error":{"code":401,"message":"Anonymous caller does not have storage.objects.get access."}}"#,
                    ),
                    None => http_answer(
                        "404 Not Found",
                        json,
                        r#"{"error":{"code":404,"message":"No such object."}}"#,
                    ),
                }
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn gcs_objects_through_the_json_api_with_a_token_from_the_environment_or_the_metadata_server() {
    let dir = TestDir::new();
    dir.write("w.json", &workload("NVIDIA_L4", 20.0));
    let private = "/storage/v1/b/perf-data/o/runs%2Fa%20b%2Fbench.csv?alt=media";
    let public = "/storage/v1/b/perf-data/o/public.csv?alt=media";
    let (port, seen) = start_fake_gcs(vec![
        (private.to_string(), ten_rps_csv(), true),
        (public.to_string(), ten_rps_csv(), false),
    ]);
    let emulator = format!("127.0.0.1:{port}");
    let gcs = |object: &'static str| {
        [
            "profile",
            "generate",
            "--gcs_csv_bucket",
            "perf-data",
            "--gcs_csv_object",
            object,
            "--workload",
            "w.json",
        ]
    };

    // A token from the environment; the emulator named without a scheme.
    let done = run_with_env(
        &dir,
        &gcs("runs/a b/bench.csv"),
        &[
            ("STORAGE_EMULATOR_HOST", &emulator),
            ("GOOGLE_OAUTH_ACCESS_TOKEN", "env-token"),
        ],
    );
    assert_generates_ten_rps(&done);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [format!("{private} authorization=Bearer env-token")]
    );

    // No token in the environment: the metadata server's, for `serve` (the generator's spellings).
    seen.lock().unwrap().clear();
    let metadata = [
        ("STORAGE_EMULATOR_HOST", format!("http://{emulator}")),
        ("GCE_METADATA_HOST", emulator.clone()),
    ];
    let metadata: Vec<(&str, &str)> = metadata.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (server, grpc) = start_profile_server_with(
        &[
            "--gcs_csv_bucket=perf-data",
            "-gcs_csv_object=runs/a b/bench.csv",
        ],
        &metadata,
    );
    assert!(
        server
            .stdout()
            .contains("Using GCS CSV data source: gs://perf-data/runs/a b/bench.csv"),
        "{}",
        server.stdout()
    );
    assert_serves_ten_rps(grpc);
    drop(server);
    {
        let seen = seen.lock().unwrap();
        let token = "/computeMetadata/v1/instance/service-accounts/default/token authorization=";
        // The token is asked for once and kept; the object is read at the start and per call.
        assert_eq!(seen.iter().filter(|s| *s == token).count(), 1, "{seen:?}");
        let reads = format!("{private} authorization=Bearer meta-token");
        assert_eq!(seen.iter().filter(|s| **s == reads).count(), 2, "{seen:?}");
    }

    // No credentials at all (the metadata server is a closed port): public objects only.
    let anonymous = [("STORAGE_EMULATOR_HOST", emulator.as_str())];
    assert_generates_ten_rps(&run_with_env(&dir, &gcs("public.csv"), &anonymous));
    let done = run_with_env(&dir, &gcs("runs/a b/bench.csv"), &anonymous);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        &format!(
            "gs://perf-data/runs/a b/bench.csv: http://{emulator}{private}: answered HTTP 401 \
             Unauthorized: Anonymous caller does not have storage.objects.get access.; no \
             credentials were sent"
        ),
    );

    // A refused token and a missing object: one line each.
    let stale = [
        ("STORAGE_EMULATOR_HOST", emulator.as_str()),
        ("GOOGLE_OAUTH_ACCESS_TOKEN", "stale"),
    ];
    let done = run_with_env(&dir, &gcs("runs/a b/bench.csv"), &stale);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        "the token in GOOGLE_OAUTH_ACCESS_TOKEN was refused",
    );
    let done = run_with_env(&dir, &gcs("gone.csv"), &anonymous);
    done.assert_code(1);
    assert_one_line_error(&done.stderr, "gs://perf-data/gone.csv: http://127.0.0.1:");
    assert!(
        done.stderr
            .contains("answered HTTP 404 Not Found: No such object.")
    );

    // Half a GCS source, and the generator's Spanner flag.
    let args = ["profile", "serve", "--port=0", "--gcs_csv_bucket=perf-data"];
    let done = run_with_env(&dir, &args, &[]);
    done.assert_code(1);
    assert_one_line_error(&done.stderr, "--gcs_csv_bucket needs --gcs_csv_object");
    let args = [
        "profile",
        "serve",
        "--port=0",
        "--spanner_db=projects/p/instances/i/databases/d",
    ];
    let done = run_with_env(&dir, &args, &[]);
    done.assert_code(1);
    assert_one_line_error(
        &done.stderr,
        "--spanner_db is not supported: the Performance Profile Generator does not publish the Spanner \
         table schema",
    );
}
