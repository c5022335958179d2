//! `qos-demo-server`: the small HTTP/1.1 application server qoscntrlr supervises in demos,
//! tests and benchmarks. It is built into the `qoscntrlr` binary as well as into its own
//! `qos-demo-server` binary: `qoscntrlr` started under the name `qos-demo-server`
//! (argv[0]) runs [`main`], so `cargo run -- run -c conf/dcontroller.ini` works on a
//! fresh clone where only the `qoscntrlr` binary has been built. It owns nothing of the controller; it plays a server that can be
//! made to misbehave on purpose (hang, crash, leak, stall a long-running task, exhaust a
//! resource, shut down slowly, escape its process group) with plain `curl` calls, and it
//! reports its life on the controller's message socket (OpMsg lines) like a Domino
//! server does.
//!
//! Deliberately std-only (plus `libc` for signals and `setsid`): a thread per connection,
//! one request per connection, no async runtime, so that its behaviour under faults is
//! easy to reason about.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};

use crate::httphead::Head;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The demo server's program name (argv[0] when run from the `qoscntrlr` binary).
pub const PROGRAM: &str = "qos-demo-server";
const DEFAULT_LISTEN: &str = "127.0.0.1:8089";
/// The controller puts its message socket path here for the server it spawns.
const PIPE_ENV: &str = "QOSCNTRLR_PIPE";
/// Hidden arguments of `/daemonize`: the short-lived middle process, and the escaped
/// grandchild it leaves behind.
const DAEMON_CHILD_ARG: &str = "--daemonize-child";
const DAEMON_SLEEPER_ARG: &str = "--daemonize-sleeper";

/// A request head larger than this is refused (400): nothing legitimate here needs more.
const MAX_HEAD: usize = crate::httphead::MAX_HEAD;
/// Request bodies are read and discarded (so closing never resets the answer away);
/// anything larger is refused.
const MAX_BODY: usize = 64 * 1024;
/// A client that sends nothing for this long loses its connection thread.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the accept loop looks at the signal flag.
const POLL_TICK_MS: i32 = 100;

const MAX_LEAK_MB_PER_CALL: u64 = 64 * 1024;
const MAX_THREADS_PER_CALL: u64 = 10_000;
const MAX_FILES_PER_CALL: u64 = 100_000;

/// Set by the SIGTERM/SIGINT handler; the only thing the handler does (async-signal-safe).
static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_signal: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

/// Run the demo server with the process's arguments (after argv[0]).
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(DAEMON_CHILD_ARG) => return daemonize_child(),
        Some(DAEMON_SLEEPER_ARG) => daemon_sleeper(),
        _ => {}
    }
    let options = match Options::parse(&args) {
        Ok(ParseOutcome::Run(options)) => options,
        Ok(ParseOutcome::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{PROGRAM}: {message}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = install_signal_handlers() {
        eprintln!("{PROGRAM}: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    serve(options)
}

// ---------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone)]
struct Options {
    listen: String,
    pipe: Option<PathBuf>,
    name: String,
    startup_delay: Duration,
    shutdown_delay: Duration,
    messages: bool,
}

enum ParseOutcome {
    Run(Options),
    Help,
}

impl Options {
    fn parse(args: &[String]) -> Result<ParseOutcome, String> {
        let mut options = Options {
            listen: DEFAULT_LISTEN.to_string(),
            pipe: None,
            name: PROGRAM.to_string(),
            startup_delay: Duration::ZERO,
            shutdown_delay: Duration::ZERO,
            messages: true,
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            // Accept both `--key value` and `--key=value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = |name: &str| -> Result<String, String> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => iter
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{name} needs a value")),
                }
            };
            match flag {
                "-h" | "--help" => return Ok(ParseOutcome::Help),
                "--listen" => options.listen = value("--listen")?,
                "--pipe" => options.pipe = Some(PathBuf::from(value("--pipe")?)),
                "--name" => options.name = value("--name")?,
                "--startup-delay" => {
                    options.startup_delay = parse_duration(&value("--startup-delay")?)
                        .map_err(|e| format!("--startup-delay: {e}"))?
                }
                "--shutdown-delay" => {
                    options.shutdown_delay = parse_duration(&value("--shutdown-delay")?)
                        .map_err(|e| format!("--shutdown-delay: {e}"))?
                }
                "--no-messages" => options.messages = false,
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        if options.pipe.is_none() {
            options.pipe = std::env::var_os(PIPE_ENV)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from);
        }
        Ok(ParseOutcome::Run(options))
    }
}

fn usage() -> String {
    format!(
        "usage: {PROGRAM} [--listen ADDR] [--pipe PATH] [--name NAME] [--startup-delay D]\n\
         \x20                      [--shutdown-delay D] [--no-messages]\n\
         \n\
         \x20 --listen ADDR        HTTP address [default: {DEFAULT_LISTEN}; port 0 = any free port]\n\
         \x20 --pipe PATH          controller message socket [default: ${PIPE_ENV}]\n\
         \x20 --name NAME          name shown in answers and on stderr [default: {PROGRAM}]\n\
         \x20 --startup-delay D    wait this long before listening (e.g. 2s, 500ms, 1m)\n\
         \x20 --shutdown-delay D   on SIGTERM keep running this long before exiting\n\
         \x20 --no-messages        send no OpMsg lines\n\
         \n\
         GET or POST http://ADDR/ lists the fault switches.\n"
    )
}

/// `500ms`, `2s`, `1m`, `1min`, `1h`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (expected e.g. 500ms, 2s, 1m, 1h)"))?;
    let millis_per_unit = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (expected ms, s, m, min or h)"
            ))
        }
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{text}' is too long"))
}

