//! The operator control socket (`QOS_CONTROL_SOCKET`, default
//! `DATA_DIRECTORY/qoscntrlr.ctl`): binding it safely, checking who is calling, turning
//! requests into [`ControlEvent`]s for the runtime, and the blocking client used by the
//! `status`/`start`/`quit`/… subcommands. It decides nothing: the runtime answers every
//! [`ControlRequest`] through its `reply` channel.
//!
//! # Protocol (version 1)
//!
//! A Unix stream socket; one request and one response per connection, each a single
//! JSON object on one line (`\n`-terminated, at most 64 KiB for a request).
//!
//! ```text
//! request:  {"v":1,"cmd":"status"|"start"|"quit"|"restart"|"kill"|"pause"|"resume"
//!                        |"clear-fault"|"diagnose"|"reexec"|"reload"|"failback",
//!                        "for_secs":N,"no_start":B}
//!           for_secs: pause only, optional; no_start: clear-fault only, optional
//! response: {"v":1,"ok":true|false,"message":"...","status":{...},"config_errors":[...]}
//!           status: the `status --json` snapshot (crate::status), present on "status"
//!           answers; config_errors: every error of a file `reload` rejected
//! ```
//!
//! `reexec` is answered by the re-executed image (over a duplicate of the connection that
//! crosses the `execve`), or by the running one when the check or the exec fails.
//!
//! An unknown `v` or `cmd`, or a line that is not such an object, is answered `ok:false`
//! with a message naming the problem. `for_secs` is bounded like `pause --for` on the
//! command line ([`MAX_PAUSE_SECS`], 3650 days): a larger value is refused here, so an
//! absurd number never reaches the clock arithmetic of the loop. A caller that is not root, not the controller's own
//! user and not in `QOS_CONTROL_GROUP` gets `{"v":1,"ok":false,"message":"permission
//! denied"}` and the runtime receives [`ControlEvent::Refused`] to log it.
//!
//! Capacity: at most [`MAX_CONNECTIONS`] connections at once from group members and
//! [`MAX_CONNECTIONS_TOTAL`] in all (root and the controller's own user get the extra
//! room); beyond that a caller is answered `busy` and closed at once, and every caller
//! has [`REQUEST_READ_TIMEOUT`] to send its request — idle connections cannot use up the
//! controller's descriptors. When accept itself fails for want of descriptors, the
//! spare reserve ([`crate::fdreserve`]) is given back to take the waiting connection off
//! the backlog.
//!
//! Access: the socket is mode 0600, or 0660 and group-owned by `QOS_CONTROL_GROUP`; peer
//! credentials (`SO_PEERCRED`) are checked on every connection as well, so a permissive
//! umask or a chmod by someone else opens nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::core::units::{format_duration, DurationStyle};
use crate::status::StatusSnapshot;
use crate::unixsock::{BindError, GroupError};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest response line the client accepts (a status snapshot is a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Longest `for_secs` a pause request may carry: the command line's bound (3650 days).
/// A larger value is refused here, before it reaches any clock arithmetic.
pub const MAX_PAUSE_SECS: u64 = crate::core::MAX_PAUSE.as_secs();
/// A connection must deliver its request line within this time.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The runtime must answer a request within this time.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections served at once from callers other than root and the controller's own
/// user (members of `QOS_CONTROL_GROUP`, who might be a server gone rogue): more are
/// answered "busy" and closed, so idle connections cannot use up the controller's
/// descriptors. Each one also has only [`REQUEST_READ_TIMEOUT`] to send its request.
pub const MAX_CONNECTIONS: usize = 16;
/// Connections served at once in all: root and the own user get room beyond
/// [`MAX_CONNECTIONS`], so an operator still gets in while group members crowd.
pub const MAX_CONNECTIONS_TOTAL: usize = 32;

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    Status,
    Start,
    Quit,
    Restart,
    Kill,
    Pause {
        for_duration: Option<Duration>,
    },
    Resume,
    /// `no_start`: clear the mark only, the server stays down.
    ClearFault {
        no_start: bool,
    },
    Diagnose,
    /// Replace the controller's image with the binary now at its path.
    Reexec,
    /// Re-read the configuration file now (as SIGHUP does) and answer what changed.
    Reload,
    Failback,
}

