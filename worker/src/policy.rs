//! What a worker agrees to do, whatever its master asks: send load only to the targets its
//! operator allowed (`--allow-target`), and never open a local file named by an assignment
//! (the master reads prompt, tokenizer and certificate files and sends their contents).
//!
//! Checked on every assignment before a driver is built; a refusal goes back to the master as
//! `Rejected` with this module's words. Targets are compared by name as written (no DNS), so
//! `localhost` and `127.0.0.1` are different entries.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use stampede_scenarios::{ScenarioConfig, Target};

/// The rules a worker holds its assignments to.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The targets it may load; `None`: any.
    pub allowed_targets: Option<Vec<AllowedTarget>>,
}

/// One `--allow-target` entry: a host, and a port unless any port will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTarget {
    /// Lower case, without IPv6 brackets or a trailing dot.
    host: String,
    port: Option<u16>,
}

impl FromStr for AllowedTarget {
    type Err = String;

    /// `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
    fn from_str(s: &str) -> Result<AllowedTarget, String> {
        let text = s.trim();
        let bad = |why: &str| format!("`{s}` is not HOST[:PORT] ({why})");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("no closing `]`"))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("text after `]`")),
            }
        } else {
            match text.rsplit_once(':') {
                // More than one colon and no brackets: a bare IPv6 address.
                Some((host, _)) if host.contains(':') => (text, None),
                Some((host, p)) => (host, Some(p)),
                None => (text, None),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err(bad("a host name or address, without a scheme or path"));
        }
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))
            })
            .transpose()?;
        Ok(AllowedTarget {
            host: normalize(host),
            port,
        })
    }
}

impl fmt::Display for AllowedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

impl AllowedTarget {
    fn admits(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && self.port.is_none_or(|p| Some(p) == port)
    }
}

fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl Policy {
    /// Whether this worker takes `config`; `Err` is the reason sent back to the master.
    pub fn check(&self, config: &ScenarioConfig) -> Result<(), String> {
        if let Some((field, path)) = unsent_file(config) {
            return Err(format!(
                "{field} names the file {} but the assignment does not carry its contents; this worker never opens a local file named by an assignment (the master reads such files and sends them)",
                path.display()
            ));
        }
        let Some(allowed) = &self.allowed_targets else {
            return Ok(());
        };
        let list = || {
            allowed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let uri = match &config.target {
            Target::Url(uri) => uri,
            Target::Builtin(kind) => {
                return Err(format!(
                    "target `builtin:{kind}` is not in this worker's --allow-target list ({})",
                    list()
                ));
            }
        };
        let host = normalize(uri.host().unwrap_or_default());
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => None,
        });
        if allowed.iter().any(|a| a.admits(&host, port)) {
            Ok(())
        } else {
            Err(format!(
                "target `{uri}` is not in this worker's --allow-target list ({})",
                list()
            ))
        }
    }
}

