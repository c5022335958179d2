//! The control socket end to end: bind (modes, stale sockets), the JSON-lines protocol,
//! peer-credential checks with real processes of another uid, and the blocking client.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod skip;

use qoscntrlr::control::{self, ClientError, ControlCommand, ControlEvent, ControlResponse};
use qoscntrlr::status::StatusSnapshot;
use tokio::sync::mpsc;

const NOBODY: u32 = 65534;

fn snapshot() -> StatusSnapshot {
    serde_json::from_str(include_str!("status_fixture.json")).expect("fixture is valid")
}

/// A stand-in runtime: answers every request, and reports what it saw.
fn spawn_runtime(mut events: mpsc::Receiver<ControlEvent>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = events.recv().await {
            match event {
                ControlEvent::Request(request) => {
                    seen.push(format!("{:?} uid={}", request.command, request.uid));
                    let response = match request.command {
                        ControlCommand::Status => ControlResponse::status(snapshot()),
                        ControlCommand::Restart => {
                            ControlResponse::refused("restart refused: a quit is in progress")
                        }
                        other => ControlResponse::ok(format!("{} accepted", other.word())),
                    };
                    let _ = request.reply.send(response);
                }
                ControlEvent::Refused { uid, gid, .. } => {
                    seen.push(format!("refused uid={uid} gid={gid}"))
                }
            }
        }
        seen
    })
}

struct Served {
    path: PathBuf,
    serve: tokio::task::JoinHandle<()>,
    runtime: tokio::task::JoinHandle<Vec<String>>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(group: Option<&str>) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        // Other uids must reach the socket to exercise the peer checks.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod dir");
        let path = dir.path().join("qoscntrlr.ctl");
        let listener = control::bind(&path, group).await.expect("bind");
        let gid = group.map(|g| control::resolve_group(g).expect("group"));
        let (tx, rx) = mpsc::channel(8);
        let runtime = spawn_runtime(rx);
        let serve = tokio::spawn(control::serve(listener, gid, tx));
        Served {
            path,
            serve,
            runtime,
            _dir: dir,
        }
    }

    async fn request(&self, command: ControlCommand) -> Result<ControlResponse, ClientError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            control::request(&path, &command, Duration::from_secs(5))
        })
        .await
        .expect("client thread")
    }

    async fn raw(&self, line: &str) -> String {
        let path = self.path.clone();
        let line = line.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // The server may answer and close before reading everything (too long).
            let _ = s.write_all(line.as_bytes());
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("read");
            answer
        })
        .await
        .expect("client thread")
    }

    async fn finish(self) -> Vec<String> {
        self.serve.abort();
        let _ = self.serve.await;
        tokio::time::timeout(Duration::from_secs(5), self.runtime)
            .await
            .expect("runtime ends when the socket task is gone")
            .expect("runtime task")
    }
}

/// Run perl (world-readable, unlike a per-user python) as another uid/gid to talk to the
/// socket; returns (exit status, stdout, stderr).
fn as_other_user(path: &Path, uid: u32, gid: u32, line: &str) -> (i32, String, String) {
    let script = r#"
use IO::Socket::UNIX;
$SIG{PIPE} = "IGNORE";
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or die "connect: $!\n";
print $s $ARGV[1] . "\n";
my $answer = <$s>;
print $answer;
"#;
    let out = std::process::Command::new("/usr/bin/perl")
        .arg("-e")
        .arg(script)
        .arg(path)
        .arg(line)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run perl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test(flavor = "current_thread")]
