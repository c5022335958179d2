//! The support bundle (`qoscntrlr support-bundle`): one `.tar.gz` a customer attaches to
//! a case — recent controller logs, the events file, `dcontroller.ini` with every secret
//! redacted, the diagnostics folder (size-capped, newest first), the controller's status,
//! system facts, the console tail and `summary.txt`. Owns what goes in, redaction, and
//! the rule that nothing is read through a symlink; password files are never included and
//! every known secret value is scrubbed from every member.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::config::{strip_inline_comment, Config};

/// Total size of the logs taken, newest first.
pub const LOGS_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Total size of the diagnostics taken, newest first.
pub const DIAGNOSTICS_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// One file is cut to its last this many bytes (the newest part of a log).
pub const FILE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Console output kept per console file.
pub const CONSOLE_TAIL_BYTES: u64 = 256 * 1024;
/// Secret values shorter than this are not scrubbed from free text (they would mangle it);
/// they are still redacted wherever they appear as `NAME=value`.
pub const MIN_SCRUB_LEN: usize = 4;
/// Directories under the data directory that hold diagnostics.
pub const DIAGNOSTICS_DIRS: [&str; 2] = ["diagnostics", "IBM_TECHNICAL_SUPPORT"];
/// Replacement text for a secret.
pub const REDACTED: &str = "<redacted>";

/// What to pack.
#[derive(Debug, Clone)]
pub struct BundleRequest {
    pub data_directory: PathBuf,
    /// The `dcontroller.ini` in force (included redacted).
    pub config_file: PathBuf,
    pub output: PathBuf,
    /// Logs modified within this many days (the current `.out` always).
    pub log_days: u32,
    /// Files whose contents are secrets: never included, their contents scrubbed everywhere.
    pub secret_files: Vec<PathBuf>,
    pub host: String,
    pub now: SystemTime,
}

impl BundleRequest {
    /// From the configuration in force; the default output is
    /// `./qoscntrlr-support-<host>-<YYYYmmdd-HHMMSS>.tar.gz`.
    pub fn from_config(config: &Config, output: Option<PathBuf>) -> Self {
        let host = crate::host::host_name();
        let output = output.unwrap_or_else(|| {
            let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
            PathBuf::from(format!("qoscntrlr-support-{host}-{stamp}.tar.gz"))
        });
        BundleRequest {
            data_directory: config.data_directory.clone(),
            config_file: config.source.clone(),
            output,
            log_days: config.log_retention_days.max(1),
            secret_files: config.mail_password_file.iter().cloned().collect(),
            host,
            now: SystemTime::now(),
        }
    }
}

/// The controller's `status --json`, when a controller answered.
#[derive(Debug, Clone)]
pub enum ControllerStatus {
    Json(String),
    NotReachable(String),
}

/// What was written.
#[derive(Debug, Clone)]
pub struct BundleReport {
    pub path: PathBuf,
    pub members: usize,
    /// Things left out or cut, also listed in the bundle's `MANIFEST.txt`.
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("data directory {}: {source}", path.display())]
    DataDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming the bundle failed (the error names the step).
    #[error("cannot write {0}")]
    Replace(crate::atomic::AtomicWriteError),
}

/// Whether a configuration key — or any name in free text — names a secret: the one
/// rule of the configuration reader ([`crate::config::secrecy`]: a key the key table
/// marks secret, or a name with one of [`crate::config::SECRET_WORDS`] in it). A name
/// of a file holding a secret (`…_FILE`) counts too: its value is redacted here as well.
pub fn is_secret_name(name: &str) -> bool {
    crate::config::secrecy(name) != crate::config::Secret::No
}

/// Redact a `dcontroller.ini`: the value of every secret-named key (commented-out lines
/// too) becomes `<redacted>`; other values keep their text but lose URL passwords and
/// `name=secret` pairs inside them. Returns the redacted text and the secret values met.
pub fn redact_ini(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut secrets = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let trimmed = body.trim_start();
        // A commented-out setting is still a secret: look past the comment marker.
        let setting = trimmed.trim_start_matches(['#', ';']).trim_start();
        match setting.split_once('=') {
            Some((key, value)) if is_secret_name(key.trim()) => {
                let prefix_len = body.len() - setting.len() + key.len() + 1;
                out.push_str(&body[..prefix_len]);
                out.push_str(REDACTED);
                let value = strip_inline_comment(value, false).trim();
                if !value.is_empty() {
                    secrets.push(value.to_string());
                }
                // A header (`Authorization: Bearer …`): its value alone is the secret too.
                if key.trim().to_ascii_uppercase().ends_with("WEBHOOK_HEADER") {
                    if let Some((_, header_value)) = value.split_once(':') {
                        let header_value = header_value.trim();
                        if !header_value.is_empty() {
                            secrets.push(header_value.to_string());
                        }
                    }
                }
            }
            _ => out.push_str(&String::from_utf8_lossy(&redact_assignments(
                body.as_bytes(),
            ))),
        }
        out.push_str(newline);
    }
    (out, secrets)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// Redact secrets in free text: the value of `NAME=value` / `NAME: value` /
