//! The workloads. Each starts its bus fresh, connects its clients, runs for a fixed time (or a
//! fixed count) and reports its figures, among them the bus's own CPU time per message.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tram_wire::MessageBuilder;

use crate::buses::{BusKind, RunningBus, Setup};
use crate::client::{Client, Closer, DRIVER, ERROR, METHOD_CALL, METHOD_RETURN, SIGNAL, Template};

/// One workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Workload {
    /// One call at a time through the bus to an echo peer: latency.
    RoundTrip,
    /// 32 calls in flight, 16-byte bodies.
    Pipelined32,
    /// 64 KiB calls, 4 in flight.
    Large64k,
    /// One emitter, 8 subscribers.
    Broadcast8,
    /// The same while 8 other connections hold 2,000 unrelated rules each.
    Broadcast8Rules16k,
    /// 1,000 connections that said Hello and nothing else: the bus's memory per connection.
    IdleConnections,
    /// Connect, authenticate, Hello, close, in a loop.
    ConnectHello,
    /// Exec to the address printed (and to the first Hello answered).
    Startup,
}

/// One figure a workload reports. The value is in [`Metric::unit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Metric {
    /// Round trip, median latency.
    RoundTripP50,
    /// Round trip, 99th percentile latency.
    RoundTripP99,
    /// Round trip, bus CPU per forwarded message.
    RoundTripCpu,
    /// Pipelined calls per second.
    PipelinedRate,
    /// Pipelined, bus CPU per forwarded message.
    PipelinedCpu,
    /// 64 KiB calls per second.
    LargeRate,
    /// 64 KiB, bus CPU per forwarded message.
    LargeCpu,
    /// Broadcast deliveries per second.
    BroadcastRate,
    /// Broadcast, bus CPU per delivery.
    BroadcastCpu,
    /// Broadcast with 16k unrelated rules, deliveries per second.
    RulesRate,
    /// Broadcast with 16k unrelated rules, bus CPU per delivery.
    RulesCpu,
    /// Bus RSS growth per idle connection.
    IdleRss,
    /// Connections per second (connect, Hello, close).
    ConnectRate,
    /// Bus CPU per connection.
    ConnectCpu,
    /// Exec to address printed.
    StartAddress,
    /// Exec to the first Hello answered.
    StartHello,
}

/// The sizes of a run: full, or the quick smoke test.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// How long each throughput run lasts.
    pub(crate) run_time: Duration,
    /// How many runs of each throughput workload per bus (the median is reported).
    pub(crate) rounds: usize,
    /// Unrelated match rules on each of the 8 rule-holding connections.
    pub(crate) rules_per_holder: usize,
    /// Idle connections opened to measure memory.
    pub(crate) idle_connections: usize,
    /// Starts measured per bus.
    pub(crate) starts: usize,
}

impl Params {
    /// The full benchmark.
    pub(crate) const FULL: Params = Params {
        run_time: Duration::from_secs(2),
        rounds: 5,
        rules_per_holder: 2000,
        idle_connections: 1000,
        starts: 30,
    };

    /// The smoke test: every workload, briefly, with smaller counts.
    pub(crate) const QUICK: Params = Params {
        run_time: Duration::from_millis(200),
        rounds: 1,
        rules_per_holder: 200,
        idle_connections: 100,
        starts: 3,
    };

    /// How many times `w` runs against each bus.
    pub(crate) fn rounds(&self, w: Workload) -> usize {
        match w {
            Workload::Startup => self.starts,
            _ => self.rounds,
        }
    }
}

