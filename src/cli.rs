//! The command line: clap definitions, config lookup, dispatch to the
//! modules that do the work, which return the exit codes of [`crate::exitcode`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::exitcode::{EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};

/// The default configuration files, in lookup order after `-c` and `$QOSCNTRLR_CONFIG`.
pub const DEFAULT_CONFIG_FILES: &[&str] = &["dcontroller.ini", "/etc/qoscntrlr/dcontroller.ini"];

/// `-c FILE` given before the subcommand (`qoscntrlr -c FILE status`).
static TOP_CONFIG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Whether to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set
    Auto,
    Always,
    Never,
}

static COLOR: std::sync::OnceLock<ColorWhen> = std::sync::OnceLock::new();

/// Whether stdout gets colours: `--color`, else NO_COLOR (any non-empty value turns
/// colours off, see no-color.org), else whether stdout is a terminal.
pub fn use_color() -> bool {
    match COLOR.get().copied().unwrap_or(ColorWhen::Auto) {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty())
                && std::io::IsTerminal::is_terminal(&std::io::stdout())
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "qoscntrlr",
    version,
    about = "QoS watchdog controller: supervises an application server, detects hangs, \
             stalls, resource exhaustion and crashes, fails over, collects diagnostics, \
             kills the whole process tree and restarts it."
)]
pub struct Cli {
    /// Configuration file, before the subcommand (also accepted after it)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Colour the output: auto (a terminal, unless NO_COLOR is set), always or never
    #[arg(long, value_enum, global = true, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration comes from: `-c` (after or before the subcommand), else
/// `$QOSCNTRLR_CONFIG`, else `./dcontroller.ini`, else `/etc/qoscntrlr/dcontroller.ini`.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration path by the documented lookup order.
    pub fn path(&self) -> PathBuf {
        if let Some(path) = self.config.as_ref().or(TOP_CONFIG.get()) {
            return path.clone();
        }
        match std::env::var_os("QOSCNTRLR_CONFIG") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => DEFAULT_CONFIG_FILES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILES[0])),
        }
    }
}

/// `--wait[=DURATION]`: return only when the server has reached the command's target
/// state, like `systemctl restart`.
#[derive(Debug, Clone, Args)]
pub struct WaitArg {
    /// Return when the target state is reached (READY; STOPPED for stop), at most this
    /// long [default: QOS_SHUTDOWN_TIMEOUT + QOS_RESTART_TIMEOUT + 1 minute]
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    pub wait: Option<String>,
}

/// A command that changes the server's state: the configuration and `--wait`.
#[derive(Debug, Clone, Args)]
pub struct StateChangeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub wait: WaitArg,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor in the foreground (what the service runs)
    Run(ConfigArg),
    /// Validate the configuration, check what `run` would trip over, print the effective values
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Treat warnings (unknown keys, ...) as errors
        #[arg(long)]
        strict: bool,
    },
    /// Show the state of the controller, server, probe, applications and restarts
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Start the server (when STOPPED)
    Start(StateChangeArgs),
    /// Stop the server gracefully (it stays down)
    #[command(visible_alias = "stop")]
    Quit(StateChangeArgs),
    /// Stop the server gracefully and start it again
    Restart(StateChangeArgs),
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
    ClearFault {
        #[command(flatten)]
        args: StateChangeArgs,
        /// Clear the mark only; the server stays down (STOPPED) until `start`
        #[arg(long = "no-start")]
        no_start: bool,
    },
    /// End a failback hold now: the failover outputs come back at once
    Failback(ConfigArg),
    /// Collect diagnostics now, without killing; prints the file written
    Diagnose(ConfigArg),
    /// Re-read the configuration file now; prints what changed or the errors
    Reload(ConfigArg),
    /// Send one server message (OpMsg line) to the controller's pipe
    Send {
        #[command(flatten)]
        config: ConfigArg,
        /// The message, e.g. 'OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=mail.nsf'
        line: String,
    },
    /// Review controller logs: summary, timeline, or follow the live log
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
    /// Replace the running controller with the binary now at its path (after an
    /// upgrade), keeping the server running and every timer
    Reexec(ConfigArg),
    /// Run by `reexec` on the new binary: read the configuration and accept the state
    #[command(hide = true)]
    ReexecCheck {
        #[command(flatten)]
        config: ConfigArg,
        /// The state format version the running controller writes
        #[arg(long, value_name = "N")]
        state_version: u32,
        /// The running controller's state, to be read in full
        #[arg(long, value_name = "FILE")]
        state_file: Option<PathBuf>,
    },
    /// Print a man page or shell completions (for packaging)
    #[command(hide = true)]
    Generate {
        /// man (qoscntrlr.1), ini-man (dcontroller.ini.5), bash, zsh or fish
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
    /// The live controller log, like tail -f (follows the controller to each new file)
    Follow {
        #[command(flatten)]
        config: ConfigArg,
        /// Start with this many lines of the current log
        #[arg(short = 'n', long, value_name = "N", default_value_t = 10)]
        lines: usize,
    },
}

