//! Differential tests: the same scenario — driver calls from one or more clients, error cases
//! included — runs against dbus-daemon (the reference) and against the bus under test, and the
//! two transcripts must be identical.
//!
//! A transcript records, per client and in arrival order, every reply (its signature and values,
//! or its error NAME) and every message the client received. What legitimately differs between
//! two buses is normalised away: unique names become the client's label (`<c0>`, `<z0>`, …), the
//! bus ID becomes `<bus-id>`, pids become `<test-pid>`/`<bus-pid>`, error message texts are
//! dropped, and collections without a defined order (ListNames, credentials) are sorted.
//!
//! `TRAM_DIFF_SHOW=1` prints each reference transcript (run with `--nocapture`).
//!
//! The bus under test is the one `TRAM_TEST_BUS` selects, tramd by default; with
//! `TRAM_TEST_BUS=dbus-daemon` every scenario runs on two dbus-daemons, which checks that the
//! scenarios and their normalisation are deterministic.

mod common;

use common::*;

/// One scenario's run on one bus.
struct Session {
    bus: TestBus,
    clients: Vec<RawClient>,
    labels: Vec<(String, String)>,
    lines: Vec<String>,
    bus_id: Option<String>,
}

impl Session {
    fn new(bus: TestBus) -> Session {
        Session {
            bus,
            clients: Vec::new(),
            labels: Vec::new(),
            lines: Vec::new(),
            bus_id: None,
        }
    }

    /// A new registered raw client; its index is its label number.
    fn connect(&mut self) -> usize {
        let c = self.bus.raw();
        let i = self.clients.len();
        self.labels.push((c.unique_name.clone(), format!("<c{i}>")));
        self.clients.push(c);
        self.lines.push(format!("c{i} connected"));
        i
    }

    fn note(&mut self, text: impl Into<String>) {
        self.lines.push(text.into());
    }

    /// Sends `msg` from client `c` and records everything `c` receives up to and including the
    /// reply (or, for messages that expect none, up to a round trip).
    fn send(&mut self, c: usize, msg: RawMessage, post: fn(&mut Value)) {
        let what = self.describe_call(&msg);
        let serial = self.clients[c].send(&msg);
        if msg.flags & NO_REPLY_EXPECTED != 0 || msg.mtype != METHOD_CALL {
            self.lines.push(format!("c{c} {what}"));
            self.drain(c);
            return;
        }
        loop {
            let m = self.clients[c].recv();
            if m.reply_serial == Some(serial) && (m.mtype == METHOD_RETURN || m.mtype == ERROR) {
                let reply = self.describe_reply(&m, post);
                self.lines.push(format!("c{c} {what} -> {reply}"));
                return;
            }
            let got = self.describe_received(&m);
            self.lines.push(format!("c{c} <= {got}"));
        }
    }

    /// A driver call with its reply recorded as is.
    fn bus_call(&mut self, c: usize, member: &str, args: Vec<Value>) {
        self.send(c, RawMessage::bus_call(member, args), |_| {});
    }

    /// A driver call whose reply's string arrays are sorted first.
    fn bus_call_sorted(&mut self, c: usize, member: &str, args: Vec<Value>) {
        self.send(c, RawMessage::bus_call(member, args), sort_collections);
    }

    /// Records what client `c` received up to a round trip with the bus.
    fn drain(&mut self, c: usize) {
        let msgs = self.clients[c].sync();
        for m in msgs {
            let got = self.describe_received(&m);
            self.lines.push(format!("c{c} <= {got}"));
        }
    }

    fn disconnect(&mut self, c: usize) {
        let placeholder = self.bus.raw_unauthenticated();
        std::mem::replace(&mut self.clients[c], placeholder).disconnect();
        self.lines.push(format!("c{c} disconnected"));
    }

