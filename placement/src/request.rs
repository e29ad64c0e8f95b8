//! The body of `POST /api/profiling`: a JSON object read with its keys in order and every
//! value kept as the exact text that was sent, so the answer echoes it unchanged (integers up
//! to 2^64 - 1 included); then checked field by field into the standalone or cluster form.
//!
//! Called by the server for each request. It predicts nothing and queries nothing.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::row::{COUNTS, CPU, DEVICE, DISK, ModelSpec, NodeState};

/// The body as sent: `(key, value text)` in the order given.
#[derive(Debug)]
pub struct Body(Vec<(String, Box<RawValue>)>);

impl Body {
    /// The value text of `key` (the last one, should it repeat).
    fn get(&self, key: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Body, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Body;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Box<RawValue> = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Body(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// Serializes as the object that was sent: same keys, same order, same value text.
impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A field that is missing or wrong. Displays as `field: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct FieldError {
    /// The field at fault (`None` when the body as a whole is).
    pub field: Option<String>,
    /// What is wrong and what would be right.
    pub message: String,
}

/// What the request asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    /// The body names the device and its load: predict for it.
    Standalone(ModelSpec, NodeState),
    /// The body names only the model: predict for every node Prometheus knows.
    Cluster(ModelSpec),
}

/// A checked request: the body to echo and what it asks.
#[derive(Debug)]
pub struct Profiling {
    /// The body, to echo as `model_characteristics`.
    pub body: Body,
    /// Standalone or cluster.
    pub form: Form,
}

/// Read and check a request body.
pub fn parse(bytes: &[u8]) -> Result<Profiling, FieldError> {
    let whole = |message: String| FieldError {
        field: None,
        message,
    };
    let body: Body = serde_json::from_slice(bytes).map_err(|e| {
        whole(format!(
            "the body must be a JSON object with the model's characteristics ({e})"
        ))
    })?;
    let model = match body.get("model") {
        None => return Err(missing("model", "the model's name")),
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map_err(|_| wrong("model", raw, "must be a string"))?,
    };
    let mut counts = [0u64; 7];
    for (slot, name) in counts.iter_mut().zip(COUNTS) {
        let raw = body
            .get(name)
            .ok_or_else(|| missing(name, "a whole number, 0 or more"))?;
        *slot = count(name, raw)?;
    }
    let spec = ModelSpec::from_counts(model, counts);
    let standalone = [DEVICE, CPU, DISK].iter().any(|k| body.get(k).is_some());
    let form = if standalone {
        let device_type = match body.get(DEVICE) {
            None => return Err(missing(DEVICE, "the device's type (standalone form)")),
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map_err(|_| wrong(DEVICE, raw, "must be a string"))?,
        };
        Form::Standalone(
            spec,
            NodeState {
                cpu_usage: percent(CPU, body.get(CPU))?,
                disk_usage: percent(DISK, body.get(DISK))?,
                device_type,
            },
        )
    } else {
        Form::Cluster(spec)
    };
    Ok(Profiling { body, form })
}

fn missing(field: &str, what: &str) -> FieldError {
    FieldError {
        field: Some(field.to_string()),
        message: format!("missing; expected {what}"),
    }
}

fn wrong(field: &str, raw: &RawValue, message: &str) -> FieldError {
    FieldError {
        field: Some(field.to_string()),
        message: format!("{message}, got {}", shorten(raw.get())),
    }
}

/// A count from the number's text, so no digit is lost on the way.
fn count(field: &str, raw: &RawValue) -> Result<u64, FieldError> {
    let text = raw.get();
    if !is_number(text) {
        return Err(wrong(field, raw, "must be a whole number, 0 or more"));
    }
    crate::row::parse_count(text).map_err(|message| FieldError {
        field: Some(field.to_string()),
        message,
    })
}

fn percent(field: &str, raw: Option<&RawValue>) -> Result<f64, FieldError> {
    let raw = raw.ok_or_else(|| missing(field, "a percentage, 0 to 100 (standalone form)"))?;
    if !is_number(raw.get()) {
        return Err(wrong(field, raw, "must be a number from 0 to 100"));
    }
    crate::row::parse_percent(raw.get()).map_err(|message| FieldError {
        field: Some(field.to_string()),
        message,
    })
}

/// Whether JSON value text is a number (not a string, boolean, null, array or object).
fn is_number(text: &str) -> bool {
    text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster example of PEPPER's Profiler's README, as sent (odd spacing included).
    const CLUSTER: &str = r#"{       "model" : "model",
        "conv_layers" : 66666666,
        "pool_layers" : 77777777,
        "fc_layers" : 34535353535,
        "filter_details" : 66,
        "total_parameters" : 10000000000000000000,
        "model_input_size": 345343543,
        "model_output_size": 123421435}"#;

    #[test]
    fn the_readme_example_is_read_and_echoed_exactly() {
        let p = parse(CLUSTER.as_bytes()).unwrap();
        let Form::Cluster(spec) = &p.form else {
            panic!("{:?}", p.form)
        };
        assert_eq!(spec.total_parameters, 10_000_000_000_000_000_000);
        assert_eq!(spec.fc_layers, 34_535_353_535);
        assert_eq!(
            serde_json::to_string(&p.body).unwrap(),
            r#"{"model":"model","conv_layers":66666666,"pool_layers":77777777,"fc_layers":34535353535,"filter_details":66,"total_parameters":10000000000000000000,"model_input_size":345343543,"model_output_size":123421435}"#
        );
    }

    #[test]
    fn standalone_needs_all_three_node_fields() {
        let body = CLUSTER.replace("\"model\" : \"model\",", "\"model\":\"m\", \"device_type\": \"Raspberry Pi 4B\", \"cpu_usage(percentage)\": 95, \"disk_usage(percentage)\": 75.5,");
        let p = parse(body.as_bytes()).unwrap();
        let Form::Standalone(_, node) = &p.form else {
            panic!("{:?}", p.form)
        };
        assert_eq!((node.cpu_usage, node.disk_usage), (95.0, 75.5));
        let body = CLUSTER.replace(
            "\"model\" : \"model\",",
            "\"model\":\"m\", \"device_type\": \"Raspberry Pi 4B\", \"cpu_usage(percentage)\": 95,",
        );
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(DISK));
        assert!(
            e.to_string().starts_with("disk_usage(percentage): missing"),
            "{e}"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let case = |from: &str, to: &str| parse(CLUSTER.replace(from, to).as_bytes()).unwrap_err();
        let e = case("\"conv_layers\" : 66666666,", "");
        assert_eq!(
            e.to_string(),
            "conv_layers: missing; expected a whole number, 0 or more"
        );
        let e = case("\"pool_layers\" : 77777777", "\"pool_layers\" : \"many\"");
        assert_eq!(
            e.to_string(),
            "pool_layers: must be a whole number, 0 or more, got \"many\""
        );
        let e = case("\"fc_layers\" : 34535353535", "\"fc_layers\" : -3");
        assert_eq!(
            e.to_string(),
            "fc_layers: `-3` is negative; a count is 0 or more"
        );
        let e = case("10000000000000000000", "100000000000000000000");
        assert_eq!(
            e.to_string(),
            "total_parameters: `100000000000000000000` is past the largest count, 18446744073709551615"
        );
        let e = case("\"filter_details\" : 66", "\"filter_details\" : 6.5");
        assert_eq!(e.field.as_deref(), Some("filter_details"));
        let e = case("\"filter_details\" : 66", "\"filter_details\" : null");
        assert_eq!(e.field.as_deref(), Some("filter_details"));
        let e = case("\"model\" : \"model\"", "\"model\" : 7");
        assert_eq!(e.to_string(), "model: must be a string, got 7");
        let e = case("\"model\" : \"model\",", "");
        assert_eq!(e.field.as_deref(), Some("model"));
        let e = parse(b"[1, 2]").unwrap_err();
        assert_eq!(e.field, None);
        assert!(e.message.contains("must be a JSON object"), "{e}");
        let e = parse(b"{\"model\": ").unwrap_err();
        assert_eq!(e.field, None);
        let body = CLUSTER.replace("\"model\" : \"model\",", "\"model\":\"m\", \"device_type\": \"x\", \"cpu_usage(percentage)\": 101, \"disk_usage(percentage)\": 5,");
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cpu_usage(percentage): `101` is not between 0 and 100"
        );
    }
}
