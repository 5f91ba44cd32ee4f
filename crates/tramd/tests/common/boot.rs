//! Helpers for activation and start-up tests: services the bus can start, a stand-in for the
//! service manager's notification socket, and processes that wrap the bus.
//!
//! [`SERVICE_PY`] is a D-Bus service written against the socket directly (Python's standard
//! library only, no D-Bus binding), so it runs wherever `/usr/bin/python3` does and as any user:
//! it connects to `DBUS_STARTER_ADDRESS`, says Hello, and then either owns a name and answers
//! calls (`serve NAME`) or idles until the bus goes away (`idle`). Either way it exits when the
//! bus closes its connection, so no service outlives its test.
//!
//! [`NotifySocket`] is the datagram socket systemd passes in `NOTIFY_SOCKET`; [`Spawned`] runs a
//! program (the bus, or a wrapper such as `systemd-socket-activate`) with its output collected,
//! killed on drop.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::raw::DEADLINE;
use super::{Piped, lock, spawn_piped};

/// The service script; see the module documentation. Calls it answers with one string:
/// `Env(s key)` → that variable of its environment (empty when unset), `Uid()` → its uid,
/// anything else → `pong`.
pub const SERVICE_PY: &str = r#"
import os, socket, struct, sys

def unescape(value):
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == '%':
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out += value[i].encode()
            i += 1
    return bytes(out)

def socket_path(address):
    for entry in address.split(';'):
        kind, _, rest = entry.partition(':')
        if kind != 'unix':
            continue
        for pair in rest.split(','):
            key, _, value = pair.partition('=')
            if key == 'path':
                return unescape(value)
            if key == 'abstract':
                return b'\0' + unescape(value)
    sys.exit('no unix: entry in ' + address)

class Writer:
    def __init__(self):
        self.buf = bytearray()
    def pad(self, n):
        self.buf += b'\0' * (-len(self.buf) % n)
    def u32(self, v):
        self.pad(4)
        self.buf += struct.pack('<I', v)
    def string(self, s):
        b = s.encode()
        self.u32(len(b))
        self.buf += b + b'\0'
    def sig(self, s):
        b = s.encode()
        self.buf.append(len(b))
        self.buf += b + b'\0'

def message(mtype, serial, fields, sig, args):
    body = Writer()
    for t, v in zip(sig, args):
        if t == 's':
            body.string(v)
        else:
            body.u32(v)
    if sig:
        fields = fields + [(8, 'g', sig)]
    array = Writer()
    for code, t, v in fields:
        array.pad(8)
        array.buf.append(code)
        array.sig(t)
        if t in 'os':
            array.string(v)
        elif t == 'g':
            array.sig(v)
        else:
            array.u32(v)
    out = Writer()
    out.buf += struct.pack('<cBBBII', b'l', mtype, 0, 1, len(body.buf), serial)
    out.u32(len(array.buf))
    out.buf += array.buf
    out.pad(8)
    return bytes(out.buf + body.buf)