    fn normalize(&self, v: &mut Value) {
        let labels = &self.labels;
        let bus_id = self.bus_id.clone();
        let bus_pid = self.bus.pid();
        v.visit_mut(&mut |v| match v {
            Value::Str(s) => {
                if let Some((_, l)) = labels.iter().find(|(n, _)| n == s) {
                    *s = l.clone();
                } else if bus_id.as_deref() == Some(s.as_str()) {
                    *s = "<bus-id>".into();
                }
            }
            Value::U32(n) if *n == std::process::id() => *v = Value::str("<test-pid>"),
            Value::U32(n) if *n == bus_pid => *v = Value::str("<bus-pid>"),
            _ => {}
        });
    }

    fn values(&self, body: &[Value]) -> String {
        let parts: Vec<String> = body
            .iter()
            .map(|v| {
                let mut v = v.clone();
                self.normalize(&mut v);
                v.to_string()
            })
            .collect();
        parts.join(", ")
    }

    fn describe_call(&self, m: &RawMessage) -> String {
        let field = |code| {
            m.fields
                .iter()
                .find(|(c, _)| *c == code)
                .and_then(|(_, v)| v.as_str())
        };
        let mut args = m.body.clone();
        args.iter_mut().for_each(|v| self.normalize(v));
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        let dest = field(field::DESTINATION).map(|d| self.label(d));
        format!(
            "{}{}({}){}{}",
            compact_path(field(field::PATH)),
            compact_member(field(field::INTERFACE), field(field::MEMBER)),
            args.join(", "),
            match dest.as_deref() {
                None | Some(BUS) => String::new(),
                Some(d) => format!(" to {d}"),
            },
            if m.flags == 0 {
                String::new()
            } else {
                format!(" flags={}", m.flags)
            },
        )
    }

    fn describe_reply(&self, m: &Msg, post: fn(&mut Value)) -> String {
        match m.mtype {
            ERROR => format!("error {}", m.error_name.as_deref().unwrap_or("?")),
            _ => {
                let mut body = m.body.clone();
                body.iter_mut().for_each(|v| {
                    post(v);
                    self.normalize(v);
                });
                sort_collections_after_normalizing(&mut body);
                let args: Vec<String> = body.iter().map(ToString::to_string).collect();
                format!("return {:?} ({})", m.signature, args.join(", "))
            }
        }
    }

    fn describe_received(&self, m: &Msg) -> String {
        let sender = m
            .sender
            .as_deref()
            .map(|s| self.label(s))
            .unwrap_or("-".into());
        let kind = match m.mtype {
            METHOD_CALL => "call",
            METHOD_RETURN => "return",
            ERROR => "error",
            SIGNAL => "signal",
            _ => "unknown",
        };
        if m.mtype == ERROR {
            let name = m.error_name.as_deref().unwrap_or("?");
            return format!(
                "error {name} from {}",
                if sender == BUS { "bus" } else { &sender }
            );
        }
        let member = m.member.as_deref();
        format!(
            "{kind} {}{}({}) from {}{}",
            compact_path(m.path.as_deref()),
            compact_member(m.interface.as_deref(), member),
            self.values(&m.body),
            if sender == BUS { "bus" } else { &sender },
            if m.destination.is_some() {
                " (unicast)"
            } else {
                ""
            },
        )
    }

    fn label(&self, name: &str) -> String {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| name.to_owned())
    }
}

/// A path for a transcript line: omitted when it is the driver's.
fn compact_path(path: Option<&str>) -> String {
    match path {
        Some(BUS_PATH) => String::new(),
        Some(p) => format!("{p} "),
        None => "(no path) ".into(),
    }
}

/// `interface.member`, or just `member` on the driver's interface.
fn compact_member(interface: Option<&str>, member: Option<&str>) -> String {
    let member = member.unwrap_or("-");
    match interface {
        Some(BUS) => member.to_owned(),
        Some(i) => format!("{i}.{member}"),
        None => format!("(no interface).{member}"),
    }
}

/// Sorts the string arrays in a reply (ListNames and friends have no defined order).
fn sort_collections(v: &mut Value) {
    v.visit_mut(&mut |v| {
        if let Value::Array(elem, items) = v {
            if elem == "s" {
                items.sort_by_key(ToString::to_string);
            }
        }
    });
}

