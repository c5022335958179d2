//! Alert webhooks (`QOS_ALERT_WEBHOOK`, `QOS_ALERT_WEBHOOK_HEADER`): every alert the
//! controller mails is also POSTed as one JSON object to an HTTP or HTTPS endpoint
//! (a pager, a chat bridge, an incident tool). Owns the URL and header syntax, the JSON
//! body, the HTTP/1.1 exchange (rustls for `https`, the TLS stack the mailer already
//! uses; trusted: the system's store, the bundled Mozilla roots and the PEM file
//! `QOS_ALERT_WEBHOOK_CA`), folding of repeats, the spool and the retries.
//!
//! Same delivery rules as mail: [`WebhookHandle::submit`] only queues; one task sends one
//! POST at a time, each bounded by an outer time limit (a sink that accepts and never
//! answers cannot hang it); every alert is spooled (`DATA_DIRECTORY/webhook-spool/*.json`,
//! mode 0600) before the first attempt and removed once a 2xx answer came, so an
//! undelivered alert survives a restart; a failure (refused, non-2xx, timeout) is logged
//! and retried with backoff (30 s doubling to 15 min); the first alert of a kind goes out
//! at once and more of that kind within 10 minutes are held and sent as one POST with a
//! count. The header's value is a credential: it is sent, never logged, never spooled
//! (the spool holds the body only; the header is added at send time).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local, SecondsFormat};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::AlertKind;
use crate::fold::Folds;
use crate::spool::{backoff, Loaded, Spool};

/// Subdirectory of the data directory holding undelivered webhook alerts.
pub const SPOOL_DIR_NAME: &str = "webhook-spool";

/// A spooled alert is a few KiB of JSON; anything bigger is not ours.
const SPOOL_FILE_MAX_BYTES: u64 = 1024 * 1024;

pub fn spool_dir(data_directory: &Path) -> PathBuf {
    data_directory.join(SPOOL_DIR_NAME)
}

/// A parsed `QOS_ALERT_WEBHOOK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl WebhookUrl {
    /// `http://host[:port]/path` or `https://…`. Credentials in the URL are refused
    /// (they would be printed by check-config and logged): they go in
    /// `QOS_ALERT_WEBHOOK_HEADER`.
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
        let text = text.trim();
        let expected = "expected http://host[:port]/path or https://host[:port]/path";
        let lower = text.to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("https://") {
            (true, &text[8..])
        } else if lower.starts_with("http://") {
            (false, &text[7..])
        } else {
            return Err(format!("not an http or https URL ({expected})"));
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "credentials in the URL are not accepted; put them in \
                 QOS_ALERT_WEBHOOK_HEADER (e.g. Authorization: Bearer …) ({expected})"
            ));
        }
        if path.starts_with('#') || path.contains(char::is_whitespace) {
            return Err(format!("the path is not sendable ({expected})"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("\"{port}\" is not a port ({expected})"))?;
                (host, Some(port))
            }
            _ => (authority, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(format!("no valid host name ({expected})"));
        }
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.split('#').next().unwrap_or("/").to_string(),
        };
        Ok(WebhookUrl {
            https,
            host: host.to_string(),
            port: port.unwrap_or(if https { 443 } else { 80 }),
            path,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

/// `Name: value` → (name, value). The error never contains the value.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let expected = "expected one header as Name: value, e.g. Authorization: Bearer <token>";
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("no ':' between the header name and its value ({expected})"))?;
    let name = name.trim();
    let value = value.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!(
            "the header name is not a valid HTTP token ({expected})"
        ));
    }
    if value.is_empty() {
        return Err(format!("the header value is empty ({expected})"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!(
            "the header value contains control characters ({expected})"
        ));
    }
    let reserved = [
        "host",
        "content-length",
        "content-type",
        "connection",
        "transfer-encoding",
    ];
    if reserved.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{name} is set by the controller itself ({expected})"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Where to POST, from the configuration.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: WebhookUrl,
    pub header: Option<(String, String)>,
    /// `QOS_ALERT_WEBHOOK_CA`: PEM certificates trusted besides the system's store.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for WebhookSettings {
    // The header's value is a credential: never in a debug print either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field(
                "header",
                &self.header.as_ref().map(|(n, _)| (n, "<redacted>")),
            )
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl WebhookSettings {
    pub fn from_config(config: &crate::config::Config) -> Option<WebhookSettings> {
        Some(WebhookSettings {
            url: config.alert_webhook.clone()?,
            header: config.alert_webhook_header.clone(),
            ca_file: config.alert_webhook_ca.clone(),
        })
    }
}

