//! A fork storm inside a cgroup, for the containment tests and the cgroup benchmark.
//!
//! The storm's root enters the cgroup (writes `0` to its `cgroup.procs`) and keeps
//! forking children that call `setsid` (so no process group or session kill reaches
//! them) and keep forking too, until `cap` processes exist; from then on every process
//! keeps forking short-lived children, so forks are in flight whenever a kill comes.
//! Every pid is recorded in shared memory so the caller can check for survivors
//! without trusting the cgroup it is testing. Only async-signal-safe calls run in the
//! forked processes (the caller may be multi-threaded).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

/// Most pids recorded (a storm larger than this still runs, unrecorded beyond it).
pub const MAX_RECORDED: usize = 8192;

#[repr(C)]
struct Shared {
    started: AtomicUsize,
    pids: [AtomicI32; MAX_RECORDED],
}

pub struct Storm {
    /// The storm's first process (a child of the caller: reap it with [`Storm::reap`]).
    pub root: i32,
    shared: *mut Shared,
}

impl Storm {
    /// Start a storm of `cap` processes in the cgroup whose `cgroup.procs` is `procs`;
    /// at the cap each process forks a short-lived child every `idle_fork_every`.
    pub fn start(procs: &Path, cap: usize, idle_fork_every: Duration) -> std::io::Result<Storm> {
        let file = std::fs::OpenOptions::new().write(true).open(procs)?;
        let fd = OwnedFd::from(file);
        let size = std::mem::size_of::<Shared>();
        // SAFETY: an anonymous shared mapping of the struct's size, zero-filled (all
        // atomics start at 0), unmapped in Drop.
        let shared = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if shared == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let shared = shared.cast::<Shared>();
        let raw = fd.as_raw_fd();
        let pause = libc::timespec {
            tv_sec: idle_fork_every.as_secs() as libc::time_t,
            tv_nsec: idle_fork_every.subsec_nanos() as libc::c_long,
        };
        // SAFETY: fork; the child only makes async-signal-safe calls and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls on data prepared before the fork.
            unsafe {
                if libc::write(raw, b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(3);
                }
                storm_loop(&*shared, cap, pause)
            }
        }
        drop(fd);
        Ok(Storm { root: pid, shared })
    }

    /// How many storm processes were started so far.
    pub fn started(&self) -> usize {
        // SAFETY: the mapping lives as long as self.
        unsafe { (*self.shared).started.load(Ordering::SeqCst) }
    }

    /// Every recorded storm pid.
    pub fn pids(&self) -> Vec<i32> {
        // SAFETY: as above.
        let shared = unsafe { &*self.shared };
        let n = shared.started.load(Ordering::SeqCst).min(MAX_RECORDED);
        (0..n)
            .map(|i| shared.pids[i].load(Ordering::SeqCst))
            .filter(|p| *p > 0)
            .collect()
    }

    /// Reap the root (it is the caller's child).
    pub fn reap(&self) {
        let mut status = 0;
        // SAFETY: plain syscall on our own child.
        unsafe { libc::waitpid(self.root, &mut status, 0) };
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        // SAFETY: the mapping made in start, of this size.
        unsafe { libc::munmap(self.shared.cast(), std::mem::size_of::<Shared>()) };
    }
}

/// Runs in every storm process; never returns. A slot is reserved before each fork, so
/// the storm stops at exactly `cap` processes however many fork at once.
unsafe fn storm_loop(shared: &Shared, cap: usize, pause: libc::timespec) -> ! {
    let record = |shared: &Shared, slot: usize| {
        if slot < MAX_RECORDED {
            shared.pids[slot].store(libc::getpid(), Ordering::SeqCst);
        }
    };
    let mut slot = shared.started.fetch_add(1, Ordering::SeqCst);
    record(shared, slot);
    loop {
        let next = shared.started.fetch_add(1, Ordering::SeqCst);
        if next < cap {
            let pid = libc::fork();
            if pid == 0 {
                libc::setsid();
                slot = next;
                record(shared, slot);
                continue;
            }
            if pid < 0 {
                shared.started.fetch_sub(1, Ordering::SeqCst);
                let wait = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                libc::nanosleep(&wait, std::ptr::null_mut());
            }
        } else {
            shared.started.fetch_sub(1, Ordering::SeqCst);
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            if pid > 0 {
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }
}

/// Whether `pid` is a live process (not gone, not a zombie) in cgroup `rel` (the
/// cgroup's path as `/proc/<pid>/cgroup` shows it): a recycled pid elsewhere is not a
/// survivor.
pub fn alive_in(pid: i32, rel: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("X");
    if state == "Z" || state == "X" {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|c| c.lines().any(|l| l.strip_prefix("0::") == Some(rel)))
        .unwrap_or(false)
}
