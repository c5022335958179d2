//! `qoscntrlr check-config`: the file's own errors and warnings (from [`crate::config`]),
//! then what `run` would trip over on this machine — the server program resolved by the
//! same lookup as `run` and executable, SERVER_USER/SERVER_GROUP existing, the data
//! directory creatable and writable, the diagnostics program, hooks and an `exec:` probe
//! executable, the webhook's CA file readable with a certificate in it. Each finding is `FILE:LINE: KEY: what`, all are reported at once, and
//! `--strict` makes warnings errors. On success the effective configuration goes to
//! stdout.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::{Config, Finding, Loaded, ProbeTarget};
use crate::exitcode::{EXIT_CONFIG, EXIT_OK};

/// Run `check-config` on `path`; returns the exit code (0, or 78 on errors).
pub fn run(path: &Path, strict: bool) -> u8 {
    let loaded = match crate::config::load(path) {
        Ok(loaded) => loaded,
        Err(failure) => {
            for warning in &failure.warnings {
                eprintln!("warning: {warning}");
            }
            for error in &failure.errors {
                eprintln!("error: {error}");
            }
            eprintln!("qoscntrlr: {failure}");
            return EXIT_CONFIG;
        }
    };
    let (errors, mut warnings) = machine_checks(&loaded);
    warnings.splice(0..0, loaded.warnings.iter().cloned());
    let (errors, warnings) = if strict {
        let mut all = errors;
        all.extend(warnings);
        all.sort_by_key(|f| (f.line == 0, f.line));
        (all, Vec::new())
    } else {
        (errors, warnings)
    };
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    for error in &errors {
        eprintln!("error: {error}");
    }
    if !errors.is_empty() {
        let strict_note = if strict {
            " (--strict: warnings count)"
        } else {
            ""
        };
        eprintln!(
            "qoscntrlr: {} error(s) in {}{strict_note}",
            errors.len(),
            loaded.config.source.display()
        );
        return EXIT_CONFIG;
    }
    for line in loaded.config.effective_lines() {
        println!("{line}");
    }
    // What `run` would do about containment; nothing is created here.
    let cfg = &loaded.config;
    match crate::cgroup::detect(cfg.cgroup, &cfg.data_directory) {
        crate::cgroup::Decision::Contain(plan) => println!(
            "Containment: cgroup v2, the server would run in {} ({} layout)",
            plan.server().display(),
            plan.layout.as_str()
        ),
        crate::cgroup::Decision::Uncontained(reason) => println!(
            "Containment: none, the server's process tree is found through /proc ({reason})"
        ),
    }
    // The resource rules in force, shorthand limits included, normalised.
    for line in cfg.rule_lines() {
        println!("{line}");
    }
    EXIT_OK
}

