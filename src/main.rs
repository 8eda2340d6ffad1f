use std::process::ExitCode;

use clap::Parser;
use genlab::cli::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => genlab::app::launch(None),
        Some(Cmd::Open(args)) => genlab::app::launch(Some(args)),
        Some(cmd) => genlab::cli::run(cmd),
    }
}
