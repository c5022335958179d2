//! The events file `DATA_DIRECTORY/qoscntrlr-events.jsonl` for log shippers: one JSON
//! object per line for every state change and incident, rotated at [`MAX_SIZE`] to
//! `qoscntrlr-events-<YYYYMMDDHHMMSS>.jsonl`, rotated files pruned by the log retention.
//!
//! Same policy as the `.out` log: one `write(2)` per line on an `O_APPEND` descriptor so
//! a crash loses no recorded line; a failure never panics or stops the controller — it
//! is reported once (to be logged) until a write succeeds again.
//!
//! Line shape: `{"ts":"<RFC 3339>","event":"...","state":"...","incident":"..."?,
//! "reason":"..."?, <extra fields>}`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, SecondsFormat};
use serde_json::{Map, Value};

/// The live file's name.
pub const FILE_NAME: &str = "qoscntrlr-events.jsonl";
const BASE: &str = "qoscntrlr-events";
/// Rotate when the live file grows past this.
pub const MAX_SIZE: u64 = 50 * 1024 * 1024;

/// One event: a state change or an incident step.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub ts: DateTime<Local>,
    /// e.g. `state`, `incident`, `command`, `probe-timeout`, `crash`, `restart`.
    pub event: String,
    /// The server state after the event (`READY`, `KILLING`, ...).
    pub state: String,
    pub incident: Option<String>,
    pub reason: Option<String>,
    /// More fields; keys colliding with the ones above are ignored.
    pub extra: Map<String, Value>,
}

impl EventRecord {
    pub fn new(ts: DateTime<Local>, event: &str, state: &str) -> EventRecord {
        EventRecord {
            ts,
            event: event.to_string(),
            state: state.to_string(),
            incident: None,
            reason: None,
            extra: Map::new(),
        }
    }

    pub fn incident(mut self, id: &str) -> EventRecord {
        self.incident = Some(id.to_string());
        self
    }

    pub fn reason(mut self, reason: &str) -> EventRecord {
        self.reason = Some(reason.to_string());
        self
    }

