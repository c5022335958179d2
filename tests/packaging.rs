//! Packaging: the example and default configurations, the systemd units, and the Debian
//! package built by `cargo deb --no-build` from the release binaries, unpacked with
//! `dpkg -x` into a scratch root.
//!
//! The .deb test needs `cargo build --release` and `cargo-deb` (`cargo install cargo-deb
//! --locked`). Without them it says so and skips, unless `CI` is set: then it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod skip;

use qoscntrlr::config;

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Active `KEY=VALUE` lines (key upper-cased) and the keys shown in commented-out lines.
fn ini_keys(text: &str) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut active = BTreeMap::new();
    let mut shown = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(commented) = line.strip_prefix('#').or_else(|| line.strip_prefix(';')) {
            if let Some((key, _)) = commented.split_once('=') {
                let key = key.trim();
                if !key.contains(' ') {
                    shown.insert(key.to_ascii_uppercase());
                }
            }
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not KEY=VALUE: {line}", number + 1));
        let previous = active.insert(key.trim().to_ascii_uppercase(), value.trim().to_string());
        assert!(
            previous.is_none(),
            "line {}: duplicate key {key}",
            number + 1
        );
    }
    (active, shown)
}

#[test]
fn example_and_default_configs_show_every_key() {
    for file in ["conf/dcontroller.ini", "packaging/dcontroller.ini"] {
        let (active, shown) = ini_keys(&read(&crate_root().join(file)));
        for key in config::KNOWN_KEYS {
            assert!(
                active.contains_key(*key) || shown.contains(*key),
                "{file}: {key} is neither set nor shown commented out"
            );
        }
        for key in active.keys().chain(shown.iter()) {
            // QOS_RULE_<NAME> is a family of keys: any name is known.
            assert!(
                config::KNOWN_KEYS.contains(&key.as_str()) || key.starts_with("QOS_RULE_"),
                "{file}: unknown key {key}"
            );
        }
    }
}

#[test]
fn example_config_supervises_the_demo_server() {
    let (active, _) = ini_keys(&read(&crate_root().join("conf/dcontroller.ini")));
    let expected = [
        ("SERVER_COMMAND", "qos-demo-server --listen 127.0.0.1:8089"),
        ("DATA_DIRECTORY", "data"),
        ("QOS_PROBE", "http://127.0.0.1:8089/health"),
        ("QOS_PROBE_INTERVAL", "2s"),
        ("QOS_PROBE_TIMEOUT", "10s"),
        ("QOS_APPS_TIMEOUT", "30s"),
        ("QOS_RESTART_TIMEOUT", "20s"),
        ("QOS_SHUTDOWN_TIMEOUT", "10s"),
        // Room for the README's whole tour without ending FAULTED.
        ("QOS_RESTART_LIMIT_MAXIMUM", "10"),
    ];
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(active, expected);

    let (active, _) = ini_keys(&read(&crate_root().join("packaging/dcontroller.ini")));
    assert_eq!(
        active.get("DATA_DIRECTORY").map(String::as_str),
        Some("/var/lib/qoscntrlr")
    );
    assert_eq!(
        active.get("SERVER_COMMAND").map(String::as_str),
        Some("/usr/lib/qoscntrlr/qos-demo-server --listen 127.0.0.1:8089")
    );
    // The shipped file is for production: the built-in timeouts stay in force.
    for key in [
        "QOS_PROBE_INTERVAL",
        "QOS_PROBE_TIMEOUT",
        "QOS_SHUTDOWN_TIMEOUT",
    ] {
        assert!(
            !active.contains_key(key),
            "{key} overridden in /etc default"
        );
    }
}

