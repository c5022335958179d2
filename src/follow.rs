//! `qoscntrlr logs follow`: the live controller log, like `tail -f`, across the
//! controller's own file changes. The controller writes `qoscntrlrYYYYMMDDHHmm.out` and
//! renames it to `.log` when it rolls or restarts; `tail -f` on a glob would stay on the
//! renamed file. Here the open descriptor is read to its end, and when a newer `.out`
//! appears the follower finishes the old file and moves to the new one, so no line is
//! lost or shown twice.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the follower looks for new lines and a new file.
pub const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot read the data directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The newest `qoscntrlr*.out` in `dir` (the running controller's log), if any.
pub fn current_out(dir: &Path) -> Result<Option<PathBuf>, FollowError> {
    let entries = std::fs::read_dir(dir).map_err(|source| FollowError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let newest = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let parsed = crate::qoslog::parse_log_file_name(&name)?;
            parsed.active.then_some((parsed, e.path()))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, path)| path);
    Ok(newest)
}

/// The last `n` lines of `file` (from its start when shorter), leaving the position at
/// the end.
fn last_lines(file: &mut File, n: usize) -> std::io::Result<Vec<u8>> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let mut start = len;
    let mut tail = Vec::new();
    // Read backwards chunk by chunk until n+1 newlines are seen (or the start).
    while start > 0 {
        let from = start.saturating_sub(CHUNK);
        file.seek(SeekFrom::Start(from))?;
        let mut chunk = vec![0; usize::try_from(start - from).unwrap_or(0)];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
        if tail.iter().filter(|b| **b == b'\n').count() > n {
            break;
        }
    }
    file.seek(SeekFrom::Start(len))?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let keep_from = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    let keep_from = if n == 0 { tail.len() } else { keep_from };
    Ok(tail[keep_from.min(tail.len())..].to_vec())
}

/// Follow the controller log in `dir`: the last `lines` lines, then every new line as it
/// is written, to `out`, until `stop()` says so or `out` is closed (a pipe to `head`).
/// Waits for a log to appear when there is none yet.
pub fn follow(
    dir: &Path,
    lines: usize,
    out: &mut impl Write,
    mut stop: impl FnMut() -> bool,
) -> Result<(), FollowError> {
    let mut current: Option<(PathBuf, BufReader<File>, u64)> = None;
    let mut first = true;
    let mut partial = Vec::new();
    loop {
        let newest = current_out(dir)?;
        let newer = match (&newest, &current) {
            (Some(path), Some((_, _, ino))) => std::fs::metadata(path)
                .map(|m| m.ino() != *ino)
                .unwrap_or(false),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if newer {
            // Finish the old file (the controller may have written its last lines just
            // before renaming it), then take the new one from its start.
            if let Some((path, mut reader, _)) = current.take() {
                if copy_new(&mut reader, &mut partial, out, &path)? {
                    return Ok(());
                }
                // An unterminated last line stays a line of its own.
                if !partial.is_empty() {
                    partial.push(b'\n');
                    if out.write_all(&partial).and_then(|()| out.flush()).is_err() {
                        return Ok(());
                    }
                    partial.clear();
                }
            }
            if let Some(path) = newest {
                let mut file = File::open(&path).map_err(|source| FollowError::Read {
                    path: path.clone(),
                    source,
                })?;
                let ino = file
                    .metadata()
                    .map_err(|source| FollowError::Read {
                        path: path.clone(),
                        source,
                    })?
                    .ino();
                if first {
                    let tail =
                        last_lines(&mut file, lines).map_err(|source| FollowError::Read {
                            path: path.clone(),
                            source,
                        })?;
                    if out.write_all(&tail).and_then(|()| out.flush()).is_err() {
                        return Ok(());
                    }
                }
                current = Some((path, BufReader::new(file), ino));
            }
        }
        first = false;
        if let Some((path, reader, _)) = current.as_mut() {
            if copy_new(reader, &mut partial, out, path)? {
                return Ok(());
            }
        }
        if stop() {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

/// Copy the complete lines written since the last call; a line still being written
/// waits in `partial`. `Ok(true)`: `out` is closed.
fn copy_new(
    reader: &mut BufReader<File>,
    partial: &mut Vec<u8>,
    out: &mut impl Write,
    path: &Path,
) -> Result<bool, FollowError> {
    loop {
        let read = reader
            .read_until(b'\n', partial)
            .map_err(|source| FollowError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if read == 0 || partial.last() != Some(&b'\n') {
            return Ok(false);
        }
        if out.write_all(partial).and_then(|()| out.flush()).is_err() {
            return Ok(true);
        }
        partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_takes_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x");
        std::fs::write(&path, "a\nb\nc\nd\n").expect("write");
        let mut file = File::open(&path).expect("open");
        assert_eq!(last_lines(&mut file, 2).expect("tail"), b"c\nd\n");
        assert_eq!(last_lines(&mut file, 10).expect("tail"), b"a\nb\nc\nd\n");
        assert_eq!(last_lines(&mut file, 0).expect("tail"), b"");
    }

    #[test]
    fn follows_into_the_next_file_without_losing_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("qoscntrlr202612020100.out");
        std::fs::write(&first, "old 1\nold 2\n").expect("write");
        let mut out = Vec::new();
        let mut rounds = 0;
        let d = dir.path().to_path_buf();
        follow(dir.path(), 1, &mut out, || {
            rounds += 1;
            match rounds {
                1 => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(d.join("qoscntrlr202612020100.out"))
                        .expect("open");
                    f.write_all(b"old 3\npart").expect("append");
                }
                2 => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(d.join("qoscntrlr202612020100.out"))
                        .expect("open");
                    f.write_all(b"ial\n").expect("append");
                    std::fs::rename(
                        d.join("qoscntrlr202612020100.out"),
                        d.join("qoscntrlr202612020100.log"),
                    )
                    .expect("roll");
                    std::fs::write(d.join("qoscntrlr202612020101.out"), "new 1\n")
                        .expect("new file");
                }
                _ => {}
            }
            rounds >= 4
        })
        .expect("follow");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "old 2\nold 3\npartial\nnew 1\n"
        );
    }
}
