//! Monitoring and statistics: `dbus-monitor` against the bus shows the same traffic as against
//! dbus-daemon for a scripted exchange; BecomeMonitor's semantics (names lost, everything seen,
//! a monitor that sends is disconnected, rules filter); and the Debug.Stats interface.
//!
//! Each test runs on dbus-daemon and on the bus under test (`TRAM_TEST_BUS`, tramd by default)
//! and compares what they give.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::daemon::{Daemon, Launch, NOBODY, busconfig};
use common::*;

const MONITORING: &str = "org.freedesktop.DBus.Monitoring";
const STATS: &str = "org.freedesktop.DBus.Debug.Stats";
const SVC: &str = "com.example.Mon.Svc";

fn open_bus(kind: BusKind) -> Daemon {
    Launch::new(kind)
        .config(&busconfig(
            "<listen>unix:path=@DIR@/bus</listen>\n\
             <policy context=\"default\">\n\
             <allow user=\"*\"/>\n\
             <allow send_destination=\"*\" eavesdrop=\"true\"/>\n\
             <allow eavesdrop=\"true\"/>\n\
             <allow own=\"*\"/>\n</policy>",
        ))
        .start()
}

/// Runs `f` on dbus-daemon and on the bus under test; their lines must be equal.
fn compare(name: &str, f: fn(&Daemon) -> Vec<String>) {
    let reference = f(&open_bus(BusKind::DbusDaemon));
    if std::env::var_os("TRAM_DIFF_SHOW").is_some() {
        println!("{name} on dbus-daemon:\n{}", reference.join("\n"));
    }
    let kind = BusKind::from_env();
    let bus = open_bus(kind);
    let tested = f(&bus);
    if reference != tested {
        let width = reference.len().max(tested.len());
        let rows: Vec<String> = (0..width)
            .filter_map(|i| {
                let r = reference.get(i).map_or("(nothing)", String::as_str);
                let t = tested.get(i).map_or("(nothing)", String::as_str);
                (r != t).then(|| format!("line {i}:\n  dbus-daemon: {r}\n  {kind:?}: {t}"))
            })
            .collect();
        panic!(
            "{name}: {kind:?} differs from dbus-daemon:\n{}\n\
             dbus-daemon's lines:\n{}\n{kind:?} stderr:\n{}",
            rows.join("\n"),
            reference.join("\n"),
            bus.stderr()
        );
    }
}

