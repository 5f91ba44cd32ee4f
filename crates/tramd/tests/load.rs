//! Faults and load: a flooder and a stalled subscriber beside a client doing round trips, many
//! concurrent connections, connect/disconnect cycles, clients killed in the middle of a message.
//!
//! The sizes are scaled so that the whole file runs in seconds on a small machine; each test
//! names the full-size figure it stands for. The tests measure the bus, so they take turns
//! ([`exclusive`]). Figures are printed (`--nocapture` shows them); the bounds asserted are
//! loose, so that a loaded machine does not make them fail, but each can fail.
//!
//! The bus is the one `TRAM_TEST_BUS` selects (tramd by default); what only tramd promises (a
//! stalled subscriber is disconnected) is checked on tramd alone and reported for dbus-daemon.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, EchoService, Launch, open_config};
use common::*;

const IFACE: &str = "com.example.Test";
const ECHO: &str = "com.example.Echo";
const LIMITS_EXCEEDED: &str = "org.freedesktop.DBus.Error.LimitsExceeded";

/// Round trips measured in each phase.
const ROUND_TRIPS: usize = 2_000;
/// How long the loaded phase may take (it stops earlier after [`ROUND_TRIPS`], and goes on to
/// 50 round trips at least).
const LOADED_BUDGET: Duration = Duration::from_secs(5);
/// How much slower the loaded p99 may be than the quiet one. tramd's is 2.5–3.5x here (a
/// quiet p99 of about 0.09 ms, under flood 0.24–0.28 ms); the margin is for slower and
/// busier machines, where the flooder, the signal emitter, the bus and the measuring client
/// share two cores.
const P99_FACTOR: f64 = 4.0;
/// The least quiet p99 the factor applies to: below a millisecond a round trip's tail is the
/// scheduler's. A bus that serves a quiet client only after a busy one's whole share of the
/// turn (as tramd did, p99 7–8 ms in a test build) fails this; dbus-daemon's p99 under this
/// load is 8–10 ms.
const P99_FLOOR: Duration = Duration::from_millis(1);
/// How much the bus's resident memory may grow during a test.
const RSS_GROWTH_KIB: u64 = 64 * 1024;
/// Concurrent connections. The bus keeps one fd per connection (tramd also keeps one pidfd per
/// client process) and raises its own fd limit to the hard limit (to 65,536 when root may, as
/// dbus-daemon does); where the hard limit is too low for this many, the test opens fewer.
const CONNECTIONS: usize = 10_000;
/// Connect/disconnect cycles.
const CYCLES: usize = 100_000;

