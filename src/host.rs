//! Samples beyond the server's tree, for resource rules: the host's memory, CPU and load
//! (`/proc/meminfo`, `/proc/stat`, `/proc/loadavg`), free space of any path and the data
//! directory's write latency (a small write + fsync). (Pressure comes with the cgroup
//! sample of a contained server, see `sampler`.)
//!
//! Filesystem probes never block the supervision loop: each runs on a thread of its own
//! ([`BoundedProbe`]), at most one in flight per probe, and the loop only looks at the
//! result. A probe that has not answered within its limit is reported as failed (a hung
//! NFS mount, a wedged disk) and no second one is started until it returns. The figure a
//! pass reports is the last completed probe's, so it lags one sampling interval.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use crate::rules::Reading;

/// Host memory in use, percent: `100 × (1 − MemAvailable / MemTotal)`.
pub fn parse_meminfo(text: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| (100.0 * (1.0 - available / total)).clamp(0.0, 100.0))
}

/// (busy, total) jiffies of the `cpu` line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is inside user already).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some((total - idle.min(total), total))
}

/// The one-minute load average.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Host-wide figures; keeps the previous `/proc/stat` for the CPU delta.
#[derive(Debug)]
pub struct HostSampler {
    proc_root: PathBuf,
    previous_cpu: Option<(u64, u64)>,
}

impl Default for HostSampler {
    fn default() -> Self {
        HostSampler::with_proc_root(Path::new("/proc"))
    }
}

impl HostSampler {
    pub fn with_proc_root(proc_root: &Path) -> HostSampler {
        HostSampler {
            proc_root: proc_root.to_path_buf(),
            previous_cpu: None,
        }
    }

    fn read(&self, name: &str) -> Result<String, String> {
        std::fs::read_to_string(self.proc_root.join(name))
            .map_err(|e| format!("cannot read {}: {e}", self.proc_root.join(name).display()))
    }

    pub fn memory_percent(&self) -> Reading {
        match self.read("meminfo") {
            Ok(text) => parse_meminfo(&text).map_or_else(
                || Reading::Missing("no MemTotal/MemAvailable in meminfo".into()),
                Reading::Value,
            ),
            Err(e) => Reading::Missing(e),
        }
    }

    /// Busy percent of all CPUs since the previous call; missing on the first.
    pub fn cpu_percent(&mut self) -> Reading {
        let now = match self.read("stat").map(|t| parse_proc_stat(&t)) {
            Ok(Some(now)) => now,
            Ok(None) => return Reading::Missing("no cpu line in /proc/stat".into()),
            Err(e) => return Reading::Missing(e),
        };
        let previous = self.previous_cpu.replace(now);
        match previous {
            Some((busy0, total0)) if now.1 > total0 => {
                let busy = now.0.saturating_sub(busy0) as f64;
                Reading::Value((100.0 * busy / (now.1 - total0) as f64).clamp(0.0, 100.0))
            }
            Some(_) => Reading::Missing("no CPU time passed since the last sample".into()),
            None => Reading::Missing("first sample (CPU is measured between two)".into()),
        }
    }

    pub fn load1(&self) -> Reading {
        match self.read("loadavg") {
            Ok(text) => parse_loadavg(&text).map_or_else(
                || Reading::Missing("unreadable loadavg".into()),
                Reading::Value,
            ),
            Err(e) => Reading::Missing(e),
        }
    }
}

/// Whether pressure items can be read on this host: a cgroup v2 hierarchy is mounted
/// and the kernel has PSI (`/proc/pressure`). The error says what is missing.
pub fn pressure_available() -> Result<(), String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo is unreadable ({e})"))?;
    if !mountinfo.lines().any(|l| {
        l.split(" - ")
            .nth(1)
            .is_some_and(|t| t.starts_with("cgroup2 "))
    }) {
        return Err("no cgroup v2 hierarchy is mounted on this host".into());
    }
    if !Path::new("/proc/pressure").is_dir() {
        return Err("this kernel has no pressure stall information (/proc/pressure)".into());
    }
    Ok(())
}

/// What one probe run found: a figure, a failure that means a broken filesystem, or one
/// that means the figure is unknown.
pub type ProbeOutcome = Reading;

/// A probe that runs on a thread of its own, one at a time, judged against a time limit
/// without ever waiting for it.
#[derive(Debug, Default)]
pub struct BoundedProbe {
    in_flight: Option<(Instant, Receiver<ProbeOutcome>)>,
    last: Option<ProbeOutcome>,
}

impl BoundedProbe {
    /// Collect a finished run, report, and start the next run if none is in flight.
    /// `what` names the probe in a hang report (`write + fsync in /data`).
    pub fn poll(
        &mut self,
        now: Instant,
        limit: Duration,
        what: &str,
        run: impl FnOnce() -> ProbeOutcome + Send + 'static,
    ) -> Reading {
        let mut hung = None;
        if let Some((started, rx)) = &self.in_flight {
            match rx.try_recv() {
                Ok(outcome) => {
                    self.last = Some(outcome);
                    self.in_flight = None;
                }
                Err(TryRecvError::Disconnected) => {
                    self.last = Some(Reading::Missing(format!("{what}: the probe thread ended")));
                    self.in_flight = None;
                }
                Err(TryRecvError::Empty) => {
                    let waited = now.saturating_duration_since(*started);
                    if waited >= limit {
                        hung = Some(Reading::Failed(format!(
                            "{what}: no answer for {} s (hung filesystem?)",
                            waited.as_secs()
                        )));
                    }
                }
            }
        }
        if self.in_flight.is_none() {
            let (tx, rx) = mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("qoscntrlr-fsprobe".into())
                .spawn(move || {
                    let _ = tx.send(run());
                });
            match spawned {
                Ok(_) => self.in_flight = Some((now, rx)),
                Err(e) => return Reading::Missing(format!("{what}: cannot start a probe: {e}")),
            }
        }
        if let Some(hung) = hung {
            return hung;
        }
        self.last
            .clone()
            .unwrap_or_else(|| Reading::Missing("first probe under way".into()))
    }
}