impl Workload {
    /// Every workload, in table order.
    pub(crate) const ALL: &'static [Workload] = &[
        Workload::RoundTrip,
        Workload::Pipelined32,
        Workload::Large64k,
        Workload::Broadcast8,
        Workload::Broadcast8Rules16k,
        Workload::IdleConnections,
        Workload::ConnectHello,
        Workload::Startup,
    ];

    /// Its name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::RoundTrip => "round-trip",
            Workload::Pipelined32 => "pipelined",
            Workload::Large64k => "large",
            Workload::Broadcast8 => "broadcast",
            Workload::Broadcast8Rules16k => "broadcast-rules",
            Workload::IdleConnections => "idle",
            Workload::ConnectHello => "connect",
            Workload::Startup => "startup",
        }
    }

    /// The workload called `name` on the command line.
    pub(crate) fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.iter().copied().find(|w| w.name() == name)
    }

    /// Runs this workload once against a fresh `kind` bus.
    pub(crate) fn run(self, setup: &Setup, kind: BusKind, p: &Params) -> io::Result<Vec<Figure>> {
        let bus = RunningBus::start(setup, kind)?;
        let until = Until::Time(p.run_time);
        match self {
            Workload::RoundTrip => {
                let s = calls(&bus, 1, 16, until)?;
                Ok(vec![
                    Figure(Metric::RoundTripP50, s.latency_us(0.5)?),
                    Figure(Metric::RoundTripP99, s.latency_us(0.99)?),
                    Figure(Metric::RoundTripCpu, s.cpu_us_per_message()),
                ])
            }
            Workload::Pipelined32 => {
                let s = calls(&bus, 32, 16, until)?;
                Ok(vec![
                    Figure(Metric::PipelinedRate, s.rate()),
                    Figure(Metric::PipelinedCpu, s.cpu_us_per_message()),
                ])
            }
            Workload::Large64k => {
                let s = calls(&bus, 4, 64 * 1024, until)?;
                Ok(vec![
                    Figure(Metric::LargeRate, s.rate()),
                    Figure(Metric::LargeCpu, s.cpu_us_per_message()),
                ])
            }
            Workload::Broadcast8 => {
                let (rate, cpu) = broadcast(&bus, 0, p.run_time)?;
                Ok(vec![
                    Figure(Metric::BroadcastRate, rate),
                    Figure(Metric::BroadcastCpu, cpu),
                ])
            }
            Workload::Broadcast8Rules16k => {
                let (rate, cpu) = broadcast(&bus, p.rules_per_holder, p.run_time)?;
                Ok(vec![
                    Figure(Metric::RulesRate, rate),
                    Figure(Metric::RulesCpu, cpu),
                ])
            }
            Workload::IdleConnections => Ok(vec![Figure(
                Metric::IdleRss,
                idle(&bus, p.idle_connections)?,
            )]),
            Workload::ConnectHello => {
                let (rate, cpu) = connect_hello(&bus, p.run_time)?;
                Ok(vec![
                    Figure(Metric::ConnectRate, rate),
                    Figure(Metric::ConnectCpu, cpu),
                ])
            }
            Workload::Startup => {
                let mut figures = vec![Figure(Metric::StartHello, ms(bus.hello_after))];
                if let Some(t) = bus.address_after {
                    figures.push(Figure(Metric::StartAddress, ms(t)));
                }
                Ok(figures)
            }
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Figure(pub(crate) Metric, pub(crate) f64);

impl Metric {
    /// Every figure, in table order.
    pub(crate) const ALL: &'static [Metric] = &[
        Metric::RoundTripP50,
        Metric::RoundTripP99,
        Metric::RoundTripCpu,
        Metric::PipelinedRate,
        Metric::PipelinedCpu,
        Metric::LargeRate,
        Metric::LargeCpu,
        Metric::BroadcastRate,
        Metric::BroadcastCpu,
        Metric::RulesRate,
        Metric::RulesCpu,
        Metric::IdleRss,
        Metric::ConnectRate,
        Metric::ConnectCpu,
        Metric::StartAddress,
        Metric::StartHello,
    ];

    /// The workload that measures it.
    pub(crate) fn workload(self) -> Workload {
        match self {
            Metric::RoundTripP50 | Metric::RoundTripP99 | Metric::RoundTripCpu => {
                Workload::RoundTrip
            }
            Metric::PipelinedRate | Metric::PipelinedCpu => Workload::Pipelined32,
            Metric::LargeRate | Metric::LargeCpu => Workload::Large64k,
            Metric::BroadcastRate | Metric::BroadcastCpu => Workload::Broadcast8,
            Metric::RulesRate | Metric::RulesCpu => Workload::Broadcast8Rules16k,
            Metric::IdleRss => Workload::IdleConnections,
            Metric::ConnectRate | Metric::ConnectCpu => Workload::ConnectHello,
            Metric::StartAddress | Metric::StartHello => Workload::Startup,
        }
    }

    /// A stable identifier, for JSON.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Metric::RoundTripP50 => "round_trip_p50",
            Metric::RoundTripP99 => "round_trip_p99",
            Metric::RoundTripCpu => "round_trip_cpu_per_msg",
            Metric::PipelinedRate => "pipelined_rate",
            Metric::PipelinedCpu => "pipelined_cpu_per_msg",
            Metric::LargeRate => "large_64k_rate",
            Metric::LargeCpu => "large_64k_cpu_per_msg",
            Metric::BroadcastRate => "broadcast_8_rate",
            Metric::BroadcastCpu => "broadcast_8_cpu_per_delivery",
            Metric::RulesRate => "broadcast_8_rules_16k_rate",
            Metric::RulesCpu => "broadcast_8_rules_16k_cpu_per_delivery",
            Metric::IdleRss => "idle_rss_per_connection",
            Metric::ConnectRate => "connect_hello_rate",
            Metric::ConnectCpu => "connect_hello_cpu_per_connection",
            Metric::StartAddress => "exec_to_address",
            Metric::StartHello => "exec_to_first_hello",
        }
    }

    /// Its label in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Metric::RoundTripP50 => "round trip, depth 1: p50",
            Metric::RoundTripP99 => "round trip, depth 1: p99",
            Metric::PipelinedRate => "pipelined calls, depth 32",
            Metric::LargeRate => "64 KiB calls, depth 4",
            Metric::BroadcastRate => "signal to 8 subscribers",
            Metric::RulesRate => "signal to 8, 16k other rules",
            Metric::IdleRss => "RSS per idle connection",
            Metric::ConnectRate => "connect + Hello + close",
            Metric::StartAddress => "exec -> address printed",
            Metric::StartHello => "exec -> first Hello answered",
            Metric::RoundTripCpu
            | Metric::PipelinedCpu
            | Metric::LargeCpu
            | Metric::BroadcastCpu
            | Metric::RulesCpu
            | Metric::ConnectCpu => "  bus CPU per message",
        }
    }

    /// Its label where it stands alone (the chart): CPU figures name their workload.
    pub(crate) fn long_label(self) -> &'static str {
        match self {
            Metric::RoundTripCpu => "round trip: bus CPU per message",
            Metric::PipelinedCpu => "pipelined: bus CPU per message",
            Metric::LargeCpu => "64 KiB: bus CPU per message",
            Metric::BroadcastCpu => "signal to 8: bus CPU per delivery",
            Metric::RulesCpu => "16k rules: bus CPU per delivery",
            Metric::ConnectCpu => "connect: bus CPU per connection",
            other => other.label(),
        }
    }

    /// The unit of its values.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Metric::RoundTripP50 | Metric::RoundTripP99 => "us",
            Metric::PipelinedRate | Metric::LargeRate => "calls/s",
            Metric::BroadcastRate | Metric::RulesRate => "deliveries/s",
            Metric::IdleRss => "KiB",
            Metric::ConnectRate => "conns/s",
            Metric::StartAddress | Metric::StartHello => "ms",
            Metric::RoundTripCpu | Metric::PipelinedCpu | Metric::LargeCpu => "us/msg",
            Metric::BroadcastCpu | Metric::RulesCpu => "us/delivery",
            Metric::ConnectCpu => "us/conn",
        }
    }

    /// Whether a smaller value is better (latency, CPU, memory, time).
    pub(crate) fn lower_is_better(self) -> bool {
        !matches!(
            self,
            Metric::PipelinedRate
                | Metric::LargeRate
                | Metric::BroadcastRate
                | Metric::RulesRate
                | Metric::ConnectRate
        )
    }
}

