//! Shared harness of the real-engine tests (tests/ha_*.rs, tests/sdnotify_run.rs): deciding
//! whether an engine test can run here, starting `qoscntrlr run` and the demo server,
//! network namespaces made for one test, tiny HTTP and polling helpers. Every process or
//! namespace it creates is owned by a guard whose `Drop` removes it, so a failing
//! assertion leaves nothing running.
//!
//! Each test binary uses a different subset of it.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

#[path = "../skip/mod.rs"]
mod skip;

/// The controller binary under test.
pub const QOSCNTRLR: &str = env!("CARGO_BIN_EXE_qoscntrlr");
/// The demo application server.
pub const DEMO_SERVER: &str = env!("CARGO_BIN_EXE_qos-demo-server");

/// Whether an engine test can run. It needs root (namespaces, binding, engines that
/// insist on it) and the engine's programs. Outside CI a missing precondition skips the
/// test visibly with a message saying what to install (`tests/skip`); with `CI=true` it
/// fails the test, because `.ci/run` installs everything.
pub fn engine_ready(test: &str, programs: &[&str], apt_packages: &str) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root privileges".to_string());
    }
    for program in programs {
        if find_program(program).is_none() {
            missing.push(format!("program '{program}'"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(" and ");
    // Visible past libtest's capture, and a failure under CI (`.ci/run` installs the
    // engines and runs as root).
    skip::skip(
        test,
        &format!("lacks {what} (needs root and `apt-get install {apt_packages}`, as .ci/run does)"),
    );
    false
}

/// `program` on `PATH`, or in the sbin directories that a non-login `PATH` may lack.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A name unique to this test process and call, for namespaces, servers and files.
pub fn unique_tag(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A TCP port that was free a moment ago on loopback.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Polls `check` every `every` until it returns `Some` or `limit` has passed.
pub fn wait_for<T>(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Replaces each `from` by `to` in an example file, failing loudly when the example no
/// longer contains `from` (the example and the test must not drift apart silently).
pub fn rewrite(example: &str, text: &str, replacements: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (from, to) in replacements {
        assert!(
            out.contains(from),
            "{example} no longer contains {from:?}; update the test with the example"
        );
        out = out.replace(from, to);
    }
    out
}

/// An example from packaging/examples.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/examples")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A child process killed with its process group (and reaped) when dropped.
pub struct ProcessGuard {
    pub name: String,
    child: Option<Child>,
}

impl ProcessGuard {
    /// Starts `cmd` in a process group of its own, stdout and stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> ProcessGuard {
        let out = fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        ProcessGuard {
            name: name.to_string(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends `signal` to the process (not its group).
    pub fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
    }

    /// Whether it has exited, and how; `None` while running.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL to the whole group; reaps.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = killpg(pid, Signal::SIGKILL);
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        // Whatever else is left in its group (forked helpers).
        let _ = killpg(pid, Signal::SIGKILL);
        status
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// SIGKILLs every process whose command line contains `tag` (a demo server whose
/// controller died without cleaning up); returns how many.
pub fn kill_tagged(tag: &str) -> usize {
    let mut killed = 0;
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(tag) && kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// `qoscntrlr run` on a data directory, optionally inside a network namespace. The demo
/// server it supervises carries a unique `--name`, so that leftovers can be found.
pub struct Controller {
    pub data_dir: PathBuf,
    pub tag: String,
    process: ProcessGuard,
}

impl Controller {
    /// Writes `dcontroller.ini` (the lines given) into `data_dir` and starts the controller.
    pub fn start(
        data_dir: &Path,
        ini_lines: &[String],
        tag: &str,
        netns: Option<&str>,
        env: &[(&str, &str)],
    ) -> Controller {
        fs::create_dir_all(data_dir).expect("create data directory");
        let ini = data_dir.join("dcontroller.ini");
        fs::write(&ini, ini_lines.join("\n") + "\n").expect("write dcontroller.ini");
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new(find_program("ip").unwrap_or_else(|| "ip".into()));
                cmd.args(["netns", "exec", ns, QOSCNTRLR]);
                cmd
            }
            None => Command::new(QOSCNTRLR),
        };
        cmd.arg("run").arg("-c").arg(&ini);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let process = ProcessGuard::spawn("qoscntrlr", cmd, &data_dir.join("controller.stderr"));
        Controller {
            data_dir: data_dir.to_path_buf(),
            tag: tag.to_string(),
            process,
        }
    }

    /// The demo server command line for `SERVER_COMMAND`, listening on `listen`.
    pub fn demo_command(listen: &str, tag: &str) -> String {
        format!("SERVER_COMMAND={DEMO_SERVER} --listen {listen} --name {tag}")
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal)
    }

    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.process.try_exit()
    }

    pub fn trigger_path(&self) -> PathBuf {
        self.data_dir.join("triggerImmediateServerFailover")
    }

    /// The trigger file's content, `None` while absent.
    pub fn trigger(&self) -> Option<String> {
        fs::read_to_string(self.trigger_path()).ok()
    }

    pub fn ini_path(&self) -> PathBuf {
        self.data_dir.join("dcontroller.ini")
    }

    /// Runs `qoscntrlr ARGS -c <its ini>` as an operator would, at most `limit` (killed
    /// after that); `(exit code, stdout + stderr)`.
    pub fn cli(&self, args: &[&str], limit: Duration) -> (Option<i32>, String) {
        let out_path = self.data_dir.join(format!("cli-{}.out", unique_tag("")));
        let out = fs::File::create(&out_path).expect("create client output file");
        let err = out.try_clone().expect("clone client output handle");
        let mut child = Command::new(QOSCNTRLR)
            .args(args)
            .arg("-c")
            .arg(self.ini_path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("run qoscntrlr {}: {e}", args.join(" ")));
        let deadline = Instant::now() + limit;
        let code = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let text = fs::read_to_string(&out_path).unwrap_or_default();
        let _ = fs::remove_file(&out_path);
        (code, text)
    }

    /// `qoscntrlr status --json`, `None` when the controller does not answer.
    pub fn status_json(&self) -> Option<serde_json::Value> {
        let (_, text) = self.cli(&["status", "--json"], Duration::from_secs(20));
        serde_json::from_str(&text).ok()
    }

    /// The server's state (`READY`, `FAULTED`, …) and pid, from `status --json`.
    pub fn server_state(&self) -> Option<(String, Option<u64>)> {
        let json = self.status_json()?;
        let server = &json["server"];
        Some((
            server["state"].as_str()?.to_string(),
            server["pid"].as_u64(),
        ))
    }

    /// Everything in the controller's `.out` logs so far.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = fs::read_dir(&self.data_dir) {
            let mut names: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("qoscntrlr") && n.ends_with(".out"))
                })
                .collect();
            names.sort();
            for name in names {
                text.push_str(&fs::read_to_string(name).unwrap_or_default());
            }
        }
        text
    }

    /// Stops the controller (SIGTERM, then SIGKILL after `grace`) and kills any server
    /// it left behind.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let status = self.process.stop(grace);
        kill_tagged(&self.tag);
        status
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Network namespaces created by (and only ever used by) one test. Dropping kills every
/// process still inside them and deletes them.
pub struct Namespaces {
    pub names: Vec<String>,
}

