//! cgroup v2 containment of the server (`QOS_CGROUP=auto|on|off`): finding a writable
//! cgroup v2 hierarchy, placing the server in a cgroup of its own, its exact membership
//! (`cgroup.procs`), the kill (`cgroup.kill`), the end of its tree (`cgroup.events`
//! `populated 0`, watched with inotify, never polled on a timer), and the per-cgroup
//! figures the sampler reads (`memory.current`, `memory.events`, `pids.current`,
//! `cpu.stat`, pressure stall information).
//!
//! Two layouts, both keeping processes only in leaf cgroups (the kernel's
//! no-internal-process rule):
//!
//! * **Delegated** (systemd `Delegate=yes`, recognised by the `trusted.delegate` /
//!   `user.delegate` attribute systemd puts on a delegated cgroup, or by the cgroup
//!   belonging to the controller's non-root user): the unit's cgroup `U` gets two
//!   children, `U/controller` (the controller moves itself there) and `U/server`.
//! * **Per data directory** (root, any other cgroup2 mount, including a hybrid host's
//!   `/sys/fs/cgroup/unified`): `<mount>/qoscntrlr/<escaped data directory>/server`.
//!   The controller stays where it was started: moving it out of a cgroup that systemd
//!   (or another manager) tracks without delegation would break that manager.
//!
//! [`detect`] decides without side effects (for `check-config`); [`setup`] creates the
//! cgroups. [`Containment`] is plain data (serde) so the cgroup paths can be carried
//! across a re-exec of the controller.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::{Deserialize, Serialize};

/// Name of the per-data-directory parent on a plain mount.
pub const TOP_NAME: &str = "qoscntrlr";
pub const SERVER_NAME: &str = "server";
pub const CONTROLLER_NAME: &str = "controller";
/// Controllers enabled for the server's cgroup when the hierarchy offers them.
const WANTED_CONTROLLERS: &[&str] = &["cpu", "io", "memory", "pids"];
/// Longest cgroup directory name used for a data directory (NAME_MAX is 255).
const MAX_KEY_LEN: usize = 200;

/// `QOS_CGROUP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CgroupSetting {
    /// Contain the server where a writable cgroup v2 hierarchy exists, else fall back.
    #[default]
    Auto,
    /// Contain it or refuse to start.
    On,
    /// Never: the `/proc` process tree only.
    Off,
}

impl CgroupSetting {
    pub fn parse(text: &str) -> Result<CgroupSetting, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(CgroupSetting::Auto),
            "on" | "1" | "yes" | "true" => Ok(CgroupSetting::On),
            "off" | "0" | "no" | "false" => Ok(CgroupSetting::Off),
            _ => Err(format!(
                "\"{text}\" is not a containment mode (expected auto, on or off)"
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            CgroupSetting::Auto => "auto",
            CgroupSetting::On => "on",
            CgroupSetting::Off => "off",
        }
    }
}

impl std::fmt::Display for CgroupSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("QOS_CGROUP=on but the server cannot be contained: {0}")]
    Unavailable(String),
    #[error("cannot create cgroup {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {} to {}: {source}", .what, .path.display())]
    Write {
        path: PathBuf,
        what: String,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {}: {source}", .path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which layout a containment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Under the controller's own (delegated) cgroup, the controller in a sibling.
    Delegated,
    /// `<mount>/qoscntrlr/<data directory>/server`, created by root.
    DataDirectory,
}

impl Layout {
    pub fn as_str(&self) -> &'static str {
        match self {
            Layout::Delegated => "delegated",
            Layout::DataDirectory => "data-directory",
        }
    }
}

/// What [`detect`] found: where the cgroups would go. No side effects were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub layout: Layout,
    /// The cgroup2 mount point.
    pub mount: PathBuf,
    /// The controller's cgroup now.
    pub own: PathBuf,
    /// Parent of `server` (and of `controller` when delegated).
    pub base: PathBuf,
}

impl Plan {
    pub fn server(&self) -> PathBuf {
        self.base.join(SERVER_NAME)
    }
}

