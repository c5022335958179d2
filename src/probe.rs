//! Probes: one bounded attempt at `QOS_PROBE` — `http://` (hand-written HTTP/1.1 GET,
//! 2xx/3xx is a success, redirects not followed, only the status line and headers read),
//! `tcp://` (connect), `exec:` (exit 0 via [`run_helper`]). `message` probes are reported
//! by the server itself on the pipe and never run here.
//!
//! The attempt limit: the runtime passes `min(QOS_PROBE_INTERVAL, QOS_PROBE_TIMEOUT)`, so
//! an attempt never overlaps the next one and never outlasts the probe timeout. Everything
//! — name resolution, connect, request and response — happens inside that one limit.
//! Failure reasons are written for the operator reading `QoS Probe: ERROR: <reason>`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ProbeTarget;
use crate::core::units::{format_duration, DurationStyle};
use crate::process::{run_helper, Reaper};

/// The most of a response the HTTP probe reads: status line and headers, never the body.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success {
        latency: Duration,
    },
    Failure {
        reason: String,
        latency: Duration,
    },
    /// The controller itself could not make the attempt (out of file descriptors:
    /// EMFILE/ENFILE): a fault of the controller, says nothing about the server and
    /// must never count as a failed probe.
    ControllerFault {
        reason: String,
        latency: Duration,
    },
}

/// Why an attempt did not succeed: the operator's words, and whether the fault is the
/// controller's own.
#[derive(Debug)]
struct Fail {
    reason: String,
    own: bool,
}

impl From<String> for Fail {
    fn from(reason: String) -> Fail {
        Fail { reason, own: false }
    }
}

/// Out of descriptors, in this process (EMFILE) or system-wide (ENFILE): the attempt
/// never reached the server.
pub fn is_descriptor_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

fn io_fail(reason: String, e: &std::io::Error) -> Fail {
    Fail {
        reason,
        own: is_descriptor_exhaustion(e),
    }
}

impl ProbeOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, ProbeOutcome::Success { .. })
    }

    pub fn latency(&self) -> Duration {
        match self {
            ProbeOutcome::Success { latency }
            | ProbeOutcome::Failure { latency, .. }
            | ProbeOutcome::ControllerFault { latency, .. } => *latency,
        }
    }
}

/// Run one probe attempt of at most `limit`. `reaper` collects the exit status of `exec:`
/// probes (it must be reaping on this runtime).
pub async fn probe_once(target: &ProbeTarget, limit: Duration, reaper: &Reaper) -> ProbeOutcome {
    let start = Instant::now();
    let result = match target {
        ProbeTarget::Http { host, port, path } => bounded(limit, http_get(host, *port, path)).await,
        ProbeTarget::Tcp { host, port } => {
            bounded(limit, async { connect(host, *port).await.map(drop) }).await
        }
        ProbeTarget::Exec { argv } => exec(argv, limit, reaper).await,
        ProbeTarget::Message => Err("probe results come from the server's messages"
            .to_string()
            .into()),
    };
    let latency = start.elapsed();
    match result {
        Ok(()) => ProbeOutcome::Success { latency },
        Err(Fail { reason, own: true }) => ProbeOutcome::ControllerFault { reason, latency },
        Err(Fail { reason, own: false }) => ProbeOutcome::Failure { reason, latency },
    }
}

async fn bounded<F>(limit: Duration, attempt: F) -> Result<(), Fail>
where
    F: std::future::Future<Output = Result<(), Fail>>,
{
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| Err(timed_out(limit).into()))
}

fn timed_out(limit: Duration) -> String {
    format!(
        "timed out after {}",
        format_duration(limit, DurationStyle::Compact)
    )
}

/// Accepts `::1` and `[::1]` alike; returns the bare host.
fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Resolve `host` and connect to the first address that accepts.
async fn connect(host: &str, port: u16) -> Result<TcpStream, Fail> {
    let host = bare_host(host);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| io_fail(format!("cannot resolve host {host:?}: {e}"), &e))?
        .collect();
    let mut last = Fail::from(format!("cannot resolve host {host:?}: no addresses"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = format!("connection refused ({addr})").into();
            }
            // The controller's own socket could not be created: nothing was asked of
            // the server; no other address would fare better.
            Err(e) if is_descriptor_exhaustion(&e) => {
                return Err(io_fail(format!("cannot open a socket to {addr}: {e}"), &e))
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}").into(),
        }
    }
    Err(last)
}

