//! The controller log, the log format: owns the `qoscntrlrYYYYMMDDHHmm.out` file in the data
//! directory and its lifecycle — old `.out` → `.log` at start (never overwriting), `.log`
//! retention by age, rolling past the size limit — and the line format
//! `YYYY/MM/DD HH:MM:SS <Component>: <text>`.
//!
//! Every line is one `write(2)` on an `O_APPEND` descriptor with no userspace buffer, so a
//! controller crash loses no logged line. A full or unwritable disk never blocks or stops
//! the supervision loop: lines wait in a bounded in-memory backlog, the failure is reported
//! once on stderr, every new line (and [`QosLog::retry`]) retries, and the recovery is
//! logged with the number of lines lost.

use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local};

use crate::config::Config;
use crate::core::Component;
use crate::timefmt;

/// File name prefix of every controller log.
pub const LOG_PREFIX: &str = "qoscntrlr";
/// Lines kept in memory while the log cannot be written; older ones are dropped (and
/// counted) past this.
pub const BACKLOG_LIMIT: usize = 10_000;
/// Highest `-<n>` suffix tried when a name is taken (more starts than this in one minute
/// means something else is wrong).
const MAX_SEQUENCE: u32 = 9_999;

/// A log line exactly as written, newline included. Line breaks inside `text` are shown
/// as `\n`/`\r`: a message from the server must not forge a line of its own.
pub fn format_line(component: Component, text: &str, wall: &DateTime<Local>) -> String {
    let label = component.label();
    let mut line = String::with_capacity(
        timefmt::LOG_STAMP_LEN + label.map_or(0, |l| l.len() + 2) + text.len() + 2,
    );
    timefmt::push_log_stamp(&mut line, wall);
    line.push(' ');
    if let Some(label) = label {
        line.push_str(label);
        line.push_str(": ");
    }
    push_escaped(&mut line, text);
    line.push('\n');
    line
}

/// Append `text` with every control character escaped: C0 (NUL, ESC, CR, LF, TAB …),
/// DEL and the C1 range. A server's message can carry any byte; raw, a NUL makes grep
/// call the log binary, an ESC drives the terminal of whoever reads it, a CR or LF forges
/// a line. CR, LF and TAB become `\r`, `\n`, `\t`; the rest `\xNN` (`\u{NN}` for C1).
/// Backslashes stay as they are (Windows paths in messages are quoted verbatim).
pub fn push_escaped(line: &mut String, text: &str) {
    // Fast path: no byte that can start a control character (C1 is 0xC2 0x80..=0x9F).
    if !may_hold_control(text.as_bytes()) {
        line.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\r' => line.push_str("\\r"),
            '\n' => line.push_str("\\n"),
            '\t' => line.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = std::fmt::Write::write_fmt(line, format_args!("\\x{:02X}", c as u32));
            }
            c if c.is_control() => {
                let _ = std::fmt::Write::write_fmt(line, format_args!("\\u{{{:X}}}", c as u32));
            }
            c => line.push(c),
        }
    }
}

/// A byte that can start a control character: C0, DEL, or 0xC2 (the lead byte of C1).
fn may_start_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f || b == 0xc2
}

/// Whether any byte of `text` [`may_start_control`]. Every logged line is checked, a
/// message flood's too, so eight bytes are tested at a time (the classic "has a zero
/// byte" / "has a byte less than n" word tests: exact as to whether such a byte exists)
/// — about a third of the instructions of testing byte by byte (callgrind, ~95-byte line).
fn may_hold_control(text: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut chunks = text.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        // Same length by construction (`chunks_exact(8)`): cannot panic.
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
        if below_space || has_zero_byte(x ^ (ONES * 0x7f)) || has_zero_byte(x ^ (ONES * 0xc2)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| may_start_control(b))
}

/// A controller log file name: `qoscntrlr<12 digits>[-<n>].out|.log`. Sorting these
/// gives the order the files were written in: by minute, closed `.log` files by sequence,
/// then the `.out`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogFileName {
    /// `YYYYMMDDHHmm`, local time of the start (or roll) that created the file.
    pub stamp: String,
    /// `.out`: the file of a running (or crashed) controller; `.log`: closed.
    pub active: bool,
    /// The `-<n>` that kept a second file of the same minute from overwriting the first.
    pub sequence: u32,
}

