//! The demo application server as a black box: HTTP answers, fault switches, the OpMsg
//! lines it sends on the controller's socket, and how it ends. Every test kills and reaps
//! what it started, also when it fails (the guards' `Drop`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_qos-demo-server");
/// Generous bound for things that should happen at once; never a speed assertion.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running demo server on a free loopback port (port 0, read back from its stderr).
struct Demo {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    fn start(args: &[&str], pipe: Option<&Path>) -> Demo {
        let workdir = std::env::temp_dir();
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("QOSCNTRLR_PIPE")
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(pipe) = pipe {
            cmd.env("QOSCNTRLR_PIPE", pipe);
        }
        // SAFETY: setrlimit is async-signal-safe; no core file from the /crash test.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().expect("spawn qos-demo-server");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = Arc::clone(&lines);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some((_, rest)) = line.split_once("listening on ") {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                    }
                    lines.lock().expect("stderr lines").push(line);
                }
            });
        }
        let mut demo = Demo {
            child,
            addr: String::new(),
            stderr: lines,
        };
        demo.addr = rx
            .recv_timeout(PATIENCE)
            .expect("the demo server announces its address on stderr");
        demo
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("signal the demo server");
    }

    /// Exit status within `limit`, or `None` if it is still running.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn get(&self, target: &str) -> (u16, String) {
        self.get_within(target, PATIENCE)
            .unwrap_or_else(|e| panic!("GET {target}: {e}"))
    }

    fn get_within(&self, target: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
        raw_request(
            &self.addr,
            &format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n"),
            timeout,
        )
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lines").join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raw_request(addr: &str, request: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {answer:?}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The controller's end of the message socket: collects the lines the server sends.
struct PipeListener {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    lines: mpsc::Receiver<String>,
}

impl PipeListener {
    fn bind() -> PipeListener {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("qoscntrlr.pipe");
        let listener = UnixListener::bind(&path).expect("bind the message socket");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                thread::spawn(move || read_lines(stream, tx));
            }
        });
        PipeListener {
            _dir: dir,
            path,
            lines: rx,
        }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .expect("a message line from the demo server")
    }
}

fn read_lines(stream: UnixStream, tx: mpsc::Sender<String>) {
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if tx.send(line).is_err() {
            return;
        }
    }
}

#[test]
fn health_answers_ok_and_bad_requests_are_refused() {
    let demo = Demo::start(&["--no-messages"], None);
    assert_eq!(demo.get("/health"), (200, "ok\n".to_string()));
    let post = raw_request(
        &demo.addr,
        "POST /health HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        PATIENCE,
    )
    .expect("POST /health");
    assert_eq!(post, (200, "ok\n".to_string()));

    let (status, help) = demo.get("/");
    assert_eq!(status, 200);
    for switch in [
        "/health",
        "/hang",
        "/crash",
        "/exit",
        "/leak",
        "/spike",
        "/slow-shutdown",
        "/task",
        "/exhaust",
        "/daemonize",
        "/threads",
        "/files",
    ] {
        assert!(help.contains(switch), "help lacks {switch}:\n{help}");
    }

    let (status, body) = raw_request(&demo.addr, "garbage\r\n\r\n", PATIENCE).expect("garbage");
    assert_eq!(status, 400, "{body}");
    let (status, body) = demo.get("/leak?MB=10");
    assert_eq!(status, 400, "a misspelt parameter is refused: {body}");
    assert!(body.contains("MB"), "{body}");
    let (status, _) = demo.get("/leak?mb=lots");
    assert_eq!(status, 400);
    let (status, _) = demo.get("/no-such-switch");
    assert_eq!(status, 404);
    let (status, _) = raw_request(&demo.addr, "DELETE /health HTTP/1.1\r\n\r\n", PATIENCE)
        .expect("DELETE /health");
    assert_eq!(status, 405);
    assert_eq!(
        demo.get("/health").0,
        200,
        "still serving after bad requests"
    );
}

