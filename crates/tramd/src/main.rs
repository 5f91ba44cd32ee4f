//! tramd: the D-Bus message bus daemon.
//!
//! A thin entry point: parse the command line ([`cli`]), then run the daemon ([`daemon`]), or
//! with `run-session` a program with a bus of its own ([`run_session`]).
//! Exit status 0 on a clean stop (SIGTERM, SIGINT) and for `--help`, `--version` and
//! `--introspect`; 1 for a bad command line or any failure to start. The parent of `--fork`
//! exits 0 once the daemon is ready, 1 if it failed first. `run-session` exits with
//! dbus-run-session's statuses (the program's, or 127 for its own errors).
//!
//! The sockets systemd passes (`LISTEN_FDS`) are taken before anything else runs, so that no
//! descriptor opened on the way can be mistaken for one of them.

mod address;
mod cli;
mod config;
mod connection;
mod creds;
mod daemon;
mod event_loop;
mod ids;
mod inotify;
mod keyring;
mod launch_helper;
mod launcher;
mod listener;
mod log;
mod notify;
mod process;
mod run_session;
mod services;
mod signals;
mod socket_activation;
#[cfg(test)]
mod test_util;

use std::process::ExitCode;

fn main() -> ExitCode {
    // SAFETY: nothing else has run yet: there is one thread, and no descriptor was opened.
    let passed = listener::PassedSockets::new(unsafe { socket_activation::take_listen_fds() });
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(cli::Command::Version) => {
            println!("tramd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(cli::Command::Introspect) => {
            print!("{}", tram_bus::introspect("/org/freedesktop/DBus"));
            ExitCode::SUCCESS
        }
        Ok(cli::Command::Run(options)) => match daemon::run(options, passed) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                ExitCode::FAILURE
            }
        },
        Ok(cli::Command::RunSessionHelp) => {
            print!("{}", cli::RUN_SESSION_USAGE);
            ExitCode::SUCCESS
        }
        Ok(cli::Command::RunSession(options)) => ExitCode::from(run_session::run(&options)),
        Err(e) => {
            log::error!("{e}");
            eprintln!("{}", e.help_hint());
            ExitCode::from(e.exit_status())
        }
    }
}
