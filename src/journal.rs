//! What `qoscntrlr run` tells its terminal or service manager on stderr: the
//! configuration, data directory and log file in use at start, then one line per state
//! change, incident and error. Under systemd (`$JOURNAL_STREAM` names our stderr) each
//! line starts with a `<N>` syslog priority so `journalctl -p err` finds the errors; on a
//! terminal each line starts with the log's time stamp instead.
//!
//! The `qoscntrlr*.out` log stays the complete record; this is the short version for
//! `journalctl -u qoscntrlr` and for whoever started `run` by hand.
//!
//! Writing never blocks the supervision loop, and needs no thread of its own: lines wait
//! in a bounded queue and are written only as far as stderr takes them without waiting —
//! on a socket (the journal's stream) with `MSG_DONTWAIT`; on anything else after
//! `poll(2)` with a zero timeout says it is writable, at most `PIPE_BUF` bytes per
//! `write(2)`, which a pipe with room for a write always takes whole. The loop retries
//! what is left on its later turns (every 250 ms at least), so a stalled reader of
//! stderr (a full pipe, a suspended terminal) costs lines here — counted, and reported
//! once stderr takes lines again — never a late kill. No `O_NONBLOCK` is set on
//! stderr: its file description is shared with whoever started the controller.

use std::collections::VecDeque;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};

/// Lines waiting for stderr; past this (or [`QUEUE_BYTES`]), lines are counted and dropped.
const QUEUE_LINES: usize = 1024;
/// Bytes waiting for stderr: a few long lines (a server's message quoted in an error)
/// must not hold megabytes either.
const QUEUE_BYTES: usize = 256 * 1024;

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
    has_error_word(text.as_bytes()).then_some(Priority::Err)
}

/// The words that make a line an error, lower case, each with a distinct first letter.
const ERROR_WORDS: [&[u8]; 6] = [
    b"cannot ",
    b"error",
    b"failed",
    b"refused",
    b"not found",
    b"still alive after sigkill",
];

/// Which word of [`ERROR_WORDS`] (index + 1) may start at a byte, in either case; 0: none.
static FIRST_LETTER: [u8; 256] = first_letters();

const fn first_letters() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < ERROR_WORDS.len() {
        let first = ERROR_WORDS[i][0];
        table[first as usize] = i as u8 + 1;
        table[first.to_ascii_uppercase() as usize] = i as u8 + 1;
        i += 1;
    }
    table
}

/// Whether `text` contains one of [`ERROR_WORDS`], ignoring ASCII case. Every logged line
/// is asked (a message flood too), so this is one pass without a lower-case copy: a
/// table says which word a byte can start (the first letters are distinct), and only
/// there are the following bytes compared (callgrind: about half the instructions of
/// lower-casing a copy and searching it for each word).
fn has_error_word(text: &[u8]) -> bool {
    for at in 0..text.len() {
        let Some(word) = usize::from(FIRST_LETTER[usize::from(text[at])])
            .checked_sub(1)
            .map(|w| ERROR_WORDS[w])
        else {
            continue;
        };
        let Some(here) = text.get(at..at + word.len()) else {
            continue;
        };
        // Hand-rolled: `eq_ignore_ascii_case` cost twice as much here.
        let mut i = 1;
        while i < word.len() && here[i].to_ascii_lowercase() == word[i] {
            i += 1;
        }
        if i == word.len() {
            return true;
        }
    }
    false
}

/// Where the lines go: stderr (borrowed, never closed) or a descriptor of the caller's
/// (tests).
struct Sink {
    fd: RawFd,
    /// Keeps a descriptor handed in by [`Journal::with_fd`] open.
    _owned: Option<OwnedFd>,
    /// A socket takes `send(MSG_DONTWAIT)`: non-blocking per call, without touching the
    /// shared file description's flags.
    socket: bool,
}

/// What one attempt to write gave.
enum Wrote {
    Bytes(usize),
    /// Not writable now: try again on a later turn.
    Later,
    /// stderr is gone (closed pipe, hung-up terminal): nothing to report that to; the
    /// line is given up, the log has it.
    Gone,
}

impl Sink {
    fn new(fd: RawFd, owned: Option<OwnedFd>) -> Sink {
        let socket = nix::sys::stat::fstat(fd)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
            .unwrap_or(false);
        Sink {
            fd,
            _owned: owned,
            socket,
        }
    }