#[test]
fn hang_stops_every_answer_but_keeps_the_process() {
    let mut demo = Demo::start(&["--no-messages"], None);
    let (status, _) = demo.get("/hang");
    assert_eq!(status, 200, "the /hang call itself is answered");
    let err = demo
        .get_within("/health", Duration::from_millis(1500))
        .expect_err("/health must not answer while hung");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    assert!(demo.get_within("/", Duration::from_millis(300)).is_err());
    assert!(demo.wait_for_exit(Duration::ZERO).is_none(), "still alive");
}

#[test]
fn timed_hang_answers_again_afterwards() {
    let demo = Demo::start(&["--no-messages"], None);
    assert_eq!(demo.get("/hang?secs=1").0, 200);
    // The request sent during the hang is answered once it is over.
    assert_eq!(demo.get("/health"), (200, "ok\n".to_string()));
    // The note may reach stderr just after the answer: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !demo.stderr_text().contains("timed hang over") {
        assert!(
            std::time::Instant::now() < deadline,
            "no 'timed hang over' note: {}",
            demo.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn crash_dies_of_sigabrt_and_exit_uses_the_code() {
    let mut demo = Demo::start(&["--no-messages"], None);
    let _ = demo.get_within("/crash", Duration::from_secs(5));
    let status = demo.wait_for_exit(PATIENCE).expect("crashed");
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");

    let mut demo = Demo::start(&["--no-messages"], None);
    assert_eq!(demo.get("/exit?code=7").0, 200);
    let status = demo.wait_for_exit(PATIENCE).expect("exited");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn messages_tell_the_life_of_the_server_and_its_tasks() {
    let pipe = PipeListener::bind();
    let mut demo = Demo::start(&[], Some(&pipe.path));
    assert_eq!(pipe.next_line(), "OpMsg=START Type=SERVER");
    assert_eq!(pipe.next_line(), "OpMsg=READY Type=SERVER");

    let (status, body) = demo.get("/task?type=COMPACT&name=events4.nsf&secs=2&progress=1");
    assert_eq!(status, 200, "{body}");
    let object = "Type=COMPACT ObjectType=DB ObjectValue=events4.nsf";
    assert_eq!(pipe.next_line(), format!("OpMsg=START {object}"));
    assert_eq!(pipe.next_line(), format!("OpMsg=PROGRESS {object}"));
    assert_eq!(pipe.next_line(), format!("OpMsg=END {object}"));

    let (status, _) = demo.get("/task?type=FIXUP&name=C:%5CProgram+Files%5Cddm.nsf&secs=0");
    assert_eq!(status, 200);
    assert_eq!(
        pipe.next_line(),
        r"OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=C:\Program Files\ddm.nsf"
    );
    let (status, _) = demo.get("/task?type=BAD%0ALINE");
    assert_eq!(status, 400, "a type that would break the line is refused");

    assert_eq!(demo.get("/exhaust?resource=SESSION_TABLE").0, 200);
    assert_eq!(pipe.next_line(), "OpMsg=EXHAUSTED Type=SESSION_TABLE");

    demo.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        pipe.next_line(),
        "OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit"
    );
    let status = demo.wait_for_exit(PATIENCE).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        pipe.lines.recv_timeout(Duration::from_millis(200)).is_err(),
        "the never-ending task sends no END"
    );
}

#[test]
fn sigint_exits_zero_and_slow_shutdown_delays_the_exit() {
    let mut demo = Demo::start(&["--no-messages"], None);
    demo.signal(nix::sys::signal::Signal::SIGINT);
    let status = demo.wait_for_exit(PATIENCE).expect("exits on SIGINT");
    assert_eq!(status.code(), Some(0));

    let mut demo = Demo::start(&["--no-messages"], None);
    let (status, body) = demo.get("/slow-shutdown?secs=2");
    assert_eq!(status, 200, "{body}");
    demo.signal(nix::sys::signal::Signal::SIGTERM);
    // It ignores the request for a while and keeps serving meanwhile.
    assert_eq!(demo.get("/health").0, 200);
    assert!(demo.wait_for_exit(Duration::from_millis(500)).is_none());
    let status = demo.wait_for_exit(PATIENCE).expect("exits after the delay");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn unreachable_pipe_is_noted_once_and_the_server_still_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nobody-listens");
    let demo = Demo::start(&[], Some(&missing));
    assert_eq!(demo.get("/exhaust").0, 200);
    assert_eq!(demo.get("/task?secs=1").0, 200);
    assert_eq!(demo.get("/health").0, 200);
    let stderr = demo.stderr_text();
    assert_eq!(
        stderr.matches("unreachable").count(),
        1,
        "one note, then silence:\n{stderr}"
    );
}

/// Kills the escaped grandchild even when the test fails.
struct EscapedProcess(nix::unistd::Pid);

impl Drop for EscapedProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn daemonize_leaves_a_grandchild_in_its_own_session() {
    let demo = Demo::start(&["--no-messages"], None);
    let (status, body) = demo.get("/daemonize");
    assert_eq!(status, 200, "{body}");
    let pid: i32 = body
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("grandchild pid in the answer");
    let escaped = EscapedProcess(nix::unistd::Pid::from_raw(pid));
    // The grandchild calls setsid() itself, right after it starts.
    let deadline = Instant::now() + PATIENCE;
    let sid = loop {
        let sid = nix::unistd::getsid(Some(escaped.0)).expect("grandchild alive");
        if sid == escaped.0 || Instant::now() >= deadline {
            break sid;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(sid, escaped.0, "own session");
    assert_ne!(
        nix::unistd::getpgid(Some(escaped.0)).expect("pgid"),
        nix::unistd::getpgid(Some(demo.pid())).expect("server pgid"),
        "left the server's process group"
    );
}

#[test]
fn leak_threads_and_files_grow_the_process() {
    let demo = Demo::start(&["--no-messages"], None);
    let pid = demo.child.id();
    let rss_kb = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    };
    let count = |dir: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{dir}"))
            .expect(dir)
            .count()
    };
    let before_rss = rss_kb();
    let before_fds = count("fd");
    let before_threads = count("task");
    assert_eq!(demo.get("/leak?mb=32").0, 200);
    assert_eq!(demo.get("/files?n=50").0, 200);
    assert_eq!(demo.get("/threads?n=20").0, 200);
    assert!(
        rss_kb() >= before_rss + 30 * 1024,
        "RSS grew by the leak: {before_rss} kB -> {} kB",
        rss_kb()
    );
    assert!(count("fd") >= before_fds + 50);
    assert!(count("task") >= before_threads + 20);
}

/// `/leak?every=` grows the process by itself up to its cap; `/spike` holds memory for a
/// while and then gives it back to the system (what an `average` rule must tell apart).
#[test]
fn slow_leak_grows_to_its_cap_and_a_spike_gives_its_memory_back() {
    let demo = Demo::start(&["--no-messages"], None);
    let pid = demo.child.id();
    let rss_mb = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("VmRSS")
            / 1024
    };
    let wait_until = |what: &str, done: &dyn Fn(u64) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = rss_mb();
            if done(now) {
                return now;
            }
            assert!(Instant::now() < deadline, "{what}: RSS {now} MB");
            thread::sleep(Duration::from_millis(50));
        }
    };
    let base = rss_mb();
    let (status, body) = demo.get("/spike?mb=80&secs=1");
    assert_eq!(status, 200, "{body}");
    wait_until("spike held", &|now| now >= base + 75);
    wait_until("spike given back", &|now| now < base + 20);
    assert_eq!(
        demo.get("/spike?mb=10&secs=5&every=5").0,
        400,
        "overlapping spikes"
    );

    let (status, body) = demo.get("/leak?mb=8&every=1&max=40");
    assert_eq!(status, 200, "{body}");
    wait_until("leak reached its cap", &|now| now >= base + 38);
    let (_, help) = demo.get("/");
    assert!(help.contains("now: leaked 40 MB"), "{help}");
    // It stops there. A wait for something that must NOT happen (growth past the cap),
    // so no polling can replace it: two more of its 1 s steps.
    const PAST_THE_CAP: Duration = Duration::from_secs(2);
    thread::sleep(PAST_THE_CAP);
    let (_, help) = demo.get("/");
    assert!(help.contains("now: leaked 40 MB"), "{help}");
}
