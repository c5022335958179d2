//! Mail alerts (lettre over tokio): smart kill, crash, restart limit, resource warning,
//! recovery. Owns composing the mail, the SMTP exchange, retries, the spool and folding
//! of repeats.
//!
//! Sending never delays the controller: [`MailerHandle::submit`] only queues. A task owns
//! the queue and sends one mail at a time, each exchange bounded by an outer time limit
//! (lettre's own timeout covers only the connect, so a server that accepts and never
//! answers would otherwise hang the send). Every mail is written to the spool
//! (`DATA_DIRECTORY/mail-spool/*.json`, mode 0600) before the first attempt and removed
//! once delivered, so undelivered mail survives a restart and is retried by the next
//! controller. Failures go back to the runtime as log lines and are retried with backoff
//! (30 s, 1 m, 2 m, … capped at 15 m). The first alert of a kind goes out at once; more of
//! that kind within the fold window (10 min) are held and sent as one mail with a count
//! ("3 crashes since 03:12") when the window closes.
//!
//! The SMTP password is read from `QOS_MAIL_PASSWORD_FILE` at each send, trimmed, and
//! never logged or spooled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Local, SecondsFormat};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{Config, MailTls};
use crate::core::AlertKind;
use crate::fold::Folds;
use crate::host::host_name;
use crate::spool::{backoff, Loaded, Spool};

/// Subdirectory of the data directory holding undelivered mail.
pub const SPOOL_DIR_NAME: &str = "mail-spool";

/// The spool directory for a data directory.
/// A spooled mail is its text plus at most one diagnostics attachment; bigger is no spool
/// file of ours.
const SPOOL_FILE_MAX_BYTES: u64 = 64 * 1024 * 1024;

pub fn spool_dir(data_directory: &Path) -> PathBuf {
    data_directory.join(SPOOL_DIR_NAME)
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{key}={value}: not a valid mail address: {reason}")]
    BadAddress {
        key: &'static str,
        value: String,
        reason: String,
    },
}

/// Where and how to send, from the configuration.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub to: Vec<Mailbox>,
    pub from: Mailbox,
    pub host: String,
    pub port: u16,
    pub tls: MailTls,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl MailSettings {
    /// `Ok(None)` when mail is not configured (no `QOS_MAIL_TO` or no
    /// `QOS_MAIL_SMTP_SERVER`). Without `QOS_MAIL_FROM` the sender is
    /// `qoscntrlr@<host name>`.
    pub fn from_config(config: &Config) -> Result<Option<MailSettings>, MailError> {
        let Some((host, port)) = config.mail_smtp_server.clone() else {
            return Ok(None);
        };
        if config.mail_to.is_empty() {
            return Ok(None);
        }
        let parse = |key: &'static str, value: &str| {
            value
                .trim()
                .parse::<Mailbox>()
                .map_err(|e| MailError::BadAddress {
                    key,
                    value: value.to_string(),
                    reason: e.to_string(),
                })
        };
        let to = config
            .mail_to
            .iter()
            .map(|address| parse("QOS_MAIL_TO", address))
            .collect::<Result<Vec<_>, _>>()?;
        let from = match &config.mail_from {
            Some(from) => parse("QOS_MAIL_FROM", from)?,
            None => parse("QOS_MAIL_FROM", &format!("qoscntrlr@{}", host_name()))?,
        };
        Ok(Some(MailSettings {
            to,
            from,
            host,
            port,
            tls: config.mail_tls,
            user: config.mail_user.clone(),
            password_file: config.mail_password_file.clone(),
        }))
    }
}

/// The plural of an alert kind, for the folded-repeats summary.
fn plural(kind: &AlertKind) -> String {
    match kind {
        AlertKind::SmartKill { .. } => "smart kills".to_string(),
        AlertKind::Crash => "crashes".to_string(),
        AlertKind::RestartLimit => "restart-limit alerts".to_string(),
        AlertKind::ResourceWarning { .. } => "resource warnings".to_string(),
        AlertKind::Recovery => "recoveries".to_string(),
        AlertKind::Rule { rule, .. } => format!("rule {rule} alerts"),
        AlertKind::Other { event } => format!("'{event}' alerts"),
    }
}

/// One notification as the runtime submits it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: AlertKind,
    pub server: String,
    pub when: DateTime<Local>,
    /// What happened, one or two sentences.
    pub summary: String,
    /// The incident's log lines, as written to the `.out` file.
    pub log_lines: Vec<String>,
    pub diagnostics: Option<PathBuf>,
    pub console_tail: Vec<String>,
    /// Attach the diagnostics file (`QOS_NOKILL=1`).
    pub attach_diagnostics: bool,
}

