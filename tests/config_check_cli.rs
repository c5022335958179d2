//! `qoscntrlr check-config`: exit codes, output streams, config lookup order.

use std::path::Path;
use std::process::{Command, Output};

fn qoscntrlr(dir: &Path, args: &[&str], env_config: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qoscntrlr"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("QOSCNTRLR_CONFIG");
    if let Some(path) = env_config {
        command.env("QOSCNTRLR_CONFIG", path);
    }
    command.output().expect("the qoscntrlr binary runs")
}

const GOOD: &str = "SERVER_COMMAND=/bin/sleep 1000\nQOS_PROBE=http://127.0.0.1:8080/health\n\
                    QOS_MAIL_TO=test/hcl\nQOS_MAIL_SMTP_SERVER=xx\n";

#[test]
fn the_issue_example_exits_78_naming_line_key_and_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("bad.ini");
    std::fs::write(
        &ini,
        "SERVER_COMMAND=/bin/sleep 1000\n\
         QOS_PROBE=http://127.0.0.1:8080/health\n\
         \t# an indented comment\n\
         QOS_APPS_TIMEOUT=20   # an inline comment\n\
         QOS_PROBE_TIMEOUT=ten minutes\n\
         QOS_SHUTDOWN_TIMOUT=5\n",
    )
    .unwrap();
    let out = qoscntrlr(dir.path(), &["check-config", "-c", "bad.ini"], None);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.ini:5: QOS_PROBE_TIMEOUT: \"ten minutes\" is not a duration"),
        "{stderr}"
    );
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains(
                "bad.ini:6: QOS_SHUTDOWN_TIMOUT: unknown key; did you mean QOS_SHUTDOWN_TIMEOUT?"
            ),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no effective configuration on error");
}

#[test]
fn a_good_file_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.ini"), GOOD).unwrap();
    let out = qoscntrlr(dir.path(), &["check-config", "--config", "good.ini"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "QOS_PROBE_TIMEOUT=5 minutes");
    assert_eq!(lines[4], "nsd Program Path=built-in");
    assert_eq!(lines[7], "QOS_NOKILL=false");
    assert_eq!(lines[8], "QOS_MAIL_TO=test/hcl");
    assert_eq!(lines[9], "QOS_MAIL_SMTP_SERVER=xx:25");
    // `test/hcl` is a Notes name, not an address: said on stderr, still exit 0.
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("warning: "));
}

#[test]
fn lookup_order_flag_then_environment_then_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd_ini = GOOD.replace("/bin/sleep 1000", "/bin/echo from-cwd");
    let env_ini = GOOD.replace("/bin/sleep 1000", "/bin/echo from-env");
    let flag_ini = GOOD.replace("/bin/sleep 1000", "/bin/echo from-flag");
    std::fs::write(dir.path().join("dcontroller.ini"), cwd_ini).unwrap();
    std::fs::write(dir.path().join("env.ini"), env_ini).unwrap();
    std::fs::write(dir.path().join("flag.ini"), flag_ini).unwrap();
    // check-config also resolves the program: each file names one that exists.
    let command_of = |out: Output| {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("SERVER_COMMAND=").map(str::to_string))
            .unwrap()
    };
    let env = dir.path().join("env.ini");
    assert_eq!(
        command_of(qoscntrlr(dir.path(), &["check-config"], None)),
        "/bin/echo from-cwd"
    );
    assert_eq!(
        command_of(qoscntrlr(dir.path(), &["check-config"], Some(&env))),
        "/bin/echo from-env"
    );
    assert_eq!(
        command_of(qoscntrlr(
            dir.path(),
            &["check-config", "-c", "flag.ini"],
            Some(&env)
        )),
        "/bin/echo from-flag"
    );
}

#[test]
fn a_missing_file_exits_78_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = qoscntrlr(dir.path(), &["check-config"], None);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dcontroller.ini: cannot read"), "{stderr}");
}

#[test]
fn the_control_group_is_a_name_or_a_numeric_gid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("unknown.ini"),
        format!("{GOOD}QOS_CONTROL_GROUP=no-such-group-qos\n"),
    )
    .unwrap();
    let out = qoscntrlr(dir.path(), &["check-config", "-c", "unknown.ini"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("QOS_CONTROL_GROUP: no group named 'no-such-group-qos' (expected a group name or a numeric gid)"),
        "{stderr}"
    );
    std::fs::write(
        dir.path().join("numeric.ini"),
        format!("{GOOD}QOS_CONTROL_GROUP=54321\n"),
    )
    .unwrap();
    let out = qoscntrlr(dir.path(), &["check-config", "-c", "numeric.ini"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("QOS_CONTROL_GROUP"), "{stderr}");
}
