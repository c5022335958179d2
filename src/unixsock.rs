//! The one way the controller binds and connects to its Unix sockets (the message pipe
//! `QOS_PIPE` and the control socket `QOS_CONTROL_SOCKET`), so the two cannot drift
//! apart again.
//!
//! Binding ([`bind`]): a socket file left by a controller that died is replaced; a live
//! one (something accepts, or is too busy to answer within [`STALE_PROBE_LIMIT`]) or any
//! other kind of file at the path is left alone and reported. The mode is set right after
//! `bind` (until then the process umask applies, which for a service is 022 or stricter;
//! both sockets also check peer credentials or trust only what they are sent), and with
//! `QOS_CONTROL_GROUP` the socket is given to that group.
//!
//! The group ([`resolve_group`]) is a group name or a numeric gid: a name is looked up
//! first (a group may be called `1000`), a number with no group entry is still a valid
//! gid — as `SERVER_GROUP` takes it.
//!
//! Connecting ([`connect`], for the command-line clients) is bounded: a controller that
//! is wedged (stopped, swapping) with its listen backlog full would otherwise block
//! `connect(2)` forever.

use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

/// How long `bind` waits on a connect to tell a live socket from a stale one.
pub const STALE_PROBE_LIMIT: Duration = Duration::from_secs(1);

/// Why a socket could not be bound; the owners (`pipe`, `control`) turn it into their
/// own error with their own words.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another process is already listening on {}", .0.display())]
    InUse(PathBuf),
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("cannot inspect {}: {source}", .path.display())]
    Inspect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove the stale socket {}: {source}", .path.display())]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {}: {source}", .path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set mode {mode:04o} on {}: {source}", .path.display())]
    Mode {
        path: PathBuf,
        mode: u32,
        source: std::io::Error,
    },
    #[error("cannot give {} to group {group}: {source}", .path.display())]
    Chown {
        path: PathBuf,
        /// The group as configured (name or number).
        group: String,
        source: nix::Error,
    },
}

/// A resolved `QOS_CONTROL_GROUP`: as configured, and its gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// Why a group could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("no group named '{0}'")]
    Unknown(String),
    #[error("cannot look up group '{name}': {source}")]
    Lookup { name: String, source: nix::Error },
}

/// The gid of `group`: a group name, or else a numeric gid.
pub fn resolve_group(group: &str) -> Result<Group, GroupError> {
    let numeric = group.trim().parse::<u32>().ok();
    let gid = match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => numeric.ok_or_else(|| GroupError::Unknown(group.to_string())),
        // The group database failed (NSS, LDAP); a number needs no lookup.
        Err(source) => numeric.ok_or_else(|| GroupError::Lookup {
            name: group.to_string(),
            source,
        }),
    }?;
    Ok(Group {
        name: group.to_string(),
        gid,
    })
}

/// Listen on `path` (see the module doc): mode `mode`, and `group` when given.
/// Needs a tokio runtime.
pub async fn bind(
    path: &Path,
    mode: u32,
    group: Option<&Group>,
) -> Result<UnixListener, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if socket_is_live(path).await {
                return Err(BindError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(|source| BindError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(_) => return Err(BindError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BindError::Inspect {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| BindError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        BindError::Mode {
            path: path.to_path_buf(),
            mode,
            source,
        }
    })?;
    if let Some(group) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(group.gid))).map_err(
            |source| BindError::Chown {
                path: path.to_path_buf(),
                group: group.name.clone(),
                source,
            },
        )?;
    }
    Ok(listener)
}

/// A socket is live when something accepts (or is too busy to refuse) a connect.
async fn socket_is_live(path: &Path) -> bool {
    match tokio::time::timeout(STALE_PROBE_LIMIT, UnixStream::connect(path)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.kind() != std::io::ErrorKind::ConnectionRefused,
        // A listener whose backlog is full does not answer: it is alive.
        Err(_) => true,
    }
}

/// Connect to the stream socket at `path` (blocking), waiting at most `limit` for a
/// place in its backlog; a wait that runs out is an `ErrorKind::WouldBlock` error.
/// `NotFound`, `ConnectionRefused` and `PermissionDenied` come back as they are.
pub fn connect(path: &Path, limit: Duration) -> std::io::Result<std::os::unix::net::UnixStream> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // A blocking connect(2) on a Unix stream socket waits for room in the listener's
    // backlog for at most the socket's send timeout (SO_SNDTIMEO), then fails with
    // EAGAIN. Zero would mean "forever": at least a millisecond.
    let wait = limit.max(Duration::from_millis(1));
    let timeout = nix::sys::time::TimeVal::new(
        wait.as_secs().min(i64::MAX as u64) as nix::libc::time_t,
        wait.subsec_micros() as nix::libc::suseconds_t,
    );
    socket::setsockopt(&fd, sockopt::SendTimeout, &timeout)?;
    let addr = UnixAddr::new(path)?;
    loop {
        match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    // SAFETY: `fd` is a connected stream socket we own; ownership moves to the stream.
    Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd.into_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::time::Instant;

    #[test]
    fn numeric_gids_and_names_resolve() {
        assert_eq!(resolve_group("root").unwrap().gid, 0);
        assert_eq!(resolve_group("0").unwrap().gid, 0);
        // A gid with no group entry is still a gid.
        assert_eq!(resolve_group("54321").unwrap().gid, 54321);
        let err = resolve_group("no-such-group-qos").unwrap_err();
        assert_eq!(err.to_string(), "no group named 'no-such-group-qos'");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn bind_sets_mode_and_numeric_group_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // Root may give the socket any gid; anyone else one of their own groups.
        let gid = if nix::unistd::geteuid().is_root() {
            54321
        } else {
            nix::unistd::getegid().as_raw()
        };
        let group = resolve_group(&gid.to_string()).unwrap();
        runtime().block_on(async {
            let listener = bind(&path, 0o660, Some(&group)).await.unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.mode() & 0o777, 0o660);
            assert_eq!(meta.gid(), gid);
            // Live: refused, left in place.
            let err = bind(&path, 0o600, None).await.unwrap_err();
            assert!(matches!(err, BindError::InUse(_)), "{err}");
            drop(listener);
            // Stale (nobody listens): replaced.
            let _listener = bind(&path, 0o600, None).await.unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
            // Not a socket: left alone.
            let file = dir.path().join("file");
            std::fs::write(&file, "x").unwrap();
            let err = bind(&file, 0o600, None).await.unwrap_err();
            assert!(err.to_string().contains("is not a socket"), "{err}");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
        });
    }

    /// A listener that never accepts, with a backlog of one connection, taken.
    fn full_listener(path: &Path) -> (std::os::fd::OwnedFd, std::os::unix::net::UnixStream) {
        use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &UnixAddr::new(path).unwrap(),
        )
        .unwrap();
        socket::listen(&fd, Backlog::new(0).unwrap()).unwrap();
        // Fill the backlog: with a backlog of 0 the kernel queues one connection.
        let mut first = None;
        for _ in 0..4 {
            match connect(path, Duration::from_millis(100)) {
                Ok(stream) => first = Some(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        (fd, first.expect("one connection is queued"))
    }

    #[test]
    fn connect_to_a_listener_that_never_accepts_gives_up_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wedged.sock");
        let (_listener, _queued) = full_listener(&path);
        let started = Instant::now();
        let err = connect(&path, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "bounded, not forever"
        );
        // No socket file: NotFound, at once.
        let err = connect(&dir.path().join("none"), Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