/// `[qoscntrlr] <server>: <event>`
pub fn subject(alert: &Alert) -> String {
    format!("[qoscntrlr] {}: {}", alert.server, alert.kind.event_words())
}

/// The plain-text body of one alert.
pub fn body(alert: &Alert) -> String {
    let mut out = String::new();
    push_details(&mut out, alert);
    out
}

fn push_details(out: &mut String, alert: &Alert) {
    out.push_str(alert.summary.trim_end());
    out.push_str("\n\n");
    out.push_str(&format!("Server:      {}\n", alert.server));
    out.push_str(&format!("Event:       {}\n", alert.kind.event_words()));
    out.push_str(&format!(
        "When:        {}\n",
        alert.when.format("%Y-%m-%d %H:%M:%S %:z")
    ));
    out.push_str(&format!("Host:        {}\n", host_name()));
    match &alert.diagnostics {
        Some(path) if alert.attach_diagnostics => {
            out.push_str(&format!("Diagnostics: {} (attached)\n", path.display()))
        }
        Some(path) => out.push_str(&format!("Diagnostics: {}\n", path.display())),
        None => out.push_str("Diagnostics: none collected\n"),
    }
    out.push_str("\nLog lines of this incident:\n");
    push_indented(out, &alert.log_lines);
    out.push_str("\nServer console (last lines):\n");
    push_indented(out, &alert.console_tail);
}

fn push_indented(out: &mut String, lines: &[String]) {
    if lines.is_empty() {
        out.push_str("    (none)\n");
    }
    for line in lines {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
}

/// One mail, as spooled: composed once, sent to the recipients configured at send time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpooledMail {
    pub subject: String,
    pub body: String,
    pub attachment: Option<PathBuf>,
    pub created: String,
    pub attempts: u32,
}

impl SpooledMail {
    fn from_alert(alert: &Alert) -> SpooledMail {
        SpooledMail {
            subject: subject(alert),
            body: body(alert),
            attachment: attachment_of(alert),
            created: alert.when.to_rfc3339_opts(SecondsFormat::Secs, false),
            attempts: 0,
        }
    }

    /// One mail for `held` (all of one kind, oldest first, at least one).
    fn folded(held: &[Alert]) -> Option<SpooledMail> {
        let (first, latest) = (held.first()?, held.last()?);
        if held.len() == 1 {
            // Nothing to fold: the plain mail, not "1 crashes since …".
            return Some(SpooledMail::from_alert(latest));
        }
        let mut text = format!(
            "{} {} since {}\n\n",
            held.len(),
            plural(&latest.kind),
            first.when.format("%H:%M")
        );
        for alert in held {
            text.push_str(&format!(
                "  {}  {}\n",
                alert.when.format("%Y-%m-%d %H:%M:%S"),
                alert.summary.lines().next().unwrap_or_default()
            ));
        }
        text.push_str("\nThe latest:\n\n");
        push_details(&mut text, latest);
        Some(SpooledMail {
            subject: subject(latest),
            body: text,
            attachment: attachment_of(latest),
            created: latest.when.to_rfc3339_opts(SecondsFormat::Secs, false),
            attempts: 0,
        })
    }
}

fn attachment_of(alert: &Alert) -> Option<PathBuf> {
    alert
        .diagnostics
        .clone()
        .filter(|_| alert.attach_diagnostics)
}

/// Timings of the mailer; the defaults are the production ones.
#[derive(Debug, Clone)]
pub struct MailerOptions {
    /// Outer limit on one whole SMTP exchange.
    pub send_timeout: Duration,
    /// lettre's connect timeout.
    pub connect_timeout: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub fold_window: Duration,
    /// Larger diagnostics files are named in the body but not attached.
    pub max_attachment_bytes: u64,
}

impl Default for MailerOptions {
    fn default() -> Self {
        MailerOptions {
            send_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(30),
            max_retry: Duration::from_secs(15 * 60),
            fold_window: Duration::from_secs(10 * 60),
            max_attachment_bytes: 20 * 1024 * 1024,
        }
    }
}

enum Request {
    Alert(Box<Alert>),
    Settings(Box<MailSettings>),
}

/// The runtime's side of the mailer.
pub struct MailerHandle {
    tx: mpsc::UnboundedSender<Request>,
    task: tokio::task::JoinHandle<()>,
}

impl MailerHandle {
    /// Queue an alert. Never blocks, never waits for the network.
    pub fn submit(&self, alert: Alert) {
        // The task only ends after close(); a send error then has nowhere to go.
        let _ = self.tx.send(Request::Alert(Box::new(alert)));
    }

