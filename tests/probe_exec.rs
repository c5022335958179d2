//! `exec:` probes run through the one reaper, so every scenario lives in this one test.

use std::collections::HashSet;
use std::time::Duration;

use qoscntrlr::config::ProbeTarget;
use qoscntrlr::probe::{probe_once, ProbeOutcome};
use qoscntrlr::process::{reap_forever, Reaper};

fn run_local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

fn exec(argv: &[&str]) -> ProbeTarget {
    ProbeTarget::Exec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
    }
}

fn reason(outcome: ProbeOutcome) -> String {
    match outcome {
        ProbeOutcome::Failure { reason, .. } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn exec_probes_succeed_on_exit_zero_and_explain_failures() {
    run_local(async {
        let reaper = Reaper::new();
        let (tx, _unclaimed) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(reap_forever(reaper.clone(), tx));
        let limit = Duration::from_secs(10);

        assert!(probe_once(&exec(&["true"]), limit, &reaper)
            .await
            .is_success());
        assert_eq!(
            reason(probe_once(&exec(&["false"]), limit, &reaper).await),
            "false: exit code 1"
        );
        assert_eq!(
            reason(probe_once(&exec(&["sh", "-c", "kill -SEGV $$"]), limit, &reaper).await),
            "sh: killed by SIGSEGV"
        );
        let missing = reason(probe_once(&exec(&["qos-no-such-probe"]), limit, &reaper).await);
        assert!(
            missing.starts_with("cannot start qos-no-such-probe: "),
            "{missing}"
        );
        assert_eq!(
            reason(probe_once(&exec(&[]), limit, &reaper).await),
            "exec probe has an empty command"
        );

        // Past the limit the probe's whole group is killed; nothing is left running.
        let outcome = probe_once(
            &exec(&["sh", "-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(200),
            &reaper,
        )
        .await;
        assert_eq!(reason(outcome), "timed out after 200ms");
        // The killed group dies and is reaped: no child of this process is left (polled,
        // since the kernel delivers the SIGKILL and the exit asynchronously).
        let me = std::process::id() as i32;
        let children = || -> HashSet<i32> {
            std::fs::read_dir(format!("/proc/{me}/task"))
                .unwrap()
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<i32>>()
                })
                .collect()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            reaper.reap_all();
            let leftovers = children();
            if leftovers.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "children left 20 s after the probe's limit: {leftovers:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}
