//! Compares learners for `stampede placement` on the law's runs (`stampede_placement::law`):
//! ten-fold cross-validation on 2000 rows of 30 models, held-out rows of the same models,
//! rows of models never seen, and the figure PEPPER's Profiler exists for: how often the predicted
//! fastest of three random nodes is the truly fastest. Prints a Markdown table.

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use stampede_placement::law::{self, DEVICES};
use stampede_placement::row::{NodeState, Row};

/// A trained model: rows in, seconds out.
type Predictor = Box<dyn Fn(&[Row]) -> Vec<f64>>;

struct Learner {
    name: &'static str,
    fit: fn(&[Row]) -> (Predictor, usize),
}

fn features(rows: &[Row]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| {
            let mut x: Vec<f64> = r.spec.counts().iter().map(|&c| c as f64).collect();
            x.push(r.node.cpu_usage);
            x.push(r.node.disk_usage);
            x.extend(DEVICES.iter().map(|d| f64::from(u8::from(d.name == r.node.device_type))));
            x
        })
        .collect()
}

fn column_major(x: &[Vec<f64>]) -> Vec<f64> {
    (0..x[0].len()).flat_map(|j| x.iter().map(move |r| r[j])).collect()
}

fn forust(rows: &[Row], log: bool) -> (Predictor, usize) {
    use forust_ml::objective::ObjectiveType;
    use forust_ml::{GradientBooster, Matrix};
    let x = features(rows);
    let data = column_major(&x);
    let y: Vec<f64> = rows.iter().map(|r| if log { r.execution_time.ln() } else { r.execution_time }).collect();
    let mut b = GradientBooster::default()
        .set_objective_type(ObjectiveType::SquaredLoss)
        .set_iterations(500)
        .set_learning_rate(0.1)
        .set_max_depth(4);
    b.fit_unweighted(&Matrix::new(&data, x.len(), x[0].len()), &y, None).unwrap();
    let size = b.json_dump().unwrap().len();
    (
        Box::new(move |rows: &[Row]| {
            let x = features(rows);
            let data = column_major(&x);
            let p = b.predict(&Matrix::new(&data, x.len(), x[0].len()), false);
            if log { p.into_iter().map(f64::exp).collect() } else { p }
        }),
        size,
    )
}

fn forust_ln(rows: &[Row]) -> (Predictor, usize) {
    forust(rows, true)
}

fn forust_raw(rows: &[Row]) -> (Predictor, usize) {
    forust(rows, false)
}

fn smartcore_rf(rows: &[Row]) -> (Predictor, usize) {
    use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
    use smartcore::linalg::basic::matrix::DenseMatrix;
    let x = DenseMatrix::from_2d_vec(&features(rows)).unwrap();
    let y: Vec<f64> = rows.iter().map(|r| r.execution_time.ln()).collect();
    let params = RandomForestRegressorParameters::default().with_n_trees(200).with_seed(1);
    let m = RandomForestRegressor::fit(&x, &y, params).unwrap();
    (
        Box::new(move |rows: &[Row]| {
            let x = DenseMatrix::from_2d_vec(&features(rows)).unwrap();
            m.predict(&x).unwrap().into_iter().map(f64::exp).collect()
        }),
        0,
    )
}

fn gbdt_rs(rows: &[Row]) -> (Predictor, usize) {
    use gbdt::config::Config;
    use gbdt::decision_tree::{Data, DataVec};
    use gbdt::gradient_boost::GBDT;
    let mut cfg = Config::new();
    cfg.set_feature_size(features(&rows[..1])[0].len());
    cfg.set_max_depth(4);
    cfg.set_iterations(500);
    cfg.set_shrinkage(0.1);
    cfg.set_loss("SquaredError");
    cfg.set_min_leaf_size(1);
    let mut train: DataVec = features(rows)
        .into_iter()
        .zip(rows)
        .map(|(x, r)| Data::new_training_data(x.iter().map(|v| *v as f32).collect(), 1.0, r.execution_time.ln() as f32, None))
        .collect();
    let mut m = GBDT::new(&cfg);
    m.fit(&mut train);
    (
        Box::new(move |rows: &[Row]| {
            let test: DataVec = features(rows)
                .into_iter()
                .map(|x| Data::new_test_data(x.iter().map(|v| *v as f32).collect(), None))
                .collect();
            m.predict(&test).into_iter().map(|v| (v as f64).exp()).collect()
        }),
        0,
    )
}

struct Scores {
    mae: f64,
    rmse: f64,
    r2: f64,
    median_rel: f64,
}

