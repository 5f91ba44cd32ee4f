//! Turning samples into the table, the ratios to tramd, the targets, JSON and an SVG chart.
//!
//! Ratios are oriented so that above 1 means tramd is ahead: `tramd / peer` for rates,
//! `peer / tramd` for latency, CPU, memory and time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::buses::BusKind;
use crate::workloads::{Figure, Metric, Workload};

/// Everything measured in one invocation.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// The buses measured, tramd first.
    pub(crate) buses: Vec<BusKind>,
    /// Each bus's `--version` line.
    pub(crate) versions: BTreeMap<BusKind, String>,
    samples: BTreeMap<(Metric, BusKind), Vec<f64>>,
    /// Workloads that failed, with why.
    pub(crate) failures: Vec<String>,
    /// Facts about the run printed above the table.
    pub(crate) context: Context,
}

/// Facts about the machine and the run.
#[derive(Debug, Default, Clone)]
pub(crate) struct Context {
    /// Load averages (1, 5, 15 min) when the run began and ended.
    pub(crate) load_before: Option<[f64; 3]>,
    /// See `load_before`.
    pub(crate) load_after: Option<[f64; 3]>,
    /// Online CPUs.
    pub(crate) cpus: usize,
    /// `uname -r`.
    pub(crate) kernel: String,
    /// Seconds since the epoch when the run began.
    pub(crate) started_at: u64,
    /// Runs per throughput figure.
    pub(crate) rounds: usize,
    /// Seconds per throughput run.
    pub(crate) run_seconds: f64,
    /// Whether this was the quick smoke run.
    pub(crate) quick: bool,
}

/// One performance target and how this run fared.
#[derive(Debug, Clone)]
pub(crate) struct TargetResult {
    /// What is asked.
    pub(crate) goal: &'static str,
    /// The measured quantity (a ratio or an absolute figure).
    pub(crate) measured: Option<f64>,
    /// How `measured` is shown.
    pub(crate) unit: &'static str,
    /// The bound `measured` must respect.
    pub(crate) bound: Bound,
    /// Whether it was met; `None` when a bus it needs was not measured.
    pub(crate) met: Option<bool>,
    /// Whether the figure is within 5% of the bound, where one run's noise can decide.
    pub(crate) close: bool,
}

/// The side of its threshold a target's figure must fall on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    /// `measured >= threshold`.
    AtLeast(f64),
    /// `measured <= threshold`.
    AtMost(f64),
    /// `measured < threshold`.
    Below(f64),
}

impl Bound {
    /// The threshold.
    pub(crate) fn threshold(self) -> f64 {
        match self {
            Bound::AtLeast(t) | Bound::AtMost(t) | Bound::Below(t) => t,
        }
    }

    fn holds(self, v: f64) -> bool {
        match self {
            Bound::AtLeast(t) => v >= t,
            Bound::AtMost(t) => v <= t,
            Bound::Below(t) => v < t,
        }
    }
}

impl TargetResult {
    fn new(goal: &'static str, measured: Option<f64>, unit: &'static str, bound: Bound) -> Self {
        let t = bound.threshold();
        TargetResult {
            goal,
            measured,
            unit,
            bound,
            met: measured.map(|v| bound.holds(v)),
            close: measured.is_some_and(|v| t != 0.0 && (v / t - 1.0).abs() < 0.05),
        }
    }
}

impl Report {
    /// An empty report on `buses`.
    pub(crate) fn new(buses: Vec<BusKind>, context: Context) -> Report {
        Report {
            buses,
            context,
            ..Report::default()
        }
    }

    /// Records the figures of one run of one workload against `bus`.
    pub(crate) fn add(&mut self, bus: BusKind, figures: &[Figure]) {
        for &Figure(m, v) in figures {
            self.samples.entry((m, bus)).or_default().push(v);
        }
    }

    /// The median of the samples of `m` on `bus`.
    pub(crate) fn median(&self, m: Metric, bus: BusKind) -> Option<f64> {
        median(self.samples.get(&(m, bus))?)
    }

    /// The ratio of `bus` to tramd on `m`, above 1 when tramd is ahead.
    pub(crate) fn ratio(&self, m: Metric, bus: BusKind) -> Option<f64> {
        oriented_ratio(
            m.lower_is_better(),
            self.median(m, BusKind::Tramd)?,
            self.median(m, bus)?,
        )
    }

