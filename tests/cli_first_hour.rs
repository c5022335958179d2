//! The operator's first hour with the command line, without a running controller:
//! `-c` before the command, client commands that survive a broken value, the checks of
//! `check-config` against this machine, `--strict`, and the README's exit code table.

use std::path::Path;
use std::process::Command;

const CONTROLLER: &str = env!("CARGO_BIN_EXE_qoscntrlr");

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn qoscntrlr(args: &[&str], cwd: &Path) -> Out {
    let out = Command::new(CONTROLLER)
        .args(args)
        .current_dir(cwd)
        .env_remove("QOSCNTRLR_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run qoscntrlr");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ini(dir: &Path, text: &str) -> String {
    let path = dir.join("dcontroller.ini");
    std::fs::write(&path, text).expect("write ini");
    path.display().to_string()
}

#[test]
fn client_commands_survive_a_broken_value_and_take_c_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ini(
        dir.path(),
        "SERVER_COMMAND=/bin/sleep 100\nQOS_PROBE=message\nQOS_PROBE_INTERVAL=three\n",
    );
    // No controller runs: 69, with the broken key as a warning (not 78).
    for args in [
        vec!["status", "-c", path.as_str()],
        vec!["-c", path.as_str(), "status"],
        vec!["-c", path.as_str(), "stop"],
        vec!["pause", "-c", path.as_str()],
    ] {
        let out = qoscntrlr(&args, dir.path());
        assert_eq!(out.code, Some(69), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("warning: ")
                && out.stderr.contains("dcontroller.ini:3: QOS_PROBE_INTERVAL"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // run and check-config still refuse the file.
    let out = qoscntrlr(&["check-config", "-c", &path], dir.path());
    assert_eq!(out.code, Some(78), "{}", out.stderr);
    // A path key that is wrong is still an error for clients: they would talk to the
    // wrong socket.
    let path = ini(
        dir.path(),
        "SERVER_COMMAND=/bin/sleep 100\nQOS_PROBE=message\nDATA_DIRECTORY=/etc/passwd\n",
    );
    let out = qoscntrlr(&["status", "-c", &path], dir.path());
    assert_eq!(out.code, Some(78), "{}", out.stderr);
    // Without -c: ./dcontroller.ini of the working directory.
    ini(
        dir.path(),
        "SERVER_COMMAND=/bin/sleep 100\nQOS_PROBE=message\n",
    );
    let out = qoscntrlr(&["status"], dir.path());
    assert_eq!(out.code, Some(69), "{}", out.stderr);
    assert!(out.stderr.contains("qoscntrlr.ctl"), "{}", out.stderr);
}

#[test]
fn check_config_checks_what_run_would_trip_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, "").expect("write");
    let hook = dir.path().join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\n").expect("write hook");
    let path = ini(
        dir.path(),
        &format!(
            "SERVER_COMMAND=/nonexistent/prog --flag\n\
             SERVER_USER=nosuchuser-qos\n\
             SERVER_GROUP=nosuchgroup-qos\n\
             QOS_PROBE=message\n\
             DATA_DIRECTORY={}/sub\n\
             QOS_NSD_PATH=no-such-nsd-program\n\
             QOS_FAILOVER_HOOK={}\n",
            blocked.display(),
            hook.display()
        ),
    );
    let out = qoscntrlr(&["check-config", "-c", &path], dir.path());
    assert_eq!(out.code, Some(78), "{}\n{}", out.stdout, out.stderr);
    for expected in [
        "dcontroller.ini:1: SERVER_COMMAND: server program",
        "dcontroller.ini:2: SERVER_USER: no such user 'nosuchuser-qos'",
        "dcontroller.ini:3: SERVER_GROUP: no such group 'nosuchgroup-qos'",
        "dcontroller.ini:5: DATA_DIRECTORY:",
        "dcontroller.ini:6: QOS_NSD_PATH: program \"no-such-nsd-program\" not found",
        "dcontroller.ini:7: QOS_FAILOVER_HOOK:",
    ] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with("error: ") && l.contains(expected)),
            "missing {expected:?} in:\n{}",
            out.stderr
        );
    }
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn strict_turns_warnings_into_errors_and_the_demo_config_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ini(
        dir.path(),
        "SERVER_COMMAND=/bin/sleep 100\nQOS_PROBE=message\nQOS_PROBE_TIMEOUTT=5\n",
    );
    let out = qoscntrlr(&["check-config", "-c", &path], dir.path());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("warning: "), "{}", out.stderr);
    assert!(
        out.stdout.contains("QOS_PROBE_TIMEOUT=5 minutes"),
        "{}",
        out.stdout
    );
    let out = qoscntrlr(&["check-config", "--strict", "-c", &path], dir.path());
    assert_eq!(out.code, Some(78), "{}", out.stderr);
    assert!(
        out.stderr.contains("error: ")
            && out.stderr.contains("dcontroller.ini:3: QOS_PROBE_TIMEOUTT"),
        "{}",
        out.stderr
    );
    // The README's configuration: the bare demo server name resolves (built in).
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/dcontroller.ini");
    let out = qoscntrlr(
        &["check-config", "-c", &conf.display().to_string()],
        dir.path(),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn readme_exit_code_table_is_the_code_s_table() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let rows: Vec<(u8, String)> = readme
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            match cells.as_slice() {
                [code, meaning] => Some((code.parse().ok()?, meaning.to_string())),
                _ => None,
            }
        })
        .collect();
    let expected: Vec<(u8, String)> = qoscntrlr::exitcode::EXIT_CODES
        .iter()
        .map(|r| {
            (
                r.code,
                r.meaning.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    assert_eq!(
        rows, expected,
        "README.md's exit code table differs from exitcode::EXIT_CODES"
    );
}

#[test]
fn usage_errors_exit_2_and_since_forms_are_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = qoscntrlr(&["no-such-command"], dir.path());
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let out = qoscntrlr(&["restart", "--wait=soon"], dir.path());
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    for since in ["1h", "yesterday", "2 days ago", "2012-05-08"] {
        let out = qoscntrlr(
            &[
                "logs",
                "summary",
                "--since",
                since,
                &dir.path().display().to_string(),
            ],
            dir.path(),
        );
        assert_eq!(out.code, Some(0), "--since {since}: {}", out.stderr);
    }
    let out = qoscntrlr(
        &[
            "logs",
            "summary",
            "--since",
            "last tuesday",
            &dir.path().display().to_string(),
        ],
        dir.path(),
    );
    assert_ne!(out.code, Some(0));
}