/// Parse the command line and run it; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = cli.config {
        let _ = TOP_CONFIG.set(path);
    }
    let _ = COLOR.set(cli.color);
    ExitCode::from(dispatch(cli.command))
}

fn dispatch(command: Command) -> u8 {
    use crate::control::ControlCommand;
    match command {
        Command::Run(arg) => match load_config_or_exit(&arg) {
            Ok(loaded) => crate::runtime::run(loaded.config, &arg.path()),
            Err(code) => code,
        },
        Command::CheckConfig { config, strict } => crate::checkconfig::run(&config.path(), strict),
        Command::Send { config, line } => send(&config, &line),
        Command::Status { config, json } => control_command(&config, ControlCommand::Status, json),
        Command::Start(args) => state_change(&args, ControlCommand::Start),
        Command::Quit(args) => state_change(&args, ControlCommand::Quit),
        Command::Restart(args) => state_change(&args, ControlCommand::Restart),
        Command::Kill(config) => control_command(&config, ControlCommand::Kill, false),
        Command::Pause { config, duration } => match pause_duration(duration.as_deref()) {
            Ok(for_duration) => {
                control_command(&config, ControlCommand::Pause { for_duration }, false)
            }
            Err(message) => {
                eprintln!("qoscntrlr: pause: {message}");
                EXIT_USAGE
            }
        },
        Command::Resume(config) => control_command(&config, ControlCommand::Resume, false),
        Command::ClearFault { args, no_start } => {
            state_change(&args, ControlCommand::ClearFault { no_start })
        }
        Command::Failback(config) => control_command(&config, ControlCommand::Failback, false),
        Command::Diagnose(config) => control_command(&config, ControlCommand::Diagnose, false),
        Command::Reload(config) => control_command(&config, ControlCommand::Reload, false),
        Command::Reexec(config) => control_command(&config, ControlCommand::Reexec, false),
        Command::ReexecCheck {
            config,
            state_version,
            state_file,
        } => crate::reexec::check_main(state_version, state_file.as_deref(), &config.path()),
        Command::Logs {
            view: LogsView::Follow { config, lines },
        } => follow_command(&config, lines),
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
    use std::io::Write as _;
    let mut command = Cli::command();
    let mut out = std::io::stdout();
    let page = match what {
        "man" => crate::manpage::qoscntrlr_1(),
        "ini-man" => crate::manpage::dcontroller_ini_5(),
        "bash" | "zsh" | "fish" => {
            let shell = match what {
                "bash" => clap_complete::Shell::Bash,
                "zsh" => clap_complete::Shell::Zsh,
                _ => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command, "qoscntrlr", &mut out);
            return EXIT_OK;
        }
        other => {
            eprintln!(
                "qoscntrlr: generate: unknown target '{other}' (expected man, ini-man, bash, zsh or fish)"
            );
            return EXIT_USAGE;
        }
    };
    match out.write_all(page.as_bytes()) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("qoscntrlr: cannot write the man page: {e}");
            EXIT_FAILURE
        }
    }
}