    pub fn field(mut self, key: &str, value: impl Into<Value>) -> EventRecord {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        let mut object = Map::new();
        object.insert(
            "ts".into(),
            self.ts.to_rfc3339_opts(SecondsFormat::Millis, false).into(),
        );
        object.insert("event".into(), self.event.clone().into());
        object.insert("state".into(), self.state.clone().into());
        if let Some(id) = &self.incident {
            object.insert("incident".into(), id.clone().into());
        }
        if let Some(reason) = &self.reason {
            object.insert("reason".into(), reason.clone().into());
        }
        for (key, value) in &self.extra {
            object.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(object).to_string()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events file {}: cannot {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

/// The appender. Owned by the runtime; every method returns at once.
pub struct EventsFile {
    dir: PathBuf,
    /// `qoscntrlr-events`: the live file is `<base>.jsonl`, rotated ones
    /// `<base>-<stamp>.jsonl`.
    base: &'static str,
    file: Option<File>,
    size: u64,
    max_size: u64,
    /// A failure was reported and no write has succeeded since.
    failing: bool,
}

impl EventsFile {
    /// Open (create, mode 0640) the live file in `data_dir` and delete rotated files
    /// older than `retention_days` (0 keeps them all). Problems are returned to be
    /// logged; the appender keeps trying to open the file on later writes.
    pub fn open(data_dir: &Path, retention_days: u32) -> (EventsFile, Vec<EventsError>) {
        Self::open_with_max_size(data_dir, retention_days, MAX_SIZE)
    }

    /// As [`EventsFile::open`] with another rotation size (tests).
    pub fn open_with_max_size(
        data_dir: &Path,
        retention_days: u32,
        max_size: u64,
    ) -> (EventsFile, Vec<EventsError>) {
        Self::open_named(data_dir, BASE, retention_days, max_size)
    }

    /// Another JSON-lines file with the same rotation and retention (`base` without
    /// `.jsonl`, e.g. `qoscntrlr-usage`).
    pub fn open_named(
        data_dir: &Path,
        base: &'static str,
        retention_days: u32,
        max_size: u64,
    ) -> (EventsFile, Vec<EventsError>) {
        let mut problems = prune_rotated(data_dir, base, retention_days, SystemTime::now());
        let mut events = EventsFile {
            base,
            dir: data_dir.to_path_buf(),
            file: None,
            size: 0,
            max_size,
            failing: false,
        };
        if let Err(e) = events.open_live() {
            events.failing = true;
            problems.push(e);
        }
        (events, problems)
    }

    /// The live file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.jsonl", self.base))
    }

    fn open_live(&mut self) -> Result<(), EventsError> {
        let path = self.path();
        let file = crate::safefs::open_append(&path, 0o640).map_err(|source| EventsError::Io {
            path: path.clone(),
            action: "open",
            source,
        })?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = Some(file);
        Ok(())
    }

    /// Append one event. Returns a problem to log only on the first failure of a run of
    /// failures; `None` otherwise.
    pub fn record(&mut self, event: &EventRecord) -> Option<EventsError> {
        match self.try_record(event) {
            Ok(()) => {
                self.failing = false;
                None
            }
            Err(e) if self.failing => {
                drop(e);
                None
            }
            Err(e) => {
                self.failing = true;
                Some(e)
            }
        }
    }

    /// Append one JSON line (without its newline) stamped `ts` (for the rotated name).
    /// Failures are reported as [`EventsFile::record`] reports them.
    pub fn append(&mut self, ts: DateTime<Local>, json: &str) -> Option<EventsError> {
        match self.try_append(ts, json.to_string()) {
            Ok(()) => {
                self.failing = false;
                None
            }
            Err(_) if self.failing => None,
            Err(e) => {
                self.failing = true;
                Some(e)
            }
        }
    }

    fn try_record(&mut self, event: &EventRecord) -> Result<(), EventsError> {
        self.try_append(event.ts, event.to_json_line())
    }

    fn try_append(&mut self, ts: DateTime<Local>, mut line: String) -> Result<(), EventsError> {
        line.push('\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate(ts)?;
        }
        if self.file.is_none() {
            self.open_live()?;
        }
        let path = self.path();
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        // One write(2) per line: O_APPEND makes it land whole at the end.
        file.write_all(line.as_bytes())
            .map_err(|source| EventsError::Io {
                path,
                action: "write",
                source,
            })?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self, now: DateTime<Local>) -> Result<(), EventsError> {
        self.file = None;
        let live = self.path();
        let stamp = now.format("%Y%m%d%H%M%S").to_string();
        let base = self.base;
        let mut target = self.dir.join(format!("{base}-{stamp}.jsonl"));
        let mut n = 1;
        // Never overwrite: a second rotation within one second gets a suffix.
        while target.exists() {
            target = self.dir.join(format!("{base}-{stamp}-{n}.jsonl"));
            n += 1;
        }
        match std::fs::rename(&live, &target) {
            Ok(()) => {}
            // Someone removed the live file: there is nothing to rotate, start afresh.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(EventsError::Io {
                    path: live,
                    action: "rotate",
                    source,
                })
            }
        }
        self.size = 0;
        Ok(())
    }
}

/// `qoscntrlr-events-YYYYMMDDHHMMSS[-N].jsonl`, nothing else.
pub fn is_rotated_name(name: &str) -> bool {
    is_rotated_name_of(BASE, name)
}

/// `<base>-YYYYMMDDHHMMSS[-N].jsonl`, nothing else.
pub fn is_rotated_name_of(base: &str, name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(base)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".jsonl"))
    else {
        return false;
    };
    let (stamp, suffix) = match rest.split_once('-') {
        Some((stamp, n)) => (stamp, Some(n)),
        None => (rest, None),
    };
    stamp.len() == 14
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && suffix.map_or(true, |n| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        })
}

fn prune_rotated(dir: &Path, base: &str, retention_days: u32, now: SystemTime) -> Vec<EventsError> {
    let mut problems = Vec::new();
    if retention_days == 0 {
        return problems;
    }
    let max_age = Duration::from_secs(u64::from(retention_days) * 86_400);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return problems;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_rotated_name_of(base, name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if old {
            if let Err(source) = std::fs::remove_file(entry.path()) {
                problems.push(EventsError::Io {
                    path: entry.path(),
                    action: "delete old rotated file",
                    source,
                });
            }
        }
    }
    problems
}