impl Namespaces {
    pub fn create(names: &[String]) -> Namespaces {
        let mut made = Namespaces { names: Vec::new() };
        for name in names {
            ip(&["netns", "add", name]);
            made.names.push(name.clone());
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        made
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            for pid in netns_pids(name) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        for name in &self.names {
            // Processes killed above may take a moment to leave the namespace.
            wait_for(Duration::from_secs(2), Duration::from_millis(20), || {
                netns_pids(name).is_empty().then_some(())
            });
            let _ = Command::new(find_program("ip").unwrap_or_else(|| "ip".into()))
                .args(["netns", "del", name])
                .status();
        }
    }
}

/// Processes in a namespace (`ip netns pids`).
pub fn netns_pids(name: &str) -> Vec<i32> {
    Command::new(find_program("ip").unwrap_or_else(|| "ip".into()))
        .args(["netns", "pids", name])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `ip ARGS`, panicking with its stderr when it fails.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new(find_program("ip").unwrap_or_else(|| "ip".into()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `address` (without prefix length) is configured in namespace `ns`.
pub fn netns_has_address(ns: &str, address: &str) -> bool {
    Command::new(find_program("ip").unwrap_or_else(|| "ip".into()))
        .args(["-n", ns, "-4", "-o", "addr", "show"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .any(|word| word.split('/').next() == Some(address))
        })
        .unwrap_or(false)
}

/// One HTTP/1.0 GET; `(status code, body)`.
pub fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// [`http_get`] from inside network namespace `ns`: a short-lived thread joins the
/// namespace (network namespaces are per thread) and makes the request.
pub fn http_get_in(
    ns: &str,
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> std::io::Result<(u16, String)> {
    let ns_path = PathBuf::from("/var/run/netns").join(ns);
    let path = path.to_string();
    std::thread::spawn(move || {
        let file = fs::File::open(&ns_path)?;
        // SAFETY: plain syscall on a descriptor that stays open for the call; it changes
        // only this thread's network namespace, and the thread ends after the request.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        http_get(addr, &path, limit)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("client thread panicked")))
}

/// Crashes the supervised server `count` times: `crash(n)` (n from 0) each time it is
/// READY again with a new pid. Before every crash the trigger must be absent: the crashes
/// before it were restarted within the restart limit, which moves no traffic. Returns
/// when the last crash has been asked for.
pub fn crash_times(
    controller: &Controller,
    count: usize,
    limit: Duration,
    mut crash: impl FnMut(usize),
) -> Instant {
    let deadline = Instant::now() + limit;
    let mut crashed: Vec<u64> = Vec::new();
    loop {
        let state = controller.server_state();
        if let Some((state, Some(pid))) = &state {
            if state == "READY" && !crashed.contains(pid) {
                assert_eq!(
                    controller.trigger(),
                    None,
                    "a READY server after {} crash(es) within the restart limit: no failover",
                    crashed.len()
                );
                crash(crashed.len());
                crashed.push(*pid);
                if crashed.len() == count {
                    return Instant::now();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} crashes within {limit:?}; last state {state:?}; log:\n{}",
            crashed.len(),
            controller.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A diagnostics program for QOS_NSD_PATH (written into `dir`) that takes `slow` once
/// the returned marker file exists and no time before: the crashes within the limit
/// restart at once, the one that reaches it has diagnostics as slow as a real nsd's.
pub fn slow_nsd(dir: &Path, slow: Duration) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("slow-nsd.sh");
    let marker = dir.join("slow-nsd.marker");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"test nsd $*\"\nif [ -e '{}' ]; then sleep {}; fi\n",
            marker.display(),
            slow.as_secs()
        ),
    )
    .expect("write the nsd script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod the nsd script");
    (script, marker)
}

/// `base` ini lines with every key that `extra` sets replaced by its line there (no
/// duplicate keys, which the reader would warn about).
pub fn merge_ini(base: Vec<String>, extra: &[&str]) -> Vec<String> {
    let key = |line: &str| {
        line.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase()
    };
    let mut lines: Vec<String> = base
        .into_iter()
        .filter(|line| !extra.iter().any(|e| key(e) == key(line)))
        .collect();
    lines.extend(extra.iter().map(|line| line.to_string()));
    lines
}

/// How a failback went, as the test saw it.
#[derive(Debug)]
pub struct Failback {
    /// From the start of the last look at the supervised server that found nothing
    /// listening (connection refused) to the first sight of the failover outputs up
    /// again. The controller can only have seen the server well after that look, so this
    /// is at least the failback hold.
    pub after_down: Duration,
    /// The moment the outputs were seen up again.
    pub back_at: Instant,
}

/// Whether a request's outcome proves nothing was listening: connection refused. A
/// time-out proves nothing (a loaded machine, a hung server).
pub fn refused<T>(result: &std::io::Result<T>) -> bool {
    matches!(result, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// Watches a failback: polls `down` (a look at the supervised server itself, not through
/// the HA engine, that proves it is not serving: see [`refused`]) and `outputs_up` (the
/// failover outputs say "send traffic here again") until `outputs_up`, at most `limit`.
/// `moved_back` (the HA engine sends traffic to this server) must not hold while the
/// outputs are still down. `down_at`: a moment the server is known not to have been
/// serving (just before the `clear-fault` that starts it).
pub fn watch_failback(
    limit: Duration,
    down_at: Instant,
    mut down: impl FnMut() -> bool,
    mut outputs_up: impl FnMut() -> bool,
    mut moved_back: impl FnMut() -> bool,
) -> Option<Failback> {
    let deadline = Instant::now() + limit;
    let mut last_down = down_at;
    loop {
        let checked = Instant::now();
        if down() {
            last_down = checked;
        }
        // Traffic first, outputs second: traffic seen back means the outputs were up
        // before this look at them, so the order leaves no race.
        let traffic_back = moved_back();
        if outputs_up() {
            let back_at = Instant::now();
            return Some(Failback {
                after_down: back_at.saturating_duration_since(last_down),
                back_at,
            });
        }
        assert!(
            !traffic_back,
            "traffic came back while the failover outputs were still down"
        );
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