/// Sorts dictionaries by key (their order carries no meaning).
fn sort_collections_after_normalizing(body: &mut [Value]) {
    for v in body {
        v.visit_mut(&mut |v| {
            if let Value::Array(elem, items) = v {
                if elem.starts_with('{') {
                    items.sort_by_key(ToString::to_string);
                }
            }
        });
    }
}

/// Runs `scenario` on dbus-daemon and on the bus under test and compares the transcripts.
fn compare(name: &str, scenario: fn(&mut Session)) {
    let run = |bus: TestBus| {
        let mut s = Session::new(bus);
        scenario(&mut s);
        (s.lines, s.bus.stderr())
    };
    let (reference, _) = run(TestBus::dbus_daemon());
    if std::env::var_os("TRAM_DIFF_SHOW").is_some() {
        println!("scenario {name} on dbus-daemon:\n{}", reference.join("\n"));
    }
    let kind = BusKind::from_env();
    let (tested, stderr) = run(TestBus::start_kind(kind));
    if reference != tested {
        panic!(
            "scenario {name}: {kind:?} differs from dbus-daemon \
             (- dbus-daemon, + {kind:?}):\n{}\n{kind:?} stderr:\n{stderr}",
            diff(&reference, &tested)
        );
    }
}

/// A line diff (longest common subsequence), with two lines of context around changes.
fn diff(a: &[String], b: &[String]) -> String {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', &a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', &a[i]));
            i += 1;
        } else {
            ops.push(('+', &b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if near_change(k) {
            out.push_str(&format!("{c} {line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("  …\n");
            skipped = true;
        }
    }
    out
}

#[test]
fn the_diff_shows_changes_in_context() {
    let lines = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let d = diff(&lines("a b c d e f g h"), &lines("a b c X e f g h i"));
    assert_eq!(d, "  …\n  b\n  c\n- d\n+ X\n  e\n  f\n  g\n  h\n+ i\n");
}

macro_rules! differential {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                compare(stringify!($name), scenarios::$name);
            }
        )*
    };
}

differential!(
    hello_and_basic_queries,
    name_lifecycle_with_observer,
    request_name_flag_matrix,
    name_argument_errors,
    match_rule_errors,
    driver_errors,
    properties_and_introspection,
    credentials,
    routing_errors,
    no_reply_on_disconnect,
    before_hello,
    broadcast_delivery,
    zbus_client,
);

mod scenarios {
    use super::*;

    const N: &str = "com.example.Diff";

    pub(super) fn hello_and_basic_queries(s: &mut Session) {
        let c = s.connect();
        let id = s.clients[c].bus_ok("GetId", vec![]);
        let id = id[0].as_str().unwrap_or_default().to_owned();
        s.note(format!("GetId is 32 hex digits: {}", id.len() == 32));
        s.bus_id = Some(id);
        s.bus_call(c, "GetId", vec![]);
        s.bus_call_sorted(c, "ListNames", vec![]);
        s.bus_call(c, "NameHasOwner", vec![Value::str(BUS)]);
        s.bus_call(c, "GetNameOwner", vec![Value::str(BUS)]);
        let me = s.clients[c].unique_name.clone();
        s.bus_call(c, "GetNameOwner", vec![Value::str(&me)]);
        s.bus_call(c, "ListQueuedOwners", vec![Value::str(BUS)]);
        s.bus_call(c, "ListQueuedOwners", vec![Value::str(&me)]);
        let peer = Some("org.freedesktop.DBus.Peer");
        s.send(c, RawMessage::call(Some(BUS), "/", peer, "Ping"), |_| {});
        s.send(
            c,
            RawMessage::call(Some(BUS), "/", peer, "GetMachineId"),
            |_| {},
        );
        s.send(
            c,
            RawMessage::call(Some(BUS), BUS_PATH, None, "GetId"),
            |_| {},
        );
        s.bus_call_sorted(c, "ListActivatableNames", vec![]);
        s.drain(c);
    }

