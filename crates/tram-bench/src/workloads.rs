//! The workloads. Each starts its bus fresh, connects its clients, runs for a fixed time and
//! reports one figure plus the bus's CPU time per message.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tram_wire::MessageBuilder;

use crate::buses::{BusKind, RunningBus};
use crate::client::{Client, DRIVER, Template, raw_serial, raw_type};

/// One workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// What a workload measured.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The headline figure, in the workload's unit.
    pub(crate) value: f64,
    /// Bus CPU time per forwarded message (per delivery, for broadcasts).
    pub(crate) cpu_ns_per_msg: Option<f64>,
    /// More detail for the table.
    pub(crate) extra: Option<String>,
}

impl Workload {
    /// Every workload, in table order.
    pub(crate) const ALL: &'static [Workload] = &[
        Workload::RoundTrip,
        Workload::Pipelined32,
        Workload::Large64k,
        Workload::Broadcast8,
        Workload::Broadcast8Rules16k,
    ];

    /// Its name in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::RoundTrip => "round trip p50",
            Workload::Pipelined32 => "pipelined calls (depth 32)",
            Workload::Large64k => "64 KiB calls (depth 4)",
            Workload::Broadcast8 => "broadcast to 8",
            Workload::Broadcast8Rules16k => "broadcast to 8, 16k rules",
        }
    }

    /// The unit of the figure.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Workload::RoundTrip => "us",
            Workload::Pipelined32 | Workload::Large64k => "calls/s",
            Workload::Broadcast8 | Workload::Broadcast8Rules16k => "deliveries/s",
        }
    }

    /// Whether a bigger figure is better.
    pub(crate) fn higher_is_better(self) -> bool {
        self != Workload::RoundTrip
    }
}

/// Runs `w` against a fresh `bus`.
pub(crate) fn run(w: Workload, kind: BusKind, quick: bool) -> io::Result<Outcome> {
    let bus = RunningBus::start(kind)?;
    let time = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    };
    match w {
        Workload::RoundTrip => calls(&bus, 1, 16, time, true),
        Workload::Pipelined32 => calls(&bus, 32, 16, time, false),
        Workload::Large64k => calls(&bus, 4, 64 * 1024, time, false),
        Workload::Broadcast8 => broadcast(&bus, 0, time),
        Workload::Broadcast8Rules16k => broadcast(&bus, if quick { 200 } else { 2000 }, time),
    }
}

/// A caller and an echo peer; `depth` calls in flight with `body` bytes each.
fn calls(
    bus: &RunningBus,
    depth: usize,
    body: usize,
    time: Duration,
    latency: bool,
) -> io::Result<Outcome> {
    let mut caller = Client::connect(&bus.address)?;
    let mut echo = Client::connect(&bus.address)?;
    let mut reply =
        Template::new(MessageBuilder::method_return(Template::MARK).destination(&caller.name));
    let echo_thread = thread::spawn(move || -> io::Result<()> {
        let mut out = Vec::new();
        loop {
            let msg = echo.read_raw()?;
            if raw_type(msg) == 1 {
                let rs = raw_serial(msg);
                let s = echo.next_serial();
                out.extend_from_slice(reply.stamp(s, rs));
            }
            if !echo.has_buffered_message() && !out.is_empty() {
                echo.write_all(&out)?;
                out.clear();
            }
        }
    });
    let payload = vec![0x61u8; body];
    let mut call = Template::new(
        MessageBuilder::method_call("/org/tram/Bench", Some("org.tram.Bench"), "Echo")
            .destination(&echo_name(bus, &caller)?)
            .body("ay", |w| w.byte_array(&payload)),
    );
    let mut latencies = Vec::new();
    let mut out = Vec::new();
    for _ in 0..depth {
        let s = caller.next_serial();
        out.extend_from_slice(call.stamp(s, 0));
    }
    let cpu0 = bus.cpu_ns();
    let start = Instant::now();
    let mut sent_at = Instant::now();
    caller.write_all(&out)?;
    out.clear();
    let mut done = 0u64;
    let mut in_flight = depth;
    let deadline = start + time;
    while in_flight > 0 {
        let msg = caller.read_raw()?;
        if raw_type(msg) != 2 {
            continue;
        }
        in_flight -= 1;
        done += 1;
        if latency {
            latencies.push(sent_at.elapsed());
        }
        if Instant::now() < deadline {
            let s = caller.next_serial();
            out.extend_from_slice(call.stamp(s, 0));
            in_flight += 1;
        }
        if !caller.has_buffered_message() && !out.is_empty() {
            sent_at = Instant::now();
            caller.write_all(&out)?;
            out.clear();
        }
    }
    let elapsed = start.elapsed();
    let cpu = bus.cpu_ns() - cpu0;
    drop(caller);
    let _ = echo_thread;
    let cpu_per = Some(cpu as f64 / (done * 2) as f64);
    if latency {
        latencies.sort_unstable();
        let pct =
            |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
        return Ok(Outcome {
            value: pct(0.5),
            cpu_ns_per_msg: cpu_per,
            extra: Some(format!(
                "p99 {:.1} us over {} calls",
                pct(0.99),
                latencies.len()
            )),
        });
    }
    Ok(Outcome {
        value: done as f64 / elapsed.as_secs_f64(),
        cpu_ns_per_msg: cpu_per,
        extra: None,
    })
}