    /// Every figure of `workloads` that is missing, not finite, or not positive where it must
    /// be: the smoke test's check that every workload ran on every bus.
    pub(crate) fn problems(&self, workloads: &[Workload]) -> Vec<String> {
        let mut out = self.failures.clone();
        for &m in Metric::ALL
            .iter()
            .filter(|m| workloads.contains(&m.workload()))
        {
            for &b in &self.buses {
                if m == Metric::StartAddress && !b.prints_address() {
                    continue;
                }
                match self.median(m, b) {
                    None => out.push(format!("{}: no figure for {}", m.id(), b.name())),
                    Some(v) if !v.is_finite() => {
                        out.push(format!("{}: {} is not finite", m.id(), b.name()))
                    }
                    // Memory may shrink a little when connections come in; nothing else may.
                    Some(v) if v <= 0.0 && m != Metric::IdleRss => {
                        out.push(format!("{}: {} is {v}", m.id(), b.name()))
                    }
                    Some(_) => {}
                }
            }
        }
        out
    }

    /// The targets tramd is held to, evaluated on this run.
    pub(crate) fn targets(&self) -> Vec<TargetResult> {
        let ratio = |m, b| self.ratio(m, b);
        let tramd = |m| self.median(m, BusKind::Tramd);
        let rules_kept = match (tramd(Metric::RulesRate), tramd(Metric::BroadcastRate)) {
            (Some(with), Some(without)) if without > 0.0 => Some(with / without),
            _ => None,
        };
        let best_peer_p50 = self
            .buses
            .iter()
            .filter(|b| b.is_peer())
            .filter_map(|&b| self.median(Metric::RoundTripP50, b))
            .reduce(f64::min);
        let p50_vs_best = match (best_peer_p50, tramd(Metric::RoundTripP50)) {
            (Some(best), Some(t)) if t > 0.0 => Some(best / t),
            _ => None,
        };
        let cpu_vs_busd = ratio(Metric::PipelinedCpu, BusKind::Busd).map(|r| 1.0 / r);
        use Bound::{AtLeast, AtMost, Below};
        vec![
            TargetResult::new(
                "pipelined calls >= 2x dbus-broker",
                ratio(Metric::PipelinedRate, BusKind::DbusBroker),
                "x",
                AtLeast(2.0),
            ),
            TargetResult::new(
                "pipelined calls >= 1.25x busd",
                ratio(Metric::PipelinedRate, BusKind::Busd),
                "x",
                AtLeast(1.25),
            ),
            TargetResult::new(
                "bus CPU per forwarded message <= 0.5x busd's",
                cpu_vs_busd,
                "x busd",
                AtMost(0.5),
            ),
            TargetResult::new(
                "64 KiB calls >= 1.2x dbus-broker",
                ratio(Metric::LargeRate, BusKind::DbusBroker),
                "x",
                AtLeast(1.2),
            ),
            TargetResult::new(
                "signal to 8 >= 1.4x busd",
                ratio(Metric::BroadcastRate, BusKind::Busd),
                "x",
                AtLeast(1.4),
            ),
            TargetResult::new(
                "with 16k unrelated rules >= 0.9x own figure without",
                rules_kept,
                "x",
                AtLeast(0.9),
            ),
            TargetResult::new(
                "round trip p50 no worse than the best peer's",
                p50_vs_best,
                "x",
                AtLeast(1.0),
            ),
            TargetResult::new(
                "RSS per idle connection <= 2 KiB",
                tramd(Metric::IdleRss),
                "KiB",
                AtMost(2.0),
            ),
            TargetResult::new(
                "exec -> address printed < 1 ms",
                tramd(Metric::StartAddress),
                "ms",
                Below(1.0),
            ),
        ]
    }

