//! Resource samples of the server's process tree (the configuration keys `QOS_MAX_*`, issue 4):
//! memory, CPU % of one core, open descriptors and threads of every process in the tree,
//! and the free space of the data directory's filesystem. Only measurement: judging a
//! sample against limits and rules is the core's (`crates/qoscntrlr-core`: `rules` and the controller).
//!
//! Targeted refresh: the tree is walked from its root through
//! `/proc/<pid>/task/<tid>/children`, reading a few files per process; the process table
//! is never scanned (except, once per sample, on a kernel built without
//! `CONFIG_PROC_CHILDREN`). Per process a pass costs one read of `stat` and one of the main
//! thread's `children`, both kept open from pass to pass ([`KeptFiles`]), and one
//! `stat(2)` of `fd/` for the descriptor count (its size, on Linux 6.2 and later);
//! `smaps_rollup` (also kept open) every [`PSS_EVERY`] passes. Paths, buffers and maps
//! are reused from pass to pass. A general library such as `sysinfo` refreshes far more than
//! these few files per process, which is why they are read by hand.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the memory figure was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Proportional set size (`/proc/<pid>/smaps_rollup`) of every process: shared pages
    /// are split among their users, so the tree's sum does not count them twice.
    Pss,
    /// Resident set size: the only figure readable for these processes.
    Rss,
    /// `memory.current` of the server's cgroup: everything the kernel charges to it,
    /// page cache and kernel memory included, whatever the number of processes.
    Cgroup,
    /// PSS for some processes, RSS for those whose `smaps_rollup` was unreadable.
    Mixed,
}

impl fmt::Display for MemoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemoryKind::Pss => "PSS",
            MemoryKind::Rss => "RSS",
            MemoryKind::Mixed => "PSS/RSS",
            MemoryKind::Cgroup => "cgroup",
        })
    }
}

/// One sample of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The pids sampled, the root first.
    pub at_tree: Vec<i32>,
    /// Memory of the tree in bytes, measured as `memory_kind` says.
    pub rss_bytes: u64,
    pub memory_kind: MemoryKind,
    /// CPU of the tree since the previous sample, percent of one core (may exceed 100
    /// on several cores). `None` on the first sample.
    pub cpu_percent: Option<f64>,
    pub open_files: u64,
    pub threads: u64,
    pub disk_free_bytes: u64,
    pub processes: usize,
    /// Processes whose descriptors could not be counted (another user's, not root).
    pub fds_unreadable: usize,
    /// Whether `open_files` was counted (a cgroup sample skips the per-process
    /// descriptor count unless a limit needs it).
    pub open_files_counted: bool,
    /// Where the tree's figures came from.
    pub source: SampleSource,
    /// Pressure stall information of the server's cgroup, `some avg10` in percent:
    /// the share of the last 10 s in which some of its tasks waited for memory, CPU or
    /// I/O. `None` without a cgroup or with PSI off.
    pub memory_pressure: Option<f64>,
    pub cpu_pressure: Option<f64>,
    pub io_pressure: Option<f64>,
    /// `oom_kill` of the cgroup's `memory.events` (a running total), where the memory
    /// controller is enabled for it.
    pub oom_kills: Option<u64>,
}

/// How a sample found the server's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleSource {
    /// The `/proc` walk from the server's pid.
    #[default]
    Proc,
    /// The server's cgroup (`cgroup.procs` and the cgroup's own files).
    Cgroup,
}

