//! Mail alerts against a real SMTP server (aiosmtpd, tests/smtp/sink.py) and against one
//! that accepts connections and never answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use chrono::{Local, TimeZone};
use common::free_port;
use common::smtp::{smtp_available, Sink};
use qoscntrlr::config::MailTls;
use qoscntrlr::core::AlertKind;
use qoscntrlr::mail::{self, Alert, MailSettings, Mailer, MailerOptions};
use serde_json::Value;
use tokio::sync::mpsc;

/// Wait (without blocking the runtime the mailer runs on) for `count` messages.
async fn received(sink: &Sink, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let got = sink.messages();
        if got.len() >= count {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {count} message(s), got {:?}", sink.messages());
}

fn settings(port: u16) -> MailSettings {
    MailSettings {
        to: vec![
            "ops@example.com".parse().unwrap(),
            "Oncall <oncall@example.com>".parse().unwrap(),
        ],
        from: "qoscntrlr@example.com".parse().unwrap(),
        host: "127.0.0.1".to_string(),
        port,
        tls: MailTls::None,
        user: None,
        password_file: None,
    }
}

fn fast() -> MailerOptions {
    MailerOptions {
        send_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        first_retry: Duration::from_millis(300),
        max_retry: Duration::from_secs(1),
        fold_window: Duration::from_secs(60),
        ..MailerOptions::default()
    }
}

fn crash(minute: u32, diagnostics: Option<PathBuf>, attach: bool) -> Alert {
    Alert {
        kind: AlertKind::Crash,
        server: "CN=rc45/O=dev".to_string(),
        when: Local.with_ymd_and_hms(2024, 5, 8, 3, minute, 0).single().unwrap(),
        summary: "Server CN=rc45/O=dev has crashed.".to_string(),
        log_lines: vec![
            "2024/05/08 03:12:00 QoS Controller: OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=20240508T031200,00+02".to_string(),
            "2024/05/08 03:12:00 QoS Controller: Server CN=rc45/O=dev has crashed.".to_string(),
        ],
        diagnostics,
        console_tail: vec!["PANIC: out of luck".to_string()],
        attach_diagnostics: attach,
    }
}

async fn next_log(log: &mut mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), log.recv())
            .await
            .unwrap_or_else(|_| panic!("no log line containing {needle:?}"))
            .expect("mailer alive");
        if line.contains(needle) {
            return line;
        }
    }
}

