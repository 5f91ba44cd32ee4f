//! A small D-Bus service on a raw connection, run on its own thread, for tests whose callers are
//! other clients (command-line tools, python, zbus).
//!
//! It answers, on any path and interface (`com.example.Test` by convention):
//! * `Echo(…)` — returns its arguments unchanged, fds included;
//! * `Fail(s)` — the error `com.example.Error.Failed` with the given message;
//! * `WhoAmI()` — the SENDER the bus stamped on the call;
//! * `ReadFd(h)` — reads the fd to its end and returns the text;
//! * `Ignore()` — never answers;
//! * anything else — `org.freedesktop.DBus.Error.UnknownMethod`.
//!
//! Replies are only sent when the call expects one. Every call is recorded.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::raw::{METHOD_CALL, NO_REPLY_EXPECTED, RawClient, RawMessage, Recv};
use super::{TestBus, Value};

/// The error `Fail` answers with.
pub const FAILED: &str = "com.example.Error.Failed";

/// One call the service received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// MEMBER.
    pub member: String,
    /// Header flags.
    pub flags: u8,
    /// SENDER as stamped by the bus.
    pub sender: String,
    /// The body.
    pub body: Vec<Value>,
    /// How many fds came with it.
    pub fds: usize,
}

/// A running service; stopped (its connection closed) on drop.
pub struct Service {
    /// The service connection's unique name.
    pub unique_name: String,
    sock: UnixStream,
    calls: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    /// Connects to `bus` (with fd passing), takes `name` if given, and starts serving.
    ///
    /// # Panics
    /// The name cannot be taken.
    pub fn spawn(bus: &TestBus, name: Option<&str>) -> Service {
        let mut client = bus.raw();
        if let Some(name) = name {
            assert_eq!(
                client.request_name(name, 4),
                1,
                "the service could not own {name}"
            );
        }
        let sock = client
            .socket()
            .try_clone()
            .expect("cloning the service socket");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let unique_name = client.unique_name.clone();
        let record = Arc::clone(&calls);
        let thread = thread::spawn(move || serve(client, &record));
        Service {
            unique_name,
            sock,
            calls,
            thread: Some(thread),
        }
    }

    /// The calls received so far.
    pub fn calls(&self) -> Vec<Seen> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut c: RawClient, calls: &Mutex<Vec<Seen>>) {
    loop {
        let mut call = match c.recv_timeout(Duration::from_secs(120)) {
            Recv::Msg(m) if m.mtype == METHOD_CALL => *m,
            Recv::Msg(_) => continue,
            Recv::Timeout | Recv::Closed => return,
        };
        let member = call.member.clone().unwrap_or_default();
        calls.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
            member: member.clone(),
            flags: call.flags,
            sender: call.sender.clone().unwrap_or_default(),
            body: call.body.clone(),
            fds: call.fds.len(),
        });
        if call.flags & NO_REPLY_EXPECTED != 0 {
            continue;
        }
        let reply = match member.as_str() {
            "Echo" => {
                let reply = RawMessage::reply_to(&call, None).args(call.body.clone());
                if call.fds.is_empty() {
                    c.send(&reply);
                } else {
                    let n = u32::try_from(call.fds.len()).unwrap_or(u32::MAX);
                    let fds: Vec<_> = call.fds.iter().map(AsFd::as_fd).collect();
                    c.send_with_fds(&reply.unix_fds(n), &fds);
                }
                continue;
            }
            "Fail" => {
                let text = call.str_arg(0).unwrap_or("failed").to_owned();
                RawMessage::reply_to(&call, Some(FAILED)).args(vec![Value::Str(text)])
            }
            "WhoAmI" => RawMessage::reply_to(&call, None)
                .args(vec![Value::Str(call.sender.clone().unwrap_or_default())]),
            "ReadFd" => match call.fds.pop() {
                Some(fd) => {
                    let mut text = String::new();
                    let _ = std::fs::File::from(fd).read_to_string(&mut text);
                    RawMessage::reply_to(&call, None).args(vec![Value::Str(text)])
                }
                None => RawMessage::reply_to(&call, Some(FAILED))
                    .args(vec![Value::str("no fd arrived")]),
            },
            "Ignore" => continue,
            _ => RawMessage::reply_to(&call, Some("org.freedesktop.DBus.Error.UnknownMethod"))
                .args(vec![Value::Str(format!("no method {member}"))]),
        };
        c.send(&reply);
    }
}
