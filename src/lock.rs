//! One controller per data directory: an exclusive `flock` on
//! `DATA_DIRECTORY/qoscntrlr.lock` (holder's pid inside), and the state file
//! `DATA_DIRECTORY/qoscntrlr.state` recording the running server, so a controller started
//! after a crash of the previous one finds the stale server tree and kills it before it
//! spawns a new one (never two servers).
//!
//! `flock` rather than a pid file: the kernel drops the lock when the holder dies, even by
//! SIGKILL, so a stale lock file never blocks a restart. The descriptor is close-on-exec,
//! so the server never inherits (and keeps) the lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "qoscntrlr.lock";
pub const STATE_FILE: &str = "qoscntrlr.state";
/// A state record is a few hundred bytes; anything much bigger is not one.
const STATE_FILE_MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another controller runs on this data directory (the CLI exits 75).
    #[error("another controller{} holds {}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), .data_dir.display())]
    Held { pid: Option<i32>, data_dir: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Replacing the state file failed (the error names the file and the step).
    #[error(transparent)]
    Write(#[from] crate::atomic::AtomicWriteError),
    #[error("{}: {source}", .path.display())]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _lock: Flock<File>,
    path: PathBuf,
    notes: Vec<String>,
}

impl DataDirLock {
    /// Take the data directory for this process, or fail at once with
    /// [`LockError::Held`] naming the holder.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let mut notes = Vec::new();
        // No truncation on open: the file may belong to a running holder whose pid it
        // shows. Never through a link: a planted `qoscntrlr.lock -> /etc/shadow` would
        // otherwise be truncated and overwritten with our pid.
        let file = match crate::safefs::open_read_write(&path, 0o644) {
            Ok(file) => file,
            Err(first) => match replace_planted(data_dir, &path).map_err(io_err(&path))? {
                Some(note) => {
                    notes.push(note);
                    crate::safefs::open_read_write(&path, 0o644).map_err(io_err(&path))?
                }
                None => return Err(io_err(&path)(first)),
            },
        };
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(LockError::Held {
                    pid,
                    data_dir: data_dir.to_path_buf(),
                });
            }
            Err((_, errno)) => {
                return Err(LockError::Io {
                    path,
                    source: errno.into(),
                })
            }
        };
        let pid = std::process::id();
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(format!("{pid}\n").as_bytes())?;
            f.sync_data()
        };
        write(&mut lock).map_err(io_err(&path))?;
        Ok(DataDirLock {
            _lock: lock,
            path,
            notes,
        })
    }

    /// What acquiring had to repair (a planted link removed), for the log.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor holding the lock (`qoscntrlr reexec` carries it across `execve`:
    /// a `flock` belongs to the open file description, so the new image holds the lock
    /// without a moment in which another controller could take it).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self._lock.as_raw_fd()
    }

    /// The lock inherited from the previous image of this process (`fd` already holds it).
    pub fn adopt(fd: std::os::fd::OwnedFd, data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        // Re-locking the same open file description that holds the lock succeeds at once;
        // EWOULDBLOCK would mean the descriptor is not the holder.
        match Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(DataDirLock {
                _lock: lock,
                path,
                notes: Vec::new(),
            }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(LockError::Held {
                pid: None,
                data_dir: data_dir.to_path_buf(),
            }),
            Err((_, errno)) => Err(LockError::Io {
                path,
                source: errno.into(),
            }),
        }
    }
}