fn install_signal_handlers() -> std::io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler
        // only stores to an atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_terminate as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Messages to the controller (OpMsg lines, one per line)

/// One line per message on the controller's Unix stream socket. Reconnects on the next
/// message after a failure (the controller may have been restarted); says once on stderr
/// that messages are being skipped, then stays quiet.
struct Messenger {
    path: Option<PathBuf>,
    state: Mutex<MessengerState>,
}

#[derive(Default)]
struct MessengerState {
    stream: Option<UnixStream>,
    noted: bool,
}

impl Messenger {
    fn new(path: Option<PathBuf>, enabled: bool) -> Messenger {
        let path = if enabled { path } else { None };
        Messenger {
            path,
            state: Mutex::new(MessengerState::default()),
        }
    }

    fn send(&self, line: &str) {
        let Some(path) = &self.path else { return };
        let mut state = lock(&self.state);
        for _attempt in 0..2 {
            if state.stream.is_none() {
                match UnixStream::connect(path) {
                    Ok(stream) => {
                        // A wedged controller must not wedge the server with it.
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                        state.stream = Some(stream);
                    }
                    Err(e) => {
                        if !state.noted {
                            eprintln!(
                                "{PROGRAM}: message socket {} unreachable ({e}); skipping messages",
                                path.display()
                            );
                            state.noted = true;
                        }
                        return;
                    }
                }
            }
            if let Some(stream) = state.stream.as_mut() {
                if stream.write_all(format!("{line}\n").as_bytes()).is_ok() {
                    return;
                }
            }
            // Broken connection: drop it and reconnect once.
            state.stream = None;
        }
        if !state.noted {
            eprintln!(
                "{PROGRAM}: cannot write to message socket {}; skipping messages",
                path.display()
            );
            state.noted = true;
        }
    }
}

/// A poisoned lock only means another connection thread panicked; the data it guards
/// (a socket, a list of buffers) is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------
// Server state and main loop

struct Server {
    name: String,
    messenger: Messenger,
    /// While set, no request gets an answer.
    hung: AtomicBool,
    /// `Instant` (as millis since `started`) at which a timed hang ends; 0 = never.
    hang_until_ms: AtomicU64,
    /// How long to keep running after SIGTERM, in milliseconds.
    shutdown_delay_ms: AtomicU64,
    started: Instant,
    leaked: Mutex<Vec<Vec<u8>>>,
    open_files: Mutex<Vec<File>>,
    extra_threads: AtomicU64,
    next_task: AtomicU64,
}

