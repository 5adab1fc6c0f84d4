//! The `gatewatch` binary: parses the command line and the settings, then hands over to the command's
//! module under `cli/`.

use std::process::ExitCode;

use clap::Parser;

use cli::{BaselineAction, Cli, Command, RulesAction, EXIT_CONFIG};
use gatewatch::config::Settings;

mod cli;

/// mimalloc: the record path allocates per record (documents, strings), and glibc's allocator spent a
/// third of a replay's time in malloc/free (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    gatewatch::secrets::install_panic_hook();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gatewatch: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Run => cli::run::service(settings),
        Command::Check { connect } => cli::check::check(&settings, connect),
        Command::Rules { action: RulesAction::Test } => cli::rules::test(&settings),
        Command::Parse { files, dataset, stats } => cli::parse::parse(&settings, &files, dataset.as_deref(), stats),
        Command::Baseline { action: BaselineAction::Backtest { input, output } } => {
            cli::baseline::backtest(&settings, &input, &output)
        }
        Command::Replay(args) => cli::replay::replay(&settings, args),
    }
}
