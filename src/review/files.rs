//! Finding log files and reading them: which names count, the order they are read in,
//! and streaming line reading with one reused buffer.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::line;
use super::stamp::Stamp;
use super::ReviewError;

/// Read buffer: large enough that the reader is not syscall-bound.
const READ_BUFFER: usize = 256 * 1024;

/// A log file and what orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// The `YYYYMMDDHHmm` of the name (controller start), when it has one.
    pub name_stamp: Option<Stamp>,
    /// The `-N` of a collision name (`qoscntrlr201205080015-1.log`).
    pub collision: u32,
    /// `.log` (older, renamed) before `.out` (current).
    pub is_out: bool,
    /// The first timestamp inside.
    pub first_stamp: Option<Stamp>,
}

/// Parts of a log file name: `qoscntrlrYYYYMMDDHHmm[-N].(out|log)`.
fn name_parts(name: &str) -> Option<(Stamp, u32, bool)> {
    let rest = name.strip_prefix("qoscntrlr")?;
    let (stem, is_out) = if let Some(stem) = rest.strip_suffix(".out") {
        (stem, true)
    } else {
        (rest.strip_suffix(".log")?, false)
    };
    let stamp = Stamp::parse_file_stamp(stem.get(..12)?.as_bytes())?;
    let collision = match &stem[12..] {
        "" => 0,
        tail => {
            let n = tail.strip_prefix('-')?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n.parse().ok()?
        }
    };
    Some((stamp, collision, is_out))
}

/// Whether a file name is a controller log (`qoscntrlrYYYYMMDDHHmm[-N].out|.log`).
pub fn is_log_file_name(name: &str) -> bool {
    name_parts(name).is_some()
}

fn first_stamp(path: &Path) -> Result<Option<Stamp>, ReviewError> {
    let mut found = None;
    let mut lines_seen = 0;
    for_each_line_until(path, |raw| {
        lines_seen += 1;
        found = line::parse(raw.strip_suffix(b"\n").unwrap_or(raw)).map(|p| p.stamp);
        // A header of junk should not make us read a whole file just to order it.
        found.is_some() || lines_seen >= 64
    })?;
    Ok(found)
}

fn log_file(path: PathBuf) -> Result<LogFile, ReviewError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (name_stamp, collision, is_out) = match name_parts(name) {
        Some((stamp, collision, is_out)) => (Some(stamp), collision, is_out),
        None => (None, 0, false),
    };
    let first_stamp = first_stamp(&path)?;
    Ok(LogFile {
        path,
        name_stamp,
        collision,
        is_out,
        first_stamp,
    })
}

/// The files to read for `paths`, in reading order. A directory contributes its
/// controller logs (by name); a file named explicitly is read whatever its name, except a
/// usage history (`qoscntrlr-usage*.jsonl`, read by the usage part of the review).
/// Order: the stamp in the name (else the first timestamp inside), then the first
/// timestamp inside, then collision number, then `.log` before `.out`.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<LogFile>, ReviewError> {
    let mut found = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ReviewError::NotFound(path.clone()),
            _ => ReviewError::Read {
                path: path.clone(),
                source,
            },
        })?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| ReviewError::Read {
                path: path.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| ReviewError::Read {
                    path: path.clone(),
                    source,
                })?;
                let name = entry.file_name();
                let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
                if is_file && name.to_str().is_some_and(is_log_file_name) {
                    found.push(log_file(entry.path())?);
                }
            }
        } else if !super::usage::is_usage_path(path) {
            found.push(log_file(path.clone())?);
        }
    }
    found.sort_by(|a, b| {
        let key = |f: &LogFile| {
            (
                f.name_stamp.or(f.first_stamp).unwrap_or(Stamp(i64::MAX)),
                f.first_stamp.unwrap_or(Stamp(i64::MAX)),
                f.collision,
                f.is_out,
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.path.cmp(&b.path))
    });
    found.dedup_by(|a, b| a.path == b.path);
    Ok(found)
}

/// Call `on_line` for every line of `path` (newline included when present), reusing one
/// buffer. A truncated last line is passed as it is.
pub fn for_each_line(path: &Path, mut on_line: impl FnMut(&[u8])) -> Result<(), ReviewError> {
    for_each_line_until(path, |line| {
        on_line(line);
        false
    })
}

/// Like `for_each_line`, stopping when `on_line` returns true.
fn for_each_line_until(
    path: &Path,
    mut on_line: impl FnMut(&[u8]) -> bool,
) -> Result<(), ReviewError> {
    let read_error = |source| ReviewError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let mut buffer = Vec::with_capacity(512);
    loop {
        buffer.clear();
        let n = reader.read_until(b'\n', &mut buffer).map_err(read_error)?;
        if n == 0 {
            return Ok(());
        }
        if on_line(&buffer) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            name_parts("qoscntrlr201105171528.out").map(|p| (p.1, p.2)),
            Some((0, true))
        );
        assert_eq!(
            name_parts("qoscntrlr201105171528-2.log").map(|p| (p.1, p.2)),
            Some((2, false))
        );
        for bad in [
            "qoscntrlr20110517152.out",
            "qoscntrlr201105171528.txt",
            "qoscntrlr201113171528.out",
            "qoscntrlr201105171528-.log",
            "qoscntrlr201105171528x.log",
            "xqoscntrlr201105171528.out",
        ] {
            assert!(!is_log_file_name(bad), "{bad}");
        }
    }
}