impl Server {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_hung(&self) -> bool {
        if !self.hung.load(Ordering::SeqCst) {
            return false;
        }
        let until = self.hang_until_ms.load(Ordering::SeqCst);
        if until != 0 && self.elapsed_ms() >= until {
            self.hung.store(false, Ordering::SeqCst);
            eprintln!("{}: timed hang over, answering again", self.name);
            return false;
        }
        true
    }
}

fn serve(options: Options) -> ExitCode {
    let server = Arc::new(Server {
        name: options.name.clone(),
        messenger: Messenger::new(options.pipe.clone(), options.messages),
        hung: AtomicBool::new(false),
        hang_until_ms: AtomicU64::new(0),
        shutdown_delay_ms: AtomicU64::new(
            u64::try_from(options.shutdown_delay.as_millis()).unwrap_or(u64::MAX),
        ),
        started: Instant::now(),
        leaked: Mutex::new(Vec::new()),
        open_files: Mutex::new(Vec::new()),
        extra_threads: AtomicU64::new(0),
        next_task: AtomicU64::new(1),
    });
    server.messenger.send("OpMsg=START Type=SERVER");

    // The startup delay plays a server that takes a while to open its doors; a SIGTERM
    // during it still ends the process promptly.
    let startup_ends = Instant::now() + options.startup_delay;
    while Instant::now() < startup_ends {
        if TERMINATE.load(Ordering::SeqCst) {
            server
                .messenger
                .send("OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit");
            return ExitCode::SUCCESS;
        }
        thread::sleep(Duration::from_millis(20));
    }

    let listener = match TcpListener::bind(&options.listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot listen on {}: {e}", options.listen);
            return ExitCode::from(1);
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| options.listen.clone());
    // Tests and scripts read this line to learn the port when started with port 0.
    eprintln!(
        "{}: listening on {local} (pid {})",
        server.name,
        std::process::id()
    );
    server.messenger.send("OpMsg=READY Type=SERVER");

    let mut exit_at: Option<Instant> = None;
    loop {
        if TERMINATE.load(Ordering::SeqCst) {
            let exit_at = *exit_at.get_or_insert_with(|| begin_shutdown(&server));
            if Instant::now() >= exit_at {
                eprintln!("{}: stopped", server.name);
                return ExitCode::SUCCESS;
            }
        }
        if !wait_readable(&listener) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _peer)) => {
                let server = Arc::clone(&server);
                let spawned = thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || handle_connection(&server, stream));
                if let Err(e) = spawned {
                    // Out of threads (e.g. after /threads): refuse this one, keep serving.
                    eprintln!("{PROGRAM}: cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("{PROGRAM}: accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Called once, when SIGTERM/SIGINT has arrived: sends END/SERVER and returns when the
/// process should exit (later than now when a slow shutdown is armed).
fn begin_shutdown(server: &Server) -> Instant {
    server
        .messenger
        .send("OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit");
    let delay = Duration::from_millis(server.shutdown_delay_ms.load(Ordering::SeqCst));
    if !delay.is_zero() {
        eprintln!(
            "{}: termination requested; slow shutdown armed, exiting in {} ms",
            server.name,
            delay.as_millis()
        );
    }
    Instant::now() + delay
}

/// Waits up to one tick for a connection, so the signal flag is looked at regularly.
fn wait_readable(listener: &TcpListener) -> bool {
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut fds, 1, POLL_TICK_MS) };
    ready > 0 && (fds.revents & libc::POLLIN) != 0
}

// ---------------------------------------------------------------------------------------
// HTTP

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
}

struct Response {
    status: u16,
    body: String,
    /// Runs after the answer was written and the connection closed.
    after: Option<Box<dyn FnOnce() + Send>>,
}

impl Response {
    fn ok(body: impl Into<String>) -> Response {
        Response {
            status: 200,
            body: body.into(),
            after: None,
        }
    }