impl LogFileName {
    pub fn file_name(&self) -> String {
        let extension = if self.active { "out" } else { "log" };
        if self.sequence == 0 {
            format!("{LOG_PREFIX}{}.{extension}", self.stamp)
        } else {
            format!("{LOG_PREFIX}{}-{}.{extension}", self.stamp, self.sequence)
        }
    }
}

/// Recognise exactly the names this module writes; everything else is never touched.
pub fn parse_log_file_name(name: &str) -> Option<LogFileName> {
    let rest = name.strip_prefix(LOG_PREFIX)?;
    let (base, active) = if let Some(base) = rest.strip_suffix(".out") {
        (base, true)
    } else {
        (rest.strip_suffix(".log")?, false)
    };
    let stamp = base.get(..12)?;
    if !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sequence = match &base[12..] {
        "" => 0,
        suffix => {
            let digits = suffix.strip_prefix('-')?;
            // No sign, no leading zero, bounded: one spelling per number.
            if digits.is_empty()
                || digits.len() > 4
                || digits.starts_with('0')
                || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            digits.parse().ok()?
        }
    };
    Some(LogFileName {
        stamp: stamp.to_string(),
        sequence,
        active,
    })
}

/// What [`QosLog::open`] did to the data directory; the caller logs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleReport {
    /// Old `.out` files and the `.log` names they now have.
    pub renamed: Vec<(PathBuf, PathBuf)>,
    /// `.log` files removed by age.
    pub deleted: Vec<PathBuf>,
    /// Things that could not be done (the log still works, or retries).
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QosLogError {
    #[error("data directory {}: {source}", .path.display())]
    DataDirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {} is not a directory", .path.display())]
    NotADirectory { path: PathBuf },
}

/// The open controller log.
#[derive(Debug)]
pub struct QosLog {
    dir: PathBuf,
    path: PathBuf,
    /// `None` while the file could not be created yet.
    file: Option<File>,
    size: u64,
    /// Zero: never roll.
    max_size: u64,
    /// After a failed roll, do not try again before the file reaches this size.
    next_roll_at: u64,
    /// Lines (or the unwritten rest of one) waiting for the disk, oldest first.
    backlog: VecDeque<Vec<u8>>,
    /// The front of the backlog is the tail of a line whose head is in the file.
    partial_front: bool,
    failure: Option<Failure>,
}

/// The open log as handed to the next image by `qoscntrlr reexec` (the descriptor goes
/// separately): the same `.out` goes on, no rename, no new file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LogHandoff {
    pub path: PathBuf,
    pub size: u64,
    pub next_roll_at: u64,
    /// Lines still waiting for the disk.
    pub backlog: Vec<Vec<u8>>,
    pub partial_front: bool,
}

/// One episode of not being able to write.
#[derive(Debug)]
struct Failure {
    since: DateTime<Local>,
    lost: u64,
    delayed: u64,
    /// The error that began the episode, for `status`.
    error: String,
}

impl QosLog {
    /// Start the log: old `.out` files become `.log` (never overwriting), `.log` files not
    /// modified for `retention_days` (0 = keep forever) are deleted, and a new
    /// `qoscntrlr<started minute>.out` is created. Only a missing data directory is an
    /// error; a directory that cannot be written gives a log that keeps lines in memory
    /// and retries (see `LifecycleReport::problems`).
    pub fn open(
        data_dir: &Path,
        started: DateTime<Local>,
        retention_days: u32,
        max_size: u64,
    ) -> Result<(QosLog, LifecycleReport), QosLogError> {
        let metadata =
            std::fs::metadata(data_dir).map_err(|source| QosLogError::DataDirectory {
                path: data_dir.to_path_buf(),
                source,
            })?;
        if !metadata.is_dir() {
            return Err(QosLogError::NotADirectory {
                path: data_dir.to_path_buf(),
            });
        }
        let mut report = LifecycleReport::default();
        retire_active_logs(data_dir, &mut report);
        if retention_days > 0 {
            let keep = Duration::from_secs(u64::from(retention_days) * 86_400);
            let cutoff = SystemTime::from(started)
                .checked_sub(keep)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let just_renamed: HashSet<PathBuf> =
                report.renamed.iter().map(|(_, to)| to.clone()).collect();
            delete_old_logs(data_dir, cutoff, &just_renamed, &mut report);
        }

        let stamp = timefmt::file_stamp(&started);
        let mut log = QosLog {
            dir: data_dir.to_path_buf(),
            path: data_dir.join(format!("{LOG_PREFIX}{stamp}.out")),
            file: None,
            size: 0,
            max_size,
            next_roll_at: 0,
            backlog: VecDeque::new(),
            partial_front: false,
            failure: None,
        };
        match create_new_log(data_dir, &stamp, 0) {
            Ok((path, file)) => {
                log.path = path;
                log.file = Some(file);
            }
            Err(e) => {
                report.problems.push(format!(
                    "cannot create {}: {e}; lines are kept in memory until it can be written",
                    log.path.display()
                ));
                log.begin_failure(&e, started);
            }
        }
        Ok((log, report))
    }

