//! What `qoscntrlr run` tells its terminal or service manager on stderr: the
//! configuration, data directory and log file in use at start, then one line per state
//! change, incident and error. Under systemd (`$JOURNAL_STREAM` names our stderr) each
//! line starts with a `<N>` syslog priority so `journalctl -p err` finds the errors; on a
//! terminal each line starts with the log's time stamp instead.
//!
//! The `qoscntrlr*.out` log stays the complete record; this is the short version for
//! `journalctl -u qoscntrlr` and for whoever started `run` by hand.
//!
//! Writing never blocks the supervision loop: lines go through a bounded queue to one
//! writer thread, so a stalled reader of stderr (a full pipe, a suspended terminal)
//! costs lines here, counted and reported once the writer catches up, never a late kill.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use chrono::{DateTime, Local};

/// Lines waiting for the writer thread; past this, lines are counted and dropped.
const QUEUE_LINES: usize = 1024;

/// Syslog priorities (`sd-daemon(3)`: `<3>` error, `<4>` warning, `<5>` notice, `<6>` info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
}

/// How lines are marked: syslog priority prefixes for the journal, time stamps for a
/// terminal or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Journal,
    Plain,
}

impl Style {
    /// `Journal` when `$JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd) names the file
    /// stderr is connected to; a variable inherited by a process whose stderr was
    /// redirected elsewhere does not count (as `sd_journal_stream_fd(3)` advises).
    pub fn from_env() -> Style {
        let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
            return Style::Plain;
        };
        let Some(value) = value.to_str() else {
            return Style::Plain;
        };
        match nix::sys::stat::fstat(2) {
            Ok(st) if stream_matches(value, st.st_dev, st.st_ino) => Style::Journal,
            _ => Style::Plain,
        }
    }
}

/// Whether `JOURNAL_STREAM`'s `DEVICE:INODE` is this device and inode.
pub fn stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.trim().split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// One stderr line in `style`, newline included. Control characters in `text` (a
/// server's message, a path) are shown as `?` so one event stays one journal line.
pub fn format(style: Style, priority: Priority, text: &str, wall: &DateTime<Local>) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    match style {
        Style::Journal => format!("<{}>{clean}\n", priority as u8),
        Style::Plain => format!("{} {clean}\n", crate::timefmt::log_stamp(wall)),
    }
}

/// The priority of a controller log line on stderr, or `None` for lines that are not
/// errors (those stay in the log only). Probe failures are left out: each one is a
/// symptom of the server, and the incident it leads to is reported as such.
pub fn error_priority(component: crate::core::Component, text: &str) -> Option<Priority> {
    if component == crate::core::Component::Probe {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    const ERROR_WORDS: [&str; 6] = [
        "cannot ",
        "error",
        "failed",
        "refused",
        "not found",
        "still alive after sigkill",
    ];
    ERROR_WORDS
        .iter()
        .any(|word| lower.contains(word))
        .then_some(Priority::Err)
}

/// The sending side of the stderr reporter: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Reporter {
    style: Style,
    tx: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
}

