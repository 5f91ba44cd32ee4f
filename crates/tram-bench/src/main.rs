//! tram-bench: the same workloads against tramd and the other buses present, in one run.
//!
//! Each bus — tramd, dbus-daemon, dbus-broker (through its launcher) and busd, whichever are
//! installed — is started fresh for each run of each workload on a socket in a private
//! directory, and driven by raw-socket clients (see `client.rs`). Besides wall-clock figures,
//! the bus process's own CPU time per message is read from `/proc/PID/task/*/schedstat`, which is
//! far steadier than throughput on a small, noisy machine. Runs are repeated with the buses
//! interleaved and the median is reported, with each figure's ratio to tramd's. `docs/
//! PERFORMANCE.md` describes the method.

mod buses;
mod callgrind;
mod cleanup;
mod client;
mod report;
mod workloads;

use std::process::ExitCode;
use std::time::SystemTime;

use buses::{BusKind, Setup};
use report::{Context, Report};
use workloads::{Params, Workload};

const USAGE: &str = "\
usage: tram-bench [OPTIONS]

Runs every workload against tramd and the peers installed (dbus-daemon, dbus-broker, busd),
each bus fresh per run, and prints absolute figures and ratios to tramd (above 1: tramd ahead).

options:
  --quick            smoke test: every workload briefly, exit status says whether all worked
  --bus NAME         only this bus (repeatable): tramd, dbus-daemon, dbus-broker, busd
  --workload NAME    only this workload (repeatable): round-trip, pipelined, large, broadcast,
                     broadcast-rules, idle, connect, startup
  --json FILE        also write the results as JSON
  --svg FILE         also write a bar chart of the ratios as SVG
  --baseline PATH    also run this tramd binary (shown as tramd-base), to compare two builds
  --callgrind        instead, count instructions per forwarded message under valgrind
  --profiles DIR     with --callgrind, keep the profiles in DIR (BUS-small.out, BUS-large.out)
  -h, --help         this text

environment: TRAMD (tramd binary; default: beside tram-bench), BUSD (busd binary; default:
PATH, then /opt/busd/bin/busd)";

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tram-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cleanup::install() {
        eprintln!("tram-bench: cannot take over SIGINT and SIGTERM: {e}");
    }
    cleanup::sweep_stale();
    let setup = Setup::new(
        &opts.buses,
        opts.baseline.as_deref().map(std::path::Path::new),
    );
    let buses = setup.buses();
    if buses.is_empty() {
        eprintln!("tram-bench: no bus to measure");
        return ExitCode::FAILURE;
    }
    if opts.callgrind {
        return run_callgrind(&setup, &buses, opts.quick, opts.profiles.as_deref());
    }
    let report = run_workloads(&setup, &buses, &opts);
    print!("{}", report.table());
    let mut ok = report.failures.is_empty();
    for (path, text) in [(&opts.json, report.json()), (&opts.svg, report.svg())] {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("tram-bench: writing {path}: {e}");
                ok = false;
            }
        }
    }
    if opts.quick {
        let problems = report.problems(&opts.workloads);
        for p in &problems {
            eprintln!("tram-bench: smoke test: {p}");
        }
        ok &= problems.is_empty();
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The command line.
#[derive(Debug, Default, PartialEq)]
struct Options {
    quick: bool,
    buses: Vec<BusKind>,
    workloads: Vec<Workload>,
    json: Option<String>,
    svg: Option<String>,
    baseline: Option<String>,
    callgrind: bool,
    profiles: Option<String>,
}

impl Options {
    /// The options, or `None` when help was asked for.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
        let mut o = Options::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            let mut value = |what: &str| args.next().ok_or(format!("{a} needs {what}"));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--callgrind" => o.callgrind = true,
                "--bus" => {
                    let v = value("a bus name")?;
                    o.buses
                        .push(BusKind::from_name(&v).ok_or(format!("unknown bus {v}"))?);
                }
                "--workload" => {
                    let v = value("a workload name")?;
                    o.workloads
                        .push(Workload::from_name(&v).ok_or(format!("unknown workload {v}"))?);
                }
                "--json" => o.json = Some(value("a file name")?),
                "--svg" => o.svg = Some(value("a file name")?),
                "--baseline" => o.baseline = Some(value("a tramd binary")?),
                "--profiles" => o.profiles = Some(value("a directory")?),
                "--help" | "-h" => return Ok(None),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if o.buses.is_empty() {
            o.buses = BusKind::ALL.to_vec();
        }
        o.buses.retain(|&b| b != BusKind::TramdBaseline);
        if o.baseline.is_some() {
            o.buses.push(BusKind::TramdBaseline);
        }
        o.buses.sort_unstable();
        o.buses.dedup();
        if o.workloads.is_empty() {
            o.workloads = Workload::ALL.to_vec();
        }
        o.workloads.sort_unstable();
        o.workloads.dedup();
        Ok(Some(o))
    }
}

