//! The learned execution-time model: gradient-boosted regression trees (forust-ml, the XGBoost
//! algorithm) on PEPPER's Profiler's features, with the device type one-hot encoded and the target
//! learned as ln(seconds); ten-fold cross-validation with permutation importances; the model
//! file, a versioned, self-describing JSON document.
//!
//! Called by `stampede placement fit` (training), `serve` (loading, predicting) and the tests.
//! It knows nothing of HTTP, Prometheus or CSV.

use std::collections::BTreeMap;
use std::path::Path;

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::row::{COUNTS, CPU, DEVICE, DISK, ModelSpec, NodeState, Row, TIME};

/// The `format` field of every model file.
pub const FORMAT: &str = "stampede-placement-model";
/// The model file version this build writes and reads.
pub const VERSION: u32 = 1;
/// The fewest rows `fit` learns from (one per fold of a ten-fold cross-validation).
pub const MIN_ROWS: usize = 10;

/// How the trees are grown. The defaults were chosen on the law's runs (see BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Trees in the ensemble.
    pub iterations: usize,
    /// Shrinkage of each tree's contribution.
    pub learning_rate: f32,
    /// Depth of each tree.
    pub max_depth: usize,
    /// Seed of the folds and of the permutations.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            iterations: 500,
            learning_rate: 0.1,
            max_depth: 4,
            seed: 0,
        }
    }
}

/// What went wrong training, reading or writing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Too little data to learn and cross-validate.
    #[error(
        "{rows} rows are too few to learn from: at least {needed} are needed (record more runs)"
    )]
    TooFewRows {
        /// Rows given.
        rows: usize,
        /// Rows needed.
        needed: usize,
    },
    /// The tree learner failed.
    #[error("training failed: {0}")]
    Training(String),
    /// The model file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        message: String,
    },
    /// The file is not a model this build can use.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file is a model of another format version.
    #[error(
        "{path}: model file format version {found}; this stampede reads version {VERSION} \
         (make a new one with `stampede placement fit`)"
    )]
    Version {
        /// The file.
        path: String,
        /// The version it says it has.
        found: u64,
    },
}

/// A device the model never saw: it cannot say how fast that device is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{device}` is not a device the model was trained on (it knows {})", known.join(", "))]
pub struct UnknownDevice {
    /// The device asked about.
    pub device: String,
    /// The devices the model knows.
    pub known: Vec<String>,
}

/// The model file: everything needed to use the model and to know what it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version of this document ([`VERSION`]).
    pub version: u32,
    /// The program that wrote it (`stampede 0.1.0`).
    pub created_by: String,
    /// When, Unix seconds.
    pub created_unix_s: u64,
    /// What is predicted.
    pub target: TargetSpec,
    /// The learner's input columns, in order: the seven counts, CPU and disk usage, then one
    /// `device_type=NAME` column per known device (1 for that device, 0 otherwise).
    pub features: Vec<String>,
    /// The categories of each categorical feature (`device_type`: the known devices).
    pub categories: BTreeMap<String, Vec<String>>,
    /// The learner and its settings.
    pub algorithm: Algorithm,
    /// What it was trained on and how well it does.
    pub training: Training,
    /// The trees, as forust-ml serializes its `GradientBooster`.
    pub model: serde_json::Value,
}

/// The predicted quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The column learned (`execution_time`).
    pub name: String,
    /// Its unit (`seconds`).
    pub unit: String,
    /// What the trees learn: `ln` means ln(seconds), so a prediction is e^(trees' output).
    pub transform: String,
}

/// The learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Algorithm {
    /// `gradient-boosted trees`.
    pub name: String,
    /// The crate that grew them.
    pub implementation: String,
    /// Squared error on ln(seconds).
    pub objective: String,
    /// Its settings.
    pub params: Params,
}

/// What the model learned from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Rows learned from.
    pub rows: usize,
    /// Where they came from (file names).
    pub sources: Vec<String>,
    /// Distinct model names.
    pub models: usize,
    /// Rows per device.
    pub devices: BTreeMap<String, usize>,
    /// Smallest and largest value of each numeric feature: predictions outside are guesses.
    pub ranges: BTreeMap<String, [f64; 2]>,
    /// The cross-validation of these settings on these rows.
    pub cross_validation: CrossValidation,
    /// How much each of the Profiler's features matters, most first.
    pub importances: Vec<Importance>,
}

