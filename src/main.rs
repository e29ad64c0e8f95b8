//! `stampede`: distributed load testing. Parses the command line, sets up logging and the
//! runtime, runs the command, and turns its outcome into an exit code (see the README).

mod cli;
mod cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let opt = cli::Opt::parse_from(cmd::profile::go_style_flags(std::env::args_os().collect()));
    let logs = stampede_master::tui::LogLines::default();
    cli::init_tracing(&opt, &logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return cli::Exit::Error.into();
        }
    };
    match runtime.block_on(cmd::run(opt, logs)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            cli::Exit::Error.into()
        }
    }
}
