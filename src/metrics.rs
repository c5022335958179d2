//! Prometheus metrics (`QOS_METRICS_LISTEN`, off by default): the text exposition format
//! 0.0.4 rendered from a [`MetricsSnapshot`] the runtime keeps current, and a minimal
//! HTTP server answering `GET /metrics`, bounded like the other listeners ([`LIMITS`]: the
//! request head read through [`crate::httphead`], the connections capped by its `Gate`).
//! Rendering is pure; the server only reads the
//! latest snapshot from a `watch` channel, so a slow scraper never touches the runtime,
//! and the runtime's updates (after every loop turn) never wake the server.
//!
//! Metrics: `qoscntrlr_state{state}` (1 for the current state, 0 for the others),
//! `qoscntrlr_paused`, `qoscntrlr_probe_latency_seconds` (histogram, 5 ms … 10 s),
//! `qoscntrlr_probe_success_total`, `qoscntrlr_probe_error_total`,
//! `qoscntrlr_restarts_total{reason}`, `qoscntrlr_kills_total{reason}`,
//! `qoscntrlr_apps_in_list`, `qoscntrlr_memory_bytes`, `qoscntrlr_cpu_percent`,
//! `qoscntrlr_open_files`, `qoscntrlr_threads`, `qoscntrlr_disk_free_bytes` (only once
//! sampled), `qoscntrlr_last_incident_timestamp_seconds` (only after an incident).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::core::ServerState;
use crate::httphead::{Gate, Head, Limits};

/// Upper bounds of the probe latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Cumulative probe latency histogram.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeHistogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS`] (not cumulative).
    bucket_counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl ProbeHistogram {
    pub fn observe(&mut self, latency: Duration) {
        let secs = latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&bound| secs <= bound) {
            self.bucket_counts[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += secs;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// `(le, cumulative count)` per bucket, without `+Inf`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut running = 0;
        LATENCY_BUCKETS
            .iter()
            .zip(self.bucket_counts)
            .map(|(&bound, n)| {
                running += n;
                (bound, running)
            })
            .collect()
    }
}

/// The last resource sample of the server's process tree.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceGauges {
    pub memory_bytes: u64,
    pub cpu_percent: f64,
    pub open_files: u64,
    pub threads: u64,
    pub disk_free_bytes: u64,
}

/// Everything `/metrics` shows. The runtime updates it and sends it on a `watch`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricsSnapshot {
    pub state: ServerState,
    pub paused: bool,
    pub probe_latency: ProbeHistogram,
    pub probe_success_total: u64,
    pub probe_error_total: u64,
    /// Reason (e.g. `probe-timeout`, `crash`, `operator`) → count.
    pub restarts_total: BTreeMap<String, u64>,
    pub kills_total: BTreeMap<String, u64>,
    pub apps_in_list: u64,
    pub resources: Option<ResourceGauges>,
    /// Unix time of the last incident's detection.
    pub last_incident_timestamp_seconds: Option<i64>,
}