/// K-fold cross-validation: every row predicted by a model that did not see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossValidation {
    /// Folds.
    pub folds: usize,
    /// Mean absolute error, seconds.
    pub mae_s: f64,
    /// Root mean squared error, seconds.
    pub rmse_s: f64,
    /// Coefficient of determination (1 is perfect, 0 is no better than the mean).
    pub r2: f64,
    /// Median of |predicted - measured| / measured.
    pub median_relative_error: f64,
}

/// Permutation importance of one feature: how much worse the held-out predictions get when its
/// values are shuffled among the rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Importance {
    /// The Profiler's column (`device_type` as one feature, not per category).
    pub feature: String,
    /// Growth of the mean absolute error, seconds.
    pub mae_increase_s: f64,
    /// Share of all features' growth (0..1; negative growth counts as 0).
    pub share: f64,
}

/// One input column of the learner.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    /// One of the seven counts (index into [`COUNTS`]).
    Count(usize),
    Cpu,
    Disk,
    /// 1 for this device, 0 for the others.
    Device(String),
}

impl Column {
    fn name(&self) -> String {
        match self {
            Column::Count(i) => COUNTS[*i].to_string(),
            Column::Cpu => CPU.to_string(),
            Column::Disk => DISK.to_string(),
            Column::Device(d) => format!("{DEVICE}={d}"),
        }
    }

    fn parse(name: &str) -> Option<Column> {
        if let Some(i) = COUNTS.iter().position(|c| *c == name) {
            return Some(Column::Count(i));
        }
        match name {
            CPU => Some(Column::Cpu),
            DISK => Some(Column::Disk),
            _ => name
                .strip_prefix(DEVICE)
                .and_then(|r| r.strip_prefix('='))
                .map(|d| Column::Device(d.to_string())),
        }
    }

    fn value(&self, spec: &ModelSpec, node: &NodeState) -> f64 {
        match self {
            Column::Count(i) => spec.counts()[*i] as f64,
            Column::Cpu => node.cpu_usage,
            Column::Disk => node.disk_usage,
            Column::Device(d) => f64::from(u8::from(*d == node.device_type)),
        }
    }
}

/// A trained model, ready to predict.
pub struct PlacementModel {
    /// Its description (the model file without the trees, whose `model` is `null`).
    pub file: ModelFile,
    columns: Vec<Column>,
    devices: Vec<String>,
    booster: GradientBooster,
}

impl std::fmt::Debug for PlacementModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementModel")
            .field("features", &self.file.features)
            .field("trees", &self.file.algorithm.params.iterations)
            .finish()
    }
}

/// A model and how it was judged.
pub struct Fitted {
    /// The model, trained on every row.
    pub model: PlacementModel,
    /// Its cross-validation (also in `model.file.training`).
    pub cross_validation: CrossValidation,
    /// Its importances, most first (also in `model.file.training`).
    pub importances: Vec<Importance>,
}

