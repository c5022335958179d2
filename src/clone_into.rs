//! Starting the server straight inside its cgroup: `clone3(2)` with `CLONE_INTO_CGROUP`
//! (Linux 5.7+), then exec.
//!
//! Why: the other way, the child writing itself into `cgroup.procs` before its exec, is
//! a migration, and a migration takes the kernel's `cgroup_threadgroup_rwsem` for
//! writing: a per-CPU rwsem whose write side waits for an RCU grace period (0.4–7 ms on
//! an idle machine, 5–20 ms on a loaded one — most of crash → exec). A task born in the
//! cgroup migrates nothing.
//!
//! The catch (verified on 6.18): since the `kill_seq` change of Linux 6.14, the kernel
//! records at fork the `kill_seq` of the *parent's* cgroup and compares it, after the
//! fork, with the `kill_seq` of the cgroup the child was cloned into; they differ once
//! `cgroup.kill` was ever written there, and the child is then SIGKILLed before it runs
//! a single instruction. The runtime therefore clones only into a server cgroup it made
//! afresh after the last kill (see `runtime::executor`), and this module detects the
//! kill anyway: the child's first act is to write one byte to the status pipe, so a
//! child that never ran is told apart from one that exec'd. Any refusal (no clone3, a
//! seccomp filter, a kernel without `CLONE_INTO_CGROUP`) is reported so the caller falls
//! back to the migration.
//!
//! The child is made with a raw `clone3` system call (no `CLONE_VM`: a copy of the
//! address space, like `fork`), so C library state is not prepared for it as `fork(3)`
//! would: between clone and exec it makes only raw system calls on data prepared before
//! the clone — no allocation, no locks, and the identity calls as direct system calls
//! (the C library's `setuid` would signal the parent's other threads, absent here).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `CLONE_INTO_CGROUP` of `<linux/sched.h>`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// The first byte a cloned child writes: it runs (it was not killed at fork).
const ALIVE: u8 = b'A';

/// `struct clone_args` of `<linux/sched.h>` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What the child needs, all prepared before the clone.
pub struct Exec<'a> {
    pub program: &'a CString,
    /// NUL-terminated `argv` (pointers into strings the caller keeps alive).
    pub argv: &'a [*const libc::c_char],
    /// NUL-terminated `envp`, likewise.
    pub envp: &'a [*const libc::c_char],
    /// stdin (read from /dev/null), stdout and stderr (the console pipe's write end).
    pub stdin: RawFd,
    pub output: RawFd,
    /// `(uid, gid, supplementary groups)` to take, when the server runs as another user.
    pub ids: Option<(libc::uid_t, libc::gid_t, &'a [libc::gid_t])>,
    /// The working directory (entered after the identity change).
    pub directory: &'a CString,
}

#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// clone3 or `CLONE_INTO_CGROUP` refused (old kernel, seccomp, permission): nothing
    /// was started; the migration may still work.
    #[error("clone3 into the cgroup refused: {0}")]
    Refused(io::Error),
    /// The child was killed before it ran (the `kill_seq` check above): nothing runs,
    /// the child is reaped.
    #[error("the child cloned into the cgroup was killed at fork")]
    KilledAtFork,
    /// The child ran but a step before exec, or the exec, failed (it is reaped).
    #[error("{0}")]
    Exec(io::Error),
    /// The status pipe or the cgroup directory could not be opened.
    #[error("{0}")]
    Setup(io::Error),
}

/// Move `fd` above the standard descriptors (0–2), keeping it close-on-exec, so that
/// the child's `dup2` onto 0–2 can never overwrite one of its sources.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a live descriptor; the result is owned below.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Make `fd` one of the standard descriptors `to`; the result must survive the exec.
///
/// Runs in the child: system calls only.
fn dup_onto(fd: RawFd, to: RawFd) -> bool {
    // SAFETY: plain descriptor system calls.
    unsafe {
        if fd == to {
            // dup2 onto itself keeps close-on-exec; clear it instead.
            libc::fcntl(fd, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(fd, to) == to
        }
    }
}

/// Clone a child into the cgroup `dir` and exec `exec` there. Returns the pid of a child
/// that has exec'd (it is the caller's to reap). `stdin`/`output` must be above 2 (the
/// caller's descriptors go through [`prepare_fd`]).
pub fn spawn(dir: &Path, exec: &Exec<'_>) -> Result<i32, CloneError> {
    let cgroup = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(CloneError::Refused)?;
    let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| CloneError::Setup(e.into()))?;
    let status_r = above_stdio(status_r).map_err(CloneError::Setup)?;
    let status_w = above_stdio(status_w).map_err(CloneError::Setup)?;
    let status_fd = status_w.as_raw_fd();
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        // A descriptor number (non-negative: it is open).
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM behaves as fork: the child runs on a copy of this
    // stack and only makes the system calls of `child` before exec or _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: in the child; see above.
        unsafe { child(exec, status_fd) }
    }
    if pid < 0 {
        return Err(CloneError::Refused(io::Error::last_os_error()));
    }
    let pid = pid as i32;
    drop(status_w);
    drop(cgroup);
    // The child's status: ALIVE, then (only if something failed) the errno; EOF at exec
    // (close-on-exec) or at its death.
    let mut buf = [0u8; 5];
    let mut got = 0;
    let file = std::fs::File::from(status_r);
    while got < buf.len() {
        match std::io::Read::read(&mut &file, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Cannot tell what became of it: make sure it does not run on unseen.
                reap(pid, true);
                return Err(CloneError::Setup(e));
            }
        }
    }
    match got {
        0 => {
            reap(pid, false);
            Err(CloneError::KilledAtFork)
        }
        1 if buf[0] == ALIVE => Ok(pid),
        5 if buf[0] == ALIVE => {
            reap(pid, false);
            let errno = i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]);
            Err(CloneError::Exec(io::Error::from_raw_os_error(errno)))
        }
        _ => {
            reap(pid, true);
            Err(CloneError::Exec(io::Error::new(
                io::ErrorKind::InvalidData,
                "short status from the child",
            )))
        }
    }
}