/// `"NAME": "value"` when NAME looks secret, `Bearer <token>`, and the password of
/// `scheme://user:password@host`.
pub fn redact_assignments(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        // URL credentials: keep the user, drop the password.
        if text[i..].starts_with(b"://") {
            out.extend_from_slice(b"://");
            i += 3;
            let rest = &text[i..];
            let end = rest
                .iter()
                .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'"' || b == b'\'')
                .unwrap_or(rest.len());
            let authority = &rest[..end];
            if let Some(at) = authority.iter().rposition(|&b| b == b'@') {
                if let Some(colon) = authority[..at].iter().position(|&b| b == b':') {
                    out.extend_from_slice(&authority[..=colon]);
                    out.extend_from_slice(REDACTED.as_bytes());
                    out.extend_from_slice(&authority[at..]);
                    i += end;
                    continue;
                }
            }
            continue;
        }
        if text[i..].len() >= 7 && text[i..i + 7].eq_ignore_ascii_case(b"bearer ") {
            out.extend_from_slice(&text[i..i + 7]);
            i += 7;
            let value_len = text[i..]
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'"' || *b == b'\'')
                .unwrap_or(text.len() - i);
            if value_len > 0 {
                out.extend_from_slice(REDACTED.as_bytes());
                i += value_len;
            }
            continue;
        }
        if is_name_byte(text[i]) && (i == 0 || !is_name_byte(text[i - 1])) {
            let start = i;
            while i < text.len() && is_name_byte(text[i]) {
                i += 1;
            }
            let name = &text[start..i];
            out.extend_from_slice(name);
            let mut j = i;
            if j < text.len() && text[j] == b'"' {
                j += 1;
            }
            if j < text.len()
                && (text[j] == b'=' || text[j] == b':')
                && is_secret_name(&String::from_utf8_lossy(name))
            {
                j += 1;
                while j < text.len() && text[j] == b' ' {
                    j += 1;
                }
                out.extend_from_slice(&text[i..j]);
                let (value_len, quoted) = match text.get(j) {
                    Some(&q @ (b'"' | b'\'')) => {
                        let close = text[j + 1..]
                            .iter()
                            .position(|&b| b == q)
                            .map_or(text.len() - j - 1, |p| p);
                        (close, Some(q))
                    }
                    _ => (
                        text[j..]
                            .iter()
                            .position(|&b| {
                                b.is_ascii_whitespace() || b == b',' || b == b';' || b == b'&'
                            })
                            .unwrap_or(text.len() - j),
                        None,
                    ),
                };
                if let Some(q) = quoted {
                    out.push(q);
                    j += 1;
                }
                if value_len > 0 {
                    out.extend_from_slice(REDACTED.as_bytes());
                }
                i = j + value_len;
            }
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// Replace every occurrence of each secret (at least `MIN_SCRUB_LEN` long) with `<redacted>`.
pub fn scrub(text: &[u8], secrets: &[String]) -> Vec<u8> {
    let mut current = text.to_vec();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SCRUB_LEN) {
        let needle = secret.as_bytes();
        if !current.windows(needle.len()).any(|w| w == needle) {
            continue;
        }
        let mut next = Vec::with_capacity(current.len());
        let mut i = 0;
        while i < current.len() {
            if current[i..].starts_with(needle) {
                next.extend_from_slice(REDACTED.as_bytes());
                i += needle.len();
            } else {
                next.push(current[i]);
                i += 1;
            }
        }
        current = next;
    }
    current
}