    pub(super) fn name_lifecycle_with_observer(s: &mut Session) {
        let obs = s.connect();
        s.bus_call(obs, "AddMatch", vec![Value::str("type='signal'")]);
        let a = s.connect();
        let b = s.connect();
        let c = s.connect();
        s.drain(obs);
        s.bus_call(a, "RequestName", vec![Value::str(N), Value::U32(0)]);
        s.bus_call(b, "RequestName", vec![Value::str(N), Value::U32(0)]);
        s.bus_call(c, "RequestName", vec![Value::str(N), Value::U32(4)]);
        s.bus_call(c, "ListQueuedOwners", vec![Value::str(N)]);
        s.drain(obs);
        s.bus_call(a, "ReleaseName", vec![Value::str(N)]);
        s.drain(b);
        s.drain(obs);
        s.bus_call(b, "RequestName", vec![Value::str(N), Value::U32(1)]);
        s.bus_call(c, "RequestName", vec![Value::str(N), Value::U32(2)]);
        s.drain(b);
        s.drain(obs);
        s.bus_call(c, "ListQueuedOwners", vec![Value::str(N)]);
        s.bus_call(
            c,
            "RequestName",
            vec![Value::str("com.example.Second"), Value::U32(0)],
        );
        s.disconnect(c);
        s.drain(b);
        s.drain(obs);
        s.bus_call(b, "GetNameOwner", vec![Value::str(N)]);
        s.bus_call(b, "ReleaseName", vec![Value::str(N)]);
        s.bus_call(b, "ReleaseName", vec![Value::str(N)]);
        s.bus_call(b, "GetNameOwner", vec![Value::str(N)]);
        s.bus_call(b, "ListQueuedOwners", vec![Value::str(N)]);
        s.drain(obs);
        s.drain(a);
    }

    pub(super) fn request_name_flag_matrix(s: &mut Session) {
        let owner = s.connect();
        let other = s.connect();
        for first in 0..8u32 {
            for second in 0..8u32 {
                let name = format!("com.example.M{first}x{second}");
                s.bus_call(
                    owner,
                    "RequestName",
                    vec![Value::str(&name), Value::U32(first)],
                );
                s.bus_call(
                    other,
                    "RequestName",
                    vec![Value::str(&name), Value::U32(second)],
                );
                s.bus_call(other, "ListQueuedOwners", vec![Value::str(&name)]);
                s.bus_call(
                    owner,
                    "RequestName",
                    vec![Value::str(&name), Value::U32(second)],
                );
                s.bus_call(owner, "ListQueuedOwners", vec![Value::str(&name)]);
            }
        }
        s.drain(owner);
        s.drain(other);
    }

    pub(super) fn name_argument_errors(s: &mut Session) {
        let c = s.connect();
        let me = s.clients[c].unique_name.clone();
        let long = format!("a.{}", "b".repeat(254));
        let names = [
            ":1.9999",
            &me,
            BUS,
            "",
            "nodots",
            "a..b",
            "com.1digit",
            ".a.b",
            "a.b.",
            "a.b/c",
            &long,
            "a.b-c",
            "_a._b",
        ];
        for name in names {
            s.bus_call(c, "RequestName", vec![Value::str(name), Value::U32(0)]);
            s.bus_call(c, "ReleaseName", vec![Value::str(name)]);
            s.bus_call(c, "GetNameOwner", vec![Value::str(name)]);
            s.bus_call(c, "NameHasOwner", vec![Value::str(name)]);
            s.bus_call(c, "ListQueuedOwners", vec![Value::str(name)]);
            s.bus_call(
                c,
                "StartServiceByName",
                vec![Value::str(name), Value::U32(0)],
            );
        }
        s.drain(c);
    }