/// One alert as the runtime submits it.
#[derive(Debug, Clone)]
pub struct WebhookAlert {
    pub kind: AlertKind,
    pub server: String,
    pub when: DateTime<Local>,
    pub summary: String,
    /// `202612020110-3`; `None` for alerts outside an incident.
    pub incident: Option<String>,
}

/// The JSON body, as spooled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// `smart-kill`, `crash`, `restart-limit`, `resource-warning`, `recovery`, `rule`,
    /// `other`.
    pub event: String,
    /// The event in words, as in the mail's subject: `smart kill (probe timeout)`.
    pub reason: String,
    pub summary: String,
    pub server: String,
    pub incident: Option<String>,
    /// RFC 3339 with offset.
    pub time: String,
    /// The rule's name for rule alerts (`QOS_RULE_<NAME>` or a shorthand key).
    pub rule: Option<String>,
    /// How many alerts of this kind this POST stands for (more than 1 when folded).
    pub count: u32,
    /// Folded: the earlier alerts' times and summaries, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<String>,
}

impl Payload {
    pub fn of(alert: &WebhookAlert) -> Payload {
        Payload {
            event: event_slug(&alert.kind),
            reason: alert.kind.event_words(),
            summary: alert.summary.clone(),
            server: alert.server.clone(),
            incident: alert.incident.clone(),
            time: alert.when.to_rfc3339_opts(SecondsFormat::Secs, false),
            rule: alert.kind.rule().map(str::to_string),
            count: 1,
            folded: Vec::new(),
        }
    }

    fn folded(held: &[WebhookAlert]) -> Option<Payload> {
        let latest = held.last()?;
        let mut payload = Payload::of(latest);
        payload.count = held.len() as u32;
        if held.len() > 1 {
            payload.folded = held[..held.len() - 1]
                .iter()
                .map(|a| {
                    format!(
                        "{} {}",
                        a.when.to_rfc3339_opts(SecondsFormat::Secs, false),
                        a.summary.lines().next().unwrap_or_default()
                    )
                })
                .collect();
        }
        Some(payload)
    }
}

fn event_slug(kind: &AlertKind) -> String {
    match kind {
        AlertKind::SmartKill { .. } => "smart-kill",
        AlertKind::Crash => "crash",
        AlertKind::RestartLimit => "restart-limit",
        AlertKind::ResourceWarning { .. } => "resource-warning",
        AlertKind::Recovery => "recovery",
        AlertKind::Rule { .. } => "rule",
        AlertKind::Other { .. } => "other",
    }
    .to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spooled {
    payload: Payload,
    attempts: u32,
}

/// Timings; the defaults are the production ones.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Outer limit on one whole exchange (connect, TLS, request, answer).
    pub send_timeout: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub fold_window: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            send_timeout: Duration::from_secs(15),
            first_retry: Duration::from_secs(30),
            max_retry: Duration::from_secs(15 * 60),
            fold_window: Duration::from_secs(10 * 60),
        }
    }
}

enum Request {
    Alert(Box<WebhookAlert>),
    Settings(Box<WebhookSettings>),
}

