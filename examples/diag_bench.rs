//! How long the built-in diagnostics collector takes for a server tree of N processes.
//!
//! `cargo run --release --example diag_bench -- [N ...]` (default: 50 200) starts a real
//! tree per size — one `sh` and N−1 `sleep`s, a few of them busy (`yes` into a
//! `sleep`-bounded pipe is avoided: a `sh` loop burns CPU) — runs
//! `qoscntrlr::diagnostics::collect` on it exactly as the runtime does (built-in
//! collector, the whole tree, `QOS_NSD_TIMEOUT` of 180 s), and prints one JSON object per
//! size: wall time, whether the collection finished, how many processes got a `/proc`
//! snapshot and how many a thread stack, and the file size. gdb (or eu-stack) must be
//! installed for the stacks; `bench/diagnostics-bench.sh` installs gdb and runs it.

use std::process::Command;
use std::time::{Duration, Instant};

use qoscntrlr::diagnostics::{collect, DiagRequest};
use qoscntrlr::process::{reap_forever, tree_pids, Reaper};

/// Busy processes in every tree (the collector should pick them for stacks).
const BUSY: usize = 3;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![50, 200]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, async {
        let reaper = Reaper::new();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::task::spawn_local(reap_forever(reaper.clone(), tx));
        for n in sizes {
            bench_one(&reaper, n).await;
        }
    });
}

async fn bench_one(reaper: &Reaper, n: usize) {
    let sleepers = n.saturating_sub(1 + BUSY);
    let script = format!(
        "for i in $(seq {BUSY}); do sh -c 'while :; do :; done' & done; \
         for i in $(seq {sleepers}); do sleep 600 & done; wait"
    );
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .spawn()
            .expect("spawn the tree")
    };
    let root = child.id() as i32;
    drop(reaper.watch(root));
    drop(child);
    // Wait until the whole tree is there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let tree = loop {
        let tree = tree_pids(root, root, &Default::default());
        if tree.len() >= n || Instant::now() > deadline {
            break tree;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let the busy ones accumulate CPU time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = std::env::temp_dir().join(format!("qos-diag-bench-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let request = DiagRequest {
        reason: "bench".into(),
        server_pid: Some(root),
        tree: tree.clone(),
        console_tail: vec!["console line".into(); 50],
        data_dir: dir.clone(),
        nsd_path: None,
        limit: Duration::from_secs(180),
        server_name: "bench".into(),
    };
    let started = Instant::now();
    let report = collect(request, reaper, chrono::Local::now()).await;
    let wall = started.elapsed();
    let text = report
        .path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(root),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::json!({
            "processes": tree.len(),
            "wall_ms": wall.as_millis() as u64,
            "ok": report.ok,
            "error": report.error,
            "proc_snapshots": text.matches("=== process ").count(),
            "stacks": text.matches("=== thread stacks of pid").count(),
            "file_bytes": text.len(),
        })
    );
    // Let the reaper collect the killed tree before the next size.
    tokio::time::sleep(Duration::from_millis(300)).await;
}
