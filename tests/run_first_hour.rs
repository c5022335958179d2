//! The first hour of a new user: the example configuration's bare `qos-demo-server`
//! works with nothing but the `qoscntrlr` binary (what `cargo run` builds and what the
//! package puts on PATH), and `run` tells the terminal (or the journal) what it does.

mod common;

use common::Harness;
use nix::sys::signal::Signal;

/// A copy of the `qoscntrlr` binary alone in a folder: no `qos-demo-server` beside it or
/// on PATH, so the controller must fall back to the demo server built into itself.
fn lone_controller(h: &Harness) -> std::path::PathBuf {
    let bin = h.data().join("lone-bin");
    std::fs::create_dir_all(&bin).expect("create the binary folder");
    let copy = bin.join("qoscntrlr");
    std::fs::copy(common::CONTROLLER, &copy).expect("copy qoscntrlr");
    copy
}

#[test]
fn bare_demo_server_name_runs_the_built_in_demo_server() {
    let port = common::free_port();
    let mut h = Harness::server(
        &format!("qos-demo-server --listen 127.0.0.1:{port}"),
        &[
            ("QOS_PROBE", &format!("http://127.0.0.1:{port}/health")),
            // PATH without cargo's target folder (where a qos-demo-server binary exists).
            ("SERVER_DIRECTORY", "/"),
        ],
    );
    let copy = lone_controller(&h);
    h.set_controller(&copy);
    h.start();
    h.wait_for("QoS Controller: Server is ready to process requests");
    // The demo's /daemonize re-executes itself: through argv[0] it must still be the demo.
    let body = common::http_get(port, "/daemonize")
        .map(|(code, body)| format!("{code} {body}"))
        .unwrap_or_else(|e| format!("no answer: {e}"));
    assert!(
        body.starts_with("200 started grandchild pid"),
        "/daemonize of the built-in demo server: {body}\n{}",
        h.dump()
    );
    let status = h.status().1;
    assert_eq!(status["server"]["state"], "READY", "{status}");
    let pid = h.server_pid();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("read the server's exe");
    assert_eq!(exe, copy, "the server runs the controller binary itself");
    h.signal(Signal::SIGINT);
    let exit = h.wait_exit();
    assert_eq!(
        exit.code(),
        Some(0),
        "exit after SIGINT: {exit:?}\n{}",
        h.dump()
    );
    h.assert_nothing_left();
}

/// `run` under systemd: `$JOURNAL_STREAM` names its stderr, so every line carries a
/// syslog priority; the start facts come first, then state changes, incidents, errors.
#[test]
fn run_reports_to_the_journal_with_priorities() {
    use std::os::unix::fs::MetadataExt;
    let port = common::free_port();
    let h = Harness::server(
        // Not found anywhere: the controller must say so on stderr, as an error.
        "/nonexistent/qos-server-program --flag",
        &[
            ("QOS_PROBE", &format!("http://127.0.0.1:{port}/health")),
            ("QOS_RESTART_LIMIT_MAXIMUM", "1"),
        ],
    );
    let stderr_path = h.data().join("journal.stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("create the stderr file");
    let meta = stderr.metadata().expect("stat the stderr file");
    let mut child = h
        .command(common::CONTROLLER)
        .arg("run")
        .arg("-c")
        .arg(&h.ini)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn qoscntrlr run");
    let read = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let faulted = common::eventually("FAULTED on stderr", || read().contains("-> FAULTED"));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    let status = child.wait().expect("reap the controller");
    let text = read();
    assert!(faulted, "no FAULTED line on stderr:\n{text}\n{}", h.dump());
    assert_eq!(status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let config = format!("<6>Configuration {}", h.ini.display());
    assert_eq!(lines.first().copied(), Some(config.as_str()), "{text}");
    assert_eq!(
        lines.get(1).copied(),
        Some(format!("<6>Data directory {}", h.data().display()).as_str()),
        "{text}"
    );
    assert!(
        lines
            .get(2)
            .is_some_and(|l| l.starts_with("<6>Log file ") && l.ends_with(".out")),
        "{text}"
    );
    for line in &lines {
        assert!(
            line.len() > 3 && line.starts_with('<') && line.as_bytes()[2] == b'>',
            "line without a priority prefix: {line:?}\n{text}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>Cannot start the server")
                && l.contains("/nonexistent/qos-server-program")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>State ") && l.contains("-> FAULTED")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<5>State STOPPED -> RESTARTING")),
        "{text}"
    );
    // One line per event, not the whole log: the header's key lines stay in the log.
    assert!(!text.contains("QOS_PROBE_TIMEOUT="), "{text}");
    h.assert_nothing_left();
}

/// On a terminal (no `$JOURNAL_STREAM`, or one that names another file) the lines carry
/// the log's time stamp instead of a priority.
#[test]
fn run_reports_plain_lines_without_the_journal() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    h.stop();
    let stderr = std::fs::read_to_string(h.data().join("harness/run1.stderr"))
        .expect("read the controller's stderr");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.ends_with(&format!(" Configuration {}", h.ini.display())) && !first.starts_with('<'),
        "{stderr}"
    );
    assert!(
        stderr.contains(" State STARTING -> READY (server is ready)"),
        "{stderr}"
    );
}

