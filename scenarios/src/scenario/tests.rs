//! Scenario files end to end: parsing, errors with file, line and field, overrides, sweeps,
//! the tables other tools read, and the assignment workers get.

use std::time::Duration;

use super::*;
use crate::load::Arrival;
use crate::model::{Overrides, ScenarioError};
use crate::units::Count;

const GOOD: &str = r#"
name = "demo"
target = "http://127.0.0.1:8080"
duration = "10s"

[load]
model = "closed"
users = 20
spawn_rate = 5

[[requests]]
name = "index"
path = "/"
weight = 3

[[requests]]
name = "post"
method = "POST"
path = "/items"
body = '{"a": 1}'
headers = { "content-type" = "application/json" }

[thresholds]
p99_ms = "< 250"
error_rate = "< 0.01"
"#;

fn parse(text: &str) -> Result<ScenarioConfig, ScenarioError> {
    ScenarioConfig::parse(text, "t.toml", &Overrides::default())
}

#[test]
fn worker_type_table_is_read_checked_and_not_sent_to_workers() {
    let text = format!(
        "{GOOD}\n[worker_type]\naccelerator_type = \"NVIDIA_L4\"\nmodel_server_type = \"vLLM\"\n"
    );
    let c = ScenarioConfig::parse(&text, "s.toml", &Overrides::default()).unwrap();
    let w = c.file.worker_type.as_ref().unwrap();
    assert_eq!(
        (w.accelerator_type.as_str(), w.accelerator_count),
        ("NVIDIA_L4", 1)
    );
    assert!(
        !c.to_assignment().contains("worker_type"),
        "{}",
        c.to_assignment()
    );
    let text = format!("{GOOD}\n[worker_type]\naccelerator_type = \" \"\n");
    let e = ScenarioConfig::parse(&text, "s.toml", &Overrides::default()).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("worker_type.accelerator_type"));
    let text = format!("{GOOD}\n[worker_type]\naccelerator = \"x\"\n");
    assert!(ScenarioConfig::parse(&text, "s.toml", &Overrides::default()).is_err());
}

#[test]
fn placement_table_is_read_checked_and_not_sent_to_workers() {
    let text = format!(
        "{GOOD}\n[placement]\nmodel = \"resnet50\"\nconv_layers = 53\npool_layers = 2\nfc_layers = 1\n\
         filter_details = 64\ntotal_parameters = \"10000000000000000000\"\nmodel_input_size = \"150k\"\n\
         model_output_size = 1000\ndevice_type = \"Raspberry Pi 4B\"\ndevices = {{ \"nuc-1\" = \"Intel NUC\" }}\n"
    );
    let c = parse(&text).unwrap();
    let p = c.file.placement.as_ref().unwrap();
    assert_eq!(p.total_parameters, Count(10_000_000_000_000_000_000));
    assert_eq!(p.model_input_size, Count(150_000));
    assert_eq!(p.device_of("nuc-1"), Some("Intel NUC"));
    assert_eq!(p.device_of("local-1"), Some("Raspberry Pi 4B"));
    assert!(
        !c.to_assignment().contains("placement"),
        "{}",
        c.to_assignment()
    );
    let e = parse(&text.replace(
        "device_type = \"Raspberry Pi 4B\"\ndevices = { \"nuc-1\" = \"Intel NUC\" }\n",
        "",
    ))
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("placement"));
    assert!(e.message.contains("needs `device_type`"), "{e}");
    let e = parse(&text.replace("fc_layers = 1", "fc_layer = 1")).unwrap_err();
    assert!(e.to_string().contains("unknown field `fc_layer`"), "{e}");
    let e = parse(&text.replace("pool_layers = 2", "pool_layers = -2")).unwrap_err();
    assert!(e.to_string().contains("must not be negative"), "{e}");
}

#[test]
fn good_scenario_parses() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.name, "demo");
    assert_eq!(c.duration, Duration::from_secs(10));
    assert_eq!(
        c.load,
        LoadModel::Closed {
            users: 20,
            spawn_rate: 5.0
        }
    );
    assert_eq!(c.thresholds.len(), 2);
    assert_eq!(c.file.requests[1].method, "POST");
}

