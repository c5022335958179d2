//! `qoscntrlr reexec`: replacing the running controller's image with the binary now at
//! its path, keeping the pid, the server (still our child), every open socket and file,
//! and the whole supervision state. Owns the handoff: its versioned format, the
//! descriptors that cross the `execve` (and only those lose close-on-exec), the check of
//! the new binary before anything is given up (`reexec-check`, a hidden subcommand), the
//! `execve` itself, and reading the handoff back in the new image. What the state *is*
//! belongs to the core (serde on its types) and the runtime (the shell's few fields).
//!
//! The descriptor numbers and the server's pid travel in the environment variable
//! [`HANDOFF_ENV`] (`state=5,lock=3,…,server=1234`), the state itself as JSON in a
//! memfd named there. If the JSON cannot be read after the exec, the variable alone is
//! enough to keep the sockets and adopt the server with fresh timers.
//!
//! Versions: [`STATE_VERSION`] names the format; a build reads
//! [`OLDEST_STATE_VERSION`]..=[`STATE_VERSION`]. A field added to the state takes
//! `#[serde(default)]`, so the previous version's state still reads (fields a build does
//! not know are ignored); a change that an older state cannot be read into raises
//! [`STATE_VERSION`]. Either way the new binary's check reads the running
//! controller's actual state first, so a state it cannot read is refused while the old
//! image still runs.
//!
//! Instants: the core's deadlines are written as offsets from an anchor taken at the
//! handoff together with a `CLOCK_MONOTONIC` reading; the new image rebuilds the anchor
//! from its own reading of the same clock (which runs on across `execve`), so every timer
//! keeps its remaining time, including the time the exec itself took.

use std::ffi::{CString, OsString};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The version of the handoff format this build writes.
pub const STATE_VERSION: u32 = 1;
/// The oldest handoff format this build reads.
pub const OLDEST_STATE_VERSION: u32 = 1;
/// Set for the new image only, and removed from the environment first thing.
pub const HANDOFF_ENV: &str = "QOSCNTRLR_REEXEC";
/// How long the new binary's check may take.
pub const CHECK_LIMIT: Duration = Duration::from_secs(10);
/// At most this much of what the check printed is read.
const CHECK_OUTPUT_LIMIT: u64 = 64 * 1024;
/// The check prints this followed by its version on success.
const CHECK_OK_PREFIX: &str = "qoscntrlr reexec-check: ok, version ";

#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    #[error("cannot tell the controller's own binary: {0}")]
    ExePath(std::io::Error),
    #[error("cannot write the handoff: {0}")]
    Memfd(std::io::Error),
    #[error("descriptor {fd}: cannot change close-on-exec: {source}")]
    Cloexec { fd: RawFd, source: std::io::Error },
    #[error("execve {}: {source}", .path.display())]
    Exec {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{HANDOFF_ENV}: {0}")]
    Env(String),
}

/// The descriptors (and the server pid) named in [`HANDOFF_ENV`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// The memfd with the JSON state.
    pub state: Option<RawFd>,
    pub lock: Option<RawFd>,
    /// The open `.out`.
    pub log: Option<RawFd>,
    pub pipe: Option<RawFd>,
    pub control: Option<RawFd>,
    pub readiness: Option<RawFd>,
    pub agent: Option<RawFd>,
    pub metrics: Option<RawFd>,
    /// The read end of the server's console pipe.
    pub console: Option<RawFd>,
    /// The operator's `reexec` connection, answered by the new image.
    pub reply: Option<RawFd>,
    pub server: Option<i32>,
}