    /// What the next image needs to go on writing this log, and the open descriptor.
    pub fn handoff(&self) -> (LogHandoff, Option<std::os::fd::RawFd>) {
        use std::os::fd::AsRawFd;
        (
            LogHandoff {
                path: self.path.clone(),
                size: self.size,
                next_roll_at: self.next_roll_at,
                backlog: self.backlog.iter().cloned().collect(),
                partial_front: self.partial_front,
            },
            self.file.as_ref().map(|f| f.as_raw_fd()),
        )
    }

    /// Go on with the log a previous image of this process had open (`file`, when it had
    /// one; otherwise the file is opened again at the next line).
    pub fn adopt(
        dir: &Path,
        handoff: LogHandoff,
        file: Option<std::os::fd::OwnedFd>,
        max_size: u64,
    ) -> QosLog {
        QosLog {
            dir: dir.to_path_buf(),
            path: handoff.path,
            file: file.map(File::from),
            size: handoff.size,
            max_size,
            next_roll_at: handoff.next_roll_at,
            backlog: handoff.backlog.into(),
            partial_front: handoff.partial_front,
            failure: None,
        }
    }

    /// The current `.out` file (the one being written, or to be created).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every line so far has reached the file.
    pub fn is_healthy(&self) -> bool {
        self.failure.is_none() && self.backlog.is_empty()
    }

    /// Lines waiting in memory for the disk.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Why the log cannot be written right now, in words for `status`; `None` when
    /// every line has reached the file.
    pub fn problem(&self) -> Option<String> {
        let failure = self.failure.as_ref()?;
        Some(format!(
            "cannot write {} since {}: {}; {} line(s) waiting in memory, {} lost",
            self.path.display(),
            timefmt::log_stamp(&failure.since),
            failure.error,
            self.backlog.len(),
            failure.lost
        ))
    }