/// When a call workload stops sending.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Until {
    /// After this long.
    Time(Duration),
    /// After this many calls.
    Count(u64),
}

/// What a call workload measured.
#[derive(Debug, Clone)]
pub(crate) struct CallStats {
    /// Calls answered.
    pub(crate) done: u64,
    /// From the first call sent to the last reply read.
    pub(crate) elapsed: Duration,
    /// Bus CPU time over the same span.
    pub(crate) cpu_ns: u64,
    /// Each call's round trip, when one call at a time was in flight.
    latencies: Vec<Duration>,
}

impl CallStats {
    /// Calls per second.
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Bus CPU per forwarded message (each call forwards two: the call and its reply), in µs.
    fn cpu_us_per_message(&self) -> f64 {
        self.cpu_ns as f64 / (2 * self.done.max(1)) as f64 / 1000.0
    }

    /// The `q` quantile of the round trips, in µs.
    fn latency_us(&self, q: f64) -> io::Result<f64> {
        quantile(&self.latencies, q)
            .map(|d| d.as_secs_f64() * 1e6)
            .ok_or_else(|| io::Error::other("no call completed"))
    }
}

/// A caller and an echo peer; `depth` calls in flight with `body` bytes each.
pub(crate) fn calls(
    bus: &RunningBus,
    depth: usize,
    body: usize,
    until: Until,
) -> io::Result<CallStats> {
    let mut caller = Client::connect(&bus.address)?;
    let mut echo = Client::connect(&bus.address)?;
    let echo_name = echo.name.clone();
    let echo_closer = echo.closer()?;
    let caller_closer = caller.closer()?;
    let mut reply =
        Template::new(MessageBuilder::method_return(Template::MARK).destination(&caller.name));
    let echo_thread = thread::spawn(move || -> io::Result<()> {
        let result = echo_loop(&mut echo, &mut reply);
        // Whatever stopped the echo peer, the caller must not wait for it any longer.
        caller_closer.close();
        result
    });
    let payload = vec![0x61u8; body];
    let call = Template::new(
        MessageBuilder::method_call("/org/tram/Bench", Some("org.tram.Bench"), "Echo")
            .destination(&echo_name)
            .body("ay", |w| w.byte_array(&payload)),
    );
    let measured = drive_calls(bus, &mut caller, &call, depth, until);
    echo_closer.close();
    let echoed = join(echo_thread);
    let stats = measured?;
    // The echo peer ends with end-of-file once shut down; anything else went wrong earlier.
    match echoed {
        Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
            Err(io::Error::new(e.kind(), format!("echo peer: {e}")))
        }
        _ => Ok(stats),
    }
}