/// Runs the workloads, each bus in turn within each round so that drift in the machine's load
/// hits all of them alike; the bus that goes first rotates from round to round.
fn run_workloads(setup: &Setup, buses: &[BusKind], opts: &Options) -> Report {
    let params = if opts.quick {
        Params::QUICK
    } else {
        Params::FULL
    };
    let mut report = Report::new(
        buses.to_vec(),
        Context {
            load_before: buses::load_average(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            started_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            rounds: params.rounds,
            run_seconds: params.run_time.as_secs_f64(),
            quick: opts.quick,
            load_after: None,
        },
    );
    for &b in buses {
        if let Some(v) = setup.version(b) {
            report.versions.insert(b, v);
        }
    }
    // Every workload in every round, so that a change in the machine's load spreads over all
    // figures instead of landing on one workload; start-up has its own, longer series.
    let (starts, others): (Vec<Workload>, Vec<Workload>) = opts
        .workloads
        .iter()
        .partition(|&&w| w == Workload::Startup);
    for round in 0..params.rounds {
        for &w in &others {
            eprintln!(
                "tram-bench: round {}/{}: {}",
                round + 1,
                params.rounds,
                w.name()
            );
            run_round(setup, buses, &params, w, round, &mut report);
        }
    }
    for &w in &starts {
        eprintln!(
            "tram-bench: {} ({} starts per bus)",
            w.name(),
            params.rounds(w)
        );
        // One start of each bus first, not counted: the first exec after a build reads the
        // binary and its libraries into the page cache.
        for &b in buses {
            if let Err(e) = w.run(setup, b, &params) {
                eprintln!("tram-bench: {} on {} (warm-up): {e}", w.name(), b.name());
            }
        }
        for round in 0..params.rounds(w) {
            run_round(setup, buses, &params, w, round, &mut report);
        }
    }
    report.context.load_after = buses::load_average();
    report
}

/// Runs `w` once against each bus, the first bus rotating with `round`.
fn run_round(
    setup: &Setup,
    buses: &[BusKind],
    params: &Params,
    w: Workload,
    round: usize,
    report: &mut Report,
) {
    for i in 0..buses.len() {
        let Some(&b) = buses.get((i + round) % buses.len()) else {
            continue;
        };
        match w.run(setup, b, params) {
            Ok(figures) => report.add(b, &figures),
            Err(e) => {
                let f = format!("{} on {} (run {}): {e}", w.name(), b.name(), round + 1);
                eprintln!("tram-bench: {f}");
                report.failures.push(f);
            }
        }
    }
}

/// The callgrind mode: instructions per forwarded message for each bus started directly.
fn run_callgrind(
    setup: &Setup,
    buses: &[BusKind],
    quick: bool,
    profiles: Option<&str>,
) -> ExitCode {
    let mut ok = true;
    let mut results = Vec::new();
    for &b in buses.iter().filter(|&&b| b != BusKind::DbusBroker) {
        eprintln!("tram-bench: {} under callgrind", b.name());
        match callgrind::measure(setup, b, quick, profiles.map(std::path::Path::new)) {
            Ok(c) => results.push(c),
            Err(e) => {
                eprintln!("tram-bench: callgrind on {}: {e}", b.name());
                ok = false;
            }
        }
    }
    println!(
        "user-space instructions per forwarded message, pipelined calls (depth 32, 16-byte \
         bodies), under callgrind"
    );
    for c in &results {
        println!("  {:<12} {:>10.0}", c.bus.name(), c.per_message);
    }
    for c in &results {
        if !c.hot.is_empty() {
            println!(
                "\nheaviest functions in {} (self cost, whole run):",
                c.bus.name()
            );
            for h in &c.hot {
                println!("  {h}");
            }
        }
        if !c.unnamed.is_empty() {
            println!(
                "  (OBJECT+0xADDRESS: no symbols in {}; valgrind reads them from an unstripped \
                 build or a debug file under /usr/lib/debug, e.g. Debian's -dbgsym packages)",
                c.unnamed.join(", ")
            );
        }
    }
    if ok && !results.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn command_lines() {
        let o = parse(&[]).unwrap().unwrap();
        let all: Vec<BusKind> = BusKind::ALL
            .iter()
            .copied()
            .filter(|&b| b != BusKind::TramdBaseline)
            .collect();
        assert_eq!(o.buses, all);
        assert_eq!(o.workloads, Workload::ALL);
        let o = parse(&[
            "--bus", "busd", "--bus", "tramd", "--bus", "busd", "--quick",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.buses, [BusKind::Tramd, BusKind::Busd]);
        assert!(o.quick);
        let o = parse(&["--workload", "idle", "--json", "a.json", "--svg", "b.svg"])
            .unwrap()
            .unwrap();
        assert_eq!(o.workloads, [Workload::IdleConnections]);
        assert_eq!(o.json.as_deref(), Some("a.json"));
        assert_eq!(o.svg.as_deref(), Some("b.svg"));
        assert!(!o.buses.contains(&BusKind::TramdBaseline));
        let o = parse(&["--bus", "tramd", "--baseline", "/x/tramd"])
            .unwrap()
            .unwrap();
        assert_eq!(o.buses, [BusKind::Tramd, BusKind::TramdBaseline]);
        assert_eq!(o.baseline.as_deref(), Some("/x/tramd"));
        let o = parse(&["--callgrind", "--profiles", "/tmp/p"])
            .unwrap()
            .unwrap();
        assert!(o.callgrind);
        assert_eq!(o.profiles.as_deref(), Some("/tmp/p"));
        assert_eq!(parse(&["-h"]), Ok(None));
        for bad in [
            &["--bus", "dbus"][..],
            &["--json"],
            &["--profiles"],
            &["--fast"],
            &["--workload", "x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