impl Reporter {
    /// Queue one line; never blocks.
    pub fn say(&self, priority: Priority, text: &str) {
        let Some(tx) = &self.tx else {
            return;
        };
        let line = format(self.style, priority, text, &Local::now());
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The stderr reporter of `run` and its writer thread.
pub struct Journal {
    reporter: Reporter,
    /// Disconnected by the writer thread when it has written everything and ended.
    done: Option<std::sync::mpsc::Receiver<()>>,
}

/// How long `finish` waits for queued lines to be written at exit: a stderr nobody reads
/// must not keep the controller from exiting.
const FINISH_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Journal {
    /// A reporter in the style `$JOURNAL_STREAM` asks for, writing to stderr.
    pub fn start() -> Journal {
        Journal::with_writer(Style::from_env(), std::io::stderr())
    }

    /// A reporter writing to `out` (tests pass a socket or a buffer).
    pub fn with_writer(style: Style, mut out: impl std::io::Write + Send + 'static) -> Journal {
        let (tx, rx) = sync_channel::<String>(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let lost = Arc::clone(&dropped);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("stderr".into())
            .spawn(move || {
                let _done = done_tx;
                for line in rx {
                    let missed = lost.swap(0, Ordering::Relaxed);
                    if missed > 0 {
                        let note = format!(
                            "{missed} stderr line(s) dropped while stderr was not read (the log has them all)"
                        );
                        let note = format(style, Priority::Warning, &note, &Local::now());
                        let _ = out.write_all(note.as_bytes());
                    }
                    // stderr gone (closed terminal): nothing to report it to; the log goes on.
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.flush();
                }
            });
        // Without the thread, lines are simply not shown: the log still has them.
        let tx = spawned.ok().map(|_| tx);
        Journal {
            reporter: Reporter { style, tx, dropped },
            done: Some(done_rx),
        }
    }

    /// A sender for the parts of `run` that report.
    pub fn reporter(&self) -> Reporter {
        self.reporter.clone()
    }

    /// Queue one line; never blocks.
    pub fn say(&self, priority: Priority, text: &str) {
        self.reporter.say(priority, text);
    }

    /// Stop taking lines and wait (briefly) until the queued ones are written. Every
    /// [`Reporter`] clone must be dropped first, or this waits out its time limit.
    pub fn finish(mut self) {
        self.reporter.tx = None;
        if let Some(done) = self.done.take() {
            // Disconnected (the thread ended) or the time limit: either way, go on.
            let _ = done.recv_timeout(FINISH_LIMIT);
        }
    }
}

/// The stderr priority of a state change: FAULTED needs someone, an unplanned stop is a
/// warning, anything else a notice.
pub fn state_priority(to: &str) -> Priority {
    match to {
        "FAULTED" => Priority::Err,
        "KILLING" | "CRASHED" => Priority::Warning,
        _ => Priority::Notice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Component;

    #[test]
    fn journal_style_has_priority_prefix_and_no_stamp() {
        let wall = Local::now();
        assert_eq!(
            format(
                Style::Journal,
                Priority::Err,
                "Cannot start the server",
                &wall
            ),
            "<3>Cannot start the server\n"
        );
        let plain = format(Style::Plain, Priority::Notice, "State A -> B (x)", &wall);
        assert!(plain.ends_with(" State A -> B (x)\n"), "{plain}");
        assert!(!plain.starts_with('<'), "{plain}");
    }

    #[test]
    fn control_characters_cannot_split_a_line() {
        let line = format(
            Style::Journal,
            Priority::Info,
            "a\nb\rc\x1b[31m",
            &Local::now(),
        );
        assert_eq!(line, "<6>a?b?c?[31m\n");
    }

    #[test]
    fn journal_stream_must_name_our_stderr() {
        assert!(stream_matches("8:1234", 8, 1234));
        assert!(!stream_matches("8:1234", 8, 1235));
        assert!(!stream_matches("garbage", 8, 1234));
        assert!(!stream_matches("", 0, 0));
    }

    #[test]
    fn errors_are_classified_and_probe_failures_left_to_incidents() {
        assert_eq!(
            error_priority(Component::Controller, "Cannot start the server: not found"),
            Some(Priority::Err)
        );
        assert_eq!(
            error_priority(Component::Controller, "Reload failed; the previous stays"),
            Some(Priority::Err)
        );
        assert_eq!(
            error_priority(Component::Probe, "ERROR: timed out after 2s"),
            None
        );
        assert_eq!(
            error_priority(Component::Controller, "Server is ready to process requests"),
            None
        );
    }

    #[test]
    fn lines_reach_the_writer_in_order() {
        let (mut reader, writer) = std::os::unix::net::UnixStream::pair().expect("pair");
        let journal = Journal::with_writer(Style::Journal, writer);
        journal.say(Priority::Info, "one");
        journal.reporter().say(Priority::Err, "two");
        journal.finish();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut reader, &mut got).expect("read");
        assert_eq!(got, "<6>one\n<3>two\n");
    }
}