/// The outcome of [`detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Contain(Plan),
    /// No containment, and why (shown in the log, `status` and `check-config`).
    Uncontained(String),
}

/// The containment in force. Plain data: it can be written out and read back by a
/// re-executed controller, which then [`Containment::adopt`]s it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Containment {
    pub layout: Layout,
    pub mount: PathBuf,
    pub base: PathBuf,
    /// The server's cgroup (a leaf).
    pub server: PathBuf,
    /// The controller's cgroup after setup (`base/controller` when delegated).
    pub controller: PathBuf,
    /// Controllers enabled in the server's cgroup (`cgroup.controllers`).
    pub controllers: Vec<String>,
}

/// Where the controller's cgroup v2 is: the mount and its own cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub own: PathBuf,
}

/// Decode the octal escapes (`\040` for a space) of a mountinfo field.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = u32::from(digits[0] - b'0') * 64
                    + u32::from(digits[1] - b'0') * 8
                    + u32::from(digits[2] - b'0');
                // \377 at most: one byte.
                out.push(value as u8);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 mounts of a `/proc/self/mountinfo` text: (root inside the hierarchy,
/// mount point), in file order.
pub fn cgroup2_mounts(mountinfo: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        if fields.len() < 5 {
            continue;
        }
        out.push((
            unescape_mount_field(fields[3]),
            PathBuf::from(unescape_mount_field(fields[4])),
        ));
    }
    out
}

/// The cgroup v2 path of a `/proc/<pid>/cgroup` text (the `0::` line).
pub fn unified_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().trim_end_matches(" (deleted)").to_string())
}

/// Find the cgroup2 mount and this process's cgroup directory in it.
pub fn hierarchy() -> Result<Hierarchy, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mounts = cgroup2_mounts(&mountinfo);
    if mounts.is_empty() {
        return Err("no cgroup2 filesystem is mounted".into());
    }
    let own_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let rel = unified_path(&own_cgroup).ok_or_else(|| {
        "this process has no cgroup v2 membership (no 0:: line in /proc/self/cgroup)".to_string()
    })?;
    // Prefer a mount of the whole hierarchy; a mount of a subtree works when our cgroup
    // lies inside it.
    let mut candidates: Vec<&(String, PathBuf)> = mounts.iter().collect();
    candidates.sort_by_key(|(root, _)| root != "/");
    for (root, mount) in candidates {
        let inside = if root == "/" {
            Some(rel.trim_start_matches('/'))
        } else if rel == *root {
            Some("")
        } else {
            rel.strip_prefix(&format!("{root}/"))
        };
        if let Some(inside) = inside {
            let own = if inside.is_empty() {
                mount.clone()
            } else {
                mount.join(inside)
            };
            if own.join("cgroup.procs").exists() {
                return Ok(Hierarchy {
                    mount: mount.clone(),
                    own,
                });
            }
        }
    }
    Err(format!(
        "this process's cgroup {rel} is not visible under any cgroup2 mount"
    ))
}

fn writable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn has_xattr(path: &Path, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (
        CString::new(path.as_os_str().as_bytes()),
        CString::new(name),
    ) else {
        return false;
    };
    let mut buf = [0u8; 16];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n > 0 && buf[0] == b'1'
}

/// systemd marks a cgroup it delegates (`Delegate=yes`, systemd 251 and later).
fn delegated_by_systemd(dir: &Path) -> bool {
    has_xattr(dir, "trusted.delegate") || has_xattr(dir, "user.delegate")
}

/// A delegated cgroup `dir` for this process: marked by systemd, or (older systemd, or
/// another manager) handed to our non-root user.
fn delegated(dir: &Path, euid: u32) -> bool {
    if delegated_by_systemd(dir) {
        return true;
    }
    euid != 0
        && std::fs::metadata(dir).is_ok_and(|m| m.uid() == euid)
        && writable(&dir.join("cgroup.procs"))
        && writable(&dir.join("cgroup.subtree_control"))
}