impl MetricsSnapshot {
    pub fn new(state: ServerState) -> MetricsSnapshot {
        MetricsSnapshot {
            state,
            paused: false,
            probe_latency: ProbeHistogram::default(),
            probe_success_total: 0,
            probe_error_total: 0,
            restarts_total: BTreeMap::new(),
            kills_total: BTreeMap::new(),
            apps_in_list: 0,
            resources: None,
            last_incident_timestamp_seconds: None,
        }
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Go-style float formatting as Prometheus prints it (`0.005`, `1`, `+Inf`).
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.is_nan() {
        "NaN".to_string()
    } else {
        format!("{value}")
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text (format 0.0.4).
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let mut out = String::new();

    header(
        &mut out,
        "qoscntrlr_state",
        "gauge",
        "1 for the server's current state.",
    );
    for state in ServerState::ALL {
        let value = u8::from(state == snapshot.state);
        let _ = writeln!(
            out,
            "qoscntrlr_state{{state=\"{}\"}} {value}",
            state.as_str()
        );
    }
    header(
        &mut out,
        "qoscntrlr_paused",
        "gauge",
        "1 while kills and restarts are paused by an operator.",
    );
    let _ = writeln!(out, "qoscntrlr_paused {}", u8::from(snapshot.paused));

    let name = "qoscntrlr_probe_latency_seconds";
    header(&mut out, name, "histogram", "Latency of probe attempts.");
    let h = &snapshot.probe_latency;
    for (bound, count) in h.cumulative() {
        let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", number(bound));
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", number(h.sum_seconds));
    let _ = writeln!(out, "{name}_count {}", h.count);

    header(
        &mut out,
        "qoscntrlr_probe_success_total",
        "counter",
        "Successful probes.",
    );
    let _ = writeln!(
        out,
        "qoscntrlr_probe_success_total {}",
        snapshot.probe_success_total
    );
    header(
        &mut out,
        "qoscntrlr_probe_error_total",
        "counter",
        "Failed probes.",
    );
    let _ = writeln!(
        out,
        "qoscntrlr_probe_error_total {}",
        snapshot.probe_error_total
    );

    for (name, help, counts) in [
        (
            "qoscntrlr_restarts_total",
            "Server restarts by reason.",
            &snapshot.restarts_total,
        ),
        (
            "qoscntrlr_kills_total",
            "Server kills by reason.",
            &snapshot.kills_total,
        ),
    ] {
        header(&mut out, name, "counter", help);
        for (reason, count) in counts {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {count}", escape_label(reason));
        }
    }

    header(
        &mut out,
        "qoscntrlr_apps_in_list",
        "gauge",
        "Long-running applications in progress.",
    );
    let _ = writeln!(out, "qoscntrlr_apps_in_list {}", snapshot.apps_in_list);

    if let Some(r) = &snapshot.resources {
        for (name, help, value) in [
            (
                "qoscntrlr_memory_bytes",
                "Memory of the server's process tree.",
                number(r.memory_bytes as f64),
            ),
            (
                "qoscntrlr_cpu_percent",
                "CPU of the server's process tree, percent of one core.",
                number(r.cpu_percent),
            ),
            (
                "qoscntrlr_open_files",
                "Open descriptors of the server's process tree.",
                r.open_files.to_string(),
            ),
            (
                "qoscntrlr_threads",
                "Threads of the server's process tree.",
                r.threads.to_string(),
            ),
            (
                "qoscntrlr_disk_free_bytes",
                "Free space on the data directory's filesystem.",
                r.disk_free_bytes.to_string(),
            ),
        ] {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }

    if let Some(ts) = snapshot.last_incident_timestamp_seconds {
        header(
            &mut out,
            "qoscntrlr_last_incident_timestamp_seconds",
            "gauge",
            "Unix time of the last incident.",
        );
        let _ = writeln!(out, "qoscntrlr_last_incident_timestamp_seconds {ts}");
    }
    out
}

/// The metrics listener's bounds: a scraper has 5 s to send its request head (and to
/// take the answer); at most 32 connections at once, more wait in the backlog.
pub const LIMITS: Limits = Limits {
    io_timeout: Duration::from_secs(5),
    max_connections: 32,
};

/// Answer `GET /metrics` on `listener` until the snapshot sender is dropped.
///
/// The runtime updates the value in place without notifying receivers
/// (`send_if_modified` returning false), so this task sleeps until a scraper connects or
/// the sender goes away; each connection reads the value current at that moment.
pub async fn serve(listener: TcpListener, snapshots: watch::Receiver<MetricsSnapshot>) {
    serve_with(listener, snapshots, LIMITS, None).await
}

/// [`serve`] with its bounds, noting on `log` (when given) that the connection limit is
/// reached.
pub async fn serve_with(
    listener: TcpListener,
    snapshots: watch::Receiver<MetricsSnapshot>,
    limits: Limits,
    log: Option<mpsc::UnboundedSender<String>>,
) {
    let what = match listener.local_addr() {
        Ok(addr) => format!("Metrics endpoint http://{addr}/metrics"),
        Err(_) => "Metrics endpoint".to_string(),
    };
    let gate = Gate::new(what, limits, log);
    // Only watched for the sender going away (a notifying `send` merely loops).
    let mut updates = snapshots.clone();
    loop {
        let accepted = tokio::select! {
            accepted = async {
                let permit = gate.admit().await;
                (permit, listener.accept().await)
            } => accepted,
            changed = updates.changed() => match changed {
                Ok(()) => continue,
                // The runtime dropped the sender: it is shutting down.
                Err(_) => return,
            },
        };
        match accepted {
            (permit, Ok((stream, _))) => {
                let snapshots = snapshots.clone();
                let io = limits.io_timeout;
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = handle(stream, snapshots, io).await;
                });
            }
            // Out of descriptors or a connection reset before accept: back off a little
            // so a persistent error cannot spin the loop.
            (_, Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    snapshots: watch::Receiver<MetricsSnapshot>,
    io: Duration,
) -> std::io::Result<()> {
    let head = match crate::httphead::read(&mut stream, crate::httphead::MAX_HEAD, io).await? {
        Head::TooLarge => {
            return answer(
                &mut stream,
                io,
                "431 Request Header Fields Too Large",
                "request head too large\n",
            )
            .await
        }
        Head::TimedOut => {
            return answer(&mut stream, io, "408 Request Timeout", "request timeout\n").await
        }
        read => match read.request_bytes() {
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            // The client went away without a request: nothing to answer.
            None => return Ok(()),
        },
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let text = render(&snapshots.borrow());
            ("200 OK", CONTENT_TYPE, text)
        }
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "method not allowed\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    tokio::time::timeout(io, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or(Ok(()))
}

/// A plain-text error answer, then close.
async fn answer(
    stream: &mut TcpStream,
    io: Duration,
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::time::timeout(io, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or(Ok(()))
}
