//! Reading a scenario: parse its text (or take a file built in code), apply command-line
//! overrides, and validate it into a [`ScenarioConfig`]: the common parts by
//! [`crate::model::validate`], the kind's own by its registry entry ([`crate::kinds`]).
//! Errors name the file, line and field ([`crate::model::locate`]).

use std::path::Path;

use super::{ScenarioConfig, ScenarioFile};
use crate::model::locate::{locate, missing_table, toml_error};
use crate::model::{Common, Overrides, ScenarioError, Sweep, validate};
use crate::units::HumanDuration;

impl ScenarioConfig {
    /// Read, parse and validate a scenario file.
    pub fn load(path: &Path) -> Result<ScenarioConfig, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            line: None,
            field: None,
            message: format!("cannot read the scenario: {e}"),
        })?;
        let mut config =
            ScenarioConfig::parse(&text, &path.display().to_string(), &Overrides::default())?;
        // Files the scenario names are relative to the scenario's folder.
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.file.tls {
            *tls = tls.relative_to(dir);
        }
        if let Some(llm) = &mut config.file.llm {
            llm.relative_to(dir);
        }
        Ok(config)
    }

    /// Read the files the scenario names into the scenario itself, so workers on other
    /// machines need none (and open none): `[tls]`'s certificates and key
    /// ([`crate::tls::TlsFile::resolve`]) and an `llm` scenario's tokenizer and prompts
    /// ([`ScenarioConfig::resolve_prompts`]).
    pub fn resolve_files(&mut self, origin: &str) -> Result<(), ScenarioError> {
        if let Some(tls) = self.file.tls.as_mut() {
            tls.resolve().map_err(|e| ScenarioError {
                file: origin.to_string(),
                line: None,
                field: Some(e.field()),
                message: e.detail(),
            })?;
        }
        self.resolve_prompts(origin)
    }

    /// For an `llm` scenario: read the prompts (and tokenizer) here and put the prompts in the
    /// scenario itself, so workers on other machines need no files. `origin` is the scenario
    /// file, which errors name with the setting (`llm.prompts.path`); the message names the
    /// prompt file, and its line or JSON path.
    pub fn resolve_prompts(&mut self, origin: &str) -> Result<(), ScenarioError> {
        let Some(llm) = self.file.llm.as_mut() else {
            return Ok(());
        };
        crate::driver::llm::resolve_prompts(llm).map_err(|(field, message)| ScenarioError {
            file: origin.to_string(),
            line: None,
            field: Some(field),
            message,
        })
    }

    /// Parse and validate scenario text, applying `overrides`. `origin` names the text in errors.
    pub fn parse(
        text: &str,
        origin: &str,
        overrides: &Overrides,
    ) -> Result<ScenarioConfig, ScenarioError> {
        let mut file: ScenarioFile = toml::from_str(text).map_err(|e| {
            missing_table(text, origin).unwrap_or_else(|| toml_error(&e, text, origin))
        })?;
        file.apply(overrides);
        file.validate().map_err(|(field, message)| ScenarioError {
            file: origin.to_string(),
            line: locate(text, &field),
            field: Some(field),
            message,
        })
    }

    /// Validate a scenario file built in code (the master's API builds one from a request).
    pub fn from_file(file: ScenarioFile, origin: &str) -> Result<ScenarioConfig, ScenarioError> {
        file.validate().map_err(|(field, message)| ScenarioError {
            file: origin.to_string(),
            line: None,
            field: Some(field),
            message,
        })
    }

    /// Apply overrides to a loaded scenario and validate again.
    pub fn with_overrides(&self, overrides: &Overrides) -> Result<ScenarioConfig, ScenarioError> {
        let mut file = self.file.clone();
        file.apply(overrides);
        file.validate().map_err(|(field, message)| ScenarioError {
            file: "<command line>".into(),
            line: None,
            field: Some(field),
            message,
        })
    }

    /// Step `value` of this scenario's sweep (`sweep`, or the scenario's own): the scenario at
    /// that rate or users, without the sweep. Errors name the field.
    pub fn sweep_step(&self, sweep: &Sweep, value: f64) -> Result<ScenarioConfig, ScenarioError> {
        let mut step = self.with_overrides(&sweep.overrides(value))?;
        step.file.sweep = None;
        step.sweep = None;
        Ok(step)
    }

    /// The same scenario pointed at another target (used when a built-in target is started).
    pub fn retarget(&self, url: &str) -> Result<ScenarioConfig, ScenarioError> {
        self.with_overrides(&Overrides {
            target: Some(url.to_string()),
            ..Overrides::default()
        })
    }
}

impl ScenarioFile {
    /// Apply command-line overrides to the file form.
    fn apply(&mut self, o: &Overrides) {
        if let Some(d) = o.duration {
            self.duration = Some(HumanDuration(d));
        }
        if let Some(t) = &o.target {
            self.target = t.clone();
        }
        o.apply_to_tls(&mut self.tls);
        if let Some(v) = o.http_version {
            self.http.get_or_insert_with(Default::default).version = Some(v);
        }
        if let Some(sweep) = &o.sweep {
            self.sweep = Some(sweep.clone());
        }
        if let Some(llm) = &mut self.llm {
            llm.apply(o);
        }
        o.apply_to_load(&mut self.load);
    }

    /// Check everything serde cannot, the common parts' and the kind's (its registry entry),
    /// in the order errors are reported; `Err((field, message))`.
    fn validate(self) -> Result<ScenarioConfig, (String, String)> {
        if self.name.trim().is_empty() {
            return Err(("name".into(), "must not be empty".into()));
        }
        let target = validate::target(&self.target)?;
        let load = validate::load(&self.load)?;
        let duration = validate::duration(self.duration, &load)?;
        let entry = self.kind.entry();
        let common = Common {
            target: &target,
            duration,
            load: &load,
            http: self.http.as_ref(),
            tls: self.tls.as_ref(),
        };
        let parts = self.parts(common);
        (entry.validate)(&parts)?;
        validate::connection(self.tls.as_ref(), self.http.as_ref())?;
        let mix = (entry.mix)(&parts)?;
        validate::tables(self.worker_type.as_ref(), self.placement.as_ref())?;
        let thresholds = validate::thresholds(&self.thresholds)?;
        let sweep = self.sweep.as_ref().map(Sweep::of).transpose()?;
        Ok(ScenarioConfig {
            name: self.name.clone(),
            kind: self.kind,
            target,
            duration,
            load,
            mix,
            thresholds,
            sweep,
            file: self,
        })
    }
}
