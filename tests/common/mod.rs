//! Shared harness of the `run_*` end-to-end tests: a real `qoscntrlr run` child on a
//! dcontroller.ini in a fresh tempdir (the data directory), supervising the real demo
//! server (or a fixture script) on a free loopback port, with short timings.
//!
//! It owns the test side of every effect: waiting for log lines in order (polling the
//! `qoscntrlr*.out` file, failing with the whole log), HTTP requests to the demo server,
//! the client subcommands (`status --json`, `send`, `pause`, ...), and cleanup. Every
//! process the test starts carries the environment marker `QOS_E2E_MARKER=<tempdir>`
//! (inherited down the whole tree, setsid grandchildren included), so the `Drop` guard
//! finds and SIGKILLs whatever is left by scanning /proc — also when the test panics.

// Each test binary uses a different subset of the harness.
#![allow(dead_code)]

pub mod smtp;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const CONTROLLER: &str = env!("CARGO_BIN_EXE_qoscntrlr");
pub const DEMO: &str = env!("CARGO_BIN_EXE_qos-demo-server");
/// Generous bound for anything that should happen "soon"; never a speed assertion.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// The name the tests give the server: slashes and `=` as in a Domino name.
pub const SERVER_NAME: &str = "CN=e2e/O=qos";
const MARKER_ENV: &str = "QOS_E2E_MARKER";
const POLL: Duration = Duration::from_millis(20);

/// Path of a fixture server script.
pub fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/servers/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A loopback port nobody listens on now, never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
        let port = listener.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// What a client subcommand printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// One controller under test, its data directory and its configuration.
pub struct Harness {
    dir: tempfile::TempDir,
    pub port: u16,
    pub ini: PathBuf,
    /// Text the ini starts with (a shipped example with its per-run placeholders
    /// substituted); `keys` follow it, so they win (the reader's "last value wins").
    base_text: Option<String>,
    keys: Vec<(String, String)>,
    child: Option<Child>,
    /// Lines of the current `.out` already matched by `wait_for` (they match in order).
    cursor: usize,
    runs: usize,
    /// Inodes of the `.out` files of earlier runs: until the new run renames them to
    /// `.log` they must not be mistaken for its log.
    previous_outs: HashSet<u64>,
    /// The `qoscntrlr` binary `start` runs (default [`CONTROLLER`]).
    controller: PathBuf,
    /// Extra variables for the controller (`run`) only.
    run_env: Vec<(String, String)>,
}

impl Harness {
    /// The demo server on a free port, probed over HTTP, plus `overrides` (an empty value
    /// removes a key).
    pub fn demo(overrides: &[(&str, &str)]) -> Harness {
        let port = free_port();
        let command = shell_words::join([DEMO, "--listen", &format!("127.0.0.1:{port}")]);
        let probe = format!("http://127.0.0.1:{port}/health");
        let mut keys = vec![
            ("SERVER_COMMAND".to_string(), command),
            ("QOS_PROBE".to_string(), probe),
        ];
        keys.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Harness::with_keys(port, keys)
    }

    /// `command` (shell words) as the server, plus `overrides`.
    pub fn server(command: &str, overrides: &[(&str, &str)]) -> Harness {
        let port = free_port();
        let mut keys = vec![("SERVER_COMMAND".to_string(), command.to_string())];
        keys.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Harness::with_keys(port, keys)
    }

    /// A controller on an ini whose text `base` writes, given the data directory (a fresh
    /// tempdir, mode 0755 so that a server switched to SERVER_USER can reach it) and a
    /// free port — e.g. a shipped example read verbatim with its per-run placeholders
    /// substituted — followed by `DATA_DIRECTORY=<the tempdir>` and `overrides`, appended
    /// as `KEY=VALUE` lines at the end (the last value of a key wins). No other key is
    /// added.
    pub fn from_text(
        base: impl FnOnce(&Path, u16) -> String,
        overrides: &[(&str, &str)],
    ) -> Harness {
        let port = free_port();
        let dir = Harness::tempdir();
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the tempdir");
        let text = base(dir.path(), port);
        let mut keys = vec![(
            "DATA_DIRECTORY".to_string(),
            dir.path().display().to_string(),
        )];
        keys.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Harness::assemble(dir, port, Some(text), keys)
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("qos-e2e-")
            .tempdir()
            .expect("create a tempdir")
    }

