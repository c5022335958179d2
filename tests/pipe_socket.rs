//! The QOSPipeWatcher socket against real clients: socket file handling, line delivery,
//! bad input, limits and `send_line`.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qoscntrlr::core::Meaning;
use qoscntrlr::pipe::{
    bind, send_line, serve, serve_with, PipeError, PipeEvent, SendError, ServeOptions, MAX_CLIENTS,
    MAX_LINE,
};
use tokio::sync::mpsc;

const FIXUP: &str = r"OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=C:\Program Files\HCL\Domino\Data\ddm.nsf TimeDate=20120508T003826,18-04";

fn run_local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// Next event, failing the test instead of hanging when none comes.
async fn next(rx: &mut mpsc::Receiver<PipeEvent>) -> PipeEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within 10 s")
        .expect("the pipe is serving")
}

/// Sends from a blocking thread, as `qoscntrlr send` does.
async fn send(path: &Path, line: &str) -> Result<(), SendError> {
    let (path, line) = (path.to_path_buf(), line.to_string());
    tokio::task::spawn_blocking(move || send_line(&path, &line, Duration::from_secs(5)))
        .await
        .expect("sender thread")
}

async fn start(dir: &Path, capacity: usize) -> (PathBuf, mpsc::Receiver<PipeEvent>) {
    let path = dir.join("qoscntrlr.pipe");
    let listener = bind(&path, None).await.expect("bind");
    let (tx, rx) = mpsc::channel(capacity);
    tokio::task::spawn_local(serve(listener, tx));
    (path, rx)
}

fn line_text(event: PipeEvent) -> String {
    match event {
        PipeEvent::Line { text, .. } => text,
        other => panic!("expected a line, got {other:?}"),
    }
}

#[test]
fn socket_file_mode_stale_live_and_foreign_files() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qoscntrlr.pipe");

        // A stale socket (its listener is gone) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = bind(&path, None).await.expect("stale socket replaced");
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);

        // A live one is not touched.
        match bind(&path, None).await {
            Err(PipeError::InUse(p)) => assert_eq!(p, path),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(listener);

        // A regular file is refused and left intact.
        let file = dir.path().join("important.txt");
        std::fs::write(&file, "keep me").unwrap();
        match bind(&file, None).await {
            Err(e @ PipeError::NotASocket(_)) => {
                assert!(e.to_string().contains("is not a socket"), "{e}")
            }
            other => panic!("expected NotASocket, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

        // The caller's own group, by name and by number, is accepted.
        let gid = nix::unistd::getegid();
        let by_number = dir.path().join("g.pipe");
        bind(&by_number, Some(&gid.as_raw().to_string()))
            .await
            .expect("numeric group");
        assert!(matches!(
            bind(&dir.path().join("h.pipe"), Some("no-such-group-qoscntrlr")).await,
            Err(PipeError::UnknownGroup(_))
        ));
    });
}

