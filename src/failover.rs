//! Failover outputs: everything that tells the HA stack to move traffic
//! away from this server and back. Owns the trigger file
//! `DATA_DIRECTORY/triggerImmediateServerFailover` (keepalived `track_file`), the health
//! view published to the readiness HTTP endpoint and the HAProxy agent-check port, and
//! the failover/recovery hook commands with their log `qoscntrlr-hooks.log`.
//!
//! The runtime decides *when* (order on a smart kill: trigger file → health down → hooks,
//! then diagnostics); this module only performs each output, fast and without blocking
//! the supervision loop.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::core::{Health, HookEvent};
use crate::httphead::{Gate, Head};
use crate::process::{run_helper, ExitInfo, Reaper};

/// File name of the trigger in the data directory (fixed by the reference).
pub const TRIGGER_FILE_NAME: &str = "triggerImmediateServerFailover";

/// The trigger holds `1\n` or `0\n`; anything much longer was not written by us.
const TRIGGER_READ_MAX: u64 = 256;

/// File name of the hooks' output log in the data directory.
pub const HOOKS_LOG_NAME: &str = "qoscntrlr-hooks.log";

// ---------------------------------------------------------------------------------------
// Trigger file

/// The keepalived-compatible trigger file. Content `1\n` asks for failover, `0\n` (with
/// `QOS_DISABLE_FAILOVER_TRIGGER=1`) marks the incident without asking for it.
#[derive(Debug, Clone)]
pub struct TriggerFile {
    path: PathBuf,
}

/// The trigger's temporary file: in the same directory, so the rename is atomic; hidden,
/// so no watcher mistakes it for the trigger.
const TRIGGER_TEMP_NAME: &str = ".triggerImmediateServerFailover.tmp";