    /// New settings (SIGHUP reload) for every mail sent from now on, spooled ones
    /// included; mail waiting for a retry is retried at once, since the change is
    /// usually the fix for what made it fail.
    pub fn reconfigure(&self, settings: MailSettings) {
        // As in `submit`: the task only ends after close().
        let _ = self.tx.send(Request::Settings(Box::new(settings)));
    }

    /// Stop: held (folded) alerts are spooled for the next controller, a send in
    /// progress is abandoned (its mail stays spooled). Waits at most `limit`.
    pub async fn close(self, limit: Duration) {
        drop(self.tx);
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// The mailer task.
pub struct Mailer {
    settings: MailSettings,
    options: MailerOptions,
    spool: Spool,
    log: mpsc::UnboundedSender<String>,
    pending: Vec<Pending>,
    folds: Folds<Alert>,
}

struct Pending {
    file: PathBuf,
    mail: SpooledMail,
    due: Instant,
}

impl Mailer {
    /// Start the mailer with the production timings (see [`Mailer::start_with`]).
    pub fn start(
        settings: MailSettings,
        spool_dir: PathBuf,
        log_tx: mpsc::UnboundedSender<String>,
    ) -> MailerHandle {
        Self::start_with(settings, spool_dir, log_tx, MailerOptions::default())
    }

    /// Spawn the mailer task; mail spooled by an earlier run is retried at once. Log
    /// lines (without the `QoS Controller: ` prefix) arrive on `log_tx`.
    pub fn start_with(
        settings: MailSettings,
        spool_dir: PathBuf,
        log_tx: mpsc::UnboundedSender<String>,
        options: MailerOptions,
    ) -> MailerHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let mailer = Mailer {
            settings,
            folds: Folds::new(options.fold_window),
            options,
            spool: Spool::new(spool_dir, "mail", SPOOL_FILE_MAX_BYTES),
            log: log_tx,
            pending: Vec::new(),
        };
        let task = tokio::spawn(mailer.run(rx));
        MailerHandle { tx, task }
    }

    fn log(&self, line: String) {
        let _ = self.log.send(line);
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        self.load_spool();
        loop {
            self.close_due_folds();
            if self.send_due(&mut rx).await == Channel::Closed {
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
                self.log(format!(
                    "Mail settings changed: to {} via {}:{}",
                    recipients(&self.settings),
                    self.settings.host,
                    self.settings.port
                ));
            }
        }
    }

    fn accept(&mut self, alert: Alert) {
        let key = format!("{}\u{0}{}", alert.server, alert.kind.fold_key());
        if let Some(alert) = self.folds.accept(key, alert, Instant::now()) {
            self.enqueue(SpooledMail::from_alert(&alert));
        }
    }

    /// A window with held alerts sends them as one mail and opens a new window; an empty
    /// one closes, so the next alert of that kind goes out at once.
    fn close_due_folds(&mut self) {
        for held in self.folds.close_due(Instant::now()) {
            if let Some(folded) = SpooledMail::folded(&held) {
                self.enqueue(folded);
            }
        }
    }

    fn spool_held(&mut self) {
        for held in self.folds.drain() {
            if let Some(folded) = SpooledMail::folded(&held) {
                self.enqueue(folded);
            }
        }
    }

    fn enqueue(&mut self, mail: SpooledMail) {
        let file = self.spool.new_entry();
        if let Err(e) = self.spool.write(&file, &mail) {
            self.log(format!(
                "Mail '{}' could not be spooled ({e}); it is kept in memory only",
                mail.subject
            ));
        }
        self.pending.push(Pending {
            file,
            mail,
            due: Instant::now(),
        });
    }

    fn load_spool(&mut self) {
        let entries = match self.spool.load::<SpooledMail>() {
            Loaded::Link => {
                self.log(format!(
                    "Mail spool {} is a symbolic link; not followed (planted links in the data directory are refused)",
                    self.spool.dir().display()
                ));
                return;
            }
            Loaded::Entries(entries) => entries,
        };
        for (file, parsed) in entries {
            match parsed {
                Ok(mail) => {
                    self.log(format!(
                        "Mail '{}' from an earlier run is still undelivered; retrying",
                        mail.subject
                    ));
                    self.pending.push(Pending {
                        file,
                        mail,
                        due: Instant::now(),
                    });
                }
                Err(e) => self.log(format!(
                    "Mail spool file {} is unreadable and is left alone: {e}",
                    file.display()
                )),
            }
        }
    }

    /// Send every due mail, one at a time. Alerts that arrive meanwhile are accepted (and
    /// so spooled) at once rather than after the exchange, which may take the whole send
    /// time limit; a close meanwhile abandons the exchange (its mail is spooled already).
    async fn send_due(&mut self, rx: &mut mpsc::UnboundedReceiver<Request>) -> Channel {
        let now = Instant::now();
        let mut index = 0;
        while index < self.pending.len() {
            if self.pending[index].due > now {
                index += 1;
                continue;
            }
            // Owned copies: the exchange runs while `accept` mutates the mailer.
            // The exchange's own settings name its result: a reconfigure may land meanwhile.
            let (settings, options) = (self.settings.clone(), self.options.clone());
            let (to, host, port) = (recipients(&settings), settings.host.clone(), settings.port);
            let mail = self.pending[index].mail.clone();
            let exchange = async move { send(&settings, &options, &mail).await };
            tokio::pin!(exchange);
            let result = loop {
                tokio::select! {
                    result = &mut exchange => break result,
                    request = rx.recv() => match request {
                        Some(request) => self.handle(request),
                        None => return Channel::Closed,
                    },
                }
            };
            // `accept` only appends, so `index` still names the mail just sent.
            match result {
                Ok(()) => {
                    let done = self.pending.remove(index);
                    self.spool.remove(&done.file);
                    self.log(format!("Mail sent: {} (to {to})", done.mail.subject));
                }
                Err(reason) => {
                    let retry = backoff(
                        self.options.first_retry,
                        self.options.max_retry,
                        self.pending[index].mail.attempts,
                    );
                    let pending = &mut self.pending[index];
                    pending.mail.attempts += 1;
                    pending.due = Instant::now() + retry;
                    // Kept in memory either way; the failure to spool was logged at enqueue.
                    let _ = self.spool.write(&pending.file, &pending.mail);
                    let line = format!(
                        "Mail '{}' to {to} via {host}:{port} failed (attempt {}): {reason}; retrying in {}",
                        pending.mail.subject,
                        pending.mail.attempts,
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
        Channel::Open
    }
}

/// Whether the runtime still holds the [`MailerHandle`].
#[derive(Debug, PartialEq, Eq)]
enum Channel {
    Open,
    Closed,
}

fn recipients(settings: &MailSettings) -> String {
    settings
        .to
        .iter()
        .map(|m| m.email.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One SMTP exchange, bounded by the outer time limit. The error is fit for the log (no
/// secret in it).
async fn send(
    settings: &MailSettings,
    options: &MailerOptions,
    mail: &SpooledMail,
) -> Result<(), String> {
    let message = build_message(settings, options, mail)?;
    let transport = build_transport(settings, options)?;
    match tokio::time::timeout(options.send_timeout, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer from the SMTP server within {}",
            crate::core::units::format_duration(
                options.send_timeout,
                crate::core::units::DurationStyle::Seconds
            )
        )),
    }
}

fn build_message(
    settings: &MailSettings,
    options: &MailerOptions,
    mail: &SpooledMail,
) -> Result<Message, String> {
    let mut builder = Message::builder()
        .from(settings.from.clone())
        .subject(mail.subject.clone());
    for to in &settings.to {
        builder = builder.to(to.clone());
    }
    let mut text = mail.body.clone();
    let attachment = match &mail.attachment {
        None => None,
        Some(path) => match read_attachment(path, options.max_attachment_bytes) {
            Ok(bytes) => Some((path, bytes)),
            Err(reason) => {
                text.push_str(&format!(
                    "\n(The diagnostics file could not be attached: {reason}.)\n"
                ));
                None
            }
        },
    };
    let text_part = SinglePart::plain(text);
    let built = match attachment {
        None => builder.singlepart(text_part),
        Some((path, bytes)) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "diagnostics".to_string());
            let content_type = ContentType::parse("application/octet-stream")
                .map_err(|e| format!("content type: {e}"))?;
            builder.multipart(
                MultiPart::mixed()
                    .singlepart(text_part)
                    .singlepart(Attachment::new(name).body(bytes, content_type)),
            )
        }
    };
    built.map_err(|e| format!("cannot build the message: {e}"))
}

fn read_attachment(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > max {
        return Err(format!(
            "{} is {} bytes, more than the {} allowed",
            path.display(),
            size,
            max
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn build_transport(
    settings: &MailSettings,
    options: &MailerOptions,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let host = settings.host.as_str();
    let tls_parameters =
        || TlsParameters::new(host.to_string()).map_err(|e| format!("TLS setup for {host}: {e}"));
    let tls = match settings.tls {
        MailTls::None => Tls::None,
        MailTls::StartTls => Tls::Required(tls_parameters()?),
        MailTls::Tls => Tls::Wrapper(tls_parameters()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(settings.port)
        .tls(tls)
        .timeout(Some(options.connect_timeout));
    if let Some(user) = &settings.user {
        let password = match &settings.password_file {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|e| format!("QOS_MAIL_PASSWORD_FILE {}: {e}", file.display()))?
                .trim()
                .to_string(),
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}