    /// Is the open `.out` still the file at its path? An operator's `rm` (or a rotation
    /// tool's rename) leaves the controller writing into an inode nobody can see: link
    /// count 0, or the path now names another file or none. Then a new `.out` is created
    /// and its first line says what happened (also on stderr). Returns the notice when
    /// it did so. Cheap (one fstat, one lstat): the runtime calls it every few seconds
    /// and before anything that can start an incident.
    pub fn check_replaced(&mut self, wall: DateTime<Local>) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let file = self.file.as_ref()?;
        let open = file.metadata().ok()?;
        let gone = open.nlink() == 0
            || match std::fs::symlink_metadata(&self.path) {
                Ok(at_path) => at_path.dev() != open.dev() || at_path.ino() != open.ino(),
                Err(e) => e.kind() == ErrorKind::NotFound,
            };
        if !gone {
            return None;
        }
        let old = self.path.clone();
        let stamp = timefmt::file_stamp(&wall);
        let first_free = highest_sequence(&self.dir, &stamp).map_or(0, |n| n + 1);
        match create_new_log(&self.dir, &stamp, first_free) {
            Ok((path, file)) => {
                self.path = path;
                self.file = Some(file);
                self.size = 0;
                self.next_roll_at = 0;
                let text = format!(
                    "Log file {} was removed or replaced; continuing in {}",
                    old.display(),
                    self.path.display()
                );
                let _ = writeln!(std::io::stderr(), "qoscntrlr: {text}");
                self.line(Component::Controller, &text, wall);
                Some(text)
            }
            Err(e) => {
                // Keep writing to the old inode (nothing is lost in memory either), say
                // so once per check on stderr, and try again at the next check.
                let _ = writeln!(
                    std::io::stderr(),
                    "qoscntrlr: log file {} was removed or replaced and a new one cannot be created: {e}",
                    old.display()
                );
                None
            }
        }
    }

    /// Write one line `YYYY/MM/DD HH:MM:SS <Component>: <text>`. Never blocks on a full
    /// disk and never fails: a line that cannot be written waits in the backlog.
    pub fn line(&mut self, component: Component, text: &str, wall: DateTime<Local>) {
        self.write_line(format_line(component, text, &wall).as_bytes(), wall);
    }

    /// Write one line already made by [`format_line`] (for callers that keep it too).
    pub fn write_line(&mut self, record: &[u8], wall: DateTime<Local>) {
        if !self.backlog.is_empty() || self.failure.is_some() {
            self.enqueue(record.to_vec());
            self.retry(wall);
            return;
        }
        if let Err((written, e)) = self.write_record(record, wall) {
            self.begin_failure(&e, wall);
            self.partial_front = written > 0;
            self.enqueue(record[written..].to_vec());
        }
    }

    /// The configuration in force, one `QoS Controller: KEY=value` line each (the runtime
    /// writes `Starting QOSPipeWatcher` and the rest of the start).
    pub fn header(&mut self, config: &Config, wall: DateTime<Local>) {
        for line in config.effective_lines() {
            self.line(Component::Controller, &line, wall);
        }
    }

    /// Try to write the backlog now (e.g. from a periodic tick while the disk is full).
    /// On recovery a line says how long writing failed and how many lines were lost.
    /// Returns whether everything has reached the file.
    pub fn retry(&mut self, wall: DateTime<Local>) -> bool {
        while let Some(front) = self.backlog.pop_front() {
            if let Err((written, e)) = self.write_record(&front, wall) {
                self.partial_front = self.partial_front || written > 0;
                self.backlog.push_front(front[written..].to_vec());
                self.begin_failure(&e, wall);
                return false;
            }
            self.partial_front = false;
        }
        let Some(failure) = self.failure.take() else {
            return true;
        };
        let text = format!(
            "The log file could not be written from {} to {}: {} lines were lost, {} were \
             written late.",
            timefmt::log_stamp(&failure.since),
            timefmt::log_stamp(&wall),
            failure.lost,
            failure.delayed
        );
        let _ = writeln!(
            std::io::stderr(),
            "qoscntrlr: the log file {} can be written again ({} lines lost)",
            self.path.display(),
            failure.lost
        );
        self.line(Component::Controller, &text, wall);
        self.is_healthy()
    }

    fn enqueue(&mut self, record: Vec<u8>) {
        if self.backlog.len() >= BACKLOG_LIMIT {
            // Keep a partly written line's tail: dropping it would glue the next line
            // onto its head in the file.
            let victim = usize::from(self.partial_front);
            if self.backlog.remove(victim).is_some() {
                if let Some(failure) = self.failure.as_mut() {
                    failure.lost += 1;
                    failure.delayed = failure.delayed.saturating_sub(1);
                }
            }
        }
        self.backlog.push_back(record);
        if let Some(failure) = self.failure.as_mut() {
            failure.delayed += 1;
        }
    }

    fn begin_failure(&mut self, error: &std::io::Error, wall: DateTime<Local>) {
        if self.failure.is_some() {
            return;
        }
        // Once per episode: a full disk must not flood the journal with one report per line.
        let _ = writeln!(
            std::io::stderr(),
            "qoscntrlr: cannot write the log file {}: {error}; keeping up to {BACKLOG_LIMIT} \
             lines in memory and retrying",
            self.path.display()
        );
        self.failure = Some(Failure {
            since: wall,
            lost: 0,
            delayed: 0,
            error: error.to_string(),
        });
    }

    /// Write one record, creating the file or rolling it first when due. On failure,
    /// returns how many bytes did reach the file.
    fn write_record(
        &mut self,
        record: &[u8],
        wall: DateTime<Local>,
    ) -> Result<(), (usize, std::io::Error)> {
        if self.file.is_none() {
            let file = open_append(&self.path).map_err(|e| (0, e))?;
            self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(file);
        }
        let len = record.len() as u64;
        if self.max_size > 0
            && self.size > 0
            && self.size + len > self.max_size
            && self.size >= self.next_roll_at
        {
            self.roll(wall);
        }
        let Some(file) = self.file.as_ref() else {
            return Err((0, std::io::Error::other("no log file")));
        };
        let mut written = 0;
        while written < record.len() {
            match (&*file).write(&record[written..]) {
                Ok(0) => return Err((written, ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.size += written as u64;
                    return Err((written, e));
                }
            }
        }
        self.size += len;
        Ok(())
    }

    /// Start a new `.out` (current minute) and close the old one as `.log`. If the new
    /// file cannot be created the old one stays in use and the roll is retried later.
    fn roll(&mut self, wall: DateTime<Local>) {
        let stamp = timefmt::file_stamp(&wall);
        // Above every file of this minute, so that names sort in the order written.
        let first_free = highest_sequence(&self.dir, &stamp).map_or(0, |n| n + 1);
        let (new_path, new_file) = match create_new_log(&self.dir, &stamp, first_free) {
            Ok(created) => created,
            Err(e) => {
                self.next_roll_at = self.size + (self.max_size / 8).max(64 * 1024);
                let _ = writeln!(
                    std::io::stderr(),
                    "qoscntrlr: cannot roll the log file {}: {e}; it keeps growing",
                    self.path.display()
                );
                return;
            }
        };
        let old_path = std::mem::replace(&mut self.path, new_path);
        self.file = Some(new_file);
        self.size = 0;
        self.next_roll_at = 0;
        let continued_from = match retire(&old_path) {
            Ok(closed) => closed,
            Err(e) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "qoscntrlr: cannot rename {} to .log: {e}; it is renamed at the next start",
                    old_path.display()
                );
                old_path
            }
        };
        let name = continued_from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let first = format_line(
            Component::Controller,
            &format!("Log continued from {name}"),
            &wall,
        );
        if let Some(file) = self.file.as_ref() {
            if (&*file).write_all(first.as_bytes()).is_ok() {
                self.size += first.len() as u64;
            }
        }
    }
}

