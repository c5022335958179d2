//! The QOSPipeWatcher (the message protocol): the Unix stream socket at `QOS_PIPE` where the
//! server (or `qoscntrlr send`) writes one message per line. Owns the socket file (stale
//! replacement, mode 0660, group), the per-client line reading with its limits, and the
//! client side used by `qoscntrlr send`.
//!
//! Capacity: at most [`MAX_CLIENTS`] clients; one outside the server's process tree is
//! closed after [`IDLE_TIMEOUT`] without sending, and a connection from the server's own
//! tree ([`in_own_tree`]) is never refused for capacity — the longest-idle client is
//! closed for it. Answers are opt-in ([`ACK_REQUEST`]): `qoscntrlr send` learns whether
//! its line was taken, servers that never ask see the protocol unchanged.
//!
//! Bad input never reaches the controller as anything but a rate-limited
//! [`PipeEvent::Rejected`]. The queue to the runtime is bounded and only client tasks
//! wait on it: a flooding client is slowed down (it stops being read, its writes block
//! in the kernel) instead of having messages dropped — a lost `END` would leave an
//! application listed and end in a false apps-timeout kill. The runtime never waits on
//! a client, so a flooding or stalled one cannot delay probing or logging; waiting
//! senders are served in turn, so a flooder cannot starve other clients either.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{error::TrySendError, Sender};

use crate::core::Meaning;
use crate::message::{self, Message};
use crate::unixsock::BindError;

/// Longest message, newline excluded (the message protocol).
pub const MAX_LINE: usize = 8 * 1024;
/// Clients served at once; more are refused so a connect storm cannot exhaust
/// descriptors or memory — except a connection from the server's own process tree,
/// which closes the longest-idle client instead and is served.
pub const MAX_CLIENTS: usize = 64;
/// A client outside the server's tree that sends nothing for this long is closed, so
/// idle connections cannot hold the pipe's places. The server's own connections may
/// stay idle as long as they like (a server writes when it has something to say).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that sends this line first gets one answer line per message: `OK`, or
/// `ERR <reason>` when the message was not accepted (`qoscntrlr send` uses it to exit
/// non-zero). Clients that never send it get no answers: the protocol is unchanged for
/// servers that do not read.
pub const ACK_REQUEST: &str = "QOSCNTRLR-ACK 1";
/// How long the controller waits to hand an answer to a client that asked for answers.
const ACK_WRITE_LIMIT: Duration = Duration::from_secs(2);
/// Mode of the socket file: owner and group may connect, others may not.
pub const SOCKET_MODE: u32 = 0o660;
/// At most one rejection report per client per this interval.
const REJECT_INTERVAL: Duration = Duration::from_secs(1);
/// Read size; large enough that a flood is handled in few wakeups.
const READ_CHUNK: usize = 16 * 1024;

/// What the pipe tells the runtime.
// `Line` is by far the most frequent variant; boxing it to shrink the rare ones would
// cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeEvent {
    /// A valid message: `text` is the line as received (trimmed), `message` its parse,
    /// `meaning` what it asks of the controller.
    Line {
        client: u64,
        /// The process that connected (SO_PEERCRED, taken at connect time), when known.
        sender_pid: Option<i32>,
        text: String,
        message: Message,
        meaning: Meaning,
    },
    /// Input that was dropped (over-long, invalid UTF-8, not a valid message) or a
    /// refused connection. Rate-limited per client; the reason counts what was
    /// suppressed since the last report.
    Rejected { client: u64, reason: String },
    /// The listener itself failed (e.g. out of descriptors); serving continues.
    Failed { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("another process is already listening on {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot inspect {path}: {source}")]
    Inspect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set mode 0660 on {path}: {source}")]
    Mode {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("QOS_CONTROL_GROUP: no group named '{0}'")]
    UnknownGroup(String),
    #[error("cannot give {path} to group {group}: {source}")]
    Chown {
        path: PathBuf,
        group: String,
        source: nix::Error,
    },
}