#[test]
fn lines_arrive_exactly_and_send_reports_no_listener() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing.pipe");
        assert!(matches!(
            send(&missing, FIXUP).await,
            Err(SendError::NotListening(_))
        ));
        let stale = dir.path().join("stale.pipe");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        match send(&stale, FIXUP).await {
            Err(e @ SendError::NotListening(_)) => assert_eq!(
                e.to_string(),
                format!("no controller is listening on {}", stale.display())
            ),
            other => panic!("expected NotListening, got {other:?}"),
        }
        assert!(matches!(
            send(&stale, "OpMsg=READY Type=SERVER\nOpMsg=END Type=SERVER").await,
            Err(SendError::MultiLine)
        ));

        let (path, mut rx) = start(dir.path(), 64).await;
        send(&path, FIXUP).await.expect("sent");
        match next(&mut rx).await {
            PipeEvent::Line {
                text,
                message,
                meaning,
                sender_pid,
                ..
            } => {
                // The runtime tells a live server's messages from an ended one's by it.
                assert_eq!(sender_pid, Some(std::process::id() as i32));
                assert_eq!(text, FIXUP);
                assert_eq!(message.log_text(|| "x".into()), FIXUP);
                match meaning {
                    Meaning::AppStart { app } => assert_eq!(
                        app.to_string(),
                        r"FIXUP[C:\Program Files\HCL\Domino\Data\ddm.nsf]"
                    ),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("expected the FIXUP line, got {other:?}"),
        }

        // One client, several messages, CRLF and an unterminated last line.
        let mut client = StdStream::connect(&path).unwrap();
        client
            .write_all(b"OpMsg=START Type=SERVER\r\n\r\nOpMsg=READY Type=SERVER\nOpMsg=PROGRESS Type=COMPACT ObjectValue=a b.nsf")
            .unwrap();
        drop(client);
        assert_eq!(line_text(next(&mut rx).await), "OpMsg=START Type=SERVER");
        assert_eq!(line_text(next(&mut rx).await), "OpMsg=READY Type=SERVER");
        assert_eq!(
            line_text(next(&mut rx).await),
            "OpMsg=PROGRESS Type=COMPACT ObjectValue=a b.nsf"
        );

        // Invalid messages are rejected with the parser's reason, and the sender is told.
        match send(&path, "OpMsg=DANCE Type=SERVER").await {
            Err(SendError::NotAccepted(reason)) => {
                assert!(reason.contains("unknown OpMsg=DANCE"), "{reason}")
            }
            other => panic!("expected NotAccepted, got {other:?}"),
        }
        match next(&mut rx).await {
            PipeEvent::Rejected { reason, .. } => {
                assert!(reason.contains("unknown OpMsg=DANCE"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    });
}

/// xorshift: reproducible noise without another dependency.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn a_megabyte_of_noise_does_not_disturb_other_clients() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut rx) = start(dir.path(), 1024).await;
        let noisy_path = path.clone();
        let noisy = tokio::task::spawn_blocking(move || {
            let mut client = StdStream::connect(&noisy_path).unwrap();
            // The controller may drop the noisy client; that is fine.
            let _ = client.write_all(&noise(1 << 20, 0x9e3779b97f4a7c15));
        });
        send(&path, FIXUP)
            .await
            .expect("a good client is served alongside");
        let mut rejected = 0;
        let mut good = 0;
        loop {
            match next(&mut rx).await {
                PipeEvent::Line { text, .. } if text == FIXUP => {
                    good += 1;
                    if noisy.is_finished() {
                        break;
                    }
                    // Keep talking until the noise has been written entirely.
                    send(&path, FIXUP).await.unwrap();
                }
                PipeEvent::Line { text, .. } => panic!("noise became a message: {text:?}"),
                PipeEvent::Rejected { .. } => rejected += 1,
                other => panic!("{other:?}"),
            }
        }
        noisy.await.unwrap();
        assert!(good >= 1);
        // Rate-limited: a megabyte of noise read in well under a minute yields a handful.
        assert!(rejected <= 60, "{rejected} rejections for one noisy client");
    });
}

#[test]
fn an_over_long_line_is_reported_once_per_client() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut rx) = start(dir.path(), 64).await;
        let mut client = StdStream::connect(&path).unwrap();
        let long = format!("OpMsg=START Type=X ObjectValue={}\n", "v".repeat(MAX_LINE));
        for _ in 0..3 {
            client.write_all(long.as_bytes()).unwrap();
        }
        client.write_all(b"OpMsg=READY Type=SERVER\n").unwrap();
        match next(&mut rx).await {
            PipeEvent::Rejected { reason, .. } => {
                assert!(
                    reason.contains(&format!("longer than {MAX_LINE} bytes")),
                    "{reason}"
                )
            }
            other => panic!("expected one report, got {other:?}"),
        }
        assert_eq!(line_text(next(&mut rx).await), "OpMsg=READY Type=SERVER");
        drop(client);
        // On disconnect, the count of what went unreported.
        match next(&mut rx).await {
            PipeEvent::Rejected { reason, .. } => {
                assert!(reason.starts_with("2 problem(s)"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn invalid_utf8_is_dropped_and_the_client_keeps_going() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut rx) = start(dir.path(), 64).await;
        let mut client = StdStream::connect(&path).unwrap();
        client
            .write_all(b"OpMsg=START Type=\xff\xfe\nOpMsg=END Type=SERVER\n")
            .unwrap();
        match next(&mut rx).await {
            PipeEvent::Rejected { reason, .. } => assert!(reason.contains("UTF-8"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(line_text(next(&mut rx).await), "OpMsg=END Type=SERVER");
    });
}

#[test]
fn a_full_queue_slows_the_sender_and_loses_nothing() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut rx) = start(dir.path(), 2).await;
        // A burst far larger than the queue, from a thread (its writes block when the
        // controller stops reading), and meanwhile a second client.
        let burst_path = path.clone();
        let burst = tokio::task::spawn_blocking(move || {
            let mut client = StdStream::connect(&burst_path).unwrap();
            for i in 0..20_000 {
                writeln!(client, "OpMsg=PROGRESS Type=T ObjectValue={i}").unwrap();
            }
        });
        // Part of the scenario, not a wait for an event: a head start, so the burst has
        // filled the queue when the second client arrives (had it not started yet, the
        // test would still pass, only proving less).
        const BURST_HEAD_START: Duration = Duration::from_millis(50);
        tokio::time::sleep(BURST_HEAD_START).await;
        // `send` waits until its line is taken, which needs room in the queue: it runs
        // beside the reader.
        let other_path = path.clone();
        let other_send =
            tokio::task::spawn_local(
                async move { send(&other_path, "OpMsg=END Type=OTHER").await },
            );
        let mut expected = 0;
        let mut other = false;
        while expected < 20_000 || !other {
            match next(&mut rx).await {
                PipeEvent::Line { text, .. } if text == "OpMsg=END Type=OTHER" => other = true,
                PipeEvent::Line { text, .. } => {
                    assert_eq!(
                        text,
                        format!("OpMsg=PROGRESS Type=T ObjectValue={expected}")
                    );
                    expected += 1;
                }
                event => panic!("{event:?}"),
            }
        }
        burst.await.unwrap();
        other_send
            .await
            .unwrap()
            .expect("the second client's line was accepted");
    });
}