/// The data directory as one cgroup name: `/var/lib/qoscntrlr/mail1` →
/// `var-lib-qoscntrlr-mail1`, systemd-style (`-` and other bytes escaped as `\xNN`, so
/// distinct paths never share a name); a very long path is cut and made unique with a
/// hash of the whole.
pub fn data_dir_key(data_dir: &Path) -> String {
    let bytes = data_dir.as_os_str().as_bytes();
    let trimmed: &[u8] = {
        let mut b = bytes;
        while let [b'/', rest @ ..] = b {
            b = rest;
        }
        while let [rest @ .., b'/'] = b {
            b = rest;
        }
        b
    };
    let mut key = String::new();
    for (i, &b) in trimmed.iter().enumerate() {
        match b {
            b'/' => key.push('-'),
            b'.' if i == 0 => key.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => key.push(b as char),
            _ => key.push_str(&format!("\\x{b:02x}")),
        }
    }
    if key.is_empty() {
        key.push('-');
    }
    if key.len() > MAX_KEY_LEN {
        // FNV-1a over the whole path: stable across runs (unlike std's hasher).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut cut = MAX_KEY_LEN - 17;
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        key.truncate(cut);
        key.push_str(&format!("-{hash:016x}"));
    }
    key
}

/// Decide where the server's cgroup goes, without creating anything.
pub fn detect(setting: CgroupSetting, data_dir: &Path) -> Decision {
    if setting == CgroupSetting::Off {
        return Decision::Uncontained("QOS_CGROUP=off".into());
    }
    let h = match hierarchy() {
        Ok(h) => h,
        Err(reason) => return Decision::Uncontained(reason),
    };
    plan_for(&h, data_dir, nix::unistd::geteuid().as_raw())
}

/// [`detect`] for a given hierarchy and user (tests use a fake tree).
pub fn plan_for(h: &Hierarchy, data_dir: &Path, euid: u32) -> Decision {
    // A controller re-executed (or restarted by a manager that kept it) in
    // `<delegated>/controller` keeps that layout.
    let parent_delegated = h
        .own
        .file_name()
        .is_some_and(|n| n == CONTROLLER_NAME)
        .then(|| h.own.parent().map(Path::to_path_buf))
        .flatten()
        .filter(|p| *p != h.mount && delegated(p, euid));
    if let Some(base) = parent_delegated {
        return Decision::Contain(Plan {
            layout: Layout::Delegated,
            mount: h.mount.clone(),
            own: h.own.clone(),
            base,
        });
    }
    if h.own != h.mount && delegated(&h.own, euid) {
        return Decision::Contain(Plan {
            layout: Layout::Delegated,
            mount: h.mount.clone(),
            own: h.own.clone(),
            base: h.own.clone(),
        });
    }
    if euid != 0 {
        return Decision::Uncontained(format!(
            "cgroup {} is not delegated to this user (run as root, or under systemd with Delegate=yes)",
            h.own.display()
        ));
    }
    let top = h.mount.join(TOP_NAME);
    let parent_ok = if top.is_dir() {
        writable(&top)
    } else {
        writable(&h.mount)
    };
    if !parent_ok {
        return Decision::Uncontained(format!(
            "{} is not writable (a read-only cgroup2 mount, e.g. in a container)",
            if top.is_dir() { &top } else { &h.mount }.display()
        ));
    }
    Decision::Contain(Plan {
        layout: Layout::DataDirectory,
        mount: h.mount.clone(),
        own: h.own.clone(),
        base: top.join(data_dir_key(data_dir)),
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write `text` to a cgroup interface file in one `write(2)` (the kernel acts per write).
fn write_file(path: &Path, text: &str) -> Result<(), CgroupError> {
    let result = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        what: format!("{:?}", text.trim()),
        source,
    })
}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(text)
}