/// Broadcasts from one emitter to 8 subscribers for `time`, with `unrelated` rules on each of 8
/// more connections; returns deliveries per second and bus CPU per delivery in µs.
fn broadcast(bus: &RunningBus, unrelated: usize, time: Duration) -> io::Result<(f64, f64)> {
    const SUBSCRIBERS: u64 = 8;
    /// Signals in flight per subscriber before the emitter waits, and where it resumes.
    const HIGH: u64 = 256 * SUBSCRIBERS;
    const LOW: u64 = 128 * SUBSCRIBERS;
    let mut holders = Vec::new();
    for h in 0..8 {
        let mut c = Client::connect(&bus.address)?;
        add_matches(
            &mut c,
            (0..unrelated)
                .map(|i| format!("type='signal',interface='org.tram.Unrelated{h}',member='M{i}'")),
        )?;
        holders.push(c);
    }
    let shared = Arc::new(Flow {
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        waiting: AtomicBool::new(false),
        emitter: thread::current(),
        low: LOW,
        fanout: SUBSCRIBERS,
    });
    let mut subscribers: Vec<(Closer, JoinHandle<io::Result<()>>)> = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut c = Client::connect(&bus.address)?;
        add_matches(
            &mut c,
            std::iter::once("type='signal',interface='org.tram.Bench'".to_owned()),
        )?;
        let closer = c.closer()?;
        let shared = shared.clone();
        subscribers.push((closer, thread::spawn(move || subscribe(&mut c, &shared))));
    }
    let result = emit(bus, &shared, time, HIGH);
    for (closer, _) in &subscribers {
        closer.close();
    }
    for (_, t) in subscribers {
        if let Err(e) = join(t) {
            if e.kind() != io::ErrorKind::UnexpectedEof && result.is_ok() {
                return Err(io::Error::new(e.kind(), format!("subscriber: {e}")));
            }
        }
    }
    drop(holders);
    result
}

