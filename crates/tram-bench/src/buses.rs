//! Starting each bus fresh on a private socket, and reading its CPU time.

use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A bus implementation the harness knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BusKind {
    /// This project's bus.
    Tramd,
    /// The reference implementation.
    DbusDaemon,
}

impl BusKind {
    /// Every kind, tramd first.
    pub(crate) const ALL: &'static [BusKind] = &[BusKind::Tramd, BusKind::DbusDaemon];

    /// Its name on the command line and in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BusKind::Tramd => "tramd",
            BusKind::DbusDaemon => "dbus-daemon",
        }
    }

    /// Whether its binary is present.
    pub(crate) fn available(self) -> bool {
        self.binary().is_some()
    }

    fn binary(self) -> Option<PathBuf> {
        match self {
            BusKind::Tramd => {
                if let Some(p) = std::env::var_os("TRAMD") {
                    return Some(PathBuf::from(p));
                }
                let exe = std::env::current_exe().ok()?;
                let p = exe.parent()?.join("tramd");
                p.exists().then_some(p)
            }
            BusKind::DbusDaemon => find_in_path("dbus-daemon"),
        }
    }
}

/// A running bus, killed on drop.
pub(crate) struct RunningBus {
    child: Child,
    /// The address it printed.
    pub(crate) address: String,
    dir: PathBuf,
}

impl RunningBus {
    /// Starts `kind` on a fresh socket and waits for its address.
    pub(crate) fn start(kind: BusKind) -> io::Result<RunningBus> {
        let bin = kind
            .binary()
            .ok_or_else(|| io::Error::other("binary not found"))?;
        let dir =
            std::env::temp_dir().join(format!("tram-bench-{}-{}", std::process::id(), kind.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let address = format!("--address=unix:path={}/bus", dir.display());
        let mut child = Command::new(bin)
            .args(["--session", "--nofork", "--print-address=1", &address])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = child.kill();
            return Err(io::Error::other("the bus printed no address"));
        }
        Ok(RunningBus {
            child,
            address: line.trim().to_owned(),
            dir,
        })
    }

    /// Nanoseconds the bus process (all its threads) has spent on a CPU so far.
    pub(crate) fn cpu_ns(&self) -> u64 {
        let tasks = format!("/proc/{}/task", self.child.id());
        let Ok(dir) = std::fs::read_dir(tasks) else {
            return 0;
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
            .filter_map(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum()
    }
}

impl Drop for RunningBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.exists())
}
