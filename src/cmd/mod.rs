//! One module per verb, each with a `run(opt)`; shared helpers for scenarios, built-in targets
//! and the progress line live in [`common`].

mod check;
mod common;
mod loadgen;
mod master;
mod placement;
pub mod profile;
mod run;
pub(crate) mod sweep;
mod target;
mod worker;

use stampede_master::tui::LogLines;

use crate::cli::{Command, Exit, Opt, PlacementCommand, TargetCommand};

/// Run the chosen verb; `logs` receives log lines while a terminal UI holds the screen.
pub async fn run(opt: Opt, logs: LogLines) -> anyhow::Result<Exit> {
    match opt.command {
        Command::Run(o) => run::run(o, logs).await,
        Command::Master(o) => master::run(o, logs).await,
        Command::Worker(o) => worker::run(o).await,
        Command::Target(TargetCommand::Http(o)) => target::http(o).await,
        Command::Target(TargetCommand::Llm(o)) => target::llm(o).await,
        Command::Target(TargetCommand::Registry(o)) => target::registry(o).await,
        Command::Target(TargetCommand::Scheduler(o)) => target::scheduler(o).await,
        Command::Loadgen(o) => loadgen::run(o).await,
        Command::Check(o) => check::run(o),
        Command::Placement(PlacementCommand::Fit(o)) => placement::fit(o).await,
        Command::Placement(PlacementCommand::Serve(o)) => placement::serve(o).await,
        Command::Placement(PlacementCommand::Record(o)) => placement::record(o),
        Command::Placement(PlacementCommand::Generate(o)) => placement::generate(o),
        Command::Profile(c) => profile::run(c).await,
    }
}
