//! Service directories: `<servicedir>` and the two standard sets, in search order.

use std::path::{Path, PathBuf};

/// The data directory dbus-daemon was built with (`${datadir}`), searched after the XDG ones.
const DATADIR: &str = "/usr/share";

/// One entry of the configuration's service directory list, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceDirSpec {
    /// `<servicedir>`, made absolute against the configuration file's directory.
    Dir(PathBuf),
    /// `<standard_session_servicedirs/>`.
    StandardSession,
    /// `<standard_system_servicedirs/>`.
    StandardSystem,
}

/// A directory to search for `.service` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDir {
    /// The directory.
    pub path: PathBuf,
    /// Only `NAME.service` files provide `NAME` here (`$XDG_RUNTIME_DIR/dbus-1/services`).
    pub strict_naming: bool,
    /// Whether to watch the directory for changes (all but `$XDG_RUNTIME_DIR/dbus-1/services`,
    /// whose writers call `ReloadConfig`).
    pub watch: bool,
}

/// The XDG base directories the standard session service directories are made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XdgDirs {
    /// `$XDG_RUNTIME_DIR`.
    pub runtime_dir: Option<PathBuf>,
    /// `$XDG_DATA_HOME`, else `$HOME/.local/share`.
    pub data_home: Option<PathBuf>,
    /// `$XDG_DATA_DIRS`, else `/usr/local/share` and `/usr/share`.
    pub data_dirs: Vec<PathBuf>,
}

impl XdgDirs {
    /// Reads the XDG variables (and `HOME`) of this process. As the XDG Base Directory
    /// specification asks, relative paths are ignored.
    pub fn from_env() -> XdgDirs {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let absolute = |p: PathBuf| p.is_absolute().then_some(p);
        let data_dirs = match std::env::var_os("XDG_DATA_DIRS").filter(|v| !v.is_empty()) {
            Some(dirs) => std::env::split_paths(&dirs).filter_map(absolute).collect(),
            None => vec!["/usr/local/share".into(), "/usr/share".into()],
        };
        XdgDirs {
            runtime_dir: var("XDG_RUNTIME_DIR").and_then(absolute),
            data_home: var("XDG_DATA_HOME").and_then(absolute).or_else(|| {
                var("HOME")
                    .and_then(absolute)
                    .map(|h| h.join(".local/share"))
            }),
            data_dirs,
        }
    }
}

/// Expands the configured list into directories in search order (the first directory that
/// provides a name wins). A directory listed twice is searched once, at its first place.
pub(crate) fn expand(specs: &[ServiceDirSpec], xdg: &XdgDirs) -> Vec<ServiceDir> {
    let mut out: Vec<ServiceDir> = Vec::new();
    let mut push = |path: PathBuf, strict_naming: bool, watch: bool| {
        if !out.iter().any(|d| d.path == path) {
            out.push(ServiceDir {
                path,
                strict_naming,
                watch,
            });
        }
    };
    for spec in specs {
        match spec {
            ServiceDirSpec::Dir(p) => push(p.clone(), false, true),
            ServiceDirSpec::StandardSession => {
                if let Some(run) = &xdg.runtime_dir {
                    push(run.join("dbus-1/services"), true, false);
                }
                if let Some(home) = &xdg.data_home {
                    push(home.join("dbus-1/services"), false, true);
                }
                for dir in &xdg.data_dirs {
                    push(dir.join("dbus-1/services"), false, true);
                }
                push(Path::new(DATADIR).join("dbus-1/services"), false, true);
            }
            ServiceDirSpec::StandardSystem => {
                for dir in ["/usr/local/share", "/usr/share", DATADIR, "/lib"] {
                    push(Path::new(dir).join("dbus-1/system-services"), false, true);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dirs: &[ServiceDir]) -> Vec<&str> {
        dirs.iter().filter_map(|d| d.path.to_str()).collect()
    }

    #[test]
    fn standard_session() {
        let xdg = XdgDirs {
            runtime_dir: Some("/run/user/1000".into()),
            data_home: Some("/home/u/.local/share".into()),
            data_dirs: vec!["/opt/share".into(), "/usr/share".into()],
        };
        let dirs = expand(
            &[
                ServiceDirSpec::Dir("/etc/extra".into()),
                ServiceDirSpec::StandardSession,
                ServiceDirSpec::Dir("/opt/share/dbus-1/services".into()),
            ],
            &xdg,
        );
        assert_eq!(
            paths(&dirs),
            [
                "/etc/extra",
                "/run/user/1000/dbus-1/services",
                "/home/u/.local/share/dbus-1/services",
                "/opt/share/dbus-1/services",
                "/usr/share/dbus-1/services",
            ]
        );
        assert!(dirs[1].strict_naming && !dirs[1].watch);
        assert!(dirs.iter().filter(|d| d.strict_naming).count() == 1);
        let bare = expand(&[ServiceDirSpec::StandardSession], &XdgDirs::default());
        assert_eq!(paths(&bare), ["/usr/share/dbus-1/services"]);
    }

    #[test]
    fn standard_system() {
        let dirs = expand(&[ServiceDirSpec::StandardSystem], &XdgDirs::default());
        assert_eq!(
            paths(&dirs),
            [
                "/usr/local/share/dbus-1/system-services",
                "/usr/share/dbus-1/system-services",
                "/lib/dbus-1/system-services",
            ]
        );
    }
}
