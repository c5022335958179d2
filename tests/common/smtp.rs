//! The test side of mail: a real SMTP server (aiosmtpd, `tests/smtp/sink.py`) that writes
//! every message it receives as JSON, and one that accepts TCP connections and never
//! says a word. Both stop (and are reaped) on drop, also when the test panics.

use std::io::BufRead;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// aiosmtpd is there, or the test is skipped (outside CI) / fails (CI=true).
pub fn smtp_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // libtest names the thread after the test.
        let test = std::thread::current()
            .name()
            .unwrap_or("an SMTP test")
            .to_string();
        // What tests/skip/mod.rs does (not declared here: test crates that include both
        // `common` and `skip` would load that file twice): past libtest's output capture,
        // and a failure under CI.
        let reason = "aiosmtpd is not installed (pip install aiosmtpd)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test} cannot run under CI: {reason}");
        }
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr().lock(),
            format_args!("SKIPPED {test}: {reason}\n"),
        );
    }
    ok
}

/// A running aiosmtpd sink on 127.0.0.1:`port`.
pub struct Sink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    /// Start the sink and wait until it accepts connections.
    pub fn start(port: u16) -> Sink {
        let dir = tempfile::tempdir().expect("create the sink's folder");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the SMTP sink");
        let stdout = child.stdout.take();
        let sink = Sink { child, port, dir };
        let mut ready = String::new();
        if let Some(stdout) = stdout {
            let _ = std::io::BufReader::new(stdout).read_line(&mut ready);
        }
        assert_eq!(ready.trim(), "READY", "the SMTP sink did not start");
        sink
    }

    /// Every message received so far, oldest first: `{"mail_from", "rcpt_tos",
    /// "subject", "text", "attachments": [{"filename", "content"}]}`.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read the sink's folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                let bytes = std::fs::read(f).expect("read a received message");
                serde_json::from_slice(&bytes).expect("the sink writes JSON")
            })
            .collect()
    }

    /// Block until at least `count` messages arrived (None after `patience`).
    pub fn wait_for(&self, count: usize, patience: Duration) -> Option<Vec<Value>> {
        let deadline = Instant::now() + patience;
        loop {
            let got = self.messages();
            if got.len() >= count {
                return Some(got);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An "SMTP server" that accepts connections and never answers: it holds every
/// connection open until dropped.
pub struct SilentSmtp {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SilentSmtp {
    pub fn start() -> SilentSmtp {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the silent SMTP server");
        let port = listener.local_addr().expect("local addr").port();
        // Non-blocking so the thread sees `stop` and ends with the test.
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (accepted.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        held.push(stream);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentSmtp {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentSmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
