//! tram-bench: the same workloads against tramd and the other buses present, in one run.
//!
//! Usage: `tram-bench [--quick] [--bus NAME]... [--json FILE]`
//!
//! Each bus is started fresh for each workload on a socket in a temporary directory. Workloads
//! drive it with raw-socket clients (see `client.rs`). Besides throughput, the bus process's own
//! CPU time per message is read from `/proc/PID/task/*/schedstat`, which is far steadier than
//! wall-clock figures on a small, noisy machine. The table ends with each figure as a ratio to
//! tramd's.

mod buses;
mod client;
mod workloads;

use std::process::ExitCode;

use buses::BusKind;
use workloads::{Outcome, Workload};

fn main() -> ExitCode {
    let mut quick = false;
    let mut only: Vec<String> = Vec::new();
    let mut json: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--bus" => only.extend(args.next()),
            "--json" => json = args.next(),
            "--help" | "-h" => {
                println!("usage: tram-bench [--quick] [--bus tramd|dbus-daemon]... [--json FILE]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("tram-bench: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let buses: Vec<BusKind> = BusKind::ALL
        .iter()
        .copied()
        .filter(|b| only.is_empty() || only.iter().any(|o| o == b.name()))
        .filter(|b| {
            let ok = b.available();
            if !ok {
                eprintln!("tram-bench: {} not found, skipped", b.name());
            }
            ok
        })
        .collect();
    if buses.is_empty() {
        eprintln!("tram-bench: no bus to measure");
        return ExitCode::FAILURE;
    }
    let mut results: Vec<(Workload, BusKind, Outcome)> = Vec::new();
    let mut failed = false;
    for &w in Workload::ALL {
        // Interleave the buses within each workload so drift in the machine hits all alike.
        for &b in &buses {
            match workloads::run(w, b, quick) {
                Ok(o) => results.push((w, b, o)),
                Err(e) => {
                    eprintln!("tram-bench: {} on {}: {e}", w.name(), b.name());
                    failed = true;
                }
            }
        }
    }
    print_table(&results, &buses);
    if let Some(path) = json {
        if let Err(e) = std::fs::write(&path, to_json(&results)) {
            eprintln!("tram-bench: writing {path}: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_table(results: &[(Workload, BusKind, Outcome)], buses: &[BusKind]) {
    println!(
        "{:<28} {:<12} {:>14} {:>12} {:>14} {:>9}",
        "workload", "bus", "figure", "unit", "bus CPU/msg", "vs tramd"
    );
    for &w in Workload::ALL {
        let base = results
            .iter()
            .find(|(rw, b, _)| *rw == w && *b == BusKind::Tramd)
            .map(|r| r.2.value);
        for &b in buses {
            let Some((_, _, o)) = results.iter().find(|(rw, rb, _)| *rw == w && *rb == b) else {
                continue;
            };
            let ratio = match base {
                Some(t) if t > 0.0 && o.value > 0.0 => {
                    // Ratios read "how much better tramd is": >1 means tramd wins.
                    let r = if w.higher_is_better() {
                        t / o.value
                    } else {
                        o.value / t
                    };
                    format!("{r:.2}x")
                }
                _ => "-".into(),
            };
            let cpu = o
                .cpu_ns_per_msg
                .map(|c| format!("{:.2} us", c / 1000.0))
                .unwrap_or("-".into());
            println!(
                "{:<28} {:<12} {:>14.1} {:>12} {:>14} {:>9}",
                w.name(),
                b.name(),
                o.value,
                w.unit(),
                cpu,
                ratio
            );
            if let Some(extra) = &o.extra {
                println!("{:<28} {:<12} {extra}", "", "");
            }
        }
    }
    println!("(vs tramd: tramd's advantage; above 1.00x tramd is ahead)");
}

fn to_json(results: &[(Workload, BusKind, Outcome)]) -> String {
    let rows: Vec<String> = results
        .iter()
        .map(|(w, b, o)| {
            format!(
                "  {{\"workload\": \"{}\", \"bus\": \"{}\", \"value\": {:.3}, \"unit\": \"{}\", \"cpu_ns_per_msg\": {}}}",
                w.name(),
                b.name(),
                o.value,
                w.unit(),
                o.cpu_ns_per_msg.map(|c| format!("{c:.1}")).unwrap_or("null".into())
            )
        })
        .collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
}