    /// Write a prefix of `bytes` without blocking.
    fn write_some(&self, bytes: &[u8]) -> Wrote {
        let n = if self.socket {
            // SAFETY: plain syscall on a descriptor this sink keeps open, with a valid
            // buffer and length.
            unsafe {
                libc::send(
                    self.fd,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            }
        } else {
            if !self.wait_writable(0) {
                return Wrote::Later;
            }
            // A pipe that polls writable has room for PIPE_BUF bytes: a write of at most
            // that many does not wait (and stays atomic). A regular file or a terminal
            // that polls writable takes it as well.
            let len = bytes.len().min(libc::PIPE_BUF);
            // SAFETY: as above.
            unsafe { libc::write(self.fd, bytes.as_ptr().cast(), len) }
        };
        if n >= 0 {
            return Wrote::Bytes(n as usize);
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR => Wrote::Later,
            _ => Wrote::Gone,
        }
    }

    /// Whether the descriptor takes a write now, waiting at most `millis` (0: not at all).
    /// An error or hang-up counts as writable: the write then says what is wrong.
    fn wait_writable(&self, millis: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let ready = unsafe { libc::poll(&mut pfd, 1, millis) };
        ready > 0
            && pfd.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
    }
}

/// The queue and its descriptor, shared by every [`Reporter`] clone.
struct Queue {
    style: Style,
    sink: Option<Sink>,
    lines: VecDeque<String>,
    bytes: usize,
    /// Bytes of the front line already written (a long line goes out in pieces).
    written: usize,
    /// Lines dropped since the last report of drops.
    dropped: u64,
}

impl Queue {
    /// Queue `line`, or count it as dropped when the queue is full. The report of drops
    /// takes the place of the lines it stands for: before the next line queued, or last.
    fn push(&mut self, line: String) {
        if self.lines.len() >= QUEUE_LINES || self.bytes + line.len() > QUEUE_BYTES {
            self.dropped += 1;
            return;
        }
        self.push_drop_report();
        self.bytes += line.len();
        self.lines.push_back(line);
    }

    fn push_drop_report(&mut self) {
        if self.dropped == 0 {
            return;
        }
        let note = format!(
            "{} stderr line(s) dropped while stderr was not read (the log has them all)",
            self.dropped
        );
        let note = format(self.style, Priority::Warning, &note, &Local::now());
        self.dropped = 0;
        // Over the bounds by this one line at most: it stands for the dropped ones.
        self.bytes += note.len();
        self.lines.push_back(note);
    }

    /// Write what stderr takes now, in order; never waits.
    fn flush(&mut self) {
        let Some(sink) = self.sink.take() else {
            self.lines.clear();
            self.bytes = 0;
            self.dropped = 0;
            return;
        };
        self.write_out(&sink);
        self.sink = Some(sink);
    }

