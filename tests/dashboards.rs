//! `dashboards/`: every Grafana panel's query (and template query) parses as PromQL under
//! `promtool check rules` and names only metrics the master exports; the provisioning and the
//! Prometheus configuration agree with the dashboards.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::util::{TestDir, workspace_root};

/// Every `expr` string in a dashboard, with its panel title.
fn expressions(v: &Value, panel: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            let title = map.get("title").and_then(Value::as_str).unwrap_or(panel);
            for (k, child) in map {
                match (k.as_str(), child) {
                    ("expr", Value::String(e)) => out.push((title.to_string(), e.clone())),
                    _ => expressions(child, title, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| expressions(i, panel, out)),
        _ => {}
    }
}

/// Metric names (`stampede_...`) in a PromQL expression, histogram series suffixes removed.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("stampede_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| start + e);
        if boundary {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Grafana's variables replaced by what they stand for, so promtool can parse the query.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "5m")
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = workspace_root().join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_panel_query_parses_and_names_only_exported_metrics() {
    let boards = dashboards();
    let files: Vec<&str> = boards.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files,
        [
            "downloads.json",
            "fleet.json",
            "llm.json",
            "overview.json",
            "priority.json"
        ]
    );
    let exported: BTreeSet<String> = stampede_master::metrics::family_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let histograms: BTreeSet<&str> = stampede_master::metrics::histogram_names()
        .into_iter()
        .collect();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut count = 0;
    let mut uids = BTreeSet::new();
    for (file, board) in &boards {
        assert!(
            uids.insert(
                board["uid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: no uid"))
                    .to_string()
            )
        );
        let panels = board["panels"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no panels"));
        let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
        assert_eq!(ids.len(), panels.len(), "{file}: panel ids must be unique");
        for p in panels {
            assert_eq!(p["datasource"]["uid"], "stampede-prometheus", "{file}: {p}");
        }
        let mut exprs = Vec::new();
        expressions(board, "", &mut exprs);
        // The template query `label_values(metric{...}, label)` is Grafana's, not PromQL: check
        // its metric name only.
        let templates = board["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for t in &templates {
            if let Some(q) = t["definition"].as_str() {
                for name in metric_names(q) {
                    assert!(exported.contains(&name), "{file}: template names `{name}`");
                }
            }
        }
        assert!(!exprs.is_empty(), "{file}: no queries");
        for (panel, expr) in exprs {
            let names = metric_names(&expr);
            assert!(
                !names.is_empty(),
                "{file} / {panel}: no stampede metric in `{expr}`"
            );
            for name in names {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| histograms.contains(b)))
                    .unwrap_or(&name);
                assert!(
                    exported.contains(base),
                    "{file} / {panel}: `{name}` is not exported by the master"
                );
            }
            count += 1;
            // A JSON string is a valid YAML double-quoted scalar.
            rules.push_str(&format!(
                "      - record: dashboard:panel_{count}\n        expr: {}\n",
                serde_json::to_string(&as_promql(&expr)).unwrap()
            ));
        }
    }
    assert!(count >= 40, "only {count} queries");
    let dir = TestDir::new();
    let file = dir.write("dashboards.rules.yml", &rules);
    let out = match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            eprintln!(
                "skipping the PromQL parse: `promtool` is not installed (apt-get install prometheus)"
            );
            return;
        }
    };
    assert!(
        out.status.success(),
        "promtool rejects a dashboard query:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("{count} rules found")), "{said}");
}

#[test]
fn provisioning_and_scrape_config_match_the_dashboards() {
    let root = workspace_root().join("dashboards");
    let source =
        std::fs::read_to_string(root.join("grafana/provisioning/datasources/prometheus.yml"))
            .unwrap();
    assert!(source.contains("uid: stampede-prometheus"), "{source}");
    assert!(source.contains("url: http://prometheus:9090"), "{source}");
    let provider =
        std::fs::read_to_string(root.join("grafana/provisioning/dashboards/stampede.yml")).unwrap();
    assert!(
        provider.contains("path: /var/lib/grafana/dashboards"),
        "{provider}"
    );
    let scrape = root.join("prometheus.yml");
    let text = std::fs::read_to_string(&scrape).unwrap();
    // The dashboards' default `job` is the master's scrape job.
    assert!(text.contains("job_name: stampede-master"), "{text}");
    assert!(text.contains("master:8089"), "{text}");
    match Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&scrape)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("skipping `promtool check config`: promtool is not installed"),
    }
}

#[test]
fn the_metrics_page_lists_every_exported_metric() {
    let page = std::fs::read_to_string(workspace_root().join("docs/metrics.md")).unwrap();
    for name in stampede_master::metrics::family_names() {
        assert!(
            page.contains(&format!("| `{name}` |")),
            "docs/metrics.md's table has no row for `{name}`"
        );
    }
}