/// The operator's habits against a running controller: `reload` says what changed (and
/// exits 78 on a broken file), `diagnose` names the file, `send` says what it sent,
/// `stop --wait`/`start --wait`/`restart --wait` return in the target state.
#[test]
fn reload_diagnose_send_and_wait_report_what_they_did() {
    let mut h = Harness::demo(&[]);
    h.start_ready();

    h.set_keys(&[("QOS_APPS_TIMEOUT", "3s"), ("QOS_PIPE", "other.pipe")]);
    let out = h.cli("reload", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("QOS_APPS_TIMEOUT: 2 seconds -> 3 seconds"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("waiting for a controller restart"),
        "{out:?}"
    );
    assert!(out.stdout.contains("QOS_PIPE"), "{out:?}");
    h.set_keys(&[("QOS_PIPE", "")]);
    let good = std::fs::read_to_string(&h.ini).expect("read ini");
    h.overwrite_ini(&format!("{good}QOS_PROBE_TIMEOUT=ten minutes\n"));
    let out = h.cli("reload", &[]);
    assert_eq!(out.code, Some(78), "{out:?}");
    assert!(
        out.stderr.contains("QOS_PROBE_TIMEOUT") && out.stderr.contains("error: "),
        "{out:?}"
    );
    h.overwrite_ini(&good);

    let out = h.cli("diagnose", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let path = out
        .stdout
        .trim()
        .strip_prefix("Diagnostics written to ")
        .unwrap_or_else(|| panic!("{out:?}"))
        .split(" (")
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(std::path::Path::new(&path).is_file(), "{path}");

    let out = h.cli(
        "send",
        &["OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=a.nsf"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("Sent to "), "{out:?}");
    h.send("OpMsg=END Type=COMPACT ObjectType=DB ObjectValue=a.nsf");

    let out = h.cli("stop", &["--wait=20s"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.trim_end().ends_with("STOPPED"), "{out:?}");
    assert_eq!(h.state(), "STOPPED");
    let out = h.cli("start", &["--wait"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("READY (server pid "), "{out:?}");
    let before = h.server_pid();
    let out = h.cli("restart", &["--wait=30s"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_ne!(h.server_pid(), before, "{out:?}");
    assert_eq!(h.state(), "READY");
    h.stop();
}

/// A stderr nobody reads (a pipe already full, in blocking mode as an inherited stderr
/// is) never blocks the supervision loop: the controller starts the server, restarts it
/// after a crash and answers `status` while every stderr line waits; once someone reads
/// the pipe, the waiting lines come out in order, and SIGTERM still ends it with 0.
#[test]
fn a_stderr_nobody_reads_never_blocks_the_loop() {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    // Fill it without blocking, then hand it over in blocking mode.
    fcntl(write_end.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("nonblock");
    let mut filler = std::fs::File::from(write_end.try_clone().expect("dup"));
    let mut filled = 0usize;
    loop {
        match filler.write(&[b'x'; 4096]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    drop(filler);
    fcntl(write_end.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("blocking");

    let mut h = Harness::demo(&[("QOS_PROBE_INTERVAL", "200ms")]);
    h.start_with(|cmd| {
        cmd.stderr(std::process::Stdio::from(write_end));
    });
    h.wait_for("QoS Controller: Server is ready to process requests");
    let first = h.server_pid();
    // The crash is told on stderr (State READY -> CRASHED) while the pipe is still full.
    let _ = h.http("/crash");
    h.wait_for("QoS Controller: Server is ready to process requests");
    assert_ne!(h.server_pid(), first, "{}", h.dump());
    let (code, status) = h.status();
    assert_eq!(code, Some(0), "status while stderr is stalled: {status}");
    assert_eq!(status["server"]["state"], "READY", "{status}");

    // Now someone reads: the queued lines follow the filler, on the loop's later turns.
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut reader = std::fs::File::from(read_end);
        let _ = reader.read_to_end(&mut text);
        text
    });
    h.signal(Signal::SIGTERM);
    let exit = h.wait_exit();
    let text = reader.join().expect("reader thread");
    assert_eq!(
        exit.code(),
        Some(0),
        "exit after SIGTERM: {exit:?}\n{}",
        h.dump()
    );
    assert!(
        text.len() > filled,
        "nothing after the filler\n{}",
        h.dump()
    );
    let said = String::from_utf8_lossy(&text[filled..]).into_owned();
    let at = |needle: &str| {
        said.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from stderr:\n{said}"))
    };
    assert!(at("Configuration ") < at("-> READY"), "{said}");
    assert!(at("-> READY") < at("READY -> CRASHED"), "{said}");
    assert!(said.contains("Exiting with code 0"), "{said}");
    h.assert_nothing_left();
}