impl ControlCommand {
    /// The protocol word, also used in log lines.
    pub fn word(&self) -> &'static str {
        match self {
            ControlCommand::Status => "status",
            ControlCommand::Start => "start",
            ControlCommand::Quit => "quit",
            ControlCommand::Restart => "restart",
            ControlCommand::Kill => "kill",
            ControlCommand::Pause { .. } => "pause",
            ControlCommand::Resume => "resume",
            ControlCommand::ClearFault { .. } => "clear-fault",
            ControlCommand::Diagnose => "diagnose",
            ControlCommand::Reexec => "reexec",
            ControlCommand::Reload => "reload",
            ControlCommand::Failback => "failback",
        }
    }
}

impl ControlCommand {
    /// The core's command for this request; `None` for `status` and `reload`, which the
    /// shell answers itself (from a snapshot, by re-reading the file).
    pub fn to_core(&self) -> Option<crate::core::Command> {
        use crate::core::Command;
        Some(match self {
            ControlCommand::Status | ControlCommand::Reload => return None,
            ControlCommand::Start => Command::Start,
            ControlCommand::Quit => Command::Quit,
            ControlCommand::Restart => Command::Restart,
            ControlCommand::Kill => Command::Kill,
            ControlCommand::Pause { for_duration } => Command::Pause {
                duration: *for_duration,
            },
            ControlCommand::Resume => Command::Resume,
            ControlCommand::ClearFault { no_start } => Command::ClearFault {
                no_start: *no_start,
            },
            ControlCommand::Diagnose => Command::Diagnose,
            ControlCommand::Reexec => Command::Reexec,
            ControlCommand::Failback => Command::Failback,
        })
    }
}

/// One request on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRequest {
    pub v: u32,
    pub cmd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_secs: Option<u64>,
    /// `clear-fault` only: clear the mark, leave the server down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_start: bool,
}

impl WireRequest {
    pub fn from_command(command: &ControlCommand) -> WireRequest {
        let for_secs = match command {
            ControlCommand::Pause { for_duration } => for_duration.map(|d| d.as_secs().max(1)),
            _ => None,
        };
        WireRequest {
            v: PROTOCOL_VERSION,
            cmd: command.word().to_string(),
            for_secs,
            no_start: matches!(command, ControlCommand::ClearFault { no_start: true }),
        }
    }

    /// The command asked for, or the refusal message to send back.
    pub fn to_command(&self) -> Result<ControlCommand, String> {
        if self.v != PROTOCOL_VERSION {
            return Err(format!(
                "unsupported protocol version {} (this controller speaks {PROTOCOL_VERSION})",
                self.v
            ));
        }
        if self.for_secs.is_some() && self.cmd != "pause" {
            return Err(format!(
                "'for_secs' is only valid with 'pause', not '{}'",
                self.cmd
            ));
        }
        if self.no_start && self.cmd != "clear-fault" {
            return Err(format!(
                "'no_start' is only valid with 'clear-fault', not '{}'",
                self.cmd
            ));
        }
        Ok(match self.cmd.as_str() {
            "status" => ControlCommand::Status,
            "start" => ControlCommand::Start,
            "quit" => ControlCommand::Quit,
            "restart" => ControlCommand::Restart,
            "kill" => ControlCommand::Kill,
            "pause" => match self.for_secs {
                Some(0) => return Err("pause: 'for_secs' must be at least 1".to_string()),
                Some(secs) if secs > MAX_PAUSE_SECS => {
                    return Err(format!(
                        "pause: 'for_secs' {secs} is too long (at most {MAX_PAUSE_SECS}, \
                         which is {} days)",
                        MAX_PAUSE_SECS / 86_400
                    ))
                }
                secs => ControlCommand::Pause {
                    for_duration: secs.map(Duration::from_secs),
                },
            },
            "resume" => ControlCommand::Resume,
            "clear-fault" => ControlCommand::ClearFault {
                no_start: self.no_start,
            },
            "diagnose" => ControlCommand::Diagnose,
            "reexec" => ControlCommand::Reexec,
            "reload" => ControlCommand::Reload,
            "failback" => ControlCommand::Failback,
            other => {
                return Err(format!(
                    "unknown command '{other}' (expected status, start, quit, restart, kill, \
                     pause, resume, clear-fault, diagnose, reexec, reload or failback)"
                ))
            }
        })
    }
}

/// One response on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlResponse {
    pub v: u32,
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<StatusSnapshot>>,
    /// `reload` of a file with errors: every error (`FILE:LINE: KEY: ...`); the client
    /// exits 78 on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_errors: Vec<String>,
}