/// Fills a bus with `n` idle connections; returns the growth of its RSS per connection in KiB.
fn idle(bus: &RunningBus, n: usize) -> io::Result<f64> {
    let before = bus.rss_kib()?;
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect(&bus.address)?);
    }
    // Each connection waited for its Hello reply, so the bus has taken them all in.
    let after = bus.rss_kib()?;
    drop(clients);
    Ok((after as f64 - before as f64) / n.max(1) as f64)
}

/// Connects, says Hello and closes, over and over for `time`; returns connections per second
/// and bus CPU per connection in µs.
fn connect_hello(bus: &RunningBus, time: Duration) -> io::Result<(f64, f64)> {
    let cpu0 = bus.cpu_ns();
    let start = Instant::now();
    let deadline = start + time;
    let mut n = 0u64;
    while Instant::now() < deadline {
        drop(Client::connect(&bus.address)?);
        n += 1;
    }
    let elapsed = start.elapsed();
    // One more, not counted: the bus has dealt with the closed ones before it answers.
    drop(Client::connect(&bus.address)?);
    let cpu = bus.cpu_ns().saturating_sub(cpu0);
    Ok((
        n as f64 / elapsed.as_secs_f64().max(1e-9),
        cpu as f64 / n.max(1) as f64 / 1000.0,
    ))
}

/// Keeps `depth` calls in flight from `caller` until `until`, then waits for the last replies.
///
/// Each of the `depth` slots holds its own copy of the call, stamped in place and written with
/// one vectored write per batch, so that the caller copies nothing per call (64 KiB bodies
/// would otherwise cost the client as much as the bus). Replies come back in order, so a slot
/// is free again once the reply to the call it last carried has arrived.
fn drive_calls(
    bus: &RunningBus,
    caller: &mut Client,
    call: &Template,
    depth: usize,
    until: Until,
) -> io::Result<CallStats> {
    let depth = depth.max(1);
    let mut slots: Vec<Template> = vec![call.clone(); depth];
    let mut pending: Vec<usize> = Vec::with_capacity(depth);
    let mut latencies = Vec::new();
    let mut sent = 0u64;
    let mut send = |caller: &mut Client, pending: &mut Vec<usize>, slots: &mut [Template]| {
        let slot = (sent % depth as u64) as usize;
        let s = caller.next_serial();
        if let Some(t) = slots.get_mut(slot) {
            t.stamp(s, 0);
        }
        pending.push(slot);
        sent += 1;
    };
    for _ in 0..depth {
        send(caller, &mut pending, &mut slots);
    }
    let cpu0 = bus.cpu_ns();
    let start = Instant::now();
    let deadline = match until {
        Until::Time(t) => start + t,
        Until::Count(_) => start,
    };
    let mut sent_at = Instant::now();
    write_slots(caller, &slots, &mut pending)?;
    let mut done = 0u64;
    let mut in_flight = depth;
    while in_flight > 0 {
        let msg = caller.read_raw()?;
        match msg.kind() {
            METHOD_RETURN => {}
            ERROR => {
                let serial = msg.serial();
                let m = format!("the bus answered a call with an error (serial {serial})");
                return Err(io::Error::other(m));
            }
            _ => continue,
        }
        in_flight -= 1;
        done += 1;
        if depth == 1 {
            latencies.push(sent_at.elapsed());
        }
        let more = match until {
            Until::Time(_) => Instant::now() < deadline,
            Until::Count(n) => done + (in_flight as u64) < n,
        };
        if more {
            send(caller, &mut pending, &mut slots);
            in_flight += 1;
        }
        if !caller.has_buffered_message() && !pending.is_empty() {
            sent_at = Instant::now();
            write_slots(caller, &slots, &mut pending)?;
        }
    }
    let elapsed = start.elapsed();
    let cpu_ns = bus.cpu_ns().saturating_sub(cpu0);
    Ok(CallStats {
        done,
        elapsed,
        cpu_ns,
        latencies,
    })
}