    fn error(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            body: body.into(),
            after: None,
        }
    }

    fn then(mut self, after: impl FnOnce() + Send + 'static) -> Response {
        self.after = Some(Box::new(after));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn handle_connection(server: &Arc<Server>, stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let request = read_request(&stream);

    // A hung server accepts the connection and then never answers, like a server whose
    // worker threads are all stuck; the request waits until a timed hang ends.
    while server.is_hung() {
        if TERMINATE.load(Ordering::SeqCst) {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }

    let response = match request {
        Ok(request) => route(server, &request),
        Err(message) => Response::error(400, format!("bad request: {message}\n")),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.body.len()
    );
    let mut writer = &stream;
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(response.body.as_bytes());
    let _ = writer.flush();
    let _ = stream.shutdown(Shutdown::Both);
    if let Some(after) = response.after {
        after();
    }
}

/// The request head through the project's one bounded head reader (at most
/// [`MAX_HEAD`] bytes, all within [`READ_TIMEOUT`]), then the body, read and dropped.
fn read_request(stream: &TcpStream) -> Result<Request, String> {
    let (head, rest) = match crate::httphead::read_blocking(stream, MAX_HEAD, READ_TIMEOUT) {
        Ok(Head::Complete { head, rest }) => (head, rest),
        Ok(Head::TooLarge) => return Err(format!("request head longer than {MAX_HEAD} bytes")),
        Ok(Head::Closed { .. }) => {
            return Err("connection closed before the end of the request head".into())
        }
        Ok(Head::TimedOut) => {
            return Err(format!(
                "no complete request head within {} s",
                READ_TIMEOUT.as_secs()
            ))
        }
        Err(e) => return Err(format!("reading the request: {e}")),
    };
    let text = std::str::from_utf8(&head).map_err(|_| "request head is not UTF-8".to_string())?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let first_line = lines.next().map(str::to_string);
    let mut content_length = 0usize;
    for text in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| format!("malformed header line '{text}'"))?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length '{}'", value.trim()))?;
        }
    }
    if content_length > MAX_BODY {
        return Err(format!("body longer than {MAX_BODY} bytes"));
    }
    let missing = content_length.saturating_sub(rest.len());
    if missing > 0 {
        let mut body = vec![0u8; missing];
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        (&*stream)
            .read_exact(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
    }

    let first_line = first_line.unwrap_or_default();
    let mut parts = first_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line '{first_line}'"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported protocol '{version}'"));
    }
    if !target.starts_with('/') {
        return Err(format!("request target '{target}' is not a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: percent_decode(path)?,
        query: parse_query(query)?,
    })
}

fn parse_query(query: &str) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(percent_decode(key)?, percent_decode(value)?);
    }
    Ok(map)
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in '{text}'"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("'{text}' does not decode to UTF-8"))
}

// ---------------------------------------------------------------------------------------
// Endpoints

/// Query parameters of one endpoint: unknown names are refused so a typo (`?MB=10`)
/// does not silently run with the default.
struct Params<'a> {
    query: &'a HashMap<String, String>,
}

impl<'a> Params<'a> {
    fn check(query: &'a HashMap<String, String>, allowed: &[&str]) -> Result<Params<'a>, String> {
        for key in query.keys() {
            if !allowed.contains(&key.as_str()) {
                let expected = if allowed.is_empty() {
                    "no parameters".to_string()
                } else {
                    allowed.join(", ")
                };
                return Err(format!("unknown parameter '{key}' (expected {expected})"));
            }
        }
        Ok(Params { query })
    }

    fn number(&self, key: &str, default: u64, max: u64) -> Result<u64, String> {
        match self.query.get(key) {
            None => Ok(default),
            Some(text) => {
                let value: u64 = text.trim().parse().map_err(|_| {
                    format!("{key}='{text}' is not a whole number (expected 0..={max})")
                })?;
                if value > max {
                    return Err(format!("{key}={value} is too large (at most {max})"));
                }
                Ok(value)
            }
        }
    }

    fn optional_number(&self, key: &str, max: u64) -> Result<Option<u64>, String> {
        if self.query.contains_key(key) {
            self.number(key, 0, max).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A message token (`Type=`): letters, digits, `_` and `-`, so it cannot break the line.
    fn token(&self, key: &str, default: &str) -> Result<String, String> {
        let value = self
            .query
            .get(key)
            .map(String::as_str)
            .unwrap_or(default)
            .trim();
        if value.is_empty()
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "{key}='{value}' must be letters, digits, '_' or '-' (e.g. {default})"
            ));
        }
        Ok(value.to_ascii_uppercase())
    }

