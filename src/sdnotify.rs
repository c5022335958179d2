//! systemd's notify protocol (`sd_notify(3)`) without libsystemd: owns the
//! `NOTIFY_SOCKET` datagram socket (paths and abstract `@names`), the watchdog settings
//! (`WATCHDOG_USEC`, `WATCHDOG_PID`) and keeping those variables away from the server and
//! helper processes the controller starts.
//!
//! Under `Type=notify` the unit waits for [`SdNotify::ready`]; with `WatchdogSec=` set,
//! the supervision loop calls [`SdNotify::watchdog`] every [`SdNotify::watchdog_interval`]
//! so that a wedged loop gets the controller restarted by systemd.

use std::ffi::OsStr;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// Variables systemd hands to the service that must not leak into its children: a server
/// that inherited `NOTIFY_SOCKET` could send `READY=1`/`STOPPING=1` on the controller's
/// behalf, and `LISTEN_*` describe descriptors that are not the child's.
pub const INHERITED_VARIABLES: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Longest `WATCHDOG_USEC` taken as it is (3650 days, the bound of every duration).
const MAX_WATCHDOG: Duration = Duration::from_secs(3650 * 24 * 3600);

/// What can go wrong talking to systemd.
#[derive(Debug, thiserror::Error)]
pub enum SdNotifyError {
    #[error("NOTIFY_SOCKET={0:?} is not a socket path or @abstract name")]
    UnsupportedAddress(String),
    #[error("NOTIFY_SOCKET={address}: {source}")]
    Address {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot create a datagram socket for sd_notify: {0}")]
    Socket(std::io::Error),
    #[error("sd_notify to {address} failed: {source}")]
    Send {
        address: String,
        source: std::io::Error,
    },
    #[error("sd_notify state {0:?} contains a NUL byte")]
    Nul(String),
}

/// A connection to the service manager's notify socket.
#[derive(Debug)]
pub struct SdNotify {
    /// As given in `NOTIFY_SOCKET`, for error messages.
    address: String,
    target: SocketAddr,
    socket: UnixDatagram,
    /// `WATCHDOG_USEC`, when it is meant for this process.
    watchdog: Option<Duration>,
}

impl SdNotify {
    /// From this process's environment; `Ok(None)` when not started by systemd with a
    /// notify socket, an error saying why when a set `NOTIFY_SOCKET` is unusable (the
    /// caller logs it once).
    pub fn try_from_env() -> Result<Option<SdNotify>, SdNotifyError> {
        SdNotify::from_vars(
            std::env::var_os("NOTIFY_SOCKET").as_deref(),
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// From explicit values of `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` and the
    /// pid of this process (tests use it without touching the environment).
    ///
    /// A missing or empty `NOTIFY_SOCKET` is `Ok(None)`. The watchdog counts only when
    /// `WATCHDOG_USEC` is a positive number and `WATCHDOG_PID` is unset or equals `my_pid`
    /// (the variables may have been inherited from a parent they were meant for).
    pub fn from_vars(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        my_pid: u32,
    ) -> Result<Option<SdNotify>, SdNotifyError> {
        let Some(address) = notify_socket.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let address_text = address.to_string_lossy().into_owned();
        let target = socket_addr(address, &address_text)?;
        let socket = UnixDatagram::unbound().map_err(SdNotifyError::Socket)?;
        let pid_matches = match watchdog_pid.and_then(OsStr::to_str) {
            None => true,
            Some(pid) => pid.trim().parse::<u32>() == Ok(my_pid),
        };
        let watchdog = watchdog_usec
            .and_then(OsStr::to_str)
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && pid_matches)
            // Bounded like every other duration from outside: a huge value must not
            // reach the timer's arithmetic (the loop's heartbeat timer adds it to now).
            .map(|usec| Duration::from_micros(usec).min(MAX_WATCHDOG));
        Ok(Some(SdNotify {
            address: address_text,
            target,
            socket,
            watchdog,
        }))
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` systemd requires beside it: the controller
    /// is replacing its image (`qoscntrlr reexec`); `READY=1` follows from the new one.
    pub fn reloading(&self, monotonic_usec: u64) -> Result<(), SdNotifyError> {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}"))
    }

    /// `READY=1`: the controller is up (its loop runs); systemd finishes starting the unit.
    pub fn ready(&self) -> Result<(), SdNotifyError> {
        self.notify("READY=1")
    }

    /// `STATUS=…`: one line shown by `systemctl status`. Line breaks become spaces (a
    /// newline would start another assignment).
    pub fn status(&self, text: &str) -> Result<(), SdNotifyError> {
        let line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.notify(&format!("STATUS={line}"))
    }

    /// `STOPPING=1`: the controller is shutting down (on SIGTERM, before stopping the server).
    pub fn stopping(&self) -> Result<(), SdNotifyError> {
        self.notify("STOPPING=1")
    }

    /// `WATCHDOG=1`: the supervision loop is alive.
    pub fn watchdog(&self) -> Result<(), SdNotifyError> {
        self.notify("WATCHDOG=1")
    }

    /// How often to call [`SdNotify::watchdog`]: half of `WATCHDOG_USEC`, as systemd
    /// recommends; `None` when no watchdog is set for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// The address from `NOTIFY_SOCKET`, as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends one datagram of newline-separated `KEY=VALUE` assignments as it is.
    pub fn notify(&self, state: &str) -> Result<(), SdNotifyError> {
        if state.contains('\0') {
            return Err(SdNotifyError::Nul(state.to_string()));
        }
        self.socket
            .send_to_addr(state.as_bytes(), &self.target)
            .map(|_| ())
            .map_err(|source| SdNotifyError::Send {
                address: self.address.clone(),
                source,
            })
    }
}

/// `/path` or `@abstract` (systemd's spelling of a leading NUL byte).
fn socket_addr(address: &OsStr, text: &str) -> Result<SocketAddr, SdNotifyError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = address.as_bytes();
    let wrap = |source| SdNotifyError::Address {
        address: text.to_string(),
        source,
    };
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(PathBuf::from(address)).map_err(wrap),
        Some(b'@') => abstract_addr(&bytes[1..]).map_err(wrap),
        _ => Err(SdNotifyError::UnsupportedAddress(text.to_string())),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// Removes the variables systemd gave the controller ([`INHERITED_VARIABLES`]) from a
/// child's environment. For a `tokio::process::Command`, pass `cmd.as_std_mut()`.
pub fn scrub_env(cmd: &mut std::process::Command) {
    for name in INHERITED_VARIABLES {
        cmd.env_remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_means_no_notifier() {
        assert!(SdNotify::from_vars(None, None, None, 1).unwrap().is_none());
        assert!(SdNotify::from_vars(Some(OsStr::new("")), None, None, 1)
            .unwrap()
            .is_none());
    }

    #[test]
    fn relative_or_foreign_addresses_are_refused_with_the_value() {
        let err = SdNotify::from_vars(Some(OsStr::new("vsock:2:1234")), None, None, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vsock:2:1234"), "{err}");
    }

    #[test]
    fn watchdog_is_half_of_usec_only_for_our_pid() {
        let sock = Some(OsStr::new("/run/systemd/notify"));
        let usec = Some(OsStr::new("30000000"));
        let ours = SdNotify::from_vars(sock, usec, Some(OsStr::new("42")), 42)
            .unwrap()
            .unwrap();
        assert_eq!(ours.watchdog_interval(), Some(Duration::from_secs(15)));
        let unset_pid = SdNotify::from_vars(sock, usec, None, 42).unwrap().unwrap();
        assert_eq!(unset_pid.watchdog_interval(), Some(Duration::from_secs(15)));
        let theirs = SdNotify::from_vars(sock, usec, Some(OsStr::new("41")), 42)
            .unwrap()
            .unwrap();
        assert_eq!(theirs.watchdog_interval(), None);
        for bad in ["0", "", "abc", "-5"] {
            let n = SdNotify::from_vars(sock, Some(OsStr::new(bad)), None, 42)
                .unwrap()
                .unwrap();
            assert_eq!(n.watchdog_interval(), None, "WATCHDOG_USEC={bad:?}");
        }
    }
}