    fn write_out(&mut self, sink: &Sink) {
        loop {
            if self.lines.is_empty() {
                self.push_drop_report();
            }
            let Some(front) = self.lines.front() else {
                return;
            };
            match sink.write_some(&front.as_bytes()[self.written..]) {
                // Nothing taken although writable: as good as not writable.
                Wrote::Bytes(0) | Wrote::Later => return,
                Wrote::Bytes(n) => {
                    self.written += n;
                    if self.written < front.len() {
                        continue;
                    }
                }
                Wrote::Gone => {}
            }
            // Written whole, or given up.
            self.written = 0;
            if let Some(line) = self.lines.pop_front() {
                self.bytes -= line.len();
            }
        }
    }
}

fn locked(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // A panic while holding the lock leaves a queue that is still consistent enough to
    // write from (at worst one line repeated or missing): go on with it.
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sending side of the stderr reporter: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Reporter {
    style: Style,
    queue: Arc<Mutex<Queue>>,
}

impl Reporter {
    fn new(style: Style, sink: Option<Sink>) -> Reporter {
        Reporter {
            style,
            queue: Arc::new(Mutex::new(Queue {
                style,
                sink,
                lines: VecDeque::new(),
                bytes: 0,
                written: 0,
                dropped: 0,
            })),
        }
    }

    /// Queue one line and write what stderr takes now; never blocks.
    pub fn say(&self, priority: Priority, text: &str) {
        let mut queue = locked(&self.queue);
        if queue.sink.is_none() {
            return;
        }
        queue.push(format(self.style, priority, text, &Local::now()));
        queue.flush();
    }

    /// Write what is still queued, as far as stderr takes it now; never blocks. The
    /// supervision loop calls this on every turn.
    pub fn flush(&self) {
        let mut queue = locked(&self.queue);
        if !queue.lines.is_empty() || queue.dropped > 0 {
            queue.flush();
        }
    }

    /// Lines (and drop reports) still waiting for stderr.
    #[cfg(test)]
    fn pending(&self) -> usize {
        let queue = locked(&self.queue);
        queue.lines.len() + usize::from(queue.dropped > 0)
    }
}

/// The stderr reporter of `run`.
pub struct Journal {
    reporter: Reporter,
}

/// How long `finish` waits for queued lines to be written at exit: a stderr nobody reads
/// must not keep the controller from exiting.
const FINISH_LIMIT: Duration = Duration::from_secs(2);

impl Journal {
    /// A reporter in the style `$JOURNAL_STREAM` asks for, writing to stderr.
    pub fn start() -> Journal {
        Journal {
            reporter: Reporter::new(Style::from_env(), Some(Sink::new(2, None))),
        }
    }

    /// A reporter writing to `fd` (a socket or a pipe of the test's).
    #[cfg(test)]
    fn with_fd(style: Style, fd: OwnedFd) -> Journal {
        use std::os::fd::AsRawFd;
        let raw = fd.as_raw_fd();
        Journal {
            reporter: Reporter::new(style, Some(Sink::new(raw, Some(fd)))),
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

    /// Write what is queued, waiting for stderr to take it at most [`FINISH_LIMIT`] in
    /// all (the process is about to exit; a stderr nobody reads must not keep it).
    pub fn finish(self) {
        let deadline = Instant::now() + FINISH_LIMIT;
        loop {
            let mut queue = locked(&self.reporter.queue);
            queue.flush();
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(sink) = queue.sink.as_ref().filter(|_| !queue.lines.is_empty()) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            // At most 100 ms per wait: a socket's writability is not polled before its
            // send, so look again now and then whatever poll says.
            let _ = sink.wait_writable(left.as_millis().min(100) as i32);
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

    /// The one-pass search finds exactly what a search of the lower-cased line finds.
    #[test]
    fn error_words_match_a_lower_case_search() {
        let lines = [
            "",
            "e",
            "ERROR",
            "an Error occurred",
            "Cannot",
            "CANNOT start",
            "refuse",
            "Connection REFUSED by peer",
            "not foun",
            "File Not Found",
            "stilL alive after SIGKILL: 12",
            "still alive after sigkil",
            "faile",
            "Reload FAILED",
            "Ünïcödé error ✓",
            "OpMsg=PROGRESS Type=COMPACT ObjectType=DB ObjectValue=bench.nsf TimeDate=x",
            "sssss ccccc nnnnn not  found",
        ];
        for line in lines {
            let lower = line.to_ascii_lowercase();
            let expected = ERROR_WORDS
                .iter()
                .any(|w| lower.contains(std::str::from_utf8(w).unwrap_or("")));
            assert_eq!(has_error_word(line.as_bytes()), expected, "{line:?}");
        }
        let first: std::collections::HashSet<u8> = ERROR_WORDS.iter().map(|w| w[0]).collect();
        assert_eq!(first.len(), ERROR_WORDS.len(), "first letters must differ");
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
        let journal = Journal::with_fd(Style::Journal, writer.into());
        journal.say(Priority::Info, "one");
        journal.reporter().say(Priority::Err, "two");
        journal.finish();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut reader, &mut got).expect("read");
        assert_eq!(got, "<6>one\n<3>two\n");
    }

    /// A pipe nobody reads, full to the brim, in blocking mode (as an inherited stderr
    /// is): saying lines returns at once, the surplus is counted, and once the pipe is
    /// read the queued lines follow in order after the report of the drops.
    #[test]
    fn a_full_pipe_never_blocks_and_drops_are_reported() {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        // Fill it without blocking, then give it back its blocking mode.
        fcntl(write_end.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("nonblock");
        let mut filler = std::fs::File::from(write_end.try_clone().expect("dup"));
        let mut filled = 0usize;
        loop {
            match filler.write(&[b'x'; 4096]) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the pipe: {e}"),
            }
        }
        fcntl(write_end.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("blocking");
        drop(filler);

        let journal = Journal::with_fd(Style::Journal, write_end);
        let reporter = journal.reporter();
        let started = Instant::now();
        for i in 0..QUEUE_LINES + 10 {
            reporter.say(Priority::Info, &format!("line {i}"));
            reporter.flush();
        }
        // Not a speed check: a blocked write would never return at all.
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(
            reporter.pending(),
            QUEUE_LINES + 1,
            "queue bound plus the drop note"
        );

        // Someone reads the pipe now: what was queued goes out on the later turns.
        let mut reader = std::fs::File::from(read_end);
        let mut junk = vec![0u8; filled];
        reader.read_exact(&mut junk).expect("drain the filler");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let want = QUEUE_LINES + 1;
        while got.iter().filter(|&&b| b == b'\n').count() < want && Instant::now() < deadline {
            reporter.flush();
            let n = reader.read(&mut buf).expect("read");
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), want, "{text}");
        assert_eq!(lines[0], "<6>line 0");
        assert_eq!(
            lines[QUEUE_LINES - 1],
            format!("<6>line {}", QUEUE_LINES - 1)
        );
        assert_eq!(
            lines[QUEUE_LINES],
            "<4>10 stderr line(s) dropped while stderr was not read (the log has them all)"
        );
        assert_eq!(reporter.pending(), 0);
        drop(reporter);
        journal.finish();
    }
}