    /// A message value (`ObjectValue=`): anything on one line; spaces are fine.
    fn value(&self, key: &str, default: &str) -> Result<String, String> {
        let value = self
            .query
            .get(key)
            .map(String::as_str)
            .unwrap_or(default)
            .trim();
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(format!(
                "{key} must be non-empty text on one line (e.g. {default})"
            ));
        }
        Ok(value.to_string())
    }
}

fn route(server: &Arc<Server>, request: &Request) -> Response {
    if !matches!(request.method.as_str(), "GET" | "POST" | "HEAD") {
        return Response::error(
            405,
            format!("method {} not allowed (use GET or POST)\n", request.method),
        );
    }
    let result = match request.path.as_str() {
        "/" => Params::check(&request.query, &[]).map(|_| Response::ok(help(server))),
        "/health" => Params::check(&request.query, &[]).map(|_| Response::ok("ok\n")),
        "/hang" => hang(server, &request.query),
        "/crash" => Params::check(&request.query, &[]).map(|_| crash(server)),
        "/exit" => exit(server, &request.query),
        "/leak" => leak(server, &request.query),
        "/spike" => spike(server, &request.query),
        "/slow-shutdown" => slow_shutdown(server, &request.query),
        "/task" => task(server, &request.query),
        "/exhaust" => exhaust(server, &request.query),
        "/daemonize" => Params::check(&request.query, &[]).and_then(|_| daemonize(server)),
        "/threads" => threads(server, &request.query),
        "/files" => files(server, &request.query),
        other => {
            return Response::error(404, format!("no such switch '{other}'; GET / lists them\n"))
        }
    };
    result.unwrap_or_else(|message| Response::error(400, format!("{message}\n")))
}

fn help(server: &Server) -> String {
    let mut text = format!(
        "{PROGRAM} '{}' (pid {}): a demo application server for qoscntrlr.\n\
         Every switch answers GET and POST, e.g. curl http://ADDR/hang\n\n",
        server.name,
        std::process::id()
    );
    let switches = [
        ("/health", "200 ok (never answers while hung)"),
        (
            "/hang[?secs=N]",
            "stop answering every request, /health included (for N s, default: for good)",
        ),
        ("/crash", "abort: the process dies of SIGABRT"),
        ("/exit?code=N", "exit with code N (default 1)"),
        (
            "/leak?mb=N[&every=S&max=M]",
            "allocate and touch N MB more (default 64); with every: N MB more every S s, a slow leak, until M MB in all (default 1024)",
        ),
        (
            "/spike?mb=N&secs=S[&every=P]",
            "hold N MB more for S s, then give it back to the system (default 100 MB, 2 s); with every: again every P s",
        ),
        (
            "/slow-shutdown?secs=N",
            "on SIGTERM keep running N s before exiting (default 60; 0 disarms)",
        ),
        (
            "/task?type=COMPACT&name=events4.nsf&secs=N&progress=S",
            "long-running task: START, PROGRESS every S s, END after N s (default 60; 0 = never)",
        ),
        (
            "/exhaust?resource=SESSION_TABLE",
            "report an exhausted resource (OpMsg=EXHAUSTED)",
        ),
        (
            "/daemonize",
            "start a grandchild in its own session that sleeps forever",
        ),
        ("/threads?n=N", "start N idle threads (default 100)"),
        ("/files?n=N", "open N more file descriptors (default 100)"),
    ];
    for (switch, what) in switches {
        let _ = writeln!(text, "  {switch:<55} {what}");
    }
    let leaked_mb = lock(&server.leaked).len();
    let files = lock(&server.open_files).len();
    let _ = writeln!(
        text,
        "\nnow: leaked {leaked_mb} MB, {} extra threads, {files} extra files, slow shutdown {} s",
        server.extra_threads.load(Ordering::SeqCst),
        server.shutdown_delay_ms.load(Ordering::SeqCst) / 1000
    );
    text
}