fn words(path: &Path) -> Vec<String> {
    read_file(path)
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Enable the wanted controllers `dir` offers for its children; best effort (a
/// controller the parent does not pass down, or a cgroup with processes of its own,
/// refuses — the server is then contained without that figure).
fn enable_controllers(dir: &Path) -> Vec<String> {
    let available = words(&dir.join("cgroup.controllers"));
    let mut enabled = words(&dir.join("cgroup.subtree_control"));
    for wanted in WANTED_CONTROLLERS {
        if available.iter().any(|c| c == wanted) && !enabled.iter().any(|c| c == wanted) {
            // One write per controller: one refusal must not cost the others.
            if write_file(&dir.join("cgroup.subtree_control"), &format!("+{wanted}")).is_ok() {
                enabled.push((*wanted).to_string());
            }
        }
    }
    enabled
}

/// Create the cgroups of `plan` (and move the controller when delegated).
pub fn setup(plan: &Plan) -> Result<Containment, CgroupError> {
    let controller = match plan.layout {
        Layout::Delegated => {
            let controller = plan.base.join(CONTROLLER_NAME);
            mkdir(&controller)?;
            if plan.own != controller {
                // "0" moves the writing process (all its threads).
                write_file(&controller.join("cgroup.procs"), "0")?;
            }
            controller
        }
        Layout::DataDirectory => {
            let top = plan.mount.join(TOP_NAME);
            mkdir(&top)?;
            enable_controllers(&top);
            mkdir(&plan.base)?;
            plan.own.clone()
        }
    };
    enable_controllers(&plan.base);
    let server = plan.server();
    mkdir(&server)?;
    let controllers = words(&server.join("cgroup.controllers"));
    Ok(Containment {
        layout: plan.layout,
        mount: plan.mount.clone(),
        base: plan.base.clone(),
        server,
        controller,
        controllers,
    })
}

/// What the kill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupKill {
    /// Members when the kill was sent (the root first when it was one of them).
    pub members: Vec<i32>,
    /// `cgroup.kill` (true) or the freeze + SIGKILL fallback of kernels before 5.14.
    pub kill_file: bool,
}

impl Containment {
    /// Take over a containment set up by an earlier controller process (re-exec): the
    /// server's cgroup must still exist.
    pub fn adopt(saved: Containment) -> Result<Containment, CgroupError> {
        if !saved.server.join("cgroup.procs").exists() {
            return Err(CgroupError::Read {
                path: saved.server.join("cgroup.procs"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        Ok(saved)
    }

    /// One line for the log header, `status` and `check-config`.
    pub fn describe(&self) -> String {
        let controllers = if self.controllers.is_empty() {
            "none".to_string()
        } else {
            self.controllers.join(" ")
        };
        format!(
            "cgroup v2 {} ({} layout; controllers: {controllers})",
            self.server.display(),
            self.layout.as_str()
        )
    }

    pub fn has_controller(&self, name: &str) -> bool {
        self.controllers.iter().any(|c| c == name)
    }

    /// The pids in the server's cgroup (kernel-exact; no zombies).
    pub fn members(&self) -> Result<Vec<i32>, CgroupError> {
        members_of(&self.server)
    }

    /// `populated` of the server's `cgroup.events`.
    pub fn populated(&self) -> Result<bool, CgroupError> {
        populated(&self.server)
    }

    /// SIGKILL everything in the server's cgroup. Processes forked meanwhile are killed
    /// too (`cgroup.kill` is atomic against forks). `root` is listed first when present.
    pub fn kill(&self, root: Option<i32>) -> Result<CgroupKill, CgroupError> {
        let mut members = self.members().unwrap_or_default();
        if let Some(root) = root {
            if let Some(i) = members.iter().position(|p| *p == root) {
                members.remove(i);
                members.insert(0, root);
            }
        }
        let kill_file = kill_cgroup(&self.server)?;
        Ok(CgroupKill { members, kill_file })
    }

    /// Remove the server's (empty) cgroup and make it again at the same path: a new
    /// cgroup, whose `kill_seq` no `cgroup.kill` has advanced, so a server can be cloned
    /// straight into it ([`crate::clone_into`]). [`setup`] writes nothing into the
    /// server's cgroup itself (its controllers come from the parent's
    /// `cgroup.subtree_control`, which stays), so there is nothing to re-apply; a watch on
    /// its files must be re-armed ([`EventsWatch::rearm`]). Fails when it is not empty.
    pub fn renew_server(&self) -> Result<(), CgroupError> {
        std::fs::remove_dir(&self.server).map_err(|source| CgroupError::Remove {
            path: self.server.clone(),
            source,
        })?;
        mkdir(&self.server)
    }

    /// Remove the cgroups this controller made (at exit; they must be empty). Errors are
    /// returned for the log; a busy cgroup stays.
    pub fn remove(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut rm = |p: &Path| {
            if let Err(e) = std::fs::remove_dir(p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("cannot remove cgroup {}: {e}", p.display()));
                }
            }
        };
        rm(&self.server);
        if self.layout == Layout::DataDirectory {
            rm(&self.base);
        }
        problems
    }
}

pub fn members_of(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = read_file(&dir.join("cgroup.procs"))?;
    Ok(text
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// `populated` of `cgroup.events` text.
pub fn parse_populated(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|l| l.strip_prefix("populated "))
        .map(|v| v.trim() != "0")
}

pub fn populated(dir: &Path) -> Result<bool, CgroupError> {
    let path = dir.join("cgroup.events");
    let text = read_file(&path)?;
    parse_populated(&text).ok_or_else(|| CgroupError::Read {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no populated line"),
    })
}

/// SIGKILL every process in `dir` (and its descendants): `cgroup.kill` where the kernel
/// has it (5.14+), else freeze the cgroup, SIGKILL each member until none is left or a
/// bounded number of rounds, and thaw it. Returns whether `cgroup.kill` was used.
pub fn kill_cgroup(dir: &Path) -> Result<bool, CgroupError> {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        write_file(&kill_file, "1")?;
        return Ok(true);
    }
    let freeze = dir.join("cgroup.freeze");
    let frozen = freeze.exists() && write_file(&freeze, "1").is_ok();
    for _ in 0..100 {
        let members = members_of(dir)?;
        if members.is_empty() {
            break;
        }
        for pid in members {
            // A fatal signal reaches a frozen task; ESRCH means it is gone already.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if frozen {
        let _ = write_file(&freeze, "0");
    }
    Ok(false)
}

/// Watches a cgroup's `cgroup.events` (and `memory.events` where present) through
/// inotify: the kernel reports each change of those files as a modification, so
/// waiting for `populated 0` costs no timer and no read until something changed.
pub struct EventsWatch {
    inotify: Inotify,
    dir: PathBuf,
    /// Reads of `cgroup.events` done so far (tests prove the wait is not a poll loop).
    pub reads: u64,
}

impl AsRawFd for EventsWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}

impl EventsWatch {
    pub fn new(dir: &Path) -> Result<EventsWatch, CgroupError> {
        let err = |source: nix::Error| CgroupError::Read {
            path: dir.join("cgroup.events"),
            source: source.into(),
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(err)?;
        let mut watch = EventsWatch {
            inotify,
            dir: dir.to_path_buf(),
            reads: 0,
        };
        watch.rearm()?;
        Ok(watch)
    }

    /// Watch the cgroup's `cgroup.events` (and `memory.events` where it exists); again
    /// for a cgroup made anew at the same path ([`Containment::renew_server`]): the old
    /// watches ended with the old files.
    pub fn rearm(&mut self) -> Result<(), CgroupError> {
        self.inotify
            .add_watch(&self.dir.join("cgroup.events"), AddWatchFlags::IN_MODIFY)
            .map_err(|source| CgroupError::Read {
                path: self.dir.join("cgroup.events"),
                source: source.into(),
            })?;
        let memory_events = self.dir.join("memory.events");
        if memory_events.exists() {
            // Optional: without it OOM kills are still seen by the samples.
            let _ = self
                .inotify
                .add_watch(&memory_events, AddWatchFlags::IN_MODIFY);
        }
        Ok(())
    }

    /// Consume pending notifications (non-blocking); true if there were any.
    pub fn drain(&self) -> bool {
        let mut any = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            any = true;
        }
        any
    }

    /// Read `populated` now.
    pub fn populated(&mut self) -> Result<bool, CgroupError> {
        self.reads += 1;
        populated(&self.dir)
    }

    /// Block until the cgroup is empty or `limit` has passed (start and exit paths,
    /// where the loop is not running). Returns whether it is empty.
    pub fn wait_empty_blocking(&mut self, limit: Duration) -> Result<bool, CgroupError> {
        let until = Instant::now() + limit;
        loop {
            self.drain();
            if !self.populated()? {
                return Ok(true);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut fds = [libc::pollfd {
                fd: self.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd; EINTR just loops.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, ms.max(1)) };
        }
    }
}

/// Async waiting on an [`EventsWatch`] inside the runtime.
pub struct AsyncEventsWatch {
    fd: tokio::io::unix::AsyncFd<EventsWatch>,
}

impl AsyncEventsWatch {
    pub fn new(watch: EventsWatch) -> std::io::Result<AsyncEventsWatch> {
        // SAFETY: the inotify descriptor is owned by `watch`, which the AsyncFd owns from
        // here on; it is neither replaced nor closed while registered.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(watch, tokio::io::Interest::READABLE)
        }
        .map_err(std::io::Error::from)?;
        Ok(AsyncEventsWatch { fd })
    }

    /// Wait for the next change of the watched files.
    pub async fn changed(&mut self) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            if guard.get_inner().drain() {
                guard.clear_ready();
                return Ok(());
            }
            guard.clear_ready();
        }
    }

    pub fn get_mut(&mut self) -> &mut EventsWatch {
        self.fd.get_mut()
    }

    /// Wait until the cgroup is empty (each check follows a notification), or `limit`.
    pub async fn wait_empty(&mut self, limit: Duration) -> Result<bool, CgroupError> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            if !self.get_mut().populated()? {
                return Ok(true);
            }
            match tokio::time::timeout_at(until, self.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(CgroupError::Read {
                        path: self.fd.get_ref().dir.join("cgroup.events"),
                        source,
                    })
                }
                Err(_) => return Ok(!self.get_mut().populated()?),
            }
        }
    }
}