fn spooled(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn crash_mail_names_server_event_and_diagnostics_and_attaches_with_nokill() {
    if !smtp_available() {
        return;
    }
    let sink = Sink::start(free_port());
    let data = tempfile::tempdir().unwrap();
    let diag = data.path().join("nsd_20240508_031201.log");
    std::fs::write(&diag, "thread 1: futex_wait\nthread 2: poll\n").unwrap();
    let (log_tx, mut log) = mpsc::unbounded_channel();
    let spool = mail::spool_dir(data.path());
    let mailer = Mailer::start_with(settings(sink.port), spool.clone(), log_tx, fast());

    mailer.submit(crash(12, Some(diag.clone()), false));
    let got = received(&sink, 1).await;
    let m = &got[0];
    assert_eq!(m["subject"], "[qoscntrlr] CN=rc45/O=dev: crashed");
    assert_eq!(m["mail_from"], "qoscntrlr@example.com");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    let text = m["text"].as_str().unwrap();
    for needle in [
        "Server CN=rc45/O=dev has crashed.",
        "Event:       crashed",
        "When:        2024-05-08 03:12:00",
        &format!("Diagnostics: {}", diag.display()),
        "OpMsg=CRASH Type=QOS",
        "PANIC: out of luck",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert_eq!(m["attachments"], serde_json::json!([]));
    assert!(next_log(&mut log, "Mail sent")
        .await
        .contains("[qoscntrlr] CN=rc45/O=dev: crashed"));

    // QOS_NOKILL=1: the diagnostics file travels with the mail.
    let mut smart = crash(13, Some(diag.clone()), true);
    smart.kind = AlertKind::SmartKill {
        reason: "probe timeout".to_string(),
    };
    mailer.submit(smart);
    let got = received(&sink, 2).await;
    assert_eq!(
        got[1]["subject"],
        "[qoscntrlr] CN=rc45/O=dev: smart kill (probe timeout)"
    );
    assert_eq!(
        got[1]["attachments"],
        serde_json::json!([{"filename": "nsd_20240508_031201.log", "content": "thread 1: futex_wait\nthread 2: poll\n"}])
    );
    assert!(got[1]["text"].as_str().unwrap().contains("(attached)"));
    next_log(&mut log, "Mail sent").await;
    assert!(
        spooled(&spool).is_empty(),
        "delivered mail leaves the spool"
    );
    mailer.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn hanging_smtp_server_delays_nothing_and_mail_survives_a_restart() {
    if !smtp_available() {
        return;
    }
    // Accepts TCP connections and never says a word.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = hang.accept().await {
            open.push(stream);
        }
    });

    let data = tempfile::tempdir().unwrap();
    let spool = mail::spool_dir(data.path());
    let (log_tx, mut log) = mpsc::unbounded_channel();
    let options = MailerOptions {
        first_retry: Duration::from_secs(600),
        max_retry: Duration::from_secs(900),
        ..fast()
    };
    let mailer = Mailer::start_with(settings(hang_port), spool.clone(), log_tx, options);
    mailer.submit(crash(12, None, false));
    // submit() is synchronous and only queues: reaching this line is the proof.
    let line = next_log(&mut log, "failed").await;
    assert!(
        line.contains("no answer from the SMTP server within 1 s"),
        "{line}"
    );
    assert!(line.contains("retrying in 10m"), "{line}");

    let files = spooled(&spool);
    assert_eq!(files.len(), 1, "undelivered mail is spooled");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(stored["subject"], "[qoscntrlr] CN=rc45/O=dev: crashed");
    assert_eq!(stored["attempts"], 1);
    mailer.close(Duration::from_secs(5)).await;
    held.abort();

    // The next controller finds the spool and delivers it to a working server.
    let sink = Sink::start(free_port());
    let (log_tx, mut log) = mpsc::unbounded_channel();
    let mailer = Mailer::start_with(settings(sink.port), spool.clone(), log_tx, fast());
    next_log(&mut log, "from an earlier run").await;
    let got = received(&sink, 1).await;
    assert_eq!(got[0]["subject"], "[qoscntrlr] CN=rc45/O=dev: crashed");
    next_log(&mut log, "Mail sent").await;
    assert!(spooled(&spool).is_empty());
    mailer.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn failed_send_is_retried_with_backoff_until_the_server_is_back() {
    if !smtp_available() {
        return;
    }
    let port = free_port(); // nothing listens yet: connection refused
    let data = tempfile::tempdir().unwrap();
    let spool = mail::spool_dir(data.path());
    let (log_tx, mut log) = mpsc::unbounded_channel();
    let mailer = Mailer::start_with(settings(port), spool.clone(), log_tx, fast());
    let mut recovered = crash(20, None, false);
    recovered.kind = AlertKind::Recovery;
    mailer.submit(recovered);
    let first = next_log(&mut log, "failed (attempt 1)").await;
    assert!(first.contains("Connection refused"), "{first}");
    next_log(&mut log, "failed (attempt 2)").await;

    let sink = Sink::start(port);
    let got = received(&sink, 1).await;
    assert_eq!(got[0]["subject"], "[qoscntrlr] CN=rc45/O=dev: recovered");
    next_log(&mut log, "Mail sent").await;
    assert!(spooled(&spool).is_empty());
    mailer.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn repeats_within_the_window_fold_into_one_mail_with_a_count() {
    if !smtp_available() {
        return;
    }
    let sink = Sink::start(free_port());
    let data = tempfile::tempdir().unwrap();
    let (log_tx, _log) = mpsc::unbounded_channel();
    let options = MailerOptions {
        fold_window: Duration::from_millis(800),
        ..fast()
    };
    let mailer = Mailer::start_with(
        settings(sink.port),
        mail::spool_dir(data.path()),
        log_tx,
        options,
    );

    mailer.submit(crash(12, None, false));
    let got = received(&sink, 1).await;
    assert_eq!(got[0]["subject"], "[qoscntrlr] CN=rc45/O=dev: crashed");
    for minute in [14, 15, 17] {
        mailer.submit(crash(minute, None, false));
    }
    // Another kind is not folded with the crashes.
    let mut warn = crash(16, None, false);
    warn.kind = AlertKind::ResourceWarning {
        resource: "memory".to_string(),
    };
    mailer.submit(warn);

    let got = received(&sink, 3).await;
    // The warning goes at once and the folded crashes when the window closes; on a
    // loaded machine the window can close first, so the order of the two is not tested.
    let subject = |m: &Value| m["subject"].as_str().unwrap_or_default().to_string();
    let warnings: Vec<_> = got[1..]
        .iter()
        .filter(|m| subject(m).contains("resource warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{got:?}");
    assert_eq!(
        subject(warnings[0]),
        "[qoscntrlr] CN=rc45/O=dev: resource warning (memory)"
    );
    let folded: Vec<_> = got[1..]
        .iter()
        .filter(|m| subject(m).ends_with(": crashed"))
        .collect();
    assert_eq!(folded.len(), 1, "{got:?}");
    assert_eq!(subject(folded[0]), "[qoscntrlr] CN=rc45/O=dev: crashed");
    let text = folded[0]["text"].as_str().unwrap();
    assert!(text.starts_with("3 crashes since 03:14\n"), "{text}");
    assert!(text.contains("2024-05-08 03:17:00"), "{text}");
    // Nothing else is pending: the window closes quietly. A wait for something that must
    // NOT happen (a fourth mail), so no polling can replace it: 1.2 s outlasts the
    // 800 ms window the folded mail opened, by when an empty window would have sent.
    const QUIET_WINDOW: Duration = Duration::from_millis(1200);
    tokio::time::sleep(QUIET_WINDOW).await;
    assert_eq!(sink.messages().len(), 3);
    mailer.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn held_repeats_are_spooled_on_close() {
    // No SMTP server needed: the first send fails fast (connection refused).
    let data = tempfile::tempdir().unwrap();
    let spool = mail::spool_dir(data.path());
    let (log_tx, mut log) = mpsc::unbounded_channel();
    let options = MailerOptions {
        first_retry: Duration::from_secs(600),
        ..fast()
    };
    let mailer = Mailer::start_with(settings(free_port()), spool.clone(), log_tx, options);
    mailer.submit(crash(12, None, false));
    next_log(&mut log, "failed").await;
    mailer.submit(crash(13, None, false));
    mailer.submit(crash(14, None, false));
    mailer.close(Duration::from_secs(5)).await;
    let mut bodies: Vec<String> = spooled(&spool)
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            v["body"].as_str().unwrap().to_string()
        })
        .collect();
    bodies.sort();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(
        bodies[0].starts_with("2 crashes since 03:13\n"),
        "{}",
        bodies[0]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn new_settings_apply_to_waiting_mail_at_once() {
    if !smtp_available() {
        return;
    }
    let dead = free_port(); // nothing listens: connection refused
    let data = tempfile::tempdir().unwrap();
    let spool = mail::spool_dir(data.path());
    let (log_tx, mut log) = mpsc::unbounded_channel();
    let slow_retry = MailerOptions {
        first_retry: Duration::from_secs(600),
        max_retry: Duration::from_secs(600),
        ..fast()
    };
    let mailer = Mailer::start_with(settings(dead), spool.clone(), log_tx, slow_retry);
    mailer.submit(crash(30, None, false));
    let failed = next_log(&mut log, "failed (attempt 1)").await;
    assert!(failed.contains(&format!("127.0.0.1:{dead}")), "{failed}");

    // The operator fixes the server and the recipients; the retry 10 minutes away is
    // not waited for.
    let port = free_port();
    let sink = Sink::start(port);
    let mut fixed = settings(port);
    fixed.to = vec!["pager@example.com".parse().unwrap()];
    mailer.reconfigure(fixed);
    let changed = next_log(&mut log, "Mail settings changed").await;
    assert!(
        changed.contains(&format!("to pager@example.com via 127.0.0.1:{port}")),
        "{changed}"
    );
    let got = received(&sink, 1).await;
    assert_eq!(got[0]["subject"], "[qoscntrlr] CN=rc45/O=dev: crashed");
    assert_eq!(got[0]["rcpt_tos"], serde_json::json!(["pager@example.com"]));
    let sent = next_log(&mut log, "Mail sent").await;
    assert!(sent.ends_with("(to pager@example.com)"), "{sent}");
    assert!(spooled(&spool).is_empty());
    mailer.close(Duration::from_secs(5)).await;
}