    /// The table of absolute figures and ratios, and the targets, as text.
    pub(crate) fn table(&self) -> String {
        let mut s = String::new();
        let c = &self.context;
        let load = |l: Option<[f64; 3]>| {
            l.map(|[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"))
                .unwrap_or("?".into())
        };
        let _ = writeln!(
            s,
            "tram-bench{}: {} CPUs, kernel {}; load average {} at start, {} at end",
            if c.quick { " --quick" } else { "" },
            c.cpus,
            c.kernel,
            load(c.load_before),
            load(c.load_after),
        );
        let _ = writeln!(
            s,
            "median of {} run(s) of {:.1} s per throughput figure, buses interleaved; \
             CPU is the bus process's own (schedstat)",
            c.rounds, c.run_seconds
        );
        for b in &self.buses {
            if let Some(v) = self.versions.get(b) {
                let _ = writeln!(s, "  {:<12} {v}", b.name());
            }
        }
        let peers: Vec<BusKind> = self
            .buses
            .iter()
            .copied()
            .filter(|&b| b != BusKind::Tramd)
            .collect();
        let _ = writeln!(s);
        let _ = write!(s, "{:<30} {:<12}", "figure", "unit");
        for b in &self.buses {
            let _ = write!(s, " {:>11}", b.name());
        }
        if !peers.is_empty() {
            let _ = write!(s, "  |");
            for b in &peers {
                let _ = write!(s, " {:>11}", b.name());
            }
        }
        let _ = writeln!(s);
        let width = 43 + 12 * self.buses.len();
        let _ = write!(s, "{:<width$}", "");
        if !peers.is_empty() {
            let _ = write!(s, "  | ratio to tramd, >1 = tramd ahead");
        }
        let _ = writeln!(s);
        for &m in Metric::ALL {
            if self.buses.iter().all(|&b| self.median(m, b).is_none()) {
                continue;
            }
            let _ = write!(s, "{:<30} {:<12}", m.label(), m.unit());
            for &b in &self.buses {
                let v = self.median(m, b).map(fmt_value).unwrap_or("-".into());
                let _ = write!(s, " {v:>11}");
            }
            if !peers.is_empty() {
                let _ = write!(s, "  |");
                for &b in &peers {
                    let r = self.ratio(m, b).map(|r| format!("{r:.2}x"));
                    let _ = write!(s, " {:>11}", r.unwrap_or("-".into()));
                }
            }
            let _ = writeln!(s);
        }
        // How much of each bus's broadcast performance survives 16k unrelated rules.
        let kept_rows = [
            (
                "16k rules: rate kept",
                "with/without",
                Metric::RulesRate,
                Metric::BroadcastRate,
            ),
            (
                "16k rules: CPU kept",
                "without/with",
                Metric::BroadcastCpu,
                Metric::RulesCpu,
            ),
        ];
        for (label, unit, num, den) in kept_rows {
            let kept: Vec<String> = self
                .buses
                .iter()
                .map(|&b| match (self.median(num, b), self.median(den, b)) {
                    (Some(n), Some(d)) if d > 0.0 => format!("{:.2}x", n / d),
                    _ => "-".into(),
                })
                .collect();
            if kept.iter().any(|k| k != "-") {
                let _ = write!(s, "{label:<30} {unit:<12}");
                for k in kept {
                    let _ = write!(s, " {k:>11}");
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "targets (ratios within this run)");
        for t in self.targets() {
            let verdict = match (t.met, t.close) {
                (Some(true), false) => "met",
                (Some(true), true) => "met (within 5%: noise can decide)",
                (Some(false), false) => "MISSED",
                (Some(false), true) => "MISSED (within 5%: noise can decide)",
                (None, _) => "n/a",
            };
            let measured = t
                .measured
                .map(|v| format!("{} {}", fmt_value(v), t.unit))
                .unwrap_or("-".into());
            let _ = writeln!(s, "  {:<54} {:>14}  {verdict}", t.goal, measured);
        }
        for f in &self.failures {
            let _ = writeln!(s, "FAILED: {f}");
        }
        s
    }

    /// The whole report as JSON.
    pub(crate) fn json(&self) -> String {
        let c = &self.context;
        let mut s = String::from("{\n");
        let _ = writeln!(s, "  \"tool\": \"tram-bench\",");
        let _ = writeln!(s, "  \"version\": {},", json_str(env!("CARGO_PKG_VERSION")));
        let _ = writeln!(s, "  \"started_at\": {},", c.started_at);
        let _ = writeln!(s, "  \"quick\": {},", c.quick);
        let _ = writeln!(s, "  \"rounds\": {},", c.rounds);
        let _ = writeln!(s, "  \"run_seconds\": {},", json_num(Some(c.run_seconds)));
        let _ = writeln!(
            s,
            "  \"machine\": {{\"cpus\": {}, \"kernel\": {}, \"load_before\": {}, \
             \"load_after\": {}}},",
            c.cpus,
            json_str(&c.kernel),
            json_load(c.load_before),
            json_load(c.load_after)
        );
        let buses: Vec<String> = self
            .buses
            .iter()
            .map(|b| {
                format!(
                    "{{\"name\": {}, \"version\": {}}}",
                    json_str(b.name()),
                    self.versions
                        .get(b)
                        .map(|v| json_str(v))
                        .unwrap_or("null".into())
                )
            })
            .collect();
        let _ = writeln!(s, "  \"buses\": [{}],", buses.join(", "));
        let mut figures = Vec::new();
        for &m in Metric::ALL {
            let mut per_bus = Vec::new();
            for &b in &self.buses {
                let Some(samples) = self.samples.get(&(m, b)) else {
                    continue;
                };
                let list: Vec<String> = samples.iter().map(|v| json_num(Some(*v))).collect();
                per_bus.push(format!(
                    "      {}: {{\"median\": {}, \"ratio\": {}, \"samples\": [{}]}}",
                    json_str(b.name()),
                    json_num(self.median(m, b)),
                    json_num(self.ratio(m, b)),
                    list.join(", ")
                ));
            }
            if per_bus.is_empty() {
                continue;
            }
            figures.push(format!(
                "    {{\"id\": {}, \"label\": {}, \"unit\": {}, \"better\": {}, \"buses\": {{\n{}\n    }}}}",
                json_str(m.id()),
                json_str(m.long_label()),
                json_str(m.unit()),
                json_str(if m.lower_is_better() { "lower" } else { "higher" }),
                per_bus.join(",\n")
            ));
        }
        let _ = writeln!(s, "  \"figures\": [\n{}\n  ],", figures.join(",\n"));
        let targets: Vec<String> = self
            .targets()
            .iter()
            .map(|t| {
                format!(
                    "    {{\"goal\": {}, \"measured\": {}, \"unit\": {}, \"threshold\": {}, \
                     \"met\": {}, \"close\": {}}}",
                    json_str(t.goal),
                    json_num(t.measured),
                    json_str(t.unit),
                    json_num(Some(t.bound.threshold())),
                    t.met.map(|m| m.to_string()).unwrap_or("null".into()),
                    t.close
                )
            })
            .collect();
        let _ = writeln!(s, "  \"targets\": [\n{}\n  ],", targets.join(",\n"));
        let failures: Vec<String> = self.failures.iter().map(|f| json_str(f)).collect();
        let _ = writeln!(s, "  \"failures\": [{}]", failures.join(", "));
        s.push_str("}\n");
        s
    }

    /// A horizontal bar chart of the ratios to tramd, one group per figure, one bar per peer,
    /// on a logarithmic axis centred on 1.
    pub(crate) fn svg(&self) -> String {
        let peers: Vec<BusKind> = self
            .buses
            .iter()
            .copied()
            .filter(|&b| b != BusKind::Tramd)
            .collect();
        let rows: Vec<(Metric, Vec<(BusKind, f64)>)> = Metric::ALL
            .iter()
            .map(|&m| {
                let bars = peers
                    .iter()
                    .filter_map(|&b| Some((b, self.ratio(m, b)?)))
                    .filter(|(_, r)| r.is_finite() && *r > 0.0)
                    .collect::<Vec<_>>();
                (m, bars)
            })
            .filter(|(_, bars)| !bars.is_empty())
            .collect();
        let all = rows
            .iter()
            .flat_map(|(_, b)| b.iter().map(|(_, r)| r.log2()));
        let (lo, hi) = all.fold((-1.0f64, 1.0f64), |(lo, hi), l| (lo.min(l), hi.max(l)));
        let (lo, hi) = (lo.floor(), hi.ceil());
        const LEFT: f64 = 320.0;
        const PLOT: f64 = 560.0;
        const BAR: f64 = 12.0;
        const TOP: f64 = 60.0;
        let x = |r: f64| LEFT + (r.log2() - lo) / (hi - lo) * PLOT;
        let group = BAR * peers.len() as f64 + 10.0;
        let height = TOP + group * rows.len() as f64 + 40.0;
        let width = LEFT + PLOT + 90.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             font-family=\"sans-serif\" font-size=\"11\">"
        );
        let _ = writeln!(
            s,
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">tramd against its \
             peers: ratio per figure, right of 1x = tramd ahead (log scale)</text>"
        );
        let load = self
            .context
            .load_before
            .map(|[a, _, _]| format!(", load {a:.2} on {} CPUs", self.context.cpus))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"34\" fill=\"#555\">median of {} run(s) per figure{load}</text>",
            self.context.rounds
        );
        for (i, &b) in peers.iter().enumerate() {
            let lx = LEFT + 130.0 * i as f64;
            let _ = writeln!(
                s,
                "<rect x=\"{lx}\" y=\"42\" width=\"10\" height=\"10\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"51\">{}</text>",
                colour(b),
                lx + 14.0,
                xml(b.name())
            );
        }
        let bottom = height - 30.0;
        let mut e = lo;
        while e <= hi {
            let r = 2f64.powf(e);
            let gx = x(r);
            let stroke = if e == 0.0 { "#000" } else { "#ddd" };
            let _ = writeln!(
                s,
                "<line x1=\"{gx:.1}\" y1=\"{TOP}\" x2=\"{gx:.1}\" y2=\"{bottom}\" \
                 stroke=\"{stroke}\"/>\
                 <text x=\"{gx:.1}\" y=\"{}\" text-anchor=\"middle\">{}x</text>",
                bottom + 14.0,
                fmt_ratio_tick(r)
            );
            e += 1.0;
        }
        for (row, (m, bars)) in rows.iter().enumerate() {
            let gy = TOP + group * row as f64 + 5.0;
            let label = format!("{} ({})", m.long_label(), m.unit());
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 8.0,
                gy + group / 2.0,
                xml(&label)
            );
            for (j, &b) in peers.iter().enumerate() {
                let Some(&(_, r)) = bars.iter().find(|(pb, _)| *pb == b) else {
                    continue;
                };
                let y = gy + BAR * j as f64;
                let (x0, x1) = (x(1.0).min(x(r)), x(1.0).max(x(r)));
                let _ = writeln!(
                    s,
                    "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                     fill=\"{}\"><title>{}: {r:.2}x</title></rect>\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{r:.2}x</text>",
                    (x1 - x0).max(0.5),
                    BAR - 2.0,
                    colour(b),
                    xml(b.name()),
                    x1 + 3.0,
                    y + BAR - 3.0
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

/// The median of `values` (mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return None;
    }
    let hi = v.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        Some((v.get(n / 2 - 1).copied()? + hi) / 2.0)
    }
}

/// `tramd / peer` when higher is better, `peer / tramd` when lower is better; `None` when the
/// division means nothing (zero or negative figures).
fn oriented_ratio(lower_is_better: bool, tramd: f64, peer: f64) -> Option<f64> {
    if tramd <= 0.0 || peer <= 0.0 {
        return None;
    }
    Some(if lower_is_better {
        peer / tramd
    } else {
        tramd / peer
    })
}

/// Three significant figures or so, without exponent.
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_ratio_tick(r: f64) -> String {
    if r >= 1.0 {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

fn colour(b: BusKind) -> &'static str {
    match b {
        BusKind::Tramd => "#444444",
        BusKind::TramdBaseline => "#9c755f",
        BusKind::DbusDaemon => "#4e79a7",
        BusKind::DbusBroker => "#f28e2b",
        BusKind::Busd => "#59a14f",
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            let s = format!("{v:.4}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            if s.is_empty() || s == "-" || s == "-0" {
                "0".into()
            } else {
                s.to_owned()
            }
        }
        _ => "null".into(),
    }
}

fn json_load(l: Option<[f64; 3]>) -> String {
    l.map(|[a, b, c]| format!("[{a}, {b}, {c}]"))
        .unwrap_or("null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let cases: &[(&[f64], Option<f64>)] = &[
            (&[], None),
            (&[3.0], Some(3.0)),
            (&[3.0, 1.0, 2.0], Some(2.0)),
            (&[4.0, 1.0, 3.0, 2.0], Some(2.5)),
            (&[f64::NAN, 5.0], Some(5.0)),
        ];
        for (v, want) in cases {
            assert_eq!(median(v), *want, "{v:?}");
        }
    }

    #[test]
    fn ratios_favour_tramd_above_one() {
        let cases = [
            (false, 200.0, 100.0, Some(2.0)), // rate: tramd twice as fast
            (true, 10.0, 30.0, Some(3.0)),    // latency: the peer three times slower
            (true, 10.0, 5.0, Some(0.5)),
            (false, 0.0, 5.0, None),
            (true, -1.0, 5.0, None),
        ];
        for (lower, t, p, want) in cases {
            assert_eq!(oriented_ratio(lower, t, p), want, "{lower} {t} {p}");
        }
    }

    #[test]
    fn json_escapes_and_numbers() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        let nums = [
            (Some(1.5), "1.5"),
            (Some(2.0), "2"),
            (Some(0.0), "0"),
            (Some(-0.00001), "0"),
            (Some(f64::NAN), "null"),
            (None, "null"),
        ];
        for (v, want) in nums {
            assert_eq!(json_num(v), want, "{v:?}");
        }
    }

    fn sample_report() -> Report {
        let mut r = Report {
            buses: vec![BusKind::Tramd, BusKind::DbusBroker, BusKind::Busd],
            ..Report::default()
        };
        let figures = [
            (BusKind::Tramd, Metric::PipelinedRate, 300.0),
            (BusKind::DbusBroker, Metric::PipelinedRate, 100.0),
            (BusKind::Busd, Metric::PipelinedRate, 250.0),
            (BusKind::Tramd, Metric::PipelinedCpu, 1.0),
            (BusKind::Busd, Metric::PipelinedCpu, 3.0),
            (BusKind::Tramd, Metric::RoundTripP50, 30.0),
            (BusKind::DbusBroker, Metric::RoundTripP50, 25.0),
            (BusKind::Busd, Metric::RoundTripP50, 40.0),
            (BusKind::Tramd, Metric::IdleRss, 1.5),
        ];
        for (b, m, v) in figures {
            r.add(b, &[Figure(m, v)]);
        }
        r
    }

    #[test]
    fn targets_are_judged_on_ratios() {
        let r = sample_report();
        let t = r.targets();
        let find = |goal: &str| t.iter().find(|t| t.goal.starts_with(goal)).unwrap().clone();
        assert_eq!(find("pipelined calls >= 2x").met, Some(true));
        assert_eq!(find("pipelined calls >= 1.25x").met, Some(false));
        assert_eq!(find("bus CPU").met, Some(true));
        // dbus-broker's 25 us beats tramd's 30 us.
        assert_eq!(find("round trip").met, Some(false));
        assert_eq!(find("RSS").met, Some(true));
        assert_eq!(find("64 KiB").met, None);
        // 1.2x against busd's 1.25x threshold: missed, and close.
        let p = find("pipelined calls >= 1.25x");
        assert!(p.close && (p.measured.unwrap() - 1.2).abs() < 1e-9, "{p:?}");
        assert!(!find("pipelined calls >= 2x").close);
    }

    #[test]
    fn outputs_mention_every_bus_and_are_well_formed() {
        let r = sample_report();
        let table = r.table();
        for b in &r.buses {
            assert!(table.contains(b.name()), "{table}");
        }
        assert!(table.contains("3.00x"), "{table}");
        let json = r.json();
        assert_eq!(json.matches('{').count(), json.matches('}').count());
        assert_eq!(json.matches('[').count(), json.matches(']').count());
        assert!(json.contains("\"pipelined_rate\""));
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect").count(),
            svg.matches("</rect>").count() + 1 + 2
        );
    }

    #[test]
    fn problems_name_missing_and_bad_figures() {
        let mut r = sample_report();
        r.add(BusKind::Busd, &[Figure(Metric::LargeRate, f64::INFINITY)]);
        let p = r.problems(Workload::ALL);
        assert!(
            p.iter()
                .any(|p| p.contains("large_64k_rate: busd is not finite"))
        );
        assert!(p.iter().any(|p| p.contains("no figure for dbus-broker")));
        assert!(!p.iter().any(|p| p.contains("exec_to_address: dbus-broker")));
        let p = r.problems(&[Workload::Pipelined32]);
        assert!(p.iter().all(|p| p.starts_with("pipelined_")), "{p:?}");
    }
}