/// Open a regular file without following a symlink at its last component.
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Read at most the last `limit` bytes of a regular file (never through a symlink).
/// Returns the bytes and whether the file was cut.
fn read_tail(path: &Path, limit: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut file = open_no_follow(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let cut = meta.len() > limit;
    if cut {
        file.seek(SeekFrom::Start(meta.len() - limit))?;
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit).read_to_end(&mut bytes)?;
    Ok((bytes, cut))
}

/// Regular files (never symlinks) directly in `dir` or below it, with size and mtime.
fn regular_files(
    dir: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, u64, SystemTime)>,
    notes: &mut Vec<String>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.file_type().is_symlink() {
            notes.push(format!("skipped symlink {}", path.display()));
        } else if meta.is_dir() && depth > 0 {
            regular_files(&path, depth - 1, out, notes);
        } else if meta.is_file() {
            out.push((
                path,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
    }
}

struct Packer<W: Write> {
    tar: tar::Builder<GzEncoder<W>>,
    root: String,
    secrets: Vec<String>,
    mtime: u64,
    members: Vec<String>,
}

impl<W: Write> Packer<W> {
    fn add(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let clean = scrub(&redact_assignments(bytes), &self.secrets);
        let mut header = tar::Header::new_gnu();
        header.set_size(clean.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        let path = format!("{}/{name}", self.root);
        self.tar.append_data(&mut header, &path, clean.as_slice())?;
        self.members.push(name.to_string());
        Ok(())
    }
}

fn proc_text(path: &str) -> String {
    // /proc files report size 0: read them to the end into memory.
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(cannot read {path}: {e})\n"),
    }
}

fn system_facts(data_dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(uts) = nix::sys::utsname::uname() {
        let _ = writeln!(
            out,
            "uname: {} {} {} {} {}",
            uts.sysname().to_string_lossy(),
            uts.nodename().to_string_lossy(),
            uts.release().to_string_lossy(),
            uts.version().to_string_lossy(),
            uts.machine().to_string_lossy()
        );
    }
    let _ = writeln!(
        out,
        "time: {}",
        chrono::Local::now().format("%Y/%m/%d %H:%M:%S %z")
    );
    let _ = writeln!(out, "qoscntrlr: {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(
        out,
        "cpus: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (title, path) in [
        ("uptime (seconds up, idle)", "/proc/uptime"),
        ("load average", "/proc/loadavg"),
        ("kernel", "/proc/version"),
        ("os-release", "/etc/os-release"),
        ("memory", "/proc/meminfo"),
        (
            "limits (of this process, same user as the caller)",
            "/proc/self/limits",
        ),
        ("fs.file-max", "/proc/sys/fs/file-max"),
        ("kernel.pid_max", "/proc/sys/kernel/pid_max"),
        ("kernel.threads-max", "/proc/sys/kernel/threads-max"),
    ] {
        let _ = writeln!(out, "\n== {title} ({path})\n{}", proc_text(path).trim_end());
    }
    let _ = writeln!(
        out,
        "\n== disk of the data directory ({})",
        data_dir.display()
    );
    match nix::sys::statvfs::statvfs(data_dir) {
        Ok(fs) => {
            let block = fs.fragment_size();
            let mb = |blocks: u64| blocks * block / (1024 * 1024);
            let _ = writeln!(
                out,
                "size {} MB, free {} MB, available {} MB, inodes free {} of {}",
                mb(fs.blocks()),
                mb(fs.blocks_free()),
                mb(fs.blocks_available()),
                fs.files_free(),
                fs.files()
            );
        }
        Err(e) => {
            let _ = writeln!(out, "(statvfs failed: {e})");
        }
    }
    out
}

fn newest_first(files: &mut [(PathBuf, u64, SystemTime)]) {
    files.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| b.0.cmp(&a.0)));
}