    fn with_keys(port: u16, overrides: Vec<(String, String)>) -> Harness {
        let dir = Harness::tempdir();
        let data = dir.path().display().to_string();
        let mut keys: Vec<(String, String)> = [
            ("SERVER_NAME", SERVER_NAME),
            ("DATA_DIRECTORY", data.as_str()),
            ("QOS_PROBE_INTERVAL", "200ms"),
            ("QOS_PROBE_TIMEOUT", "1500ms"),
            ("QOS_RESTART_TIMEOUT", "5s"),
            ("QOS_SHUTDOWN_TIMEOUT", "2s"),
            ("QOS_APPS_TIMEOUT", "2s"),
            ("QOS_NSD_TIMEOUT", "5s"),
            ("QOS_RESOURCE_INTERVAL", "200ms"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (key, value) in overrides {
            keys.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
            if !value.is_empty() {
                keys.push((key, value));
            }
        }
        Harness::assemble(dir, port, None, keys)
    }

    fn assemble(
        dir: tempfile::TempDir,
        port: u16,
        base_text: Option<String>,
        keys: Vec<(String, String)>,
    ) -> Harness {
        let ini = dir.path().join("dcontroller.ini");
        let mut harness = Harness {
            dir,
            port,
            ini,
            base_text,
            keys,
            child: None,
            cursor: 0,
            runs: 0,
            previous_outs: HashSet::new(),
            controller: PathBuf::from(CONTROLLER),
            run_env: Vec::new(),
        };
        harness.write_ini();
        fs::create_dir_all(harness.scratch()).expect("create the harness folder");
        harness
    }

    fn write_ini(&mut self) {
        let mut text = match &self.base_text {
            Some(base) => {
                let mut text = base.clone();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str("\n# per-run overrides of the test (the last value of a key wins)\n");
                text
            }
            None => String::from("# written by the run_* end-to-end tests\n"),
        };
        for (key, value) in &self.keys {
            text.push_str(&format!("{key}={value}\n"));
        }
        fs::write(&self.ini, text).expect("write dcontroller.ini");
    }

    /// Change keys of the ini (an empty value removes one), e.g. before SIGHUP.
    pub fn set_keys(&mut self, changes: &[(&str, &str)]) {
        for (key, value) in changes {
            self.keys.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
            if !value.is_empty() {
                self.keys.push((key.to_string(), value.to_string()));
            }
        }
        self.write_ini();
    }

    /// Replace the ini's text (e.g. with a broken one before SIGHUP).
    pub fn overwrite_ini(&self, text: &str) {
        fs::write(&self.ini, text).expect("overwrite dcontroller.ini");
    }

    /// The data directory.
    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    /// Where the harness keeps the controller's stdout/stderr, outside the log patterns.
    fn scratch(&self) -> PathBuf {
        self.dir.path().join("harness")
    }

    pub fn trigger_file(&self) -> PathBuf {
        self.data().join("triggerImmediateServerFailover")
    }

    /// A `Command` for this test: marked, no core files, no systemd socket inherited.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env(MARKER_ENV, self.data())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("QOSCNTRLR_CONFIG")
            .stdin(Stdio::null());
        // SAFETY: setrlimit is async-signal-safe; the /crash test must not dump cores.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
                    .map_err(std::io::Error::from)
            });
        }
        cmd
    }

    /// Set `key=value` in the environment of the controllers started from now on.
    pub fn run_env(&mut self, key: &str, value: &str) {
        self.run_env.push((key.to_string(), value.to_string()));
    }

    /// Start `qoscntrlr run -c <ini>` (the previous run must have ended).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "a controller of this test still runs");
        self.previous_outs = self
            .log_files("out")
            .iter()
            .filter_map(|name| fs::metadata(self.data().join(name)).ok())
            .map(|m| m.ino())
            .collect();
        let child = self.spawn_run();
        self.child = Some(child);
        self.cursor = 0;
    }

    /// Like `start`, with `customize` applied to the controller's command first (e.g. a
    /// `pre_exec` that lowers a resource limit).
    pub fn start_with(&mut self, customize: impl FnOnce(&mut Command)) {
        assert!(self.child.is_none(), "a controller of this test still runs");
        self.previous_outs = self
            .log_files("out")
            .iter()
            .filter_map(|name| fs::metadata(self.data().join(name)).ok())
            .map(|m| m.ino())
            .collect();
        self.runs += 1;
        let out = File::create(self.scratch().join(format!("run{}.stdout", self.runs)))
            .expect("create stdout file");
        let err = File::create(self.scratch().join(format!("run{}.stderr", self.runs)))
            .expect("create stderr file");
        let mut cmd = self.command(CONTROLLER);
        cmd.arg("run")
            .arg("-c")
            .arg(&self.ini)
            .stdout(out)
            .stderr(err);
        customize(&mut cmd);
        self.child = Some(cmd.spawn().expect("spawn qoscntrlr run"));
        self.cursor = 0;
    }

    /// Start one more `qoscntrlr run` on the same ini, not owned by the harness (the
    /// caller waits for it; Drop still kills it through the marker).
    pub fn spawn_run(&mut self) -> Child {
        self.runs += 1;
        let out = File::create(self.scratch().join(format!("run{}.stdout", self.runs)))
            .expect("create stdout file");
        let err = File::create(self.scratch().join(format!("run{}.stderr", self.runs)))
            .expect("create stderr file");
        let controller = self.controller.display().to_string();
        self.command(&controller)
            .envs(self.run_env.iter().map(|(k, v)| (k, v)))
            .arg("run")
            .arg("-c")
            .arg(&self.ini)
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn qoscntrlr run")
    }

    /// Run this `qoscntrlr` binary instead of cargo's (e.g. a copy alone in a folder).
    pub fn set_controller(&mut self, path: &Path) {
        self.controller = path.to_path_buf();
    }

    /// Start and wait until the server is READY.
    pub fn start_ready(&mut self) {
        self.start();
        self.wait_for("QoS Controller: Server is ready to process requests");
    }

    pub fn controller_pid(&self) -> i32 {
        let child = self.child.as_ref().expect("the controller runs");
        i32::try_from(child.id()).expect("pid fits i32")
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.controller_pid()), signal).expect("signal the controller");
    }

    /// The controller of this test is still running (it has not exited or crashed).
    pub fn controller_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Wait for the controller to exit by itself (it is reaped either way).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the controller runs");
        match wait_child(&mut child, PATIENCE) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the controller did not exit within {PATIENCE:?}\n{}",
                    self.dump()
                );
            }
        }
    }

    /// SIGTERM the controller, expect exit 0 and nothing of this test left running.
    pub fn stop(&mut self) {
        self.signal(Signal::SIGTERM);
        let status = self.wait_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "controller exit after SIGTERM: {status:?}\n{}",
            self.dump()
        );
        self.assert_nothing_left();
    }

    /// SIGKILL the controller (a controller crash) and reap it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the controller runs");
        let _ = child.kill();
        let _ = child.wait();
    }

    // ----- the log ------------------------------------------------------------------

    /// Names of the controller log files (`qoscntrlrYYYYMMDDHHmm.out`/`.log`), sorted.
    pub fn log_files(&self, extension: &str) -> Vec<String> {
        log_files_in(self.data(), extension)
    }

    /// Every line of the current `.out` file(s).
    pub fn lines(&self) -> Vec<String> {
        out_lines(self.data(), &self.previous_outs)
    }

    /// Wait for the next line (after the previously matched one) whose text after the
    /// timestamp starts with `needle`; returns that text.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_until_line(needle, |text| text.starts_with(needle))
    }

    /// Like `wait_for`, for a line containing `needle` anywhere.
    pub fn wait_for_containing(&mut self, needle: &str) -> String {
        self.wait_until_line(needle, |text| text.contains(needle))
    }

    /// `wait_for` each needle in turn: the lines must appear in this order.
    pub fn expect_in_order(&mut self, needles: &[&str]) {
        for needle in needles {
            self.wait_for(needle);
        }
    }

    fn wait_until_line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let lines = self.lines();
            for (i, line) in lines.iter().enumerate().skip(self.cursor) {
                if matches(line_text(line)) {
                    self.cursor = i + 1;
                    return line_text(line).to_string();
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "no line starting with {what:?} after line {} within {PATIENCE:?}\n{}",
                    self.cursor,
                    self.dump()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Texts (after the timestamp) of the lines matched or passed so far by `wait_for`.
    pub fn seen(&self) -> Vec<String> {
        self.lines()
            .iter()
            .take(self.cursor)
            .map(|l| line_text(l).to_string())
            .collect()
    }

    /// Number of lines of the whole current log whose text starts with `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| line_text(l).starts_with(needle))
            .count()
    }

    /// Number of lines after the cursor whose text starts with `needle`.
    pub fn count_after_cursor(&self, needle: &str) -> usize {
        self.lines()
            .iter()
            .skip(self.cursor)
            .filter(|l| line_text(l).starts_with(needle))
            .count()
    }

    /// Every line must be `YYYY/MM/DD HH:MM:SS <text>` (the log format).
    pub fn assert_line_format(&self) {
        for line in self.lines() {
            assert!(
                has_timestamp(&line),
                "log line without the YYYY/MM/DD HH:MM:SS prefix: {line:?}\n{}",
                self.dump()
            );
        }
    }

    /// The whole log plus the controller's stdout/stderr, for failure messages.
    pub fn dump(&self) -> String {
        let mut text = format!("----- data directory {} -----\n", self.data().display());
        for line in self.lines() {
            text.push_str(&line);
            text.push('\n');
        }
        for run in 1..=self.runs {
            for stream in ["stdout", "stderr"] {
                let path = self.scratch().join(format!("run{run}.{stream}"));
                if let Ok(content) = fs::read_to_string(&path) {
                    if !content.is_empty() {
                        text.push_str(&format!("----- run {run} {stream} -----\n{content}"));
                    }
                }
            }
        }
        text
    }

    // ----- the demo server over HTTP -------------------------------------------------

    /// GET `path` from the demo server: (status code, body).
    pub fn http(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.port, path)
    }

    /// GET `path`, which must answer 200.
    pub fn http_ok(&self, path: &str) -> String {
        match self.http(path) {
            Ok((200, body)) => body,
            other => panic!("GET {path}: {other:?}\n{}", self.dump()),
        }
    }

    // ----- the client subcommands -----------------------------------------------------

    /// `qoscntrlr <sub> -c <ini> <args...>`.
    pub fn cli(&self, sub: &str, args: &[&str]) -> CliOutput {
        let mut cmd = self.command(CONTROLLER);
        cmd.arg(sub).arg("-c").arg(&self.ini).args(args);
        run_cli(cmd)
    }

    /// `status --json`: (exit code, parsed JSON).
    pub fn status(&self) -> (Option<i32>, serde_json::Value) {
        let out = self.cli("status", &["--json"]);
        let json = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!("status --json is not JSON ({e}): {out:?}\n{}", self.dump())
        });
        (out.code, json)
    }

    /// The server state shown by `status --json`.
    pub fn state(&self) -> String {
        let (_, json) = self.status();
        json["server"]["state"].as_str().unwrap_or("?").to_string()
    }

    /// The server pid shown by `status --json`.
    pub fn server_pid(&self) -> i32 {
        let (_, json) = self.status();
        let pid = json["server"]["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("status shows no server pid: {json}\n{}", self.dump()));
        i32::try_from(pid).expect("pid fits i32")
    }

    /// `send '<line>'`, which must exit 0.
    pub fn send(&self, line: &str) {
        let out = self.cli("send", &[line]);
        assert_eq!(out.code, Some(0), "send {line:?}: {out:?}\n{}", self.dump());
    }

    // ----- processes -------------------------------------------------------------------

    /// Live (non-zombie) processes started by this test: (pid, cmdline). A process is
    /// this test's when it carries the marker in its environment, or when its working
    /// directory is in the test's tempdir: servers such as nginx and PostgreSQL write
    /// their process title over their environment block, so only the latter finds them.
    pub fn marked_processes(&self) -> Vec<(i32, String)> {
        let marker = format!("{MARKER_ENV}={}", self.data().display());
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.filter_map(Result::ok) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == me || !is_alive(pid) {
                continue;
            }
            let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
            let in_tempdir = fs::read_link(entry.path().join("cwd"))
                .is_ok_and(|cwd| cwd.starts_with(self.data()));
            if in_tempdir
                || environ
                    .split(|b| *b == 0)
                    .any(|var| var == marker.as_bytes())
            {
                found.push((pid, cmdline(pid)));
            }
        }
        found
    }

    /// Nothing started by this test runs any more (waits a little for exits in flight).
    pub fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.marked_processes();
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!("processes left running: {left:?}\n{}", self.dump());
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            if wait_child(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Whatever is left (the server tree after a SIGKILLed controller, a setsid
        // grandchild, a second `run`): SIGKILL until none remains.
        for _ in 0..100 {
            let left = self.marked_processes();
            if left.is_empty() {
                break;
            }
            for (pid, _) in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            thread::sleep(POLL);
        }
    }
}