/// Listen on `path`: a stale socket left by a dead controller is replaced, a live one
/// or anything that is not a socket is left alone. The socket gets mode 0660 and, when
/// given, the group `group` (name or numeric id). Needs a tokio runtime. The binding is
/// [`crate::unixsock::bind`], shared with the control socket.
pub async fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, PipeError> {
    let group = group
        .map(|name| {
            crate::unixsock::resolve_group(name).map_err(|_| PipeError::UnknownGroup(name.into()))
        })
        .transpose()?;
    crate::unixsock::bind(path, SOCKET_MODE, group.as_ref())
        .await
        .map_err(PipeError::from)
}

impl From<BindError> for PipeError {
    fn from(e: BindError) -> PipeError {
        match e {
            BindError::InUse(path) => PipeError::InUse(path),
            BindError::NotASocket(path) => PipeError::NotASocket(path),
            BindError::Inspect { path, source } => PipeError::Inspect { path, source },
            BindError::RemoveStale { path, source } => PipeError::RemoveStale { path, source },
            BindError::Bind { path, source } => PipeError::Bind { path, source },
            BindError::Mode { path, source, .. } => PipeError::Mode { path, source },
            BindError::Chown {
                path,
                group,
                source,
            } => PipeError::Chown {
                path,
                group,
                source,
            },
        }
    }
}

/// State shared by the accept loop and the client tasks (one thread: `Rc`/`Cell`).
struct Shared {
    tx: Sender<PipeEvent>,
    active: Cell<usize>,
    /// The clients being served, for eviction.
    clients: RefCell<Vec<Rc<ClientInfo>>>,
    idle_timeout: Duration,
}

/// What the accept loop knows of a client being served.
struct ClientInfo {
    id: u64,
    /// The connecting process belongs to the server's tree (a descendant of this
    /// controller).
    tree: bool,
    last_active: Cell<Instant>,
    evict: tokio::sync::Notify,
}

impl Shared {
    /// Close the longest-idle client — one outside the server's tree if there is one —
    /// to make room. Returns its id.
    fn evict_oldest_idle(&self) -> Option<u64> {
        let clients = self.clients.borrow();
        let victim = clients
            .iter()
            .min_by_key(|c| (c.tree, c.last_active.get()))?
            .clone();
        drop(clients);
        self.clients.borrow_mut().retain(|c| c.id != victim.id);
        victim.evict.notify_one();
        Some(victim.id)
    }
}

impl Shared {
    /// Queue a client's event, waiting for room (this slows only that client). False
    /// when the runtime is gone.
    async fn send(&self, event: PipeEvent) -> bool {
        self.tx.send(event).await.is_ok()
    }

    /// Queue a report of the accept loop without waiting: accepting must go on, and
    /// losing a report about refused connections to a full queue is acceptable. False
    /// when the runtime is gone.
    fn report(&self, event: PipeEvent) -> bool {
        !matches!(self.tx.try_send(event), Err(TrySendError::Closed(_)))
    }
}

/// Frees the client's slot however its task ends.
struct ActiveSlot(Rc<Shared>, u64);

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
        let id = self.1;
        self.0.clients.borrow_mut().retain(|c| c.id != id);
    }
}

/// Whether `pid` descends from this controller (the server, its children, daemonized
/// orphans the controller adopted as subreaper, its helpers). Walks the parent chain
/// in `/proc`; the controller itself does not count.
pub fn in_own_tree(pid: i32) -> bool {
    let me = std::process::id() as i32;
    let mut current = pid;
    // Bounded: a parent chain is short, and a loop must not hang the accept loop.
    for _ in 0..64 {
        if current <= 1 {
            return false;
        }
        let Some(parent) = parent_of(current) else {
            return false;
        };
        if parent == me {
            return current != me;
        }
        current = parent;
    }
    false
}