/// The clap definition, for the man page generator.
pub fn command_definition() -> clap::Command {
    Cli::command()
}

/// Print config findings to stderr: `warning: ` / `error: `, with the journal's `<N>`
/// priority in front when `$JOURNAL_STREAM` names stderr (`run` under systemd).
fn print_findings(warnings: &[crate::config::Finding], errors: &[crate::config::Finding]) {
    let journal = crate::journal::Style::from_env() == crate::journal::Style::Journal;
    let (warn, err) = if journal { ("<4>", "<3>") } else { ("", "") };
    for warning in warnings {
        eprintln!("{warn}warning: {warning}");
    }
    for error in errors {
        eprintln!("{err}error: {error}");
    }
}

/// Load the configuration for a client command: only the socket and directory paths
/// must be right; every other error is printed as a warning (the controller may run on
/// with its previous configuration, and the operator must still reach it).
pub fn load_client_config(arg: &ConfigArg) -> Result<crate::config::Config, u8> {
    match crate::config::load_for_client(&arg.path()) {
        Ok(loaded) => {
            print_findings(&loaded.warnings, &[]);
            Ok(loaded.config)
        }
        Err(failure) => {
            print_findings(&failure.warnings, &failure.errors);
            eprintln!("qoscntrlr: {failure}");
            Err(EXIT_CONFIG)
        }
    }
}

/// Load the configuration by the documented lookup order, printing warnings (`warning: `)
/// and, on failure, every error (`error: `) to stderr. `Err` carries the exit code
/// (`EXIT_CONFIG`) for the caller to return.
pub fn load_config_or_exit(arg: &ConfigArg) -> Result<crate::config::Loaded, u8> {
    match crate::config::load(&arg.path()) {
        Ok(loaded) => {
            print_findings(&loaded.warnings, &[]);
            Ok(loaded)
        }
        Err(failure) => {
            print_findings(&failure.warnings, &failure.errors);
            eprintln!("qoscntrlr: {failure}");
            Err(EXIT_CONFIG)
        }
    }
}

/// How long a client command waits for the controller's answer. Commands are answered
/// when accepted (a restart is acknowledged, not awaited), so this only guards against a
/// wedged controller.
const CONTROL_CLIENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long `diagnose` waits beyond QOS_NSD_TIMEOUT for the controller's answer.
const DIAGNOSE_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Run one operator command against the controller named by the configuration, print
/// the answer and return the exit code.
fn control_command(arg: &ConfigArg, command: crate::control::ControlCommand, json: bool) -> u8 {
    let config = match load_client_config(arg) {
        Ok(config) => config,
        Err(code) => return code,
    };
    control_command_with(&config, &command, json)
}

fn control_command_with(
    config: &crate::config::Config,
    command: &crate::control::ControlCommand,
    json: bool,
) -> u8 {
    let limit = match command {
        // Answered when the diagnostics file is written.
        crate::control::ControlCommand::Diagnose => config.nsd_timeout + DIAGNOSE_MARGIN,
        _ => CONTROL_CLIENT_LIMIT,
    };
    let result = crate::control::request(&config.control_socket, command, limit);
    let unreachable = match &result {
        Err(e @ crate::control::ClientError::Unreachable { .. }) => Some(e.to_string()),
        _ => None,
    };
    let mut outcome = control_outcome(command, result, json, use_color());
    if let (crate::control::ControlCommand::Status, Some(reason)) = (command, unreachable) {
        // No controller: still exit 69, and show the last known state it left behind.
        let offline =
            crate::laststate::offline_status(&config.data_directory, reason, chrono::Local::now());
        outcome.code = offline.exit_code();
        outcome.stdout = if json {
            match serde_json::to_string_pretty(&offline) {
                Ok(text) => format!("{text}\n"),
                Err(e) => {
                    outcome.stderr.push_str(&format!(
                        "qoscntrlr: status: cannot encode the last state as JSON: {e}\n"
                    ));
                    String::new()
                }
            }
        } else {
            crate::status::render_offline(&offline, use_color())
        };
    }
    if !outcome.stdout.is_empty() {
        print!("{}", outcome.stdout);
    }
    if !outcome.stderr.is_empty() {
        eprint!("{}", outcome.stderr);
    }
    outcome.code
}

