//! Benchmark of cgroup v2 containment (issue 18), on this machine's cgroup2 mount:
//!
//! * sample cost of a 50- and a 1,000-process tree: the `/proc` walk
//!   ([`Sampler::sample`]) against the cgroup sample ([`Sampler::sample_cgroup`]), both
//!   with PSS where readable (what the controller does) and with RSS only, plus the
//!   cgroup's own files alone (`cgroup.procs` + the fixed set of figures);
//! * time to kill a 1,000-process fork storm (every process `setsid`, forking until the
//!   cap, then forking short-lived children) and the survivors: `cgroup.kill` until
//!   `populated 0` (watched), against the `/proc` kill (`process::kill_tree`, the
//!   controller as child subreaper, as in `qoscntrlr run`).
//!
//! Prints one JSON object per measurement on stdout (`bench/cgroup.sh` turns them into
//! BENCHMARKS.md rows). Needs root and a writable cgroup2 mount; says so and exits 2
//! otherwise. Every process it starts is killed on every exit path.
//!
//! Run: `cargo bench --bench cgroup` (or `bench/cgroup.sh`).

#[path = "support/storm.rs"]
mod storm;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use qoscntrlr::cgroup::{self, CgroupSetting, Containment, Decision, EventsWatch};
use qoscntrlr::sampler::{MemoryMeasure, Sampler};

struct Cg(Containment, #[allow(dead_code)] tempfile::TempDir);

impl Cg {
    fn new() -> Cg {
        let dir = tempfile::tempdir().expect("tempdir");
        match cgroup::detect(CgroupSetting::Auto, dir.path()) {
            Decision::Contain(plan) => match cgroup::setup(&plan) {
                Ok(c) => Cg(c, dir),
                Err(e) => fail(&format!("cannot set up a cgroup: {e}")),
            },
            Decision::Uncontained(reason) => fail(&format!("no writable cgroup v2: {reason}")),
        }
    }

    fn empty(&self) -> (Duration, bool) {
        let start = Instant::now();
        let _ = self.0.kill(None);
        let emptied = EventsWatch::new(&self.0.server)
            .and_then(|mut w| w.wait_empty_blocking(Duration::from_secs(60)))
            .unwrap_or(false);
        (start.elapsed(), emptied)
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        let _ = self.empty();
        let _ = self.0.remove();
    }
}

fn fail(reason: &str) -> ! {
    eprintln!("cgroup bench: {reason}");
    std::process::exit(2);
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), v[v.len() - 1])
}

fn wait_started(s: &storm::Storm, n: usize) {
    let until = Instant::now() + Duration::from_secs(120);
    while s.started() < n {
        if Instant::now() > until {
            fail(&format!(
                "the storm reached only {} of {n} processes",
                s.started()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the last forks settle into their loops.
    std::thread::sleep(Duration::from_millis(300));
}

fn sample_cost(size: usize, iterations: usize) {
    let cg = Cg::new();
    // Idle processes: a storm capped at `size` that forks nothing more for an hour.
    let s = storm::Storm::start(
        &cg.0.server.join("cgroup.procs"),
        size,
        Duration::from_secs(3600),
    )
    .unwrap_or_else(|e| fail(&format!("cannot start {size} processes: {e}")));
    wait_started(&s, size);
    let data = Path::new(".");
    let root = s.root;
    let time = |f: &mut dyn FnMut() -> usize| -> (Vec<f64>, usize) {
        let mut seen = 0;
        let mut ms = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            seen = f();
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        (ms, seen)
    };
    let report = |how: &str, memory: &str, (ms, seen): (Vec<f64>, usize)| {
        let (p50, p95, max) = percentiles(ms);
        println!(
            "{{\"bench\":\"sample\",\"processes\":{size},\"how\":\"{how}\",\"memory\":\"{memory}\",\"seen\":{seen},\"iterations\":{iterations},\"p50_ms\":{p50:.4},\"p95_ms\":{p95:.4},\"max_ms\":{max:.4}}}"
        );
    };
    for (measure, name) in [
        (MemoryMeasure::PssWhereReadable, "pss"),
        (MemoryMeasure::Rss, "rss"),
    ] {
        let mut proc_sampler = Sampler::new();
        proc_sampler.set_memory_measure(measure);
        let r = time(&mut || {
            proc_sampler
                .sample(root, &[], data, Instant::now())
                .map(|s| s.processes)
                .unwrap_or(0)
        });
        report("proc", name, r);
        let mut cg_sampler = Sampler::new();
        cg_sampler.set_memory_measure(measure);
        let memory = if cg.0.has_controller("memory") {
            "memory.current"
        } else {
            name
        };
        let r = time(&mut || {
            cg_sampler
                .sample_cgroup(&cg.0.server, root, data, Instant::now(), false)
                .map(|s| s.processes)
                .unwrap_or(0)
        });
        report("cgroup", memory, r);
    }
    let server = cg.0.server.clone();
    let r = time(&mut || {
        let members = cgroup::members_of(&server).map(|m| m.len()).unwrap_or(0);
        std::hint::black_box(cgroup::read_stats(&server));
        members
    });
    report("cgroup-files-only", "none", r);
    drop(cg);
    s.reap();
}

fn storm_kill(size: usize, runs: usize) {
    for run in 0..runs {
        for how in ["cgroup", "proc"] {
            let cg = Cg::new();
            let s = storm::Storm::start(
                &cg.0.server.join("cgroup.procs"),
                size,
                Duration::from_millis(100),
            )
            .unwrap_or_else(|e| fail(&format!("cannot start the storm: {e}")));
            wait_started(&s, size);
            let rel = format!(
                "/{}",
                cg.0.server
                    .strip_prefix(&cg.0.mount)
                    .expect("under the mount")
                    .display()
            );
            let start = Instant::now();
            let (ended, killed) = if how == "cgroup" {
                let report = cg.0.kill(Some(s.root)).unwrap_or_default();
                let emptied = EventsWatch::new(&cg.0.server)
                    .and_then(|mut w| w.wait_empty_blocking(Duration::from_secs(60)))
                    .unwrap_or(false);
                (emptied, report.members.len())
            } else {
                let report = qoscntrlr::process::kill_tree(s.root, s.root, &HashSet::new());
                (report.survivors.is_empty(), report.killed.len())
            };
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            // Survivors by the storm's own record, not by the mechanism under test;
            // give SIGKILL a moment to land before judging.
            std::thread::sleep(Duration::from_millis(500));
            let survivors = s
                .pids()
                .into_iter()
                .filter(|p| storm::alive_in(*p, &rel))
                .count();
            println!(
                "{{\"bench\":\"storm-kill\",\"run\":{run},\"how\":\"{how}\",\"processes\":{},\"killed\":{killed},\"done\":{ended},\"ms\":{ms:.2},\"survivors\":{survivors}}}",
                s.started()
            );
            drop(cg);
            s.reap();
            // Reap what the subreaper adopted.
            while nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(-1),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            )
            .is_ok_and(|st| st != nix::sys::wait::WaitStatus::StillAlive)
            {}
        }
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        fail("needs root");
    }
    // As `qoscntrlr run`: orphans of the tree come to us, so the /proc kill can find them.
    let _ = qoscntrlr::process::become_subreaper();
    let runs = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok().filter(|&n| n > 0))
        .unwrap_or(3);
    sample_cost(50, 500);
    sample_cost(1000, 30);
    storm_kill(1000, runs);
}