fn parent_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// How the pipe serves its clients; [`ServeOptions::default`] is what `run` uses.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Serve clients until the receiving side of `tx` is dropped. Must run inside a
/// `LocalSet` (each client is a `spawn_local` task). Client ids start at 1.
pub async fn serve(listener: UnixListener, tx: Sender<PipeEvent>) {
    serve_with(listener, tx, ServeOptions::default()).await
}

/// [`serve`] with explicit options (tests shorten the idle timeout).
pub async fn serve_with(listener: UnixListener, tx: Sender<PipeEvent>, options: ServeOptions) {
    let shared = Rc::new(Shared {
        tx,
        active: Cell::new(0),
        clients: RefCell::new(Vec::new()),
        idle_timeout: options.idle_timeout,
    });
    let mut evictions = RateLimit::default();
    let mut next_client: u64 = 1;
    // One report per episode of refusals / accept failures, not one per connect.
    let mut refusing = false;
    let mut failures = RateLimit::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.tx.closed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let client = next_client;
                next_client += 1;
                let sender_pid = stream.peer_cred().ok().and_then(|cred| cred.pid());
                let tree = sender_pid.is_some_and(in_own_tree);
                if shared.active.get() >= MAX_CLIENTS && tree {
                    // The server's own message must get through: make room.
                    if let Some(victim) = shared.evict_oldest_idle() {
                        if let Some(suppressed) = evictions.allow(Instant::now()) {
                            let reason = with_suppressed(
                                format!(
                                    "closed to make room for a connection of the server's own process tree ({MAX_CLIENTS} clients)"
                                ),
                                suppressed,
                            );
                            if !shared.report(PipeEvent::Rejected {
                                client: victim,
                                reason,
                            }) {
                                return;
                            }
                        }
                    }
                } else if shared.active.get() >= MAX_CLIENTS {
                    // Say why before closing: a client that reads (`send`) reports it.
                    let _ = stream.try_write(
                        format!("ERR too many clients ({MAX_CLIENTS}) on the pipe\n").as_bytes(),
                    );
                    drop(stream);
                    if !refusing {
                        refusing = true;
                        let reason = format!(
                            "too many clients ({MAX_CLIENTS}) on the pipe; refusing connections until one disconnects"
                        );
                        if !shared.report(PipeEvent::Rejected { client, reason }) {
                            return;
                        }
                    }
                    continue;
                }
                refusing = false;
                shared.active.set(shared.active.get() + 1);
                let info = Rc::new(ClientInfo {
                    id: client,
                    tree,
                    last_active: Cell::new(Instant::now()),
                    evict: tokio::sync::Notify::new(),
                });
                shared.clients.borrow_mut().push(info.clone());
                let slot = ActiveSlot(shared.clone(), client);
                tokio::task::spawn_local(serve_client(slot, info, sender_pid, stream));
            }
            Err(e) => {
                if let Some(suppressed) = failures.allow(Instant::now()) {
                    let reason =
                        with_suppressed(format!("cannot accept a connection: {e}"), suppressed);
                    if !shared.report(PipeEvent::Failed { reason }) {
                        return;
                    }
                }
                // Typically EMFILE: the error repeats until a descriptor frees up, so
                // pause instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// At most one report per [`REJECT_INTERVAL`]; counts what it held back.
#[derive(Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last report)` when a report may go out now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < REJECT_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

fn with_suppressed(reason: String, suppressed: u64) -> String {
    if suppressed == 0 {
        reason
    } else {
        format!("{reason} ({suppressed} similar problem(s) not reported)")
    }
}

/// One piece of a client's byte stream.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// A complete line, newline removed, at most [`MAX_LINE`] bytes.
    Line(&'a [u8]),
    /// A line grew past [`MAX_LINE`]; it is dropped up to its newline.
    TooLong,
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes without ever holding
/// more than that per client.
#[derive(Default)]
struct LineSplitter {
    partial: Vec<u8>,
    /// Inside an over-long line: drop bytes until the next newline.
    discarding: bool,
}

impl LineSplitter {
    fn feed(&mut self, mut chunk: &[u8], mut on: impl FnMut(Piece<'_>)) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (segment, rest) = match newline {
                Some(at) => (&chunk[..at], &chunk[at + 1..]),
                None => (chunk, &[][..]),
            };
            chunk = rest;
            if self.discarding {
                self.discarding = newline.is_none();
                continue;
            }
            if self.partial.len() + segment.len() > MAX_LINE {
                self.partial.clear();
                self.discarding = newline.is_none();
                on(Piece::TooLong);
                continue;
            }
            match newline {
                // Common case: the whole line is in this chunk; no copy.
                Some(_) if self.partial.is_empty() => on(Piece::Line(segment)),
                Some(_) => {
                    self.partial.extend_from_slice(segment);
                    on(Piece::Line(&self.partial));
                    self.partial.clear();
                }
                None => self.partial.extend_from_slice(segment),
            }
        }
    }

    /// The client closed: an unterminated last line still counts (`printf` without `\n`).
    fn finish(&mut self, on: impl FnOnce(Piece<'_>)) {
        if !self.discarding && !self.partial.is_empty() {
            on(Piece::Line(&self.partial));
        }
        self.partial.clear();
    }
}

/// Per-client bookkeeping of what was rejected.
struct ClientState {
    client: u64,
    sender_pid: Option<i32>,
    rejects: RateLimit,
    /// Over-long lines are reported once per client; later ones are only counted.
    too_long_reported: bool,
}

impl ClientState {
    fn reject(&mut self, reason: String) -> Option<PipeEvent> {
        let suppressed = self.rejects.allow(Instant::now())?;
        Some(PipeEvent::Rejected {
            client: self.client,
            reason: with_suppressed(reason, suppressed),
        })
    }

    /// The event for one piece of input, if it deserves one, and the answer a client
    /// that asked for answers gets for it.
    fn handle(&mut self, piece: Piece<'_>) -> (Option<PipeEvent>, Verdict) {
        let bytes = match piece {
            Piece::Line(bytes) => bytes,
            Piece::TooLong => {
                let reason = format!("message longer than {MAX_LINE} bytes");
                if self.too_long_reported {
                    self.rejects.suppressed += 1;
                    return (None, Verdict::Refused(reason));
                }
                self.too_long_reported = true;
                let event = self.reject(format!(
                    "{reason} cut off and dropped (further ones from this client are dropped without a report)"
                ));
                return (event, Verdict::Refused(reason));
            }
        };
        if bytes.trim_ascii() == ACK_REQUEST.as_bytes() {
            return (None, Verdict::AckRequested);
        }
        match decode_line(bytes) {
            Ok(None) => (None, Verdict::Nothing),
            Ok(Some(Decoded {
                text,
                message,
                meaning,
            })) => (
                Some(PipeEvent::Line {
                    client: self.client,
                    sender_pid: self.sender_pid,
                    text,
                    message,
                    meaning,
                }),
                Verdict::Accepted,
            ),
            Err(reason) => (self.reject(reason.clone()), Verdict::Refused(reason)),
        }
    }
}

/// What a client that asked for answers is told about one line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// A blank line: nothing to say.
    Nothing,
    /// The client asks for answers from now on.
    AckRequested,
    /// Queued for the controller.
    Accepted,
    Refused(String),
}

/// One line decoded: the text as received (trimmed), its parse and its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    pub message: Message,
    pub meaning: Meaning,
}