    pub(super) fn match_rule_errors(s: &mut Session) {
        let c = s.connect();
        let rules = [
            "",
            "type='signal'",
            "type='foo'",
            "foo='bar'",
            "arg63='x'",
            "arg64='x'",
            "path='notapath'",
            "path='/a/'",
            "sender=''",
            "type='signal",
            "eavesdrop='true'",
            "eavesdrop='maybe'",
            "arg0namespace='a..b'",
            "arg0namespace='a'",
            "interface='a'",
            "member='1a'",
            "type='signal',type='signal'",
            "path='/a',path_namespace='/a'",
            "path_namespace='/'",
            "arg0path='/a/'",
            "type=signal",
            "type = 'signal'",
            "arg0='it'\\''s'",
            "arg3='x',arg3path='/a'",
            "arg0='a',arg0namespace='a.b'",
        ];
        for rule in rules {
            s.bus_call(c, "AddMatch", vec![Value::str(rule)]);
            s.bus_call(c, "RemoveMatch", vec![Value::str(rule)]);
            s.bus_call(c, "RemoveMatch", vec![Value::str(rule)]);
        }
        s.bus_call(c, "AddMatch", vec![Value::U32(3)]);
        s.bus_call(c, "RemoveMatch", vec![]);
        s.drain(c);
    }

    pub(super) fn driver_errors(s: &mut Session) {
        let c = s.connect();
        let calls: Vec<(&str, Option<&str>, &str, Vec<Value>)> = vec![
            (BUS_PATH, Some(BUS), "Frobnicate", vec![]),
            (BUS_PATH, None, "Frobnicate", vec![]),
            (BUS_PATH, Some("com.example.Nope"), "GetId", vec![]),
            (BUS_PATH, Some(BUS), "GetId", vec![Value::U32(1)]),
            (BUS_PATH, Some(BUS), "RequestName", vec![Value::str("a.b")]),
            (
                BUS_PATH,
                Some(BUS),
                "RequestName",
                vec![Value::U32(1), Value::str("a.b")],
            ),
            (BUS_PATH, Some(BUS), "Hello", vec![]),
            (BUS_PATH, Some(BUS), "ListNames", vec![Value::Bool(true)]),
            (
                BUS_PATH,
                Some(BUS),
                "UpdateActivationEnvironment",
                vec![Value::str("X")],
            ),
            (
                BUS_PATH,
                Some(BUS),
                "GetConnectionUnixUser",
                vec![Value::str(":1.9999")],
            ),
            (
                BUS_PATH,
                Some(BUS),
                "GetConnectionCredentials",
                vec![Value::str("a.b")],
            ),
            (
                BUS_PATH,
                Some(BUS),
                "GetAdtAuditSessionData",
                vec![Value::str(BUS)],
            ),
            (
                "/",
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                vec![Value::U32(1)],
            ),
            (
                "/",
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
                vec![Value::U32(1)],
            ),
            ("/x", Some(BUS), "GetNameOwner", vec![Value::str(BUS)]),
        ];
        for (path, iface, member, args) in calls {
            s.send(
                c,
                RawMessage::call(Some(BUS), path, iface, member).args(args),
                |_| {},
            );
        }
        s.drain(c);
    }

    pub(super) fn properties_and_introspection(s: &mut Session) {
        let c = s.connect();
        let props = Some("org.freedesktop.DBus.Properties");
        let calls: Vec<(&str, &str, Vec<Value>)> = vec![
            (
                BUS_PATH,
                "Get",
                vec![Value::str(BUS), Value::str("Features")],
            ),
            (
                BUS_PATH,
                "Get",
                vec![Value::str(BUS), Value::str("Interfaces")],
            ),
            (BUS_PATH, "Get", vec![Value::str(BUS), Value::str("Bogus")]),
            (
                BUS_PATH,
                "Get",
                vec![Value::str("a.b"), Value::str("Features")],
            ),
            (BUS_PATH, "Get", vec![Value::str(BUS)]),
            (BUS_PATH, "GetAll", vec![Value::str(BUS)]),
            (BUS_PATH, "GetAll", vec![Value::str("a.b")]),
            (
                BUS_PATH,
                "Set",
                vec![
                    Value::str(BUS),
                    Value::str("Features"),
                    Value::variant(Value::U32(1)),
                ],
            ),
            ("/", "Get", vec![Value::str(BUS), Value::str("Features")]),
        ];
        for (path, member, args) in calls {
            s.send(
                c,
                RawMessage::call(Some(BUS), path, props, member).args(args),
                |_| {},
            );
        }
        // Introspection is compared as data, not text: interfaces and their members.
        for path in ["/", BUS_PATH] {
            let msg = RawMessage::call(
                Some(BUS),
                path,
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
            );
            let reply = s.clients[c].call(msg);
            let xml = reply.ok()[0].as_str().unwrap_or_default().to_owned();
            let mut outline: Vec<String> = xml
                .lines()
                .map(str::trim)
                .filter(|l| {
                    [
                        "<interface ",
                        "<method ",
                        "<signal ",
                        "<property ",
                        "<node name",
                    ]
                    .iter()
                    .any(|p| l.starts_with(p))
                })
                .map(str::to_owned)
                .collect();
            outline.sort();
            for line in outline {
                s.note(format!("introspect {path}: {line}"));
            }
        }
    }