impl PlacementModel {
    /// Cross-validate `params` on `rows` with `folds` folds, then train on every row.
    /// `sources` names where the rows came from, for the model file.
    pub fn fit(
        rows: &[Row],
        params: &Params,
        folds: usize,
        sources: Vec<String>,
    ) -> Result<Fitted, ModelError> {
        let needed = MIN_ROWS.max(folds);
        if rows.len() < needed {
            return Err(ModelError::TooFewRows {
                rows: rows.len(),
                needed,
            });
        }
        let devices: Vec<String> = rows
            .iter()
            .map(|r| r.node.device_type.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let columns = columns_for(&devices);
        let (cross_validation, importances) = cross_validate(rows, &columns, params, folds)?;
        let booster = train(rows, &columns, params)?;
        let mut per_device = BTreeMap::new();
        for r in rows {
            *per_device.entry(r.node.device_type.clone()).or_insert(0) += 1;
        }
        let models = rows
            .iter()
            .map(|r| &r.spec.model)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let file = ModelFile {
            format: FORMAT.into(),
            version: VERSION,
            created_by: format!("stampede {}", env!("CARGO_PKG_VERSION")),
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            target: TargetSpec {
                name: TIME.into(),
                unit: "seconds".into(),
                transform: "ln".into(),
            },
            features: columns.iter().map(Column::name).collect(),
            categories: BTreeMap::from([(DEVICE.to_string(), devices.clone())]),
            algorithm: Algorithm {
                name: "gradient-boosted trees".into(),
                implementation: "forust-ml 0.8 (the XGBoost algorithm)".into(),
                objective: "squared error on ln(execution_time)".into(),
                params: params.clone(),
            },
            training: Training {
                rows: rows.len(),
                sources,
                models,
                devices: per_device,
                ranges: ranges(rows, &columns),
                cross_validation: cross_validation.clone(),
                importances: importances.clone(),
            },
            model: serde_json::Value::Null,
        };
        Ok(Fitted {
            model: PlacementModel {
                file,
                columns,
                devices,
                booster,
            },
            cross_validation,
            importances,
        })
    }

    /// The devices the model knows, sorted.
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// Predicted execution time, seconds.
    pub fn predict(&self, spec: &ModelSpec, node: &NodeState) -> Result<f64, UnknownDevice> {
        Ok(self.predict_many(&[(spec, node)])?[0])
    }

    /// Predicted execution times, seconds, one per input.
    pub fn predict_many(
        &self,
        inputs: &[(&ModelSpec, &NodeState)],
    ) -> Result<Vec<f64>, UnknownDevice> {
        for (_, node) in inputs {
            self.check_device(&node.device_type)?;
        }
        let data = column_major(inputs.iter().copied(), &self.columns);
        let m = Matrix::new(&data, inputs.len(), self.columns.len());
        Ok(self
            .booster
            .predict(&m, false)
            .into_iter()
            .map(f64::exp)
            .collect())
    }

    /// Whether the model knows `device` (it cannot predict for one it never saw).
    pub fn check_device(&self, device: &str) -> Result<(), UnknownDevice> {
        if self.devices.iter().any(|d| d == device) {
            Ok(())
        } else {
            Err(UnknownDevice {
                device: device.to_string(),
                known: self.devices.clone(),
            })
        }
    }

    /// The model file as JSON text: the description indented, the trees on one line.
    pub fn to_json(&self) -> Result<String, ModelError> {
        let trees = self
            .booster
            .json_dump()
            .map_err(|e| ModelError::Training(e.to_string()))?;
        let head = serde_json::to_string_pretty(&self.file)
            .map_err(|e| ModelError::Training(e.to_string()))?;
        // `model` is the last field, serialized as null: put the trees in its place.
        const SLOT: &str = "\"model\": null";
        match head.rfind(SLOT) {
            Some(at) => Ok(format!(
                "{}\"model\": {trees}{}",
                &head[..at],
                &head[at + SLOT.len()..]
            )),
            None => Err(ModelError::Training(
                "the model file has no `model` field".into(),
            )),
        }
    }

    /// Write the model file.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let text = self.to_json()?;
        std::fs::write(path, text).map_err(|e| ModelError::Io {
            path: path.display().to_string(),
            message: format!("cannot write: {e}"),
        })
    }