/// Pressure stall information: `some avg10` of a `*.pressure` file, in percent.
pub fn parse_pressure_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))
        .and_then(|v| v.parse().ok())
}

/// `key value` lines (`cpu.stat`, `memory.events`): the value of `key`.
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The per-cgroup figures of one sample. `None`: the file is absent (controller not
/// enabled, PSI off) or unreadable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    pub memory_current: Option<u64>,
    pub oom: Option<u64>,
    pub oom_kill: Option<u64>,
    pub pids_current: Option<u64>,
    /// `cpu.stat usage_usec` (present without the cpu controller).
    pub cpu_usage_usec: Option<u64>,
    pub memory_pressure: Option<f64>,
    pub cpu_pressure: Option<f64>,
    pub io_pressure: Option<f64>,
}

/// Read the figures of cgroup `dir`: a fixed handful of files, whatever the number of
/// processes in it.
pub fn read_stats(dir: &Path) -> CgroupStats {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let events = read("memory.events");
    CgroupStats {
        memory_current: read("memory.current").and_then(|t| t.trim().parse().ok()),
        oom: events.as_deref().and_then(|t| keyed_value(t, "oom")),
        oom_kill: events.as_deref().and_then(|t| keyed_value(t, "oom_kill")),
        pids_current: read("pids.current").and_then(|t| t.trim().parse().ok()),
        cpu_usage_usec: read("cpu.stat").and_then(|t| keyed_value(&t, "usage_usec")),
        memory_pressure: read("memory.pressure").and_then(|t| parse_pressure_some_avg10(&t)),
        cpu_pressure: read("cpu.pressure").and_then(|t| parse_pressure_some_avg10(&t)),
        io_pressure: read("io.pressure").and_then(|t| parse_pressure_some_avg10(&t)),
    }
}

