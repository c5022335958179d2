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