    /// Read a model file.
    pub fn load(path: &Path) -> Result<PlacementModel, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        PlacementModel::from_json(&text, &path.display().to_string())
    }

    /// A model from the text of a model file; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<PlacementModel, ModelError> {
        let format = |message: String| ModelError::Format {
            path: origin.to_string(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format(format!("not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(format(format!(
                "not a placement model (its `format` should be \"{FORMAT}\")"
            )));
        }
        let found = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != u64::from(VERSION) {
            return Err(ModelError::Version {
                path: origin.to_string(),
                found,
            });
        }
        let mut file: ModelFile =
            serde_json::from_value(value).map_err(|e| format(format!("damaged: {e}")))?;
        let columns = file
            .features
            .iter()
            .map(|f| Column::parse(f).ok_or_else(|| format(format!("unknown feature `{f}`"))))
            .collect::<Result<Vec<_>, _>>()?;
        let devices: Vec<String> = columns
            .iter()
            .filter_map(|c| match c {
                Column::Device(d) => Some(d.clone()),
                _ => None,
            })
            .collect();
        if file.categories.get(DEVICE) != Some(&devices) {
            return Err(format(
                "its device_type categories and its features disagree".into(),
            ));
        }
        let trees = std::mem::take(&mut file.model).to_string();
        let booster = GradientBooster::from_json(&trees)
            .map_err(|e| format(format!("its trees do not load: {e}")))?;
        Ok(PlacementModel {
            file,
            columns,
            devices,
            booster,
        })
    }
}

/// The input columns for these devices.
fn columns_for(devices: &[String]) -> Vec<Column> {
    (0..COUNTS.len())
        .map(Column::Count)
        .chain([Column::Cpu, Column::Disk])
        .chain(devices.iter().cloned().map(Column::Device))
        .collect()
}

/// The inputs as forust wants them: column after column.
fn column_major<'a>(
    inputs: impl Iterator<Item = (&'a ModelSpec, &'a NodeState)> + Clone,
    columns: &[Column],
) -> Vec<f64> {
    columns
        .iter()
        .flat_map(|c| inputs.clone().map(move |(s, n)| c.value(s, n)))
        .collect()
}

fn train(rows: &[Row], columns: &[Column], params: &Params) -> Result<GradientBooster, ModelError> {
    let data = column_major(rows.iter().map(|r| (&r.spec, &r.node)), columns);
    let m = Matrix::new(&data, rows.len(), columns.len());
    let y: Vec<f64> = rows.iter().map(|r| r.execution_time.ln()).collect();
    let mut booster = GradientBooster::default()
        .set_objective_type(ObjectiveType::SquaredLoss)
        .set_iterations(params.iterations)
        .set_learning_rate(params.learning_rate)
        .set_max_depth(params.max_depth)
        .set_seed(params.seed);
    booster
        .fit_unweighted(&m, &y, None)
        .map_err(|e| ModelError::Training(e.to_string()))?;
    Ok(booster)
}

fn predict(booster: &GradientBooster, rows: &[Row], columns: &[Column]) -> Vec<f64> {
    let data = column_major(rows.iter().map(|r| (&r.spec, &r.node)), columns);
    let m = Matrix::new(&data, rows.len(), columns.len());
    booster
        .predict(&m, false)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// The Profiler's features as importances name them.
const BASE_FEATURES: [&str; 10] = [
    COUNTS[0], COUNTS[1], COUNTS[2], COUNTS[3], COUNTS[4], COUNTS[5], COUNTS[6], CPU, DISK, DEVICE,
];

/// Shuffle feature `f` (of [`BASE_FEATURES`]) among `rows`.
fn permute(rows: &[Row], f: usize, rng: &mut SmallRng) -> Vec<Row> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(rng);
    rows.iter()
        .zip(&order)
        .map(|(r, &j)| {
            let src = &rows[j];
            let mut r = r.clone();
            match f {
                0..=6 => {
                    let mut c = r.spec.counts();
                    c[f] = src.spec.counts()[f];
                    r.spec = ModelSpec::from_counts(r.spec.model, c);
                }
                7 => r.node.cpu_usage = src.node.cpu_usage,
                8 => r.node.disk_usage = src.node.disk_usage,
                _ => r.node.device_type = src.node.device_type.clone(),
            }
            r
        })
        .collect()
}