/// The first file `config` names whose contents did not come with it.
fn unsent_file(config: &ScenarioConfig) -> Option<(&'static str, &Path)> {
    if let Some(llm) = &config.file.llm {
        if let Some(path) = llm.prompts.file().filter(|_| llm.resolved.is_empty()) {
            return Some(("llm.prompts.path", path));
        }
        if let Some(path) = llm
            .tokenizer
            .as_deref()
            .filter(|_| llm.tokenizer_json.is_none())
        {
            return Some(("llm.tokenizer", path));
        }
    }
    if let Some(tls) = &config.file.tls {
        let m = &tls.material;
        for (field, path, sent) in [
            ("tls.ca", &tls.ca, m.ca.is_some()),
            ("tls.client_cert", &tls.client_cert, m.client_cert.is_some()),
            ("tls.client_key", &tls.client_key, m.client_key.is_some()),
        ] {
            if let Some(path) = path.as_deref().filter(|_| !sent) {
                return Some((field, path));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(target: &str, kind: &str, extra: &str) -> ScenarioConfig {
        let text = format!(
            "name = \"p\"\nkind = \"{kind}\"\ntarget = \"{target}\"\nduration = \"1s\"\n[load]\nmodel = \"closed\"\nusers = 1\n{extra}"
        );
        ScenarioConfig::parse(&text, "p.toml", &Default::default()).unwrap()
    }

    fn http(target: &str) -> ScenarioConfig {
        scenario(target, "http", "[[requests]]\npath = \"/\"\n")
    }

    fn allow(list: &[&str]) -> Policy {
        Policy {
            allowed_targets: Some(list.iter().map(|s| s.parse().unwrap()).collect()),
        }
    }

    #[test]
    fn entries_parse() {
        let cases = [
            ("lab-target", "lab-target"),
            ("Lab-Target.:8080", "lab-target:8080"),
            ("10.0.0.5:443", "10.0.0.5:443"),
            ("[::1]:8080", "[::1]:8080"),
            ("::1", "[::1]"),
        ];
        for (text, shown) in cases {
            let a: AllowedTarget = text.parse().unwrap();
            assert_eq!(a.to_string(), shown, "{text}");
        }
        for bad in ["", "http://x", "x:port", "[::1", "[::1]x"] {
            assert!(bad.parse::<AllowedTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_are_matched_by_host_and_port() {
        let p = allow(&["127.0.0.1:8080", "lab", "[::1]:9000"]);
        assert!(p.check(&http("http://127.0.0.1:8080")).is_ok());
        assert!(p.check(&http("http://LAB:1234/api")).is_ok());
        assert!(p.check(&http("https://lab")).is_ok());
        assert!(p.check(&http("http://[::1]:9000")).is_ok());
        let e = p.check(&http("http://127.0.0.1:8081")).unwrap_err();
        assert_eq!(
            e,
            "target `http://127.0.0.1:8081/` is not in this worker's --allow-target list (127.0.0.1:8080,lab,[::1]:9000)"
        );
        assert!(allow(&["lab:80"]).check(&http("http://lab")).is_ok());
        assert!(allow(&["lab:80"]).check(&http("https://lab")).is_err());
        assert!(Policy::default().check(&http("http://anywhere:1")).is_ok());
    }

    #[test]
    fn files_named_but_not_sent_are_refused() {
        let llm = |prompts: &str| {
            scenario(
                "http://127.0.0.1:8000",
                "llm",
                &format!("[llm]\nmodel = \"m\"\nprompts = {prompts}\n"),
            )
        };
        let lines = llm("{ source = \"lines\", path = \"/etc/passwd\" }");
        let e = Policy::default().check(&lines).unwrap_err();
        assert!(
            e.starts_with("llm.prompts.path names the file /etc/passwd but the assignment"),
            "{e}"
        );
        // Sent with the assignment: taken, the path never opened.
        let mut resolved = lines.clone();
        resolved.file.llm.as_mut().unwrap().resolved =
            vec![stampede_scenarios::driver::llm::ResolvedPrompt {
                text: "hello".into(),
                input_tokens: Some(1),
                max_tokens: 4,
            }];
        assert!(Policy::default().check(&resolved).is_ok());
        let mut tokenizer = resolved.clone();
        tokenizer.file.llm.as_mut().unwrap().tokenizer = Some("/tmp/tokenizer.json".into());
        let e = Policy::default().check(&tokenizer).unwrap_err();
        assert!(
            e.starts_with("llm.tokenizer names the file /tmp/tokenizer.json"),
            "{e}"
        );
        tokenizer.file.llm.as_mut().unwrap().tokenizer_json = Some("{}".into());
        assert!(Policy::default().check(&tokenizer).is_ok());
        let synthetic = llm(
            "{ source = \"synthetic\", input = { dist = \"fixed\", tokens = 4 }, output = { dist = \"fixed\", tokens = 4 } }",
        );
        assert!(Policy::default().check(&synthetic).is_ok());
        let mut tls = http("https://127.0.0.1:8443");
        tls.file.tls = Some(stampede_scenarios::tls::TlsFile {
            ca: Some("/etc/ssl/private/ca.pem".into()),
            ..Default::default()
        });
        let e = Policy::default().check(&tls).unwrap_err();
        assert!(
            e.starts_with("tls.ca names the file /etc/ssl/private/ca.pem"),
            "{e}"
        );
    }
}