fn hang(server: &Server, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["secs"])?;
    let secs = params.optional_number("secs", 365 * 24 * 3600)?;
    let until = match secs {
        Some(secs) if secs > 0 => server.elapsed_ms().saturating_add(secs * 1000),
        _ => 0,
    };
    server.hang_until_ms.store(until, Ordering::SeqCst);
    let how_long = match secs {
        Some(secs) if secs > 0 => format!("for {secs} s"),
        _ => "until killed".to_string(),
    };
    eprintln!("{}: hanging {how_long}", server.name);
    // Armed before answering, so no request that follows this answer gets through; the
    // /hang request itself is past the hang check already and is still answered.
    server.hung.store(true, Ordering::SeqCst);
    Ok(Response::ok(format!(
        "hanging {how_long}: no request gets an answer from now on\n"
    )))
}

fn crash(server: &Server) -> Response {
    eprintln!("{}: crashing (abort)", server.name);
    Response::ok("crashing now (SIGABRT)\n").then(|| std::process::abort())
}

fn exit(server: &Server, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["code"])?;
    let code = params.number("code", 1, 255)?;
    let code = i32::try_from(code).map_err(|_| format!("code={code} out of range"))?;
    eprintln!("{}: exiting with code {code}", server.name);
    Ok(Response::ok(format!("exiting with code {code}\n")).then(move || std::process::exit(code)))
}

fn leak(server: &Arc<Server>, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["mb", "every", "max"])?;
    let mb = params.number("mb", 64, MAX_LEAK_MB_PER_CALL)?;
    let every = params.optional_number("every", 24 * 3600)?;
    let max = params.number("max", 1024, MAX_LEAK_MB_PER_CALL)?;
    match every {
        // A slow leak: a thread of its own keeps leaking, as a real one would, and stops
        // at `max` MB in all so a demo left alone does not take the machine down.
        Some(secs) if secs > 0 => {
            let leaker = Arc::clone(server);
            thread::Builder::new()
                .name("leak".into())
                .spawn(move || loop {
                    thread::sleep(Duration::from_secs(secs));
                    let room = max.saturating_sub(lock(&leaker.leaked).len() as u64);
                    if room == 0 || leak_mb(&leaker, mb.min(room)).is_err() {
                        eprintln!("{}: slow leak stopped", leaker.name);
                        return;
                    }
                })
                .map_err(|e| format!("cannot start the leaking thread: {e}"))?;
            eprintln!(
                "{}: leaking {mb} MB every {secs} s up to {max} MB",
                server.name
            );
            Ok(Response::ok(format!(
                "leaking {mb} MB every {secs} s from now on, up to {max} MB in all\n"
            )))
        }
        _ => match leak_mb(server, mb) {
            Ok(total) => Ok(Response::ok(format!(
                "leaked {mb} MB more, {total} MB in total\n"
            ))),
            Err(total) => Ok(Response::error(
                500,
                format!("out of memory after {total} MB\n"),
            )),
        },
    }
}

/// Leak `mb` more MB; the total leaked (Err: the total when memory ran out).
fn leak_mb(server: &Server, mb: u64) -> Result<usize, usize> {
    let mut leaked = lock(&server.leaked);
    for _ in 0..mb {
        // Non-zero fill so every page is really touched (resident), not just reserved.
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(1 << 20).is_err() {
            return Err(leaked.len());
        }
        chunk.resize(1 << 20, 0xA5u8);
        leaked.push(chunk);
    }
    let total = leaked.len();
    eprintln!("{}: leaked {mb} MB (total {total} MB)", server.name);
    Ok(total)
}

