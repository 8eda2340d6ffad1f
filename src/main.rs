use std::process::ExitCode;

use clap::Parser;
use genlab::cli::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Cmd::Open(_)) => {
            // The app lands in its own module; until then, say what there is.
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            ExitCode::SUCCESS
        }
        Some(cmd) => genlab::cli::run(cmd),
    }
}