impl Drop for QosLog {
    fn drop(&mut self) {
        if !self.backlog.is_empty() {
            self.retry(Local::now());
        }
    }
}

fn open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    options
}

fn open_append(path: &Path) -> std::io::Result<File> {
    open_options().create(true).open(path)
}

/// The highest `-<n>` among the controller logs of minute `stamp` (0 for the plain name).
fn highest_sequence(dir: &Path, stamp: &str) -> Option<u32> {
    let mut ignored = LifecycleReport::default();
    controller_logs(dir, &mut ignored)
        .into_iter()
        .filter(|(_, name)| name.stamp == stamp)
        .map(|(_, name)| name.sequence)
        .max()
}

/// Create `qoscntrlr<stamp>[-n].out`, the first name from `first_sequence` on not taken.
fn create_new_log(
    dir: &Path,
    stamp: &str,
    first_sequence: u32,
) -> std::io::Result<(PathBuf, File)> {
    for sequence in first_sequence..=MAX_SEQUENCE {
        let name = LogFileName {
            stamp: stamp.to_string(),
            sequence,
            active: true,
        };
        let path = dir.join(name.file_name());
        match open_options().create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        ErrorKind::AlreadyExists,
        format!("every name qoscntrlr{stamp}-N.out up to N={MAX_SEQUENCE} is taken"),
    ))
}

/// Rename a `.out` to the first free `.log` name of its minute from its own sequence on
/// (so that names keep sorting in the order written); never overwrites.
fn retire(out: &Path) -> std::io::Result<PathBuf> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_log_file_name)
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "not a controller log"))?;
    let dir = out.parent().unwrap_or(Path::new("."));
    for sequence in name.sequence..=MAX_SEQUENCE {
        let target = dir.join(
            LogFileName {
                stamp: name.stamp.clone(),
                sequence,
                active: false,
            }
            .file_name(),
        );
        match rename_no_replace(out, &target) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        ErrorKind::AlreadyExists,
        "every .log name of this minute is taken",
    ))
}

/// Rename without ever replacing `to`: a hard link fails atomically when the name is
/// taken. Filesystems without hard links fall back to check-then-rename, which is safe
/// because one controller owns the data directory (lock).
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(ErrorKind::AlreadyExists.into());
            }
            std::fs::rename(from, to)
        }
    }
}