/// Names of the controller log files in `dir` with `extension`, sorted.
pub fn log_files_in(dir: &Path, extension: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| is_log_name(n, extension))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every complete line of the `.out` file(s) in `dir`, except the files whose inode is
/// in `skip`.
pub fn out_lines(dir: &Path, skip: &HashSet<u64>) -> Vec<String> {
    let mut lines = Vec::new();
    for name in log_files_in(dir, "out") {
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(dir.join(name)) {
            if f.metadata().is_ok_and(|m| skip.contains(&m.ino())) {
                continue;
            }
            let _ = f.read_to_end(&mut bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        // A line still being written (no newline yet) is read next time.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        lines.extend(complete.lines().map(str::to_string));
    }
    lines
}

/// Watches the failover trigger file from a thread (every millisecond) and, each time
/// it is seen, what the log said at that moment: the file must only exist between
/// `Triggering failover...` and the recovery line.
pub struct TriggerWatch {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<TriggerSeen>>,
}

/// What a [`TriggerWatch`] saw.
#[derive(Debug, Default)]
pub struct TriggerSeen {
    /// Distinct contents of the file.
    pub contents: Vec<String>,
    /// Times the file was seen.
    pub sightings: usize,
    /// Sightings outside the window, each with the log's last line at that moment.
    pub out_of_window: Vec<String>,
}

impl TriggerWatch {
    pub fn start(harness: &Harness) -> TriggerWatch {
        let dir = harness.data().to_path_buf();
        let path = harness.trigger_file();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut seen = TriggerSeen::default();
            while !flag.load(Ordering::SeqCst) {
                if !path.exists() {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
                // The log is read before and after the file: the trigger is written after
                // its log line and removed before the recovery line, so the file is in
                // its window iff the later read shows more triggers than the earlier one
                // shows recoveries.
                let before = out_lines(&dir, &HashSet::new());
                if let Ok(content) = fs::read_to_string(&path) {
                    let after = out_lines(&dir, &HashSet::new());
                    seen.sightings += 1;
                    if !seen.contents.contains(&content) {
                        seen.contents.push(content);
                    }
                    let triggers = after
                        .iter()
                        .filter(|l| line_text(l) == "QoS Kill: Triggering failover...")
                        .count();
                    let recoveries = before
                        .iter()
                        .filter(|l| {
                            line_text(l).starts_with("QoS Controller: Server has recovered")
                        })
                        .count();
                    if triggers <= recoveries {
                        seen.out_of_window
                            .push(after.last().cloned().unwrap_or_default());
                    }
                }
                thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        TriggerWatch {
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> TriggerSeen {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for TriggerWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The text after `YYYY/MM/DD HH:MM:SS `, or the whole line when it has no timestamp.
pub fn line_text(line: &str) -> &str {
    if has_timestamp(line) {
        &line[20..]
    } else {
        line
    }
}

fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    digits.iter().all(|&i| b[i].is_ascii_digit())
        && b[4] == b'/'
        && b[7] == b'/'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b' '
}

/// `qoscntrlrYYYYMMDDHHmm[-N].<extension>` (`-N` when a minute's name is taken).
pub fn is_log_name(name: &str, extension: &str) -> bool {
    name.strip_prefix("qoscntrlr")
        .and_then(|rest| rest.strip_suffix(&format!(".{extension}")))
        .is_some_and(|rest| {
            let (stamp, sequence) = rest.split_once('-').unwrap_or((rest, "0"));
            stamp.len() == 12
                && stamp.bytes().all(|b| b.is_ascii_digit())
                && !sequence.is_empty()
                && sequence.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Running, sleeping or stopped — anything but gone or a zombie.
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Gone from /proc entirely (not even a zombie waiting for its reaper).
pub fn is_gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Session id of `pid`.
pub fn session_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // state ppid pgrp session ...
    rest.split_whitespace().nth(3)?.parse().ok()
}

pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Poll `condition` until it holds or PATIENCE runs out.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("gave up waiting for: {what}");
            return false;
        }
        thread::sleep(POLL);
    }
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            _ => return None,
        }
    }
}

/// Run a client command with a time limit, collecting its output.
pub fn run_cli(mut cmd: Command) -> CliOutput {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qoscntrlr client");
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let status = match wait_child(&mut child, PATIENCE) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let status = child.wait().expect("reap the client");
            assert!(status.signal().is_some());
            panic!("client command did not finish within {PATIENCE:?}");
        }
    };
    CliOutput {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1:`port` with time limits: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    // Generous: on a loaded 2-core machine the debug demo server can take seconds to
    // touch the 100 MB of `/leak?mb=100` before it answers.
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_string()))
}
