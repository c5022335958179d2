//! Micro-benchmark (issue 4): the cost of one resource sample of a 50-process tree.
//!
//! Starts a real tree (one `sh` with 49 `sleep` children, in its own process group),
//! samples it with [`qoscntrlr::sampler::Sampler`] the way the runtime does (PSS where
//! readable, read every `PSS_EVERY` passes per process), then with PSS read every pass,
//! then with RSS only, and prints one JSON line per memory figure with the
//! per-sample wall time distribution, which `bench/bench.py` folds into BENCHMARKS.md.
//! The tree is killed and reaped on every exit path.
//!
//! Run: `cargo bench --bench sampler` (add `-- ITERATIONS` to change the count).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qoscntrlr::sampler::{MemoryMeasure, Sampler, PSS_EVERY};

const TREE_SIZE: usize = 50;
const DEFAULT_ITERATIONS: usize = 2000;

/// Kills the whole process group and reaps the root when dropped, so a failed
/// benchmark leaves nothing running.
struct Tree(Child);

impl Drop for Tree {
    fn drop(&mut self) {
        // The group id is the root's pid (process_group(0)); the sleeps are its members.
        let pgid = self.0.id() as libc::pid_t;
        // SAFETY: plain syscall on a pid we own; an error only means it is already gone.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn main() {
    let iterations = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok().filter(|&n| n > 0))
        .unwrap_or(DEFAULT_ITERATIONS);
    let script =
        format!("i=1; while [ $i -lt {TREE_SIZE} ]; do sleep 600 & i=$((i+1)); done; wait");
    let child = match Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("sampler bench: cannot start the process tree: {e}");
            std::process::exit(1);
        }
    };
    let tree = Tree(child);
    let root = tree.0.id() as i32;
    let mut sampler = Sampler::new();
    let data_dir = Path::new(".");

    // Wait until the whole tree exists, so every timed sample walks 50 processes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut processes = 0;
    while Instant::now() < deadline {
        match sampler.sample(root, &[], data_dir, Instant::now()) {
            Ok(sample) if sample.processes >= TREE_SIZE => {
                processes = sample.processes;
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                eprintln!("sampler bench: sample failed: {e}");
                std::process::exit(1);
            }
        }
    }
    if processes < TREE_SIZE {
        eprintln!("sampler bench: the tree never reached {TREE_SIZE} processes");
        std::process::exit(1);
    }

    // PSS where readable is what the runtime uses (each process's `smaps_rollup` read
    // every PSS_EVERY passes, carried forward by RSS in between); `pss-every-pass` reads
    // it every time (the cost before that change); RSS (from `stat` only, no
    // `smaps_rollup`) is the cheaper figure the sampler also offers.
    for (label, measure, pss_every) in [
        ("pss", MemoryMeasure::PssWhereReadable, PSS_EVERY),
        ("pss-every-pass", MemoryMeasure::PssWhereReadable, 1),
        ("rss", MemoryMeasure::Rss, PSS_EVERY),
    ] {
        sampler.set_memory_measure(measure);
        sampler.set_pss_every(pss_every);
        let mut micros: Vec<f64> = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            let result = sampler.sample(root, &[], data_dir, start);
            micros.push(start.elapsed().as_secs_f64() * 1e6);
            if let Err(e) = result {
                eprintln!("sampler bench: sample failed: {e}");
                std::process::exit(1);
            }
        }
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
        println!(
            "{{\"bench\":\"sampler\",\"memory\":\"{label}\",\"processes\":{processes},\
             \"iterations\":{iterations},\"p50_us\":{:.1},\"p95_us\":{:.1},\"min_us\":{:.1},\
             \"max_us\":{:.1}}}",
            at(0.5),
            at(0.95),
            micros[0],
            micros[micros.len() - 1]
        );
    }
    rules_pass(&mut sampler, root, processes, iterations);
    drop(tree);
}

/// One sampling pass as the runtime makes it with ten rules in force: the tree sample
/// (PSS), the host figures, the write-latency and free-space probes (polled, on their
/// own threads), the ten rules judged, and the usage line built.
fn rules_pass(sampler: &mut Sampler, root: i32, processes: usize, iterations: usize) {
    use qoscntrlr::host::{disk_free, write_probe, BoundedProbe, HostSampler};
    use qoscntrlr::rules::{parse_rule, Item, Reading, RuleEngine};
    let dir = std::env::temp_dir().join(format!("qos-bench-rules-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("sampler bench: cannot create {}: {e}", dir.display());
        return;
    }
    let texts = [
        "memory > 2GB average 30 action=alert",
        "memory > 4GB samples 3 action=kill",
        "cpu > 90% samples 6 action=log",
        "open_files > 10000 action=kill",
        "threads > 5000 action=alert",
        "host_memory > 95% samples 3 action=failover",
        "host_cpu > 95% average 6 action=log",
        "load1 > 64 action=log",
        "disk_free:/ < 1GB missing=breach action=alert",
        "write_latency > 2s samples 3 missing=breach action=failover",
    ];
    let rules: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            parse_rule(&format!("R{i}"), t, 3, Duration::from_secs(10), &dir)
                .unwrap_or_else(|e| panic!("{t}: {e}"))
        })
        .collect();
    let mut engine = RuleEngine::new(rules);
    let mut host = HostSampler::default();
    let mut write = BoundedProbe::default();
    let mut disk = BoundedProbe::default();
    sampler.set_memory_measure(MemoryMeasure::PssWhereReadable);
    let limit = Duration::from_secs(10);
    let mut micros: Vec<f64> = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        let tree = sampler.sample(root, &[], &dir, start);
        let Ok(sample) = tree else {
            eprintln!("sampler bench: sample failed");
            std::process::exit(1);
        };
        let d = dir.clone();
        let pass = vec![
            (Item::Memory, Reading::Value(sample.rss_bytes as f64)),
            (
                Item::Cpu,
                sample
                    .cpu_percent
                    .map_or(Reading::Missing("first".into()), Reading::Value),
            ),
            (Item::OpenFiles, Reading::Value(sample.open_files as f64)),
            (Item::Threads, Reading::Value(sample.threads as f64)),
            (Item::HostMemory, host.memory_percent()),
            (Item::HostCpu, host.cpu_percent()),
            (Item::Load1, host.load1()),
            (
                Item::DiskFree("/".into()),
                disk.poll(start, limit, "free space", || disk_free(Path::new("/"))),
            ),
            (
                Item::WriteLatency,
                write.poll(start, limit, "write", move || write_probe(&d)),
            ),
        ];
        let line = qoscntrlr::usage::line(chrono::Local::now(), &pass);
        let readings = pass.into_iter().collect();
        let verdicts = engine.observe(&readings);
        std::hint::black_box((line, verdicts));
        micros.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let _ = std::fs::remove_dir_all(&dir);
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    println!(
        "{{\"bench\":\"sampler\",\"memory\":\"pss+10 rules\",\"processes\":{processes},\
         \"iterations\":{iterations},\"p50_us\":{:.1},\"p95_us\":{:.1},\"min_us\":{:.1},\
         \"max_us\":{:.1}}}",
        at(0.5),
        at(0.95),
        micros[0],
        micros[micros.len() - 1]
    );
}