/// `dbus-monitor --address ADDR`, its output lines streamed.
struct DbusMonitor {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl DbusMonitor {
    fn start(bus: &Daemon) -> DbusMonitor {
        let mut child = Command::new("dbus-monitor")
            .args(["--address", bus.address()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dbus-monitor");
        let out = child.stdout.take().expect("dbus-monitor's stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut m = DbusMonitor {
            child,
            lines,
            seen: Vec::new(),
        };
        // dbus-monitor is ready once it has lost its own unique name (BecomeMonitor done).
        m.wait_for("member=NameLost");
        m
    }

    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "dbus-monitor printed no {needle:?}; so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything printed up to a line containing `needle`, and the argument lines after it.
    fn finish(mut self, needle: &str) -> Vec<String> {
        self.wait_for(needle);
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(line) = self
            .lines
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            self.seen.push(line);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for DbusMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dbus-monitor's lines without what legitimately differs between buses: times and the
/// serials of messages (the bus driver numbers its own), unique names (relabelled in order of
/// appearance), and the human-readable text of the bus driver's errors.
fn normalise(lines: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut bus_error = false;
    let mut out = Vec::new();
    for line in lines {
        if line.starts_with(' ') {
            if bus_error {
                continue;
            }
        } else {
            bus_error = line.starts_with("error ") && line.contains("sender=org.freedesktop.DBus ");
        }
        let words: Vec<String> = line
            .split(' ')
            .filter(|w| !(w.starts_with("time=") || w.starts_with("serial=")))
            .map(|w| relabel(w, &mut names))
            .collect();
        out.push(words.join(" "));
    }
    out
}

/// Replaces each `:N.M` unique name inside `word` by `:<k>`, k its order of first appearance.
fn relabel(word: &str, names: &mut Vec<String>) -> String {
    let Some(start) = word.find(":1.").or_else(|| word.find(":0.")) else {
        return word.to_owned();
    };
    let rest = &word[start..];
    let end = rest[1..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(rest.len(), |i| i + 1);
    let name = &rest[..end];
    let k = match names.iter().position(|n| n == name) {
        Some(k) => k,
        None => {
            names.push(name.to_owned());
            names.len() - 1
        }
    };
    format!("{}:<{k}>{}", &word[..start], relabel(&rest[end..], names))
}

#[test]
fn dbus_monitor_shows_the_same_traffic() {
    compare("dbus_monitor_shows_the_same_traffic", |bus| {
        let monitor = DbusMonitor::start(bus);
        let mut a = bus.raw();
        let mut b = bus.raw();
        let mut c = bus.raw();
        c.add_match("type='signal',member='NameOwnerChanged'");
        assert_eq!(b.request_name(SVC, 4), 1);
        a.add_match("type='signal',interface='com.example.Sig'");
        let args = vec![
            Value::str("text"),
            Value::U32(7),
            Value::I64(-3),
            Value::Bool(true),
            Value::F64(1.5),
            Value::Byte(9),
            Value::path("/a/b"),
            Value::Sig("a{sv}".into()),
            Value::str_array(&["x", "y"]),
            Value::dict_sv(vec![("k", Value::U32(1))]),
            Value::Bytes(b"bytes".to_vec()),
            Value::Struct(vec![Value::I16(-1), Value::U16(2)]),
        ];
        // A call answered, a call failed, a call without reply, a call to nowhere.
        let serial =
            a.send(&RawMessage::call(Some(SVC), "/obj", Some("com.example.I"), "Echo").args(args));
        let call = b.wait_for(|m| m.mtype == METHOD_CALL);
        b.send(&RawMessage::reply_to(&call, None).args(call.body.clone()));
        a.wait_reply(serial);
        let serial = a.send(&RawMessage::call(
            Some(SVC),
            "/obj",
            Some("com.example.I"),
            "Fail",
        ));
        let call = b.wait_for(|m| m.mtype == METHOD_CALL);
        b.send(
            &RawMessage::reply_to(&call, Some("com.example.Error.Failed"))
                .args(vec![Value::str("no")]),
        );
        a.wait_reply(serial);
        let serial =
            a.send(&RawMessage::call(Some(SVC), "/obj", None, "Quiet").flags(NO_REPLY_EXPECTED));
        b.wait_for(|m| m.serial == serial && m.mtype == METHOD_CALL);
        a.call(RawMessage::call(
            Some("com.example.Nowhere"),
            "/",
            Some("com.example.I"),
            "M",
        ));
        // Signals: broadcast and unicast.
        b.send(&RawMessage::signal("/obj", "com.example.Sig", "Changed").args(vec![Value::U32(1)]));
        a.wait_for(|m| m.is_signal("com.example.Sig", "Changed"));
        let a_name = a.unique_name.clone();
        b.send(&RawMessage::signal("/obj", "com.example.Sig", "Direct").destination(&a_name));
        a.wait_for(|m| m.is_signal("com.example.Sig", "Direct"));
        // Names change hands; a client leaves.
        b.release_name(SVC);
        a.disconnect();
        c.wait_for(|m| {
            m.is_bus_signal("NameOwnerChanged") && m.str_arg(0) == Some(a_name.as_str())
        });
        c.send(&RawMessage::signal("/", "com.example.Sig", "Done"));
        normalise(&monitor.finish("member=Done"))
    });
}

/// A transcript line for message `m` with unique names labelled.
fn line(m: &Msg, labels: &[(&str, &str)]) -> String {
    let label = |s: Option<&str>| {
        let s = s.unwrap_or("-");
        labels
            .iter()
            .find(|(n, _)| *n == s)
            .map_or(s.to_owned(), |(_, l)| (*l).to_owned())
    };
    format!(
        "{} {} -> {}",
        m.summary(labels),
        label(m.sender.as_deref()),
        label(m.destination.as_deref())
    )
}

fn become_monitor(c: &mut RawClient, rules: &[&str]) -> Msg {
    c.call(
        RawMessage::call(Some(BUS), BUS_PATH, Some(MONITORING), "BecomeMonitor")
            .args(vec![Value::str_array(rules), Value::U32(0)]),
    )
}

/// What the monitor `m` received up to the copy of the reply to `probe`'s Ping, which `probe`
/// makes after everything else.
fn monitored(m: &mut RawClient, probe: &mut RawClient) -> Vec<Msg> {
    let serial = probe.send(&RawMessage::call(
        Some(BUS),
        "/",
        Some("org.freedesktop.DBus.Peer"),
        "Ping",
    ));
    probe.wait_reply(serial);
    let probe_name = probe.unique_name.clone();
    let mut out = Vec::new();
    loop {
        let msg = m.recv();
        let done = msg.reply_serial == Some(serial)
            && msg.destination.as_deref() == Some(probe_name.as_str());
        let ping = msg.serial == serial && msg.sender.as_deref() == Some(probe_name.as_str());
        if done {
            return out;
        }
        if !ping {
            out.push(msg);
        }
    }
}

#[test]
fn become_monitor_loses_names_and_sees_everything() {
    compare("become_monitor_loses_names_and_sees_everything", |bus| {
        let mut obs = bus.raw();
        obs.add_match("type='signal',sender='org.freedesktop.DBus'");
        let mut m = bus.raw();
        let mut a = bus.raw();
        let mut b = bus.raw();
        let names = [
            (obs.unique_name.clone(), "obs"),
            (m.unique_name.clone(), "m"),
            (a.unique_name.clone(), "a"),
            (b.unique_name.clone(), "b"),
        ];
        let labels: Vec<(&str, &str)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let mut out = Vec::new();
        assert_eq!(m.request_name("com.example.Mon", 4), 1);
        m.add_match("type='signal',member='Ignored'");
        obs.sync();
        let reply = become_monitor(&mut m, &[]);
        out.push(format!("BecomeMonitor: {}", reply.summary(&labels)));
        // The monitor's own notifications, then what others see of it.
        for msg in monitored(&mut m, &mut obs) {
            out.push(format!("m <= {}", line(&msg, &labels)));
        }
        for msg in obs.sync() {
            out.push(format!("obs <= {}", line(&msg, &labels)));
        }
        let m_name = names[1].0.clone();
        let owner = obs.call_bus("GetNameOwner", vec![Value::str(&m_name)]);
        out.push(format!("owner of m: {}", owner.summary(&labels)));
        let owner = obs.call_bus("GetNameOwner", vec![Value::str("com.example.Mon")]);
        out.push(format!(
            "owner of com.example.Mon: {}",
            owner.summary(&labels)
        ));
        // Traffic between others, unicast included.
        let b_name = names[3].0.clone();
        let serial = a.send(&RawMessage::call(
            Some(&b_name),
            "/",
            Some("com.example.I"),
            "M",
        ));
        let call = b.wait_for(|msg| msg.mtype == METHOD_CALL);
        b.send(&RawMessage::reply_to(&call, None).args(vec![Value::U32(5)]));
        a.wait_reply(serial);
        b.send(&RawMessage::signal("/", "com.example.Sig", "S"));
        for msg in monitored(&mut m, &mut obs) {
            out.push(format!("m <= {}", line(&msg, &labels)));
        }
        // Sending anything gets the monitor disconnected.
        let probe = m.next_serial();
        let ping = RawMessage::call(Some(BUS), "/", Some("org.freedesktop.DBus.Peer"), "Ping");
        let _ = m.try_write_all(&ping.encode(probe));
        out.push(match m.wait_closed(Some(probe)) {
            Ok(()) => "monitor that sent: disconnected".into(),
            Err(e) => format!("monitor that sent: {e}"),
        });
        for msg in obs.sync() {
            out.push(format!("obs <= {}", line(&msg, &labels)));
        }
        out
    });
}

#[test]
fn monitor_rules_filter_what_is_seen() {
    compare("monitor_rules_filter_what_is_seen", |bus| {
        let mut m = bus.raw();
        let mut a = bus.raw();
        let mut b = bus.raw();
        let names = [
            (m.unique_name.clone(), "m"),
            (a.unique_name.clone(), "a"),
            (b.unique_name.clone(), "b"),
        ];
        let labels: Vec<(&str, &str)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let mut out = Vec::new();
        let reply = become_monitor(
            &mut m,
            &[
                "type='signal',interface='com.example.Watched'",
                "type='method_call',member='Watched'",
            ],
        );
        out.push(format!("BecomeMonitor: {}", reply.summary(&labels)));
        let b_name = names[2].0.clone();
        for member in ["Watched", "Other"] {
            let serial = a.send(&RawMessage::call(
                Some(&b_name),
                "/",
                Some("com.example.I"),
                member,
            ));
            let call = b.wait_for(|msg| msg.mtype == METHOD_CALL);
            b.send(&RawMessage::reply_to(&call, None));
            a.wait_reply(serial);
        }
        b.send(&RawMessage::signal("/", "com.example.Watched", "S"));
        b.send(&RawMessage::signal("/", "com.example.Other", "S"));
        // Bound the monitor's stream with a watched signal sent last.
        b.send(&RawMessage::signal("/", "com.example.Watched", "End"));
        loop {
            let msg = m.recv();
            let end = msg.is_signal("com.example.Watched", "End");
            out.push(format!("m <= {}", line(&msg, &labels)));
            if end {
                break;
            }
        }
        // Invalid rules are refused, and the connection stays an ordinary one.
        let mut c = bus.raw();
        let reply = become_monitor(&mut c, &["type='nonsense'"]);
        out.push(format!("bad rule: {}", reply.summary(&labels)));
        let reply = c.call(
            RawMessage::call(Some(BUS), BUS_PATH, Some(MONITORING), "BecomeMonitor")
                .args(vec![Value::str_array(&[]), Value::U32(1)]),
        );
        out.push(format!("flags 1: {}", reply.summary(&labels)));
        out.push(format!(
            "still usable: {}",
            c.call_bus("GetId", vec![]).is_return()
        ));
        out
    });
}

#[test]
fn become_monitor_needs_privilege() {
    for kind in [BusKind::DbusDaemon, BusKind::from_env()] {
        let bus = open_bus(kind);
        let mut n = bus.raw_as(NOBODY);
        let reply = become_monitor(&mut n, &[]);
        reply.expect_error(err::ACCESS_DENIED);
        n.bus_ok("GetId", vec![]);
    }
}

/// The values of `keys` in an `a{sv}` reply, as text (`-` when missing).
fn pick(dict: &Value, keys: &[&str], labels: &[(&str, &str)]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            let v = dict
                .dict_get(k)
                .map_or("-".to_owned(), |v| match v.as_str() {
                    Some(s) => labels
                        .iter()
                        .find(|(n, _)| *n == s)
                        .map_or(s.to_owned(), |(_, l)| (*l).to_owned()),
                    None => v.to_string(),
                });
            format!("{k}={v}")
        })
        .collect()
}

/// A match rule as a set of `key='value'` parts, so that the order a bus writes them in does
/// not matter.
fn rule_parts(rule: &str) -> BTreeSet<String> {
    let mut parts = BTreeSet::new();
    let mut current = String::new();
    let mut quoted = false;
    for ch in rule.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                current.push(ch);
            }
            ',' if !quoted => {
                parts.insert(std::mem::take(&mut current));
            }
            _ => current.push(ch),
        }
    }
    if !current.is_empty() {
        parts.insert(current);
    }
    parts
}

#[test]
fn debug_stats_answer() {
    compare("debug_stats_answer", |bus| {
        let mut a = bus.raw();
        let mut b = bus.raw();
        let names = [(a.unique_name.clone(), "a"), (b.unique_name.clone(), "b")];
        let labels: Vec<(&str, &str)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        assert_eq!(b.request_name("com.example.Stats", 4), 1);
        assert_eq!(b.request_name("com.example.Stats2", 4), 1);
        a.add_match("type='signal',member='A'");
        a.add_match("interface='com.example.I',type='signal',arg0='x'");
        b.add_match("type='method_call'");
        let stats = |member: &str, args: Vec<Value>| {
            RawMessage::call(Some(BUS), BUS_PATH, Some(STATS), member).args(args)
        };
        // A connection still authenticating is incomplete too: once it has an answer, the bus
        // has it.
        let mut authenticating = std::os::unix::net::UnixStream::connect(bus.socket_path())
            .expect("connecting to the bus");
        authenticating
            .set_read_timeout(Some(DEADLINE))
            .expect("a read timeout");
        std::io::Write::write_all(&mut authenticating, b"\0AUTH\r\n").expect("writing AUTH");
        let mut rejected = [0u8; 9];
        std::io::Read::read_exact(&mut authenticating, &mut rejected).expect("reading REJECTED");
        assert_eq!(&rejected, b"REJECTED ");
        let mut out = Vec::new();
        let reply = a.call(stats("GetStats", vec![]));
        out.push(format!("GetStats signature {:?}", reply.signature));
        let dict = reply.body.first().cloned().unwrap_or(Value::Bool(false));
        out.extend(pick(
            &dict,
            &[
                "ActiveConnections",
                "IncompleteConnections",
                "MatchRules",
                "PeakMatchRules",
                "PeakMatchRulesPerConnection",
                "BusNames",
                "PeakBusNames",
                "PeakBusNamesPerConnection",
            ],
            &labels,
        ));
        for target in [
            names[0].0.as_str(),
            "com.example.Stats",
            ":1.9999",
            "com.example.Nobody",
            BUS,
        ] {
            let reply = a.call(stats("GetConnectionStats", vec![Value::str(target)]));
            let who = labels
                .iter()
                .find(|(n, _)| *n == target)
                .map_or(target, |(_, l)| l);
            if reply.is_return() {
                let dict = reply.body.first().cloned().unwrap_or(Value::Bool(false));
                let keys = [
                    "UniqueName",
                    "MatchRules",
                    "PeakMatchRules",
                    "BusNames",
                    "PeakBusNames",
                ];
                out.push(format!(
                    "GetConnectionStats({who}) {:?}: {}",
                    reply.signature,
                    pick(&dict, &keys, &labels).join(" ")
                ));
            } else {
                out.push(format!(
                    "GetConnectionStats({who}): {}",
                    reply.summary(&labels)
                ));
            }
        }
        let reply = a.call(stats("GetAllMatchRules", vec![]));
        out.push(format!("GetAllMatchRules signature {:?}", reply.signature));
        if let Some(Value::Array(_, entries)) = reply.body.first() {
            let mut rows: Vec<String> = entries
                .iter()
                .filter_map(|e| match e {
                    Value::Entry(k, v) => {
                        let who = k.as_str().unwrap_or_default();
                        let who = labels
                            .iter()
                            .find(|(n, _)| *n == who)
                            .map_or(who.to_owned(), |(_, l)| (*l).to_owned());
                        let mut rules: Vec<String> = v
                            .as_str_vec()
                            .unwrap_or_default()
                            .iter()
                            .map(|r| format!("{:?}", rule_parts(r)))
                            .collect();
                        rules.sort();
                        Some(format!("rules of {who}: {}", rules.join(" | ")))
                    }
                    _ => None,
                })
                .collect();
            rows.sort();
            out.extend(rows);
        }
        // Only on the bus's object path.
        let reply = a.call(RawMessage::call(Some(BUS), "/", Some(STATS), "GetStats"));
        out.push(format!("GetStats on /: {}", reply.summary(&labels)));
        out
    });
}

fn stock_system_bus(kind: BusKind) -> Daemon {
    Launch::new(kind)
        .arg("--config-file=/usr/share/dbus-1/system.conf")
        .arg("--address=unix:path=@DIR@/system_bus_socket")
        .arg("--nopidfile")
        .start()
}

/// On the stock system bus, root may monitor without any eavesdropping rule, and sees unicast
/// traffic between others, calls the policy refused, and the errors answering them.
fn system_bus_monitoring(bus: &Daemon) -> Vec<String> {
    let mut m = bus.raw();
    let mut svc = bus.raw();
    assert_eq!(svc.request_name("org.freedesktop.hostname1", 4), 1);
    let mut n = bus.raw_as(NOBODY);
    let plain = bus.raw();
    let names = [
        (m.unique_name.clone(), "m"),
        (svc.unique_name.clone(), "svc"),
        (n.unique_name.clone(), "n"),
        (plain.unique_name.clone(), "plain"),
    ];
    let labels: Vec<(&str, &str)> = names.iter().map(|(x, l)| (x.as_str(), *l)).collect();
    let mut out = Vec::new();
    let reply = become_monitor(&mut m, &[]);
    out.push(format!("BecomeMonitor: {}", reply.summary(&labels)));
    // Allowed: a call to hostname1 and its reply.
    let serial = n.send(&RawMessage::call(
        Some("org.freedesktop.hostname1"),
        "/org/freedesktop/hostname1",
        Some("org.freedesktop.hostname1"),
        "Describe",
    ));
    let call = svc.wait_for(|x| x.mtype == METHOD_CALL);
    svc.send(&RawMessage::reply_to(&call, None).args(vec![Value::str("{}")]));
    out.push(format!("n got {}", n.wait_reply(serial).summary(&labels)));
    // Refused: a call to a connection no policy opens.
    let plain_name = names[3].0.clone();
    let refused = n.call(RawMessage::call(
        Some(&plain_name),
        "/",
        Some("com.example.I"),
        "M",
    ));
    out.push(format!("n got {}", refused.summary(&labels)));
    // Bound the monitor's stream by a last call of n's, then list what it saw.
    let last = n.send(&RawMessage::bus_call(
        "NameHasOwner",
        vec![Value::str("org.freedesktop.hostname1")],
    ));
    n.wait_reply(last);
    let n_name = names[2].0.clone();
    loop {
        let x = m.recv();
        let done = x.reply_serial == Some(last) && x.destination.as_deref() == Some(&n_name);
        if x.sender.as_deref() == Some(BUS) && x.mtype == SIGNAL {
            // The monitor's own NameLost; not about the traffic.
            continue;
        }
        out.push(format!("m <= {}", line(&x, &labels)));
        if done {
            break;
        }
    }
    out
}

#[test]
fn root_monitors_the_stock_system_bus() {
    let reference = system_bus_monitoring(&stock_system_bus(BusKind::DbusDaemon));
    let kind = BusKind::from_env();
    let bus = stock_system_bus(kind);
    let tested = system_bus_monitoring(&bus);
    assert_eq!(
        reference,
        tested,
        "{kind:?} differs from dbus-daemon; its stderr:\n{}",
        bus.stderr()
    );
}