#[test]
fn round_trips_through_toml() {
    let c = parse(GOOD).unwrap();
    let again = ScenarioConfig::from_assignment(&c.to_assignment(), "a").unwrap();
    assert_eq!(again, c);
}

/// An `llm` scenario reading its prompts from `{path}` (one a line).
const LLM: &str = r#"
name = "chat"
target = "http://127.0.0.1:8000"
kind = "llm"

[load]
model = "closed"
users = 2

[llm]
model = "m"

[llm.prompts]
source = "lines"
path = "{path}"
"#;

/// `text`, loaded from `bad.toml` in a new folder that holds `files` (name, content).
fn load_in_dir(
    text: &str,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, Result<ScenarioConfig, ScenarioError>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let scenario = dir.path().join("bad.toml");
    std::fs::write(&scenario, text).unwrap();
    let loaded = ScenarioConfig::load(&scenario);
    (dir, loaded)
}

#[test]
fn assignment_carries_what_the_master_prepared() {
    let (dir, loaded) = load_in_dir(&LLM.replace("{path}", "p.txt"), &[("p.txt", "a b c d e\n")]);
    let mut c = loaded.unwrap();
    c.resolve_prompts("bad.toml").unwrap();
    let c = c
        .with_overrides(&Overrides {
            requests_csv: true,
            ..Overrides::default()
        })
        .unwrap();
    let again = ScenarioConfig::from_assignment(&c.to_assignment(), "a").unwrap();
    let llm = again.file.llm.as_ref().unwrap();
    assert_eq!(llm.resolved.len(), 1);
    assert_eq!(llm.resolved[0].text, "a b c d e");
    assert!(llm.requests_csv);
    assert_eq!(again, c);
    drop(dir);
}

#[test]
fn llm_typo_lists_only_settable_fields() {
    let text = LLM.replace("model = \"m\"", "model = \"m\"\nstreem = true");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("streem"), "{e}");
    assert!(
        e.message.contains("'stream'") || e.message.contains("`stream`"),
        "{e}"
    );
    for internal in ["resolved", "requests_csv"] {
        assert!(!e.message.contains(internal), "{e}");
        let text = LLM.replace("model = \"m\"", &format!("model = \"m\"\n{internal} = []"));
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(internal), "{e}");
        assert!(e.message.starts_with("unknown field"), "{e}");
    }
}

#[test]
fn prompt_errors_name_the_scenario_file_and_setting() {
    // A missing prompt file.
    let (dir, loaded) = load_in_dir(&LLM.replace("{path}", "nope.txt"), &[]);
    let mut c = loaded.unwrap();
    let e = c.resolve_prompts("bad.toml").unwrap_err();
    let nope = dir.path().join("nope.txt");
    let want = format!("bad.toml: llm.prompts.path: {}: ", nope.display());
    assert!(e.to_string().starts_with(&want), "{e}");

    // A text file given as ShareGPT.
    let text = LLM
        .replace("{path}", "p.txt")
        .replace("\"lines\"", "\"sharegpt\"");
    let (_dir, loaded) = load_in_dir(&text, &[("p.txt", "hello there\n")]);
    let e = loaded.unwrap().resolve_prompts("bad.toml").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("llm.prompts.path"), "{e}");
    assert!(
        e.to_string().starts_with("bad.toml: llm.prompts.path: "),
        "{e}"
    );
    assert!(e.message.contains("p.txt: not ShareGPT JSON"), "{e}");

    // A missing tokenizer.
    let text = LLM
        .replace("{path}", "p.txt")
        .replace("model = \"m\"", "model = \"m\"\ntokenizer = \"tok.json\"");
    let (_dir, loaded) = load_in_dir(&text, &[("p.txt", "a b c d e\n")]);
    let e = loaded.unwrap().resolve_prompts("bad.toml").unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.field.as_deref()),
        ("bad.toml", Some("llm.tokenizer")),
        "{e}"
    );
    assert!(e.message.contains("tok.json"), "{e}");

    // Bad length distributions.
    for (input, field) in [
        (
            "{ dist = \"uniform\", min = 9, max = 3 }",
            "llm.prompts.input",
        ),
        (
            "{ dist = \"normal\", mean = 9, stddev = -1 }",
            "llm.prompts.input",
        ),
    ] {
        let text = LLM.replace(
            "source = \"lines\"\npath = \"{path}\"",
            &format!("source = \"synthetic\"\ninput = {input}\noutput = {{ dist = \"fixed\", tokens = 8 }}"),
        );
        let mut c = parse(&text).unwrap();
        let e = c.resolve_prompts("bad.toml").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.field.as_deref()),
            ("bad.toml", Some(field)),
            "{e}"
        );
        assert!(!e.to_string().contains("<scenario>"), "{e}");
    }
}