/// Regular files (never symlinks) in `dir` whose name is a controller log.
fn controller_logs(dir: &Path, report: &mut LifecycleReport) -> Vec<(PathBuf, LogFileName)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            report
                .problems
                .push(format!("cannot list {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut logs: Vec<(PathBuf, LogFileName)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| {
            let parsed = parse_log_file_name(entry.file_name().to_str()?)?;
            Some((entry.path(), parsed))
        })
        .collect();
    logs.sort_by(|a, b| a.1.cmp(&b.1));
    logs
}

fn retire_active_logs(dir: &Path, report: &mut LifecycleReport) {
    for (path, name) in controller_logs(dir, report) {
        if !name.active {
            continue;
        }
        match retire(&path) {
            Ok(target) => report.renamed.push((path, target)),
            Err(e) => report
                .problems
                .push(format!("cannot rename {} to .log: {e}", path.display())),
        }
    }
}

fn delete_old_logs(
    dir: &Path,
    cutoff: SystemTime,
    keep: &HashSet<PathBuf>,
    report: &mut LifecycleReport,
) {
    for (path, name) in controller_logs(dir, report) {
        // The previous run's log is kept even if it was quiet for longer than the
        // retention: it is the one support staff need after a restart.
        if name.active || keep.contains(&path) {
            continue;
        }
        let modified = match std::fs::symlink_metadata(&path).and_then(|m| m.modified()) {
            Ok(modified) => modified,
            Err(e) => {
                report
                    .problems
                    .push(format!("cannot read the age of {}: {e}", path.display()));
                continue;
            }
        };
        if modified < cutoff {
            match std::fs::remove_file(&path) {
                Ok(()) => report.deleted.push(path),
                Err(e) => report
                    .problems
                    .push(format!("cannot delete {}: {e}", path.display())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn wall(h: u32, m: u32, s: u32) -> DateTime<Local> {
        Local
            .with_ymd_and_hms(2024, 3, 5, h, m, s)
            .earliest()
            .expect("2024-03-05 is not in a DST gap anywhere at these hours")
    }

    /// The eight-at-a-time test finds exactly what a byte-by-byte test finds, whatever
    /// the byte, wherever it stands, whatever stands before it (borrows between bytes).
    #[test]
    fn control_bytes_are_found_eight_at_a_time() {
        let bytewise = |text: &[u8]| text.iter().any(|&b| may_start_control(b));
        for b in 0..=255u8 {
            for at in 0..17 {
                let mut text = [b'a'; 17];
                text[at] = b;
                assert_eq!(may_hold_control(&text), bytewise(&text), "{b:#x} at {at}");
            }
        }
        for b in 0..=255u8 {
            for c in 0..=255u8 {
                let text = [b, c, b, c, c, b, b, c, b];
                assert_eq!(may_hold_control(&text), bytewise(&text), "{b:#x} {c:#x}");
            }
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        let text = "a\0b\x1b[31mc\rd\ne\tf\x7fg\u{9b}h C:\\Program Files\\x é";
        let line = format_line(Component::Controller, text, &wall(1, 2, 3));
        assert_eq!(
            line,
            "2024/03/05 01:02:03 QoS Controller: a\\x00b\\x1B[31mc\\rd\\ne\\tf\\x7Fg\\u{9B}h C:\\Program Files\\x é\n"
        );
        let body = &line[..line.len() - 1];
        assert!(!body.chars().any(char::is_control), "{line:?}");
        // Nothing to escape: the text as it is.
        let plain = format_line(Component::Probe, "SUCCESS (3ms) ü", &wall(1, 2, 3));
        assert!(plain.ends_with("QoS Probe: SUCCESS (3ms) ü\n"));
    }

    fn full_disk() -> File {
        OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full exists on Linux")
    }

    #[test]
    fn file_names_are_recognised_exactly() {
        let ok = parse_log_file_name("qoscntrlr201105171528.out").unwrap();
        assert_eq!(
            (ok.stamp.as_str(), ok.sequence, ok.active),
            ("201105171528", 0, true)
        );
        let ok = parse_log_file_name("qoscntrlr201105171528-12.log").unwrap();
        assert_eq!((ok.sequence, ok.active), (12, false));
        assert_eq!(ok.file_name(), "qoscntrlr201105171528-12.log");
        for bad in [
            "qoscntrlr.ini",
            "qoscntrlrX.log",
            "qoscntrlr20110517152.log",
            "qoscntrlr2011051715289.log",
            "qoscntrlr201105171528-.log",
            "qoscntrlr201105171528-01.log",
            "qoscntrlr201105171528-1a.log",
            "qoscntrlr201105171528.log.gz",
            "Qoscntrlr201105171528.log",
            "other.log",
        ] {
            assert_eq!(parse_log_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn line_format_and_components() {
        let t = wall(6, 33, 34);
        assert_eq!(
            format_line(Component::Controller, "Starting QOSPipeWatcher", &t),
            "2024/03/05 06:33:34 QoS Controller: Starting QOSPipeWatcher\n"
        );
        assert_eq!(
            format_line(Component::Bare, "The probe thread has not received", &t),
            "2024/03/05 06:33:34 The probe thread has not received\n"
        );
        assert_eq!(
            format_line(Component::Kill, "a\nb\r", &t),
            "2024/03/05 06:33:34 QoS Kill: a\\nb\\r\n"
        );
        assert_eq!(
            Component::split("QoS Applications: Clearing long running apps list"),
            (Component::Applications, "Clearing long running apps list")
        );
        assert_eq!(
            Component::split("QoS Probe:x"),
            (Component::Bare, "QoS Probe:x")
        );
    }

    #[test]
    fn full_disk_keeps_lines_and_recovers_with_a_count() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = QosLog::open(dir.path(), wall(10, 0, 0), 14, 0).unwrap();
        log.line(Component::Controller, "before", wall(10, 0, 1));
        log.line(Component::Controller, "first", wall(10, 0, 2));
        // /dev/full answers every write with ENOSPC, like a full data directory.
        log.file = Some(full_disk());
        for i in 0..3 {
            log.line(Component::Probe, &format!("lost? {i}"), wall(10, 0, 3));
        }
        assert!(!log.is_healthy());
        assert_eq!(log.backlog_len(), 3);
        assert!(!log.retry(wall(10, 0, 4)));
        log.file = Some(open_append(log.path()).unwrap());
        assert!(log.retry(wall(10, 1, 0)));
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "2024/03/05 10:00:01 QoS Controller: before");
        assert_eq!(lines[1], "2024/03/05 10:00:02 QoS Controller: first");
        assert_eq!(lines[2], "2024/03/05 10:00:03 QoS Probe: lost? 0");
        assert_eq!(lines[4], "2024/03/05 10:00:03 QoS Probe: lost? 2");
        assert_eq!(
            lines[5],
            "2024/03/05 10:01:00 QoS Controller: The log file could not be written from \
             2024/03/05 10:00:03 to 2024/03/05 10:01:00: 0 lines were lost, 3 were written late."
        );
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn backlog_is_bounded_and_counts_lost_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = QosLog::open(dir.path(), wall(10, 0, 0), 14, 0).unwrap();
        log.file = Some(full_disk());
        for i in 0..BACKLOG_LIMIT + 5 {
            log.line(Component::Controller, &format!("line {i}"), wall(10, 0, 1));
        }
        assert_eq!(log.backlog_len(), BACKLOG_LIMIT);
        log.file = Some(open_append(log.path()).unwrap());
        assert!(log.retry(wall(10, 2, 0)));
        log.line(Component::Controller, "after", wall(10, 2, 1));
        assert!(log.is_healthy());
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The five oldest were dropped; the rest arrive in order, then the recovery line.
        assert_eq!(lines[0], "2024/03/05 10:00:01 QoS Controller: line 5");
        assert_eq!(
            lines[BACKLOG_LIMIT - 1],
            format!(
                "2024/03/05 10:00:01 QoS Controller: line {}",
                BACKLOG_LIMIT + 4
            )
        );
        assert!(lines[BACKLOG_LIMIT].ends_with(&format!(
            "5 lines were lost, {BACKLOG_LIMIT} were written late."
        )));
        assert_eq!(
            lines[BACKLOG_LIMIT + 1],
            "2024/03/05 10:02:01 QoS Controller: after"
        );
        assert_eq!(lines.len(), BACKLOG_LIMIT + 2);
    }
}
