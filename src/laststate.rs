//! The last known state: `DATA_DIRECTORY/qoscntrlr-last-state.json`, so that `status`
//! without a running controller still shows how the controller ended, the server's last
//! state, the failover state and the last incident (the HA view's "last shutdown state").
//!
//! The running controller rewrites the file (temp + fsync + rename, never half a file)
//! after every change of the server state, the failover state or an incident — a few
//! writes per incident, none per message or probe — and once more when it ends in an
//! orderly way, with how it ended. A controller killed by SIGKILL leaves its last record
//! without an end, which `status` reports as such.
//!
//! The reading side ([`offline_status`]) also looks at what is in the data directory
//! right now: the trigger file (keepalived keeps watching it) and a recorded server
//! still running with nobody watching it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};

use crate::status::{ControllerEnd, LastState, LeftServer, OfflineStatus, StatusSnapshot};

/// File name in the data directory.
pub const LAST_STATE_FILE: &str = "qoscntrlr-last-state.json";

/// A snapshot is a few KiB; anything much larger is not one of ours.
const LAST_STATE_MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LastStateError {
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Replacing the file failed (the error names the file and the step).
    #[error("cannot write {0}")]
    Replace(crate::atomic::AtomicWriteError),
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a last-state record: {source}", .path.display())]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The running controller's side: when to write, and what went wrong last time.
#[derive(Debug)]
pub struct LastStateWriter {
    path: PathBuf,
    /// Something `status` shows changed since the last write.
    dirty: bool,
    /// Why the controller is stopping, once it is (`SIGTERM received`, `qoscntrlr
    /// quit from uid 0`); the first cause wins.
    stop_cause: Option<(crate::status::EndHow, String)>,
    /// The last write failed (logged once until a write succeeds again).
    failing: bool,
}

impl LastStateWriter {
    pub fn new(data_dir: &Path) -> LastStateWriter {
        LastStateWriter {
            path: data_dir.join(LAST_STATE_FILE),
            // Written at the first turn of the loop: a fresh start is a change.
            dirty: true,
            stop_cause: None,
            failing: false,
        }
    }

    /// Something `status` shows changed (state, failover state, incident).
    pub fn mark(&mut self) {
        self.dirty = true;
    }

    /// A write is due.
    pub fn due(&self) -> bool {
        self.dirty
    }

    /// The controller is stopping for this reason (kept for the end record).
    pub fn stopping(&mut self, how: crate::status::EndHow, detail: String) {
        self.stop_cause.get_or_insert((how, detail));
    }

    /// Write `snapshot` (with `ended` when the controller is leaving). `Some(line)` is
    /// what the log should say: the first failure, or the first success after failures.
    pub fn write(
        &mut self,
        snapshot: StatusSnapshot,
        exit_code: Option<u8>,
        now: DateTime<Local>,
    ) -> Option<String> {
        self.dirty = false;
        let ended = exit_code.map(|code| {
            let (how, detail) = match (&self.stop_cause, code) {
                (Some((how, detail)), 0) => (*how, detail.clone()),
                (Some((_, detail)), code) => (
                    crate::status::EndHow::Error,
                    format!("{detail}; then ended with exit code {code}"),
                ),
                (None, 0) => (
                    crate::status::EndHow::Quit,
                    "the controller ended normally".to_string(),
                ),
                (None, code) => (
                    crate::status::EndHow::Error,
                    format!("the controller gave up (exit code {code}); its log says why"),
                ),
            };
            ControllerEnd {
                at: Some(crate::status::rfc3339(now)),
                how,
                detail,
                exit_code: Some(code),
            }
        });
        let record = LastState {
            recorded_at: crate::status::rfc3339(now),
            ended,
            snapshot,
        };
        match write_record(&self.path, &record) {
            Ok(()) => std::mem::take(&mut self.failing).then(|| {
                format!(
                    "Last state written to {} again (status without a controller is up to date)",
                    self.path.display()
                )
            }),
            Err(e) => {
                // Tried again at the next change; logged once per failing stretch.
                self.dirty = true;
                (!std::mem::replace(&mut self.failing, true))
                    .then(|| format!("{e}; status without a controller will show an older state"))
            }
        }
    }
}

fn write_record(path: &Path, record: &LastState) -> Result<(), LastStateError> {
    let write_err = |source| LastStateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text =
        serde_json::to_string_pretty(record).map_err(|e| write_err(std::io::Error::other(e)))?;
    text.push('\n');
    crate::atomic::check_target(path).map_err(write_err)?;
    // Only the controller holding the data directory's lock writes it: a fixed temp name,
    // so a crashed write leaves at most one behind.
    let temp = format!(".{LAST_STATE_FILE}.tmp");
    crate::atomic::write(
        path,
        text.as_bytes(),
        0o644,
        crate::atomic::Temp::Fixed(&temp),
    )
    .map_err(LastStateError::Replace)
}

/// The record in `data_dir`: `Ok(None)` when there is none.
pub fn read(data_dir: &Path) -> Result<Option<LastState>, LastStateError> {
    let path = data_dir.join(LAST_STATE_FILE);
    let bytes = match crate::safefs::read_regular(&path, LAST_STATE_MAX_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LastStateError::Read { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| LastStateError::Decode { path, source })
}

/// Everything `status` shows without a controller: the last record and what the data
/// directory says now (trigger file, a recorded server still running).
pub fn offline_status(data_dir: &Path, reason: String, now: DateTime<Local>) -> OfflineStatus {
    let trigger = crate::failover::TriggerFile::new(data_dir);
    let (content, error) = match trigger.content() {
        Ok(content) => (content, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let left = crate::lock::StateFile::new(data_dir)
        .stale_server()
        .map(|r| LeftServer {
            pid: r.pid,
            program: r.program,
            started_at: r.started_at,
        });
    OfflineStatus::assemble(
        reason,
        now,
        data_dir.display().to_string(),
        read(data_dir).map_err(|e| e.to_string()),
        crate::status::TriggerView {
            path: trigger.path().display().to_string(),
            content,
            error,
        },
        left,
        boot_time(),
    )
}

/// When the machine booted (`btime` of `/proc/stat`).
fn boot_time() -> Option<DateTime<Local>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    DateTime::from_timestamp(secs, 0).map(|t| t.with_timezone(&Local))
}