/// Anonymous memory mapped on its own and unmapped when dropped: a spike really goes back
/// to the system when it ends (memory from `malloc` might stay in the process's heap).
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    /// Map `len` bytes and touch every page, so they are resident.
    fn touched(len: usize) -> Option<Mapped> {
        // SAFETY: an anonymous private mapping at an address the kernel chooses has no
        // preconditions; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the mapping is `len` bytes, readable and writable, and ours alone.
        let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
        for page in bytes.chunks_mut(4096) {
            page[0] = 0xA5;
        }
        Some(Mapped { ptr, len })
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `touched`, unmapped once.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

fn spike(server: &Arc<Server>, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["mb", "secs", "every"])?;
    let mb = params.number("mb", 100, MAX_LEAK_MB_PER_CALL)?;
    let secs = params.number("secs", 2, 24 * 3600)?;
    let every = params
        .optional_number("every", 24 * 3600)?
        .filter(|p| *p > 0);
    if every.is_some_and(|p| p <= secs) {
        return Err(format!(
            "every={} must be longer than secs={secs} (spikes would overlap)",
            every.unwrap_or(0)
        ));
    }
    let len = usize::try_from(mb << 20).map_err(|_| format!("mb={mb} is too large"))?;
    let spiker = Arc::clone(server);
    thread::Builder::new()
        .name("spike".into())
        .spawn(move || loop {
            let started = Instant::now();
            match Mapped::touched(len) {
                Some(held) => {
                    eprintln!("{}: spike of {mb} MB for {secs} s", spiker.name);
                    thread::sleep(Duration::from_secs(secs));
                    drop(held);
                }
                None => eprintln!("{}: spike of {mb} MB: out of memory", spiker.name),
            }
            let Some(period) = every else { return };
            thread::sleep(Duration::from_secs(period).saturating_sub(started.elapsed()));
        })
        .map_err(|e| format!("cannot start the spiking thread: {e}"))?;
    Ok(Response::ok(match every {
        Some(period) => format!("holding {mb} MB for {secs} s every {period} s from now on\n"),
        None => format!("holding {mb} MB for {secs} s\n"),
    }))
}

fn slow_shutdown(server: &Server, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["secs"])?;
    let secs = params.number("secs", 60, 24 * 3600)?;
    server
        .shutdown_delay_ms
        .store(secs * 1000, Ordering::SeqCst);
    eprintln!("{}: slow shutdown set to {secs} s", server.name);
    Ok(Response::ok(if secs == 0 {
        "slow shutdown disarmed: SIGTERM exits at once\n".to_string()
    } else {
        format!("slow shutdown armed: on SIGTERM keep running {secs} s, then exit\n")
    }))
}

fn task(server: &Arc<Server>, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["type", "name", "secs", "progress"])?;
    let kind = params.token("type", "COMPACT")?;
    let name = params.value("name", "events4.nsf")?;
    let secs = params.number("secs", 60, 365 * 24 * 3600)?;
    let progress = params.optional_number("progress", 24 * 3600)?;
    if progress == Some(0) {
        return Err("progress=0: give the seconds between PROGRESS messages (>= 1)".into());
    }
    if server.messenger.path.is_none() {
        return Ok(Response::error(
            400,
            "no message socket (--pipe / $QOSCNTRLR_PIPE unset or --no-messages): a task would be invisible\n",
        ));
    }
    let id = server.next_task.fetch_add(1, Ordering::SeqCst);
    let object = format!("Type={kind} ObjectType=DB ObjectValue={name}");
    server.messenger.send(&format!("OpMsg=START {object}"));
    let server_ref = Arc::clone(server);
    let spawned = thread::Builder::new()
        .name(format!("task-{id}"))
        .spawn(move || run_task(&server_ref, &object, secs, progress));
    if let Err(e) = spawned {
        return Ok(Response::error(
            500,
            format!("cannot start the task thread: {e}\n"),
        ));
    }
    let ends = if secs == 0 {
        "never ends".to_string()
    } else {
        format!("ends in {secs} s")
    };
    let reports = match progress {
        Some(s) => format!("progress every {s} s"),
        None => "no progress reports".to_string(),
    };
    eprintln!(
        "{}: task {id} {kind} {name}: {ends}, {reports}",
        server.name
    );
    Ok(Response::ok(format!(
        "task {id} started: {kind} {name}, {ends}, {reports}\n"
    )))
}

