//! Start-up and shutdown: from parsed options to a running bus and back.
//!
//! [`run`] raises the fd limit, picks the configuration, creates the GUID and reads the machine
//! id, blocks the handled signals, listens on every configured address (failing as a whole if
//! any address cannot be listened on), prints the address when asked, and runs the event loop
//! until SIGTERM or SIGINT. Returning drops the listeners, which removes their socket files.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use rustix::process::{Resource, getrlimit, setrlimit};
use tram_bus::{Bus, BusConfig};

use crate::cli::{BusKind, Options, PrintTarget};
use crate::config::Config;
use crate::event_loop::EventLoop;
use crate::ids::{self, MachineIdSource};
use crate::listener::{ListenError, Listener};
use crate::log;
use crate::sasl::SaslServer;
use crate::signals::Signals;

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug)]
pub(crate) enum DaemonError {
    /// `--print-address=FD` names a descriptor that is not open.
    BadPrintFd(i32, io::Error),
    /// An address could not be listened on.
    Listen(ListenError),
    /// A system call failed at start-up or in the loop.
    Io(&'static str, io::Error),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::BadPrintFd(fd, e) => {
                write!(f, "cannot print the address to file descriptor {fd}: {e}")
            }
            DaemonError::Listen(e) => e.fmt(f),
            DaemonError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

/// Runs the bus described by `options` until it is told to stop.
///
/// # Errors
/// Any failure to start; a failure of the event loop itself.
pub(crate) fn run(options: Options) -> Result<(), DaemonError> {
    // Claim the descriptor first, so nothing opened below can take its number.
    let print_to = match options.print_address {
        Some(PrintTarget::Fd(fd)) => Some(Output::Fd(claim_fd(fd)?)),
        Some(PrintTarget::Stdout) => Some(Output::Stdout),
        None => None,
    };
    raise_fd_limit();
    let mut config = match options.bus {
        BusKind::Session => Config::session(),
    };
    if let Some(address) = options.address {
        config.listen = vec![address];
    }
    let guid = ids::random_guid().map_err(|e| DaemonError::Io("cannot create the bus GUID", e))?;
    let (machine_id, source) =
        ids::machine_id().map_err(|e| DaemonError::Io("cannot create a machine id", e))?;
    if source == MachineIdSource::Generated {
        log::warning!(
            "no machine id in {}; using {machine_id} for this run",
            ids::MACHINE_ID_PATHS.join(" or ")
        );
    }
    let signals = Signals::new().map_err(|e| DaemonError::Io("cannot set up signals", e))?;
    let listeners = config
        .listen
        .iter()
        .map(|address| Listener::bind(address))
        .collect::<Result<Vec<_>, _>>()
        .map_err(DaemonError::Listen)?;
    let address = listeners
        .iter()
        .map(|l| format!("{},guid={guid}", l.address()))
        .collect::<Vec<_>>()
        .join(";");
    let sasl = SaslServer::new(&guid, &config.offered_mechanisms());
    let bus = Bus::new(BusConfig {
        guid,
        machine_id,
        bus_type: config.bus_type.clone(),
        bus_uid: rustix::process::getuid().as_raw(),
        bus_pid: rustix::process::getpid()
            .as_raw_nonzero()
            .get()
            .unsigned_abs(),
        policy: tram_bus::policy::Policy::session(),
        systemd_activation: false,
        limits: tram_bus::Limits::session(),
    });
    let mut event_loop = EventLoop::new(bus, listeners, signals, sasl, config.limits.clone())
        .map_err(|e| DaemonError::Io("cannot set up the event loop", e))?;
    if let Some(output) = print_to {
        output.print(&address)?;
    }
    log::debug!("{} bus listening on {address}", config.bus_type);
    event_loop
        .run()
        .map_err(|e| DaemonError::Io("event loop failed", e))?;
    Ok(())
}

/// Where `--print-address` goes.
enum Output {
    Stdout,
    Fd(OwnedFd),
}

impl Output {
    /// Writes the address and a newline; a descriptor other than stdout is closed after.
    fn print(self, address: &str) -> Result<(), DaemonError> {
        let line = format!("{address}\n");
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| DaemonError::Io("cannot print the address", e))
            }
            Output::Fd(fd) => {
                let mut file = std::fs::File::from(fd);
                file.write_all(line.as_bytes())
                    .map_err(|e| DaemonError::Io("cannot print the address", e))
            }
        }
    }
}

/// Takes ownership of an inherited descriptor, after checking it is open.
fn claim_fd(fd: i32) -> Result<OwnedFd, DaemonError> {
    if fd == 0 || fd == 2 {
        return Err(DaemonError::BadPrintFd(
            fd,
            io::Error::new(io::ErrorKind::InvalidInput, "not an output for the address"),
        ));
    }
    // SAFETY: F_GETFD only queries the descriptor's flags; any integer is acceptable.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(DaemonError::BadPrintFd(fd, io::Error::last_os_error()));
    }
    // SAFETY: `fd` is open (checked above) and was handed to us on the command line for this
    // one use; nothing else in the process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Raises the soft limit on open files to the hard limit, as dbus-daemon does.
fn raise_fd_limit() {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if let Err(e) = setrlimit(Resource::Nofile, raised) {
        log::warning!("cannot raise the open file limit: {}", io::Error::from(e));
    }
}