#[test]
fn a_flooder_and_a_stalled_subscriber_leave_round_trips_fast() {
    let _turn = exclusive();
    let kind = BusKind::from_env();
    let bus = Launch::new(kind)
        .config(&config(&[
            ("max_outgoing_bytes", 1 << 20),
            ("max_replies_per_connection", 1_000_000),
        ]))
        .start();
    let pid = bus.pid();
    let _echo = EchoService::spawn(&bus, Some(ECHO));
    let mut client = bus.raw();
    // A peer that never reads: the flooder's target.
    let sink = bus.raw();
    // A subscriber to the busy signal that never reads once subscribed.
    let mut stalled = bus.raw();
    stalled.add_match("type='signal',interface='com.example.Busy'");

    round_trips(&mut client, 200);
    let quiet = Stats::of(round_trips(&mut client, ROUND_TRIPS));
    let rss_before = rss_kib(pid);

    let flooder = Flooder::start(&bus, &sink.unique_name);
    flooder
        .refused
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("the flooder got no LimitsExceeded; {}", flooder.report()));
    let emitter = Emitter::start(&bus);
    let mut rss_peak = rss_kib(pid);
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    let budget = Instant::now() + LOADED_BUDGET;
    while samples.len() < ROUND_TRIPS && (Instant::now() < budget || samples.len() < 50) {
        samples.extend(round_trips(&mut client, 10));
        rss_peak = rss_peak.max(rss_kib(pid));
    }
    let loaded = Stats::of(samples);
    let flood = flooder.stop();
    let emitted = emitter.stop();
    let stalled_closed = stalled.wait_closed(None);
    let rss_after = rss_kib(pid);

    let bound = quiet.p99.max(P99_FLOOR).mul_f64(P99_FACTOR);
    let ratio = loaded.p99.as_secs_f64() / quiet.p99.as_secs_f64();
    println!(
        "{kind:?}: {} round trips quiet: p50 {:?} p99 {:?}; {} under flood: p50 {:?} p99 {:?} \
         (p99 ratio {ratio:.1}, bound {bound:?})",
        quiet.n, quiet.p50, quiet.p99, loaded.n, loaded.p50, loaded.p99
    );
    println!(
        "{kind:?}: flooder sent {} calls, {} refused with LimitsExceeded, {} other replies, \
         flooder {}; {emitted} busy signals; stalled subscriber {}",
        flood.sent,
        flood.limits_exceeded,
        flood.other,
        if flood.closed {
            "disconnected"
        } else {
            "still connected"
        },
        match &stalled_closed {
            Ok(()) => "disconnected".to_owned(),
            Err(e) => format!("not disconnected ({})", first_line(e)),
        }
    );
    println!(
        "{kind:?}: bus RSS {rss_before} KiB before, peak {rss_peak} KiB, {rss_after} KiB after"
    );
    assert!(flood.limits_exceeded > 0, "the flooder was never refused");
    assert!(!flood.closed, "the flooder itself was disconnected");
    if kind == BusKind::Tramd {
        assert!(
            stalled_closed.is_ok(),
            "the stalled subscriber is still connected: {stalled_closed:?}"
        );
        assert!(
            bus.stderr().contains("does not read its messages"),
            "no log line for the stalled subscriber; stderr:\n{}",
            bus.stderr()
        );
    }
    assert!(
        rss_peak.saturating_sub(rss_before) <= RSS_GROWTH_KIB,
        "{kind:?}: RSS grew from {rss_before} KiB to {rss_peak} KiB under flood"
    );
    // Still serving everyone.
    round_trips(&mut client, 10);
    drop(sink);
    // The bound is tramd's: dbus-daemon's p99 under this load is about 10 ms.
    assert!(
        kind != BusKind::Tramd || loaded.p99 <= bound,
        "{kind:?}: p99 under flood {:?} > {bound:?} ({P99_FACTOR}x the quiet {:?}, at least \
         {P99_FLOOR:?})",
        loaded.p99,
        quiet.p99
    );
}

#[test]
fn many_concurrent_connections_are_all_answered() {
    let _turn = exclusive();
    let connections = concurrent_connections();
    let kind = BusKind::from_env();
    let n = connections as u64;
    let bus = Launch::new(kind)
        .config(&config(&[
            ("max_completed_connections", n * 2),
            ("max_incomplete_connections", n * 2),
            ("max_connections_per_user", n * 2),
        ]))
        .start();
    let pid = bus.pid();
    let mut witness = bus.raw();
    let fds_before = fd_count(pid);
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    // Everyone connects and sends its handshake, Hello and a call in one write…
    let mut clients: Vec<RawClient> = (0..connections)
        .map(|_| {
            let mut c = bus.raw_unauthenticated();
            c.write_all(&opening());
            c
        })
        .collect();
    // …and then every one of them is answered.
    let mut names = std::collections::HashSet::new();
    for c in &mut clients {
        let name = read_opening(c);
        assert!(names.insert(name.clone()), "{name} given twice");
    }
    let elapsed = started.elapsed();
    // One fd per connection, two where the bus keeps the peer's pidfd (tramd does).
    let fds_with = fd_count(pid);
    let per_connection = (fds_with - fds_before) as f64 / connections as f64;
    assert!(
        (connections..=2 * connections).contains(&(fds_with - fds_before)),
        "{kind:?}: {fds_before} fds before, {fds_with} with {connections} connections"
    );
    let rss_peak = rss_kib(pid);
    // The bus still serves a client that was there before, and a new one.
    served(&mut witness);
    served(&mut bus.raw());
    drop(clients);
    wait_until("the bus closes the connections", || {
        fd_count(pid) == fds_before
    });
    println!(
        "{kind:?}: {connections} connections opened and answered in {elapsed:?}; bus fds \
         {fds_before} before, {fds_with} with them ({per_connection:.1} per connection), back \
         to {fds_before}; RSS {rss_before} KiB before, {rss_peak} KiB with them, {} KiB after",
        rss_kib(pid)
    );
    served(&mut witness);
}