impl TriggerFile {
    pub fn new(data_dir: &Path) -> TriggerFile {
        TriggerFile {
            path: data_dir.join(TRIGGER_FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write the trigger atomically: a reader sees either no file, the old content or the
    /// new content, never a partial one.
    pub fn write(&self, failover_enabled: bool) -> Result<(), crate::atomic::AtomicWriteError> {
        let content: &[u8] = if failover_enabled { b"1\n" } else { b"0\n" };
        // The temp name is fixed and replaced each time: a link planted there is removed,
        // never followed.
        crate::atomic::write(
            &self.path,
            content,
            0o644,
            crate::atomic::Temp::Fixed(TRIGGER_TEMP_NAME),
        )
    }

    /// Remove the trigger; an absent file is not an error.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok()
    }

    /// What the trigger says right now: `None` when there is no file, else its content
    /// without the line end (`1`, `0`, or whatever someone else wrote there). Read
    /// without following a link and bounded: a planted FIFO or a huge file cannot block
    /// or flood a `status`.
    pub fn content(&self) -> io::Result<Option<String>> {
        match crate::safefs::read_regular(&self.path, TRIGGER_READ_MAX) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim_end().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Health view

/// The one writer of the health view; listeners hold receivers.
#[derive(Debug)]
pub struct HealthBoard {
    tx: watch::Sender<Health>,
}

impl HealthBoard {
    pub fn new(initial: Health) -> HealthBoard {
        HealthBoard {
            tx: watch::Sender::new(initial),
        }
    }

    /// Publish a new view; listeners answer with it from their next connection on.
    pub fn set(&self, health: Health) {
        // send_replace stores the value even while no listener subscribes.
        self.tx.send_replace(health);
    }

    pub fn current(&self) -> Health {
        self.tx.borrow().clone()
    }

    /// A receiver for [`serve_readiness`] / [`serve_agent`]. They stop once the board
    /// is dropped.
    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.tx.subscribe()
    }
}

/// A reason fit for one protocol line: control characters become spaces, bounded length.
fn one_line(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "down".to_string()
    } else {
        cleaned.to_string()
    }
}

/// The HAProxy agent-check answer for `health`, newline included.
pub fn agent_line(health: &Health) -> String {
    match health {
        Health::Ready => "up ready\n".to_string(),
        Health::Down { reason } => format!("down #{}\n", one_line(reason)),
        Health::Drain => "drain\n".to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// The HA view for `status`

/// The failover outputs as the shell has them, for [`status_view`].
#[derive(Debug)]
pub struct OutputsNow<'a> {
    pub trigger: &'a TriggerFile,
    /// What the readiness endpoint and the agent port publish now.
    pub health: Health,
    pub readiness_listen: Option<SocketAddr>,
    pub readiness_listening: bool,
    pub agent_listen: Option<SocketAddr>,
    pub agent_listening: bool,
}

/// The `failover` section of `status`: the core's failover state with its last change,
/// and what each output says right now — the trigger file read back, the readiness
/// code and reason and the agent reply exactly as a client would get them.
/// `wall` turns a core instant into the snapshot's RFC 3339 time.
pub fn status_view(
    view: &crate::core::FailoverView,
    outputs: OutputsNow<'_>,
    now: Instant,
    wall: impl Fn(Instant) -> String,
) -> crate::status::FailoverStatus {
    use crate::status::{AgentView, FailoverStatus, ReadinessView, TriggerView};
    let (content, error) = match outputs.trigger.content() {
        Ok(content) => (content, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (code, reason) = readiness_answer(&outputs.health);
    let failback_at = view
        .failback_at
        .filter(|_| view.state == crate::core::FailoverState::FailbackHold);
    FailoverStatus {
        state: Some(view.state),
        since: view.changed_at.map(&wall),
        why: Some(view.changed_why.clone()),
        holds: view.holds.clone(),
        failback_at: failback_at.map(&wall),
        failback_left_secs: failback_at.map(|at| {
            // Rounded up: "0s left" would read as "back already".
            let left = at.saturating_duration_since(now);
            left.as_secs() + u64::from(left.subsec_nanos() > 0)
        }),
        failback_awaits_operator: view.state == crate::core::FailoverState::FailbackHold
            && view.awaiting_operator,
        trigger: Some(TriggerView {
            path: outputs.trigger.path().display().to_string(),
            content: content.clone(),
            error,
        }),
        readiness: Some(ReadinessView {
            listen: outputs.readiness_listen.map(|a| a.to_string()),
            listening: outputs.readiness_listening,
            code,
            reason,
        }),
        agent: Some(AgentView {
            listen: outputs.agent_listen.map(|a| a.to_string()),
            listening: outputs.agent_listening,
            reply: agent_line(&outputs.health).trim_end().to_string(),
        }),
        trigger_present: content.is_some() || outputs.trigger.exists(),
        health: match &outputs.health {
            Health::Ready => "ready".into(),
            Health::Down { reason } => format!("down: {reason}"),
            Health::Drain => "drain".into(),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Listeners

/// Bounds of a listener: a slow or hostile client can neither hold a connection long nor
/// make the controller open many (the shared [`crate::httphead::Limits`]; 2 s, 32).
pub type ListenerLimits = crate::httphead::Limits;

/// Bytes a closing connection still reads (and drops) while waiting for the client's FIN.
const MAX_LINGER_BYTES: usize = 64 * 1024;

/// Bind a TCP listener for [`serve_readiness`] or [`serve_agent`].
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve the readiness endpoint until the [`HealthBoard`] is dropped: any `GET` (also
/// `HEAD`, and `OPTIONS` as HAProxy's `httpchk` sends by default) gets `200 OK` `ready`,
/// `503` with the reason, or `503` `draining`.
pub async fn serve_readiness(listener: TcpListener, health: watch::Receiver<Health>) {
    serve_readiness_with(listener, health, ListenerLimits::default()).await
}

pub async fn serve_readiness_with(
    listener: TcpListener,
    health: watch::Receiver<Health>,
    limits: ListenerLimits,
) {
    let gate = Gate::new("Readiness endpoint", limits, None);
    serve(listener, health, limits, gate, Protocol::Http).await
}

/// [`serve_readiness`] noting on `log` when its connection limit is reached.
pub async fn serve_readiness_logged(
    listener: TcpListener,
    health: watch::Receiver<Health>,
    log: mpsc::UnboundedSender<String>,
) {
    let limits = ListenerLimits::default();
    let what = match listener.local_addr() {
        Ok(addr) => format!("Readiness endpoint http://{addr}/"),
        Err(_) => "Readiness endpoint".to_string(),
    };
    let gate = Gate::new(what, limits, Some(log));
    serve(listener, health, limits, gate, Protocol::Http).await
}

/// Serve the HAProxy agent-check port until the [`HealthBoard`] is dropped: on connect,
/// one line (`up ready`, `down #<reason>`, `drain`), then close.
pub async fn serve_agent(listener: TcpListener, health: watch::Receiver<Health>) {
    serve_agent_with(listener, health, ListenerLimits::default()).await
}

pub async fn serve_agent_with(
    listener: TcpListener,
    health: watch::Receiver<Health>,
    limits: ListenerLimits,
) {
    let gate = Gate::new("HAProxy agent-check", limits, None);
    serve(listener, health, limits, gate, Protocol::Agent).await
}

/// [`serve_agent`] noting on `log` when its connection limit is reached.
pub async fn serve_agent_logged(
    listener: TcpListener,
    health: watch::Receiver<Health>,
    log: mpsc::UnboundedSender<String>,
) {
    let limits = ListenerLimits::default();
    let what = match listener.local_addr() {
        Ok(addr) => format!("HAProxy agent-check {addr}"),
        Err(_) => "HAProxy agent-check".to_string(),
    };
    let gate = Gate::new(what, limits, Some(log));
    serve(listener, health, limits, gate, Protocol::Agent).await
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    Http,
    Agent,
}

async fn serve(
    listener: TcpListener,
    mut health: watch::Receiver<Health>,
    limits: ListenerLimits,
    gate: Gate,
    protocol: Protocol,
) {
    loop {
        let accepted = async {
            let permit = gate.admit().await;
            (permit, listener.accept().await)
        };
        tokio::select! {
            changed = health.changed() => {
                if changed.is_err() {
                    return; // the board is gone: the controller is shutting down
                }
            }
            (permit, result) = accepted => match result {
                Ok((stream, _peer)) => {
                    let view = health.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        match protocol {
                            Protocol::Http => handle_http(stream, view, limits.io_timeout).await,
                            Protocol::Agent => handle_agent(stream, view, limits.io_timeout).await,
                        }
                    });
                }
                // Out of descriptors or a connection reset before accept: back off a
                // little so a persistent error cannot spin the loop.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
}

async fn handle_agent(mut stream: TcpStream, health: watch::Receiver<Health>, io: Duration) {
    let line = agent_line(&health.borrow());
    if let Ok(Ok(())) = tokio::time::timeout(io, stream.write_all(line.as_bytes())).await {
        linger_close(stream, io).await;
    }
}

async fn handle_http(mut stream: TcpStream, health: watch::Receiver<Health>, io: Duration) {
    let head = crate::httphead::read(&mut stream, crate::httphead::MAX_HEAD, io).await;
    let response = match &head {
        Ok(Head::TooLarge) => plain_response(431, "request head too large\n", false),
        Ok(Head::TimedOut) => plain_response(408, "request timeout\n", false),
        // A client that half-closes after a full request line still gets its answer.
        Ok(read) => match read.request_bytes() {
            Some(bytes) => http_response(bytes, &health.borrow()),
            // The client went away without a request: nothing to answer.
            None => return,
        },
        Err(_) => return,
    };
    if let Ok(Ok(())) = tokio::time::timeout(io, stream.write_all(&response)).await {
        linger_close(stream, io).await;
    }
}

/// Send our FIN, then wait (bounded) for the client's before closing: closing with unread
/// input would send a reset that can destroy the answer before the client reads it.
async fn linger_close(mut stream: TcpStream, io: Duration) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let mut drained = 0usize;
    let _ = tokio::time::timeout(io, async {
        while drained < MAX_LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// The full HTTP response to a request head, given the health view.
pub fn http_response(head: &[u8], health: &Health) -> Vec<u8> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let parts: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
    let well_formed = parts.len() == 3
        && !parts[0].is_empty()
        && parts[0].bytes().all(|b| b.is_ascii_uppercase())
        && !parts[1].is_empty()
        && parts[2].starts_with("HTTP/");
    if !well_formed {
        return plain_response(400, "bad request\n", false);
    }
    let head_only = match parts[0] {
        "GET" | "OPTIONS" => false,
        "HEAD" => true,
        _ => return plain_response(405, "method not allowed\n", false),
    };
    let (code, body) = readiness_answer(health);
    plain_response(code, &format!("{body}\n"), head_only)
}

/// What the readiness endpoint answers for `health`: the status code and the body's one
/// line (also what `status` shows as the readiness output).
pub fn readiness_answer(health: &Health) -> (u16, String) {
    match health {
        Health::Ready => (200, "ready".to_string()),
        Health::Down { reason } => (503, one_line(reason)),
        Health::Drain => (503, "draining".to_string()),
    }
}

fn plain_response(status: u16, body: &str, head_only: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD, OPTIONS\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------
// Hooks

/// The environment a hook receives (the contract hook authors code against).
pub fn hook_env(
    event: HookEvent,
    reason: &str,
    server_name: &str,
    incident_id: &str,
    trigger_file: &Path,
) -> Vec<(String, String)> {
    vec![
        ("QOS_EVENT".into(), event.as_str().into()),
        ("QOS_REASON".into(), reason.into()),
        ("QOS_SERVER_NAME".into(), server_name.into()),
        ("QOS_INCIDENT_ID".into(), incident_id.into()),
        (
            "QOS_TRIGGER_FILE".into(),
            trigger_file.to_string_lossy().into_owned(),
        ),
    ]
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEnd {
    Exited(ExitInfo),
    /// Overran its limit; its process group was killed.
    TimedOut {
        limit: Duration,
    },
    NotStarted(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    pub end: HookEnd,
    pub elapsed: Duration,
    /// The hooks log could not be written (the hook still ran, its output discarded).
    pub log_error: Option<String>,
}

impl HookOutcome {
    pub fn success(&self) -> bool {
        matches!(self.end, HookEnd::Exited(exit) if exit.success())
    }
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.end {
            HookEnd::Exited(exit) => write!(f, "{exit} after {} ms", self.elapsed.as_millis()),
            HookEnd::TimedOut { limit } => write!(
                f,
                "timed out after {} and was killed",
                crate::core::units::format_duration(
                    *limit,
                    crate::core::units::DurationStyle::Seconds
                )
            ),
            HookEnd::NotStarted(why) => write!(f, "could not be started: {why}"),
        }
    }
}

/// Run a hook command (no shell) with `env` added, in `data_dir`, for at most `limit`;
/// its stdout and stderr are appended to `data_dir/qoscntrlr-hooks.log` between a start
/// and an end line. Meant to run as its own local task so it never delays a kill.
pub async fn run_hook(
    reaper: &Reaper,
    argv: &[String],
    env: &[(String, String)],
    limit: Duration,
    data_dir: &Path,
) -> HookOutcome {
    let started = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return HookOutcome {
            end: HookEnd::NotStarted("empty command".into()),
            elapsed: started.elapsed(),
            log_error: None,
        };
    };
    let log_path = data_dir.join(HOOKS_LOG_NAME);
    let mut log = open_hooks_log(&log_path);
    let mut log_error = log.as_ref().err().cloned();

    let mut cmd = Command::new(program);
    // A hook still running when the controller is SIGKILLed is killed by the next start.
    crate::process::mark_tree(&mut cmd, data_dir);
    cmd.args(args)
        .current_dir(data_dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // A hook must not talk to systemd in the controller's name.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    let env_text = env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_words::quote(v)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut note = |log: &mut Result<File, String>, text: String| {
        if let Ok(file) = log {
            let line = format!(
                "{} {text}\n",
                chrono::Local::now().format("%Y/%m/%d %H:%M:%S")
            );
            if let Err(e) = file.write_all(line.as_bytes()) {
                log_error.get_or_insert(format!("{}: {e}", log_path.display()));
            }
        }
    };
    note(
        &mut log,
        format!("hook started: {} ({env_text})", shell_words::join(argv)),
    );
    match log.as_ref().map(|f| (f.try_clone(), f.try_clone())) {
        Ok((Ok(out), Ok(err))) => cmd.stdout(out).stderr(err),
        _ => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
    };

    let end = match run_helper(reaper, cmd, limit).await {
        Ok(o) => match o.exit {
            Some(exit) => HookEnd::Exited(exit),
            None => HookEnd::TimedOut { limit },
        },
        Err(e) => HookEnd::NotStarted(e.to_string()),
    };
    let outcome = HookOutcome {
        end,
        elapsed: started.elapsed(),
        log_error: None,
    };
    note(
        &mut log,
        format!("hook ended: {}: {outcome}", shell_words::join(argv)),
    );
    HookOutcome {
        log_error,
        ..outcome
    }
}

fn open_hooks_log(path: &Path) -> Result<File, String> {
    crate::safefs::open_append(path, 0o640).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("responses are text")
    }

    #[test]
    fn get_answers_with_the_health_view() {
        let get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        let ok = text(http_response(get, &Health::Ready));
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nready\n"), "{ok}");
        assert!(ok.contains("Content-Length: 6\r\n"));

        let down = Health::Down {
            reason: "probe timeout".into(),
        };
        let r = text(http_response(get, &down));
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nprobe timeout\n"), "{r}");

        let r = text(http_response(get, &Health::Drain));
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.ends_with("\r\n\r\ndraining\n"), "{r}");
    }

    #[test]
    fn head_has_no_body_and_other_methods_are_refused() {
        let r = text(http_response(b"HEAD / HTTP/1.0\r\n\r\n", &Health::Ready));
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        let r = text(http_response(b"OPTIONS / HTTP/1.0\r\n\r\n", &Health::Ready));
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let r = text(http_response(b"POST / HTTP/1.1\r\n\r\n", &Health::Ready));
        assert!(
            r.starts_with("HTTP/1.1 405 ") && r.contains("Allow: GET"),
            "{r}"
        );
    }

    #[test]
    fn garbage_is_a_bad_request() {
        for head in [
            &b"\x00\xff\xfe garbage\r\n\r\n"[..],
            b"",
            b"GET\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / FTP\r\n\r\n",
        ] {
            let r = text(http_response(head, &Health::Ready));
            assert!(r.starts_with("HTTP/1.1 400 "), "{head:?} -> {r}");
        }
    }

    #[test]
    fn agent_lines_follow_haproxy_agent_check() {
        assert_eq!(agent_line(&Health::Ready), "up ready\n");
        assert_eq!(agent_line(&Health::Drain), "drain\n");
        let down = Health::Down {
            reason: "probe timeout\r\ninjected".into(),
        };
        assert_eq!(agent_line(&down), "down #probe timeout  injected\n");
        let empty = Health::Down { reason: " ".into() };
        assert_eq!(agent_line(&empty), "down #down\n");
    }

    #[test]
    fn hook_env_carries_the_contract_names() {
        let env = hook_env(
            HookEvent::Recovery,
            "probe-timeout",
            "srv",
            "42",
            Path::new("/d/triggerImmediateServerFailover"),
        );
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "QOS_EVENT",
                "QOS_REASON",
                "QOS_SERVER_NAME",
                "QOS_INCIDENT_ID",
                "QOS_TRIGGER_FILE"
            ]
        );
        assert_eq!(env[0].1, "recovery");
    }
}
