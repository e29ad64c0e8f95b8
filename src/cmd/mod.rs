//! One module per verb, each with a `run(opt)`; shared helpers for scenarios, built-in targets
//! and the progress line live in [`common`].

mod check;
mod common;
mod master;
mod run;
mod target;
mod worker;

use crate::cli::{Command, Exit, Opt, TargetCommand};

/// Run the chosen verb.
pub async fn run(opt: Opt) -> anyhow::Result<Exit> {
    match opt.command {
        Command::Run(o) => run::run(o).await,
        Command::Master(o) => master::run(o).await,
        Command::Worker(o) => worker::run(o).await,
        Command::Target(TargetCommand::Http(o)) => target::http(o).await,
        Command::Target(TargetCommand::Llm(o)) => target::llm(o).await,
        Command::Check(o) => check::run(o),
    }
}
