//! Hook commands against real processes. `waitpid(-1)` reaps every child of the test
//! process, so everything that spawns runs inside this one test, in order.

mod exe;

use std::path::Path;
use std::time::{Duration, Instant};

use qoscntrlr::core::HookEvent;
use qoscntrlr::failover::{hook_env, run_hook, HookEnd, HOOKS_LOG_NAME};
use qoscntrlr::process::{reap_forever, ExitInfo, Reaper};

fn run_local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

fn write_script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    exe::write_executable(&path, format!("#!/bin/sh\n{body}\n").as_bytes());
    path.to_string_lossy().into_owned()
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|i| stat[i + 2..].starts_with('Z')),
    }
}

#[test]
fn hooks_receive_their_environment_log_their_output_and_are_time_limited() {
    // The hook must not inherit the controller's systemd channel. This is the only test
    // of this binary, so changing the environment races nothing.
    std::env::set_var("NOTIFY_SOCKET", "/run/systemd/notify");
    run_local(async {
        let reaper = Reaper::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(reap_forever(reaper.clone(), tx));
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path();
        let trigger = data.join("triggerImmediateServerFailover");
        let env = hook_env(
            HookEvent::Failover,
            "probe-timeout",
            "CN=rc45/O=dev",
            "20240508-003743",
            &trigger,
        );

        // --- a hook that records its environment ---
        let dump = data.join("env.txt");
        let hook = write_script(
            data,
            "hook.sh",
            &format!(
                "env > {}\npwd >> {}\necho hook-says-hello\necho hook-warns >&2",
                dump.display(),
                dump.display()
            ),
        );
        let outcome = run_hook(&reaper, &[hook], &env, Duration::from_secs(10), data).await;
        assert_eq!(
            outcome.end,
            HookEnd::Exited(ExitInfo::Exited(0)),
            "{outcome}"
        );
        assert!(outcome.success());
        assert_eq!(outcome.log_error, None);
        let seen = std::fs::read_to_string(&dump).expect("env dump");
        for want in [
            "QOS_EVENT=failover".to_string(),
            "QOS_REASON=probe-timeout".into(),
            "QOS_SERVER_NAME=CN=rc45/O=dev".into(),
            "QOS_INCIDENT_ID=20240508-003743".into(),
            format!("QOS_TRIGGER_FILE={}", trigger.display()),
            data.display().to_string(),
        ] {
            assert!(
                seen.lines().any(|l| l == want),
                "missing {want:?} in:\n{seen}"
            );
        }
        assert!(!seen.contains("NOTIFY_SOCKET"), "{seen}");
        let log = std::fs::read_to_string(data.join(HOOKS_LOG_NAME)).expect("hooks log");
        assert!(log.contains("hook started: "), "{log}");
        assert!(log.contains("QOS_EVENT=failover"), "{log}");
        assert!(log.contains("hook-says-hello\n"), "{log}");
        assert!(log.contains("hook-warns\n"), "{log}");
        assert!(log.contains("hook ended: "), "{log}");
        assert!(log.contains(": exit code 0 after "), "{log}");

        // --- a failing hook; the log is appended to, not replaced ---
        let failing = write_script(data, "fail.sh", "exit 4");
        let outcome = run_hook(&reaper, &[failing], &env, Duration::from_secs(10), data).await;
        assert_eq!(outcome.end, HookEnd::Exited(ExitInfo::Exited(4)));
        assert!(!outcome.success());
        let log = std::fs::read_to_string(data.join(HOOKS_LOG_NAME)).expect("hooks log");
        assert!(log.contains("hook-says-hello"), "earlier output kept");
        assert!(log.contains(": exit code 4 after "), "{log}");

        // --- a hook over its limit is killed with its children ---
        let pidfile = data.join("hook-child.pid");
        let slow = write_script(
            data,
            "slow.sh",
            &format!("sleep 30 &\necho $! > {}\nwait", pidfile.display()),
        );
        let outcome = run_hook(&reaper, &[slow], &env, Duration::from_millis(300), data).await;
        assert_eq!(
            outcome.end,
            HookEnd::TimedOut {
                limit: Duration::from_millis(300)
            }
        );
        assert_eq!(outcome.to_string(), "timed out after 0.3 s and was killed");
        let child: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let start = Instant::now();
        while !gone(child) && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(child), "the hook's child was killed with it");
        let log = std::fs::read_to_string(data.join(HOOKS_LOG_NAME)).expect("hooks log");
        assert!(
            log.contains("timed out after 0.3 s and was killed"),
            "{log}"
        );

        // --- hooks that cannot start ---
        let missing = data.join("missing-hook").to_string_lossy().into_owned();
        let outcome = run_hook(&reaper, &[missing], &env, Duration::from_secs(1), data).await;
        assert!(matches!(outcome.end, HookEnd::NotStarted(_)), "{outcome:?}");
        let outcome = run_hook(&reaper, &[], &env, Duration::from_secs(1), data).await;
        assert_eq!(outcome.end, HookEnd::NotStarted("empty command".into()));

        // --- an unwritable log does not stop the hook ---
        let other = data.join("other");
        std::fs::create_dir_all(other.join(HOOKS_LOG_NAME)).expect("a directory in its way");
        let touch = data.join("ran.txt");
        let argv = vec![
            "sh".to_string(),
            "-c".into(),
            format!("echo ran > {}", touch.display()),
        ];
        let outcome = run_hook(&reaper, &argv, &env, Duration::from_secs(10), &other).await;
        assert!(outcome.success(), "{outcome:?}");
        assert!(outcome.log_error.is_some());
        assert_eq!(std::fs::read_to_string(&touch).expect("hook ran"), "ran\n");

        // Cleanup only, nothing is asserted after it: give killed helpers a moment to
        // exit so the final reap collects them instead of leaving zombies.
        const BEFORE_THE_LAST_REAP: Duration = Duration::from_millis(100);
        tokio::time::sleep(BEFORE_THE_LAST_REAP).await;
        reaper.reap_all();
    });
}
