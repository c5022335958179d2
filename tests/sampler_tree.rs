//! The sampler against a real 50-process tree. Everything that spawns runs in one test,
//! and the tree is killed and reaped even when an assertion fails.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use qoscntrlr::sampler::{MemoryKind, MemoryMeasure, SampleError, Sampler};

/// Kills the whole process group on drop, then reaps the root (the group's other
/// members are reparented and reaped by init or the subreaper above us).
struct Tree(Child);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn spawn(script: &str) -> Tree {
    let child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    Tree(child)
}

#[test]
fn a_fifty_process_tree_is_sampled_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut sampler = Sampler::new();

    // 1 shell + 48 sleeps + 1 busy loop = 50 processes.
    let tree = spawn("for i in $(seq 48); do sleep 30 & done; (while :; do :; done) & wait");
    let root = tree.0.id() as i32;
    let started = Instant::now();
    let first = loop {
        let sample = sampler
            .sample(root, &[], dir.path(), Instant::now())
            .expect("sample");
        if sample.processes == 50 || started.elapsed() > Duration::from_secs(20) {
            break sample;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first.processes, 50, "{first:?}");
    assert_eq!(first.at_tree[0], root);
    assert_eq!(first.threads, 50);
    // stdin, stdout and stderr at least, in every process.
    assert!(first.open_files >= 150, "{first:?}");
    assert_eq!(first.fds_unreadable, 0);
    assert!(first.rss_bytes > 0);
    let mut rss_sampler = Sampler::new();
    rss_sampler.set_memory_measure(MemoryMeasure::Rss);
    let by_rss = rss_sampler
        .sample(root, &[], dir.path(), Instant::now())
        .unwrap();
    assert_eq!(by_rss.memory_kind, MemoryKind::Rss);
    assert_eq!(by_rss.processes, 50);
    // The sleeps share their pages: summed RSS counts them 50 times, PSS once.
    assert!(
        by_rss.rss_bytes >= first.rss_bytes,
        "{by_rss:?} vs {first:?}"
    );
    assert!(first.disk_free_bytes > 0);
    if std::path::Path::new(&format!("/proc/{root}/smaps_rollup")).exists() {
        assert_eq!(first.memory_kind, MemoryKind::Pss);
    }

    // The busy loop shows up as CPU between two samples.
    sampler.reset();
    let t0 = Instant::now();
    let baseline = sampler.sample(root, &[], dir.path(), t0).unwrap();
    assert_eq!(baseline.cpu_percent, None);
    // The interval the CPU figure is measured over, not a wait for an event: the busy
    // loop runs throughout it, so a third of a second of CPU ticks is plenty to show.
    const CPU_INTERVAL: Duration = Duration::from_millis(300);
    std::thread::sleep(CPU_INTERVAL);
    let busy = sampler
        .sample(root, &[], dir.path(), Instant::now())
        .unwrap();
    let cpu = busy.cpu_percent.expect("cpu on the second sample");
    assert!(cpu > 1.0, "busy loop at {cpu}%");

    // An extra pid outside the tree is sampled with its own children.
    let outside = spawn("sleep 30 & wait");
    let outside_root = outside.0.id() as i32;
    let with_extra = loop {
        let s = sampler
            .sample(root, &[outside_root, root], dir.path(), Instant::now())
            .unwrap();
        if s.processes == 52 || started.elapsed() > Duration::from_secs(20) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(with_extra.processes, 52);
    assert!(with_extra.at_tree.contains(&outside_root));
    drop(outside);

    // Once the tree is gone, sampling it is an error naming the pid.
    drop(tree);
    match sampler.sample(root, &[], dir.path(), Instant::now()) {
        Err(e @ SampleError::NoSuchProcess(_)) => {
            assert_eq!(
                e.to_string(),
                format!("the server process {root} does not exist")
            )
        }
        other => panic!("expected NoSuchProcess, got {other:?}"),
    }
    assert!(matches!(
        sampler.sample(0, &[], dir.path(), Instant::now()),
        Err(SampleError::NoSuchProcess(0))
    ));
}

/// Cost of one sample of a 50-process tree; run by bench/messages-bench.sh in release
/// mode. Prints numbers, asserts nothing about time.
#[test]
#[ignore = "benchmark: bench/messages-bench.sh"]
fn bench_sample_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mut sampler = Sampler::new();
    let tree = spawn("for i in $(seq 49); do sleep 60 & done; wait");
    let root = tree.0.id() as i32;
    let started = Instant::now();
    while sampler
        .sample(root, &[], dir.path(), Instant::now())
        .unwrap()
        .processes
        < 50
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "tree did not grow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let rounds = 2000;
    for measure in [MemoryMeasure::PssWhereReadable, MemoryMeasure::Rss] {
        sampler.set_memory_measure(measure);
        let t = Instant::now();
        for _ in 0..rounds {
            sampler
                .sample(root, &[], dir.path(), Instant::now())
                .unwrap();
        }
        let per = t.elapsed() / rounds;
        println!(
            "sampler: one sample of a 50-process tree ({measure:?}): {per:?} (mean of {rounds})"
        );
    }
    drop(tree);
}
