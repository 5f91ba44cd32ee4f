//! Instructions per forwarded message, counted by `valgrind --tool=callgrind`.
//!
//! The bus runs the pipelined workload twice under callgrind, for two numbers of calls; the
//! difference of the two instruction totals divided by the difference of forwarded messages is
//! the cost of one message with start-up, connection set-up and exit cancelled out. Callgrind
//! counts user-space instructions only: the kernel's share of each `read`/`sendmsg` is not in
//! the figure, so it complements, not replaces, the CPU time in the main table.

use std::collections::HashMap;
use std::io;
use std::path::Path;
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
    /// The heaviest functions by self cost, as "share  count  function"; a function without a
    /// name is shown as `OBJECT+0xADDRESS`.
    pub(crate) hot: Vec<String>,
    /// The objects (paths) among `hot` that have no symbols: stripped, with no debug file
    /// valgrind finds (`/usr/lib/debug`, `.gnu_debuglink`).
    pub(crate) unnamed: Vec<String>,
}

/// The two call counts, small and large; quick mode uses a tenth.
const CALLS: (u64, u64) = (4_000, 20_000);

/// How many of the heaviest functions are listed.
const HOT: usize = 20;

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
        let (hot, unnamed) = hot_spots(&large_out, HOT)?;
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
            unnamed,
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

/// The `n` functions of a profile with the highest self cost, and the objects among them that
/// have no symbols.
fn hot_spots(profile: &Path, n: usize) -> io::Result<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(profile)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", profile.display())))?;
    Ok(hottest(&text, n))
}

/// The `n` costliest functions of a callgrind profile, as "share  count  function", and the
/// objects (paths) of those among them that are only an address.
///
/// The profile is read directly rather than through `callgrind_annotate`, whose listing names
/// a function by source file and drops the object of inlined pieces: here each function is
/// identified by its object and name, so a function that has no name can still be told apart
/// and located (`OBJECT+0xADDRESS`, an address `addr2line -e OBJECT` accepts). Recursion
/// levels (`f'2`) count as the function itself.
fn hottest(profile: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let costs = self_costs(profile);
    let mut summed: HashMap<String, (u64, Option<&str>)> = HashMap::new();
    for ((object, function), cost) in &costs.functions {
        let function = without_recursion(function);
        let (label, unnamed) = match address(function) {
            Some(a) => (
                format!("{}+{a:#x}", file_name(object)),
                Some(object.as_str()),
            ),
            None => (function.to_owned(), None),
        };
        summed.entry(label).or_insert((0, unnamed)).0 += cost;
    }
    let mut by_label: Vec<(String, u64, Option<&str>)> =
        summed.into_iter().map(|(l, (c, o))| (l, c, o)).collect();
    by_label.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_label.truncate(n);
    let mut unnamed: Vec<String> = Vec::new();
    for object in by_label.iter().filter_map(|(_, _, o)| *o) {
        if !unnamed.iter().any(|u| u == object) {
            unnamed.push(object.to_owned());
        }
    }
    let total = costs.total.filter(|&t| t > 0);
    let hot = by_label
        .into_iter()
        .map(|(f, c, _)| match total {
            Some(t) => format!("{:5.1}%  {c:>12}  {f}", c as f64 * 100.0 / t as f64),
            None => format!("{c:>12}  {f}"),
        })
        .collect();
    (hot, unnamed)
}

/// Self cost per function in a callgrind profile.
struct SelfCosts {
    /// The profile's `summary:` (or `totals:`) figure.
    total: Option<u64>,
    /// (object, function) and the instructions executed in it, callees excluded.
    functions: Vec<((String, String), u64)>,
}

/// Sums the `Ir` figure of each cost line into the function it belongs to (callgrind's
/// format: `ob=`/`fn=` set the context, with names compressed to `(id)` after their first
/// use; the cost line after a `calls=` line is the callee's inclusive cost, not the caller's).
fn self_costs(profile: &str) -> SelfCosts {
    let mut objects = Names::default();
    let mut names = Names::default();
    let mut functions: Vec<((String, String), u64)> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut object = String::new();
    let mut current: Option<usize> = None;
    let mut positions = 1;
    let mut event = 0;
    let mut call_cost_next = false;
    for line in profile.lines() {
        if line.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '*')) {
            if std::mem::take(&mut call_cost_next) {
                continue;
            }
            let cost = line
                .split_whitespace()
                .nth(positions + event)
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(f) = current.and_then(|i| functions.get_mut(i)) {
                f.1 += cost;
            }
        } else if let Some(p) = line.strip_prefix("positions:") {
            positions = p.split_whitespace().count().max(1);
        } else if let Some(e) = line.strip_prefix("events:") {
            event = e.split_whitespace().position(|e| e == "Ir").unwrap_or(0);
        } else if let Some((key, value)) = line.split_once('=') {
            match key {
                "ob" => object = objects.define(value),
                "cob" => _ = objects.define(value),
                "cfn" => _ = names.define(value),
                "calls" => call_cost_next = true,
                "fn" => {
                    let key = (object.clone(), names.define(value));
                    current = Some(match index.get(&key) {
                        Some(&i) => i,
                        None => {
                            index.insert(key.clone(), functions.len());
                            functions.push((key, 0));
                            functions.len() - 1
                        }
                    });
                }
                _ => {}
            }
        }
    }
    SelfCosts {
        total: total_instructions(profile),
        functions,
    }
}