    pub(super) fn credentials(s: &mut Session) {
        let c = s.connect();
        let me = s.clients[c].unique_name.clone();
        s.bus_call(c, "RequestName", vec![Value::str(N), Value::U32(0)]);
        for name in [me.as_str(), N, BUS] {
            s.bus_call(c, "GetConnectionUnixUser", vec![Value::str(name)]);
            s.bus_call(c, "GetConnectionUnixProcessID", vec![Value::str(name)]);
        }
        // ProcessFD is newer than dbus-daemon 1.14; it is not compared.
        let drop_process_fd = |v: &mut Value| {
            if let Value::Array(_, items) = v {
                items.retain(
                    |e| !matches!(e, Value::Entry(k, _) if k.as_str() == Some("ProcessFD")),
                );
            }
        };
        for name in [me.as_str(), N] {
            let msg = RawMessage::bus_call("GetConnectionCredentials", vec![Value::str(name)]);
            s.send(c, msg, drop_process_fd);
        }
        s.drain(c);
    }

    pub(super) fn routing_errors(s: &mut Session) {
        let a = s.connect();
        let b = s.connect();
        let bn = s.clients[b].unique_name.clone();
        let call = |dest: &str| RawMessage::call(Some(dest), "/p", Some("com.example.I"), "M");
        s.send(a, call("com.example.Missing"), |_| {});
        s.send(a, call("com.example.Missing").flags(NO_AUTO_START), |_| {});
        s.send(a, call(":1.9999"), |_| {});
        s.send(
            a,
            RawMessage::signal("/p", "com.example.I", "S").destination(":1.9999"),
            |_| {},
        );
        s.send(
            a,
            RawMessage::signal("/p", "com.example.I", "S").destination("a.b"),
            |_| {},
        );
        s.send(a, call(&bn).flags(NO_REPLY_EXPECTED), |_| {});
        s.drain(b);
        s.send(
            a,
            RawMessage::signal("/p", "com.example.I", "S").destination(&bn),
            |_| {},
        );
        s.drain(b);
        s.drain(a);
    }

    pub(super) fn no_reply_on_disconnect(s: &mut Session) {
        let a = s.connect();
        let b = s.connect();
        let bn = s.clients[b].unique_name.clone();
        let serial = s.clients[a].send(&RawMessage::call(
            Some(&bn),
            "/p",
            Some("com.example.I"),
            "M",
        ));
        s.clients[b].wait_for(|m| m.mtype == METHOD_CALL);
        s.disconnect(b);
        let reply = s.clients[a].wait_reply(serial);
        let described = s.describe_reply(&reply, |_| {});
        s.note(format!("c{a} pending call -> {described}"));
        s.drain(a);
    }

