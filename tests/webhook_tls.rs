//! Alert webhooks over https against a real local TLS sink (rustls server, certificates
//! made by `openssl` in the test: a private CA and a server certificate it signed for
//! 127.0.0.1). Untrusted, the POST fails with the TLS reason, is logged and stays spooled;
//! trusted through `QOS_ALERT_WEBHOOK_CA` it is delivered with its JSON body and secret
//! header; trusted through the system store (`SSL_CERT_FILE`) it is delivered as well.
//! `check-config` refuses a CA file without a certificate.

mod skip;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use chrono::Local;
use qoscntrlr::core::AlertKind;
use qoscntrlr::webhook::{Webhook, WebhookAlert, WebhookOptions, WebhookSettings, WebhookUrl};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc as tmpsc;

/// `openssl` with `args` in `dir`; false when it is not installed.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("openssl: {e}"),
    }
}

/// A private CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed
/// (`server.pem`, `server.key`); `None` without openssl.
fn certificates(dir: &Path) -> Option<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=qos test CA",
    ]);
    if !openssl(dir, &ca) {
        return None;
    }
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    Some(())
}

/// A TLS sink on a free port answering 204; every request (head + body) to the channel.
fn tls_sink(dir: &Path) -> (u16, mpsc::Receiver<String>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            // An untrusting client aborts the handshake: the read fails, nothing is sent.
            loop {
                let n = tls.read(&mut buf).unwrap_or(0);
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
            if data.is_empty() {
                continue;
            }
            let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let _ = tx.send(String::from_utf8_lossy(&data).into_owned());
        }
    });
    (port, rx)
}

fn settings(port: u16, ca_file: Option<PathBuf>) -> WebhookSettings {
    WebhookSettings {
        url: WebhookUrl::parse(&format!("https://127.0.0.1:{port}/hooks/qos")).unwrap(),
        header: Some(("Authorization".into(), "Bearer s3cr3t-t0ken".into())),
        ca_file,
    }
}

fn alert() -> WebhookAlert {
    WebhookAlert {
        kind: AlertKind::Rule {
            rule: "QOS_RULE_LEAK".into(),
            detail: "average 2.1 GB > 2 GB over the last 30 samples".into(),
        },
        server: "CN=rc45/O=dev".into(),
        when: Local::now(),
        summary: "Rule QOS_RULE_LEAK is breached.".into(),
        incident: None,
    }
}

fn fast() -> WebhookOptions {
    WebhookOptions {
        send_timeout: Duration::from_secs(10),
        first_retry: Duration::from_secs(60),
        max_retry: Duration::from_secs(60),
        fold_window: Duration::from_secs(3600),
    }
}

/// Post one alert with `settings`; the log lines up to the first one containing `until`.
fn post_once(settings: WebhookSettings, spool: &Path, until: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (log_tx, mut log_rx) = tmpsc::unbounded_channel();
        let hook = Webhook::start_with(settings, spool.to_path_buf(), log_tx, fast());
        hook.submit(alert());
        let mut lines = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, log_rx.recv()).await {
                Ok(Some(line)) => {
                    let found = line.contains(until);
                    lines.push(line);
                    if found {
                        break;
                    }
                }
                _ => panic!("no log line containing {until:?}; got {lines:#?}"),
            }
        }
        hook.close(Duration::from_secs(2)).await;
        for line in &lines {
            assert!(
                !line.contains("s3cr3t"),
                "the header value was logged: {line}"
            );
        }
        lines
    })
}

fn spooled(spool: &Path) -> usize {
    std::fs::read_dir(spool).map_or(0, |d| d.count())
}

/// One test, run in order: the last step sets `SSL_CERT_FILE` for this process, which
/// must not leak into the untrusted step.
#[test]
fn https_sink_trusted_by_the_ca_key_or_the_system_store_and_refused_otherwise() {
    let certs = tempfile::tempdir().unwrap();
    if certificates(certs.path()).is_none() {
        skip::skip(
            "https_sink_trusted_by_the_ca_key_or_the_system_store_and_refused_otherwise",
            "openssl is not installed (needed to make the test's certificates)",
        );
        return;
    }
    std::env::remove_var("SSL_CERT_FILE");
    std::env::remove_var("SSL_CERT_DIR");
    let (port, requests) = tls_sink(certs.path());
    let ca = certs.path().join("ca.pem");

    // Not trusted: the handshake fails, the reason is logged, the alert stays spooled.
    let spool = tempfile::tempdir().unwrap();
    let lines = post_once(settings(port, None), spool.path(), "failed (attempt 1)");
    let failed = lines.last().unwrap();
    assert!(
        failed.contains(&format!("to https://127.0.0.1:{port}/hooks/qos failed (attempt 1): TLS with 127.0.0.1: invalid peer certificate")),
        "{failed}"
    );
    assert_eq!(spooled(spool.path()), 1, "kept for a retry");
    assert!(requests.recv_timeout(Duration::from_millis(500)).is_err());

    // Trusted through QOS_ALERT_WEBHOOK_CA: delivered over TLS, header and body intact.
    let spool = tempfile::tempdir().unwrap();
    let lines = post_once(
        settings(port, Some(ca.clone())),
        spool.path(),
        "Webhook alert sent",
    );
    assert!(
        lines.last().unwrap().contains(&format!(
            "(HTTP 204 from https://127.0.0.1:{port}/hooks/qos)"
        )),
        "{lines:?}"
    );
    let request = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        request.starts_with("POST /hooks/qos HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("\r\nAuthorization: Bearer s3cr3t-t0ken\r\n"));
    let body: serde_json::Value =
        serde_json::from_str(&request[request.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["rule"].as_str()),
        (Some("rule"), Some("QOS_RULE_LEAK"))
    );
    assert_eq!(spooled(spool.path()), 0);

    // A CA file without a certificate: the POST fails naming the key and the file.
    let empty = certs.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let spool = tempfile::tempdir().unwrap();
    let lines = post_once(
        settings(port, Some(empty.clone())),
        spool.path(),
        "failed (attempt 1)",
    );
    assert!(
        lines.last().unwrap().contains(&format!(
            "QOS_ALERT_WEBHOOK_CA {}: no PEM certificate",
            empty.display()
        )),
        "{lines:?}"
    );

    // Trusted through the system store: SSL_CERT_FILE names the CA bundle to use.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let spool = tempfile::tempdir().unwrap();
    post_once(settings(port, None), spool.path(), "Webhook alert sent");
    assert!(requests.recv_timeout(Duration::from_secs(5)).is_ok());
    std::env::remove_var("SSL_CERT_FILE");
}

#[test]
fn check_config_refuses_a_ca_file_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "-----BEGIN NOTHING-----\n").unwrap();
    let ini = dir.path().join("dcontroller.ini");
    std::fs::write(
        &ini,
        format!(
            "SERVER_COMMAND=qos-demo-server\nDATA_DIRECTORY={}\nQOS_DISABLE_PROBING=1\nQOS_ALERT_WEBHOOK=https://127.0.0.1:9/hook\nQOS_ALERT_WEBHOOK_CA=ca.pem\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qoscntrlr"))
        .args(["check-config", "-c"])
        .arg(&ini)
        .env_remove("QOSCNTRLR_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:5: QOS_ALERT_WEBHOOK_CA: {}: a PEM section without its end line (-----END NOTHING-----)",
            ini.display(),
            dir.path().join("ca.pem").display()
        )),
        "{stderr}"
    );
}
