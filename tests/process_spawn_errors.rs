//! `spawn_server` refuses bad input before forking, with errors that name what is wrong.
//! Nothing here starts a process.

use std::path::PathBuf;

use qoscntrlr::process::{spawn_server, Reaper, ServerSpec, SpawnError};

fn spec(argv: &[&str], dir: PathBuf) -> ServerSpec {
    ServerSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        console_log: dir.join("console.log"),
        directory: dir,
        user: None,
        group: None,
        env: Vec::new(),
        cgroup: None,
    }
}

#[test]
fn unknown_program_is_not_found_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = spawn_server(
        &spec(&["qos-no-such-server"], dir.path().into()),
        &Reaper::new(),
    )
    .unwrap_err();
    assert!(matches!(&err, SpawnError::NotFound { program } if program == "qos-no-such-server"));
    assert!(err.to_string().contains("qos-no-such-server"), "{err}");
}

#[test]
fn non_executable_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server"), "#!/bin/sh\n").unwrap();
    let err = spawn_server(&spec(&["./server"], dir.path().into()), &Reaper::new()).unwrap_err();
    assert!(matches!(err, SpawnError::NotExecutable { .. }), "{err}");
    assert!(
        err.to_string().contains("is not an executable file"),
        "{err}"
    );
}

#[test]
fn missing_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = spawn_server(&spec(&["true"], missing.clone()), &Reaper::new()).unwrap_err();
    assert!(
        matches!(&err, SpawnError::Directory { path, .. } if *path == missing),
        "{err}"
    );
}

#[test]
fn empty_command_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = spawn_server(&spec(&[], dir.path().into()), &Reaper::new()).unwrap_err();
    assert!(matches!(err, SpawnError::EmptyCommand));
}

#[test]
fn user_must_exist_or_controller_must_be_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(&["true"], dir.path().into());
    s.user = Some("qos-no-such-user".into());
    let err = spawn_server(&s, &Reaper::new()).unwrap_err();
    if nix::unistd::Uid::effective().is_root() {
        assert!(matches!(err, SpawnError::UnknownUser { .. }), "{err}");
        assert!(
            err.to_string().contains("SERVER_USER=qos-no-such-user"),
            "{err}"
        );
    } else {
        assert!(matches!(err, SpawnError::NotRoot { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("needs the controller to run as root"),
            "{err}"
        );
    }
}

/// A console log that cannot be opened is reported, but never stops the server from
/// starting (its output then goes to stderr and the in-memory tail).
#[test]
fn unwritable_console_log_is_reported_and_the_server_starts_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(&["true"], dir.path().into());
    s.console_log = dir.path().join("no-dir").join("console.log");
    let spawned = spawn_server(&s, &Reaper::new()).expect("the server starts anyway");
    let err = spawned
        .console_log_error
        .as_ref()
        .expect("the console log problem is reported");
    assert_eq!(err.path, s.console_log);
    assert!(err.to_string().contains("console log"), "{err}");
    // Reap it here: no reap loop runs in this test.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawned.pid), None);
}
