use std::process::ExitCode;

use clap::Parser;
use genlab::cli::{Cli, Cmd};

fn main() -> ExitCode {
    // candle sizes its element-wise thread pool once, from this variable, and its idle threads
    // spin; matmuls follow each run's own thread setting instead. One element-wise thread
    // measured faster here and leaves the UI its core.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let cli = Cli::parse();
    match cli.command {
        None => open(None),
        Some(Cmd::Open(args)) => open(Some(args)),
        Some(cmd) => genlab::cli::run(cmd),
    }
}

#[cfg(feature = "app")]
fn open(args: Option<genlab::cli::OpenArgs>) -> ExitCode {
    let startup = args.map_or_else(genlab::app::Startup::default, |a| genlab::app::Startup {
        data: Some(genlab::engine::data::DataSource::parse(&a.data)),
        preset: a.preset,
        train: a.train,
    });
    genlab::app::launch(startup)
}

#[cfg(not(feature = "app"))]
fn open(_args: Option<genlab::cli::OpenArgs>) -> ExitCode {
    eprintln!("error: this genlab was built without the app (feature `app`); the CLI works: genlab --help");
    ExitCode::from(1)
}