/// The checks against this machine: (errors, warnings).
pub fn machine_checks(loaded: &Loaded) -> (Vec<Finding>, Vec<Finding>) {
    let c = &loaded.config;
    let mut checks = Checks {
        config: c,
        loaded,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    checks.server_program();
    checks.identity();
    checks.containment();
    checks.data_directory();
    let path_var = std::env::var_os("PATH");
    if let Some(argv) = &c.nsd_path {
        checks.helper("QOS_NSD_PATH", argv, path_var.clone());
    }
    if let Some(argv) = &c.failover_hook {
        checks.helper("QOS_FAILOVER_HOOK", argv, path_var.clone());
    }
    if let Some(argv) = &c.recovery_hook {
        checks.helper("QOS_RECOVERY_HOOK", argv, path_var.clone());
    }
    if let Some(ProbeTarget::Exec { argv }) = &c.probe {
        checks.helper("QOS_PROBE", argv, path_var);
    }
    if let Some(path) = &c.alert_webhook_ca {
        // Read as each https POST reads it: a file the POST cannot use is an error now.
        if let Err(e) = crate::webhook::load_ca_file(path) {
            checks.error("QOS_ALERT_WEBHOOK_CA", e);
        }
    }
    (checks.errors, checks.warnings)
}

struct Checks<'a> {
    config: &'a Config,
    loaded: &'a Loaded,
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

impl Checks<'_> {
    fn finding(&self, key: &str, message: String) -> Finding {
        Finding {
            file: self.config.source.clone(),
            line: self.loaded.key_lines.get(key).copied().unwrap_or(0),
            key: key.to_string(),
            message,
        }
    }

    fn error(&mut self, key: &str, message: String) {
        let f = self.finding(key, message);
        self.errors.push(f);
    }

    fn warning(&mut self, key: &str, message: String) {
        let f = self.finding(key, message);
        self.warnings.push(f);
    }

    /// The same lookup as `run`: beside qoscntrlr, the PATH, the built-in demo server.
    fn server_program(&mut self) {
        let Some(program) = self.config.server_command.first() else {
            return;
        };
        let path_var = std::env::var_os("PATH");
        match crate::process::resolve_server_program(
            program,
            &self.config.server_directory,
            path_var.as_deref(),
        ) {
            Ok(_) => {}
            Err(e) => self.error("SERVER_COMMAND", e.to_string()),
        }
    }

    fn identity(&mut self) {
        use nix::unistd::{Group, Uid, User};
        let root = Uid::effective().is_root();
        if let Some(name) = &self.config.server_user {
            let found = match name.parse::<u32>() {
                Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
                Err(_) => User::from_name(name).ok().flatten(),
            };
            if found.is_none() {
                self.error(
                    "SERVER_USER",
                    format!("no such user '{name}' (expected a user in the passwd database)"),
                );
            } else if !root {
                self.warning(
                    "SERVER_USER",
                    format!(
                        "switching to '{name}' needs the controller to run as root (check-config runs as uid {})",
                        Uid::effective()
                    ),
                );
            }
        }
        if let Some(name) = &self.config.server_group {
            let exists = match name.parse::<u32>() {
                // A numeric gid without a group entry is still a valid gid, as for `run`.
                Ok(_) => true,
                Err(_) => Group::from_name(name).ok().flatten().is_some(),
            };
            if !exists {
                self.error(
                    "SERVER_GROUP",
                    format!("no such group '{name}' (expected a group in the group database)"),
                );
            }
        }
        // `run` gives both sockets to this group; one it cannot resolve leaves the
        // controller without its message pipe and control socket.
        if let Some(name) = &self.config.control_group {
            if let Err(e) = crate::unixsock::resolve_group(name) {
                self.error(
                    "QOS_CONTROL_GROUP",
                    format!("{e} (expected a group name or a numeric gid)"),
                );
            }
        }
    }

    /// `QOS_CGROUP=on` where no cgroup v2 can be used: `run` would refuse to start.
    fn containment(&mut self) {
        let cfg = self.config;
        if cfg.cgroup != crate::cgroup::CgroupSetting::On {
            return;
        }
        if let crate::cgroup::Decision::Uncontained(reason) =
            crate::cgroup::detect(cfg.cgroup, &cfg.data_directory)
        {
            self.error(
                "QOS_CGROUP",
                crate::cgroup::CgroupError::Unavailable(reason).to_string(),
            );
        }
    }

    /// The data directory exists and is writable, or its nearest existing ancestor lets
    /// `run` create it.
    fn data_directory(&mut self) {
        let dir = &self.config.data_directory;
        if dir.is_dir() {
            if let Err(e) = nix::unistd::access(
                dir.as_path(),
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            ) {
                self.error(
                    "DATA_DIRECTORY",
                    format!(
                        "{} is not writable by uid {} ({e}); run writes its logs, sockets and diagnostics there",
                        dir.display(),
                        nix::unistd::Uid::effective()
                    ),
                );
            }
            return;
        }
        if dir.exists() {
            // Not a directory: the reader reports it already.
            return;
        }
        let mut ancestor: Option<PathBuf> = dir.parent().map(Path::to_path_buf);
        while let Some(a) = &ancestor {
            if a.exists() {
                break;
            }
            ancestor = a.parent().map(Path::to_path_buf);
        }
        match ancestor {
            Some(a) if a.is_dir() => {
                if let Err(e) = nix::unistd::access(
                    a.as_path(),
                    nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
                ) {
                    self.error(
                        "DATA_DIRECTORY",
                        format!(
                            "{} does not exist and cannot be created: {} is not writable by uid {} ({e})",
                            dir.display(),
                            a.display(),
                            nix::unistd::Uid::effective()
                        ),
                    );
                }
            }
            Some(a) => self.error(
                "DATA_DIRECTORY",
                format!(
                    "{} cannot be created: {} is not a directory",
                    dir.display(),
                    a.display()
                ),
            ),
            None => self.error(
                "DATA_DIRECTORY",
                format!("{} cannot be created", dir.display()),
            ),
        }
    }

    /// A diagnostics program, hook or `exec:` probe: found (a bare name on PATH, a
    /// relative path from the data directory, where they run) and executable.
    fn helper(&mut self, key: &str, argv: &[String], path_var: Option<OsString>) {
        let Some(program) = argv.first() else {
            return;
        };
        if let Err(e) = crate::process::resolve_program(
            program,
            &self.config.data_directory,
            None,
            path_var.as_deref(),
        ) {
            let what = match e {
                crate::process::SpawnError::NotFound { .. } => {
                    format!("program {program:?} not found (a bare name is looked up in PATH)")
                }
                crate::process::SpawnError::NotExecutable { path } => {
                    format!("{} is not an executable file", path.display())
                }
                other => other.to_string(),
            };
            self.error(key, what);
        }
    }
}