#[test]
fn clients_past_the_limit_are_refused_with_one_report() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut rx) = start(dir.path(), 64).await;
        let mut clients: Vec<StdStream> = (0..MAX_CLIENTS)
            .map(|_| StdStream::connect(&path).unwrap())
            .collect();
        // Each client says something, so all are known to be accepted.
        for (i, c) in clients.iter_mut().enumerate() {
            writeln!(c, "OpMsg=START Type=T ObjectValue={i}").unwrap();
        }
        for _ in 0..MAX_CLIENTS {
            line_text(next(&mut rx).await);
        }
        let extra: Vec<StdStream> = (0..3).map(|_| StdStream::connect(&path).unwrap()).collect();
        match next(&mut rx).await {
            PipeEvent::Rejected { reason, .. } => {
                assert!(reason.contains("too many clients"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        drop(extra);
        // After one leaves, a new client is served again.
        drop(clients.pop());
        // The controller notices the departure asynchronously; until it does, a new
        // client is still refused (silently: same episode), so retry.
        let mut served = None;
        for _ in 0..100 {
            send(&path, "OpMsg=READY Type=SERVER").await.unwrap();
            if let Ok(event) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                served = event;
                break;
            }
        }
        assert_eq!(
            line_text(served.expect("served after a slot freed")),
            "OpMsg=READY Type=SERVER"
        );
        // The two further refusals of the same episode were not reported.
        assert!(rx.try_recv().is_err());
    });
}

/// Idle clients outside the server's tree are closed after the idle timeout, so they
/// cannot hold the pipe's places; a sender refused for capacity is told why.
#[test]
fn idle_clients_are_closed_and_a_refused_send_says_so() {
    run_local(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qoscntrlr.pipe");
        let listener = bind(&path, None).await.expect("bind");
        let (tx, mut rx) = mpsc::channel(64);
        tokio::task::spawn_local(serve_with(
            listener,
            tx,
            ServeOptions {
                idle_timeout: Duration::from_millis(1500),
            },
        ));
        let clients: Vec<StdStream> = (0..MAX_CLIENTS)
            .map(|_| StdStream::connect(&path).unwrap())
            .collect();
        // Full: a sender is refused, and `send` reports it instead of claiming success.
        // No wait needed for the server to accept the idle clients first: they are
        // already queued on the listener (connect returned), and connections are accepted
        // in the order they were queued, so the sender's comes after all of them.
        match send(&path, "OpMsg=READY Type=SERVER").await {
            Err(e @ SendError::NotAccepted(_)) => {
                assert!(e.to_string().contains("too many clients"), "{e}")
            }
            other => panic!("expected NotAccepted, got {other:?}"),
        }
        match next(&mut rx).await {
            PipeEvent::Rejected { reason, .. } => assert!(reason.contains("too many clients")),
            other => panic!("{other:?}"),
        }
        // After the idle timeout the silent clients are gone and a sender gets in.
        let mut accepted = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if send(&path, "OpMsg=READY Type=SERVER").await.is_ok() {
                accepted = true;
                break;
            }
        }
        assert!(accepted, "idle clients were never closed");
        // Polled without blocking: the pipe's tasks run on this same thread.
        let mut open: Vec<StdStream> = clients;
        for client in &open {
            client.set_nonblocking(true).unwrap();
        }
        for _ in 0..200 {
            open.retain_mut(|client| {
                let mut byte = [0u8; 1];
                !matches!(std::io::Read::read(client, &mut byte), Ok(0))
            });
            if open.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let closed = MAX_CLIENTS - open.len();
        assert_eq!(closed, MAX_CLIENTS, "every idle client was closed");
    });
}
