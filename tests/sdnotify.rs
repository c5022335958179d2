//! sd_notify against a real datagram socket playing systemd: the exact datagrams, path and
//! abstract addresses, typed send errors, the environment scrub for children.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use qoscntrlr::sdnotify::{scrub_env, SdNotify, SdNotifyError, INHERITED_VARIABLES};

fn receive(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a datagram from SdNotify");
    String::from_utf8(buf[..n].to_vec()).expect("utf-8 datagram")
}

#[test]
fn sends_the_exact_datagrams_to_a_path_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&path).expect("bind notify socket");
    let notify = SdNotify::from_vars(
        Some(path.as_os_str()),
        Some(OsStr::new("20000000")),
        Some(OsStr::new(&std::process::id().to_string())),
        std::process::id(),
    )
    .expect("usable address")
    .expect("a notifier");

    notify.ready().expect("send READY");
    assert_eq!(receive(&systemd), "READY=1");
    notify
        .status("READY: probing http://127.0.0.1:8089/health\nsecond line")
        .expect("send STATUS");
    assert_eq!(
        receive(&systemd),
        "STATUS=READY: probing http://127.0.0.1:8089/health second line"
    );
    notify.watchdog().expect("send WATCHDOG");
    assert_eq!(receive(&systemd), "WATCHDOG=1");
    notify.watchdog().expect("send WATCHDOG again");
    assert_eq!(receive(&systemd), "WATCHDOG=1");
    notify.stopping().expect("send STOPPING");
    assert_eq!(receive(&systemd), "STOPPING=1");
    assert_eq!(notify.watchdog_interval(), Some(Duration::from_secs(10)));
    assert_eq!(notify.address(), path.to_str().expect("utf-8 temp path"));
}

#[test]
fn abstract_names_are_supported() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let name = format!("qoscntrlr-test-sdnotify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let systemd = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
    let notify = SdNotify::from_vars(Some(OsStr::new(&format!("@{name}"))), None, None, 1)
        .expect("usable address")
        .expect("a notifier");
    notify.ready().expect("send READY");
    assert_eq!(receive(&systemd), "READY=1");
    assert_eq!(notify.watchdog_interval(), None, "no WATCHDOG_USEC");
}

#[test]
fn a_vanished_socket_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gone");
    let notify = SdNotify::from_vars(Some(path.as_os_str()), None, None, 1)
        .expect("usable address")
        .expect("a notifier");
    let err = notify.ready().expect_err("nobody listens");
    assert!(matches!(err, SdNotifyError::Send { .. }), "{err:?}");
    assert!(err.to_string().contains("gone"), "{err}");
}

#[test]
fn try_from_env_reads_the_variables_systemd_sets() {
    // The only test in this binary that touches the environment.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify-env");
    let systemd = UnixDatagram::bind(&path).expect("bind notify socket");
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "3000000");
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    let notify = SdNotify::try_from_env().expect("usable NOTIFY_SOCKET");
    std::env::set_var("WATCHDOG_PID", "1");
    let not_ours = SdNotify::try_from_env().expect("usable NOTIFY_SOCKET");
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(name);
    }
    let notify = notify.expect("NOTIFY_SOCKET is set");
    assert_eq!(
        notify.watchdog_interval(),
        Some(Duration::from_millis(1500))
    );
    notify.ready().expect("send READY");
    assert_eq!(receive(&systemd), "READY=1");
    let not_ours = not_ours.expect("NOTIFY_SOCKET is set");
    assert_eq!(
        not_ours.watchdog_interval(),
        None,
        "WATCHDOG_PID of another process"
    );
    assert!(
        SdNotify::try_from_env()
            .expect("no NOTIFY_SOCKET")
            .is_none(),
        "variables removed"
    );
}

#[test]
fn children_do_not_inherit_the_service_manager_variables() {
    let mut cmd = Command::new("env");
    for name in INHERITED_VARIABLES {
        cmd.env(name, "from-systemd");
    }
    cmd.env("QOS_KEEP_ME", "1");
    scrub_env(&mut cmd);
    let out = cmd.output().expect("run env");
    let env = String::from_utf8_lossy(&out.stdout);
    for name in INHERITED_VARIABLES {
        assert!(
            !env.lines().any(|l| l.starts_with(&format!("{name}="))),
            "{name} leaked into the child:\n{env}"
        );
    }
    assert!(env.lines().any(|l| l == "QOS_KEEP_ME=1"), "{env}");
}
