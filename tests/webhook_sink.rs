//! Alert webhooks against a local HTTP sink that accepts, refuses (500) and never
//! answers: the JSON body, the secret header sent but never logged or spooled, the
//! time limit, retries with backoff from the spool, and folding of repeats.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use chrono::Local;
use qoscntrlr::core::AlertKind;
use qoscntrlr::webhook::{Webhook, WebhookAlert, WebhookOptions, WebhookSettings, WebhookUrl};
use tokio::sync::mpsc as tmpsc;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Accept,
    Refuse,
    Silent,
}

/// A sink on a free port; every request (head + body) goes to the channel.
fn sink(mode: Mode) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if data.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&data).into_owned());
            match mode {
                Mode::Accept => {
                    let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
                }
                Mode::Refuse => {
                    let _ = conn.write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                    );
                }
                // Never answers, never closes.
                Mode::Silent => held.push(conn),
            }
        }
    });
    (port, rx)
}

fn settings(port: u16) -> WebhookSettings {
    WebhookSettings {
        url: WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hooks/qos")).unwrap(),
        header: Some(("Authorization".into(), "Bearer s3cr3t-t0ken".into())),
        ca_file: None,
    }
}

fn alert(kind: AlertKind, summary: &str) -> WebhookAlert {
    WebhookAlert {
        kind,
        server: "CN=rc45/O=dev".into(),
        when: Local::now(),
        summary: summary.into(),
        incident: Some("202612020130-3".into()),
    }
}

fn fast() -> WebhookOptions {
    WebhookOptions {
        send_timeout: Duration::from_millis(500),
        first_retry: Duration::from_millis(300),
        max_retry: Duration::from_secs(2),
        fold_window: Duration::from_secs(3600),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn log_until(
    rx: &mut tmpsc::UnboundedReceiver<String>,
    needle: &str,
    lines: &mut Vec<String>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) => {
                let found = line.contains(needle);
                lines.push(line);
                if found {
                    return;
                }
            }
            _ => panic!("no log line containing {needle:?}; got {lines:#?}"),
        }
    }
}

#[test]
fn accepted_post_carries_the_json_and_the_secret_header() {
    let (port, requests) = sink(Mode::Accept);
    let spool = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (log_tx, mut log_rx) = tmpsc::unbounded_channel();
        let hook = Webhook::start_with(settings(port), spool.path().to_path_buf(), log_tx, fast());
        hook.submit(alert(
            AlertKind::Rule {
                rule: "QOS_RULE_LEAK".into(),
                detail: "average 2.1 GB > 2 GB over the last 30 samples".into(),
            },
            "Rule QOS_RULE_LEAK is breached.",
        ));
        let mut lines = Vec::new();
        log_until(&mut log_rx, "Webhook alert sent", &mut lines).await;
        hook.close(Duration::from_secs(2)).await;
        for line in &lines {
            assert!(
                !line.contains("s3cr3t"),
                "the header value was logged: {line}"
            );
        }
    });
    let request = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        request.starts_with("POST /hooks/qos HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("\r\nAuthorization: Bearer s3cr3t-t0ken\r\n"));
    assert!(request.contains("\r\nContent-Type: application/json\r\n"));
    let body: serde_json::Value =
        serde_json::from_str(&request[request.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["event"], "rule");
    assert_eq!(body["rule"], "QOS_RULE_LEAK");
    assert_eq!(body["server"], "CN=rc45/O=dev");
    assert_eq!(body["incident"], "202612020130-3");
    assert!(body["reason"].as_str().unwrap().contains("QOS_RULE_LEAK"));
    assert!(body["time"].as_str().unwrap().contains('T'));
    // Delivered: nothing left in the spool.
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

#[test]
fn refused_post_is_retried_from_the_spool_without_the_secret() {
    let (port, requests) = sink(Mode::Refuse);
    let spool = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (log_tx, mut log_rx) = tmpsc::unbounded_channel();
        let hook = Webhook::start_with(settings(port), spool.path().to_path_buf(), log_tx, fast());
        hook.submit(alert(AlertKind::Crash, "Server crashed."));
        let mut lines = Vec::new();
        log_until(
            &mut log_rx,
            "(attempt 1): refused: HTTP/1.1 500",
            &mut lines,
        )
        .await;
        log_until(&mut log_rx, "(attempt 2)", &mut lines).await;
        // Spooled while undelivered, and the spool holds no secret.
        let files: Vec<_> = std::fs::read_dir(spool.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            text.contains("\"crash\"") && !text.contains("s3cr3t"),
            "{text}"
        );
        hook.close(Duration::from_secs(2)).await;
        assert!(lines.iter().all(|l| !l.contains("s3cr3t")));
    });
    assert!(requests.recv_timeout(Duration::from_secs(5)).is_ok());
    assert!(
        requests.recv_timeout(Duration::from_secs(5)).is_ok(),
        "retried"
    );
}

#[test]
fn a_sink_that_never_answers_is_given_up_on_within_the_limit_and_retried() {
    let (port, requests) = sink(Mode::Silent);
    let spool = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (log_tx, mut log_rx) = tmpsc::unbounded_channel();
        let hook = Webhook::start_with(settings(port), spool.path().to_path_buf(), log_tx, fast());
        let started = std::time::Instant::now();
        hook.submit(alert(
            AlertKind::SmartKill {
                reason: "probe timeout".into(),
            },
            "Killing.",
        ));
        let mut lines = Vec::new();
        log_until(&mut log_rx, "no answer within 0.5 s", &mut lines).await;
        assert!(started.elapsed() < Duration::from_secs(15));
        // The task still takes alerts while an exchange hangs (they are spooled).
        hook.submit(alert(AlertKind::Recovery, "Back."));
        log_until(&mut log_rx, "(attempt 2)", &mut lines).await;
        hook.close(Duration::from_secs(2)).await;
    });
    assert!(requests.recv_timeout(Duration::from_secs(5)).is_ok());
    // Spooled for the next controller: both alerts.
    let count = std::fs::read_dir(spool.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(count, 2);
}

#[test]
fn repeats_of_a_kind_are_folded_into_one_post() {
    let (port, requests) = sink(Mode::Accept);
    let spool = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (log_tx, mut log_rx) = tmpsc::unbounded_channel();
        let options = WebhookOptions {
            fold_window: Duration::from_millis(800),
            ..fast()
        };
        let hook = Webhook::start_with(settings(port), spool.path().to_path_buf(), log_tx, options);
        for n in 1..=3 {
            hook.submit(alert(AlertKind::Crash, &format!("crash {n}")));
        }
        let mut lines = Vec::new();
        log_until(&mut log_rx, "Webhook alert sent", &mut lines).await;
        log_until(&mut log_rx, "Webhook alert sent", &mut lines).await;
        hook.close(Duration::from_secs(2)).await;
    });
    let first = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    let second = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        first.contains("\"count\":1") && first.contains("crash 1"),
        "{first}"
    );
    assert!(
        second.contains("\"count\":2") && second.contains("crash 3"),
        "{second}"
    );
    assert!(
        second.contains("crash 2"),
        "the held one is listed: {second}"
    );
}