/// `start`, `stop`/`quit`, `restart`, `clear-fault`, with `--wait[=D]`.
fn state_change(args: &StateChangeArgs, command: crate::control::ControlCommand) -> u8 {
    // The command line first: a malformed --wait is a usage error whatever the config.
    let wait = match args.wait.wait.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(text) => {
            match crate::config::parse_duration(text, std::time::Duration::from_secs(1)) {
                Ok(d) if !d.is_zero() => Some(Some(d)),
                Ok(_) => {
                    eprintln!(
                        "qoscntrlr: {}: --wait={text}: must be more than 0",
                        command.word()
                    );
                    return EXIT_USAGE;
                }
                Err(e) => {
                    eprintln!("qoscntrlr: {}: --wait={text}: {e}", command.word());
                    return EXIT_USAGE;
                }
            }
        }
    };
    let config = match load_client_config(&args.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let limit = match wait {
        None => return control_command_with(&config, &command, false),
        Some(Some(d)) => d,
        Some(None) => {
            config.shutdown_timeout + config.restart_timeout + std::time::Duration::from_secs(60)
        }
    };
    // The server pid before a restart: the wait is over only when a new one is READY.
    let before = status_of(&config).ok();
    let code = control_command_with(&config, &command, false);
    if code != EXIT_OK {
        return code;
    }
    let target = wait_target(&command);
    let old_pid = before.and_then(|s| s.server.pid);
    println!(
        "Waiting up to {} for {target}...",
        crate::core::units::format_duration(limit, crate::core::units::DurationStyle::Words)
    );
    match wait_for_state(&config, &command, target, old_pid, limit) {
        Ok(snapshot) => {
            let pid = snapshot
                .server
                .pid
                .map(|p| format!(" (server pid {p})"))
                .unwrap_or_default();
            println!("{}{pid}", snapshot.server.state);
            EXIT_OK
        }
        Err((code, message)) => {
            eprintln!("qoscntrlr: {}: {message}", command.word());
            code
        }
    }
}

/// The state `--wait` waits for.
fn wait_target(command: &crate::control::ControlCommand) -> crate::core::ServerState {
    use crate::core::ServerState;
    match command {
        crate::control::ControlCommand::Quit
        | crate::control::ControlCommand::ClearFault { no_start: true } => ServerState::Stopped,
        _ => ServerState::Ready,
    }
}

fn status_of(config: &crate::config::Config) -> Result<crate::status::StatusSnapshot, String> {
    let response = crate::control::request(
        &config.control_socket,
        &crate::control::ControlCommand::Status,
        CONTROL_CLIENT_LIMIT,
    )
    .map_err(|e| e.to_string())?;
    response.status.map(|s| *s).ok_or_else(|| {
        format!(
            "the controller answered without a status: {}",
            response.message
        )
    })
}

