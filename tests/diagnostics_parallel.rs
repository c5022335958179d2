//! The built-in collector on a larger tree (issue 12, defect 9): thread stacks of the main
//! process and the busiest few only, taken side by side under the one deadline, and a
//! `/proc` snapshot of every process. One test (it runs `waitpid(-1)`, which would reap
//! the children of any other test in this binary).

mod skip;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use qoscntrlr::diagnostics::{collect, DiagRequest};
use qoscntrlr::process::{reap_forever, tree_pids, Reaper};

struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn has(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[test]
fn stacks_of_the_main_process_and_the_busiest_only_and_a_snapshot_of_all() {
    const NAME: &str = "stacks_of_the_main_process_and_the_busiest_only_and_a_snapshot_of_all";
    if !has("gdb") && !has("eu-stack") {
        skip::skip(
            NAME,
            "neither gdb nor eu-stack is installed (apt-get install gdb)",
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, async {
        let reaper = Reaper::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(reap_forever(reaper.clone(), tx));
        // One busy process among 30 sleepers.
        let child = Command::new("sh")
            .args([
                "-c",
                "sh -c 'while :; do :; done' & for i in $(seq 30); do sleep 600 & done; wait",
            ])
            .process_group(0)
            .spawn()
            .expect("spawn the tree");
        let root = child.id() as i32;
        let _guard = GroupGuard(root);
        drop(reaper.watch(root));
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let tree = loop {
            let tree = tree_pids(root, root, &Default::default());
            if tree.len() >= 32 || Instant::now() > deadline {
                break tree;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(tree.len(), 32, "{tree:?}");
        // The busy one: the child whose command is the loop, once it has used CPU.
        let busy = loop {
            let found = tree.iter().copied().find(|&pid| {
                pid != root
                    && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.contains("while"))
            });
            if let Some(pid) = found {
                break pid;
            }
            assert!(Instant::now() < deadline, "no busy process in {tree:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // The busy process must have used more CPU than any sleeper before the stack
        // targets are chosen (by CPU time so far): wait until it has 5 ticks (the sleepers
        // use at most one, to start).
        let busy_deadline = Instant::now() + Duration::from_secs(20);
        while cpu_ticks(busy) < 5 {
            assert!(
                Instant::now() < busy_deadline,
                "the busy process {busy} used no CPU"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let dir = tempfile::tempdir().unwrap();
        let request = DiagRequest {
            reason: "probe-timeout".into(),
            server_pid: Some(root),
            tree: tree.clone(),
            console_tail: vec!["last words".into()],
            data_dir: dir.path().to_path_buf(),
            nsd_path: None,
            limit: Duration::from_secs(60),
            server_name: "srv".into(),
        };
        let report = collect(request, &reaper, chrono::Local::now()).await;
        let text = std::fs::read_to_string(report.path.as_ref().expect("a file")).unwrap();
        assert!(report.ok && report.written, "{report:?}\n{text}");
        assert_eq!(
            text.matches("=== process ").count(),
            32,
            "every process snapshotted"
        );
        assert_eq!(
            text.matches("=== thread stacks of pid ").count(),
            5,
            "the main process and the 4 busiest:\n{text}"
        );
        assert!(text.contains(&format!("=== thread stacks of pid {root} (")));
        assert!(
            text.contains(&format!("=== thread stacks of pid {busy} (")),
            "the busy process {busy} is traced:\n{text}"
        );
        assert!(
            text.contains("=== thread stacks: 27 other process(es) not traced"),
            "{text}"
        );
        // Stacks come in the order main, busiest …, each with its end line.
        assert_eq!(text.matches("--- stack tool ended: ").count(), 5, "{text}");
        // Collecting does not disturb the tree.
        assert!(tree
            .iter()
            .all(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), None).is_ok()));
    });
}

/// utime + stime of `pid` in clock ticks (0 when it cannot be read).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}