async fn status_and_commands_round_trip() {
    let served = Served::start(None).await;
    let mode = std::fs::metadata(&served.path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode without a group");

    let answer = served
        .request(ControlCommand::Status)
        .await
        .expect("status");
    assert!(answer.ok);
    assert_eq!(answer.status.as_deref(), Some(&snapshot()));

    let answer = served
        .request(ControlCommand::Pause {
            for_duration: Some(Duration::from_secs(1800)),
        })
        .await
        .expect("pause");
    assert!(answer.ok, "{answer:?}");
    assert_eq!(answer.message, "pause accepted");

    let answer = served
        .request(ControlCommand::Restart)
        .await
        .expect("restart");
    assert!(!answer.ok);
    assert_eq!(answer.message, "restart refused: a quit is in progress");

    let answer = served
        .request(ControlCommand::ClearFault { no_start: true })
        .await
        .expect("clear");
    assert!(answer.ok);

    let seen = served.finish().await;
    let uid = nix::unistd::geteuid().as_raw();
    assert_eq!(
        seen,
        vec![
            format!("Status uid={uid}"),
            format!("Pause {{ for_duration: Some(1800s) }} uid={uid}"),
            format!("Restart uid={uid}"),
            format!("ClearFault {{ no_start: true }} uid={uid}"),
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn bad_requests_get_clear_refusals() {
    let served = Served::start(None).await;
    let cases = [
        (
            r#"{"v":2,"cmd":"status"}"#,
            "unsupported protocol version 2",
        ),
        (r#"{"v":1,"cmd":"reboot"}"#, "unknown command 'reboot'"),
        (
            r#"{"v":1,"cmd":"kill","for_secs":5}"#,
            "only valid with 'pause'",
        ),
        (r#"{"v":1,"cmd":"pause","for_secs":0}"#, "at least 1"),
        ("status please", "malformed request"),
        ("", "empty request"),
    ];
    for (line, expected) in cases {
        let answer = served.raw(&format!("{line}\n")).await;
        let response: ControlResponse =
            serde_json::from_str(answer.trim()).unwrap_or_else(|e| panic!("{answer:?}: {e}"));
        assert!(!response.ok, "{line}");
        assert_eq!(response.v, 1);
        assert!(
            response.message.contains(expected),
            "{line}: {}",
            response.message
        );
    }
    let long = format!("{}\n", "x".repeat(control::MAX_REQUEST_BYTES + 10));
    let answer = served.raw(&long).await;
    assert!(answer.contains("longer than"), "{answer}");
    // None of these reached the runtime.
    assert!(served.finish().await.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn unreachable_and_stale_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qoscntrlr.ctl");
    let err = control::request(&path, &ControlCommand::Status, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("no controller is listening on {}", path.display())
    );

    // A socket left by a dead controller: nobody listens, so it is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    let err = control::request(&path, &ControlCommand::Status, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    let live = control::bind(&path, None)
        .await
        .expect("stale socket replaced");

    // A live one is not.
    let err = control::bind(&path, None).await.unwrap_err();
    assert!(matches!(err, control::ControlError::InUse { .. }), "{err}");
    drop(live);

    // Nor is a file that is not a socket.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let err = control::bind(&file, None).await.unwrap_err();
    assert!(
        matches!(err, control::ControlError::NotASocket { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    let err = control::bind(&dir.path().join("g.ctl"), Some("no-such-group-qos"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "QOS_CONTROL_GROUP=no-such-group-qos: no such group"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn silent_client_does_not_block_others() {
    let served = Served::start(None).await;
    // Connects and says nothing: must not hold up the next caller.
    let silent = std::os::unix::net::UnixStream::connect(&served.path).unwrap();
    let answer = served
        .request(ControlCommand::Status)
        .await
        .expect("status");
    assert!(answer.ok);
    drop(silent);
    served.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn other_users_are_refused_and_reported() {
    if !running_as_root() {
        skip::skip(
            "other_users_are_refused_and_reported",
            "needs root to run a client as another uid",
        );
        return;
    }
    let served = Served::start(None).await;
    let path = served.path.clone();
    let line = r#"{"v":1,"cmd":"kill"}"#;

    // Mode 0600: the kernel refuses the connect itself.
    let (code, _, stderr) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || as_other_user(&path, NOBODY, NOBODY, line)
    })
    .await
    .unwrap();
    assert_ne!(code, 0);
    assert!(stderr.contains("Permission denied"), "{stderr}");

    // Even if the socket is opened up, the peer check refuses and reports.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || as_other_user(&path, NOBODY, NOBODY, line)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let response: ControlResponse = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert!(!response.ok);
    assert_eq!(response.message, "permission denied");

    let seen = served.finish().await;
    assert_eq!(seen, vec![format!("refused uid={NOBODY} gid={NOBODY}")]);
}

#[tokio::test(flavor = "current_thread")]
async fn control_group_members_are_allowed() {
    if !running_as_root() {
        skip::skip(
            "control_group_members_are_allowed",
            "needs root to chown the socket and run clients as another uid",
        );
        return;
    }
    let group = "nogroup";
    let Ok(gid) = control::resolve_group(group) else {
        skip::skip(
            "control_group_members_are_allowed",
            &format!("no group {group} on this system"),
        );
        return;
    };
    let served = Served::start(Some(group)).await;
    let meta = std::fs::metadata(&served.path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);

    let path = served.path.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || as_other_user(&path, NOBODY, gid, r#"{"v":1,"cmd":"diagnose"}"#)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let response: ControlResponse = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert!(response.ok, "{response:?}");

    // Same uid, but neither its gid nor its supplementary groups are the control group.
    // The socket must be reachable for the peer check to be what refuses it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (_, stdout, _) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || as_other_user(&path, NOBODY, 1, r#"{"v":1,"cmd":"diagnose"}"#)
    })
    .await
    .unwrap();
    let response: ControlResponse = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert_eq!(response.message, "permission denied");

    let seen = served.finish().await;
    assert_eq!(
        seen,
        vec![
            format!("Diagnose uid={NOBODY}"),
            format!("refused uid={NOBODY} gid=1")
        ]
    );
}

/// A listener that never accepts, its backlog (one connection) already taken: a
/// blocking connect(2) to it would wait forever.
fn wedged_listener(path: &Path) -> (std::os::fd::OwnedFd, Vec<std::os::unix::net::UnixStream>) {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    socket::listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let mut queued = Vec::new();
    while let Ok(stream) = qoscntrlr::unixsock::connect(path, Duration::from_millis(200)) {
        queued.push(stream);
        assert!(queued.len() < 64, "the backlog never fills");
    }
    (fd, queued)
}

#[test]
fn a_wedged_controller_is_a_timeout_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let limit = Duration::from_millis(500);

    // Its backlog is full: the connect itself would block.
    let path = dir.path().join("full.ctl");
    let (_listener, _queued) = wedged_listener(&path);
    let started = std::time::Instant::now();
    let err = control::request(&path, &ControlCommand::Status, limit).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the controller on {} did not answer within 0.5 s",
            path.display()
        )
    );
    // Generous: the bound is what matters, not its precision on a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(30), "bounded");

    // It takes the connection (the kernel does) but never answers.
    let path = dir.path().join("silent.ctl");
    let _silent = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let started = std::time::Instant::now();
    let err = control::request(&path, &ControlCommand::Status, limit).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30), "bounded");

    // The same for `qoscntrlr send` on the message pipe.
    let path = dir.path().join("full.pipe");
    let (_listener, _queued) = wedged_listener(&path);
    let err = qoscntrlr::pipe::send_line(&path, "OpMsg=x", limit).unwrap_err();
    assert!(
        matches!(err, qoscntrlr::pipe::SendError::TimedOut(_)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_numeric_control_group_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // Root may give the socket any gid, even one without a group entry; anyone else one
    // of their own.
    let gid = if running_as_root() {
        54321
    } else {
        nix::unistd::getegid().as_raw()
    };
    assert_eq!(control::resolve_group(&gid.to_string()).unwrap(), gid);
    let path = dir.path().join("qoscntrlr.ctl");
    let _control = control::bind(&path, Some(&gid.to_string())).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);
    let pipe_path = dir.path().join("qoscntrlr.pipe");
    let _pipe = qoscntrlr::pipe::bind(&pipe_path, Some(&gid.to_string()))
        .await
        .unwrap();
    let meta = std::fs::metadata(&pipe_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), gid);
    // A name that is neither a group nor a number is still refused, clearly.
    let err = control::bind(&dir.path().join("g.ctl"), Some("12ab"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "QOS_CONTROL_GROUP=12ab: no such group");
}