/// Poll the status until the server is in `target` (for a restart: with a pid other
/// than `old_pid`), it can no longer get there (FAULTED while waiting for READY), or
/// `limit` has passed.
fn wait_for_state(
    config: &crate::config::Config,
    command: &crate::control::ControlCommand,
    target: crate::core::ServerState,
    old_pid: Option<u32>,
    limit: std::time::Duration,
) -> Result<crate::status::StatusSnapshot, (u8, String)> {
    use crate::core::ServerState;
    let deadline = std::time::Instant::now() + limit;
    let restart = matches!(command, crate::control::ControlCommand::Restart);
    let mut last;
    loop {
        match status_of(config) {
            Ok(snapshot) => {
                let state = snapshot.server.state;
                let new_server = !restart || snapshot.server.pid != old_pid;
                if state == target && new_server {
                    return Ok(snapshot);
                }
                if state == ServerState::Faulted && target == ServerState::Ready {
                    return Err((
                        EXIT_FAILURE,
                        format!("the server is FAULTED: {}", snapshot.server.why),
                    ));
                }
                last = format!("{state} ({})", snapshot.server.why);
            }
            Err(e) => {
                // A controller that went away will not reach the target.
                return Err((EXIT_UNREACHABLE, format!("while waiting: {e}")));
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err((
                EXIT_FAILURE,
                format!(
                    "gave up after {}: the server is {last}, not {target}",
                    crate::core::units::format_duration(
                        limit,
                        crate::core::units::DurationStyle::Words
                    )
                ),
            ));
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// How often `--wait` asks for the status.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// What a client command prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlOutcome {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

/// Turn the controller's answer (or the failure to get one) into output and exit code:
/// 0 accepted, 1 refused or failed, 69 no controller; `status` exits with
/// [`crate::status::exit_code`].
pub fn control_outcome(
    command: &crate::control::ControlCommand,
    result: Result<crate::control::ControlResponse, crate::control::ClientError>,
    json: bool,
    color: bool,
) -> ControlOutcome {
    use crate::control::{ClientError, ControlCommand};
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            let code = match error {
                ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
                _ => EXIT_FAILURE,
            };
            return ControlOutcome {
                code,
                stdout: String::new(),
                stderr: format!("qoscntrlr: {}: {error}\n", command.word()),
            };
        }
    };
    if !response.ok {
        let mut stderr = String::new();
        for error in &response.config_errors {
            stderr.push_str(&format!("error: {error}\n"));
        }
        stderr.push_str(&format!(
            "qoscntrlr: {}: {}\n",
            command.word(),
            response.message
        ));
        let code = if response.config_errors.is_empty() {
            EXIT_FAILURE
        } else {
            EXIT_CONFIG
        };
        return ControlOutcome {
            code,
            stdout: String::new(),
            stderr,
        };
    }
    match (command, &response.status) {
        (ControlCommand::Status, Some(snapshot)) => {
            let stdout = if json {
                match serde_json::to_string_pretty(snapshot) {
                    Ok(text) => format!("{text}\n"),
                    Err(e) => {
                        return ControlOutcome {
                            code: EXIT_FAILURE,
                            stdout: String::new(),
                            stderr: format!("qoscntrlr: status: cannot encode JSON: {e}\n"),
                        }
                    }
                }
            } else {
                crate::status::render_human(snapshot, color)
            };
            ControlOutcome {
                code: crate::status::exit_code(snapshot),
                stdout,
                stderr: String::new(),
            }
        }
        (ControlCommand::Status, None) => ControlOutcome {
            code: EXIT_FAILURE,
            stdout: String::new(),
            stderr: "qoscntrlr: status: the controller answered without a status\n".to_string(),
        },
        _ => ControlOutcome {
            code: EXIT_OK,
            stdout: format!("{}\n", response.message),
            stderr: String::new(),
        },
    }
}

/// `pause --for DURATION`: a bare number is minutes, suffixes ms/s/m/min/h as in the ini.
fn pause_duration(text: Option<&str>) -> Result<Option<std::time::Duration>, String> {
    match text {
        None => Ok(None),
        Some(text) => match crate::config::parse_duration(text, std::time::Duration::from_secs(60))
        {
            Ok(d) if d >= std::time::Duration::from_secs(1) => Ok(Some(d)),
            Ok(_) => Err(format!("--for {text}: must be at least 1 second")),
            Err(e) => Err(format!("--for {text}: {e}")),
        },
    }
}

/// How long `send` waits for the controller to take the message.
const SEND_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `qoscntrlr send '<line>'`: the line is validated before anything is sent, so a typo
/// is reported here instead of being dropped by the controller.
fn send(config: &ConfigArg, line: &str) -> u8 {
    if let Err(e) = crate::message::parse(line).and_then(|m| m.meaning()) {
        eprintln!("qoscntrlr: send: invalid message: {e}");
        return EXIT_FAILURE;
    }
    let config = match load_client_config(config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let pipe = &config.pipe;
    match crate::pipe::send_line(pipe, line, SEND_LIMIT) {
        Ok(()) => {
            println!("Sent to {}: {line}", pipe.display());
            EXIT_OK
        }
        Err(
            e @ (crate::pipe::SendError::MultiLine
            | crate::pipe::SendError::TooLong(_)
            | crate::pipe::SendError::NotAccepted(_)),
        ) => {
            eprintln!("qoscntrlr: send: {e}");
            EXIT_FAILURE
        }
        Err(e) => {
            eprintln!("qoscntrlr: {e}");
            EXIT_UNREACHABLE
        }
    }
}

/// The paths to review: the ones given, else the data directory of the configuration.
fn review_paths_or_data_dir(config: &ConfigArg, paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, u8> {
    if !paths.is_empty() {
        return Ok(paths);
    }
    let config = load_client_config(config)?;
    Ok(vec![config.data_directory])
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
        LogsView::Follow { config, lines } => return follow_command(&config, lines),
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

/// `logs follow`: the live log of the controller of this configuration.
fn follow_command(config: &ConfigArg, lines: usize) -> u8 {
    let config = match load_client_config(config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let dir = &config.data_directory;
    match crate::follow::current_out(dir) {
        Ok(Some(_)) => {}
        Ok(None) => eprintln!(
            "qoscntrlr: logs follow: no qoscntrlr*.out in {} yet; waiting for the controller to start",
            dir.display()
        ),
        Err(e) => {
            eprintln!("qoscntrlr: logs follow: {e}");
            return EXIT_FAILURE;
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // Runs until Ctrl-C (the default SIGINT action ends it) or a closed stdout.
    match crate::follow::follow(dir, lines, &mut out, || false) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("qoscntrlr: logs follow: {e}");
            EXIT_FAILURE
        }
    }
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
    let written = crate::atomic::check_target(html)
        .map_err(|e| format!("{}: {e}", html.display()))
        .and_then(|()| {
            crate::atomic::write(html, page.as_bytes(), 0o644, crate::atomic::Temp::Unique)
                .map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => {
            println!("Report written to {}", html.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("qoscntrlr: report: cannot write {e}");
            EXIT_FAILURE
        }
    }
}

fn support_bundle_command(config: &ConfigArg, output: Option<PathBuf>) -> u8 {
    // The bundle is most needed when the configuration is broken: read it leniently.
    let loaded = match crate::config::load_for_client(&config.path()) {
        Ok(loaded) => {
            print_findings(&loaded.warnings, &[]);
            loaded
        }
        Err(failure) => {
            print_findings(&failure.warnings, &failure.errors);
            eprintln!("qoscntrlr: {failure}");
            return EXIT_CONFIG;
        }
    };
    let request = crate::bundle::BundleRequest::from_config(&loaded.config, output);
    let status = match crate::control::request(
        &loaded.config.control_socket,
        &crate::control::ControlCommand::Status,
        CONTROL_CLIENT_LIMIT,
    ) {
        Ok(response) => match response.status.map(|s| serde_json::to_string_pretty(&s)) {
            Some(Ok(json)) => crate::bundle::ControllerStatus::Json(json),
            Some(Err(e)) => crate::bundle::ControllerStatus::NotReachable(format!(
                "controller status could not be encoded: {e}"
            )),
            None => crate::bundle::ControllerStatus::NotReachable(format!(
                "controller answered without a status: {}",
                response.message
            )),
        },
        Err(e) => {
            crate::bundle::ControllerStatus::NotReachable(format!("controller not reachable: {e}"))
        }
    };
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
