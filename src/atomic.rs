//! Replacing a file atomically: the one way the project writes a file that a reader must
//! see whole or not at all (the state record, the failover trigger, the last-state file,
//! spool entries, `report --html`, the support bundle).
//!
//! The steps, each checked: a temporary file in the same directory (so the rename stays
//! on one filesystem), created exclusively with the caller's mode (less the umask) and
//! never through a link planted at its name; every byte written; the file fsynced; the
//! rename over the real name; the directory fsynced, so the rename itself survives a
//! power cut. Success is reported only after the last step. On any failure the temporary
//! file is removed and the error names the file and the step that failed.
//!
//! Two ways to name the temporary file ([`Temp`]): a fixed name the caller chooses, for
//! files in the data directory that only the controller writes (whatever is at that name —
//! a crashed write's leftover, a planted link — is unlinked first, so at most one ever
//! exists), or a unique `.NAME.tmp-PID[-N]`, for an operator's output path in a directory
//! others share, where nothing that exists is ever removed.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How the temporary file beside the target is named.
#[derive(Debug, Clone, Copy)]
pub enum Temp<'a> {
    /// This file name in the target's directory, replaced if present (data-directory
    /// files only the controller writes).
    Fixed(&'a str),
    /// `.NAME.tmp-PID`, then `-1`, `-2` … if taken; nothing existing is touched.
    Unique,
}

/// The step of an atomic write that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateTemp,
    Write,
    SyncFile,
    Rename,
    SyncDir,
}

/// An atomic write that failed: the file it was for, the step, the temporary file (or
/// for [`Step::SyncDir`] the directory) and the cause.
#[derive(Debug, thiserror::Error)]
pub struct AtomicWriteError {
    pub path: PathBuf,
    pub step: Step,
    /// The temporary file, or the directory for [`Step::SyncDir`].
    pub other: PathBuf,
    #[source]
    pub source: io::Error,
}

impl AtomicWriteError {
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let other = self.other.display();
        let step = match self.step {
            Step::CreateTemp => format!("cannot create the temporary file {other}"),
            Step::Write => format!("cannot write the temporary file {other}"),
            Step::SyncFile => format!("cannot fsync the temporary file {other}"),
            Step::Rename => format!("cannot rename the temporary file {other} over it"),
            Step::SyncDir => format!("cannot fsync the directory {other}"),
        };
        write!(f, "{}: {step}: {}", self.path.display(), self.source)
    }
}

/// Replace `path` with `bytes` (see the module doc); the file gets `mode` less the umask.
pub fn write(path: &Path, bytes: &[u8], mode: u32, temp: Temp<'_>) -> Result<(), AtomicWriteError> {
    write_with(path, mode, temp, |file| file.write_all(bytes))
}

/// Like [`write`], but `fill` writes the content into the temporary file (a stream, a
/// compressor); its result is returned once the file is in place. An error from `fill`
/// is reported as the [`Step::Write`] step.
pub fn write_with<T>(
    path: &Path,
    mode: u32,
    temp: Temp<'_>,
    fill: impl FnOnce(&mut File) -> io::Result<T>,
) -> Result<T, AtomicWriteError> {
    let fail = |step, other: &Path, source| AtomicWriteError {
        path: path.to_path_buf(),
        step,
        other: other.to_path_buf(),
        source,
    };
    let dir = parent_of(path);
    let (mut file, temp_path) = match create_temp(path, &dir, mode, temp) {
        Ok(created) => created,
        Err((temp_path, e)) => return Err(fail(Step::CreateTemp, &temp_path, e)),
    };
    let result = fill(&mut file)
        .map_err(|e| fail(Step::Write, &temp_path, e))
        .and_then(|value| {
            file.sync_all()
                .map_err(|e| fail(Step::SyncFile, &temp_path, e))?;
            drop(file);
            std::fs::rename(&temp_path, path).map_err(|e| fail(Step::Rename, &temp_path, e))?;
            Ok(value)
        });
    match result {
        Ok(value) => {
            sync_dir(&dir).map_err(|e| fail(Step::SyncDir, &dir, e))?;
            Ok(value)
        }
        Err(e) => {
            // Our own temporary file: nothing else can be at that name now (created
            // exclusively), and it holds nothing anyone needs.
            let _ = std::fs::remove_file(&temp_path);
            Err(e)
        }
    }
}

/// An output path may be new, or an existing regular file (also through a symlink, which
/// the rename then replaces); anything else (`/dev/null`, a FIFO, a directory) is
/// refused with what it is, since the rename would replace a device node with a file.
/// For operators' output paths; call it before any work.
pub fn check_target(path: &Path) -> io::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Nothing there, or a dangling link (replaced by the rename): fine.
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if meta.file_type().is_file() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "exists and is not a regular file (it is {}); refusing to replace it",
            crate::safefs::describe_type(meta.file_type())
        ),
    ))
}