impl ControlResponse {
    pub fn ok(message: impl Into<String>) -> ControlResponse {
        ControlResponse {
            v: PROTOCOL_VERSION,
            ok: true,
            message: message.into(),
            status: None,
            config_errors: Vec::new(),
        }
    }

    pub fn refused(message: impl Into<String>) -> ControlResponse {
        ControlResponse {
            v: PROTOCOL_VERSION,
            ok: false,
            message: message.into(),
            status: None,
            config_errors: Vec::new(),
        }
    }

    /// A refused `reload`: the file has these errors.
    pub fn config_errors(message: impl Into<String>, errors: Vec<String>) -> ControlResponse {
        ControlResponse {
            config_errors: errors,
            ..ControlResponse::refused(message)
        }
    }

    pub fn status(snapshot: StatusSnapshot) -> ControlResponse {
        ControlResponse {
            v: PROTOCOL_VERSION,
            ok: true,
            message: format!("{} is {}", snapshot.server.name, snapshot.server.state),
            status: Some(Box::new(snapshot)),
            config_errors: Vec::new(),
        }
    }
}

/// A permitted request for the runtime to carry out and answer.
#[derive(Debug)]
pub struct ControlRequest {
    pub command: ControlCommand,
    /// The operator's uid, for the log line.
    pub uid: u32,
    pub pid: Option<i32>,
    pub reply: oneshot::Sender<ControlResponse>,
    /// `reexec` only: a duplicate of the connection, so that the re-executed image can
    /// give the answer (the old image's tasks end at the `execve`).
    pub connection: Option<std::os::fd::OwnedFd>,
}