#[test]
fn connect_disconnect_cycles_leak_neither_fds_nor_memory() {
    let _turn = exclusive();
    let kind = BusKind::from_env();
    let bus = Launch::new(kind).config(&config(&[])).start();
    let pid = bus.pid();
    let mut witness = bus.raw();
    let socket = bus.socket_path().to_owned();
    let cycle = |n: usize| {
        for _ in 0..n {
            let mut c = RawClient::connect(&socket, None);
            c.write_all(&opening());
            read_opening(&mut c);
            c.disconnect();
        }
    };
    let fds_before = fd_count(pid);
    // Warm up, so that what the bus keeps for good (slabs, tables) is in the baseline.
    cycle(500);
    served(&mut witness);
    wait_until("the warm-up connections close", || {
        fd_count(pid) == fds_before
    });
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| cycle(CYCLES / 2));
        }
    });
    let elapsed = started.elapsed();
    served(&mut witness);
    wait_until("the bus closes the connections", || {
        fd_count(pid) == fds_before
    });
    let rss_after = rss_kib(pid);
    println!(
        "{kind:?}: {CYCLES} connect/Hello/disconnect cycles in {elapsed:?}; bus fds \
         {fds_before} before and after; RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        rss_after.saturating_sub(rss_before) <= 8 * 1024,
        "{kind:?}: RSS grew from {rss_before} KiB to {rss_after} KiB over {CYCLES} cycles"
    );
}

#[test]
fn clients_killed_mid_message_leave_the_bus_healthy() {
    let _turn = exclusive();
    let kind = BusKind::from_env();
    let bus = Launch::new(kind).config(&config(&[])).start();
    let pid = bus.pid();
    let _echo = EchoService::spawn(&bus, Some(ECHO));
    let mut witness = bus.raw();
    witness.add_match("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'");
    let dest = witness.unique_name.clone();
    let fds_before = fd_count(pid);
    let rss_before = rss_kib(pid);

    // Half a message, then close: in the fixed header, in the header fields, in the body.
    let message = RawMessage::call(Some(&dest), "/", Some(IFACE), "Big")
        .args(vec![Value::Bytes(vec![7; 64 * 1024])])
        .encode(2);
    for cut in [8, 24, message.len() / 2, message.len() - 1] {
        let mut c = bus.raw();
        let name = c.unique_name.clone();
        c.write_all(&message[..cut]);
        c.disconnect();
        wait_gone(&mut witness, &name);
        served(&mut witness);
    }

    // Writers killed with SIGKILL while the bus reads a 30 MiB message, four at once.
    let writers: Vec<KilledWriter> = (0..4).map(|_| KilledWriter::start(&bus, &dest)).collect();
    for w in &writers {
        w.wait_written(4 << 20);
    }
    let rss_reading = rss_kib(pid);
    let names: Vec<String> = writers.into_iter().map(KilledWriter::kill).collect();
    for name in &names {
        wait_gone(&mut witness, name);
    }

    // Nothing of them reached anyone, and the bus serves old and new clients.
    let leaked: Vec<String> = witness
        .sync()
        .iter()
        .filter(|m| m.sender.as_deref() != Some(BUS))
        .map(Msg::describe)
        .collect();
    assert!(
        leaked.is_empty(),
        "delivered from dead writers: {leaked:#?}"
    );
    round_trips(&mut witness, 10);
    round_trips(&mut bus.raw(), 10);
    wait_until("the bus closes the connections", || {
        fd_count(pid) == fds_before
    });
    let rss_after = rss_kib(pid);
    println!(
        "{kind:?}: bus RSS {rss_before} KiB before, {rss_reading} KiB while reading four \
         partial 30 MiB messages, {rss_after} KiB after the writers were killed"
    );
    assert!(
        rss_after.saturating_sub(rss_before) <= 16 * 1024,
        "{kind:?}: RSS grew from {rss_before} KiB to {rss_after} KiB and stayed"
    );
}