/// K-fold cross-validation of `params`; importances by permutation on each held-out fold.
fn cross_validate(
    rows: &[Row],
    columns: &[Column],
    params: &Params,
    folds: usize,
) -> Result<(CrossValidation, Vec<Importance>), ModelError> {
    let mut rng = SmallRng::seed_from_u64(params.seed);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut rng);
    let mut predicted = vec![0.0; rows.len()];
    let mut increase = [0.0; BASE_FEATURES.len()];
    for k in 0..folds {
        let (held, kept) = split_fold(&order, k, folds);
        let train_rows: Vec<Row> = kept.iter().map(|&i| rows[i].clone()).collect();
        let test_rows: Vec<Row> = held.iter().map(|&i| rows[i].clone()).collect();
        let booster = train(&train_rows, columns, params)?;
        let p = predict(&booster, &test_rows, columns);
        let base = mae(&p, &test_rows);
        for (&i, v) in held.iter().zip(&p) {
            predicted[i] = *v;
        }
        for (f, inc) in increase.iter_mut().enumerate() {
            let shuffled = permute(&test_rows, f, &mut SmallRng::seed_from_u64(rng.random()));
            let pf = predict(&booster, &shuffled, columns);
            // Weighted by the fold's size, so the sum over folds is a mean over all rows.
            *inc += (mae(&pf, &shuffled) - base) * test_rows.len() as f64;
        }
    }
    let n = rows.len() as f64;
    let measured: Vec<f64> = rows.iter().map(|r| r.execution_time).collect();
    let mean = measured.iter().sum::<f64>() / n;
    let sse: f64 = predicted
        .iter()
        .zip(&measured)
        .map(|(p, t)| (p - t).powi(2))
        .sum();
    let sst: f64 = measured.iter().map(|t| (t - mean).powi(2)).sum();
    let mut relative: Vec<f64> = predicted
        .iter()
        .zip(&measured)
        .map(|(p, t)| ((p - t) / t).abs())
        .collect();
    relative.sort_by(f64::total_cmp);
    let cv = CrossValidation {
        folds,
        mae_s: predicted
            .iter()
            .zip(&measured)
            .map(|(p, t)| (p - t).abs())
            .sum::<f64>()
            / n,
        rmse_s: (sse / n).sqrt(),
        r2: if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
        median_relative_error: median_sorted(&relative),
    };
    let total: f64 = increase.iter().map(|v| v.max(0.0)).sum();
    let mut importances: Vec<Importance> = BASE_FEATURES
        .iter()
        .zip(increase)
        .map(|(f, inc)| Importance {
            feature: f.to_string(),
            mae_increase_s: inc / n,
            share: if total > 0.0 {
                inc.max(0.0) / total
            } else {
                0.0
            },
        })
        .collect();
    importances.sort_by(|a, b| b.mae_increase_s.total_cmp(&a.mae_increase_s));
    Ok((cv, importances))
}

/// Fold `k` of `folds` of the shuffled row indices (held out), and the rest.
fn split_fold(order: &[usize], k: usize, folds: usize) -> (Vec<usize>, Vec<usize>) {
    let mut held = Vec::new();
    let mut kept = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if pos % folds == k {
            held.push(i);
        } else {
            kept.push(i);
        }
    }
    (held, kept)
}

fn mae(predicted: &[f64], rows: &[Row]) -> f64 {
    predicted
        .iter()
        .zip(rows)
        .map(|(p, r)| (p - r.execution_time).abs())
        .sum::<f64>()
        / rows.len().max(1) as f64
}

fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn ranges(rows: &[Row], columns: &[Column]) -> BTreeMap<String, [f64; 2]> {
    columns
        .iter()
        .filter(|c| !matches!(c, Column::Device(_)))
        .map(|c| {
            let (lo, hi) = rows
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                    let v = c.value(&r.spec, &r.node);
                    (lo.min(v), hi.max(v))
                });
            (c.name(), [lo, hi])
        })
        .collect()
}