/// What the control socket tells the runtime.
#[derive(Debug)]
pub enum ControlEvent {
    Request(ControlRequest),
    /// A caller without permission was turned away (log it).
    Refused {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: another controller is listening on it")]
    InUse { path: PathBuf },
    #[error("control socket {path}: exists and is not a socket; not removing it")]
    NotASocket { path: PathBuf },
    #[error("control socket {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("QOS_CONTROL_GROUP={name}: no such group")]
    UnknownGroup { name: String },
    #[error("QOS_CONTROL_GROUP={name}: cannot look it up: {source}")]
    GroupLookup { name: String, source: nix::Error },
    #[error("control socket {path}: cannot give it to group {group}: {source}")]
    Chown {
        path: PathBuf,
        group: String,
        source: nix::Error,
    },
}

/// The gid of `QOS_CONTROL_GROUP`: a group name, or a numeric gid.
pub fn resolve_group(name: &str) -> Result<u32, ControlError> {
    crate::unixsock::resolve_group(name)
        .map(|group| group.gid)
        .map_err(|e| match e {
            GroupError::Unknown(name) => ControlError::UnknownGroup { name },
            GroupError::Lookup { name, source } => ControlError::GroupLookup { name, source },
        })
}

/// Bind the control socket at `path`: mode 0600, or 0660 and owned by `group` (a name
/// or a numeric gid), through [`crate::unixsock::bind`], shared with the message pipe.
///
/// A file already at `path` is replaced only if it is a socket nobody listens on (left by
/// a controller that died); a live socket or any other kind of file is an error.
pub async fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, ControlError> {
    let group = match group {
        Some(name) => Some(crate::unixsock::Group {
            name: name.to_string(),
            gid: resolve_group(name)?,
        }),
        None => None,
    };
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    crate::unixsock::bind(path, mode, group.as_ref())
        .await
        .map_err(|e| {
            let io = |action, source| ControlError::Io {
                path: path.to_path_buf(),
                action,
                source,
            };
            match e {
                BindError::InUse(path) => ControlError::InUse { path },
                BindError::NotASocket(path) => ControlError::NotASocket { path },
                BindError::Inspect { source, .. } => io("inspect", source),
                BindError::RemoveStale { source, .. } => io("remove stale socket", source),
                BindError::Bind { source, .. } => io("bind", source),
                BindError::Mode { source, .. } => io("chmod", source),
                BindError::Chown {
                    path,
                    group,
                    source,
                } => ControlError::Chown {
                    path,
                    group,
                    source,
                },
            }
        })
}

/// Accept connections until `events` is closed. Each connection runs as its own task so
/// a slow or silent client never holds up the others.
pub async fn serve(
    listener: UnixListener,
    group_gid: Option<u32>,
    events: mpsc::Sender<ControlEvent>,
) {
    let own_uid = nix::unistd::geteuid().as_raw();
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = events.closed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let privileged = stream
                    .peer_cred()
                    .is_ok_and(|cred| cred.uid() == 0 || cred.uid() == own_uid);
                let limit = if privileged {
                    MAX_CONNECTIONS_TOTAL
                } else {
                    MAX_CONNECTIONS
                };
                if active.load(Ordering::Relaxed) >= limit {
                    // Answered without waiting for the request: no slot is held.
                    tokio::spawn(async move {
                        let (_, mut write_half) = stream.into_split();
                        let busy = ControlResponse::refused(format!(
                            "busy: {limit} control connections are open; try again"
                        ));
                        let _ = write_response(&mut write_half, &busy).await;
                    });
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let slot = Slot(active.clone());
                let events = events.clone();
                tokio::spawn(async move {
                    handle_connection(stream, own_uid, group_gid, events).await;
                    drop(slot);
                });
            }
            Err(e) if crate::probe::is_descriptor_exhaustion(&e) => {
                // Out of descriptors: with the reserve given back, take the waiting
                // connection off the backlog and close it (else accept spins on it),
                // then take the reserve again.
                crate::fdreserve::release();
                if let Ok(Ok((stream, _))) =
                    tokio::time::timeout(Duration::from_millis(10), listener.accept()).await
                {
                    drop(stream);
                }
                crate::fdreserve::restore();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Anything else: back off briefly rather than spin on accept.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Frees a connection's place in the count however its task ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle_connection(
    stream: UnixStream,
    own_uid: u32,
    group_gid: Option<u32>,
    events: mpsc::Sender<ControlEvent>,
) {
    let Ok(cred) = stream.peer_cred() else {
        return;
    };
    let (uid, gid, pid) = (cred.uid(), cred.gid(), cred.pid());
    let (read_half, mut write_half) = stream.into_split();
    let allowed = is_allowed(uid, gid, own_uid, group_gid).await;
    if !allowed {
        let _ = events.send(ControlEvent::Refused { uid, gid, pid }).await;
        let _ = write_response(
            &mut write_half,
            &ControlResponse::refused("permission denied"),
        )
        .await;
        return;
    }

    let mut reader = AsyncBufReader::new(read_half).take(MAX_REQUEST_BYTES as u64 + 1);
    let mut line = Vec::new();
    let response =
        match tokio::time::timeout(REQUEST_READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await
        {
            Err(_) => ControlResponse::refused("no request received in time"),
            Ok(Err(e)) => ControlResponse::refused(format!("cannot read the request: {e}")),
            Ok(Ok(_)) if line.len() > MAX_REQUEST_BYTES => {
                ControlResponse::refused(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
            }
            Ok(Ok(_)) => match parse_request(&line) {
                Err(message) => ControlResponse::refused(message),
                Ok(command) => {
                    let connection = (command == ControlCommand::Reexec)
                        .then(|| crate::reexec::dup_connection(write_half.as_ref()))
                        .flatten();
                    ask_runtime(command, uid, pid, connection, &events).await
                }
            },
        };
    let _ = write_response(&mut write_half, &response).await;
}

/// Parse one request line into a command, or the refusal message.
pub fn parse_request(line: &[u8]) -> Result<ControlCommand, String> {
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("empty request".to_string());
    }
    let request: WireRequest = serde_json::from_str(text)
        .map_err(|e| format!("malformed request ({e}); expected {{\"v\":1,\"cmd\":\"status\"}}"))?;
    request.to_command()
}

async fn ask_runtime(
    command: ControlCommand,
    uid: u32,
    pid: Option<i32>,
    connection: Option<std::os::fd::OwnedFd>,
    events: &mpsc::Sender<ControlEvent>,
) -> ControlResponse {
    let (reply, answer) = oneshot::channel();
    // A diagnose request is answered when the file is written, which can take up to
    // QOS_NSD_TIMEOUT; past the reply limit the collection goes on, and saying so is
    // the true answer (not a refusal).
    let diagnose = matches!(command, ControlCommand::Diagnose);
    let request = ControlRequest {
        command,
        uid,
        pid,
        reply,
        connection,
    };
    if events.send(ControlEvent::Request(request)).await.is_err() {
        return ControlResponse::refused("the controller is shutting down");
    }
    match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => ControlResponse::refused("the controller is shutting down"),
        Err(_) if diagnose => ControlResponse::ok(format!(
            "diagnostics are still being collected after {} s; the file will be named in the log",
            REPLY_TIMEOUT.as_secs()
        )),
        Err(_) => ControlResponse::refused("the controller did not answer in time"),
    }
}

async fn write_response<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    response: &ControlResponse,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    tokio::time::timeout(REQUEST_READ_TIMEOUT, async {
        writer.write_all(&line).await?;
        writer.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Root, the controller's own user, or a member of the control group.
async fn is_allowed(uid: u32, gid: u32, own_uid: u32, group_gid: Option<u32>) -> bool {
    if uid == 0 || uid == own_uid {
        return true;
    }
    let Some(group) = group_gid else {
        return false;
    };
    if gid == group {
        return true;
    }
    // Supplementary groups come from NSS, which may be slow (LDAP): keep it off the
    // runtime thread.
    tokio::task::spawn_blocking(move || user_in_group(uid, gid, group))
        .await
        .unwrap_or(false)
}

fn user_in_group(uid: u32, primary_gid: u32, group: u32) -> bool {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    match nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(primary_gid)) {
        Ok(groups) => groups.iter().any(|g| g.as_raw() == group),
        Err(_) => false,
    }
}

/// A client stream whose every read and write waits at most until one deadline (the
/// socket timeouts are set to what is left before each call), so an answer trickling in
/// byte by byte cannot stretch the request past its limit either.
struct DeadlineStream {
    stream: std::os::unix::net::UnixStream,
    deadline: std::time::Instant,
}

impl DeadlineStream {
    /// What is left until the deadline; nothing left is `TimedOut`.
    fn left(&self) -> std::io::Result<Duration> {
        self.deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::TimedOut))
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no controller is listening on {}", .path.display())]
    Unreachable { path: PathBuf },
    #[error("permission denied on {}: ask for membership of QOS_CONTROL_GROUP or run as the controller's user", .path.display())]
    PermissionDenied { path: PathBuf },
    #[error("the controller on {} did not answer within {}", .path.display(), format_duration(*.limit, DurationStyle::Seconds))]
    Timeout { path: PathBuf, limit: Duration },
    #[error("talking to the controller on {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected answer from the controller on {}: {detail}", .path.display())]
    Protocol { path: PathBuf, detail: String },
}

/// Send one command and wait for the answer, all of it — connect, write, read — within
/// `limit`: a wedged controller (stopped, its listen backlog full, or never answering)
/// is a [`ClientError::Timeout`], never a hang. Blocking: for the CLI.
pub fn request(
    path: &Path,
    command: &ControlCommand,
    limit: Duration,
) -> Result<ControlResponse, ClientError> {
    use std::io::ErrorKind;
    let deadline = std::time::Instant::now() + limit;
    let io = |source: std::io::Error| match source.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ClientError::Timeout {
            path: path.to_path_buf(),
            limit,
        },
        ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => ClientError::Io {
            path: path.to_path_buf(),
            source,
        },
    };
    let stream = match crate::unixsock::connect(path, limit) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::NotFound | ErrorKind::ConnectionRefused | ErrorKind::NotADirectory
            ) =>
        {
            return Err(ClientError::Unreachable {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    let mut stream = DeadlineStream { stream, deadline };
    let mut line = serde_json::to_vec(&WireRequest::from_command(command)).map_err(|e| {
        ClientError::Protocol {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }
    })?;
    line.push(b'\n');
    // A refused peer may be answered and closed before our write lands: a broken pipe
    // then still leaves the answer to read.
    if let Err(e) = stream.write_all(&line) {
        if e.kind() != ErrorKind::BrokenPipe {
            return Err(io(e));
        }
    }
    let mut reader = BufReader::new(stream).take(MAX_RESPONSE_BYTES as u64 + 1);
    let mut answer = Vec::new();
    reader.read_until(b'\n', &mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(ClientError::Protocol {
            path: path.to_path_buf(),
            detail: "the connection closed without an answer".to_string(),
        });
    }
    if answer.len() > MAX_RESPONSE_BYTES {
        return Err(ClientError::Protocol {
            path: path.to_path_buf(),
            detail: format!("answer longer than {MAX_RESPONSE_BYTES} bytes"),
        });
    }
    let response: ControlResponse =
        serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if response.v != PROTOCOL_VERSION {
        return Err(ClientError::Protocol {
            path: path.to_path_buf(),
            detail: format!(
                "protocol version {} (expected {PROTOCOL_VERSION})",
                response.v
            ),
        });
    }
    Ok(response)
}