/// The echo peer is the second connection: ask the bus for its name via the caller's view.
fn echo_name(_bus: &RunningBus, caller: &Client) -> io::Result<String> {
    // Unique names are handed out in connection order on every bus measured here.
    let n: Option<u64> = caller.name.rsplit('.').next().and_then(|d| d.parse().ok());
    let prefix = caller.name.rsplit_once('.').map(|(p, _)| p).unwrap_or(":1");
    n.map(|n| format!("{prefix}.{}", n + 1))
        .ok_or_else(|| io::Error::other("odd unique name"))
}

/// One emitter, 8 subscribers; `unrelated` rules on each of 8 more connections.
fn broadcast(bus: &RunningBus, unrelated: usize, time: Duration) -> io::Result<Outcome> {
    const SUBSCRIBERS: u64 = 8;
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
    let delivered = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut c = Client::connect(&bus.address)?;
        add_matches(
            &mut c,
            std::iter::once("type='signal',interface='org.tram.Bench'".to_owned()),
        )?;
        let delivered = delivered.clone();
        threads.push(thread::spawn(move || -> io::Result<()> {
            loop {
                let msg = c.read_raw()?;
                if raw_type(msg) == 4 {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut emitter = Client::connect(&bus.address)?;
    let mut signal = Template::new(
        MessageBuilder::signal("/org/tram/Bench", "org.tram.Bench", "Tick")
            .body("ay", |w| w.byte_array(&[0; 16])),
    );
    let cpu0 = bus.cpu_ns();
    let start = Instant::now();
    let deadline = start + time;
    let mut sent = 0u64;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        // Keep at most 256 signals per subscriber in flight.
        while sent * SUBSCRIBERS - delivered.load(Ordering::Relaxed) > 256 * SUBSCRIBERS {
            std::hint::spin_loop();
            thread::yield_now();
        }
        for _ in 0..32 {
            let s = emitter.next_serial();
            out.extend_from_slice(signal.stamp(s, 0));
            sent += 1;
        }
        emitter.write_all(&out)?;
        out.clear();
    }
    let settle = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::Relaxed) < sent * SUBSCRIBERS && Instant::now() < settle {
        thread::yield_now();
    }
    let elapsed = start.elapsed();
    let cpu = bus.cpu_ns() - cpu0;
    let total = delivered.load(Ordering::Relaxed);
    drop(holders);
    Ok(Outcome {
        value: total as f64 / elapsed.as_secs_f64(),
        cpu_ns_per_msg: Some(cpu as f64 / total.max(1) as f64),
        extra: None,
    })
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
