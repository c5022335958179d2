//! The one bounded reader of HTTP request heads, and the connection gate, for every HTTP
//! server of the project: the readiness endpoint (`failover`), the metrics endpoint
//! (`metrics`) and the demo application server (`demo_server`, blocking threads).
//!
//! A head is read up to its blank line within a size limit ([`MAX_HEAD`] unless told)
//! and within ONE deadline for the whole head — not per read, so a client that trickles a
//! byte at a time (slowloris) is cut off at the deadline like a silent one. What arrived
//! after the blank line (the start of a body) is handed back.
//!
//! [`Gate`] caps the connections a server handles at once: the accept loop takes a place
//! before accepting, so past the cap new connections wait in the kernel's backlog (never
//! refused, never costing a task or descriptor), and every place is given back at the
//! latest after the head deadline and the answer's write limit. Reaching the cap is noted
//! once (again after [`NOTE_INTERVAL`]) on the log the server was given, naming the
//! server and the limit.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Longest request head read by default; nothing legitimate here needs more.
pub const MAX_HEAD: usize = 8 * 1024;

/// A full gate is noted on the log at most this often.
pub const NOTE_INTERVAL: Duration = Duration::from_secs(60);

/// How reading a request head ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The head up to and including its blank line, and whatever came after it.
    Complete { head: Vec<u8>, rest: Vec<u8> },
    /// No blank line within the size limit.
    TooLarge,
    /// The client closed its side first; what it had sent.
    Closed { partial: Vec<u8> },
    /// The deadline passed first.
    TimedOut,
}

impl Head {
    /// `Complete`, or a half-closed client that sent at least a full request line (it
    /// still gets its answer): the head bytes.
    pub fn request_bytes(&self) -> Option<&[u8]> {
        match self {
            Head::Complete { head, .. } => Some(head),
            Head::Closed { partial } if partial.contains(&b'\n') => Some(partial),
            _ => None,
        }
    }
}

/// The scanning both readers share: bytes in, a verdict once there is one.
struct Scan {
    buf: Vec<u8>,
    max: usize,
}

impl Scan {
    fn new(max: usize) -> Scan {
        Scan {
            buf: Vec::with_capacity(512.min(max)),
            max,
        }
    }

    /// Room for the next read: never much past the limit.
    fn room(&self) -> usize {
        (self.max + 1).saturating_sub(self.buf.len()).clamp(1, 4096)
    }

    fn push(&mut self, bytes: &[u8]) -> Option<Head> {
        // The terminator may straddle two reads: look again from a few bytes back.
        let from = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(bytes);
        if let Some(end) = head_end(&self.buf, from) {
            if end <= self.max {
                let rest = self.buf.split_off(end);
                return Some(Head::Complete {
                    head: std::mem::take(&mut self.buf),
                    rest,
                });
            }
            return Some(Head::TooLarge);
        }
        (self.buf.len() >= self.max).then_some(Head::TooLarge)
    }

    fn closed(self) -> Head {
        Head::Closed { partial: self.buf }
    }
}

/// The end (exclusive) of the first `\r\n\r\n` or `\n\n` at or after `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// Read a request head from `stream`: at most `max` bytes, all within `limit`.
pub async fn read<R: AsyncRead + Unpin>(
    stream: &mut R,
    max: usize,
    limit: Duration,
) -> std::io::Result<Head> {
    let mut scan = Scan::new(max);
    let reading = async {
        let mut chunk = vec![0u8; scan.room()];
        loop {
            let want = scan.room().min(chunk.len());
            let n = stream.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Ok(None);
            }
            if let Some(head) = scan.push(&chunk[..n]) {
                return Ok(Some(head));
            }
        }
    };
    let result = tokio::time::timeout(limit, reading).await;
    match result {
        Ok(Ok(Some(head))) => Ok(head),
        Ok(Ok(None)) => Ok(scan.closed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Head::TimedOut),
    }
}

/// The blocking twin of [`read`] for a thread-per-connection server: the socket's read
/// timeout is set to what is left of `limit` before every read.
pub fn read_blocking(
    stream: &std::net::TcpStream,
    max: usize,
    limit: Duration,
) -> std::io::Result<Head> {
    let deadline = Instant::now() + limit;
    let mut scan = Scan::new(max);
    let mut chunk = vec![0u8; scan.room()];
    loop {
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Ok(Head::TimedOut);
        };
        stream.set_read_timeout(Some(left))?;
        let want = scan.room().min(chunk.len());
        let n = match (&*stream).read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Head::TimedOut)
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(scan.closed());
        }
        if let Some(head) = scan.push(&chunk[..n]) {
            return Ok(head);
        }
    }
}

/// The limits of one HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for the request head, and again for writing the answer.
    pub io_timeout: Duration,
    /// Connections handled at once; further ones wait in the backlog.
    pub max_connections: usize,
}

impl Default for Limits {
    /// The readiness and agent listeners' bounds: 2 s, 32 connections.
    fn default() -> Self {
        Limits {
            io_timeout: Duration::from_secs(2),
            max_connections: 32,
        }
    }
}

/// The connection cap of one listener (see the module doc). One per accept loop.
pub struct Gate {
    permits: Arc<Semaphore>,
    max: usize,
    /// Names the server on the log: `Metrics endpoint http://127.0.0.1:9100/metrics`.
    what: String,
    io_timeout: Duration,
    log: Option<mpsc::UnboundedSender<String>>,
    /// When the full gate was last noted (a Mutex only so servers can run on any task).
    noted: Mutex<Option<Instant>>,
}