/// The lock name holds something other than a regular file or nothing: a symbolic link
/// (or a FIFO, socket, device node) planted there. It is never followed; it is removed so
/// a real lock file can be created. Starting controllers do this under an exclusive
/// `flock` of the data directory itself and look again once they hold it, so two of them
/// cannot each remove the other's fresh lock file. `None`: nothing was planted (the open
/// failed for another reason, which the caller reports).
fn replace_planted(data_dir: &Path, path: &Path) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(data_dir)?;
    let _serialized = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, errno)| std::io::Error::from(errno))?;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let kind = meta.file_type();
    if kind.is_file() || kind.is_dir() {
        // A regular file (another controller just replaced the link) or a directory
        // (never removed): the caller's open decides.
        return Ok(None);
    }
    let what = match std::fs::read_link(path) {
        Ok(target) => format!("a symbolic link to {}", target.display()),
        Err(_) => crate::safefs::describe_type(kind).to_string(),
    };
    std::fs::remove_file(path)?;
    Ok(Some(format!(
        "{} was {what}; it was removed without being followed and a real lock file created",
        path.display()
    )))
}

/// The server the controller runs, as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub pid: i32,
    pub pgid: i32,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot): together with
    /// the pid it identifies the process even after the pid is reused.
    pub start_ticks: u64,
    pub program: String,
    /// RFC 3339.
    pub started_at: String,
}

impl ServerRecord {
    /// The record of a just-spawned server, `None` if it is already gone.
    pub fn of_running(pid: i32, pgid: i32, program: &str) -> Option<ServerRecord> {
        Some(ServerRecord {
            pid,
            pgid,
            start_ticks: process_start_ticks(pid)?,
            program: program.to_string(),
            started_at: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        })
    }
}

/// `DATA_DIRECTORY/qoscntrlr.state`.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(data_dir: &Path) -> StateFile {
        StateFile {
            path: data_dir.join(STATE_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record the running server: temp file + fsync + rename, so a crash leaves the old
    /// record or the new one, never half of one.
    pub fn record(&self, server: &ServerRecord) -> Result<(), LockError> {
        let mut text =
            serde_json::to_string_pretty(server).map_err(|source| LockError::Encode {
                path: self.path.clone(),
                source,
            })?;
        text.push('\n');
        // The temp name is fixed and replaced each time: a link planted there is removed,
        // never followed, and a crashed write leaves at most one behind.
        let temp = format!("{STATE_FILE}.tmp");
        crate::atomic::write(
            &self.path,
            text.as_bytes(),
            0o644,
            crate::atomic::Temp::Fixed(&temp),
        )?;
        Ok(())
    }

    /// The server is gone (reaped) and nothing of it is left to find.
    pub fn clear(&self) -> Result<(), LockError> {
        match std::fs::remove_file(&self.path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_err(&self.path)(err)),
            _ => Ok(()),
        }
    }

    /// What the file says, if it exists and parses.
    pub fn read(&self) -> Option<ServerRecord> {
        let bytes = crate::safefs::read_regular(&self.path, STATE_FILE_MAX_BYTES).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The recorded server if that very process still runs: same pid and same start time
    /// (a reused pid has another). A missing or unreadable file means nothing is known to
    /// be left over. The runtime logs it and kills its tree before spawning.
    pub fn stale_server(&self) -> Option<ServerRecord> {
        let record = self.read()?;
        (record.pid > 1 && process_start_ticks(record.pid) == Some(record.start_ticks))
            .then_some(record)
    }
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`; `None` when the process does not exist.
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields resume after the command name's last ')': field 3 (state) is the first.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_ticks_are_stable() {
        let me = std::process::id() as i32;
        let a = process_start_ticks(me).expect("own /proc entry");
        assert_eq!(process_start_ticks(me), Some(a));
        assert_eq!(process_start_ticks(i32::MAX), None);
    }

    #[test]
    fn held_message_names_pid_and_directory() {
        let err = LockError::Held {
            pid: Some(42),
            data_dir: PathBuf::from("/srv/qos"),
        };
        assert_eq!(
            err.to_string(),
            "another controller (pid 42) holds /srv/qos"
        );
        let err = LockError::Held {
            pid: None,
            data_dir: PathBuf::from("/srv/qos"),
        };
        assert_eq!(err.to_string(), "another controller holds /srv/qos");
    }
}
