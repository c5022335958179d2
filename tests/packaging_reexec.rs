//! The package's upgrade step, `packaging/reexec-running` (Debian postinst, RPM %post):
//! run for real against a real controller, with a stand-in `systemctl` that lists a
//! running template instance (the controller under test), a running unit whose main
//! process is gone, and nothing else. The running controller must re-execute in place
//! (same pid, same server), the others must be skipped, and the script must succeed.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Harness, CONTROLLER};

fn script() -> String {
    format!("{}/packaging/reexec-running", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_upgrade_step_reexecutes_every_running_instance_and_skips_the_others() {
    let mut h = Harness::demo(&[]);
    h.start_ready();
    let controller = h.controller_pid();
    let server = h.server_pid();

    let fake = h.data().join("fake");
    let bin = fake.join("bin");
    let run_dir = fake.join("run-systemd");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&run_dir).unwrap();
    let systemctl = bin.join("systemctl");
    fs::write(
        &systemctl,
        format!(
            r#"#!/bin/sh
case "$1" in
list-units)
    echo "qoscntrlr@site.service loaded active running qoscntrlr QoS watchdog controller"
    echo "qoscntrlr.service loaded active running qoscntrlr QoS watchdog controller"
    ;;
show)
    for a in "$@"; do unit=$a; done
    case "$unit" in
    qoscntrlr@site.service) echo {controller} ;;
    *) echo 0 ;;
    esac
    ;;
esac
"#
        ),
    )
    .unwrap();
    fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).unwrap();

    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = common::run_cli({
        let mut cmd = Command::new("sh");
        cmd.arg(script())
            .env("PATH", path)
            .env("QOSCNTRLR", CONTROLLER)
            .env("QOSCNTRLR_SYSTEMD_RUN", &run_dir);
        cmd
    });
    assert_eq!(out.code, Some(0), "{out:?}\n{}", h.dump());
    assert!(
        out.stdout
            .contains("qoscntrlr@site.service: Controller re-executed:"),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains("qoscntrlr.service:") && !out.stderr.contains("qoscntrlr.service:"),
        "a unit without a main process is skipped: {out:?}"
    );
    h.wait_for("QoS Controller: Controller re-executed:");
    assert_eq!(h.controller_pid(), controller);
    assert_eq!(h.server_pid(), server);

    // Without systemd running (a chroot, an image build) it does nothing and succeeds.
    let out = common::run_cli({
        let mut cmd = Command::new("sh");
        cmd.arg(script())
            .env("QOSCNTRLR", CONTROLLER)
            .env("QOSCNTRLR_SYSTEMD_RUN", fake.join("absent"));
        cmd
    });
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    h.stop();
}