/// Build the bundle at `request.output`.
pub fn create(
    request: &BundleRequest,
    status: &ControllerStatus,
) -> Result<BundleReport, BundleError> {
    let data_dir =
        request
            .data_directory
            .canonicalize()
            .map_err(|source| BundleError::DataDirectory {
                path: request.data_directory.clone(),
                source,
            })?;
    let write_error = |source| BundleError::Write {
        path: request.output.clone(),
        source,
    };
    // Before any work: never replace a device node or a directory with the bundle.
    crate::atomic::check_target(&request.output).map_err(write_error)?;
    let mut notes = Vec::new();

    // Secrets first: the ini's secret values and the password files' contents (read into
    // memory only, never packed).
    let ini_text = match std::fs::read(&request.config_file) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => {
            notes.push(format!(
                "configuration {} not included: {e}",
                request.config_file.display()
            ));
            None
        }
    };
    let (ini_redacted, mut secrets) = ini_text.as_deref().map(redact_ini).unwrap_or_default();
    let mut secret_files: Vec<PathBuf> = request
        .secret_files
        .iter()
        .map(|p| absolute_in(&data_dir, p))
        .collect();
    if let Some(text) = &ini_text {
        for line in text.lines() {
            let setting = line
                .trim_start()
                .trim_start_matches(['#', ';'])
                .trim_start();
            if let Some((key, value)) = setting.split_once('=') {
                if crate::config::secrecy(key.trim()) == crate::config::Secret::File {
                    secret_files.push(absolute_in(
                        &data_dir,
                        Path::new(strip_inline_comment(value, false).trim()),
                    ));
                }
            }
        }
    }
    for file in &secret_files {
        if let Ok(bytes) = std::fs::read(file) {
            let content = String::from_utf8_lossy(&bytes);
            secrets.extend(
                content
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
            let whole = content.trim();
            if !whole.is_empty() {
                secrets.push(whole.to_string());
            }
        }
    }
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let secret_files_canonical: Vec<PathBuf> = secret_files
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let is_secret_file = |path: &Path| {
        path.canonicalize()
            .is_ok_and(|c| secret_files_canonical.contains(&c))
    };

    let file_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let root = file_name(&request.output)
        .trim_end_matches(".tar.gz")
        .trim_end_matches(".tgz")
        .to_string();
    let root = if root.is_empty() {
        "qoscntrlr-support".to_string()
    } else {
        root
    };
    let mtime = request
        .now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // An operator's output path, maybe in a shared directory: a unique temp name.
    let members = crate::atomic::write_with(
        &request.output,
        0o600,
        crate::atomic::Temp::Unique,
        |file| {
            let mut packer = Packer {
                tar: tar::Builder::new(GzEncoder::new(file, Compression::default())),
                root,
                secrets,
                mtime,
                members: Vec::new(),
            };
            fill(
                &mut packer,
                request,
                &data_dir,
                ini_redacted,
                status,
                &is_secret_file,
                &mut notes,
            )?;
            packer.tar.into_inner()?.finish()?;
            Ok(packer.members.len())
        },
    )
    .map_err(BundleError::Replace)?;
    Ok(BundleReport {
        path: request.output.clone(),
        members,
        notes,
    })
}