    pub(super) fn before_hello(s: &mut Session) {
        let mut c = s.bus.raw_unauthenticated();
        c.authenticate(true);
        for member in ["GetId", "ListNames", "Hello"] {
            let serial = c.next_serial();
            let msg = RawMessage::bus_call(member, vec![]).encode(serial);
            if c.try_write_all(&msg).is_err() {
                s.note(format!("unregistered {member}: the connection is closed"));
                return;
            }
            let reply = loop {
                match c.recv_timeout(DEADLINE) {
                    Recv::Msg(m) if m.reply_serial == Some(serial) => break Some(m),
                    Recv::Msg(m) => {
                        let got = s.describe_received(&m);
                        s.note(format!("unregistered <= {got}"));
                    }
                    Recv::Closed => break None,
                    Recv::Timeout => panic!("no answer to {member} before Hello"),
                }
            };
            let Some(reply) = reply else {
                s.note(format!(
                    "unregistered {member}: the bus closed the connection"
                ));
                return;
            };
            if let Some(name) = reply.str_arg(0).filter(|n| n.starts_with(':')) {
                s.labels.push((name.to_owned(), "<new>".into()));
            }
            let described = s.describe_reply(&reply, |_| {});
            s.note(format!("unregistered {member} -> {described}"));
        }
        let next = c.recv();
        let described = s.describe_received(&next);
        s.note(format!("then {described}"));
    }

    pub(super) fn broadcast_delivery(s: &mut Session) {
        let e = s.connect();
        let rules = [
            "type='signal'",
            "member='Sig'",
            "path_namespace='/com/example'",
            "arg0namespace='com.example'",
            "arg1path='/aa/bb/'",
            "arg0='x',arg1='aa'",
            "interface='com.example.J'",
        ];
        let mut receivers = Vec::new();
        for rule in rules {
            let r = s.connect();
            s.bus_call(r, "AddMatch", vec![Value::str(rule)]);
            receivers.push(r);
        }
        let sig = |path: &str, iface: &str, member: &str, args: Vec<Value>| {
            RawMessage::signal(path, iface, member).args(args)
        };
        let str = Value::str;
        let signals = [
            sig(
                "/com/example",
                "com.example.I",
                "Sig",
                vec![str("com.example")],
            ),
            sig(
                "/com/example/x",
                "com.example.I",
                "Sig",
                vec![str("com.example.F"), str("/aa/")],
            ),
            sig(
                "/com/examplex",
                "com.example.I",
                "Other",
                vec![str("x"), str("aa")],
            ),
            sig("/", "com.example.J", "Sig", vec![Value::U32(1)]),
        ];
        for m in signals {
            s.send(e, m, |_| {});
        }
        for r in receivers {
            s.drain(r);
        }
    }

    pub(super) fn zbus_client(s: &mut Session) {
        let z = s.bus.zbus();
        let me = z.unique_name().map(ToString::to_string).unwrap_or_default();
        s.labels.push((me, "<z0>".into()));
        let c = s.connect();
        let results: Vec<String> = run({
            let z = z.clone();
            async move {
                let mut out = Vec::new();
                let proxy = match zbus::fdo::DBusProxy::new(&z).await {
                    Ok(p) => p,
                    Err(e) => return vec![format!("proxy: {e}")],
                };
                let flags = zbus::fdo::RequestNameFlags::DO_NOT_QUEUE;
                let name = zbus::names::WellKnownName::from_static_str_unchecked(N);
                out.push(format!(
                    "request: {:?}",
                    proxy.request_name(name.clone(), flags).await
                ));
                out.push(format!(
                    "again: {:?}",
                    proxy.request_name(name.clone(), flags).await
                ));
                let owners = proxy.list_queued_owners(name.clone()).await;
                out.push(format!("queued: {:?}", owners.map(|v| v.len())));
                out.push(format!(
                    "has owner: {:?}",
                    proxy.name_has_owner(name.clone().into()).await
                ));
                out.push(format!(
                    "release: {:?}",
                    proxy.release_name(name.clone()).await
                ));
                out.push(format!(
                    "release again: {:?}",
                    proxy.release_name(name).await
                ));
                let bad = proxy
                    .get_name_owner(zbus::names::BusName::try_from("a.b").unwrap())
                    .await;
                out.push(format!(
                    "owner of a.b: {:?}",
                    bad.map_err(|e| zbus::DBusError::name(&e).to_string())
                ));
                out
            }
        });
        for line in results {
            s.note(format!("z0 {line}"));
        }
        s.bus_call(c, "GetNameOwner", vec![Value::str(N)]);
        s.drain(c);
    }
}