// --- load generators -----------------------------------------------------------------------------

/// A client sending calls to a peer as fast as it can, and counting what comes back.
struct Flooder {
    sock: UnixStream,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    writer: JoinHandle<()>,
    reader: JoinHandle<(u64, u64, bool)>,
    /// Receives once, at the first LimitsExceeded.
    refused: mpsc::Receiver<()>,
}

/// What a flooder saw.
struct Flood {
    sent: u64,
    limits_exceeded: u64,
    other: u64,
    /// The bus closed the flooder's connection before it was stopped.
    closed: bool,
}

impl Flooder {
    fn start(bus: &Daemon, target: &str) -> Flooder {
        let client = bus.raw();
        let sock = client
            .socket()
            .try_clone()
            .expect("cloning the flooder socket");
        let mut out = sock.try_clone().expect("cloning the flooder socket");
        let mut input = sock.try_clone().expect("cloning the flooder socket");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let call = RawMessage::call(Some(target), "/", Some(IFACE), "Flood")
            .args(vec![Value::str("flood")]);
        let writer = {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            thread::spawn(move || {
                let mut batch = Batch::new(&call, 64);
                while !stop.load(Ordering::Relaxed) {
                    if out.write_all(batch.next()).is_err() {
                        return;
                    }
                    sent.fetch_add(64, Ordering::Relaxed);
                }
            })
        };
        let (tx, refused) = mpsc::channel();
        let reader = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                // Kept alive until here: the bus must not see the connection end.
                let _client = client;
                let mut frames = Frames::default();
                let (mut limits, mut other) = (0, 0);
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match input.read(&mut buf) {
                        Ok(0) | Err(_) => return (limits, other, !stop.load(Ordering::Relaxed)),
                        Ok(n) => frames.push(&buf[..n], |frame| {
                            // Every error names the same limit: the first is checked in full,
                            // the others by their type (cheaply, to keep up with the bus).
                            let refused = frame.get(1) == Some(&ERROR)
                                && (limits > 0 || frame_names(frame, LIMITS_EXCEEDED));
                            if refused {
                                if limits == 0 {
                                    let _ = tx.send(());
                                }
                                limits += 1;
                            } else {
                                other += 1;
                            }
                        }),
                    }
                }
            })
        };
        Flooder {
            sock,
            stop,
            sent,
            writer,
            reader,
            refused,
        }
    }

    fn report(&self) -> String {
        format!("{} calls sent", self.sent.load(Ordering::Relaxed))
    }

    fn stop(self) -> Flood {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let _ = self.writer.join();
        let (limits_exceeded, other, closed) = self.reader.join().unwrap_or((0, 0, true));
        Flood {
            sent: self.sent.load(Ordering::Relaxed),
            limits_exceeded,
            other,
            closed,
        }
    }
}

