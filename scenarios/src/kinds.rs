//! Scenario kinds: the [`Kind`] a scenario file names (`kind = "llm"`), resolved once when the
//! file is parsed, so the rest of Stampede matches on an enum instead of comparing text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A scenario kind: which request driver sends a scenario's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Kind {
    /// `http`: the `[[requests]]`, picked by weight.
    #[default]
    Http,
    /// `llm`: streamed completions from an LLM server (`[llm]`).
    Llm,
    /// `download`: one large body per user, checked as it arrives (`[download]`).
    Download,
    /// `priority`: 9 classes of gRPC inference requests (`[priority]`).
    Priority,
}

impl Kind {
    /// Every kind this build knows, in the order messages list them.
    pub const ALL: &[Kind] = &[Kind::Http, Kind::Llm, Kind::Download, Kind::Priority];

    /// The kind as scenario files write it (`llm`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Llm => "llm",
            Kind::Download => "download",
            Kind::Priority => "priority",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `kind` this build has no driver for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario kind `{0}` (known: {known})", known = known())]
pub struct UnknownKind(pub String);

/// The known kinds, as the unknown-kind message lists them.
fn known() -> String {
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    names.join(", ")
}

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for &kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(Kind::default(), Kind::Http);
    }

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let e = "grpc".parse::<Kind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown scenario kind `grpc` (known: http, llm, download, priority)"
        );
    }
}