/// `oom_kill` of the server cgroup's `memory.events`, where the memory controller is on.
pub fn oom_kills(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("memory.events"))
        .ok()
        .and_then(|t| keyed_value(&t, "oom_kill"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_finds_cgroup2_including_hybrid_and_escapes() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:38 /sub /mnt/my\\040cg rw shared:1 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mounts(text),
            vec![
                ("/".to_string(), PathBuf::from("/sys/fs/cgroup/unified")),
                ("/sub".to_string(), PathBuf::from("/mnt/my cg")),
            ]
        );
        assert!(cgroup2_mounts("garbage\n").is_empty());
    }

    #[test]
    fn unified_line_of_proc_cgroup() {
        let text = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/qoscntrlr.service\n";
        assert_eq!(
            unified_path(text).as_deref(),
            Some("/system.slice/qoscntrlr.service")
        );
        assert_eq!(unified_path("4:memory:/x\n"), None);
    }

    #[test]
    fn data_directory_keys_are_distinct_and_bounded() {
        assert_eq!(
            data_dir_key(Path::new("/var/lib/qoscntrlr/mail1")),
            "var-lib-qoscntrlr-mail1"
        );
        assert_ne!(
            data_dir_key(Path::new("/a-b")),
            data_dir_key(Path::new("/a/b"))
        );
        assert_eq!(data_dir_key(Path::new("/a-b")), "a\\x2db");
        assert_eq!(data_dir_key(Path::new("/.hidden/x")), "\\x2ehidden-x");
        let long = PathBuf::from(format!("/{}", "d/".repeat(300)));
        let key = data_dir_key(&long);
        assert!(key.len() <= MAX_KEY_LEN, "{}", key.len());
        let other = PathBuf::from(format!("/{}e", "d/".repeat(300)));
        assert_ne!(key, data_dir_key(&other));
        assert!(!key.contains('/'));
    }

    #[test]
    fn pressure_and_keyed_files() {
        let psi = "some avg10=61.25 avg60=30.00 avg300=5.00 total=123\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n";
        assert_eq!(parse_pressure_some_avg10(psi), Some(61.25));
        assert_eq!(parse_pressure_some_avg10("full avg10=1.00\n"), None);
        let events = "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed_value(events, "oom"), Some(2));
        assert_eq!(keyed_value(events, "oom_kill"), Some(1));
        assert_eq!(keyed_value(events, "oom_group"), None);
        assert_eq!(parse_populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated("frozen 0\n"), None);
    }

    #[test]
    fn settings_parse() {
        assert_eq!(CgroupSetting::parse("AUTO"), Ok(CgroupSetting::Auto));
        assert_eq!(CgroupSetting::parse("on"), Ok(CgroupSetting::On));
        assert_eq!(CgroupSetting::parse("0"), Ok(CgroupSetting::Off));
        assert!(CgroupSetting::parse("maybe")
            .unwrap_err()
            .contains("expected auto, on or off"));
    }

    #[test]
    fn plan_on_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("cg");
        std::fs::create_dir_all(mount.join("user.slice")).unwrap();
        std::fs::write(mount.join("cgroup.procs"), "").unwrap();
        let h = Hierarchy {
            mount: mount.clone(),
            own: mount.clone(),
        };
        // Root at the hierarchy's root: a per-data-directory cgroup.
        match plan_for(&h, Path::new("/srv/qos"), 0) {
            Decision::Contain(plan) => {
                assert_eq!(plan.layout, Layout::DataDirectory);
                assert_eq!(plan.server(), mount.join("qoscntrlr/srv-qos/server"));
            }
            other => panic!("{other:?}"),
        }
        // Not root and nothing delegated: no containment, with the reason.
        let h = Hierarchy {
            mount: mount.clone(),
            own: mount.join("user.slice"),
        };
        match plan_for(&h, Path::new("/srv/qos"), 12345) {
            Decision::Uncontained(reason) => assert!(reason.contains("not delegated"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