fn scores(pred: &[f64], rows: &[Row]) -> Scores {
    let n = rows.len() as f64;
    let t: Vec<f64> = rows.iter().map(|r| r.execution_time).collect();
    let mean = t.iter().sum::<f64>() / n;
    let sse: f64 = pred.iter().zip(&t).map(|(p, y)| (p - y).powi(2)).sum();
    let sst: f64 = t.iter().map(|y| (y - mean).powi(2)).sum();
    let mut rel: Vec<f64> = pred.iter().zip(&t).map(|(p, y)| ((p - y) / y).abs()).collect();
    rel.sort_by(f64::total_cmp);
    Scores {
        mae: pred.iter().zip(&t).map(|(p, y)| (p - y).abs()).sum::<f64>() / n,
        rmse: (sse / n).sqrt(),
        r2: 1.0 - sse / sst,
        median_rel: rel[rel.len() / 2],
    }
}

fn cross_validate(learner: &Learner, rows: &[Row], folds: usize) -> Scores {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut SmallRng::seed_from_u64(0));
    let mut pred = vec![0.0; rows.len()];
    for k in 0..folds {
        let held: Vec<usize> = order.iter().enumerate().filter(|(p, _)| p % folds == k).map(|(_, &i)| i).collect();
        let train: Vec<Row> = order.iter().enumerate().filter(|(p, _)| p % folds != k).map(|(_, &i)| rows[i].clone()).collect();
        let test: Vec<Row> = held.iter().map(|&i| rows[i].clone()).collect();
        let (m, _) = (learner.fit)(&train);
        for (i, p) in held.iter().zip(m(&test)) {
            pred[*i] = p;
        }
    }
    scores(&pred, rows)
}

/// The question PEPPER's Profiler answers, asked 100 times: of three nodes with random devices
/// and loads, is the predicted fastest the truly fastest (by the law, without noise)?
fn fastest_of_three(m: &Predictor, models: usize) -> (usize, usize) {
    let zoo = law::zoo(models);
    let mut rng = SmallRng::seed_from_u64(42);
    let (mut right, mut random_right) = (0, 0);
    for _ in 0..100 {
        let spec = zoo[rng.random_range(0..zoo.len())].clone();
        let nodes: Vec<Row> = (0..3)
            .map(|_| Row {
                spec: spec.clone(),
                node: NodeState {
                    cpu_usage: rng.random_range(0.0..100.0),
                    disk_usage: rng.random_range(5.0..95.0),
                    device_type: DEVICES[rng.random_range(0..DEVICES.len())].name.into(),
                },
                execution_time: 1.0,
            })
            .collect();
        let truth: Vec<f64> = nodes.iter().map(|r| law::time(&r.spec, &r.node).unwrap()).collect();
        let argmin = |v: &[f64]| (0..v.len()).min_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
        let best = argmin(&truth);
        right += usize::from(argmin(&m(&nodes)) == best);
        random_right += usize::from(rng.random_range(0..3) == best);
    }
    (right, random_right)
}

fn main() {
    let rows = law::generate(2000, 30, 1);
    let held_out = law::generate(1000, 30, 2);
    // Models 31..=60 of the zoo: never in the training rows.
    let unseen: Vec<Row> = law::generate(2000, 60, 3).into_iter().filter(|r| r.spec.model.trim_start_matches("model-").parse::<usize>().unwrap() > 30).collect();
    let learners = [
        Learner { name: "forust-ml 0.8 GBM, ln(seconds) (chosen)", fit: forust_ln },
        Learner { name: "forust-ml 0.8 GBM, raw seconds", fit: forust_raw },
        Learner { name: "gbdt 0.1.3 GBM, ln(seconds)", fit: gbdt_rs },
        Learner { name: "smartcore 0.7 random forest (200 trees), ln(seconds)", fit: smartcore_rf },
    ];
    println!("| learner | 10-fold CV MAE s | RMSE s | R² | median rel. err. | held-out median rel. err. | unseen models median rel. err. | fastest of 3 right (random) | fit s | model JSON |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for l in &learners {
        let cv = cross_validate(l, &rows, 10);
        let t = Instant::now();
        let (m, size) = (l.fit)(&rows);
        let fit_s = t.elapsed().as_secs_f64();
        let h = scores(&m(&held_out), &held_out);
        let u = scores(&m(&unseen), &unseen);
        let (right, random) = fastest_of_three(&m, 30);
        let size = if size > 0 { format!("{:.1} MB", size as f64 / 1e6) } else { "—".into() };
        println!(
            "| {} | {:.3} | {:.3} | {:.4} | {:.1} % | {:.1} % | {:.1} % | {right}/100 ({random}/100) | {fit_s:.2} | {size} |",
            l.name, cv.mae, cv.rmse, cv.r2, cv.median_rel * 100.0, h.median_rel * 100.0, u.median_rel * 100.0
        );
    }
}
