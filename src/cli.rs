//! The command line (DESIGN.md §7): clap definitions, config lookup, dispatch to the
//! modules that do the work, and the exit codes operators and scripts rely on.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: configuration error (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code: another controller holds the data directory (sysexits EX_TEMPFAIL).
pub const EXIT_LOCKED: u8 = 75;
/// Exit code: the controller is not reachable (sysexits EX_UNAVAILABLE).
pub const EXIT_UNREACHABLE: u8 = 69;
/// Exit code: a feature that is not built yet, or a generic failure.
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "qoscntrlr",
    version,
    about = "QoS watchdog controller: supervises an application server, detects hangs, \
             stalls, resource exhaustion and crashes, fails over, collects diagnostics, \
             kills the whole process tree and restarts it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration comes from: `-c`, else `$QOSCNTRLR_CONFIG`, else
/// `./dcontroller.ini`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration path by the documented lookup order.
    pub fn path(&self) -> PathBuf {
        if let Some(path) = &self.config {
            return path.clone();
        }
        match std::env::var_os("QOSCNTRLR_CONFIG") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from("dcontroller.ini"),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor in the foreground (what the service runs)
    Run(ConfigArg),
    /// Validate the configuration and print the effective values
    CheckConfig(ConfigArg),
    /// Show the state of the controller, server, probe, applications and restarts
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Start the server (when STOPPED)
    Start(ConfigArg),
    /// Stop the server gracefully (it stays down)
    Quit(ConfigArg),
    /// Stop the server gracefully and start it again
    Restart(ConfigArg),
    /// Smart kill: trigger failover, collect diagnostics, kill the tree, restart
    Kill(ConfigArg),
    /// Pause kills and restarts (probing continues and is logged)
    Pause {
        #[command(flatten)]
        config: ConfigArg,
        /// Resume by itself after this long (e.g. 30m, 2h)
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Resume after a pause
    Resume(ConfigArg),
    /// Leave FAULTED and start the server
    ClearFault(ConfigArg),
    /// Collect diagnostics now, without killing
    Diagnose(ConfigArg),
    /// Send one server message (OpMsg line) to the controller's pipe
    Send {
        #[command(flatten)]
        config: ConfigArg,
        /// The message, e.g. 'OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=mail.nsf'
        line: String,
    },
    /// Review controller logs: summary or timeline
    Logs {
        #[command(subcommand)]
        view: LogsView,
    },
    /// Write an incident report
    Report {
        #[command(flatten)]
        config: ConfigArg,
        /// Self-contained HTML output file
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        /// Log files or directories [default: the data directory]
        paths: Vec<PathBuf>,
    },
    /// Pack logs, redacted config, diagnostics and system facts into a .tar.gz
    SupportBundle {
        #[command(flatten)]
        config: ConfigArg,
        /// Output file [default: qoscntrlr-support-<host>-<time>.tar.gz]
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print a man page or shell completions (for packaging)
    #[command(hide = true)]
    Generate {
        /// man, bash, zsh or fish
        what: String,
    },
}

/// Options shared by the log review views.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Log files or directories [default: the data directory]
    pub paths: Vec<PathBuf>,
    /// Only from this time on (YYYY-MM-DD[ HH:MM[:SS]] or YYYY/MM/DD HH:MM:SS)
    #[arg(long)]
    pub since: Option<String>,
    /// Only up to this time
    #[arg(long)]
    pub until: Option<String>,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LogsView {
    /// Counts, probe statistics and one entry per incident
    Summary(LogsArgs),
    /// Incidents and state changes, one line each
    Timeline {
        #[command(flatten)]
        args: LogsArgs,
        /// Only this kind of event (crash, probe-timeout, app-timeout, exhausted, kill, restart, ...)
        #[arg(long)]
        event: Option<String>,
    },
}

/// Parse the command line and run it; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(dispatch(cli.command))
}

fn not_built(what: &str) -> u8 {
    eprintln!("qoscntrlr: '{what}' is not built yet in this version");
    EXIT_FAILURE
}

fn dispatch(command: Command) -> u8 {
    match command {
        Command::Run(_) => not_built("run"),
        Command::CheckConfig(_) => not_built("check-config"),
        Command::Status { .. } => not_built("status"),
        Command::Start(_) => not_built("start"),
        Command::Quit(_) => not_built("quit"),
        Command::Restart(_) => not_built("restart"),
        Command::Kill(_) => not_built("kill"),
        Command::Pause { .. } => not_built("pause"),
        Command::Resume(_) => not_built("resume"),
        Command::ClearFault(_) => not_built("clear-fault"),
        Command::Diagnose(_) => not_built("diagnose"),
        Command::Send { .. } => not_built("send"),
        Command::Logs { view } => logs_command(view),
        Command::Report {
            config,
            html,
            paths,
        } => report_command(&config, &html, paths),
        Command::SupportBundle { config, output } => support_bundle_command(&config, output),
        Command::Generate { what } => generate(&what),
    }
}

fn generate(what: &str) -> u8 {
    let mut command = Cli::command();
    let mut out = std::io::stdout();
    match what {
        "man" => match clap_mangen::Man::new(command).render(&mut out) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("qoscntrlr: cannot write the man page: {e}");
                EXIT_FAILURE
            }
        },
        "bash" | "zsh" | "fish" => {
            let shell = match what {
                "bash" => clap_complete::Shell::Bash,
                "zsh" => clap_complete::Shell::Zsh,
                _ => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command, "qoscntrlr", &mut out);
            EXIT_OK
        }
        other => {
            eprintln!(
                "qoscntrlr: generate: unknown target '{other}' (expected man, bash, zsh or fish)"
            );
            EXIT_FAILURE
        }
    }
}

