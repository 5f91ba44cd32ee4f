//! Instructions per forwarded message, counted by `valgrind --tool=callgrind`.
//!
//! The bus runs the pipelined workload twice under callgrind, for two numbers of calls; the
//! difference of the two instruction totals divided by the difference of forwarded messages is
//! the cost of one message with start-up, connection set-up and exit cancelled out. Callgrind
//! counts user-space instructions only: the kernel's share of each `read`/`sendmsg` is not in
//! the figure, so it complements, not replaces, the CPU time in the main table.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::buses::{BusKind, RunningBus, Setup, Wrapper, find_in_path as which};
use crate::cleanup::{self, Item, Registered};
use crate::workloads::{Until, calls};

/// One bus's result.
#[derive(Debug, Clone)]
pub(crate) struct Counted {
    /// Which bus.
    pub(crate) bus: BusKind,
    /// User-space instructions per forwarded message.
    pub(crate) per_message: f64,
    /// The heaviest functions by self cost, as `callgrind_annotate` lists them.
    pub(crate) hot: Vec<String>,
}

/// The two call counts, small and large; quick mode uses a tenth.
const CALLS: (u64, u64) = (4_000, 20_000);

/// How long a bus under valgrind may take to write its profile and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Counts instructions per forwarded message for `bus`; with `keep`, the two profiles are
/// left in that directory as `BUS-small.out` and `BUS-large.out`.
pub(crate) fn measure(
    setup: &Setup,
    bus: BusKind,
    quick: bool,
    keep: Option<&Path>,
) -> io::Result<Counted> {
    if bus == BusKind::DbusBroker {
        return Err(io::Error::other(
            "dbus-broker runs under its launcher; callgrind mode covers directly started buses",
        ));
    }
    let valgrind = which("valgrind").ok_or_else(|| io::Error::other("valgrind not found"))?;
    let (small, large) = if quick {
        (CALLS.0 / 10, CALLS.1 / 10)
    } else {
        CALLS
    };
    let dir = std::env::temp_dir().join(format!(
        "{}callgrind-{}-{}",
        cleanup::DIR_PREFIX,
        std::process::id(),
        bus.name()
    ));
    std::fs::create_dir_all(&dir)?;
    let _registered = Registered::new(Item::Dir(dir.clone()));
    let (small_out, large_out) = (dir.join("small.out"), dir.join("large.out"));
    let result = (|| {
        let a = run_counted(setup, bus, &valgrind, &small_out, small)?;
        let b = run_counted(setup, bus, &valgrind, &large_out, large)?;
        let messages = 2 * (large - small);
        let per_message = (b as f64 - a as f64) / messages as f64;
        let hot = hot_spots(&large_out).unwrap_or_default();
        if let Some(keep) = keep {
            std::fs::create_dir_all(keep)?;
            for (from, size) in [(&small_out, "small"), (&large_out, "large")] {
                let to = keep.join(format!("{}-{size}.out", bus.name()));
                std::fs::copy(from, &to)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", to.display())))?;
            }
        }
        Ok(Counted {
            bus,
            per_message,
            hot,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Runs `calls` pipelined calls against `bus` under callgrind and returns its total
/// instruction count.
fn run_counted(
    setup: &Setup,
    bus: BusKind,
    valgrind: &Path,
    out: &Path,
    n: u64,
) -> io::Result<u64> {
    let wrapper = Wrapper {
        command: vec![
            valgrind.display().to_string(),
            "--tool=callgrind".into(),
            "-q".into(),
            format!("--callgrind-out-file={}", out.display()),
        ],
    };
    let running = RunningBus::start_wrapped(setup, bus, &wrapper)?;
    let stats = calls(&running, 32, 16, Until::Count(n))?;
    if stats.done < n {
        return Err(io::Error::other(format!(
            "only {} of {n} calls answered",
            stats.done
        )));
    }
    running.terminate(EXIT_TIMEOUT)?;
    let text = std::fs::read_to_string(out)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", out.display())))?;
    total_instructions(&text)
        .ok_or_else(|| io::Error::other(format!("no totals in {}", out.display())))
}

/// The `summary:` (or `totals:`) line of a callgrind profile: the first event's count.
fn total_instructions(profile: &str) -> Option<u64> {
    let line = profile
        .lines()
        .find(|l| l.starts_with("summary:"))
        .or_else(|| profile.lines().find(|l| l.starts_with("totals:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The top functions by self cost, from `callgrind_annotate`, with each function's inlined
/// pieces (listed per source file) summed.
fn hot_spots(profile: &Path) -> Option<Vec<String>> {
    let annotate = which("callgrind_annotate")?;
    let out = Command::new(annotate)
        .arg(profile)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(hottest(&String::from_utf8_lossy(&out.stdout), 20))
}

/// The `n` costliest functions of a `callgrind_annotate` listing, as "share  count  function".
fn hottest(text: &str, n: usize) -> Vec<String> {
    let mut total = None;
    let mut by_function: Vec<(String, u64)> = Vec::new();
    let mut in_functions = false;
    for line in text.lines() {
        if line.contains("file:function") {
            in_functions = true;
            continue;
        }
        if in_functions && line.trim().is_empty() {
            // The function table ends at the first blank line; annotated sources follow.
            break;
        }
        let Some((count, rest)) = split_count(line) else {
            continue;
        };
        if rest.ends_with("PROGRAM TOTALS") {
            total = Some(count);
            continue;
        }
        if !in_functions {
            continue;
        }
        // "file:function [object]": the file is everything up to the first ':'.
        let function = rest.split_once(':').map_or(rest, |(_, f)| f);
        let function = function
            .rsplit_once(" [")
            .map_or(function, |(f, _)| f)
            .trim();
        match by_function.iter_mut().find(|(f, _)| f == function) {
            Some((_, c)) => *c += count,
            None => by_function.push((function.to_owned(), count)),
        }
    }
    by_function.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_function
        .into_iter()
        .take(n)
        .map(|(f, c)| match total {
            Some(t) if t > 0 => format!("{:5.1}%  {c:>12}  {f}", c as f64 * 100.0 / t as f64),
            _ => format!("{c:>12}  {f}"),
        })
        .collect()
}

/// "1,234 (5.6%)  rest" into 1234 and "rest".
fn split_count(line: &str) -> Option<(u64, &str)> {
    let line = line.trim_start();
    let (count, rest) = line.split_once(' ')?;
    let count: u64 = count.replace(',', "").parse().ok()?;
    let rest = rest.trim_start();
    let rest = match rest.strip_prefix('(') {
        Some(r) => r.split_once(')')?.1,
        None => rest,
    };
    Some((count, rest.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_the_profile() {
        let cases = [
            ("events: Ir\nfn=main\n1 5\nsummary: 123456\n", Some(123_456)),
            ("events: Ir\ntotals: 99\n", Some(99)),
            ("events: Ir\nsummary: x\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(total_instructions(text), want, "{text}");
        }
    }

    #[test]
    fn annotate_listing_summed_per_function() {
        let text = "\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
1,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir           file:function
--------------------------------------------------------------------------------
400 (40.0%)  src/a.rs:tramd::event_loop::run [/x/tramd]
300 (30.0%)  ./malloc/malloc.c:malloc [/lib/libc.so.6]
200 (20.0%)  src/b.rs:tramd::event_loop::run
 50 ( 5.0%)  ???:memcpy [/lib/libc.so.6]

-- Auto-annotated source: x
900 (90.0%)  => src/a.rs:tramd::event_loop::run (3x)
";
        let hot = hottest(text, 2);
        assert_eq!(hot.len(), 2);
        assert!(hot[0].ends_with("600  tramd::event_loop::run"), "{hot:?}");
        assert!(hot[0].trim_start().starts_with("60.0%"), "{hot:?}");
        assert!(hot[1].ends_with("malloc"), "{hot:?}");
        assert!(hottest("nothing", 5).is_empty());
    }

    #[test]
    fn counts_are_split_off() {
        let cases = [
            ("1,234 (5.6%)  a.rs:f [x]", Some((1234, "a.rs:f [x]"))),
            ("  77  b:g", Some((77, "b:g"))),
            ("Ir  file:function", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(split_count(line), want, "{line}");
        }
    }
}