async fn http_get(host: &str, port: u16, path: &str) -> Result<(), Fail> {
    let mut stream = connect(host, port).await?;
    let bare = bare_host(host);
    let host_header = match (bare.contains(':'), port) {
        (true, 80) => format!("[{bare}]"),
        (true, _) => format!("[{bare}]:{port}"),
        (false, 80) => bare.to_string(),
        (false, _) => format!("{bare}:{port}"),
    };
    let path = if path.is_empty() { "/" } else { path };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: qoscntrlr/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let status = read_status(&mut stream).await?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}").into())
    }
}

/// Read until the end of the final response head (interim 1xx heads are skipped) and
/// return its status code. Never reads more than [`MAX_RESPONSE_HEAD`] bytes in all.
async fn read_status<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> Result<u16, String> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut consumed = 0; // start of the current head in `buf`
    let mut chunk = [0u8; 4096];
    loop {
        // Judge the status line as soon as it is there, so garbage fails at once instead
        // of waiting for a blank line that may never come.
        let head = &buf[consumed..];
        let status = match head.iter().position(|&b| b == b'\n') {
            Some(eol) => Some(parse_status_line(&head[..eol])?),
            None if head.len() >= 5 && !head.starts_with(b"HTTP/") => {
                return Err("malformed response".into())
            }
            None => None,
        };
        if let (Some(status), Some(end)) = (status, head_end(head)) {
            if (100..200).contains(&status) && status != 101 {
                consumed += end;
                continue;
            }
            return Ok(status);
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(format!(
                "malformed response (headers larger than {} KiB)",
                MAX_RESPONSE_HEAD / 1024
            ));
        }
        let room = (MAX_RESPONSE_HEAD - buf.len()).min(chunk.len());
        let n = stream
            .read(&mut chunk[..room])
            .await
            .map_err(|e| format!("cannot read the response: {e}"))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "connection closed without a response".into()
            } else {
                "malformed response (connection closed inside the headers)".into()
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Length of the head (through its blank line) if it is complete.
fn head_end(head: &[u8]) -> Option<usize> {
    let crlf = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let malformed = || "malformed response".to_string();
    let line = std::str::from_utf8(line).map_err(|_| malformed())?;
    let mut parts = line.trim_end_matches('\r').splitn(3, ' ');
    let version = parts.next().ok_or_else(malformed)?;
    let code = parts.next().ok_or_else(malformed)?;
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return Err(malformed());
    }
    code.parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(malformed)
}

async fn exec(argv: &[String], limit: Duration, reaper: &Reaper) -> Result<(), Fail> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "exec probe has an empty command".to_string())?;
    let mut cmd = Command::new(program);
    // Probe output is not the server's console; it would only clutter the journal.
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let outcome = run_helper(reaper, cmd, limit).await.map_err(|e| {
        let own = match &e {
            crate::process::HelperError::Spawn { source, .. } => is_descriptor_exhaustion(source),
        };
        Fail {
            reason: e.to_string(),
            own,
        }
    })?;
    match outcome.exit {
        Some(exit) if exit.success() => Ok(()),
        Some(exit) => Err(format!("{program}: {exit}").into()),
        None => Err(timed_out(limit).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status_of(bytes: &[u8]) -> Result<u16, String> {
        let mut reader = bytes;
        read_status(&mut reader).await
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r"), Ok(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 302"), Ok(302));
        assert!(parse_status_line(b"HTTP/1.1 2000 OK").is_err());
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line(b"HTTP/1.1 abc").is_err());
    }

    #[test]
    fn interim_responses_are_skipped() {
        let got = block_on(status_of(
            b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 503 Busy\r\n\r\n",
        ));
        assert_eq!(got, Ok(503));
        assert_eq!(block_on(status_of(b"HTTP/1.1 200 OK\n\nbody")), Ok(200));
    }

    #[test]
    fn truncated_and_empty_responses_fail() {
        assert_eq!(
            block_on(status_of(b"")),
            Err("connection closed without a response".into())
        );
        assert!(block_on(status_of(b"HTTP/1.1 200 OK\r\nX: y\r\n"))
            .unwrap_err()
            .starts_with("malformed response"));
        assert_eq!(
            block_on(status_of(b"<html>")),
            Err("malformed response".into())
        );
    }
}
