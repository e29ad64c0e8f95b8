//! Runs made up from a known law, for tests, demos and choosing the learner: a zoo of models
//! measured on a few devices at random CPU and disk usage.
//!
//! Called by `stampede placement generate`, the unit tests and the end-to-end tests. The law is
//! a stand-in with the right shape (time grows with parameters and layers, is scaled per device
//! and slowed by CPU load), not a measurement of any real device.
//!
//! ```text
//! t = 2 ns · slowness(device) · (1 + 3·(cpu/100)²) · (1 + 0.1·disk/100)
//!          · (parameters · (1 + 0.02·conv + 0.01·pool + 0.02·fc) + input · filters)
//!          · e^u,  u uniform in [-0.05, 0.05]
//! ```

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::row::{ModelSpec, NodeState, Row};

/// A device of the law: its name (the `device_type` category), its characterization agent
/// class, and how many times slower than the reference it runs the same model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device {
    /// The device type, as `char_node_device_model_name` would name it.
    pub name: &'static str,
    /// The class, as `char_node_class` would.
    pub class: &'static str,
    /// Time factor against the reference device.
    pub slowness: f64,
}

/// The devices of the law, fastest first.
pub const DEVICES: [Device; 4] = [
    Device {
        name: "Intel NUC",
        class: "Computer",
        slowness: 1.0,
    },
    Device {
        name: "Jetson Nano",
        class: "Computer",
        slowness: 1.6,
    },
    Device {
        name: "Raspberry Pi 4B",
        class: "Computer",
        slowness: 4.0,
    },
    Device {
        name: "Raspberry Pi 3B+",
        class: "Computer",
        slowness: 7.0,
    },
];

/// Seconds per unit of work on the reference device at no load.
const SECONDS_PER_WORK: f64 = 2e-9;
/// Half-width of the multiplicative noise, in log space.
const NOISE: f64 = 0.05;

/// The device called `name`, if the law has it.
pub fn device(name: &str) -> Option<&'static Device> {
    DEVICES.iter().find(|d| d.name == name)
}

/// The law's execution time without noise, seconds; `None` for a device the law lacks.
pub fn time(spec: &ModelSpec, node: &NodeState) -> Option<f64> {
    let d = device(&node.device_type)?;
    let work = spec.total_parameters as f64
        * (1.0
            + 0.02 * spec.conv_layers as f64
            + 0.01 * spec.pool_layers as f64
            + 0.02 * spec.fc_layers as f64)
        + spec.model_input_size as f64 * spec.filter_details as f64;
    let cpu = node.cpu_usage / 100.0;
    let load = (1.0 + 3.0 * cpu * cpu) * (1.0 + 0.1 * node.disk_usage / 100.0);
    Some(SECONDS_PER_WORK * d.slowness * load * work)
}

/// The model zoo: `n` models whose counts are drawn once from a fixed seed, so every call with
/// the same `n` gives the same models (`model-1` ... `model-n`).
pub fn zoo(n: usize) -> Vec<ModelSpec> {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0004);
    (1..=n)
        .map(|i| ModelSpec {
            model: format!("model-{i}"),
            conv_layers: rng.random_range(1..=120),
            pool_layers: rng.random_range(0..=10),
            fc_layers: rng.random_range(1..=5),
            filter_details: rng.random_range(8..=512),
            total_parameters: log_uniform(&mut rng, 1e5, 1e9).round() as u64,
            model_input_size: log_uniform(&mut rng, 1e3, 1e7).round() as u64,
            model_output_size: log_uniform(&mut rng, 1.0, 1e4).round() as u64,
        })
        .collect()
}

/// `rows` runs of the zoo's models on random devices at random CPU and disk usage, with the
/// law's noise; the same `(rows, models, seed)` always gives the same rows.
pub fn generate(rows: usize, models: usize, seed: u64) -> Vec<Row> {
    let zoo = zoo(models.max(1));
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..rows)
        .map(|_| {
            let spec = zoo[rng.random_range(0..zoo.len())].clone();
            let d = DEVICES[rng.random_range(0..DEVICES.len())];
            let node = NodeState {
                cpu_usage: round2(rng.random_range(0.0..100.0)),
                disk_usage: round2(rng.random_range(5.0..95.0)),
                device_type: d.name.to_string(),
            };
            // The invariant: every device drawn is one of DEVICES, which `time` knows.
            let t = time(&spec, &node).expect("a device of the law");
            let noise = rng.random_range(-NOISE..NOISE).exp();
            Row {
                spec,
                node,
                execution_time: t * noise,
            }
        })
        .collect()
}

fn log_uniform(rng: &mut SmallRng, lo: f64, hi: f64) -> f64 {
    rng.random_range(lo.ln()..hi.ln()).exp()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_law_has_its_shape() {
        let spec = zoo(1).remove(0);
        let at = |device: &str, cpu: f64| {
            time(
                &spec,
                &NodeState {
                    cpu_usage: cpu,
                    disk_usage: 50.0,
                    device_type: device.into(),
                },
            )
            .unwrap()
        };
        assert!(at("Intel NUC", 10.0) < at("Jetson Nano", 10.0));
        assert!(at("Jetson Nano", 10.0) < at("Raspberry Pi 4B", 10.0));
        assert!(at("Intel NUC", 90.0) > 3.0 * at("Intel NUC", 0.0));
        let mut bigger = spec.clone();
        bigger.total_parameters *= 2;
        bigger.conv_layers += 10;
        let node = NodeState {
            cpu_usage: 0.0,
            disk_usage: 0.0,
            device_type: "Intel NUC".into(),
        };
        assert!(time(&bigger, &node).unwrap() > time(&spec, &node).unwrap());
        assert_eq!(
            time(
                &spec,
                &NodeState {
                    device_type: "Cray".into(),
                    ..node
                }
            ),
            None
        );
    }

    #[test]
    fn rows_follow_the_law_within_the_noise_and_repeat_with_the_seed() {
        let rows = generate(500, 10, 7);
        assert_eq!(rows, generate(500, 10, 7));
        assert_ne!(rows, generate(500, 10, 8));
        for r in &rows {
            let t = time(&r.spec, &r.node).unwrap();
            let ratio = r.execution_time / t;
            assert!((-NOISE..=NOISE).contains(&ratio.ln()), "{r:?} vs {t}");
        }
        let models: std::collections::BTreeSet<_> = rows.iter().map(|r| &r.spec.model).collect();
        assert_eq!(models.len(), 10);
        let devices: std::collections::BTreeSet<_> =
            rows.iter().map(|r| &r.node.device_type).collect();
        assert_eq!(devices.len(), DEVICES.len());
    }
}