impl SampleSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            SampleSource::Proc => "proc",
            SampleSource::Cgroup => "cgroup",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("the server process {0} does not exist")]
    NoSuchProcess(i32),
    #[error("cannot read {path}: {source}")]
    Proc {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the free space of {path}: {source}")]
    Disk { path: PathBuf, source: nix::Error },
    #[error("unexpected format of {0}")]
    Format(PathBuf),
    #[error("{0}")]
    Cgroup(#[from] crate::cgroup::CgroupError),
}

/// Why `/proc/<pid>/stat` gave no [`Stat`].
enum StatError {
    Io(std::io::Error),
    Format,
}

/// The fields of `/proc/<pid>/stat` a sample needs.
struct Stat {
    ppid: i32,
    cpu_ticks: u64,
    threads: u64,
    start_ticks: u64,
    rss_pages: u64,
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (state) of proc(5) comes first; walk the fields once, keeping the five.
    let mut fields = rest.split_ascii_whitespace();
    let mut next_at = |from: &mut usize, n: usize| -> Option<u64> {
        let value = fields.nth(n - *from)?.parse().ok();
        *from = n + 1;
        value
    };
    let mut at = 3;
    let ppid = next_at(&mut at, 4)?;
    let utime = next_at(&mut at, 14)?;
    let stime = next_at(&mut at, 15)?;
    let threads = next_at(&mut at, 20)?;
    let start_ticks = next_at(&mut at, 22)?;
    let rss_pages = next_at(&mut at, 24)?;
    Some(Stat {
        ppid: i32::try_from(ppid).ok()?,
        cpu_ticks: utime.checked_add(stime)?,
        threads,
        start_ticks,
        rss_pages,
    })
}

/// `Pss:` of `smaps_rollup`, in bytes.
fn parse_pss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line["Pss:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

fn parse_pids(text: &str, into: &mut Vec<i32>) {
    into.extend(
        text.split_ascii_whitespace()
            .filter_map(|p| p.parse::<i32>().ok()),
    );
}

/// How far to read a procfs file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadTo {
    /// A single seq_file record (`stat`, `smaps_rollup`): the kernel hands it over whole
    /// in the first read; reading on to the end would make it compute the file twice
    /// (doubling the cost of `smaps_rollup`).
    OneRecord,
    /// A list of small records (`children`): seq_file fills one read with whole records
    /// until its page-sized buffer is full or the list ends, so a read that returns well
    /// under a page is the end — no second read just to be told so. Only a long list
    /// (hundreds of pids) takes more reads.
    ShortReadEnds,
}

/// Bytes under which a [`ReadTo::ShortReadEnds`] read is the last: seq_file's buffer is
/// one page and a `children` record (`"<pid> "`) at most 11 bytes.
const SEQ_SHORT_READ: usize = 4096 - 64;

/// Reads small procfs files into one reused buffer: no size probe and no allocation per
/// file, which matter at a few hundred files per sample.
#[derive(Default)]
struct ProcReader {
    buf: Vec<u8>,
}

impl ProcReader {
    /// Open `path` and read it; the file is handed back so that it can be kept open.
    /// When descriptors have run short, the kept files are closed and the open tried
    /// once more.
    fn open(
        &mut self,
        path: &Path,
        to: ReadTo,
        kept: &mut KeptFiles,
    ) -> std::io::Result<(File, Cow<'_, str>)> {
        let file = match File::open(path) {
            Err(e) if crate::probe::is_descriptor_exhaustion(&e) && kept.clear() > 0 => {
                File::open(path)?
            }
            opened => opened?,
        };
        let text = self.read_from_start(&file, to)?;
        Ok((file, text))
    }

    /// `file`'s text read from offset 0 (`pread`): a procfs file kept open is generated
    /// afresh by every read from its start. A command name that is not UTF-8 is
    /// replaced lossily (borrowed, no copy, in the usual all-UTF-8 case).
    fn read_from_start(&mut self, file: &File, to: ReadTo) -> std::io::Result<Cow<'_, str>> {
        // The buffer keeps its length between reads; only a file larger than any
        // before grows it (zeroing it once, not per read).
        if self.buf.is_empty() {
            self.buf = vec![0; 16 * 1024];
        }
        let mut filled = 0;
        loop {
            if filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = file.read_at(&mut self.buf[filled..], filled as u64)?;
            filled += n;
            let last = match to {
                ReadTo::OneRecord => filled < self.buf.len(),
                ReadTo::ShortReadEnds => n < SEQ_SHORT_READ,
            };
            if n == 0 || last {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&self.buf[..filled]))
    }
}

/// The procfs files of one process kept open from pass to pass (see [`KeptFiles`]).
struct ProcFiles {
    stat: File,
    /// The main thread's `children`.
    children: Option<File>,
    smaps_rollup: Option<File>,
    /// The last pass that walked this process (files of processes gone are closed).
    pass: u64,
}

/// Most descriptors the sampler keeps open, whatever `RLIMIT_NOFILE` allows.
const KEPT_FILES_MAX: usize = 256;

/// Each process's `stat`, `children` and `smaps_rollup`, kept open between passes.
///
/// Opening a procfs file costs more than reading it: the path walk, the pid lookup and,
/// for `smaps_rollup`, the access check and the grab of the address space (measured per
/// file on this project's 2-core machine: `stat` 13.5 µs opened, read and closed against
/// 8.7 µs read from an open file; `children` 9.4 against 1.1 µs; `smaps_rollup` 69
/// against 35 µs). A file kept open refers to its process for good — not to the pid
/// number —, so a read from it fails once that process has been reaped, and a reused
/// pid is opened afresh. The sampler keeps at most a quarter of the soft
/// `RLIMIT_NOFILE` (at most [`KEPT_FILES_MAX`]) and closes them all at once when
/// descriptors run short ([`Sampler::close_kept_files`]), so the cache never costs the
/// controller a descriptor it needs.
struct KeptFiles {
    by_pid: HashMap<i32, ProcFiles>,
    held: usize,
    budget: usize,
}

