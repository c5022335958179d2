//! A reserve of spare file descriptors for the controller's own survival.
//!
//! When something (idle clients, a leak, a low `RLIMIT_NOFILE`) uses up the controller's
//! descriptors, the work that must not fail — reading `/proc` for the tree kill, rolling
//! or reopening the log, accepting a connection only to close it — needs a few. The
//! runtime takes them at start ([`init`]) as `/dev/null` descriptors, gives them back
//! ([`release`]) the moment it sees EMFILE/ENFILE, and takes them again ([`restore`])
//! once descriptors are free again. Descriptors are process-wide, so the reserve is too.

use std::fs::File;
use std::sync::Mutex;

/// How many descriptors are kept in reserve.
pub const RESERVE: usize = 16;

static SPARE: Mutex<Vec<File>> = Mutex::new(Vec::new());

fn spare() -> std::sync::MutexGuard<'static, Vec<File>> {
    // A panic while holding this lock cannot leave the Vec inconsistent.
    SPARE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Take the reserve; returns how many descriptors it holds (fewer than [`RESERVE`] when
/// the limit is already tight).
pub fn init() -> usize {
    restore()
}

/// Give every reserved descriptor back; returns how many were freed.
pub fn release() -> usize {
    let mut spare = spare();
    let freed = spare.len();
    spare.clear();
    freed
}

/// Refill the reserve as far as descriptors allow; returns how many it holds now.
pub fn restore() -> usize {
    let mut spare = spare();
    while spare.len() < RESERVE {
        // std opens with O_CLOEXEC: the reserve never leaks into children.
        match File::open("/dev/null") {
            Ok(file) => spare.push(file),
            Err(_) => break,
        }
    }
    spare.len()
}

/// How many descriptors the reserve holds now.
pub fn held() -> usize {
    spare().len()
}

/// Run `work` with the reserve given back, then refill it.
pub fn with_released<T>(work: impl FnOnce() -> T) -> T {
    release();
    let result = work();
    restore();
    result
}