/// The runtime's side.
pub struct WebhookHandle {
    tx: mpsc::UnboundedSender<Request>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookHandle {
    /// Queue an alert; never blocks.
    pub fn submit(&self, alert: WebhookAlert) {
        // The task only ends after close(); a send error then has nowhere to go.
        let _ = self.tx.send(Request::Alert(Box::new(alert)));
    }

    /// New settings (reload) for every later POST; waiting retries go at once.
    pub fn reconfigure(&self, settings: WebhookSettings) {
        let _ = self.tx.send(Request::Settings(Box::new(settings)));
    }

    /// Stop: held (folded) alerts are spooled, an exchange in progress is abandoned
    /// (its alert is spooled already). Waits at most `limit`.
    pub async fn close(self, limit: Duration) {
        drop(self.tx);
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}

struct Pending {
    file: PathBuf,
    spooled: Spooled,
    due: Instant,
}

/// The sender task.
pub struct Webhook {
    settings: WebhookSettings,
    options: WebhookOptions,
    spool: Spool,
    log: mpsc::UnboundedSender<String>,
    pending: Vec<Pending>,
    folds: Folds<WebhookAlert>,
}

impl Webhook {
    pub fn start(
        settings: WebhookSettings,
        spool_dir: PathBuf,
        log_tx: mpsc::UnboundedSender<String>,
    ) -> WebhookHandle {
        Self::start_with(settings, spool_dir, log_tx, WebhookOptions::default())
    }

    /// Spawn the task; alerts spooled by an earlier run are retried at once. Log lines
    /// arrive on `log_tx`.
    pub fn start_with(
        settings: WebhookSettings,
        spool_dir: PathBuf,
        log_tx: mpsc::UnboundedSender<String>,
        options: WebhookOptions,
    ) -> WebhookHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let hook = Webhook {
            settings,
            folds: Folds::new(options.fold_window),
            options,
            spool: webhook_spool(spool_dir),
            log: log_tx,
            pending: Vec::new(),
        };
        let task = tokio::spawn(hook.run(rx));
        WebhookHandle { tx, task }
    }

    fn log(&self, line: String) {
        let _ = self.log.send(line);
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        self.load_spool();
        loop {
            self.close_due_folds();
            if !self.send_due(&mut rx).await {
                self.spool_held();
                return;
            }
            let wake = self
                .pending
                .iter()
                .map(|p| p.due)
                .chain(self.folds.next_end())
                .min();
            let request = match wake {
                Some(at) => tokio::select! {
                    request = rx.recv() => request,
                    _ = tokio::time::sleep_until(at) => continue,
                },
                None => rx.recv().await,
            };
            match request {
                Some(request) => self.handle(request),
                None => {
                    self.spool_held();
                    return;
                }
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Alert(alert) => self.accept(*alert),
            Request::Settings(settings) => {
                self.settings = *settings;
                let now = Instant::now();
                for pending in &mut self.pending {
                    pending.due = pending.due.min(now);
                }
                self.log(format!("Alert webhook changed: {}", self.settings.url));
            }
        }
    }

    fn accept(&mut self, alert: WebhookAlert) {
        let key = format!("{}\u{0}{}", alert.server, alert.kind.fold_key());
        if let Some(alert) = self.folds.accept(key, alert, Instant::now()) {
            self.enqueue(Payload::of(&alert));
        }
    }

    fn close_due_folds(&mut self) {
        for held in self.folds.close_due(Instant::now()) {
            if let Some(folded) = Payload::folded(&held) {
                self.enqueue(folded);
            }
        }
    }

    fn spool_held(&mut self) {
        for held in self.folds.drain() {
            if let Some(folded) = Payload::folded(&held) {
                self.enqueue(folded);
            }
        }
    }

    fn enqueue(&mut self, payload: Payload) {
        let file = self.spool.new_entry();
        let spooled = Spooled {
            payload,
            attempts: 0,
        };
        if let Err(e) = self.spool.write(&file, &spooled) {
            self.log(format!(
                "Webhook alert '{}' could not be spooled ({e}); it is kept in memory only",
                spooled.payload.reason
            ));
        }
        self.pending.push(Pending {
            file,
            spooled,
            due: Instant::now(),
        });
    }

    fn load_spool(&mut self) {
        let entries = match self.spool.load::<Spooled>() {
            Loaded::Link => {
                // Like the mail spool: alerts are never read from a directory a planted
                // link chose.
                self.log(format!(
                    "Webhook spool {} is a symbolic link; not followed (planted links in the data directory are refused)",
                    self.spool.dir().display()
                ));
                return;
            }
            Loaded::Entries(entries) => entries,
        };
        for (file, parsed) in entries {
            match parsed {
                Ok(spooled) => {
                    self.log(format!(
                        "Webhook alert '{}' from an earlier run is still undelivered; retrying",
                        spooled.payload.reason
                    ));
                    self.pending.push(Pending {
                        file,
                        spooled,
                        due: Instant::now(),
                    });
                }
                Err(e) => self.log(format!(
                    "Webhook spool file {} is unreadable and is left alone: {e}",
                    file.display()
                )),
            }
        }
    }

    /// POST every due alert, one at a time, accepting new alerts meanwhile. `false`
    /// when the runtime closed the channel.
    async fn send_due(&mut self, rx: &mut mpsc::UnboundedReceiver<Request>) -> bool {
        let now = Instant::now();
        let mut index = 0;
        while index < self.pending.len() {
            if self.pending[index].due > now {
                index += 1;
                continue;
            }
            let settings = self.settings.clone();
            let limit = self.options.send_timeout;
            let url = settings.url.to_string();
            let body = match serde_json::to_vec(&self.pending[index].spooled.payload) {
                Ok(body) => body,
                Err(e) => {
                    // Invariant: a Payload is plain strings and numbers; cannot happen.
                    self.log(format!("Webhook alert dropped: cannot encode it: {e}"));
                    let done = self.pending.remove(index);
                    self.spool.remove(&done.file);
                    continue;
                }
            };
            let exchange = async move {
                match tokio::time::timeout(limit, post(&settings, &body)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!(
                        "no answer within {}",
                        crate::core::units::format_duration(
                            limit,
                            crate::core::units::DurationStyle::Seconds
                        )
                    )),
                }
            };
            tokio::pin!(exchange);
            let result = loop {
                tokio::select! {
                    result = &mut exchange => break result,
                    request = rx.recv() => match request {
                        Some(request) => self.handle(request),
                        None => return false,
                    },
                }
            };
            match result {
                Ok(status) => {
                    let done = self.pending.remove(index);
                    self.spool.remove(&done.file);
                    self.log(format!(
                        "Webhook alert sent: {} (HTTP {status} from {url})",
                        done.spooled.payload.reason
                    ));
                }
                Err(reason) => {
                    let retry = backoff(
                        self.options.first_retry,
                        self.options.max_retry,
                        self.pending[index].spooled.attempts,
                    );
                    let pending = &mut self.pending[index];
                    pending.spooled.attempts += 1;
                    pending.due = Instant::now() + retry;
                    // Kept in memory either way; the failure to spool was logged at enqueue.
                    let _ = self.spool.write(&pending.file, &pending.spooled);
                    let line = format!(
                        "Webhook alert '{}' to {url} failed (attempt {}): {reason}; retrying in {}",
                        pending.spooled.payload.reason,
                        pending.spooled.attempts,
                        crate::core::units::format_duration(
                            retry,
                            crate::core::units::DurationStyle::Short,
                        )
                    );
                    self.log(line);
                    index += 1;
                }
            }
        }
        true
    }
}

/// Spool one alert for a later webhook task (used while none runs, e.g. during a
/// re-exec); it is sent when a task next starts.
pub fn spool_alert(spool_dir: &Path, alert: &WebhookAlert) -> std::io::Result<()> {
    let spool = webhook_spool(spool_dir.to_path_buf());
    let spooled = Spooled {
        payload: Payload::of(alert),
        attempts: 0,
    };
    spool.write(&spool.new_entry(), &spooled)
}

/// The webhook's spool: `webhook-*.json` entries.
fn webhook_spool(dir: PathBuf) -> Spool {
    Spool::new(dir, "webhook", SPOOL_FILE_MAX_BYTES)
}

/// Longest answer head read (status line and headers).
const MAX_ANSWER: usize = 16 * 1024;

/// One POST; `Ok(status)` for a 2xx answer. Errors are fit for the log: they never
/// contain the header's value.
async fn post(settings: &WebhookSettings, body: &[u8]) -> Result<u16, String> {
    let url = &settings.url;
    let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
    let _ = stream.set_nodelay(true);
    if url.https {
        let connector = tls_connector(settings.ca_file.as_deref())?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("TLS server name {}: {e}", url.host))?;
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {}: {e}", url.host))?;
        exchange(tls, settings, body).await
    } else {
        exchange(stream, settings, body).await
    }
}