impl KeptFiles {
    /// Only procfs is kept open: an ordinary file (a fake `/proc` in tests) stays
    /// readable after it is removed, so a process gone would still be counted.
    fn new(procfs: bool) -> KeptFiles {
        use nix::sys::resource::{getrlimit, Resource};
        let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, _)) if procfs => soft,
            _ => 0,
        };
        KeptFiles {
            by_pid: HashMap::new(),
            held: 0,
            budget: usize::try_from(soft / 4).map_or(KEPT_FILES_MAX, |b| b.min(KEPT_FILES_MAX)),
        }
    }

    fn has_room(&self) -> bool {
        self.held < self.budget
    }

    /// Keep `stat` of a process that has none kept yet, if the budget allows.
    fn keep_stat(&mut self, pid: i32, stat: File, pass: u64) {
        if self.has_room() {
            self.held += 1;
            self.by_pid.insert(
                pid,
                ProcFiles {
                    stat,
                    children: None,
                    smaps_rollup: None,
                    pass,
                },
            );
        }
    }

    /// Keep another file of a process whose `stat` is kept, if the budget allows.
    fn keep(&mut self, pid: i32, file: File, slot: fn(&mut ProcFiles) -> &mut Option<File>) {
        if !self.has_room() {
            return;
        }
        if let Some(files) = self.by_pid.get_mut(&pid) {
            if slot(files).replace(file).is_none() {
                self.held += 1;
            }
        }
    }

    /// Close one kept file of `pid` (it no longer reads right).
    fn drop_file(&mut self, pid: i32, slot: fn(&mut ProcFiles) -> &mut Option<File>) {
        if let Some(files) = self.by_pid.get_mut(&pid) {
            if slot(files).take().is_some() {
                self.held -= 1;
            }
        }
    }

    fn forget(&mut self, pid: i32) {
        if let Some(files) = self.by_pid.remove(&pid) {
            self.held -= files.count();
        }
    }

    /// Close the files of every process the pass `pass` did not walk.
    fn keep_only_pass(&mut self, pass: u64) {
        let mut closed = 0;
        self.by_pid.retain(|_, files| {
            let keep = files.pass == pass;
            if !keep {
                closed += files.count();
            }
            keep
        });
        self.held -= closed;
    }

    /// Close everything; returns how many descriptors that freed.
    fn clear(&mut self) -> usize {
        let freed = self.held;
        self.by_pid.clear();
        self.held = 0;
        freed
    }
}

impl ProcFiles {
    fn count(&self) -> usize {
        1 + usize::from(self.children.is_some()) + usize::from(self.smaps_rollup.is_some())
    }
}

fn children_slot(files: &mut ProcFiles) -> &mut Option<File> {
    &mut files.children
}

fn smaps_rollup_slot(files: &mut ProcFiles) -> &mut Option<File> {
    &mut files.smaps_rollup
}

/// `/proc/<pid>/<leaf>` built in a reused buffer (no allocation per file once it has
/// grown to the longest path).
struct ProcPath {
    buf: PathBuf,
}

impl ProcPath {
    fn new() -> ProcPath {
        ProcPath {
            buf: PathBuf::with_capacity(64),
        }
    }

    fn of(&mut self, root: &Path, pid: i32, leaf: &str) -> &Path {
        self.build(root, &[pid], leaf)
    }

    /// `/proc/<pid>/task/<pid>/children`: the children of the main thread.
    fn children_file(&mut self, root: &Path, pid: i32) -> &Path {
        self.build(root, &[pid, pid], "children")
    }

