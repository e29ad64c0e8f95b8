//! The registry: every kind has an entry that answers for a minimal file of its kind, names
//! round-trip, an unknown kind lists the known ones, and a file with another kind's table but
//! no `kind` names the kind it was likely meant to be.

use super::*;
use crate::{Overrides, ScenarioConfig};

/// A minimal valid scenario of `kind`, with what that kind needs.
fn minimal(kind: Kind) -> String {
    let table = match kind {
        Kind::Http => "[[requests]]\npath = \"/\"\n",
        Kind::Llm => {
            "[llm]\n[llm.prompts]\nsource = \"synthetic\"\n\
                      input = { dist = \"fixed\", tokens = 4 }\n\
                      output = { dist = \"fixed\", tokens = 4 }\n"
        }
        Kind::Download => "[download]\nmodel_id = \"a/b\"\n",
        Kind::Priority => "",
    };
    let load = match kind {
        Kind::Priority => "model = \"open\"\nrate = 30",
        _ => "model = \"closed\"\nusers = 2",
    };
    format!(
        "name = \"k\"\ntarget = \"http://127.0.0.1:9\"\nkind = \"{kind}\"\nduration = \"7s\"\n\
         [load]\n{load}\n{table}"
    )
}

fn parse(text: &str) -> ScenarioConfig {
    ScenarioConfig::parse(text, "k.toml", &Overrides::default()).unwrap()
}

#[test]
fn every_kind_has_an_entry_that_answers_for_its_files() {
    assert_eq!(Kind::ALL.len(), 4);
    for &kind in Kind::ALL {
        let config = parse(&minimal(kind));
        assert_eq!(config.kind, kind);
        assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.as_str());
        let catalog = config.catalog();
        assert!(!catalog.is_empty(), "{kind}: no request names");
        assert!(config.request_timeout() > Duration::ZERO, "{kind}");
        // Only the kinds with a table of their own claim one.
        let claims = (kind.entry().has_table)(&config.parts());
        assert_eq!(claims, matches!(kind, Kind::Llm | Kind::Download), "{kind}");
    }
    assert_eq!(Kind::default(), Kind::Http);
}

#[test]
fn entries_give_each_kind_its_own_figures() {
    let http = parse(&minimal(Kind::Http));
    assert_eq!(http.catalog()[0].name, "GET /");
    assert_eq!(http.request_timeout(), http::DEFAULT_TIMEOUT);
    assert!(http.record_streams().is_empty() && http.mix.is_none());
    let download = parse(&minimal(Kind::Download));
    // A download may take the whole run.
    assert_eq!(download.request_timeout(), Duration::from_secs(7));
    let priority = parse(&minimal(Kind::Priority));
    assert_eq!(priority.catalog().len(), priority::CLASSES);
    assert_eq!(priority.record_streams()[0].name, priority::STREAM);
    assert!(priority.mix.is_some());
    let llm = parse(&minimal(Kind::Llm));
    assert_eq!(llm.request_timeout(), llm::DEFAULT_TIMEOUT);
    let rows = llm
        .with_overrides(&Overrides {
            requests_csv: true,
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(rows.record_streams()[0].name, llm::REQUESTS_STREAM);
}

#[test]
fn unknown_kind_lists_the_known_ones() {
    let e = "grpc".parse::<Kind>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown scenario kind `grpc` (known: http, llm, download, priority)"
    );
    let text = minimal(Kind::Http).replace("kind = \"http\"", "kind = \"grpc\"");
    let e = ScenarioConfig::parse(&text, "k.toml", &Overrides::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "k.toml:3: kind: unknown scenario kind `grpc` (known: http, llm, download, priority)"
    );
}

#[test]
fn a_file_with_another_kinds_table_names_that_kind() {
    for kind in [Kind::Llm, Kind::Download] {
        let text = minimal(kind).replace(&format!("kind = \"{kind}\"\n"), "");
        let e = ScenarioConfig::parse(&text, "k.toml", &Overrides::default()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("requests"), "{e}");
        let hint = format!("; this file has an [{kind}] table: did you mean kind = \"{kind}\"?");
        assert!(e.message.ends_with(&hint), "{e}");
    }
    // `[priority]` too, and with two kinds' tables the first in registry order wins.
    let text = minimal(Kind::Http)
        .replace("kind = \"http\"\n", "")
        .replace("[[requests]]\npath = \"/\"\n", "[priority]\n[download]\n");
    let e = ScenarioConfig::parse(&text, "k.toml", &Overrides::default()).unwrap_err();
    assert!(
        e.message.ends_with("did you mean kind = \"download\"?"),
        "{e}"
    );
}
