//! Where in the scenario's text an error is: `toml_error` turns toml's errors into
//! [`ScenarioError`]s with line and field, `missing_table` names a missing top-level key,
//! and `locate` finds the line of a dotted field path (`requests[1].method`) for the errors
//! of checks that run after parsing.

use super::ScenarioError;

/// A scenario error from toml's, with the line and field when its message or span shows them.
pub(crate) fn toml_error(e: &toml::de::Error, text: &str, origin: &str) -> ScenarioError {
    let (field, message) = split_toml_message(e.message(), text, e.span());
    let line = e
        .span()
        .map(|s| key_line_from(text, s.start, field.as_deref()));
    ScenarioError {
        file: origin.to_string(),
        line,
        field,
        message,
    }
}

/// For well-formed TOML that lacks a required top-level key: an error saying which, with no
/// line (toml blames the document's first key for a missing one). `None` when none is missing.
pub(crate) fn missing_table(text: &str, origin: &str) -> Option<ScenarioError> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let message = if !doc.contains_key("load") {
        "missing table [load] (model = \"closed\" with users, \"open\" with rate, \
         \"simultaneous\" or \"stages\")"
            .to_string()
    } else {
        let key = ["name", "target"]
            .into_iter()
            .find(|k| !doc.contains_key(*k))?;
        format!("missing `{key}` (a top-level key, before any [table])")
    };
    Some(ScenarioError {
        file: origin.to_string(),
        line: None,
        field: None,
        message,
    })
}

/// 1-based line number of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The line of `key = ...` at or after byte `start` (an internally tagged table reports the
/// table's span, not the key's), else the line of `start`.
fn key_line_from(text: &str, start: usize, key: Option<&str>) -> usize {
    let first = line_of(text, start);
    if let Some(key) = key {
        for (i, line) in text[start.min(text.len())..].lines().enumerate() {
            if line.trim_start().starts_with('[') && i > 0 {
                break;
            }
            if line
                .split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
            {
                return first + i;
            }
        }
    }
    first
}

/// Turn toml's message into (field, message), naming the field when the message or the span
/// shows it.
fn split_toml_message(
    msg: &str,
    text: &str,
    span: Option<std::ops::Range<usize>>,
) -> (Option<String>, String) {
    let msg = msg.trim().to_string();
    // "unknown field `x`, expected ..." names the field itself.
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        return (Some(rest[..end].to_string()), msg);
    }
    // Otherwise the span usually covers `key = value` or the value; take the key on that line.
    let field = span.and_then(|s| {
        let start = text[..s.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = text[start..].lines().next()?;
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
    });
    (field, msg)
}

/// Find the line of a dotted field path (`load.users`, `requests[1].method`, `thresholds.p99_ms`)
/// by walking the document's table headers. Good for the plain layouts scenarios use; `None`
/// when it cannot tell.
pub(crate) fn locate(text: &str, field: &str) -> Option<usize> {
    // Split "requests[1].method" into ("requests", Some(1), "method").
    let mut parts: Vec<&str> = field.split('.').collect();
    let key = parts.pop()?;
    let (key, _) = split_index(key);
    let table: Vec<(&str, Option<usize>)> = parts.iter().map(|p| split_index(p)).collect();
    let table_name: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    let wanted_index = table.last().and_then(|(_, i)| *i);
    let mut current: Vec<String> = Vec::new();
    let mut seen_of_array = 0usize;
    let mut in_wanted = table.is_empty();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix("[[").and_then(|l| l.split(']').next()) {
            current = h.trim().split('.').map(|s| s.trim().to_string()).collect();
            let is_wanted = current == table_name;
            if is_wanted {
                in_wanted = wanted_index.is_none_or(|i| i == seen_of_array);
                seen_of_array += 1;
            } else {
                in_wanted = false;
            }
        } else if let Some(h) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = h.trim().split('.').map(|s| s.trim().to_string()).collect();
            in_wanted = current == table_name;
        } else if (in_wanted || (table.is_empty() && current.is_empty()))
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            // For "stages[2]" inside an inline array, the key's line is the best we know.
            return Some(n + 1);
        }
    }
    None
}

fn split_index(s: &str) -> (&str, Option<usize>) {
    match s.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
        None => (s, None),
    }
}