/// A client broadcasting `com.example.Busy` signals as fast as it can.
struct Emitter {
    sock: UnixStream,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Emitter {
    fn start(bus: &Daemon) -> Emitter {
        let client = bus.raw();
        let sock = client
            .socket()
            .try_clone()
            .expect("cloning the emitter socket");
        let mut out = sock.try_clone().expect("cloning the emitter socket");
        let stop = Arc::new(AtomicBool::new(false));
        let signal = RawMessage::signal("/", "com.example.Busy", "Tick")
            .args(vec![Value::Bytes(vec![1; 512])]);
        let thread = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let _client = client;
                let mut batch = Batch::new(&signal, 16);
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if out.write_all(batch.next()).is_err() {
                        break;
                    }
                    sent += 16;
                }
                sent
            })
        };
        Emitter { sock, stop, thread }
    }

    /// Stops; gives how many signals were sent.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        self.thread.join().unwrap_or(0)
    }
}

/// A `cat /dev/zero` writing the body of a 30 MiB message into a registered connection, to be
/// killed before it finishes.
struct KilledWriter {
    child: std::process::Child,
    name: String,
}

impl KilledWriter {
    fn start(bus: &Daemon, dest: &str) -> KilledWriter {
        const LEN: u32 = 30 << 20;
        let mut c = bus.raw();
        let name = c.unique_name.clone();
        // The header of a call with one `ay` of LEN bytes, and the array's length; the bytes
        // come from cat.
        let mut head = RawMessage::call(Some(dest), "/", Some(IFACE), "Big")
            .field(field::SIGNATURE, Value::Sig("ay".into()));
        head.raw_body = Some(Vec::new());
        let mut bytes = head.encode(c.next_serial());
        bytes[4..8].copy_from_slice(&(LEN + 4).to_le_bytes());
        bytes.extend_from_slice(&LEN.to_le_bytes());
        c.write_all(&bytes);
        let sock: OwnedFd = c
            .socket()
            .try_clone()
            .expect("cloning the writer socket")
            .into();
        let child = Command::new("cat")
            .arg("/dev/zero")
            .stdin(Stdio::null())
            .stdout(Stdio::from(sock))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning cat");
        // From now on only cat holds the connection.
        drop(c);
        KilledWriter { child, name }
    }

    /// Waits until cat has written `n` bytes (so the bus has read most of them).
    fn wait_written(&self, n: u64) {
        let pid = self.child.id();
        wait_until("cat writes into the bus", || {
            let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
            status_field(&io, "wchar:").is_some_and(|w| w >= n)
        });
    }

    /// SIGKILLs cat mid-write; gives the connection's unique name.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.name
    }
}

// --- measuring -----------------------------------------------------------------------------------

/// Percentiles of round-trip times.
struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort_unstable();
        let at = |p: f64| {
            let i = ((samples.len() as f64 * p).ceil() as usize).saturating_sub(1);
            samples.get(i).copied().unwrap_or_default()
        };
        Stats {
            n: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// `n` calls to the echo service, each waited for; their round-trip times.
fn round_trips(c: &mut RawClient, n: usize) -> Vec<Duration> {
    let call = RawMessage::call(Some(ECHO), "/", Some(IFACE), "Echo").args(vec![Value::U32(7)]);
    (0..n)
        .map(|_| {
            let started = Instant::now();
            let reply = c.call(call.clone());
            let took = started.elapsed();
            assert_eq!(reply.ok(), [Value::U32(7)]);
            took
        })
        .collect()
}

/// The bus process's resident set (VmRSS) in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status_field(&status, "VmRSS:").unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// The number in a `Name:   123 kB` line of a `/proc` file.
fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The bus process's open fds.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .count()
}

/// Waits for `cond`, checking it every few milliseconds, failing after a deadline.
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE * 2;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the driver's NameOwnerChanged saying `name` is gone (the caller matches them).
fn wait_gone(witness: &mut RawClient, name: &str) {
    witness.wait_for(|m| {
        m.is_bus_signal("NameOwnerChanged")
            && m.str_arg(0) == Some(name)
            && m.str_arg(2) == Some("")
    });
}

/// The witness gets an answer from the bus.
#[track_caller]
fn served(c: &mut RawClient) {
    c.bus_ok("GetId", vec![]);
}