/// One namespace of callgrind's name compression: `(id) name` defines, `(id)` refers.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    /// The name `value` stands for, remembering it if it is a definition.
    fn define(&mut self, value: &str) -> String {
        let Some((id, name)) = value.strip_prefix('(').and_then(|v| v.split_once(')')) else {
            return value.to_owned();
        };
        let name = name.trim_start();
        if name.is_empty() {
            self.0.get(id).cloned().unwrap_or_else(|| value.to_owned())
        } else {
            self.0.insert(id.to_owned(), name.to_owned());
            name.to_owned()
        }
    }
}

/// `f'2` (callgrind's second recursion level of `f`) as `f`.
fn without_recursion(function: &str) -> &str {
    match function.rsplit_once('\'') {
        Some((base, level))
            if !base.is_empty()
                && !level.is_empty()
                && level.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => function,
    }
}

/// The address callgrind names a function by when its object has no symbol for it.
fn address(function: &str) -> Option<u64> {
    let hex = function.strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok()
}

/// The last component of an object's path.
fn file_name(object: &str) -> &str {
    object.rsplit_once('/').map_or(object, |(_, f)| f)
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

    /// A profile in callgrind's format: compressed names, an inlined file, a call whose
    /// inclusive cost belongs to the callee, and a stripped object (with a recursion level).
    const PROFILE: &str = "\
# callgrind format
version: 1
creator: callgrind-3.19.0
cmd:  /x/tramd --address=unix:path=/tmp/bus
positions: line
events: Ir
summary: 1000

ob=(1) /x/tramd
fl=(1) src/a.rs
fn=(1) tramd::event_loop::run
10 300
fi=(2) src/b.rs
20 100
cob=(2) /lib/libc.so.6
cfi=(3) malloc.c
cfn=(2) malloc
calls=2 5
* 250
fe=(1)
+2 50
ob=(2)
fl=(3)
fn=(2)
5 250
ob=(3) /opt/busd/bin/busd
fl=(4) ???
fn=(3) 0x00000000000bc583
0 60
fn=(4) 0x00000000000bc583'2
0 40
fn=(5) 0x0000000000001000
0 10
";

    #[test]
    fn profile_summed_per_function_without_callees() {
        let (hot, unnamed) = hottest(PROFILE, 3);
        let want = [
            " 45.0%           450  tramd::event_loop::run",
            " 25.0%           250  malloc",
            " 10.0%           100  busd+0xbc583",
        ];
        assert_eq!(hot, want);
        assert_eq!(unnamed, ["/opt/busd/bin/busd"]);
        let (hot, unnamed) = hottest(PROFILE, 2);
        assert_eq!(hot.len(), 2);
        assert!(unnamed.is_empty(), "{unnamed:?}");
        assert_eq!(hottest("nothing", 5), (Vec::new(), Vec::new()));
    }

    #[test]
    fn cost_taken_from_the_ir_column() {
        // Costs left off at the end of a line are zero.
        let profile = "positions: instr line\nevents: Dr Ir\nfn=f\n0x10 3 7 9\n+4 * 1\n* * 0 1\n";
        let (hot, _) = hottest(profile, 1);
        assert_eq!(hot, ["          10  f"]);
    }

    #[test]
    fn compressed_names_expanded() {
        let mut names = Names::default();
        let cases = [
            ("(1) tram_bus::bus::Bus::push", "tram_bus::bus::Bus::push"),
            ("(1)", "tram_bus::bus::Bus::push"),
            ("main", "main"),
            ("(9)", "(9)"),
        ];
        for (value, want) in cases {
            assert_eq!(names.define(value), want, "{value}");
        }
    }

    #[test]
    fn recursion_levels_and_addresses() {
        let levels = [
            ("f'2", "f"),
            ("f", "f"),
            ("'2", "'2"),
            ("f'", "f'"),
            ("<for<'a> fn(&'a u8)>::call", "<for<'a> fn(&'a u8)>::call"),
        ];
        for (function, want) in levels {
            assert_eq!(without_recursion(function), want, "{function}");
        }
        let addresses = [
            ("0x000000000001e5d0", Some(0x1e5d0)),
            ("0x", None),
            ("0xg", None),
            ("malloc", None),
        ];
        for (function, want) in addresses {
            assert_eq!(address(function), want, "{function}");
        }
        assert_eq!(file_name("/usr/lib/libdbus-1.so.3"), "libdbus-1.so.3");
        assert_eq!(file_name("busd"), "busd");
    }
}