impl Carried {
    fn fields(&self) -> [(&'static str, Option<i32>); 11] {
        [
            ("state", self.state),
            ("lock", self.lock),
            ("log", self.log),
            ("pipe", self.pipe),
            ("control", self.control),
            ("readiness", self.readiness),
            ("agent", self.agent),
            ("metrics", self.metrics),
            ("console", self.console),
            ("reply", self.reply),
            ("server", self.server),
        ]
    }

    /// Every descriptor, without the server pid.
    pub fn fds(&self) -> Vec<RawFd> {
        self.fields()
            .into_iter()
            .filter(|(name, _)| *name != "server")
            .filter_map(|(_, fd)| fd)
            .collect()
    }

    pub fn to_env(&self) -> String {
        self.fields()
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| format!("{name}={v}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn from_env(text: &str) -> Result<Carried, String> {
        let mut carried = Carried::default();
        for item in text.split(',').filter(|i| !i.is_empty()) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not name=number"))?;
            let value: i32 = value
                .parse()
                .map_err(|_| format!("'{item}': {value} is not a number"))?;
            if value < 0 {
                return Err(format!("'{item}': negative"));
            }
            let slot = match name {
                "state" => &mut carried.state,
                "lock" => &mut carried.lock,
                "log" => &mut carried.log,
                "pipe" => &mut carried.pipe,
                "control" => &mut carried.control,
                "readiness" => &mut carried.readiness,
                "agent" => &mut carried.agent,
                "metrics" => &mut carried.metrics,
                "console" => &mut carried.console,
                "reply" => &mut carried.reply,
                "server" => &mut carried.server,
                // A newer image may carry more: not ours to use.
                _ => continue,
            };
            *slot = Some(value);
        }
        Ok(carried)
    }
}

/// The JSON state in the memfd. `core` and `shell` are kept as JSON values so that the
/// head (version, clock reading) can be read even when one of them cannot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handoff {
    pub version: u32,
    /// The version of the image that wrote it.
    pub from_version: String,
    /// `CLOCK_MONOTONIC` in nanoseconds when the instants' anchor was taken.
    pub monotonic_ns: u64,
    pub shell: serde_json::Value,
    pub core: serde_json::Value,
}