/// Median of |predicted - measured| / measured of `model` over `rows`.
pub fn median_relative_error(model: &PlacementModel, rows: &[Row]) -> f64 {
    let p = predict(&model.booster, rows, &model.columns);
    let mut rel: Vec<f64> = p
        .iter()
        .zip(rows)
        .map(|(p, r)| ((p - r.execution_time) / r.execution_time).abs())
        .collect();
    rel.sort_by(f64::total_cmp);
    median_sorted(&rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law;

    fn fitted(rows: usize) -> Fitted {
        PlacementModel::fit(
            &law::generate(rows, 30, 1),
            &Params::default(),
            10,
            vec!["law".into()],
        )
        .unwrap()
    }

    #[test]
    fn held_out_runs_of_the_law_are_predicted_within_ten_percent() {
        let f = fitted(2000);
        let held_out = law::generate(1000, 30, 2);
        let err = median_relative_error(&f.model, &held_out);
        assert!(err < 0.10, "median relative error {err:.3}");
        let cv = &f.cross_validation;
        assert_eq!(cv.folds, 10);
        assert!(cv.median_relative_error < 0.10, "{cv:?}");
        assert!(cv.r2 > 0.9, "{cv:?}");
        assert!(cv.mae_s > 0.0 && cv.rmse_s >= cv.mae_s, "{cv:?}");
        // The law ignores the output size; it depends on parameters, device and load.
        let imp = &f.importances;
        assert_eq!(imp.len(), 10);
        let rank = |name: &str| imp.iter().position(|i| i.feature == name).unwrap();
        assert!(
            rank("total_parameters") < rank("model_output_size"),
            "{imp:?}"
        );
        assert!(rank(DEVICE) < rank("model_output_size"), "{imp:?}");
        assert!(rank(CPU) < rank(DISK), "{imp:?}");
        let total: f64 = imp.iter().map(|i| i.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{imp:?}");
    }

    #[test]
    fn a_model_file_round_trips_and_predicts_the_same() {
        let f = fitted(300);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        f.model.save(&path).unwrap();
        let back = PlacementModel::load(&path).unwrap();
        let rows = law::generate(50, 30, 3);
        for r in &rows {
            assert_eq!(
                f.model.predict(&r.spec, &r.node).unwrap(),
                back.predict(&r.spec, &r.node).unwrap()
            );
        }
        assert_eq!(back.file.training, f.model.file.training);
        assert_eq!(back.devices(), f.model.devices());
        // Self-describing: the document names its format, version, features and categories.
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["format"], FORMAT);
        assert_eq!(doc["version"], VERSION);
        assert_eq!(doc["features"][0], "conv_layers");
        assert_eq!(doc["features"][9], "device_type=Intel NUC");
        assert_eq!(
            doc["categories"]["device_type"].as_array().unwrap().len(),
            4
        );
        assert_eq!(doc["target"]["transform"], "ln");
        assert!(doc["training"]["cross_validation"]["r2"].is_number());
        assert!(doc["model"]["trees"].is_array());
    }

    #[test]
    fn files_of_another_version_or_kind_are_refused_by_name() {
        let f = fitted(100);
        let text = f.model.to_json().unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["version"] = 2.into();
        let e = PlacementModel::from_json(&doc.to_string(), "m.json").unwrap_err();
        assert!(matches!(e, ModelError::Version { found: 2, .. }), "{e}");
        assert!(
            e.to_string()
                .contains("m.json: model file format version 2; this stampede reads version 1"),
            "{e}"
        );
        let e = PlacementModel::from_json("{\"trees\": []}", "x.json").unwrap_err();
        assert!(e.to_string().contains("not a placement model"), "{e}");
        let e = PlacementModel::from_json("nope", "x.json").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        doc["version"] = 1.into();
        doc["features"][0] = "gpu_count".into();
        let e = PlacementModel::from_json(&doc.to_string(), "m.json").unwrap_err();
        assert!(e.to_string().contains("unknown feature `gpu_count`"), "{e}");
    }

    #[test]
    fn unknown_devices_and_too_few_rows_are_errors() {
        let f = fitted(100);
        let r = &law::generate(1, 30, 3)[0];
        let node = NodeState {
            device_type: "Cray-1".into(),
            ..r.node.clone()
        };
        let e = f.model.predict(&r.spec, &node).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "`Cray-1` is not a device the model was trained on (it knows Intel NUC, "
            ),
            "{e}"
        );
        let e = PlacementModel::fit(&law::generate(9, 3, 1), &Params::default(), 10, vec![])
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                ModelError::TooFewRows {
                    rows: 9,
                    needed: 10
                }
            ),
            "{e}"
        );
    }
}