/// Wait for a child that did not become the server (before the caller's reaper ever
/// hears of it; on the single-threaded runtime nothing else reaps meanwhile).
fn reap(pid: i32, kill: bool) {
    let pid = nix::unistd::Pid::from_raw(pid);
    if kill {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    // EINTR is retried; ECHILD means it is gone already.
    while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
}

/// The child, between clone and exec: raw system calls on prepared data only.
///
/// # Safety
/// Only in the child of [`spawn`]'s clone.
unsafe fn child(exec: &Exec<'_>, status: RawFd) -> ! {
    fn fail(status: RawFd) -> ! {
        // errno as it is now; no allocation (an OS error is stored inline).
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL);
        let bytes = errno.to_ne_bytes();
        // SAFETY: a write of a local buffer, then _exit: nothing else runs.
        unsafe {
            libc::write(status, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    }
    if libc::write(status, [ALIVE].as_ptr().cast(), 1) != 1 {
        libc::_exit(127);
    }
    // What std's Command does before exec: an empty signal mask and SIGPIPE (ignored by
    // the Rust runtime, and ignored dispositions survive exec) back to its default.
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0
        || libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR
    {
        fail(status);
    }
    // Its own process group (pgid == pid), as `Command::process_group(0)`.
    if libc::setpgid(0, 0) != 0 {
        fail(status);
    }
    if !dup_onto(exec.stdin, 0) || !dup_onto(exec.output, 1) || !dup_onto(exec.output, 2) {
        fail(status);
    }
    if let Some((uid, gid, groups)) = exec.ids {
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
            || libc::syscall(libc::SYS_setgid, gid) != 0
            || libc::syscall(libc::SYS_setuid, uid) != 0
        {
            fail(status);
        }
    }
    // After the identity change, so the directory is entered with the server's own
    // permissions.
    if libc::chdir(exec.directory.as_ptr()) != 0 {
        fail(status);
    }
    libc::execve(
        exec.program.as_ptr(),
        exec.argv.as_ptr(),
        exec.envp.as_ptr(),
    );
    fail(status)
}

/// Move a descriptor the child will `dup2` above 0–2 (see [`spawn`]).
pub fn prepare_fd(fd: OwnedFd) -> io::Result<OwnedFd> {
    above_stdio(fd)
}

/// `KEY=VALUE` strings for `envp`: the controller's environment without `remove`, then
/// `set` in order (a later value of a key wins), as `std::process::Command` builds it.
pub fn environment(
    remove: &[&str],
    set: &[(String, String)],
) -> Result<Vec<CString>, std::ffi::NulError> {
    let mut vars: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os()
        .filter(|(k, _)| !remove.iter().any(|r| k.as_bytes() == r.as_bytes()))
        .collect();
    for (k, v) in set {
        match vars
            .iter_mut()
            .find(|(old, _)| old.as_bytes() == k.as_bytes())
        {
            Some(slot) => slot.1 = v.into(),
            None => vars.push((k.into(), v.into())),
        }
    }
    vars.into_iter()
        .map(|(k, v)| {
            let mut bytes = k.as_bytes().to_vec();
            bytes.push(b'=');
            bytes.extend_from_slice(v.as_bytes());
            CString::new(bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_drops_removed_keys_and_the_last_value_wins() {
        let set = vec![
            ("QOS_CLONE_TEST".to_string(), "1".to_string()),
            ("QOS_CLONE_TEST".to_string(), "2".to_string()),
        ];
        let env = environment(&["PATH"], &set).unwrap();
        let texts: Vec<&[u8]> = env.iter().map(|c| c.as_bytes()).collect();
        assert!(!texts.iter().any(|t| t.starts_with(b"PATH=")));
        let ours: Vec<&&[u8]> = texts
            .iter()
            .filter(|t| t.starts_with(b"QOS_CLONE_TEST="))
            .collect();
        assert_eq!(ours, vec![&&b"QOS_CLONE_TEST=2"[..]]);
    }
}