impl Gate {
    pub fn new(
        what: impl Into<String>,
        limits: Limits,
        log: Option<mpsc::UnboundedSender<String>>,
    ) -> Gate {
        let max = limits.max_connections.max(1);
        Gate {
            permits: Arc::new(Semaphore::new(max)),
            max,
            what: what.into(),
            io_timeout: limits.io_timeout,
            log,
            noted: Mutex::new(None),
        }
    }

    /// A place for the next connection; waits while all are taken (noting it).
    pub async fn admit(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return permit;
        }
        self.note_full();
        // The semaphore is never closed, so acquiring only waits.
        match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            // Invariant: never closed (see above); park rather than spin if it were.
            Err(_) => std::future::pending().await,
        }
    }

    fn note_full(&self) {
        let now = Instant::now();
        {
            // A poisoned lock only means a panic elsewhere; the stamp is still usable.
            let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            if noted.is_some_and(|at| now.duration_since(at) < NOTE_INTERVAL) {
                return;
            }
            *noted = Some(now);
        }
        if let Some(log) = &self.log {
            let _ = log.send(format!(
                "{}: {} connections are open at once (the limit); new connections wait until one is answered or times out ({})",
                self.what,
                self.max,
                crate::core::units::format_duration(
                    self.io_timeout,
                    crate::core::units::DurationStyle::Seconds
                )
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(parts: &[&[u8]], max: usize) -> Option<Head> {
        let mut scan = Scan::new(max);
        for part in parts {
            if let Some(head) = scan.push(part) {
                return Some(head);
            }
        }
        None
    }

    #[test]
    fn heads_end_at_the_first_blank_line_even_across_reads() {
        let got = scan_all(&[b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r", b"\nbody"], 100);
        assert_eq!(
            got,
            Some(Head::Complete {
                head: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                rest: b"body".to_vec()
            })
        );
        let got = scan_all(&[b"GET / HTTP/1.0\n\n"], 100);
        assert!(matches!(got, Some(Head::Complete { .. })));
        assert_eq!(scan_all(&[b"GET / HTTP/1.1\r\n"], 100), None);
    }

    #[test]
    fn the_limit_counts_the_whole_head() {
        let exact = [&b"GET / HTTP/1.1\r\n"[..], &[b'x'; 80][..], b"\r\n\r\n"].concat();
        assert_eq!(exact.len(), 100);
        assert!(matches!(
            scan_all(&[&exact], 100),
            Some(Head::Complete { .. })
        ));
        assert_eq!(scan_all(&[&exact], 99), Some(Head::TooLarge));
        assert_eq!(scan_all(&[&[b'x'; 100]], 100), Some(Head::TooLarge));
    }

    #[test]
    fn a_half_closed_request_line_still_counts() {
        let closed = Head::Closed {
            partial: b"GET / HTTP/1.0\r\n".to_vec(),
        };
        assert!(closed.request_bytes().is_some());
        let closed = Head::Closed {
            partial: b"GET / HT".to_vec(),
        };
        assert!(closed.request_bytes().is_none());
    }

    #[test]
    fn a_trickling_client_gets_one_deadline_not_one_per_read() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64);
            let trickle = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for _ in 0..1000 {
                    if client.write_all(b"x").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let started = Instant::now();
            let head = read(&mut server, MAX_HEAD, Duration::from_millis(200))
                .await
                .unwrap();
            assert_eq!(head, Head::TimedOut);
            // Far below the 20 s the trickle would take; generous for a loaded machine.
            assert!(started.elapsed() < Duration::from_secs(10));
            drop(server);
            let _ = trickle.await;
        });
    }

    #[test]
    fn blocking_reader_has_the_same_bounds() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            use std::io::Write;
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
                .unwrap();
            let mut silent = std::net::TcpStream::connect(addr).unwrap();
            silent.write_all(b"GET").unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let (first, _) = listener.accept().unwrap();
        let head = read_blocking(&first, MAX_HEAD, Duration::from_secs(20)).unwrap();
        let Head::Complete { head, rest } = head else {
            panic!("{head:?}");
        };
        assert!(head.starts_with(b"GET /x"));
        assert!(b"hi".starts_with(&rest));
        let (second, _) = listener.accept().unwrap();
        let head = read_blocking(&second, MAX_HEAD, Duration::from_millis(200)).unwrap();
        assert_eq!(head, Head::TimedOut);
        client.join().unwrap();
    }

    #[test]
    fn a_full_gate_is_noted_once_and_admits_when_a_place_is_free() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let limits = Limits {
                io_timeout: Duration::from_secs(2),
                max_connections: 2,
            };
            let gate = Gate::new("Metrics endpoint http://127.0.0.1:1/metrics", limits, Some(tx));
            let a = gate.admit().await;
            let _b = gate.admit().await;
            assert!(rx.try_recv().is_err(), "not full yet");
            drop(a);
            let _c = gate.admit().await;
            let waiting = tokio::time::timeout(Duration::from_millis(50), gate.admit()).await;
            assert!(waiting.is_err(), "full: waits");
            let note = rx.try_recv().expect("noted");
            assert_eq!(
                note,
                "Metrics endpoint http://127.0.0.1:1/metrics: 2 connections are open at once (the limit); new connections wait until one is answered or times out (2 s)"
            );
            let _ = tokio::time::timeout(Duration::from_millis(10), gate.admit()).await;
            assert!(rx.try_recv().is_err(), "once per interval");
        });
    }
}