    fn build(&mut self, root: &Path, pids: &[i32], leaf: &str) -> &Path {
        let mut text = std::mem::take(&mut self.buf).into_os_string();
        text.clear();
        text.push(root.as_os_str());
        let mut digits = [0u8; 12];
        for (i, &pid) in pids.iter().enumerate() {
            text.push(if i == 0 { "/" } else { "/task/" });
            text.push(decimal(pid, &mut digits));
        }
        text.push("/");
        text.push(leaf);
        self.buf = PathBuf::from(text);
        &self.buf
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(n: i32, buf: &mut [u8; 12]) -> &str {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    // Only ASCII digits and '-' were written.
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// How many sampling passes a process's PSS is carried forward before `smaps_rollup` is
/// read again (staggered by pid, so each pass reads about a sixth of the tree). Reading
/// it makes the kernel walk every mapping of the process: 63 % of a 50-process sample's
/// cost when read every pass (BENCHMARKS.md). In between, the change of the process's RSS
/// (`stat`, read anyway) is added to its last PSS, so growth — a leak — counts at once
/// and in full; only the split of shared pages is up to this many passes old (one
/// minute at the default 10 s QOS_RESOURCE_INTERVAL).
pub const PSS_EVERY: u64 = 6;

/// Which memory figure to take per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMeasure {
    /// PSS where `smaps_rollup` is readable, else RSS. Accurate for trees whose
    /// processes share memory (a forked server's children, shared segments), but the
    /// kernel walks every mapping for it: the costlier choice, so it is read every
    /// [`PSS_EVERY`] passes per process and carried forward by RSS changes in between.
    PssWhereReadable,
    /// RSS from `/proc/<pid>/stat` only: cheap, counts shared pages once per process.
    Rss,
}

/// Samples a process tree, keeping what is needed to compute CPU between samples.
pub struct Sampler {
    proc_root: PathBuf,
    clock_ticks: f64,
    page_size: u64,
    /// CPU ticks of each process at the previous sample, keyed by (pid, start time) so
    /// a reused pid is not mistaken for the old process.
    previous: HashMap<(i32, u64), u64>,
    previous_at: Option<Instant>,
    /// Whether the kernel offers `task/<tid>/children` (CONFIG_PROC_CHILDREN).
    children_files: bool,
    measure: MemoryMeasure,
    reader: ProcReader,
    kept: KeptFiles,
    /// `cpu.stat usage_usec` of the cgroup at the previous cgroup sample.
    previous_cgroup_usec: Option<(u64, Instant)>,
    /// Per process (pid, start time): its PSS when `smaps_rollup` was last read and its
    /// RSS at that moment (see [`PSS_EVERY`]).
    pss_known: HashMap<(i32, u64), (u64, u64)>,
    /// Read `smaps_rollup` every this many passes per process (1: every pass).
    pss_every: u64,
    /// Sampling passes so far (staggers the PSS reads).
    passes: u64,
    /// `proc_root` is procfs, whose `<pid>/fd` directory has the process's number of
    /// open descriptors as its size (Linux 6.2 and later; 0 before).
    fd_count_in_size: bool,
    /// Reused from pass to pass, so a pass allocates nothing once they have grown: the
    /// path being read, the pids seen and still to visit, one process's children, this
    /// pass's CPU ticks and PSS records (swapped with `previous` / `pss_known`).
    path: ProcPath,
    seen: HashSet<i32>,
    pending: Vec<i32>,
    children: Vec<i32>,
    ticks_now: HashMap<(i32, u64), u64>,
    pss_next: HashMap<(i32, u64), (u64, u64)>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Sampler {
    pub fn new() -> Sampler {
        Sampler::with_proc_root(Path::new("/proc"))
    }

    /// A sampler reading another mount of procfs (tests, containers).
    pub fn with_proc_root(proc_root: &Path) -> Sampler {
        use nix::unistd::{sysconf, SysconfVar};
        // Linux fixes USER_HZ at 100 and pages at 4 KiB on common targets; the fallbacks
        // only matter if sysconf itself fails.
        let clock_ticks = match sysconf(SysconfVar::CLK_TCK) {
            Ok(Some(t)) if t > 0 => t as f64,
            _ => 100.0,
        };
        let page_size = match sysconf(SysconfVar::PAGE_SIZE) {
            Ok(Some(p)) if p > 0 => p as u64,
            _ => 4096,
        };
        let procfs = nix::sys::statfs::statfs(proc_root)
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
        Sampler {
            proc_root: proc_root.to_path_buf(),
            clock_ticks,
            page_size,
            previous: HashMap::new(),
            previous_at: None,
            children_files: proc_root.join("thread-self/children").exists(),
            measure: MemoryMeasure::PssWhereReadable,
            reader: ProcReader::default(),
            kept: KeptFiles::new(procfs),
            previous_cgroup_usec: None,
            pss_known: HashMap::new(),
            pss_every: PSS_EVERY,
            passes: 0,
            fd_count_in_size: procfs,
            path: ProcPath::new(),
            seen: HashSet::new(),
            pending: Vec::new(),
            children: Vec::new(),
            ticks_now: HashMap::new(),
            pss_next: HashMap::new(),
        }
    }

    /// Read each process's PSS every `passes` passes (default [`PSS_EVERY`]; 1 reads it
    /// every pass, as the benchmark does to show the difference).
    pub fn set_pss_every(&mut self, passes: u64) {
        self.pss_every = passes.max(1);
    }

    /// The memory figure of one process for this pass: PSS (read now, or the last one
    /// read carried forward by the change of RSS), or `None` when only RSS is to be had.
    /// Records what it read in `pss_next` (the next pass's `pss_known`).
    fn process_memory(&mut self, pid: i32, stat: &Stat) -> Option<u64> {
        if self.measure == MemoryMeasure::Rss {
            return None;
        }
        let key = (pid, stat.start_ticks);
        let rss = stat.rss_pages * self.page_size;
        let due = (self.passes + pid.unsigned_abs() as u64) % self.pss_every == 0;
        if let (false, Some(&(pss, rss_then))) = (due, self.pss_known.get(&key)) {
            self.pss_next.insert(key, (pss, rss_then));
            // Signed arithmetic without overflow: pss + (rss - rss_then), at least 0.
            return Some((pss + rss).saturating_sub(rss_then));
        }
        let kept = self
            .kept
            .by_pid
            .get(&pid)
            .and_then(|files| files.smaps_rollup.as_ref());
        let from_kept = kept.and_then(|file| {
            let text = self.reader.read_from_start(file, ReadTo::OneRecord).ok()?;
            parse_pss(&text)
        });
        let pss = match from_kept {
            Some(pss) => pss,
            None => {
                // Not kept yet, or kept from before an exec (the file reads the address
                // space it was opened on, which has gone): open it afresh.
                self.kept.drop_file(pid, smaps_rollup_slot);
                let path = self.path.of(&self.proc_root, pid, "smaps_rollup");
                let (file, text) = self
                    .reader
                    .open(path, ReadTo::OneRecord, &mut self.kept)
                    .ok()?;
                let pss = parse_pss(&text)?;
                self.kept.keep(pid, file, smaps_rollup_slot);
                pss
            }
        };
        self.pss_next.insert(key, (pss, rss));
        Some(pss)
    }

    /// `/proc/<pid>/stat`, or why not; the file is kept open for the next pass.
    fn read_stat(&mut self, pid: i32) -> Result<Stat, StatError> {
        if let Some(files) = self.kept.by_pid.get_mut(&pid) {
            files.pass = self.passes;
            let text = self.reader.read_from_start(&files.stat, ReadTo::OneRecord);
            if let Some(stat) = text.ok().and_then(|t| parse_stat(&t)) {
                return Ok(stat);
            }
            // That process has been reaped (a reused pid is another one): open afresh.
            self.kept.forget(pid);
        }
        let path = self.path.of(&self.proc_root, pid, "stat");
        let (file, text) = self
            .reader
            .open(path, ReadTo::OneRecord, &mut self.kept)
            .map_err(StatError::Io)?;
        let stat = parse_stat(&text).ok_or(StatError::Format)?;
        self.kept.keep_stat(pid, file, self.passes);
        Ok(stat)
    }

    /// Close every file kept open between passes; returns how many descriptors that
    /// freed (the controller has run short of them).
    pub fn close_kept_files(&mut self) -> usize {
        self.kept.clear()
    }

    /// The number of open descriptors of `pid`, `None` when they cannot be counted
    /// (another user's process, for a controller that is not root).
    fn open_files(&mut self, pid: i32) -> Option<u64> {
        let path = self.path.of(&self.proc_root, pid, "fd");
        if self.fd_count_in_size {
            // One stat instead of open, list and close: on Linux 6.2 and later procfs
            // gives the directory the number of open descriptors as its size. 0 is
            // also what older kernels say: then the listing decides.
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.len() > 0 {
                    return Some(meta.len());
                }
            }
        }
        std::fs::read_dir(path).ok().map(|e| e.count() as u64)
    }

    /// Choose the memory figure (default: PSS where readable).
    pub fn set_memory_measure(&mut self, measure: MemoryMeasure) {
        self.measure = measure;
    }

    /// Forget the CPU history (the server was restarted: a new tree).
    pub fn reset(&mut self) {
        self.previous.clear();
        self.previous_at = None;
        self.previous_cgroup_usec = None;
        self.pss_known.clear();
        self.kept.clear();
    }

    /// Sample the tree under `root_pid` plus the trees under `extra_pids` (processes of
    /// the server that left its tree, e.g. orphans the controller adopted), and the
    /// filesystem holding `data_dir`.
    pub fn sample(
        &mut self,
        root_pid: i32,
        extra_pids: &[i32],
        data_dir: &Path,
        now: Instant,
    ) -> Result<Sample, SampleError> {
        let fallback_children = if self.children_files {
            None
        } else {
            Some(self.children_by_scan())
        };

        let mut sample = Sample {
            at_tree: Vec::new(),
            rss_bytes: 0,
            memory_kind: MemoryKind::Pss,
            cpu_percent: None,
            open_files: 0,
            threads: 0,
            disk_free_bytes: 0,
            processes: 0,
            fds_unreadable: 0,
            open_files_counted: true,
            source: SampleSource::Proc,
            memory_pressure: None,
            cpu_pressure: None,
            io_pressure: None,
            oom_kills: None,
        };
        let (mut pss_seen, mut rss_seen) = (false, false);
        self.pss_next.clear();
        self.ticks_now.clear();
        self.seen.clear();
        // Depth-first, the root popped first so it heads `at_tree`.
        self.pending.clear();
        self.pending.extend(extra_pids.iter().rev().copied());
        self.pending.push(root_pid);

        while let Some(pid) = self.pending.pop() {
            if pid <= 0 && pid == root_pid {
                return Err(SampleError::NoSuchProcess(root_pid));
            }
            if pid <= 0 || !self.seen.insert(pid) {
                continue;
            }
            // A process that ended since its parent listed it is simply not counted.
            let stat = match self.read_stat(pid) {
                Ok(stat) => stat,
                Err(_) if pid != root_pid => continue,
                Err(StatError::Format) => {
                    return Err(SampleError::Format(
                        self.proc_root.join(format!("{pid}/stat")),
                    ))
                }
                Err(StatError::Io(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(SampleError::Proc {
                        path: self.proc_root.join(format!("{pid}/stat")),
                        source: e,
                    })
                }
                Err(StatError::Io(_)) => return Err(SampleError::NoSuchProcess(root_pid)),
            };
            sample.at_tree.push(pid);
            sample.threads += stat.threads;
            self.ticks_now
                .insert((pid, stat.start_ticks), stat.cpu_ticks);

            match self.process_memory(pid, &stat) {
                Some(pss) => {
                    pss_seen = true;
                    sample.rss_bytes += pss;
                }
                None => {
                    rss_seen = true;
                    sample.rss_bytes += stat.rss_pages * self.page_size;
                }
            }

            match self.open_files(pid) {
                Some(n) => sample.open_files += n,
                None => sample.fds_unreadable += 1,
            }

            let mut children = std::mem::take(&mut self.children);
            children.clear();
            match &fallback_children {
                Some(by_parent) => {
                    children.extend(by_parent.get(&pid).into_iter().flatten().copied())
                }
                None => self.children_of(pid, stat.threads, &mut children),
            }
            self.pending.extend(children.iter().copied());
            self.children = children;
        }

        sample.processes = sample.at_tree.len();
        sample.memory_kind = match (pss_seen, rss_seen) {
            (true, true) => MemoryKind::Mixed,
            (false, true) => MemoryKind::Rss,
            _ => MemoryKind::Pss,
        };
        sample.cpu_percent = self.cpu_percent(&self.ticks_now, now);
        std::mem::swap(&mut self.previous, &mut self.ticks_now);
        self.previous_at = Some(now);
        std::mem::swap(&mut self.pss_known, &mut self.pss_next);
        self.kept.keep_only_pass(self.passes);
        self.passes += 1;

        let vfs = nix::sys::statvfs::statvfs(data_dir).map_err(|source| SampleError::Disk {
            path: data_dir.to_path_buf(),
            source,
        })?;
        sample.disk_free_bytes =
            (vfs.blocks_available() as u64).saturating_mul(vfs.fragment_size() as u64);
        Ok(sample)
    }

    /// Sample the server's cgroup `cgroup` (cgroup v2 containment): members from
    /// `cgroup.procs`; CPU from `cpu.stat`, memory from `memory.current`, threads from
    /// `pids.current` where those controllers are enabled — a fixed handful of reads
    /// whatever the number of processes. Only a figure the cgroup lacks (no memory or
    /// pids controller here) and the descriptor count (`count_open_files`) are taken per
    /// process, as [`Sampler::sample`] does. Also the pressure and OOM-kill figures.
    pub fn sample_cgroup(
        &mut self,
        cgroup: &Path,
        root_pid: i32,
        data_dir: &Path,
        now: Instant,
        count_open_files: bool,
    ) -> Result<Sample, SampleError> {
        let mut members = crate::cgroup::members_of(cgroup)?;
        if members.is_empty() {
            return Err(SampleError::NoSuchProcess(root_pid));
        }
        if let Some(i) = members.iter().position(|p| *p == root_pid) {
            members.swap(0, i);
        }
        let stats = crate::cgroup::read_stats(cgroup);
        let mut sample = Sample {
            processes: members.len(),
            at_tree: Vec::new(),
            rss_bytes: 0,
            memory_kind: MemoryKind::Cgroup,
            cpu_percent: None,
            open_files: 0,
            threads: 0,
            disk_free_bytes: 0,
            fds_unreadable: 0,
            open_files_counted: count_open_files,
            source: SampleSource::Cgroup,
            memory_pressure: stats.memory_pressure,
            cpu_pressure: stats.cpu_pressure,
            io_pressure: stats.io_pressure,
            oom_kills: stats.oom_kill,
        };
        if let Some(usec) = stats.cpu_usage_usec {
            if let Some((before, at)) = self.previous_cgroup_usec {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                if elapsed > 0.0 {
                    sample.cpu_percent =
                        Some(usec.saturating_sub(before) as f64 / 1e6 / elapsed * 100.0);
                }
            }
            self.previous_cgroup_usec = Some((usec, now));
        }
        let need_memory = stats.memory_current.is_none();
        let need_threads = stats.pids_current.is_none();
        let (mut pss_seen, mut rss_seen) = (false, false);
        self.pss_next.clear();
        if need_memory || need_threads || count_open_files {
            for &pid in &members {
                // Ended since cgroup.procs was read: not counted.
                let Ok(stat) = self.read_stat(pid) else {
                    continue;
                };
                sample.threads += stat.threads;
                if need_memory {
                    match self.process_memory(pid, &stat) {
                        Some(pss) => {
                            pss_seen = true;
                            sample.rss_bytes += pss;
                        }
                        None => {
                            rss_seen = true;
                            sample.rss_bytes += stat.rss_pages * self.page_size;
                        }
                    }
                }
                if count_open_files {
                    match self.open_files(pid) {
                        Some(n) => sample.open_files += n,
                        None => sample.fds_unreadable += 1,
                    }
                }
            }
        }
        if let Some(current) = stats.memory_current {
            sample.rss_bytes = current;
        } else {
            sample.memory_kind = match (pss_seen, rss_seen) {
                (true, true) => MemoryKind::Mixed,
                (false, true) => MemoryKind::Rss,
                _ => MemoryKind::Pss,
            };
        }
        if let Some(tasks) = stats.pids_current {
            sample.threads = tasks;
        }
        std::mem::swap(&mut self.pss_known, &mut self.pss_next);
        self.kept.keep_only_pass(self.passes);
        self.passes += 1;
        sample.at_tree = members;
        let vfs = nix::sys::statvfs::statvfs(data_dir).map_err(|source| SampleError::Disk {
            path: data_dir.to_path_buf(),
            source,
        })?;
        sample.disk_free_bytes =
            (vfs.blocks_available() as u64).saturating_mul(vfs.fragment_size() as u64);
        Ok(sample)
    }

    fn cpu_percent(&self, ticks_now: &HashMap<(i32, u64), u64>, now: Instant) -> Option<f64> {
        let elapsed = now.checked_duration_since(self.previous_at?)?.as_secs_f64();
        if elapsed <= 0.0 {
            return None;
        }
        // A process new since the last sample counts all its ticks: it was started (by
        // the tree) within the interval, so they were spent in it.
        let ticks: u64 = ticks_now
            .iter()
            .map(|(key, &now_ticks)| {
                now_ticks.saturating_sub(self.previous.get(key).copied().unwrap_or(0))
            })
            .sum();
        Some(ticks as f64 / self.clock_ticks / elapsed * 100.0)
    }

    /// Children of every thread of `pid` (a child belongs to the thread that forked it).
    fn children_of(&mut self, pid: i32, threads: u64, out: &mut Vec<i32>) {
        if threads <= 1 {
            let kept = self
                .kept
                .by_pid
                .get(&pid)
                .and_then(|files| files.children.as_ref());
            if let Some(file) = kept {
                if let Ok(text) = self.reader.read_from_start(file, ReadTo::ShortReadEnds) {
                    parse_pids(&text, out);
                    return;
                }
                self.kept.drop_file(pid, children_slot);
            }
            let path = self.path.children_file(&self.proc_root, pid);
            if let Ok((file, text)) = self
                .reader
                .open(path, ReadTo::ShortReadEnds, &mut self.kept)
            {
                parse_pids(&text, out);
                self.kept.keep(pid, file, children_slot);
            }
            return;
        }
        let Ok(tasks) = std::fs::read_dir(self.path.of(&self.proc_root, pid, "task")) else {
            return;
        };
        for tid in tasks.flatten() {
            if let Ok((_, text)) = self.reader.open(
                &tid.path().join("children"),
                ReadTo::ShortReadEnds,
                &mut self.kept,
            ) {
                parse_pids(&text, out);
            }
        }
    }

    /// Parent → children of every process: the one full scan, for kernels without
    /// `children` files.
    fn children_by_scan(&self) -> HashMap<i32, Vec<i32>> {
        let mut by_parent: HashMap<i32, Vec<i32>> = HashMap::new();
        let Ok(entries) = std::fs::read_dir(&self.proc_root) else {
            return by_parent;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
            {
                by_parent.entry(stat.ppid).or_default().push(pid);
            }
        }
        by_parent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 123456 1000000 321 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.cpu_ticks, 300);
        assert_eq!(stat.threads, 7);
        assert_eq!(stat.start_ticks, 123456);
        assert_eq!(stat.rss_pages, 321);
        assert!(parse_stat("4242 (x) S 1").is_none());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn pss_from_smaps_rollup() {
        let text = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:    2048 kB\nPss:     1234 kB\nPss_Anon: 1000 kB\n";
        assert_eq!(parse_pss(text), Some(1234 * 1024));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    /// A fake `/proc` with one process: `rss_kb` in `stat`, `pss_kb` in `smaps_rollup`.
    fn fake_process(root: &Path, pid: i32, rss_kb: u64, pss_kb: u64) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::create_dir_all(dir.join(format!("task/{pid}"))).unwrap();
        std::fs::write(dir.join(format!("task/{pid}/children")), "").unwrap();
        std::fs::write(
            dir.join("stat"),
            format!(
                "{pid} (srv) S 1 {pid} {pid} 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 777 0 {} 0",
                rss_kb / 4
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("smaps_rollup"),
            format!("0-1 ---p 0 00:00 0 [rollup]\nRss: {rss_kb} kB\nPss: {pss_kb} kB\n"),
        )
        .unwrap();
    }

    #[test]
    fn pss_is_read_every_few_passes_and_carried_forward_by_rss() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("thread-self")).unwrap();
        std::fs::write(root.path().join("thread-self/children"), "").unwrap();
        let pid = 4242;
        fake_process(root.path(), pid, 8000, 5000);
        let mut sampler = Sampler::with_proc_root(root.path());
        let data = root.path();
        let pass = |sampler: &mut Sampler| {
            sampler
                .sample(pid, &[], data, Instant::now())
                .unwrap()
                .rss_bytes
                / 1024
        };
        // First pass: PSS read.
        assert_eq!(pass(&mut sampler), 5000);
        // The process grows by 1000 kB of private memory (PSS would grow as much): the
        // growth shows at once, before smaps_rollup is read again.
        fake_process(root.path(), pid, 9000, 6000);
        for _ in 0..PSS_EVERY {
            assert_eq!(pass(&mut sampler), 6000);
        }
        // Shared pages change hands (PSS falls, RSS does not): seen once it is re-read,
        // within PSS_EVERY passes.
        fake_process(root.path(), pid, 9000, 4000);
        let seen: Vec<u64> = (0..PSS_EVERY).map(|_| pass(&mut sampler)).collect();
        assert!(seen.contains(&4000), "{seen:?}");
        assert_eq!(*seen.last().unwrap(), 4000, "{seen:?}");

        // Every pass when asked (the benchmark's comparison).
        sampler.set_pss_every(1);
        fake_process(root.path(), pid, 9000, 3000);
        assert_eq!(pass(&mut sampler), 3000);
    }

    #[test]
    fn proc_paths_are_built_in_place() {
        let mut digits = [0u8; 12];
        assert_eq!(decimal(0, &mut digits), "0");
        assert_eq!(decimal(4242, &mut digits), "4242");
        assert_eq!(decimal(i32::MAX, &mut digits), "2147483647");
        assert_eq!(decimal(i32::MIN, &mut digits), "-2147483648");
        let mut path = ProcPath::new();
        let root = Path::new("/proc");
        assert_eq!(path.of(root, 17, "stat"), Path::new("/proc/17/stat"));
        assert_eq!(
            path.children_file(root, 4242),
            Path::new("/proc/4242/task/4242/children")
        );
        assert_eq!(path.of(root, 9, "fd"), Path::new("/proc/9/fd"));
    }

    /// A real tree: `sh` and `sleeps` sleeps, in its own process group.
    struct RealTree(std::process::Child);

    impl RealTree {
        fn start(sleeps: usize) -> RealTree {
            use std::os::unix::process::CommandExt;
            let script = format!("for i in $(seq {sleeps}); do sleep 60 & done; wait");
            let child = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn sh");
            RealTree(child)
        }

        fn root(&self) -> i32 {
            self.0.id() as i32
        }

        /// Sample until the whole tree is there.
        fn sample_whole(&self, sampler: &mut Sampler, processes: usize) -> Sample {
            let deadline = Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let sample = sampler
                    .sample(self.root(), &[], Path::new("/"), Instant::now())
                    .expect("sample");
                if sample.processes == processes || Instant::now() > deadline {
                    return sample;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    impl Drop for RealTree {
        fn drop(&mut self) {
            // SAFETY: a plain kill(2) of the group this test started.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }

    /// Files kept open between passes follow the tree: a process that leaves it has its
    /// files closed at the end of the pass, and what is read through kept files is what
    /// a sampler opening everything afresh reads.
    #[test]
    fn kept_files_follow_the_tree() {
        let tree = RealTree::start(3);
        let mut sampler = Sampler::new();
        let first = tree.sample_whole(&mut sampler, 4);
        assert_eq!(first.processes, 4, "{:?}", first.at_tree);
        // stat and children of each, smaps_rollup of those due on the first pass.
        assert!(sampler.kept.held >= 8, "{}", sampler.kept.held);
        assert_eq!(sampler.kept.by_pid.len(), 4);
        for _ in 0..PSS_EVERY {
            let again = sampler
                .sample(tree.root(), &[], Path::new("/"), Instant::now())
                .expect("sample");
            assert_eq!(again.at_tree, first.at_tree);
            assert_eq!(again.threads, first.threads);
        }
        // Every smaps_rollup has been due once by now.
        assert_eq!(sampler.kept.held, 12);

        // One sleep ends and is reaped by sh: the tree is read without it, and its files
        // are closed.
        let gone = first.at_tree[1];
        // SAFETY: a plain kill(2) of a process this test started.
        unsafe { libc::kill(gone, libc::SIGKILL) };
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let after = loop {
            let s = sampler
                .sample(tree.root(), &[], Path::new("/"), Instant::now())
                .expect("sample");
            if s.processes == 3 || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(after.processes, 3, "{:?}", after.at_tree);
        assert!(!after.at_tree.contains(&gone));
        assert!(!sampler.kept.by_pid.contains_key(&gone));
        assert_eq!(
            sampler.kept.held,
            sampler
                .kept
                .by_pid
                .values()
                .map(ProcFiles::count)
                .sum::<usize>()
        );
        let mut fresh = Sampler::new();
        let afresh = fresh
            .sample(tree.root(), &[], Path::new("/"), Instant::now())
            .expect("sample");
        assert_eq!(afresh.at_tree, after.at_tree);
        assert_eq!(afresh.threads, after.threads);

        // A reset (the server was restarted) and a descriptor shortage close them all.
        sampler.reset();
        assert_eq!(sampler.kept.held, 0);
        tree.sample_whole(&mut sampler, 3);
        assert!(sampler.close_kept_files() >= 6);
        assert!(sampler.kept.by_pid.is_empty());
    }

    /// The budget caps what is kept; the tree is read whole all the same.
    #[test]
    fn kept_files_stay_within_their_budget() {
        let tree = RealTree::start(3);
        let mut sampler = Sampler::new();
        sampler.kept.budget = 3;
        let sample = tree.sample_whole(&mut sampler, 4);
        assert_eq!(sample.processes, 4, "{:?}", sample.at_tree);
        for _ in 0..PSS_EVERY {
            let again = sampler
                .sample(tree.root(), &[], Path::new("/"), Instant::now())
                .expect("sample");
            assert_eq!(again.at_tree, sample.at_tree);
            assert!(sampler.kept.held <= 3, "{}", sampler.kept.held);
        }
        // A fake /proc keeps nothing open (a removed file would stay readable).
        let root = tempfile::tempdir().unwrap();
        assert_eq!(Sampler::with_proc_root(root.path()).kept.budget, 0);
    }

    /// The descriptor count of a real process (from the size of its `fd` directory on
    /// Linux 6.2 and later, from its listing before) is what it has open.
    #[test]
    fn open_descriptors_of_a_real_process() {
        use std::process::{Command, Stdio};
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let mut sampler = Sampler::new();
        // What the exec'd `sleep` holds (0, 1, 2 and whatever else the test runner left
        // inheritable), listed; until the exec the child may still hold the spawn's pipe.
        let listed = || {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count() as u64)
                .ok()
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let (mut got, mut want) = (sampler.open_files(pid), listed());
        while (got != want || std::fs::read_link(format!("/proc/{pid}/exe")).is_err())
            && Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            (got, want) = (sampler.open_files(pid), listed());
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(want.is_some_and(|n| n >= 3), "{want:?}");
        assert_eq!(got, want);
    }
}