#[test]
fn missing_load_names_the_table_not_line_one() {
    let text = GOOD.replace(
        "[load]\nmodel = \"closed\"\nusers = 20\nspawn_rate = 5\n",
        "",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (None, None), "{e}");
    assert!(
        e.to_string()
            .starts_with("t.toml: missing table [load] (model = \"closed\""),
        "{e}"
    );
    let e = parse(&GOOD.replace("target = \"http://127.0.0.1:8080\"", "")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml: missing `target` (a top-level key, before any [table])"
    );
}

#[test]
fn http_without_requests_hints_at_the_kind_of_its_table() {
    let text = LLM
        .replace("kind = \"llm\"\n", "")
        .replace("{path}", "p.txt");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("requests"), "{e}");
    assert!(
        e.message
            .ends_with("; this file has an [llm] table: did you mean kind = \"llm\"?"),
        "{e}"
    );
    let text = format!(
        "{}\n[download]\nmodel_id = \"a/b\"\n",
        GOOD.split("[[requests]]").next().unwrap()
    );
    let e = parse(&text).unwrap_err();
    assert!(
        e.message.ends_with("did you mean kind = \"download\"?"),
        "{e}"
    );
}

#[test]
fn unknown_kind_is_located_and_lists_the_known_ones() {
    let text = GOOD.replace("duration = \"10s\"", "duration = \"10s\"\nkind = \"grpc\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:5: kind: unknown scenario kind `grpc` (known: http, llm, download, priority)"
    );
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let text = GOOD.replace("spawn_rate = 5", "spawn_rate = 5\nusres = 3");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.file, "t.toml");
    assert_eq!(e.line, Some(10), "{e}");
    assert_eq!(e.field.as_deref(), Some("usres"), "{e}");
    assert!(
        e.to_string().starts_with("t.toml:10: usres: unknown field"),
        "{e}"
    );
}

#[test]
fn semantic_errors_are_located() {
    let e = parse(&GOOD.replace("users = 20", "users = 0")).unwrap_err();
    assert_eq!(
        (e.line, e.field.as_deref()),
        (Some(8), Some("load.users")),
        "{e}"
    );
    let e = parse(&GOOD.replace("method = \"POST\"", "method = \"P O\"")).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("requests[1].method"), "{e}");
    assert_eq!(e.line, Some(18), "{e}");
    let e = parse(&GOOD.replace("< 250", "about 250")).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("thresholds.p99_ms"), "{e}");
    assert_eq!(e.line, Some(24), "{e}");
    let e = parse(&GOOD.replace("http://127.0.0.1:8080", "ftp://x")).unwrap_err();
    assert_eq!(
        (e.line, e.field.as_deref()),
        (Some(3), Some("target")),
        "{e}"
    );
}

#[test]
fn bad_values_and_syntax() {
    let e = parse(&GOOD.replace("duration = \"10s\"", "duration = \"10 fortnights\"")).unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("unknown unit"), "{e}");
    let e = parse("name = \"x\"\ntarget = \n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse(&GOOD.replace("model = \"closed\"", "model = \"chaos\"")).unwrap_err();
    assert!(e.message.contains("unknown variant"), "{e}");
    let e = parse(
        &GOOD
            .replace("builtin", "x")
            .replace("http://127.0.0.1:8080", "builtin:nope"),
    )
    .unwrap_err();
    assert!(e.message.contains("unknown built-in target"), "{e}");
}