/// The paths to review: the ones given, else the data directory of the configuration.
fn review_paths_or_data_dir(config: &ConfigArg, paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, u8> {
    if !paths.is_empty() {
        return Ok(paths);
    }
    let loaded = load_config_for_review(config)?;
    Ok(vec![loaded.config.data_directory])
}

fn review_failed(what: &str, err: &crate::review::ReviewError) -> u8 {
    eprintln!("qoscntrlr: {what}: {err}");
    EXIT_FAILURE
}

fn warn_if_no_logs(review: &crate::review::Review, paths: &[PathBuf]) {
    if review.files.is_empty() {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "qoscntrlr: warning: no controller logs (qoscntrlrYYYYMMDDHHmm.out/.log) in {}",
            list.join(", ")
        );
    }
}

fn logs_command(view: LogsView) -> u8 {
    use std::io::Write as _;
    let (args, event) = match view {
        LogsView::Summary(args) => (args, None),
        LogsView::Timeline { args, event } => (args, Some(event)),
    };
    let what = if event.is_some() {
        "logs timeline"
    } else {
        "logs summary"
    };
    let (since, until) =
        match crate::review::parse_window(args.since.as_deref(), args.until.as_deref()) {
            Ok(window) => window,
            Err(e) => return review_failed(what, &e),
        };
    let paths = match review_paths_or_data_dir(&args.config, args.paths) {
        Ok(paths) => paths,
        Err(code) => return code,
    };
    let mut opts = crate::review::Options {
        since,
        until,
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match event {
        None => {
            let review = match crate::review::review_paths(&paths, opts, |_| {}) {
                Ok(review) => review,
                Err(e) => return review_failed(what, &e),
            };
            warn_if_no_logs(&review, &paths);
            // A closed stdout (`| head`) is the reader's choice, not an error of ours.
            let _ = if args.json {
                let json = crate::review::summary_json(&review);
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                )
            } else {
                write!(out, "{}", crate::review::summary_text(&review))
            };
        }
        Some(filter) => {
            let filter = match filter
                .as_deref()
                .map(crate::review::parse_event)
                .transpose()
            {
                Ok(filter) => filter,
                Err(e) => return review_failed(what, &e),
            };
            opts.keep_timeline = true;
            let json = args.json;
            let result = crate::review::review_paths(&paths, opts, |entry| {
                if filter.is_some_and(|kind| kind != entry.kind) {
                    return;
                }
                let _ = if json {
                    let value = serde_json::json!({
                        "at": entry.at,
                        "event": entry.kind,
                        "incident": entry.incident,
                        "text": entry.text,
                    });
                    writeln!(out, "{value}")
                } else {
                    writeln!(out, "{entry}")
                };
            });
            match result {
                Ok(review) => warn_if_no_logs(&review, &paths),
                Err(e) => return review_failed(what, &e),
            }
        }
    }
    let _ = out.flush();
    EXIT_OK
}

fn report_command(config: &ConfigArg, html: &std::path::Path, paths: Vec<PathBuf>) -> u8 {
    let paths = match review_paths_or_data_dir(config, paths) {
        Ok(paths) => paths,
        Err(code) => return code,
    };
    let opts = crate::review::Options {
        keep_series: true,
        ..Default::default()
    };
    let review = match crate::review::review_paths(&paths, opts, |_| {}) {
        Ok(review) => review,
        Err(e) => return review_failed("report", &e),
    };
    warn_if_no_logs(&review, &paths);
    let title: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let generated = chrono::Local::now().format("%Y/%m/%d %H:%M:%S").to_string();
    let page = crate::review::html::render(&review, &title.join(", "), &generated);
    match crate::bundle::write_atomically(html, page.as_bytes(), 0o644) {
        Ok(()) => {
            println!("Report written to {}", html.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("qoscntrlr: report: cannot write {}: {e}", html.display());
            EXIT_FAILURE
        }
    }
}

fn support_bundle_command(config: &ConfigArg, output: Option<PathBuf>) -> u8 {
    let loaded = match load_config_for_review(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let request = crate::bundle::BundleRequest::from_config(&loaded.config, output);
    // The controller's own status needs the control-socket client, wired by the runtime.
    let status = crate::bundle::ControllerStatus::NotReachable(
        "controller not reachable (status client not available in this build)".to_string(),
    );
    match crate::bundle::create(&request, &status) {
        Ok(report) => {
            for note in &report.notes {
                eprintln!("qoscntrlr: support-bundle: {note}");
            }
            println!(
                "Support bundle written to {} ({} files)",
                report.path.display(),
                report.members
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("qoscntrlr: support-bundle: {e}");
            EXIT_FAILURE
        }
    }
}

/// Stand-in for `load_config_or_exit` (being written in parallel): read the configuration
/// by the documented lookup order, print every error, map failure to the exit code.
fn load_config_for_review(arg: &ConfigArg) -> Result<crate::config::Loaded, u8> {
    let path = arg.path();
    match crate::config::load(&path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("qoscntrlr: warning: {warning}");
            }
            Ok(loaded)
        }
        Err(err) => {
            eprintln!("qoscntrlr: {err}");
            for finding in &err.errors {
                eprintln!("  {finding}");
            }
            Err(EXIT_CONFIG)
        }
    }
}
