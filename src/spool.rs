//! The spool and the retry schedule both alert channels share (`mail` in
//! `DATA_DIRECTORY/mail-spool/`, `webhook` in `DATA_DIRECTORY/webhook-spool/`): one JSON
//! file per undelivered alert, named `PREFIX-STAMP-PID-SEQ.json` so names sort by time
//! and never collide, written before the first attempt and rewritten after each failed
//! one (through [`crate::atomic`], mode 0600: a reader, or the next controller, sees the
//! old entry or the new one, never half of one), removed once delivered; and the backoff
//! between attempts ([`backoff`]).
//!
//! The spool directory must be a real directory: a symbolic link planted at its name is
//! refused for writing and for loading, so alerts are never written into, or read from, a
//! directory someone else chose.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Sequence numbers for entry names, shared by every spool of the process: two entries
/// created in the same millisecond (by the task and, during a re-exec, by the shell)
/// never get the same name.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// One spool directory and the kind of entry it holds.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    /// `mail` or `webhook`: entry names start with `PREFIX-`; other files are not ours.
    prefix: &'static str,
    /// A bigger file is not an entry of ours and is left alone.
    max_bytes: u64,
}

/// What loading the spool found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// The spool directory is a symbolic link: nothing was read.
    Link,
    /// Each entry in name order (oldest first): its file and its content, or why it
    /// could not be read (such a file is left alone).
    Entries(Vec<(PathBuf, Result<T, String>)>),
}

impl Spool {
    pub fn new(dir: PathBuf, prefix: &'static str, max_bytes: u64) -> Spool {
        Spool {
            dir,
            prefix,
            max_bytes,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name for a new entry (not created yet).
    pub fn new_entry(&self) -> PathBuf {
        let stamp = chrono::Local::now().format("%Y%m%d%H%M%S%3f");
        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "{}-{stamp}-{}-{seq}.json",
            self.prefix,
            std::process::id()
        ))
    }

    /// Write (or rewrite) the entry `file` with `value`: the directory is created (0700)
    /// if missing and must be a real one; the file is replaced atomically, mode 0600.
    pub fn write<T: Serialize>(&self, file: &Path, value: &T) -> io::Result<()> {
        crate::safefs::ensure_dir(&self.dir, 0o700)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))?;
        let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        // `X.json` is written through `X.tmp`: a fixed name per entry, so a crashed write
        // leaves at most one behind and the next write of that entry replaces it.
        let temp = file.with_extension("tmp");
        let temp = temp
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("spool.tmp");
        crate::atomic::write(file, &bytes, 0o600, crate::atomic::Temp::Fixed(temp))
            .map_err(|e| io::Error::new(e.kind(), e.to_string()))
    }

    /// A delivered entry goes; one already gone is fine.
    pub fn remove(&self, file: &Path) {
        // Nothing to do about a failure: the entry would be delivered once more by the
        // next controller, which is better than never.
        let _ = std::fs::remove_file(file);
    }

    /// Every entry of an earlier run (`PREFIX-*.json`), oldest first. A spool directory
    /// that does not exist or cannot be listed holds nothing.
    pub fn load<T: DeserializeOwned>(&self) -> Loaded<T> {
        if std::fs::symlink_metadata(&self.dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Loaded::Link;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Loaded::Entries(Vec::new());
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{}-", self.prefix)))
            })
            .collect();
        files.sort();
        let loaded = files
            .into_iter()
            .map(|file| {
                // Not through a link, and bounded: a spool file is one alert.
                let parsed = crate::safefs::read_regular(&file, self.max_bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice::<T>(&bytes).map_err(|e| e.to_string())
                    });
                (file, parsed)
            })
            .collect();
        Loaded::Entries(loaded)
    }
}

/// The wait before the next attempt after `attempts_before` failed ones: `first`,
/// doubling each time, at most `max` (30 s, 1 m, 2 m, 4 m, … 15 m with the defaults).
pub fn backoff(first: Duration, max: Duration, attempts_before: u32) -> Duration {
    let factor = 1u32 << attempts_before.min(16);
    first.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(30), Duration::from_secs(15 * 60));
        let waits: Vec<u64> = (0..8).map(|n| backoff(first, max, n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(backoff(first, max, u32::MAX), max, "never overflows");
        assert_eq!(
            backoff(Duration::MAX, Duration::MAX, 40),
            Duration::MAX,
            "saturates"
        );
    }

    #[test]
    fn entries_round_trip_in_order_and_others_are_left_alone() {
        let data = tempfile::tempdir().unwrap();
        let spool = Spool::new(data.path().join("mail-spool"), "mail", 1024);
        let first = spool.new_entry();
        let second = spool.new_entry();
        assert_ne!(first, second);
        spool.write(&first, &vec!["one"]).unwrap();
        spool.write(&second, &vec!["two"]).unwrap();
        // Rewritten after a failed attempt: replaced, not appended.
        spool.write(&first, &vec!["one", "again"]).unwrap();
        let mode = std::fs::metadata(&first).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o600, 0, "owner only");
        std::fs::write(spool.dir().join("webhook-1.json"), "[]").unwrap();
        // Named to sort before this run's entries (`mail-2026…`).
        std::fs::write(spool.dir().join("mail-0.json"), vec![b' '; 2000]).unwrap();
        std::fs::write(spool.dir().join("mail-1.json"), "not json").unwrap();
        let Loaded::Entries(entries) = spool.load::<Vec<String>>() else {
            panic!("a real directory");
        };
        let names: Vec<String> = entries
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[..2], ["mail-0.json", "mail-1.json"]);
        assert!(entries[0]
            .1
            .as_ref()
            .unwrap_err()
            .contains("larger than 1024"));
        assert!(entries[1].1.is_err(), "unparsable");
        assert_eq!(entries[2].1.as_deref().unwrap(), ["one", "again"]);
        assert_eq!(entries[3].1.as_deref().unwrap(), ["two"]);
        assert_eq!(
            entries.len(),
            4,
            "the webhook entry is not the mail spool's"
        );
        spool.remove(&first);
        spool.remove(&first);
        assert!(!first.exists());
        let leftovers = std::fs::read_dir(spool.dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn a_planted_link_is_neither_written_through_nor_loaded() {
        let data = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        std::fs::write(victim.path().join("webhook-1.json"), "[\"planted\"]").unwrap();
        let dir = data.path().join("webhook-spool");
        std::os::unix::fs::symlink(victim.path(), &dir).unwrap();
        let spool = Spool::new(dir, "webhook", 1024);
        let err = spool.write(&spool.new_entry(), &1).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(matches!(spool.load::<Vec<String>>(), Loaded::Link));
        assert_eq!(std::fs::read_dir(victim.path()).unwrap().count(), 1);
    }
}