fn run_task(server: &Server, object: &str, secs: u64, progress: Option<u64>) {
    let started = Instant::now();
    let end = (secs > 0).then(|| started + Duration::from_secs(secs));
    let mut next_progress = progress.map(|s| started + Duration::from_secs(s));
    loop {
        let now = Instant::now();
        if let Some(end) = end {
            if now >= end {
                server.messenger.send(&format!("OpMsg=END {object}"));
                return;
            }
        }
        if let (Some(at), Some(every)) = (next_progress, progress) {
            if now >= at {
                server.messenger.send(&format!("OpMsg=PROGRESS {object}"));
                next_progress = Some(at + Duration::from_secs(every));
            }
        }
        let wake = [end, next_progress].into_iter().flatten().min();
        match wake {
            Some(wake) => thread::sleep(wake.saturating_duration_since(Instant::now())),
            // Never ends and never reports: nothing left to do but stay "in progress".
            None => thread::sleep(Duration::from_secs(3600)),
        }
    }
}

fn exhaust(server: &Server, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["resource"])?;
    let resource = params.token("resource", "SESSION_TABLE")?;
    if server.messenger.path.is_none() {
        return Ok(Response::error(
            400,
            "no message socket (--pipe / $QOSCNTRLR_PIPE unset or --no-messages)\n",
        ));
    }
    server
        .messenger
        .send(&format!("OpMsg=EXHAUSTED Type={resource}"));
    eprintln!("{}: reported {resource} exhausted", server.name);
    Ok(Response::ok(format!("reported {resource} exhausted\n")))
}

/// Starts a child that starts a grandchild and exits at once; the grandchild calls
/// `setsid()` (leaving the server's process group and session) and sleeps forever. Only
/// a controller that kills the whole tree (not just the group) gets rid of it.
fn daemonize(server: &Server) -> Result<Response, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    // arg0: when this is the qoscntrlr binary, the name selects the demo server.
    let output = Command::new(&exe)
        .arg0(PROGRAM)
        .arg(DAEMON_CHILD_ARG)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let pid = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || pid.parse::<u32>().is_err() {
        return Ok(Response::error(
            500,
            format!("daemonize failed: {}\n", output.status),
        ));
    }
    eprintln!("{}: escaped grandchild pid {pid}", server.name);
    Ok(Response::ok(format!(
        "started grandchild pid {pid} in its own session (sleeps forever)\n"
    )))
}

/// The middle process of `/daemonize`: starts the sleeper, prints its pid, exits so the
/// sleeper is orphaned (adopted by init or the controller as subreaper).
fn daemonize_child() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(_) => return ExitCode::from(1),
    };
    match Command::new(exe)
        .arg0(PROGRAM)
        .arg(DAEMON_SLEEPER_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => {
            println!("{}", child.id());
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::from(1),
    }
}

fn daemon_sleeper() -> ! {
    // SAFETY: setsid has no memory-safety preconditions; it fails harmlessly if we
    // already lead a group.
    unsafe {
        libc::setsid();
    }
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

fn threads(server: &Server, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["n"])?;
    let n = params.number("n", 100, MAX_THREADS_PER_CALL)?;
    let mut started = 0u64;
    for _ in 0..n {
        let spawned = thread::Builder::new()
            .name("idle".into())
            .stack_size(64 * 1024)
            .spawn(|| loop {
                thread::park();
            });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => {
                let total = server.extra_threads.fetch_add(started, Ordering::SeqCst) + started;
                return Ok(Response::error(
                    500,
                    format!("started {started} of {n} threads ({total} extra in total): {e}\n"),
                ));
            }
        }
    }
    let total = server.extra_threads.fetch_add(started, Ordering::SeqCst) + started;
    eprintln!("{}: {total} extra threads", server.name);
    Ok(Response::ok(format!(
        "started {started} idle threads, {total} extra in total\n"
    )))
}

fn files(server: &Server, query: &HashMap<String, String>) -> Result<Response, String> {
    let params = Params::check(query, &["n"])?;
    let n = params.number("n", 100, MAX_FILES_PER_CALL)?;
    let mut open = lock(&server.open_files);
    for i in 0..n {
        match File::open("/dev/null") {
            Ok(file) => open.push(file),
            Err(e) => {
                return Ok(Response::error(
                    500,
                    format!(
                        "opened {i} of {n} files ({} extra in total): {e}\n",
                        open.len()
                    ),
                ))
            }
        }
    }
    let total = open.len();
    eprintln!("{}: {total} extra open files", server.name);
    Ok(Response::ok(format!(
        "opened {n} more files, {total} extra in total\n"
    )))
}