/// Writes the calls in the `pending` slots with one vectored write and empties the list.
fn write_slots(
    caller: &mut Client,
    slots: &[Template],
    pending: &mut Vec<usize>,
) -> io::Result<()> {
    let mut bufs: Vec<IoSlice<'_>> = pending
        .iter()
        .filter_map(|&i| slots.get(i))
        .map(|t| IoSlice::new(t.bytes()))
        .collect();
    pending.clear();
    caller.write_all_vectored(&mut bufs)
}

/// Answers every method call with an empty reply until the connection ends.
fn echo_loop(echo: &mut Client, reply: &mut Template) -> io::Result<()> {
    let mut out = Vec::new();
    loop {
        let msg = echo.read_raw()?;
        if msg.kind() == METHOD_CALL {
            let rs = msg.serial();
            let s = echo.next_serial();
            out.extend_from_slice(reply.stamp(s, rs));
        }
        if !echo.has_buffered_message() && !out.is_empty() {
            echo.write_all(&out)?;
            out.clear();
        }
    }
}

/// Flow control between the emitter and the subscribers of the broadcast workload.
struct Flow {
    /// Signals sent.
    sent: AtomicU64,
    /// Signals received, summed over subscribers.
    delivered: AtomicU64,
    /// Whether the emitter is parked waiting for the subscribers to catch up.
    waiting: AtomicBool,
    emitter: thread::Thread,
    /// Deliveries outstanding at which a waiting emitter is woken.
    low: u64,
    fanout: u64,
}

impl Flow {
    fn outstanding(&self) -> u64 {
        let expected = self.sent.load(Ordering::Acquire) * self.fanout;
        expected.saturating_sub(self.delivered.load(Ordering::Acquire))
    }

    /// Parks the calling (emitter) thread until `done` holds or `deadline` passes.
    fn wait(&self, deadline: Instant, done: impl Fn(&Flow) -> bool) -> bool {
        while !done(self) {
            if Instant::now() >= deadline {
                return false;
            }
            self.waiting.store(true, Ordering::SeqCst);
            if !done(self) {
                // Woken by a subscriber; the timeout only bounds a missed wake-up.
                thread::park_timeout(Duration::from_millis(1));
            }
            self.waiting.store(false, Ordering::SeqCst);
        }
        true
    }
}

/// Counts the signals one subscriber receives, waking the emitter when it may send again.
fn subscribe(c: &mut Client, flow: &Flow) -> io::Result<()> {
    let mut batch = 0;
    loop {
        if c.read_raw()?.kind() == SIGNAL {
            batch += 1;
        }
        if !c.has_buffered_message() && batch > 0 {
            flow.delivered.fetch_add(batch, Ordering::AcqRel);
            batch = 0;
            if flow.waiting.load(Ordering::SeqCst) && flow.outstanding() <= flow.low {
                flow.emitter.unpark();
            }
        }
    }
}