/// Trust: the system's store (`rustls-native-certs`: the distribution's CA bundle, or
/// the files `SSL_CERT_FILE`/`SSL_CERT_DIR` name), the bundled Mozilla roots as the
/// mailer has them, and the certificates of `QOS_ALERT_WEBHOOK_CA` (a private CA or a
/// self-signed sink), read for every connection so a renewed file needs no reload.
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in load_ca_file(path).map_err(|e| format!("QOS_ALERT_WEBHOOK_CA {e}"))? {
            roots
                .add(cert)
                .map_err(|e| format!("QOS_ALERT_WEBHOOK_CA {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The certificates of a PEM file (at least one), or why not, naming the file (also
/// `check-config`'s check of `QOS_ALERT_WEBHOOK_CA`).
pub fn load_ca_file(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::{Error, PemObject as _};
    // The library's own texts print byte lists; say it in words.
    let what = |e: Error| {
        let text = match e {
            Error::Io(e) => e.to_string(),
            Error::MissingSectionEnd { end_marker } => format!(
                "a PEM section without its end line (-----END {}-----)",
                String::from_utf8_lossy(&end_marker).trim()
            ),
            Error::IllegalSectionStart { line } => format!(
                "malformed PEM BEGIN line: {}",
                String::from_utf8_lossy(&line).trim()
            ),
            Error::Base64Decode(e) => format!("bad base64 in a PEM section: {e}"),
            other => other.to_string(),
        };
        format!("{}: {text}", path.display())
    };
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(what)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(what)?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (BEGIN CERTIFICATE) in it",
            path.display()
        ));
    }
    Ok(certs)
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    settings: &WebhookSettings,
    body: &[u8],
) -> Result<u16, String> {
    let url = &settings.url;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: qoscntrlr/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    if let Some((name, value)) = &settings.header {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    // The status line is all that decides; read until it is complete.
    loop {
        if answer.windows(2).any(|w| w == b"\r\n") || answer.len() >= MAX_ANSWER {
            break;
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let line = answer
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    if line.is_empty() {
        return Err("the connection closed without an answer".into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| {
            let shown: String = line.chars().take(60).collect();
            format!("not an HTTP answer: {shown:?}")
        })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        let shown: String = line.chars().take(80).collect();
        Err(format!("refused: {shown}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = WebhookUrl::parse("https://hooks.example.org/services/T0/B1?x=1").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.example.org", 443, "/services/T0/B1?x=1")
        );
        assert_eq!(
            u.to_string(),
            "https://hooks.example.org/services/T0/B1?x=1"
        );
        let u = WebhookUrl::parse("http://127.0.0.1:8099").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8099, "/"));
        assert_eq!(u.to_string(), "http://127.0.0.1:8099/");
        let u = WebhookUrl::parse("http://[::1]:81/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert!(WebhookUrl::parse("ftp://x").unwrap_err().contains("http"));
        assert!(WebhookUrl::parse("http://user:pw@x/")
            .unwrap_err()
            .contains("HEADER"));
        assert!(WebhookUrl::parse("http://x:99999/")
            .unwrap_err()
            .contains("port"));
        assert!(WebhookUrl::parse("http:///x").is_err());
    }

    #[test]
    fn headers_never_echo_the_value() {
        assert_eq!(
            parse_header("Authorization: Bearer s3cr3t").unwrap(),
            ("Authorization".into(), "Bearer s3cr3t".into())
        );
        for bad in [
            "no colon s3cr3t",
            "Bad Name: s3cr3t",
            "X-Key:",
            "Host: s3cr3t",
        ] {
            let e = parse_header(bad).unwrap_err();
            assert!(!e.contains("s3cr3t"), "{e}");
        }
        let settings = WebhookSettings {
            url: WebhookUrl::parse("http://x/").unwrap(),
            header: Some(("X-Key".into(), "s3cr3t".into())),
            ca_file: None,
        };
        assert!(!format!("{settings:?}").contains("s3cr3t"));
    }
}