#[test]
fn example_configs_are_accepted_by_the_reader() {
    for file in ["conf/dcontroller.ini", "packaging/dcontroller.ini"] {
        let path = crate_root().join(file);
        match qoscntrlr::config::load(&path) {
            Ok(loaded) => {
                // A data directory that does not exist yet is expected (conf/data on a
                // fresh clone, /var/lib/qoscntrlr before the unit first starts); any
                // other warning (unknown key, duplicate) is a mistake in the file.
                let other: Vec<String> = loaded
                    .warnings
                    .iter()
                    .filter(|w| w.key != "DATA_DIRECTORY")
                    .map(ToString::to_string)
                    .collect();
                assert!(other.is_empty(), "{file}: warnings {other:?}");
                assert!(loaded.config.probing_enabled(), "{file}");
            }
            // Until the reader lands in this branch the skeleton refuses every file.
            Err(e) if e.errors.iter().any(|f| f.message.contains("not built yet")) => {
                skip::skip(
                    "example_configs_are_accepted_by_the_reader",
                    &format!("{file}: the configuration reader is not built in this tree"),
                );
            }
            Err(e) => panic!(
                "{file}: {e}\n{}",
                e.errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

/// `Key=Value` settings of a unit file (last one wins, like systemd for most keys).
fn unit_settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn minutes(value: &str) -> f64 {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let amount: f64 = value[..split].parse().expect("a number");
    match &value[split..] {
        "" | "s" => amount / 60.0,
        "min" => amount,
        "h" => amount * 60.0,
        other => panic!("unit {other} in {value}"),
    }
}

#[test]
fn units_carry_the_service_contract() {
    for (file, exec) in [
        (
            "packaging/qoscntrlr.service",
            "/usr/bin/qoscntrlr run -c /etc/qoscntrlr/dcontroller.ini",
        ),
        (
            "packaging/qoscntrlr@.service",
            "/usr/bin/qoscntrlr run -c /etc/qoscntrlr/%i/dcontroller.ini",
        ),
    ] {
        let settings = unit_settings(&read(&crate_root().join(file)));
        let get = |key: &str| {
            settings
                .get(key)
                .map(String::as_str)
                .unwrap_or_else(|| panic!("{file}: {key}= missing"))
        };
        assert_eq!(get("ExecStart"), exec, "{file}");
        assert_eq!(get("Type"), "notify", "{file}");
        assert_eq!(get("NotifyAccess"), "main", "{file}");
        assert_eq!(get("WatchdogSec"), "30s", "{file}");
        assert_eq!(get("Restart"), "on-failure", "{file}");
        assert_eq!(get("KillMode"), "mixed", "{file}");
        assert!(get("ExecReload").contains("-HUP"), "{file}");
        // Default QOS_SHUTDOWN_TIMEOUT (5 min) + kill must fit before systemd's SIGKILL.
        assert!(minutes(get("TimeoutStopSec")) > 6.0, "{file}");
        assert_eq!(get("ProtectSystem"), "full", "{file}");
        assert_eq!(get("PrivateTmp"), "yes", "{file}");
        assert_eq!(get("WantedBy"), "multi-user.target", "{file}");
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_root().join("target"));
    let target = if target.is_relative() {
        crate_root().join(target)
    } else {
        target
    };
    target.join("release")
}

/// Why the .deb cannot be built here, if it cannot.
fn deb_prerequisites_missing() -> Option<String> {
    let mut missing = Vec::new();
    if !have("cargo", &["deb", "--version"]) {
        missing.push("cargo-deb (cargo install cargo-deb --locked)".to_string());
    }
    for bin in ["qoscntrlr", "qos-demo-server"] {
        let path = release_dir().join(bin);
        if !path.is_file() {
            missing.push(format!("{} (cargo build --release)", path.display()));
        }
    }
    if !have("dpkg-deb", &["--version"]) {
        missing.push("dpkg-deb".to_string());
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn deb_package_installs_binaries_units_config_and_docs() {
    if let Some(missing) = deb_prerequisites_missing() {
        skip::skip(
            "deb_package_installs_binaries_units_config_and_docs",
            &format!("missing {missing}"),
        );
        return;
    }
    let scratch = tempfile::tempdir().expect("scratch dir");
    let deb = scratch.path().join("qoscntrlr.deb");
    // The documented command, nothing prepared first (the man pages and completions are
    // in packaging/generated/).
    run(Command::new("cargo")
        .args(["deb", "--no-build", "--fast", "--quiet", "--output"])
        .arg(&deb)
        .current_dir(crate_root()));

    let fields =
        String::from_utf8_lossy(&run(Command::new("dpkg-deb").arg("--field").arg(&deb)).stdout)
            .into_owned();
    assert!(fields.contains("Package: qoscntrlr"), "{fields}");
    assert!(fields.contains("Section: admin"), "{fields}");

    let root = scratch.path().join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    let control = scratch.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));

    let units = ["usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.join("qoscntrlr.service").is_file())
        .expect("qoscntrlr.service in /usr/lib/systemd/system or /lib/systemd/system");
    let expected = [
        (root.join("usr/bin/qoscntrlr"), 0o755),
        (root.join("usr/lib/qoscntrlr/qos-demo-server"), 0o755),
        (root.join("usr/lib/qoscntrlr/reexec-running"), 0o755),
        (root.join("etc/qoscntrlr/dcontroller.ini"), 0o644),
        (units.join("qoscntrlr.service"), 0o644),
        (units.join("qoscntrlr@.service"), 0o644),
        (root.join("usr/share/man/man1/qoscntrlr.1.gz"), 0o644),
        (root.join("usr/share/man/man5/dcontroller.ini.5.gz"), 0o644),
        (
            root.join("usr/share/doc/qoscntrlr/examples/keepalived.conf"),
            0o644,
        ),
        (
            root.join("usr/share/doc/qoscntrlr/examples/haproxy.cfg"),
            0o644,
        ),
        (
            root.join("usr/share/doc/qoscntrlr/examples/pacemaker-location.xml"),
            0o644,
        ),
        (
            root.join("usr/share/doc/qoscntrlr/examples/pacemaker-qos-hook.sh"),
            0o755,
        ),
        (
            root.join("usr/share/bash-completion/completions/qoscntrlr"),
            0o644,
        ),
        (
            root.join("usr/share/zsh/vendor-completions/_qoscntrlr"),
            0o644,
        ),
        (
            root.join("usr/share/fish/vendor_completions.d/qoscntrlr.fish"),
            0o644,
        ),
        (
            root.join("usr/share/doc/qoscntrlr/examples/dcontroller.ini"),
            0o644,
        ),
        (
            root.join("usr/share/doc/qoscntrlr/examples/nginx.ini"),
            0o644,
        ),
        (
            root.join("usr/share/doc/qoscntrlr/examples/postgresql.ini"),
            0o644,
        ),
        (root.join("usr/share/doc/qoscntrlr/real-servers.md"), 0o644),
    ];
    for (path, want) in &expected {
        assert_eq!(mode(path), *want, "{}", path.display());
    }
    assert_eq!(
        read(&root.join("etc/qoscntrlr/dcontroller.ini")),
        read(&crate_root().join("packaging/dcontroller.ini"))
    );
    assert_eq!(
        read(&units.join("qoscntrlr.service")),
        read(&crate_root().join("packaging/qoscntrlr.service"))
    );

    let conffiles = read(&control.join("conffiles"));
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/qoscntrlr/dcontroller.ini"),
        "conffiles: {conffiles}"
    );
    // The unit is registered but neither enabled nor started on install (re-enabled on
    // upgrade only if the admin had enabled it), and an upgrade does not restart it.
    let postinst = read(&control.join("postinst"));
    assert!(
        postinst.contains("update-state qoscntrlr.service"),
        "{postinst}"
    );
    assert!(
        postinst.contains("was-enabled qoscntrlr.service"),
        "{postinst}"
    );
    assert!(!postinst.contains("deb-systemd-invoke"), "{postinst}");
    // Instead the running controllers re-execute the new binary in place.
    assert!(
        postinst.contains("/usr/lib/qoscntrlr/reexec-running"),
        "{postinst}"
    );
    let prerm = read(&control.join("prerm"));
    assert!(
        prerm.contains(r#"[ "$1" = remove ]"#),
        "stops only on remove: {prerm}"
    );
    // Removal stops the template's instances too, not only qoscntrlr.service.
    assert!(prerm.contains("'qoscntrlr@*.service'"), "{prerm}");
    let postrm = read(&control.join("postrm"));
    assert!(postrm.contains("daemon-reload"), "{postrm}");
    // Purge deletes the data directory (logs, diagnostics, state), as Debian daemons do.
    assert!(
        postrm.contains(r#"[ "$1" = purge ]"#) && postrm.contains("rm -rf /var/lib/qoscntrlr"),
        "{postrm}"
    );

    // The packaged programs run.
    let version = run(Command::new(root.join("usr/bin/qoscntrlr")).arg("--version"));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("qoscntrlr "));
    run(Command::new(root.join("usr/lib/qoscntrlr/qos-demo-server")).arg("--help"));
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man1/qoscntrlr.1.gz")));
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.contains(".TH qoscntrlr"), "man page header: {man:.200}");
    assert!(
        man.contains("check\\-config"),
        "subcommands in the man page"
    );

    verify_units(&root, &units);
}

/// `systemd-analyze verify` against the unpacked root, when systemd-analyze exists. The
/// root gets the host's units (sysinit.target, ...) and `kill` for `ExecReload`, so only
/// our units can be at fault; any warning (unknown key, bad value) fails the test.
fn verify_units(root: &Path, units: &Path) {
    if !have("systemd-analyze", &["--version"]) {
        skip::skip(
            "deb_package_installs_binaries_units_config_and_docs",
            "systemd-analyze verify: systemd-analyze is not installed (apt-get install systemd)",
        );
        return;
    }
    let host_units = Path::new("/usr/lib/systemd/system");
    for entry in std::fs::read_dir(host_units).expect("host unit directory") {
        let entry = entry.expect("host unit");
        let target = units.join(entry.file_name());
        if !target.exists() {
            run(Command::new("cp").arg("-a").arg(entry.path()).arg(&target));
        }
    }
    std::fs::create_dir_all(root.join("usr/bin")).expect("usr/bin");
    std::fs::copy("/bin/kill", root.join("usr/bin/kill")).expect("copy kill");
    if !root.join("bin").exists() {
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).expect("bin symlink");
    }
    // A template is verified through an instance name.
    let instance = units.join("qoscntrlr@demo.service");
    std::fs::copy(units.join("qoscntrlr@.service"), &instance).expect("instance unit");
    for unit in [units.join("qoscntrlr.service"), instance] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg("--man=no")
            .arg(format!("--root={}", root.display()))
            .arg(&unit)
            .output()
            .expect("run systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {}: {}\n{stderr}",
            unit.display(),
            out.status
        );
    }
}

#[test]
fn rpm_spec_parses_and_installs_the_same_layout() {
    let spec = crate_root().join("packaging/qoscntrlr.spec");
    let text = read(&spec);
    for path in [
        "%{_bindir}/qoscntrlr",
        "%{_prefix}/lib/qoscntrlr/qos-demo-server",
        "%config(noreplace) %{_sysconfdir}/qoscntrlr/dcontroller.ini",
        "%{_unitdir}/qoscntrlr.service",
        "%{_unitdir}/qoscntrlr@.service",
        "%{_mandir}/man1/qoscntrlr.1.gz",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == path),
            "%files lacks {path}"
        );
    }
    let version = format!("Version:        {}", env!("CARGO_PKG_VERSION"));
    assert!(text.contains(&version), "spec version matches Cargo.toml");
    let post = text
        .split("\n%post\n")
        .nth(1)
        .and_then(|rest| rest.split("\n%").next())
        .unwrap_or_default();
    assert!(
        post.contains("reexec-running"),
        "%post re-executes running controllers on upgrade: {post}"
    );
    if !have("rpmspec", &["--version"]) {
        skip::skip(
            "rpm_spec_parses_and_installs_the_same_layout",
            "rpmspec -P: rpm is not installed (apt-get install rpm)",
        );
        return;
    }
    run(Command::new("rpmspec").arg("-P").arg(&spec));
}