/// Decode one received line (newline removed): `Ok(None)` for a blank line, the
/// message, or why it was dropped. Pure, so that property tests can feed it anything.
pub fn decode_line(bytes: &[u8]) -> Result<Option<Decoded>, String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err("message is not valid UTF-8; dropped".to_string());
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match message::parse(text).and_then(|m| m.meaning().map(|meaning| (m, meaning))) {
        Ok((message, meaning)) => Ok(Some(Decoded {
            text: text.to_string(),
            message,
            meaning,
        })),
        Err(e) => Err(format!("invalid message dropped: {e}")),
    }
}

async fn serve_client(
    slot: ActiveSlot,
    info: Rc<ClientInfo>,
    sender_pid: Option<i32>,
    stream: UnixStream,
) {
    let shared = slot.0.clone();
    let client = info.id;
    let mut state = ClientState {
        client,
        sender_pid,
        rejects: RateLimit::default(),
        too_long_reported: false,
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut acks = false;
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut handled = Vec::new();
    loop {
        // Clients outside the server's tree are closed when idle for too long.
        let idle_at = tokio::time::Instant::from_std(crate::core::later(
            info.last_active.get(),
            shared.idle_timeout,
        ));
        let read = tokio::select! {
            read = reader.read(&mut buf) => read,
            _ = shared.tx.closed() => return,
            _ = info.evict.notified() => break,
            _ = tokio::time::sleep_until(idle_at), if !info.tree => break,
        };
        let more = match read {
            Ok(0) => {
                splitter.finish(|piece| handled.push(state.handle(piece)));
                false
            }
            Ok(n) => {
                info.last_active.set(Instant::now());
                splitter.feed(&buf[..n], |piece| handled.push(state.handle(piece)));
                true
            }
            Err(e) => {
                handled.push((state.reject(format!("read error: {e}")), Verdict::Nothing));
                false
            }
        };
        for (event, verdict) in handled.drain(..) {
            if let Some(event) = event {
                if !shared.send(event).await {
                    return;
                }
            }
            let answer = match verdict {
                Verdict::Nothing => continue,
                Verdict::AckRequested => {
                    acks = true;
                    continue;
                }
                Verdict::Accepted => "OK\n".to_string(),
                Verdict::Refused(reason) => format!("ERR {reason}\n"),
            };
            if acks {
                // A client that asked for answers but does not read them loses them;
                // the controller never waits on it for long.
                let written =
                    tokio::time::timeout(ACK_WRITE_LIMIT, writer.write_all(answer.as_bytes()))
                        .await;
                if !matches!(written, Ok(Ok(()))) {
                    acks = false;
                }
            }
        }
        if !more {
            break;
        }
        // A client that always has data must not monopolise the one runtime thread.
        tokio::task::yield_now().await;
    }
    if state.rejects.suppressed > 0 {
        let reason = format!(
            "{} problem(s) not reported before the client disconnected",
            state.rejects.suppressed
        );
        shared.send(PipeEvent::Rejected { client, reason }).await;
    }
}

/// Why `qoscntrlr send` could not deliver a line.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no controller is listening on {0}")]
    NotListening(PathBuf),
    #[error("permission denied on {0} (the pipe admits its owner and QOS_CONTROL_GROUP)")]
    PermissionDenied(PathBuf),
    #[error("the message must be one line")]
    MultiLine,
    #[error("the message is {0} bytes; at most {MAX_LINE} are accepted")]
    TooLong(usize),
    #[error("the controller on {0} did not take the message in time")]
    TimedOut(PathBuf),
    #[error("the controller did not accept the message: {0}")]
    NotAccepted(String),
    #[error("cannot send to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Send one message line to the pipe at `path` (blocking; for `qoscntrlr send`).
/// `limit` bounds the write; a newline is added.
pub fn send_line(path: &Path, line: &str, limit: Duration) -> Result<(), SendError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.contains(['\r', '\n']) {
        return Err(SendError::MultiLine);
    }
    if line.len() > MAX_LINE {
        return Err(SendError::TooLong(line.len()));
    }
    let io_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            SendError::NotListening(path.to_path_buf())
        }
        std::io::ErrorKind::PermissionDenied => SendError::PermissionDenied(path.to_path_buf()),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            SendError::TimedOut(path.to_path_buf())
        }
        _ => SendError::Io {
            path: path.to_path_buf(),
            source,
        },
    };
    // Bounded: a wedged controller with a full backlog would block connect(2) forever.
    let mut stream = crate::unixsock::connect(path, limit).map_err(io_error)?;
    // A zero timeout is rejected by std; treat it as the shortest wait.
    stream
        .set_write_timeout(Some(limit.max(Duration::from_millis(1))))
        .map_err(io_error)?;
    stream
        .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
        .map_err(io_error)?;
    // Ask for an answer, then the line: the controller says whether it took it.
    let mut data = Vec::with_capacity(ACK_REQUEST.len() + line.len() + 2);
    data.extend_from_slice(ACK_REQUEST.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(line.as_bytes());
    data.push(b'\n');
    // A refused client may be answered and closed before the write lands: a broken
    // pipe or reset then still leaves the answer to read.
    match stream.write_all(&data).and_then(|()| stream.flush()) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => return Err(io_error(e)),
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    // One short line; byte by byte keeps this free of buffering subtleties.
    while answer.len() < 1024 {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => answer.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(io_error(e)),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    match answer.trim_end() {
        "OK" => Ok(()),
        "" => Err(SendError::NotAccepted(
            "the controller closed the connection without taking the message".into(),
        )),
        other => Err(SendError::NotAccepted(
            other.strip_prefix("ERR ").unwrap_or(other).to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(splitter: &mut LineSplitter, chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        splitter.feed(chunk, |p| {
            out.push(match p {
                Piece::Line(l) => String::from_utf8_lossy(l).into_owned(),
                Piece::TooLong => "<too long>".into(),
            })
        });
        out
    }

    #[test]
    fn splitter_joins_partial_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(pieces(&mut s, b"OpMsg=REA"), Vec::<String>::new());
        assert_eq!(
            pieces(&mut s, b"DY Type=SERVER\nab"),
            vec!["OpMsg=READY Type=SERVER"]
        );
        assert_eq!(pieces(&mut s, b"c\n\nd\n"), vec!["abc", "", "d"]);
        let mut last = Vec::new();
        assert_eq!(pieces(&mut s, b"tail"), Vec::<String>::new());
        s.finish(|p| last.push(p == Piece::Line(b"tail")));
        assert_eq!(last, vec![true]);
    }

    #[test]
    fn splitter_cuts_over_long_lines_until_newline() {
        let mut s = LineSplitter::default();
        let exact = vec![b'a'; MAX_LINE];
        let mut input = exact.clone();
        input.push(b'\n');
        assert_eq!(pieces(&mut s, &input), vec!["a".repeat(MAX_LINE)]);
        // One byte more, delivered in small pieces: reported once, then skipped.
        let mut out = Vec::new();
        for _ in 0..(MAX_LINE + 1000) / 100 {
            out.extend(pieces(&mut s, &[b'b'; 100]));
        }
        assert_eq!(out, vec!["<too long>"]);
        assert_eq!(pieces(&mut s, b"bbb\nnext\n"), vec!["next"]);
        // An over-long line complete within one chunk.
        let mut input = vec![b'c'; MAX_LINE + 1];
        input.extend_from_slice(b"\nafter\n");
        assert_eq!(pieces(&mut s, &input), vec!["<too long>", "after"]);
        // An unterminated over-long tail is not delivered at the end.
        pieces(&mut s, &vec![b'd'; MAX_LINE + 1]);
        let mut delivered = false;
        s.finish(|_| delivered = true);
        assert!(!delivered);
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let t0 = Instant::now();
        let mut limit = RateLimit::default();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0 + Duration::from_millis(10)), None);
        assert_eq!(limit.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(limit.allow(t0 + Duration::from_secs(3)), Some(0));
    }
}
