//! The controller's own resident memory. Start-up (reading the configuration, opening
//! the log, binding sockets, spawning the server) and an incident (diagnostics, the tree
//! kill, alerts) run code and fill heap that the steady loop — waiting, probing,
//! logging a line now and then — never touches again, yet those pages would stay mapped
//! for as long as the controller runs. [`trim`] gives them back once the server is
//! READY:
//!
//! * the heap's free pages, with glibc's `malloc_trim(0)`;
//! * the page-table entries of the read-only, never-written file mappings (the
//!   executable's and the shared libraries' code and constants), with
//!   `madvise(MADV_DONTNEED)`. The pages stay in the page cache; code used again is
//!   mapped back by a minor fault (no disk read while the file is cached), the kernel
//!   mapping up to 64 KiB of cached neighbours with it (fault-around). Unmapped, the
//!   pages of code nobody runs are plain reclaimable cache instead of mapped executable
//!   pages the kernel keeps around.
//!
//! Only mappings that are private, not writable and hold no anonymous (copy-on-write)
//! page are touched: dropping such a page would throw away what was written to it
//! (relocations in RELRO, a debugger's breakpoint). Writable data, the heap's used
//! pages and the stacks stay as they are.

/// What one [`trim`] gave back, for the log and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// Mappings whose page-table entries were dropped.
    pub mappings: usize,
    /// Resident bytes of those mappings just before (a part maps back at once, as the
    /// running code faults it in).
    pub mapped_bytes: u64,
}

/// Give back the pages start-up or an incident used and the idle loop does not (see the
/// module doc). Never fails: a step that cannot be made is skipped.
pub fn trim() -> Trimmed {
    let mut trimmed = Trimmed::default();
    if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
        for m in droppable(&smaps) {
            // SAFETY: the range is a whole mapping of this process as the kernel listed
            // it just now, private, read-only and without a copy-on-write page (checked
            // by `droppable`): MADV_DONTNEED only drops page-table entries, and every
            // later access maps the same file contents back. Nothing unmaps or remaps
            // these ranges meanwhile (they are the executable's and the libraries'
            // segments; this process loads no library at run time).
            let done =
                unsafe { libc::madvise(m.start as *mut libc::c_void, m.len, libc::MADV_DONTNEED) };
            if done == 0 {
                trimmed.mappings += 1;
                trimmed.mapped_bytes += m.rss_bytes;
            }
        }
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer; it only returns free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
    trimmed
}

/// One mapping that may be dropped.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    len: usize,
    rss_bytes: u64,
}

/// The file mappings of `smaps` (the text of `/proc/self/smaps`) that are private, not
/// writable, resident and hold no anonymous page.
fn droppable(smaps: &str) -> Vec<Mapping> {
    struct Current {
        start: usize,
        len: usize,
        candidate: bool,
        rss_kb: u64,
        anon_kb: Option<u64>,
    }
    let finish = |c: Option<Current>, out: &mut Vec<Mapping>| {
        if let Some(c) = c {
            if c.candidate && c.rss_kb > 0 && c.anon_kb == Some(0) {
                out.push(Mapping {
                    start: c.start,
                    len: c.len,
                    rss_bytes: c.rss_kb * 1024,
                });
            }
        }
    };
    let mut out = Vec::new();
    let mut current: Option<Current> = None;
    for line in smaps.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((from, to)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            finish(current.take(), &mut out);
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(from, 16),
                usize::from_str_radix(to, 16),
            ) else {
                continue;
            };
            let perms = words.next().unwrap_or("");
            // offset, device, inode, then the path (absent for anonymous memory).
            let path = words.nth(3).unwrap_or("");
            let candidate = perms.len() == 4
                && perms.starts_with('r')
                && perms.as_bytes()[1] == b'-'
                && perms.ends_with('p')
                && path.starts_with('/');
            current = Some(Current {
                start,
                len: end.saturating_sub(start),
                candidate,
                rss_kb: 0,
                anon_kb: None,
            });
            continue;
        }
        let Some(c) = current.as_mut() else { continue };
        let value = || words.clone().next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => c.rss_kb = value().unwrap_or(0),
            "Anonymous:" => c.anon_kb = value(),
            // Locked pages cannot be dropped (madvise refuses): leave them.
            "Locked:" if value().unwrap_or(0) > 0 => c.candidate = false,
            _ => {}
        }
    }
    finish(current.take(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0148000 r--p 00000000 fd:01 123 /usr/bin/qoscntrlr
Size:               1312 kB
Rss:                 640 kB
Anonymous:             0 kB
Locked:                0 kB
55d0a0148000-55d0a049a000 r-xp 00148000 fd:01 123 /usr/bin/qoscntrlr
Size:               3400 kB
Rss:                3128 kB
Anonymous:             0 kB
Locked:                0 kB
55d0a049a000-55d0a04b3000 r--p 0049a000 fd:01 123 /usr/bin/qoscntrlr
Size:                100 kB
Rss:                 100 kB
Anonymous:           100 kB
55d0a04b3000-55d0a04b5000 rw-p 004b3000 fd:01 123 /usr/bin/qoscntrlr
Size:                  8 kB
Rss:                   8 kB
Anonymous:             8 kB
55d0a1000000-55d0a106b000 rw-p 00000000 00:00 0 [heap]
Rss:                 332 kB
Anonymous:           332 kB
7f0000000000-7f0000156000 r-xp 00028000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1036 kB
Anonymous:             0 kB
Locked:                4 kB
7f0000200000-7f0000226000 r--p 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                   0 kB
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        let got = droppable(SMAPS);
        assert_eq!(
            got,
            vec![
                Mapping {
                    start: 0x55d0a0000000,
                    len: 0x148000,
                    rss_bytes: 640 * 1024
                },
                Mapping {
                    start: 0x55d0a0148000,
                    len: 0x49a000 - 0x148000,
                    rss_bytes: 3128 * 1024
                },
            ],
            "RELRO (written), data, heap, a locked or empty mapping and the vDSO stay"
        );
    }

    /// In this very process: the trim drops mappings and everything still works after
    /// (the code that runs next maps itself back in).
    #[test]
    fn trimming_this_process_keeps_it_working() {
        let before = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        assert!(
            !droppable(&before).is_empty(),
            "an executable has read-only code"
        );
        let trimmed = trim();
        assert!(trimmed.mappings > 0, "{trimmed:?}");
        // Data written before the trim is intact, code still runs.
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
        assert_eq!(
            format!("{:?}", Trimmed::default()),
            "Trimmed { mappings: 0, mapped_bytes: 0 }"
        );
    }
}
