//! Opening files and directories in the data directory without following planted links.
//!
//! The data directory may be writable by the server's user, and the controller often runs
//! as root: a symlink planted at `qoscntrlr.lock` or `qoscntrlr-events.jsonl` would make
//! the controller truncate or append to any file on the host. So every file the
//! controller opens there goes through this module:
//!
//! * files are opened with `O_NOFOLLOW` and must be regular files (a FIFO or a device
//!   node planted at the name is refused, and opening never blocks on a FIFO);
//! * temporary files (`*.tmp`, later renamed over the real name) are created with
//!   `O_CREAT | O_EXCL` after unlinking whatever is at the name — `unlink` removes a
//!   link itself, never its target;
//! * directories (`diagnostics/`, `mail-spool/`) must be real directories: a symlink is
//!   refused, and files inside are created relative to a descriptor of the directory
//!   opened with `O_NOFOLLOW | O_DIRECTORY` (openat), so the directory cannot be swapped
//!   for a link between the check and the create.
//!
//! Errors keep the `io::ErrorKind` of the cause and say in words what was refused
//! ("is a symbolic link; not followed"); callers add the path.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What an `ELOOP` from `O_NOFOLLOW` means here, in words for the log.
fn refused_link() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "is a symbolic link; not followed (planted links in the data directory are refused)",
    )
}

fn not_regular(file_type: std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is not a regular file (it is {})", describe_type(file_type)),
    )
}

/// `a directory`, `a FIFO`, … for error messages.
pub fn describe_type(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// Map `ELOOP` (what `O_NOFOLLOW` returns for a link) to a clear error.
fn no_link(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        refused_link()
    } else {
        e
    }
}

/// Open with `options` plus `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK`, then insist on a
/// regular file and clear `O_NONBLOCK` again (it only served to never hang on a FIFO).
fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(no_link)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    clear_nonblock(&file)?;
    Ok(file)
}

fn clear_nonblock(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL touch no memory.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Open (create with `mode`) a log-like file for appending; never follows a link.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    open_regular(
        path,
        OpenOptions::new().append(true).create(true).mode(mode),
    )
}

/// Open (create with `mode`) a file for reading and writing without truncating it
/// (the lock file); never follows a link.
pub fn open_read_write(path: &Path, mode: u32) -> io::Result<File> {
    open_regular(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode),
    )
}

/// Create `path` anew for writing: whatever is at the name (a stale temp file, a planted
/// link) is unlinked first, then the file is created exclusively (`O_EXCL`, which never
/// follows a link either). For temp files that are renamed over the real name.
pub fn create_temp(path: &Path, mode: u32) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(no_link)
}

/// Read a regular file of at most `max_bytes` without following a link at `path`.
pub fn read_regular(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path, OpenOptions::new().read(true))?;
    read_bounded(file, max_bytes)
}

/// Read a regular file of at most `max_bytes`, following links (an operator's own
/// configuration may be a link); a FIFO, device or directory is refused without blocking.
pub fn read_regular_following(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    clear_nonblock(&file)?;
    read_bounded(file, max_bytes)
}

/// Read at most `max_bytes` of `file`; more is an error (`InvalidData`).
pub fn read_bounded(file: File, max_bytes: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than {max_bytes} bytes"),
        ));
    }
    Ok(bytes)
}

/// Make sure `path` is a real directory (created with `mode` if missing, parents
/// included); a symlink or anything else at the name is refused.
pub fn ensure_dir(path: &Path, mode: u32) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => Ok(()),
        Ok(meta) if meta.file_type().is_symlink() => Err(refused_link()),
        Ok(meta) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is not a directory (it is {})",
                describe_type(meta.file_type())
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path)?;
            // Created by someone else meanwhile as a link? Check again.
            match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_dir() => Ok(()),
                Ok(_) => Err(refused_link()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// A directory opened without following a link (`O_DIRECTORY | O_NOFOLLOW`): files
/// created through it land in that very directory even if the name is swapped later.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// Open the real directory at `path` (not created).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => refused_link(),
                Some(libc::ENOTDIR) => match std::fs::symlink_metadata(path) {
                    Ok(meta) if meta.file_type().is_symlink() => refused_link(),
                    _ => e,
                },
                _ => e,
            })?;
        Ok(Dir { fd: file.into() })
    }

    /// [`ensure_dir`] then [`Dir::open`].
    pub fn ensure(path: &Path, mode: u32) -> io::Result<Dir> {
        ensure_dir(path, mode)?;
        Dir::open(path)
    }

    /// Create `name` (a plain file name, no `/`) in this directory, exclusively.
    pub fn create_new(&self, name: &str, mode: u32) -> io::Result<File> {
        if name.contains('/') || name.is_empty() || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a plain file name"),
            ));
        }
        let cname = CString::new(std::ffi::OsStr::new(name).as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a file name"))?;
        // SAFETY: openat with a valid directory descriptor and a NUL-terminated name; the
        // returned descriptor is owned by the File from here on.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                cname.as_ptr(),
                libc::O_WRONLY
                    | libc::O_APPEND
                    | libc::O_CREAT
                    | libc::O_EXCL
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(no_link(io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor returned by openat above, owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn links_are_refused_and_their_targets_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();

        let err = open_append(&link, 0o644).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = open_read_write(&link, 0o644).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = read_regular(&link, 100).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A temp name holding a link: the link goes, the victim stays.
        let mut f = create_temp(&link, 0o600).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
    }

    #[test]
    fn fifos_and_directories_are_not_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Never blocks, even with no reader.
        let err = open_append(&fifo, 0o644).unwrap_err();
        assert!(
            err.to_string().contains("FIFO") || err.raw_os_error() == Some(libc::ENXIO),
            "{err}"
        );
        let err = read_regular(&fifo, 10).unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let err = open_read_write(dir.path(), 0o644).unwrap_err();
        assert!(
            err.to_string().contains("a directory") || err.raw_os_error() == Some(libc::EISDIR),
            "{err}"
        );
    }

    #[test]
    fn bounded_reads_refuse_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 101]).unwrap();
        assert!(read_regular(&path, 100)
            .unwrap_err()
            .to_string()
            .contains("larger than 100"));
        assert_eq!(read_regular(&path, 101).unwrap().len(), 101);
    }

    #[test]
    fn directories_must_be_real() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim-dir");
        std::fs::create_dir(&victim).unwrap();
        let link = dir.path().join("diagnostics");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(ensure_dir(&link, 0o750)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert!(Dir::open(&link)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));

        let real = dir.path().join("real/sub");
        let d = Dir::ensure(&real, 0o750).unwrap();
        d.create_new("a.log", 0o640)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert!(d.create_new("a.log", 0o640).is_err(), "exclusive");
        assert!(d.create_new("../escape", 0o640).is_err());
        std::os::unix::fs::symlink(victim.join("t"), real.join("l")).unwrap();
        assert!(
            d.create_new("l", 0o640).is_err(),
            "a link at the name is not followed"
        );
        assert!(!victim.join("t").exists());
    }
}
