//! tramd: the D-Bus message bus daemon.
//!
//! A thin entry point: parse the command line ([`cli`]), then run the daemon ([`daemon`]).
//! Exit status 0 on a clean stop (SIGTERM, SIGINT) and for `--help`/`--version`; 1 for a bad
//! command line or any failure to start.

mod address;
mod cli;
mod config;
mod connection;
mod creds;
mod daemon;
mod event_loop;
mod ids;
mod listener;
mod log;
mod sasl;
mod signals;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(cli::Command::Version) => {
            println!("tramd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(cli::Command::Run(options)) => match daemon::run(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            log::error!("{e}");
            eprintln!("Try 'tramd --help' for more information.");
            ExitCode::FAILURE
        }
    }
}