class Connection:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf, self.serial, self.pending = b'', 0, []
    def more(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            sys.exit(0)
        self.buf += chunk
    def line(self):
        while b'\r\n' not in self.buf:
            self.more()
        line, _, self.buf = self.buf.partition(b'\r\n')
        return line
    def read(self):
        if self.pending:
            return self.pending.pop(0)
        while len(self.buf) < 16:
            self.more()
        e = '<' if self.buf[0:1] == b'l' else '>'
        mtype, flags, _, body_len, serial, fields_len = struct.unpack(e + 'xBBBIII', self.buf[:16])
        header_len = 16 + fields_len + (-(16 + fields_len) % 8)
        while len(self.buf) < header_len + body_len:
            self.more()
        msg = self.buf[:header_len + body_len]
        self.buf = self.buf[header_len + body_len:]
        fields, pos = {}, 16
        while pos < 16 + fields_len:
            pos += -pos % 8
            code, n = msg[pos], msg[pos + 1]
            t = msg[pos + 2:pos + 2 + n].decode()
            pos += 3 + n
            if t in 'os':
                pos += -pos % 4
                (n,) = struct.unpack(e + 'I', msg[pos:pos + 4])
                value = msg[pos + 4:pos + 4 + n].decode()
                pos += 5 + n
            elif t == 'g':
                n = msg[pos]
                value = msg[pos + 1:pos + 1 + n].decode()
                pos += 2 + n
            elif t == 'u':
                pos += -pos % 4
                (value,) = struct.unpack(e + 'I', msg[pos:pos + 4])
                pos += 4
            else:
                sys.exit('unexpected header field type ' + t)
            fields[code] = value
        return mtype, flags, serial, fields, msg[header_len:], e
    def send(self, mtype, fields, sig='', args=()):
        self.serial += 1
        self.sock.sendall(message(mtype, self.serial, fields, sig, args))
        return self.serial
    def call_bus(self, member, sig='', args=()):
        bus = 'org.freedesktop.DBus'
        serial = self.send(1, [(1, 'o', '/org/freedesktop/DBus'), (6, 's', bus),
                               (2, 's', bus), (3, 's', member)], sig, args)
        # A call that waited for the service's name may come before the reply: keep it.
        kept = []
        while True:
            msg = self.read()
            mtype, _, _, fields, body, e = msg
            if fields.get(5) == serial:
                self.pending += kept
                if mtype == 3:
                    sys.exit('%s failed: %s' % (member, fields.get(4)))
                return body, e
            kept.append(msg)

def first_string(body, e):
    (n,) = struct.unpack(e + 'I', body[:4])
    return body[4:4 + n].decode()

mode = sys.argv[1]
bus = Connection(socket_path(os.environ['DBUS_STARTER_ADDRESS']))
bus.sock.sendall(b'\0AUTH EXTERNAL ' + str(os.geteuid()).encode().hex().encode() + b'\r\n')
if not bus.line().startswith(b'OK '):
    sys.exit('authentication failed')
bus.sock.sendall(b'BEGIN\r\n')
bus.call_bus('Hello')
if mode == 'idle':
    while True:
        bus.more()
name = sys.argv[2]
body, e = bus.call_bus('RequestName', 'su', (name, 4))
if struct.unpack(e + 'I', body[:4])[0] != 1:
    sys.exit('cannot own ' + name)
while True:
    mtype, flags, serial, fields, body, e = bus.read()
    if mtype != 1 or flags & 1:
        continue
    member = fields.get(3)
    if member == 'Env':
        answer = os.environ.get(first_string(body, e), '')
    elif member == 'Uid':
        answer = str(os.getuid())
    else:
        answer = 'pong'
    bus.send(2, [(5, 'u', serial), (6, 's', fields[7])], 's', (answer,))
"#;

/// Where [`SERVICE_PY`] is written in a bus's private directory.
pub const SERVICE_SCRIPT: &str = "service.py";

/// Debian's python (any python3 would do: the script needs the standard library only).
pub const PYTHON: &str = "/usr/bin/python3";

/// A `.service` file for `name` running `exec`.
pub fn service_file(name: &str, exec: &str) -> String {
    format!("[D-BUS Service]\nName={name}\nExec={exec}\n")
}

/// The `Exec` line of [`SERVICE_PY`] in `dir` serving `name`.
pub fn serve_exec(dir: &str, name: &str) -> String {
    format!("{PYTHON} {dir}/{SERVICE_SCRIPT} serve {name}")
}

/// The `Exec` line of [`SERVICE_PY`] in `dir` idling without taking a name.
pub fn idle_exec(dir: &str) -> String {
    format!("{PYTHON} {dir}/{SERVICE_SCRIPT} idle")
}

/// Waits until `ready` holds, checking every few milliseconds, for at most `within`.
pub fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The service manager's end of `NOTIFY_SOCKET`: a datagram socket in a fresh directory.
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds a socket at `dir/notify`.
    ///
    /// # Panics
    /// The socket cannot be bound.
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify");
        let socket =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        NotifySocket { socket, path }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram within `within`, or `None`.
    pub fn recv_within(&self, within: Duration) -> Option<String> {
        let timeout = within.max(Duration::from_millis(1));
        self.socket.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The next datagram that is not a `STATUS=` or `WATCHDOG=1` message, waiting up to the
    /// deadline.
    ///
    /// # Panics
    /// None arrives in time.
    pub fn next_state(&self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(message) = self.recv_within(left) else {
                panic!("no state notification within {DEADLINE:?}");
            };
            if !message.starts_with("STATUS=") && message != "WATCHDOG=1" {
                return message;
            }
        }
    }
}

/// A process with its standard output read line by line and its standard error collected;
/// killed on drop.
pub struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `command` with standard input from `/dev/null`.
    ///
    /// # Panics
    /// It cannot be started.
    pub fn start(mut command: Command) -> Spawned {
        let Piped {
            child,
            lines,
            stderr,
        } = spawn_piped(&mut command);
        Spawned {
            child,
            lines,
            stderr,
            status: None,
        }
    }

    /// The next line of standard output, waiting up to the deadline.
    pub fn next_line(&mut self) -> Option<String> {
        self.lines.recv_timeout(DEADLINE).ok()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let child = &mut self.child;
            wait_until(within, || matches!(child.try_wait(), Ok(Some(_))));
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