/// Whether this build reads handoff format `version`.
pub fn understands(version: u32) -> bool {
    (OLDEST_STATE_VERSION..=STATE_VERSION).contains(&version)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (what `Instant` is made of on Linux, and it
/// keeps running across `execve`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// An anchor instant and the monotonic reading of the same moment.
pub fn anchor_now() -> (Instant, u64) {
    (Instant::now(), monotonic_ns())
}

/// This process's `Instant` for the moment the monotonic clock read `then_ns`.
pub fn anchor_for(then_ns: u64) -> Instant {
    let now = Instant::now();
    let elapsed = Duration::from_nanos(monotonic_ns().saturating_sub(then_ns));
    now.checked_sub(elapsed).unwrap_or(now)
}

/// The binary now at the controller's path: `/proc/self/exe` names the file this image
/// was loaded from, with ` (deleted)` once a package upgrade replaced it by a new inode —
/// the path is what counts, not the old inode.
pub fn exe_path() -> Result<PathBuf, ReexecError> {
    let link = std::fs::read_link("/proc/self/exe").map_err(ReexecError::ExePath)?;
    let bytes = link.as_os_str().as_bytes();
    let bytes = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
    Ok(PathBuf::from(OsString::from_vec(bytes.to_vec())))
}

/// The state in an anonymous memory file (close-on-exec until [`set_inherited`]).
pub fn write_memfd(bytes: &[u8]) -> Result<OwnedFd, ReexecError> {
    let name = c"qoscntrlr-reexec";
    // SAFETY: a valid C string; the returned descriptor is owned below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(ReexecError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: just created, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(ReexecError::Memfd)?;
    file.seek(SeekFrom::Start(0)).map_err(ReexecError::Memfd)?;
    Ok(OwnedFd::from(file))
}

/// Clear (`inherit`) or set close-on-exec on each of `fds`. Only the carried
/// descriptors are ever cleared, so nothing else leaks into the new image.
pub fn set_inherited(fds: &[RawFd], inherit: bool) -> Result<(), ReexecError> {
    for &fd in fds {
        let flag = if inherit { 0 } else { libc::FD_CLOEXEC };
        // SAFETY: F_SETFD on a descriptor number; a bad number is reported as EBADF.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flag) } != 0 {
            return Err(ReexecError::Cloexec {
                fd,
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// Replace this image with `exe`, same arguments, the environment plus [`HANDOFF_ENV`].
/// Returns only on failure.
pub fn exec(exe: &Path, carried: &Carried) -> ReexecError {
    let fail = |source: std::io::Error| ReexecError::Exec {
        path: exe.to_path_buf(),
        source,
    };
    let nul = || {
        fail(std::io::Error::other(
            "a NUL byte in an argument or variable",
        ))
    };
    let Ok(path) = CString::new(exe.as_os_str().as_bytes()) else {
        return nul();
    };
    let mut argv = Vec::new();
    for arg in std::env::args_os() {
        match CString::new(arg.into_vec()) {
            Ok(arg) => argv.push(arg),
            Err(_) => return nul(),
        }
    }
    let mut envp = Vec::new();
    for (key, value) in std::env::vars_os() {
        if key == HANDOFF_ENV {
            continue;
        }
        let mut pair = key.into_vec();
        pair.push(b'=');
        pair.extend(value.into_vec());
        match CString::new(pair) {
            Ok(pair) => envp.push(pair),
            Err(_) => return nul(),
        }
    }
    match CString::new(format!("{HANDOFF_ENV}={}", carried.to_env())) {
        Ok(pair) => envp.push(pair),
        Err(_) => return nul(),
    }
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of pointers to C strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    fail(std::io::Error::last_os_error())
}

/// What the new image found in its environment.
#[derive(Debug)]
pub struct Inherited {
    pub carried: Carried,
    /// The state, or why it cannot be used (the fallback then adopts the server).
    pub handoff: Result<Handoff, String>,
}

/// Called first thing by `run`: `None` for an ordinary start. Removes [`HANDOFF_ENV`]
/// from the environment (nothing started later may see it). Must run before any thread
/// is started (it changes the environment).
pub fn take_from_env() -> Option<Result<Inherited, ReexecError>> {
    let value = std::env::var_os(HANDOFF_ENV)?;
    std::env::remove_var(HANDOFF_ENV);
    let carried = match value
        .to_str()
        .ok_or_else(|| "not UTF-8".to_string())
        .and_then(Carried::from_env)
    {
        Ok(carried) => carried,
        Err(e) => return Some(Err(ReexecError::Env(e))),
    };
    let handoff = match carried.state {
        // SAFETY: the old image passed this descriptor for us alone; it is read once.
        Some(fd) => read_handoff(unsafe { OwnedFd::from_raw_fd(fd) }),
        None => Err("no state descriptor".to_string()),
    };
    // The state descriptor is consumed (closed) either way.
    let mut carried = carried;
    carried.state = None;
    Some(Ok(Inherited { carried, handoff }))
}

fn read_handoff(fd: OwnedFd) -> Result<Handoff, String> {
    let mut file = std::fs::File::from(fd);
    let mut text = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    file.read_to_end(&mut text).map_err(|e| e.to_string())?;
    parse_handoff(&text)
}

/// The handoff in `bytes`, if this build reads its version.
pub fn parse_handoff(bytes: &[u8]) -> Result<Handoff, String> {
    #[derive(Deserialize)]
    struct Head {
        version: u32,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| format!("not a handoff: {e}"))?;
    if !understands(head.version) {
        return Err(format!(
            "state version {} is not understood by version {} (it reads {OLDEST_STATE_VERSION} to {STATE_VERSION})",
            head.version,
            env!("CARGO_PKG_VERSION")
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("malformed handoff: {e}"))
}

/// Take a carried descriptor (`None` stays `None`); the caller owns it from now on.
pub fn own(fd: Option<RawFd>) -> Option<OwnedFd> {
    // SAFETY: each carried number is taken exactly once, by the one user of it.
    fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Answer the operator's `reexec` connection from the new image: one response line,
/// then close. Blocking with a short limit; the answer is small.
pub fn answer(connection: OwnedFd, response: &crate::control::ControlResponse) {
    let stream = std::os::unix::net::UnixStream::from(connection);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    if let Ok(mut line) = serde_json::to_vec(response) {
        line.push(b'\n');
        let mut stream = stream;
        let _ = stream.write_all(&line);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A duplicate (close-on-exec) of a connection's descriptor, kept to answer it later.
pub fn dup_connection(fd: &impl AsRawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a live descriptor; the result is owned below.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: a fresh descriptor nobody else owns.
    (dup >= 0).then(|| unsafe { OwnedFd::from_raw_fd(dup) })
}

/// How the check of the new binary ended: its version, or the reason it failed.
pub type CheckOutcome = Result<String, String>;

/// Run `<exe> reexec-check` on `state` with the controller's configuration, at most
/// [`CHECK_LIMIT`]. Nothing touches the disk (a read-only or full data directory does
/// not stop an upgrade): the state is a memfd the check opens as
/// `/proc/<controller>/fd/<n>`, and what it prints goes to another memfd.
pub async fn check_new_binary(
    reaper: &crate::process::Reaper,
    exe: &Path,
    config_path: &Path,
    state: &[u8],
) -> CheckOutcome {
    let state = write_memfd(state).map_err(|e| e.to_string())?;
    let state_path = format!("/proc/{}/fd/{}", std::process::id(), state.as_raw_fd());
    let output = std::fs::File::from(write_memfd(b"").map_err(|e| e.to_string())?);
    let clone = |f: &std::fs::File| {
        f.try_clone()
            .map_err(|e| format!("cannot capture the check's output: {e}"))
    };
    let (out, err) = (clone(&output)?, clone(&output)?);
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("reexec-check")
        .arg("--state-version")
        .arg(STATE_VERSION.to_string())
        .arg("--state-file")
        .arg(&state_path)
        .arg("-c")
        .arg(config_path)
        .stdout(out)
        .stderr(err);
    crate::sdnotify::scrub_env(&mut cmd);
    let outcome = crate::process::run_helper(reaper, cmd, CHECK_LIMIT).await;
    drop(state);
    let mut printed = String::new();
    let mut output = output;
    if output.seek(SeekFrom::Start(0)).is_ok() {
        let mut bytes = Vec::new();
        let _ = (&mut output)
            .take(CHECK_OUTPUT_LIMIT)
            .read_to_end(&mut bytes);
        printed = String::from_utf8_lossy(&bytes).into_owned();
    }
    let printed_summary = || {
        let lines: Vec<&str> = printed
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = &lines[lines.len().saturating_sub(5)..];
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join(" / "))
        }
    };
    match outcome {
        Err(e) => Err(format!("the new binary {} cannot be started: {e}", exe.display())),
        Ok(outcome) => match outcome.exit {
            None => Err(format!(
                "the new binary {} did not finish its check within {} s",
                exe.display(),
                CHECK_LIMIT.as_secs()
            )),
            Some(exit) if exit.success() => printed
                .lines()
                .find_map(|l| l.trim().strip_prefix(CHECK_OK_PREFIX))
                .map(|v| v.trim().to_string())
                .ok_or_else(|| {
                    format!(
                        "the new binary {} does not support reexec (its check printed no version{})",
                        exe.display(),
                        printed_summary()
                    )
                }),
            Some(exit) => Err(format!(
                "the new binary {} failed its check ({exit}){}",
                exe.display(),
                printed_summary()
            )),
        },
    }
}

/// `qoscntrlr reexec-check`: run by the old image on the new binary. Succeeds (exit 0,
/// printing its version) when this build reads the configuration, understands
/// `state_version` and, given `state_file`, can read that state in full.
pub fn check_main(state_version: u32, state_file: Option<&Path>, config_path: &Path) -> u8 {
    use crate::exitcode::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
    if let Err(failure) = crate::config::load(config_path) {
        for error in &failure.errors {
            eprintln!("error: {error}");
        }
        eprintln!("qoscntrlr reexec-check: {failure}");
        return EXIT_CONFIG;
    }
    if !understands(state_version) {
        eprintln!(
            "qoscntrlr reexec-check: state version {state_version} is not understood by version {} (it reads {OLDEST_STATE_VERSION} to {STATE_VERSION})",
            env!("CARGO_PKG_VERSION")
        );
        return EXIT_FAILURE;
    }
    if let Some(path) = state_file {
        let checked = std::fs::read(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|bytes| parse_handoff(&bytes))
            .and_then(|handoff| {
                if handoff.version != state_version {
                    return Err(format!(
                        "the state is version {}, not {state_version}",
                        handoff.version
                    ));
                }
                crate::runtime::check_handoff(&handoff)
            });
        if let Err(e) = checked {
            eprintln!("qoscntrlr reexec-check: cannot read the running controller's state: {e}");
            return EXIT_FAILURE;
        }
    }
    println!("{CHECK_OK_PREFIX}{}", env!("CARGO_PKG_VERSION"));
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_numbers_round_trip_through_the_variable() {
        let carried = Carried {
            state: Some(9),
            lock: Some(3),
            log: Some(4),
            pipe: Some(5),
            control: None,
            readiness: Some(7),
            agent: None,
            metrics: Some(11),
            console: Some(12),
            reply: None,
            server: Some(4242),
        };
        let text = carried.to_env();
        assert_eq!(
            text,
            "state=9,lock=3,log=4,pipe=5,readiness=7,metrics=11,console=12,server=4242"
        );
        assert_eq!(Carried::from_env(&text).unwrap(), carried);
        assert_eq!(carried.fds(), vec![9, 3, 4, 5, 7, 11, 12]);
        // A newer image's extra names are skipped, garbage is an error.
        assert_eq!(Carried::from_env("lock=3,future=8").unwrap().lock, Some(3));
        assert!(Carried::from_env("lock=x").is_err());
        assert!(Carried::from_env("lock").is_err());
        assert!(Carried::from_env("lock=-1").is_err());
    }

    #[test]
    fn a_version_this_build_does_not_read_is_refused_by_the_head() {
        let future = format!(
            r#"{{"version":{},"from_version":"9","monotonic_ns":1,"shell":{{}},"core":{{}},"new":1}}"#,
            STATE_VERSION + 1
        );
        let err = parse_handoff(future.as_bytes()).unwrap_err();
        assert!(err.contains("is not understood"), "{err}");
        let ok = format!(
            r#"{{"version":{STATE_VERSION},"from_version":"0","monotonic_ns":1,"shell":{{}},"core":{{}}}}"#
        );
        assert!(parse_handoff(ok.as_bytes()).is_ok());
        assert!(parse_handoff(b"garbage").is_err());
    }

    #[test]
    fn the_anchor_accounts_for_time_spent_since_the_reading() {
        let then = monotonic_ns();
        std::thread::sleep(Duration::from_millis(20));
        let anchor = anchor_for(then);
        let age = anchor.elapsed();
        assert!(age >= Duration::from_millis(20), "{age:?}");
        assert!(age < Duration::from_secs(5), "{age:?}");
    }

    #[test]
    fn memfd_and_close_on_exec() {
        let fd = write_memfd(b"{\"a\":1}").unwrap();
        let raw = fd.as_raw_fd();
        let flags = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags(raw) & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        set_inherited(&[raw], true).unwrap();
        assert_eq!(flags(raw) & libc::FD_CLOEXEC, 0);
        set_inherited(&[raw], false).unwrap();
        assert_eq!(flags(raw) & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text).unwrap();
        assert_eq!(text, "{\"a\":1}");
        assert!(set_inherited(&[987_654], true).is_err());
    }

    #[test]
    fn the_exe_path_is_this_test_binary() {
        let path = exe_path().unwrap();
        assert_eq!(path, std::env::current_exe().unwrap());
    }
}
