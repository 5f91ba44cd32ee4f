//! The harness in smoke mode (`--quick`): every workload briefly against tramd and whichever
//! peers are installed. This checks that the harness works — every bus starts, every workload
//! runs and yields a sane figure — not how fast anything is: no timing is asserted.
//!
//! The harness builds the tramd it measures itself when it runs under cargo (`$CARGO`, set
//! here from the cargo that builds this test), with this test's profile and target directory:
//! in `cargo test --workspace` that tramd is already built for tramd's own tests, and alone
//! (`cargo test -p tram-bench`) it is built first.

use std::process::Command;
use std::time::{Duration, Instant};

/// Every bus the harness knows; those not installed are skipped.
const BUSES: [&str; 4] = ["tramd", "dbus-daemon", "dbus-broker", "busd"];

/// The rows the table has when every workload ran.
const ROWS: [&str; 9] = [
    "round trip, depth 1: p50",
    "pipelined calls, depth 32",
    "64 KiB calls, depth 4",
    "signal to 8 subscribers",
    "signal to 8, 16k other rules",
    "RSS per idle connection",
    "connect + Hello + close",
    "exec -> address printed",
    "exec -> first Hello answered",
];

/// A smoke run takes about ten seconds; this is far beyond, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn quick_run_covers_every_workload_on_every_bus_present() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_tram-bench"))
        .arg("--quick")
        .args(BUSES.iter().flat_map(|&bus| ["--bus", bus]))
        .env("CARGO", env!("CARGO"))
        .env_remove("TRAMD")
        .output()
        .expect("running tram-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tram-bench --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let header = stdout
        .lines()
        .find(|l| l.starts_with("figure"))
        .unwrap_or_else(|| panic!("no table:\n{stdout}\n{stderr}"));
    assert!(header.contains("tramd"), "no tramd column: {header}");
    for row in ROWS {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no row {row:?}:\n{stdout}\n{stderr}"
        );
    }
    assert!(
        stdout.contains("targets (ratios within this run)"),
        "no targets:\n{stdout}"
    );
    assert!(
        started.elapsed() < DEADLINE,
        "the smoke run took {:?}",
        started.elapsed()
    );
}