/// Sends signals in batches of 32 for `time`, at most `high` deliveries outstanding, then waits
/// for every delivery; returns deliveries per second and bus CPU per delivery in µs.
fn emit(bus: &RunningBus, flow: &Flow, time: Duration, high: u64) -> io::Result<(f64, f64)> {
    let mut emitter = Client::connect(&bus.address)?;
    let mut signal = Template::new(
        MessageBuilder::signal("/org/tram/Bench", "org.tram.Bench", "Tick")
            .body("ay", |w| w.byte_array(&[0; 16])),
    );
    let cpu0 = bus.cpu_ns();
    let start = Instant::now();
    let deadline = start + time;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let stuck = Instant::now() + Duration::from_secs(10);
        if !flow.wait(stuck, |f| f.outstanding() <= high) {
            return Err(io::Error::other("subscribers stopped receiving signals"));
        }
        for _ in 0..32 {
            let s = emitter.next_serial();
            out.extend_from_slice(signal.stamp(s, 0));
        }
        emitter.write_all(&out)?;
        flow.sent.fetch_add(32, Ordering::AcqRel);
        out.clear();
    }
    let settle = Instant::now() + Duration::from_secs(10);
    if !flow.wait(settle, |f| f.outstanding() == 0) {
        return Err(io::Error::other(format!(
            "{} of {} deliveries missing",
            flow.outstanding(),
            flow.sent.load(Ordering::Acquire) * flow.fanout
        )));
    }
    let elapsed = start.elapsed();
    let cpu = bus.cpu_ns().saturating_sub(cpu0);
    let total = flow.delivered.load(Ordering::Acquire);
    Ok((
        total as f64 / elapsed.as_secs_f64().max(1e-9),
        cpu as f64 / total.max(1) as f64 / 1000.0,
    ))
}

/// Adds many match rules, pipelined, and waits for every reply.
fn add_matches(c: &mut Client, rules: impl Iterator<Item = String>) -> io::Result<()> {
    let mut out = Vec::new();
    let mut n = 0;
    for rule in rules {
        let s = c.next_serial();
        let m = MessageBuilder::method_call("/org/freedesktop/DBus", Some(DRIVER), "AddMatch")
            .destination(DRIVER)
            .body("s", |w| w.string(&rule))
            .build(s);
        out.extend_from_slice(m.as_bytes());
        n += 1;
        // Write in slices so that neither side's socket buffer has to hold them all.
        if out.len() > 64 * 1024 {
            c.write_all(&out)?;
            out.clear();
        }
    }
    c.write_all(&out)?;
    while n > 0 {
        let m = c.read_message()?;
        if m.reply_serial().is_some() {
            if let Some(e) = m.error_name() {
                return Err(io::Error::other(format!("AddMatch failed: {e}")));
            }
            n -= 1;
        }
    }
    Ok(())
}

/// Joins a worker thread, turning a panic into an error.
fn join(t: JoinHandle<io::Result<()>>) -> io::Result<()> {
    t.join()
        .unwrap_or_else(|_| Err(io::Error::other("worker thread panicked")))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile (0..=1) of `values`, by the nearest-rank method on a sorted copy.
fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let last = sorted.len().checked_sub(1)?;
    let rank = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(rank.min(last)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let us = |v: &[u64]| {
            v.iter()
                .map(|&x| Duration::from_micros(x))
                .collect::<Vec<_>>()
        };
        let cases: &[(&[u64], f64, Option<u64>)] = &[
            (&[], 0.5, None),
            (&[7], 0.99, Some(7)),
            (&[3, 1, 2], 0.5, Some(2)),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.0, Some(1)),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 1.0, Some(10)),
            (&[10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 0.5, Some(6)),
        ];
        for (values, q, want) in cases {
            let got = quantile(&us(values), *q).map(|d| d.as_micros() as u64);
            assert_eq!(got, *want, "{values:?} q={q}");
        }
    }

    #[test]
    fn names_round_trip() {
        for &w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
    }

    #[test]
    fn every_metric_is_listed_once_with_a_unique_id() {
        let mut ids: Vec<&str> = Metric::ALL.iter().map(|m| m.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Metric::ALL.len());
    }

    #[test]
    fn every_workload_measures_something() {
        for &w in Workload::ALL {
            assert!(Metric::ALL.iter().any(|m| m.workload() == w), "{w:?}");
        }
    }

    #[test]
    fn rates_are_higher_is_better_and_cpu_is_not() {
        for &m in Metric::ALL {
            if m.unit().ends_with("/s") {
                assert!(!m.lower_is_better(), "{m:?}");
            } else {
                assert!(m.lower_is_better(), "{m:?}");
            }
        }
    }
}
