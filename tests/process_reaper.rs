//! The reaper and helper commands against real processes. `waitpid(-1)` reaps every child
//! of the test process, so everything that reaps runs inside this one test, in order.

use std::process::Command;
use std::time::Duration;

use nix::unistd::Pid;
use qoscntrlr::process::{reap_forever, run_helper, ExitInfo, Reaper};

fn run_local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

#[test]
fn helper_commands_report_exit_or_are_killed_past_their_limit() {
    run_local(async {
        let reaper = Reaper::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(reap_forever(reaper.clone(), tx));

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 7"]);
        let out = run_helper(&reaper, cmd, Duration::from_secs(10))
            .await
            .expect("spawn sh");
        assert_eq!(out.exit, Some(ExitInfo::Exited(7)));

        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let out = run_helper(&reaper, cmd, Duration::from_millis(100))
            .await
            .expect("spawn sleep");
        assert_eq!(out.exit, None, "the helper overran its limit");
        // The killed helper is reaped (as an unclaimed exit), not left a zombie: once it
        // has died, `reap_all` collects it and its pid no longer exists.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            reaper.reap_all();
            if nix::sys::signal::kill(Pid::from_raw(out.pid), None).is_err() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "helper {} still exists 20 s after its kill",
                out.pid
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}
