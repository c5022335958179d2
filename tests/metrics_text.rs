//! Prometheus text rendering and the `/metrics` HTTP endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use qoscntrlr::core::ServerState;
use qoscntrlr::metrics::{self, MetricsSnapshot, ProbeHistogram, ResourceGauges};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sample() -> MetricsSnapshot {
    let mut s = MetricsSnapshot::new(ServerState::Killing);
    for ms in [3, 4, 7, 120, 120, 900, 20_000] {
        s.probe_latency.observe(Duration::from_millis(ms));
    }
    s.probe_success_total = 6;
    s.probe_error_total = 1;
    s.restarts_total = BTreeMap::from([("crash".into(), 2), ("probe-timeout".into(), 1)]);
    s.kills_total = BTreeMap::from([("probe \"timeout\"".into(), 1)]);
    s.apps_in_list = 2;
    s.resources = Some(ResourceGauges {
        memory_bytes: 1_610_612_736,
        cpu_percent: 35.5,
        open_files: 412,
        threads: 88,
        disk_free_bytes: 53_687_091_200,
    });
    s.last_incident_timestamp_seconds = Some(1_715_156_070);
    s
}

/// Every sample line as (name with labels, value); checks the comment lines' shape.
fn samples(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP qoscntrlr_") || rest.starts_with("TYPE qoscntrlr_"),
                "{line}"
            );
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        assert!(
            out.insert(key.to_string(), value.to_string()).is_none(),
            "duplicate {key}"
        );
    }
    out
}

#[test]
fn renders_every_family() {
    let text = metrics::render(&sample());
    assert!(text.ends_with('\n'));
    let s = samples(&text);
    assert_eq!(s["qoscntrlr_state{state=\"KILLING\"}"], "1");
    for state in ServerState::ALL
        .iter()
        .filter(|&&st| st != ServerState::Killing)
    {
        assert_eq!(s[&format!("qoscntrlr_state{{state=\"{state}\"}}")], "0");
    }
    assert_eq!(s["qoscntrlr_paused"], "0");
    let b = |le: &str| s[&format!("qoscntrlr_probe_latency_seconds_bucket{{le=\"{le}\"}}")].clone();
    assert_eq!(b("0.005"), "2");
    assert_eq!(b("0.01"), "3");
    assert_eq!(b("0.1"), "3");
    assert_eq!(b("0.25"), "5");
    assert_eq!(b("1"), "6");
    assert_eq!(b("10"), "6");
    assert_eq!(b("+Inf"), "7");
    assert_eq!(s["qoscntrlr_probe_latency_seconds_count"], "7");
    let sum: f64 = s["qoscntrlr_probe_latency_seconds_sum"].parse().unwrap();
    assert!((sum - 21.154).abs() < 1e-9, "{sum}");
    assert_eq!(s["qoscntrlr_probe_success_total"], "6");
    assert_eq!(s["qoscntrlr_probe_error_total"], "1");
    assert_eq!(s["qoscntrlr_restarts_total{reason=\"crash\"}"], "2");
    assert_eq!(s["qoscntrlr_restarts_total{reason=\"probe-timeout\"}"], "1");
    assert_eq!(
        s["qoscntrlr_kills_total{reason=\"probe \\\"timeout\\\"\"}"],
        "1"
    );
    assert_eq!(s["qoscntrlr_apps_in_list"], "2");
    assert_eq!(s["qoscntrlr_memory_bytes"], "1610612736");
    assert_eq!(s["qoscntrlr_cpu_percent"], "35.5");
    assert_eq!(s["qoscntrlr_open_files"], "412");
    assert_eq!(s["qoscntrlr_threads"], "88");
    assert_eq!(s["qoscntrlr_disk_free_bytes"], "53687091200");
    assert_eq!(s["qoscntrlr_last_incident_timestamp_seconds"], "1715156070");
    assert!(text.contains("# TYPE qoscntrlr_probe_latency_seconds histogram\n"));
    assert!(text.contains("# TYPE qoscntrlr_restarts_total counter\n"));
    assert!(text.contains("# TYPE qoscntrlr_state gauge\n"));
}

#[test]
fn unsampled_values_are_absent_not_zero() {
    let text = metrics::render(&MetricsSnapshot::new(ServerState::Starting));
    let s = samples(&text);
    assert!(!s.contains_key("qoscntrlr_memory_bytes"));
    assert!(!s.contains_key("qoscntrlr_last_incident_timestamp_seconds"));
    assert_eq!(s["qoscntrlr_probe_latency_seconds_count"], "0");
    assert_eq!(ProbeHistogram::default().count(), 0);
}

async fn get(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    answer
}

#[tokio::test(flavor = "current_thread")]
async fn serves_the_latest_snapshot_over_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(MetricsSnapshot::new(ServerState::Starting));
    let server = tokio::spawn(metrics::serve(listener, rx));

    let answer = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(answer.contains("qoscntrlr_state{state=\"STARTING\"} 1\n"));

    tx.send(sample()).unwrap();
    let answer = get(addr, "GET /metrics?x=1 HTTP/1.1\r\n\r\n").await;
    assert!(
        answer.contains("qoscntrlr_state{state=\"KILLING\"} 1\n"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body, metrics::render(&sample()));

    assert!(get(addr, "GET / HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 404"));
    assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n")
        .await
        .starts_with("HTTP/1.1 405"));

    // The runtime updates the value in place without notifying (so the server is not
    // woken per loop turn): a scrape still reads the current value.
    tx.send_if_modified(|m| {
        m.apps_in_list = 7;
        false
    });
    let answer = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(answer.contains("\nqoscntrlr_apps_in_list 7\n"), "{answer}");

    // The server ends with the runtime's sender.
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns when the sender is gone")
        .unwrap();
}

/// Read what the server answers (until it closes), with a generous deadline.
async fn answer_of(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn the_endpoint_is_bounded_like_the_others() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(MetricsSnapshot::new(ServerState::Ready));
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel();
    let limits = qoscntrlr::httphead::Limits {
        io_timeout: Duration::from_millis(400),
        max_connections: 3,
    };
    tokio::spawn(metrics::serve_with(listener, rx, limits, Some(log_tx)));

    // An oversized head: refused with 431, not read on and on.
    let mut big = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = b"GET /metrics HTTP/1.1\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 9 * 1024));
    let _ = big.write_all(&request).await;
    let answer = answer_of(&mut big).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");

    // A slowloris client: one byte at a time, never finishing. One deadline for the whole
    // head, so it is cut off (408) however steadily it trickles.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let trickle = async {
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: "
            .iter()
            .cycle()
            .take(10_000)
        {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), trickle)
        .await
        .expect("the server cut the trickling client off");
    let answer = answer_of(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(60));

    // Many idle connections: more than the limit. They are timed out in turn, a real
    // scrape queued behind them is answered, and the limit is noted on the log once.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let scrape = tokio::spawn(get(addr, "GET /metrics HTTP/1.1\r\n\r\n"));
    for stream in &mut idle {
        let answer = answer_of(stream).await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }
    let answer = tokio::time::timeout(Duration::from_secs(30), scrape)
        .await
        .expect("the scrape is answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    let note = log_rx.try_recv().expect("the full endpoint was noted");
    assert_eq!(
        note,
        format!(
            "Metrics endpoint http://{addr}/metrics: 3 connections are open at once (the limit); new connections wait until one is answered or times out (0.4 s)"
        )
    );
    assert!(log_rx.try_recv().is_err(), "noted once");
}