#[test]
fn sweeps_step_by_rate_or_users() {
    let text = format!("{GOOD}\n[sweep]\nrates = [2, \"4\", \"600/m\"]\n");
    let c = parse(&text).unwrap();
    let sweep = c.sweep.clone().unwrap();
    assert_eq!(sweep, Sweep::Rates(vec![2.0, 4.0, 10.0]));
    assert_eq!(sweep.axis(), "rate");
    let step = c.sweep_step(&sweep, 4.0).unwrap();
    assert!(step.load.is_open() && step.load.total_at(Duration::ZERO) == 4.0);
    assert!(step.sweep.is_none() && !step.to_assignment().contains("sweep"));
    let users = c
        .with_overrides(&Overrides {
            sweep: Some(SweepFile {
                users: vec![Count(1), Count(3)],
                ..SweepFile::default()
            }),
            ..Default::default()
        })
        .unwrap();
    let sweep = users.sweep.clone().unwrap();
    assert_eq!(sweep.values(), vec![1.0, 3.0]);
    let step = users.sweep_step(&sweep, 3.0).unwrap();
    assert_eq!(step.load.peak(), 3.0);
    let e = parse(&format!("{GOOD}\n[sweep]\nrates = [1]\nusers = [2]\n")).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("sweep"), "{e}");
    let e = parse(&format!("{GOOD}\n[sweep]\nrates = [1, 0]\n")).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("sweep.rates[1]"), "{e}");
    let e = parse(&format!("{GOOD}\n[sweep]\n")).unwrap_err();
    assert!(e.message.contains("needs"), "{e}");
}

#[test]
fn burstiness_makes_gamma_arrivals() {
    let open = GOOD.replace(
        "model = \"closed\"\nusers = 20\nspawn_rate = 5",
        "model = \"open\"\nrate = 50\nburstiness = 0.5",
    );
    assert_ne!(open, GOOD, "the fixture changed");
    let c = parse(&open).unwrap();
    assert_eq!(
        (c.load.arrival(), c.load.burstiness()),
        (Arrival::Gamma, 0.5)
    );
    let gamma = parse(&open.replace("burstiness = 0.5", "arrival = \"gamma\"")).unwrap();
    assert_eq!(
        (gamma.load.arrival(), gamma.load.burstiness()),
        (Arrival::Gamma, 1.0)
    );
    let e = parse(&open.replace("0.5", "0")).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("load.burstiness"), "{e}");
    let e = parse(&open.replace("burstiness", "arrival = \"constant\"\nburstiness")).unwrap_err();
    assert!(e.message.contains("gamma"), "{e}");
}

#[test]
fn overrides_switch_models() {
    let base = parse(GOOD).unwrap();
    let open = base
        .with_overrides(&Overrides {
            rate: Some(100.0),
            arrival: Some(Arrival::Constant),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        open.load,
        LoadModel::Open {
            rate: 100.0,
            arrival: Arrival::Constant,
            burstiness: 1.0,
            max_in_flight: 10_000
        }
    );
    let bursty = open
        .with_overrides(&Overrides {
            burstiness: Some(0.25),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(bursty.load.arrival(), Arrival::Gamma);
    assert_eq!(bursty.load.burstiness(), 0.25);
    // Back to Poisson: the shape goes with the gamma arrivals.
    let poisson = bursty
        .with_overrides(&Overrides {
            arrival: Some(Arrival::Poisson),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (poisson.load.arrival(), poisson.load.burstiness()),
        (Arrival::Poisson, 1.0)
    );
    let closed = open
        .with_overrides(&Overrides {
            users: Some(7),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        closed.load,
        LoadModel::Closed {
            users: 7,
            spawn_rate: f64::INFINITY
        }
    );
    let d = base
        .with_overrides(&Overrides {
            duration: Some(Duration::from_secs(2)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(d.duration, Duration::from_secs(2));
    let e = base
        .with_overrides(&Overrides {
            users: Some(0),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("load.users"));
}

#[test]
fn stages_sum_their_durations() {
    let text = r#"
name = "ramp"
target = "builtin:http"
[load]
model = "stages"
stages = [ { duration = "10s", rate = 100 }, { duration = "20s", rate = 100 }, { duration = "5s", rate = 0 } ]
[[requests]]
path = "/"
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.duration, Duration::from_secs(35));
    assert_eq!(c.target, Target::Builtin("http".into()));
    let mixed = text.replace(
        "{ duration = \"20s\", rate = 100 }",
        "{ duration = \"20s\", users = 100 }",
    );
    let e = parse(&mixed).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("load.stages[1]"), "{e}");
    assert_eq!(e.line, Some(6), "{e}");
}