/// The directory holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn create_temp(
    path: &Path,
    dir: &Path,
    mode: u32,
    temp: Temp<'_>,
) -> Result<(File, PathBuf), (PathBuf, io::Error)> {
    match temp {
        Temp::Fixed(name) => {
            let temp_path = dir.join(name);
            match crate::safefs::create_temp(&temp_path, mode) {
                Ok(file) => Ok((file, temp_path)),
                Err(e) => Err((temp_path, e)),
            }
        }
        Temp::Unique => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "output".to_string());
            let mut n = 0u32;
            loop {
                let suffix = if n == 0 {
                    String::new()
                } else {
                    format!("-{n}")
                };
                let temp_path = dir.join(format!(".{name}.tmp-{}{suffix}", std::process::id()));
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&temp_path)
                {
                    Ok(file) => return Ok((file, temp_path)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                    Err(e) => return Err((temp_path, e)),
                }
            }
        }
    }
}

/// fsync the directory, so the rename itself is on disk. A filesystem that cannot fsync
/// a directory at all (`EINVAL`: some FUSE and network filesystems) has nothing more to
/// make durable; that is not a failure.
fn sync_dir(dir: &Path) -> io::Result<()> {
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    match handle.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut all: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    }

    fn umask() -> u32 {
        // Reading the umask means setting it; put it straight back.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    }

    #[test]
    fn content_and_mode_and_nothing_left_beside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "old").unwrap();
        write(&path, b"new content\n", 0o600, Temp::Unique).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new content\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600 & !umask());
        assert_eq!(names(dir.path()), ["state.json"]);

        let other = dir.path().join("trigger");
        write(&other, b"1\n", 0o640, Temp::Fixed(".trigger.tmp")).unwrap();
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "1\n");
        let mode = std::fs::metadata(&other).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640 & !umask());
        assert_eq!(names(dir.path()), ["state.json", "trigger"]);
    }

    #[test]
    fn fixed_temp_name_replaces_a_leftover_and_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim_dir = tempfile::tempdir().unwrap();
        let victim = victim_dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".t.tmp")).unwrap();
        let path = dir.path().join("t");
        write(&path, b"x", 0o644, Temp::Fixed(".t.tmp")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
        assert_eq!(names(dir.path()), ["t"]);
    }

    #[test]
    fn unique_temp_never_touches_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let taken = dir.path().join(format!(".out.tmp-{}", std::process::id()));
        std::fs::write(&taken, "someone else's").unwrap();
        write(&path, b"mine", 0o644, Temp::Unique).unwrap();
        assert_eq!(std::fs::read_to_string(&taken).unwrap(), "someone else's");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine");
    }

    #[test]
    fn a_failing_fill_leaves_no_temp_file_and_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        std::fs::write(&path, "old").unwrap();
        for temp in [Temp::Unique, Temp::Fixed("report.tmp")] {
            let err = write_with(&path, 0o644, temp, |file| {
                file.write_all(b"half")?;
                Err::<(), _>(io::Error::other("disk gone"))
            })
            .unwrap_err();
            assert_eq!(err.step, Step::Write);
            let text = err.to_string();
            assert!(text.starts_with(&path.display().to_string()), "{text}");
            assert!(text.contains("cannot write the temporary file"), "{text}");
            assert!(text.contains("disk gone"), "{text}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
            assert_eq!(names(dir.path()), ["report.html"]);
        }
    }

    #[test]
    fn a_directory_at_the_target_fails_at_the_rename_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "x").unwrap();
        let err = write(&path, b"x", 0o644, Temp::Unique).unwrap_err();
        assert_eq!(err.step, Step::Rename);
        assert!(err.to_string().contains("cannot rename"), "{err}");
        assert_eq!(names(dir.path()), ["sub"]);
    }

    #[test]
    fn read_only_directory_is_an_error_naming_the_path() {
        if nix::unistd::geteuid().is_root() {
            // Root writes into a 0555 directory anyway; a read-only mount is tested by
            // tests/fault_files.rs. The error text is checked with a missing directory.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("missing/state");
            let err = write(&path, b"x", 0o644, Temp::Unique).unwrap_err();
            assert_eq!(err.step, Step::CreateTemp);
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let path = ro.join("qoscntrlr.state");
        let err = write(&path, b"x", 0o644, Temp::Fixed("qoscntrlr.state.tmp")).unwrap_err();
        assert_eq!(err.step, Step::CreateTemp);
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string())
                && text.contains("cannot create the temporary file")
                && text.contains("qoscntrlr.state.tmp"),
            "{text}"
        );
        assert!(names(&ro).is_empty());
    }

    #[test]
    fn check_target_refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        check_target(&dir.path().join("new")).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        check_target(&file).unwrap();
        let err = check_target(dir.path()).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
    }
}