/// Name of the write-latency probe's file in the data directory.
pub const WRITE_PROBE_NAME: &str = ".qoscntrlr-write-probe";

/// One write-latency probe: create the probe file anew (unlink + exclusive create, so a
/// metadata update is part of the figure, as for any real write of a new file), write
/// 512 bytes, fsync, close; the time taken in milliseconds. Any failure (read-only, full, I/O error) is a
/// failed filesystem.
pub fn write_probe(dir: &Path) -> ProbeOutcome {
    use std::io::Write;
    let path = dir.join(WRITE_PROBE_NAME);
    let started = Instant::now();
    let result = (|| -> std::io::Result<()> {
        // Created anew each time, exclusively and without following a link planted at
        // the name (the controller often runs as root in a directory the server writes).
        let mut file = crate::safefs::create_temp(&path, 0o600)?;
        file.write_all(&[b'q'; 512])?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Reading::Value(started.elapsed().as_secs_f64() * 1000.0),
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
            Reading::Failed(format!("read-only file system at {}", dir.display()))
        }
        Err(e) => Reading::Failed(format!("cannot write {}: {e}", path.display())),
    }
}

/// Free space (for unprivileged users) of the filesystem holding `path`, bytes.
pub fn disk_free(path: &Path) -> ProbeOutcome {
    match nix::sys::statvfs::statvfs(path) {
        Ok(vfs) => {
            Reading::Value(vfs.blocks_available().saturating_mul(vfs.fragment_size()) as f64)
        }
        Err(e) => Reading::Missing(format!(
            "cannot read the free space of {}: {e}",
            path.display()
        )),
    }
}

/// The host name as gethostname(2) reports it (the UTS node name), `localhost` when it
/// cannot be read or is empty. The one reader for the default mail sender, mail bodies,
/// the support bundle's file name and the config's `%h`-style defaults. Read from the
/// kernel's UTS file so that nix's optional `hostname` feature is not needed for it.
pub fn host_name() -> String {
    host_name_from(std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
}

fn host_name_from(read: Option<String>) -> String {
    read.map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_is_trimmed_and_never_empty() {
        assert_eq!(host_name_from(Some("db7\n".into())), "db7");
        assert_eq!(host_name_from(Some(" \n".into())), "localhost");
        assert_eq!(host_name_from(None), "localhost");
        assert!(!host_name().is_empty());
    }

    #[test]
    fn proc_parsers() {
        let meminfo =
            "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(75.0));
        assert_eq!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n"), None);
        let stat = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_proc_stat(stat), Some((200, 1000)));
        assert_eq!(parse_loadavg("2.50 1.00 0.50 1/100 4242\n"), Some(2.5));
    }

    #[test]
    fn host_cpu_is_a_delta() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), "cpu  100 0 100 800 0 0 0 0\n").unwrap();
        let mut host = HostSampler::with_proc_root(dir.path());
        assert!(matches!(host.cpu_percent(), Reading::Missing(_)));
        std::fs::write(dir.path().join("stat"), "cpu  150 0 150 900 0 0 0 0\n").unwrap();
        assert_eq!(host.cpu_percent(), Reading::Value(50.0));
        assert!(matches!(host.load1(), Reading::Missing(_)));
    }

    #[test]
    fn a_hung_probe_is_failed_and_not_started_twice() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let mut probe = BoundedProbe::default();
        let t0 = Instant::now();
        let first = probe.poll(t0, Duration::from_secs(5), "test probe", move || {
            let _ = release_rx.recv();
            Reading::Value(1.0)
        });
        assert!(matches!(first, Reading::Missing(_)));
        // Within the limit: still the (missing) last figure; the run is not restarted.
        let r = probe.poll(
            t0 + Duration::from_secs(1),
            Duration::from_secs(5),
            "test probe",
            || panic!("a second run while the first hangs"),
        );
        assert!(matches!(r, Reading::Missing(_)));
        let r = probe.poll(
            t0 + Duration::from_secs(6),
            Duration::from_secs(5),
            "test probe",
            || panic!("a second run while the first hangs"),
        );
        assert!(
            matches!(&r, Reading::Failed(why) if why.contains("no answer for 6 s")),
            "{r:?}"
        );
        release_tx.send(()).unwrap();
        // Wait for the thread's answer, then the figure is the completed run's.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = probe.poll(
                Instant::now(),
                Duration::from_secs(60),
                "test probe",
                || Reading::Value(2.0),
            );
            if r == Reading::Value(1.0) || r == Reading::Value(2.0) {
                break;
            }
            assert!(Instant::now() < deadline, "{r:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn write_probe_measures_and_fails_on_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(write_probe(dir.path()), Reading::Value(ms) if ms >= 0.0));
        assert!(matches!(
            write_probe(&dir.path().join("absent")),
            Reading::Failed(_)
        ));
        assert!(matches!(disk_free(dir.path()), Reading::Value(b) if b > 0.0));
        assert!(matches!(
            disk_free(&dir.path().join("absent")),
            Reading::Missing(_)
        ));
    }
}