// --- helpers -------------------------------------------------------------------------------------

/// Load tests take turns: they measure the bus and the machine.
fn exclusive() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A permissive configuration with `limits` set.
fn config(limits: &[(&str, u64)]) -> String {
    let lines: String = limits
        .iter()
        .map(|(name, value)| format!("<limit name=\"{name}\">{value}</limit>\n"))
        .collect();
    open_config(&lines)
}

/// How many of [`CONNECTIONS`] the test and the bus can hold: this process raises its soft fd
/// limit (and its hard limit where it may), and the bus does the same for itself.
fn concurrent_connections() -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    const SPARE: u64 = 512;
    let wanted = CONNECTIONS as u64 + SPARE;
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|cur| cur < wanted) {
        let raised = Rlimit {
            current: Some(wanted),
            maximum: limit.maximum.max(Some(wanted)),
        };
        if setrlimit(Resource::Nofile, raised).is_err() {
            let capped = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            setrlimit(Resource::Nofile, capped).expect("raising RLIMIT_NOFILE");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let n = usize::try_from(soft.saturating_sub(SPARE)).map_or(CONNECTIONS, |n| n.min(CONNECTIONS));
    if n < CONNECTIONS {
        println!("{n} connections instead of {CONNECTIONS}: the fd limit is {soft}");
    }
    n
}

/// The whole opening of a connection in one write: the handshake (EXTERNAL, BEGIN), Hello as
/// serial 1 and GetId as serial 2.
fn opening() -> Vec<u8> {
    let mut bytes = RawClient::auth_line().into_bytes();
    bytes.extend_from_slice(b"BEGIN\r\n");
    bytes.extend(RawMessage::bus_call("Hello", vec![]).encode(1));
    bytes.extend(RawMessage::bus_call("GetId", vec![]).encode(2));
    bytes
}

/// Reads the answers to [`opening`]; gives the unique name.
fn read_opening(c: &mut RawClient) -> String {
    let ok = c.read_line();
    assert!(ok.starts_with("OK "), "{ok:?}");
    let hello = c.wait_reply(1);
    let name = hello
        .ok()
        .first()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let id = c.wait_reply(2);
    assert!(id.is_return(), "{}", id.describe());
    name
}

/// Splits a byte stream into messages.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    /// Appends `bytes` and calls `each` with every complete message.
    fn push(&mut self, bytes: &[u8], mut each: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(head) = self.buf.get(start..start + 16) {
            let word = |i: usize| {
                let b = [head[i], head[i + 1], head[i + 2], head[i + 3]];
                if head[0] == b'B' {
                    u32::from_be_bytes(b) as usize
                } else {
                    u32::from_le_bytes(b) as usize
                }
            };
            let len = 16 + ((word(12) + 7) & !7) + word(4);
            let Some(frame) = self.buf.get(start..start + len) else {
                break;
            };
            each(frame);
            start += len;
        }
        self.buf.drain(..start);
    }
}

/// Whether `frame` contains `name`.
fn frame_names(frame: &[u8], name: &str) -> bool {
    frame.windows(name.len()).any(|w| w == name.as_bytes())
}

/// `n` copies of a message marshalled once, renumbered cheaply for each write, so that the
/// load generators spend their time writing rather than encoding.
struct Batch {
    bytes: Vec<u8>,
    len: usize,
    serial: u32,
}

impl Batch {
    fn new(msg: &RawMessage, n: usize) -> Batch {
        let one = msg.encode(1);
        Batch {
            bytes: one.repeat(n),
            len: one.len(),
            serial: 0,
        }
    }

    /// The batch with the next serials (little-endian, at offset 8 of each message).
    fn next(&mut self) -> &[u8] {
        for msg in self.bytes.chunks_exact_mut(self.len) {
            self.serial = self.serial.wrapping_add(1).max(1);
            msg[8..12].copy_from_slice(&self.serial.to_le_bytes());
        }
        &self.bytes
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}
