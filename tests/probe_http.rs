//! HTTP and TCP probes against loopback listeners started by each test. No child
//! processes here, so the tests may run in parallel.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use qoscntrlr::config::ProbeTarget;
use qoscntrlr::probe::{probe_once, ProbeOutcome};
use qoscntrlr::process::Reaper;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn run_local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// What the test server saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    requests: Vec<String>,
}

/// Serve every connection on 127.0.0.1 with `response` (None: read the request, then
/// never answer). Returns the port and what was seen.
async fn serve(response: Option<Vec<u8>>) -> (u16, Rc<RefCell<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let seen = Rc::new(RefCell::new(Seen::default()));
    let seen_by_server = seen.clone();
    tokio::task::spawn_local(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            seen_by_server.borrow_mut().connections += 1;
            let seen = seen_by_server.clone();
            let response = response.clone();
            tokio::task::spawn_local(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                seen.borrow_mut()
                    .requests
                    .push(String::from_utf8_lossy(&req).into_owned());
                match response {
                    // A failed write only means the probe hung up early, as it may.
                    Some(bytes) => drop(sock.write_all(&bytes).await),
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    (port, seen)
}

fn http(port: u16, path: &str) -> ProbeTarget {
    ProbeTarget::Http {
        host: "127.0.0.1".into(),
        port,
        path: path.into(),
    }
}

async fn probe(target: &ProbeTarget, limit: Duration) -> ProbeOutcome {
    probe_once(target, limit, &Reaper::new()).await
}

fn reason(outcome: ProbeOutcome) -> String {
    match outcome {
        ProbeOutcome::Failure { reason, .. } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn ok_is_a_success_and_the_request_is_well_formed() {
    run_local(async {
        let (port, seen) = serve(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ))
        .await;
        let outcome = probe(&http(port, "/health?x=1"), LIMIT).await;
        assert!(outcome.is_success(), "{outcome:?}");
        let seen = seen.borrow();
        let req = &seen.requests[0];
        assert!(req.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
        assert!(
            req.contains(&format!(
                "\r\nUser-Agent: qoscntrlr/{}\r\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{req}"
        );
    });
}

#[test]
fn empty_path_asks_for_root() {
    run_local(async {
        let (port, seen) = serve(Some(b"HTTP/1.0 204 No Content\r\n\r\n".to_vec())).await;
        assert!(probe(&http(port, ""), LIMIT).await.is_success());
        assert!(seen.borrow().requests[0].starts_with("GET / HTTP/1.1\r\n"));
    });
}

#[test]
fn redirect_is_a_success_and_is_not_followed() {
    run_local(async {
        let (port, seen) = serve(Some(
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n\r\n".to_vec(),
        ))
        .await;
        assert!(probe(&http(port, "/"), LIMIT).await.is_success());
        assert_eq!(seen.borrow().connections, 1);
    });
}

#[test]
fn server_error_names_the_status() {
    run_local(async {
        let (port, _) = serve(Some(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n".to_vec(),
        ))
        .await;
        assert_eq!(reason(probe(&http(port, "/"), LIMIT).await), "HTTP 503");
        let (port, _) = serve(Some(b"HTTP/1.1 404 Not Found\r\n\r\n".to_vec())).await;
        assert_eq!(reason(probe(&http(port, "/"), LIMIT).await), "HTTP 404");
    });
}

#[test]
fn never_answering_server_times_out_within_the_limit() {
    run_local(async {
        let (port, seen) = serve(None).await;
        let outcome = probe(&http(port, "/"), Duration::from_millis(200)).await;
        assert!(
            outcome.latency() >= Duration::from_millis(200),
            "{outcome:?}"
        );
        assert_eq!(reason(outcome), "timed out after 200ms");
        assert_eq!(seen.borrow().requests.len(), 1, "the request was sent");
    });
}

#[test]
fn closed_port_is_connection_refused_with_the_address() {
    run_local(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert_eq!(
            reason(probe(&http(port, "/"), LIMIT).await),
            format!("connection refused (127.0.0.1:{port})")
        );
        let tcp = ProbeTarget::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert_eq!(
            reason(probe(&tcp, LIMIT).await),
            format!("connection refused (127.0.0.1:{port})")
        );
    });
}

#[test]
fn garbage_is_a_malformed_response_at_once() {
    run_local(async {
        // No blank line ever comes; the probe must not wait for one.
        let (port, _) = serve(Some(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec())).await;
        let outcome = probe(&http(port, "/"), LIMIT).await;
        assert!(outcome.latency() < LIMIT, "{outcome:?}");
        assert_eq!(reason(outcome), "malformed response");
    });
}

#[test]
fn huge_headers_are_cut_at_16_kib() {
    run_local(async {
        let mut resp = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        resp.extend(std::iter::repeat(b'a').take(64 * 1024));
        resp.extend_from_slice(b"\r\n\r\n");
        let (port, _) = serve(Some(resp)).await;
        assert_eq!(
            reason(probe(&http(port, "/"), LIMIT).await),
            "malformed response (headers larger than 16 KiB)"
        );
    });
}

#[test]
fn huge_body_is_not_read() {
    run_local(async {
        let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n".to_vec();
        resp.extend(std::iter::repeat(b'b').take(10 * 1024 * 1024));
        let (port, _) = serve(Some(resp)).await;
        assert!(probe(&http(port, "/"), LIMIT).await.is_success());
    });
}

#[test]
fn tcp_connect_is_a_success() {
    run_local(async {
        let (port, seen) = serve(None).await;
        let tcp = ProbeTarget::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(probe(&tcp, LIMIT).await.is_success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while seen.borrow().connections == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(seen.borrow().connections, 1);
    });
}

#[test]
fn message_probes_are_not_run_here() {
    run_local(async {
        assert_eq!(
            reason(probe(&ProbeTarget::Message, LIMIT).await),
            "probe results come from the server's messages"
        );
    });
}