fn absolute_in(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn fill<W: Write>(
    packer: &mut Packer<W>,
    request: &BundleRequest,
    data_dir: &Path,
    ini_redacted: String,
    status: &ControllerStatus,
    is_secret_file: &dyn Fn(&Path) -> bool,
    notes: &mut Vec<String>,
) -> std::io::Result<()> {
    if !ini_redacted.is_empty() {
        packer.add("config/dcontroller.ini", ini_redacted.as_bytes())?;
    }

    let mut top = Vec::new();
    regular_files(data_dir, 0, &mut top, notes);
    newest_first(&mut top);
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };

    // Logs: the last N days (the current .out always), newest first, within the cap.
    let oldest = request
        .now
        .checked_sub(Duration::from_secs(u64::from(request.log_days) * 86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut budget = LOGS_MAX_BYTES;
    let mut included_logs = Vec::new();
    for (path, size, modified) in &top {
        let name = name_of(path);
        if !crate::review::is_log_file_name(&name) || is_secret_file(path) {
            continue;
        }
        if *modified < oldest && !name.ends_with(".out") {
            continue;
        }
        if budget == 0 {
            notes.push(format!(
                "log {name} left out: logs size cap of {} MB reached",
                LOGS_MAX_BYTES >> 20
            ));
            continue;
        }
        match read_tail(path, FILE_MAX_BYTES.min(budget)) {
            Ok((bytes, cut)) => {
                if cut {
                    notes.push(format!(
                        "log {name} cut to its last {} MB (was {} MB)",
                        bytes.len() >> 20,
                        size >> 20
                    ));
                }
                budget = budget.saturating_sub(bytes.len() as u64);
                packer.add(&format!("logs/{name}"), &bytes)?;
                included_logs.push((name, bytes));
            }
            Err(e) => notes.push(format!("log {name} not included: {e}")),
        }
    }

    // The events file(s) and the console tail, from the top of the data directory.
    for (path, _, _) in &top {
        let name = name_of(path);
        if is_secret_file(path) {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let (member, limit) = if lower.contains(".jsonl") || lower.starts_with("events") {
            (format!("events/{name}"), FILE_MAX_BYTES)
        } else if lower.contains("console") {
            (format!("console/{name}"), CONSOLE_TAIL_BYTES)
        } else {
            continue;
        };
        match read_tail(path, limit) {
            Ok((bytes, cut)) => {
                if cut {
                    notes.push(format!("{name}: only the last {} KB", limit >> 10));
                }
                packer.add(&member, &bytes)?;
            }
            Err(e) => notes.push(format!("{name} not included: {e}")),
        }
    }

    // Diagnostics: newest first within the cap; never through a symlink.
    let mut diagnostics = Vec::new();
    for dir in DIAGNOSTICS_DIRS {
        let path = data_dir.join(dir);
        match path.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => {
                notes.push(format!("skipped symlink {}", path.display()))
            }
            Ok(meta) if meta.is_dir() => regular_files(&path, 4, &mut diagnostics, notes),
            _ => {}
        }
    }
    newest_first(&mut diagnostics);
    let mut budget = DIAGNOSTICS_MAX_BYTES;
    for (path, size, _) in &diagnostics {
        let relative = path
            .strip_prefix(data_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        if is_secret_file(path) {
            continue;
        }
        if *size > budget {
            notes.push(format!(
                "{relative} left out: diagnostics size cap of {} MB reached",
                DIAGNOSTICS_MAX_BYTES >> 20
            ));
            continue;
        }
        match read_tail(path, FILE_MAX_BYTES) {
            Ok((bytes, _)) => {
                budget = budget.saturating_sub(bytes.len() as u64);
                packer.add(relative.trim_start_matches('/'), &bytes)?;
            }
            Err(e) => notes.push(format!("{relative} not included: {e}")),
        }
    }

    match status {
        ControllerStatus::Json(json) => packer.add("status.json", json.as_bytes())?,
        ControllerStatus::NotReachable(why) => {
            packer.add("status.txt", format!("{why}\n").as_bytes())?
        }
    }
    packer.add("system.txt", system_facts(data_dir).as_bytes())?;

    // summary.txt over the logs packed, oldest first as `logs summary` reads them.
    let mut analyzer = crate::review::Analyzer::new(crate::review::Options::default());
    included_logs.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, bytes) in &included_logs {
        analyzer.begin_file(name);
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            analyzer.feed(line);
        }
    }
    packer.add(
        "summary.txt",
        crate::review::summary_text(&analyzer.finish()).as_bytes(),
    )?;

    let mut manifest = String::new();
    let _ = writeln!(manifest, "qoscntrlr support bundle");
    let _ = writeln!(manifest, "host: {}", request.host);
    let _ = writeln!(manifest, "data directory: {}", data_dir.display());
    let _ = writeln!(
        manifest,
        "configuration: {} (secrets redacted)",
        request.config_file.display()
    );
    let _ = writeln!(manifest, "\nmembers:");
    for member in &packer.members {
        let _ = writeln!(manifest, "  {member}");
    }
    let _ = writeln!(manifest, "\nnotes:");
    for note in notes.iter() {
        let _ = writeln!(manifest, "  {note}");
    }
    packer.add("MANIFEST.txt", manifest.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_secrets_are_redacted() {
        let ini = "\u{feff}QOS_MAIL_USER=alerts@example.com\nQOS_MAIL_PASSWORD=hunter22 # old: x\n  qos_mail_password_file = /etc/qos/pw\n#QOS_MAIL_PASSWORD=oldsecret\nAPI_TOKEN=abc123\nQOS_PROBE=http://monitor:s3cr3tpw@127.0.0.1:8080/health\nQOS_FAILOVER_HOOK=/bin/notify --token=tok999 x\n";
        let (out, secrets) = redact_ini(ini);
        for secret in [
            "hunter22",
            "oldsecret",
            "abc123",
            "s3cr3tpw",
            "tok999",
            "/etc/qos/pw",
        ] {
            assert!(!out.contains(secret), "{secret} left in:\n{out}");
        }
        assert!(out.contains("QOS_MAIL_USER=alerts@example.com"));
        assert!(out.contains("QOS_MAIL_PASSWORD=<redacted>"));
        assert!(out.contains("http://monitor:<redacted>@127.0.0.1:8080/health"));
        assert!(secrets.contains(&"hunter22".to_string()));
        assert!(secrets.contains(&"oldsecret".to_string()));
    }

    #[test]
    fn free_text_assignments() {
        let text = b"env: DB_PASSWORD=pw1234 HOME=/root \"secret\": \"xyz789\" Authorization: Bearer eyJabc.def";
        let out = String::from_utf8(redact_assignments(text)).unwrap();
        assert!(
            !out.contains("pw1234") && !out.contains("xyz789") && !out.contains("eyJabc"),
            "{out}"
        );
        assert!(out.contains("HOME=/root"));
    }

    #[test]
    fn scrub_replaces_every_occurrence() {
        let out = scrub(
            b"a hunter22 b hunter22",
            &["hunter22".to_string(), "ab".to_string()],
        );
        assert_eq!(out, b"a <redacted> b <redacted>");
    }
}
