//! The services the bus can start: the `.service` files of the configured directories.
//!
//! [`directories`] lists the directories of a configuration in search order, the standard sets
//! expanded (on the session bus from `XDG_DATA_HOME`, `XDG_DATA_DIRS` and `XDG_RUNTIME_DIR`).
//! On the system bus every directory has strict naming: only `NAME.service` provides `NAME`,
//! as the D-Bus specification requires there.
//!
//! [`read`] scans them and gives the bus one [`Service`] per name, the first directory that
//! provides a name winning. A file that cannot be used is logged as a warning naming its file
//! and line, and skipped; the other services are unaffected. The daemon reads them at start-up,
//! on reload and whenever a watched directory changes.

use tram_bus::Service;
use tram_config::service::{self, ServiceFile};
use tram_config::{ServiceDir, XdgDirs};

use crate::log;

/// The service directories of `config`, in search order.
pub(crate) fn directories(config: &tram_config::Config, xdg: &XdgDirs) -> Vec<ServiceDir> {
    let mut dirs = config.service_dirs(xdg);
    if config.bus_type.as_deref() == Some("system") {
        for dir in &mut dirs {
            dir.strict_naming = true;
        }
    }
    dirs
}

/// The services in `dirs`; problems are logged as warnings.
pub(crate) fn read(dirs: &[ServiceDir]) -> Vec<Service> {
    let (files, errors) = service::scan(dirs);
    for error in errors {
        log::warning!("ignoring a service file: {error}");
    }
    files.into_iter().map(to_bus).collect()
}

fn to_bus(file: ServiceFile) -> Service {
    Service {
        name: file.name,
        exec: file.exec,
        user: file.user,
        systemd_service: file.systemd_service,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use tram_config::{Loader, Selinux, UserTable};

    use super::*;
    use crate::test_util::TempDir;

    fn config(body: &str) -> tram_config::Config {
        let users = UserTable::parse("root:x:0:0::/root:/bin/sh\n", "root:x:0:\n");
        Loader::new(&users, Selinux::disabled())
            .load_str(
                &format!("<busconfig>{body}</busconfig>"),
                Path::new("/etc/bus.conf"),
            )
            .unwrap()
    }

    #[test]
    fn directories_in_order() {
        let xdg = XdgDirs {
            runtime_dir: Some("/run/user/7".into()),
            data_home: Some("/home/u/.local/share".into()),
            data_dirs: vec!["/opt/share".into()],
        };
        let session = config(
            "<type>session</type><servicedir>/srv/a</servicedir>\
             <standard_session_servicedirs/>",
        );
        let dirs: Vec<_> = directories(&session, &xdg)
            .into_iter()
            .map(|d| (d.path, d.strict_naming, d.watch))
            .collect();
        let want: Vec<(PathBuf, bool, bool)> = vec![
            ("/srv/a".into(), false, true),
            ("/run/user/7/dbus-1/services".into(), true, false),
            ("/home/u/.local/share/dbus-1/services".into(), false, true),
            ("/opt/share/dbus-1/services".into(), false, true),
            ("/usr/share/dbus-1/services".into(), false, true),
        ];
        assert_eq!(dirs, want);

        let system = config("<type>system</type><standard_system_servicedirs/>");
        let dirs = directories(&system, &xdg);
        assert!(!dirs.is_empty());
        assert!(dirs.iter().all(|d| d.strict_naming), "{dirs:?}");
    }

    #[test]
    fn reads_usable_files() {
        let tmp = TempDir::new("services-read");
        let write = |name: &str, text: &str| std::fs::write(tmp.0.join(name), text).unwrap();
        write(
            "org.example.A.service",
            "[D-BUS Service]\nName=org.example.A\nExec=/usr/bin/a --flag\nUser=nobody\n\
             SystemdService=a.service\n",
        );
        write(
            "broken.service",
            "[D-BUS Service]\nName=org.example.B\nExec=\\q\n",
        );
        write(
            "ignored.txt",
            "[D-BUS Service]\nName=org.example.C\nExec=/c\n",
        );
        let strict = |strict_naming| {
            vec![ServiceDir {
                path: tmp.0.clone(),
                strict_naming,
                watch: true,
            }]
        };
        let want = Service {
            name: "org.example.A".into(),
            exec: Some("/usr/bin/a --flag".into()),
            user: Some("nobody".into()),
            systemd_service: Some("a.service".into()),
        };
        assert_eq!(read(&strict(false)), std::slice::from_ref(&want));

        write(
            "misnamed.service",
            "[D-BUS Service]\nName=org.example.D\nExec=/d\n",
        );
        assert_eq!(read(&strict(false)).len(), 2);
        assert_eq!(read(&strict(true)), [want]);
    }
}
