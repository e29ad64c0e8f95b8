//! `stampede check`: validate a scenario and describe what it would do.

use stampede_scenarios::{ScenarioConfig, driver};

use crate::cli::{CheckOpt, Exit};

pub fn run(opt: CheckOpt) -> anyhow::Result<Exit> {
    let config = ScenarioConfig::load(&opt.scenario)?;
    println!("{}: ok", opt.scenario.display());
    println!("  name:     {}", config.name);
    println!("  kind:     {}", config.kind);
    println!("  target:   {}", config.target);
    println!(
        "  load:     {}",
        stampede_master::coordinator::describe(&config.load, config.duration)
    );
    for r in driver::catalog(&config) {
        println!("  request:  {} {}", r.kind, r.name);
    }
    for t in &config.thresholds {
        println!("  threshold: {t}");
    }
    Ok(Exit::Success)
}
