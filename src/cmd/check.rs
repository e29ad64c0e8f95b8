//! `stampede check`: validate a scenario and describe what it would do.

use stampede_scenarios::ScenarioConfig;

use crate::cli::{CheckOpt, Exit};

pub fn run(opt: CheckOpt) -> anyhow::Result<Exit> {
    let mut config = ScenarioConfig::load(&opt.scenario)?;
    // The prompts (and tokenizer) as `run` reads them, so a scenario `check` passes can start.
    config.resolve_files(&opt.scenario.display().to_string())?;
    println!("{}: ok", opt.scenario.display());
    println!("  name:     {}", config.name);
    println!("  kind:     {}", config.kind);
    println!("  target:   {}", config.target);
    println!(
        "  load:     {}",
        stampede_master::coordinator::describe(&config.load, config.duration)
    );
    if let Some(llm) = &config.file.llm {
        println!("  prompts:  {}", llm.resolved.len());
    }
    for r in config.catalog() {
        println!("  request:  {} {}", r.kind, r.name);
    }
    for t in &config.thresholds {
        println!("  threshold: {t}");
    }
    Ok(Exit::Success)
}
