//! The controller: a pure state machine (the states, the architecture). It owns every decision —
//! when to probe, when a timeout has happened, when to fail over, collect diagnostics,
//! kill, restart or give up — and nothing else. No clock reads, syscalls or tokio:
//! [`Controller::handle`] takes the time and a past-tense [`Event`] and returns
//! imperative [`Action`]s; [`Controller::next_deadline`] says when it next wants to be
//! woken with [`Event::DeadlineReached`].

pub mod apps;
mod ended;
pub mod ha;
pub mod instants;
mod policy;
pub mod rules;
pub mod timers;
pub mod units;
pub mod vocab;
pub mod wording;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::rules::{Item, Reading, Readings, RuleStatus};
use crate::rules::{Origin, RuleAction, RuleEngine, Verdict};
use apps::{AppsList, StartOutcome};
use ended::EndedServers;
use ha::FailoverBook;
pub use ha::{FailbackMode, FailoverState, Hold};
pub use policy::Policy;
pub use timers::{Timer, Timers};
pub use vocab::{
    AlertKind, AppKey, Component, Health, HookEvent, KillPhase, Meaning, Meaning as ServerSignal,
    ServerState, ServerState as StateName,
};

/// Why the controller decided a server is unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    ProbeTimeout,
    AppTimeout {
        app: String,
    },
    /// Reported by the server (`OpMsg=EXHAUSTED`).
    OutOf {
        resource: String,
    },
    /// Measured by the controller.
    Exhausted {
        resource: String,
        detail: String,
    },
    RestartTimeout,
    /// A stop (quit, restart, controller stop) did not finish in QOS_SHUTDOWN_TIMEOUT.
    ShutdownTimeout,
    Operator,
    Crash,
    /// A `QOS_RULE_<NAME>` rule with `action=kill`; `rule` is its key.
    Rule {
        rule: String,
        detail: String,
    },
}

impl Reason {
    /// Short slug for file names, hooks and events.
    pub fn slug(&self) -> String {
        match self {
            Reason::ProbeTimeout => "probe-timeout".into(),
            Reason::AppTimeout { .. } => "app-timeout".into(),
            Reason::OutOf { resource } => format!("out-of-{}", slugify(resource)),
            Reason::Exhausted { resource, .. } => format!("exhausted-{}", slugify(resource)),
            Reason::RestartTimeout => "restart-timeout".into(),
            Reason::ShutdownTimeout => "shutdown-timeout".into(),
            Reason::Operator => "operator-kill".into(),
            Reason::Crash => "crash".into(),
            Reason::Rule { rule, .. } => format!("rule-{}", slugify(rule_name(rule))),
        }
    }

    /// Words for operators (status, mail subjects, readiness bodies).
    pub fn describe(&self) -> String {
        match self {
            Reason::ProbeTimeout => "probe timeout".into(),
            Reason::AppTimeout { app } => format!("application timeout ({app})"),
            Reason::OutOf { resource } => format!("out of {resource}"),
            Reason::Exhausted { resource, detail } => format!("{resource} exhausted ({detail})"),
            Reason::RestartTimeout => "restart timeout".into(),
            Reason::ShutdownTimeout => "shutdown timeout".into(),
            Reason::Operator => "operator kill".into(),
            Reason::Crash => "crash".into(),
            Reason::Rule { rule, detail } => format!("rule {rule} ({detail})"),
        }
    }
}

use wording::{rule_name, slugify};

/// An operator command from the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Quit,
    Restart,
    Kill,
    Pause {
        duration: Option<Duration>,
    },
    Resume,
    /// `no_start`: clear the mark only; the server stays down (STOPPED).
    ClearFault {
        no_start: bool,
    },
    Diagnose,
    /// `qoscntrlr reexec`: replace the controller's image, keeping the server running.
    Reexec,
    /// End a failback hold now (and any QOS_FAILBACK=manual wait).
    Failback,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Quit => "quit",
            Command::Restart => "restart",
            Command::Kill => "kill",
            Command::Pause { .. } => "pause",
            Command::Resume => "resume",
            Command::ClearFault { .. } => "clear-fault",
            Command::Diagnose => "diagnose",
            Command::Reexec => "reexec",
            Command::Failback => "failback",
        }
    }
}

/// A past-tense fact the shell reports to the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The controller has started; `trigger_present` says a previous run left the
    /// failover trigger behind (it is kept until the server is healthy).
    ControllerStarted {
        trigger_present: bool,
    },
    ServerSpawned {
        pid: i32,
        program: String,
    },
    SpawnFailed {
        error: String,
    },
    /// The trigger file could not be written (after [`Action::WriteTrigger`]).
    TriggerWriteFailed {
        error: String,
    },
    /// The server process has been reaped; `exit` is readable text ("exit code 3",
    /// "killed by SIGSEGV (core dumped)"). Any exit nobody asked for is a crash, whatever
    /// its code: the server is supposed to be running.
    ServerExited {
        pid: i32,
        exit: String,
    },
    /// One probe attempt has finished.
    ProbeFinished {
        success: bool,
        latency: Duration,
        detail: String,
    },
    /// A probe attempt could not be made for a reason of the controller's own (out of
    /// file descriptors): a controller fault, never evidence against the server.
    ProbeUnavailable {
        reason: String,
    },
    /// A message from the server; `text` is the line to log verbatim (`append_timedate`
    /// when it carried none); `from`: the process that sent it, when known.
    MessageReceived {
        text: String,
        append_timedate: bool,
        signal: ServerSignal,
        from: Option<MessageSender>,
    },
    /// Processes of the server's tree have ended (killed with it, or found gone): a
    /// message they wrote that is read later is not the current server's.
    ServerProcessesEnded {
        pids: Vec<i32>,
    },
    /// A message that could not be accepted (logged, otherwise ignored).
    MessageRejected {
        reason: String,
    },
    ResourceWarning {
        resource: String,
        detail: String,
    },
    ResourceExhausted {
        resource: String,
        detail: String,
    },
    /// The kernel's OOM killer killed `kills` process(es) inside the server's cgroup
    /// (`memory.events oom_kill` went up to `total`). An incident of its own, whether or
    /// not the server survived it.
    OomKilled {
        kills: u64,
        total: u64,
    },
    /// One sampling pass: a reading of every item some rule watches (an item absent
    /// from the map counts as a sample that could not be taken).
    ResourcesSampled {
        readings: Readings,
    },
    /// A measured resource is back under its limit (ends a QOS_NOKILL condition).
    ResourceRecovered {
        resource: String,
    },
    /// `uid` is the operator's; `request` identifies the reply.
    CommandReceived {
        command: Command,
        uid: u32,
        request: u64,
    },
    /// The post-mortem of [`Action::RunPostMortem`] has read what the dead server left
    /// (its file is still being written): the leftovers may be killed now.
    PostMortemCaptured {
        incident: u64,
    },
    /// A diagnostics run has ended; `incident` is the one given in
    /// [`Action::RunDiagnostics`] or [`Action::RunPostMortem`] (`None` for operator and
    /// slow-shutdown snapshots).
    DiagnosticsFinished {
        incident: Option<u64>,
        path: Option<String>,
        error: Option<String>,
    },
    /// SIGTERM/SIGINT to the controller; the second one kills at once.
    StopRequested,
    DeadlineReached,
    /// The shell's loop ran late by `stalled_for` (SIGSTOP, swap storm, frozen cgroup,
    /// VM or system suspend): that long nobody watched the server, read its messages or
    /// ran its probes, so nothing measured across it is evidence of a hang.
    StallObserved {
        stalled_for: Duration,
    },
}

/// Who sent a message: the connecting process (peer credentials) and the line as it
/// was received, for the log when the message is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSender {
    pub pid: i32,
    pub line: String,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write one line; when `append_timedate`, add ` TimeDate=<now>` at the end.
    Log {
        component: Component,
        text: String,
        append_timedate: bool,
    },
    /// Start the server (SERVER_COMMAND).
    Spawn,
    /// Ask the server to quit (SERVER_STOP_COMMAND or SERVER_STOP_SIGNAL to its group).
    RequestStop,
    /// SIGKILL the server's whole process tree (and leftovers).
    KillTree,
    /// Start a probe attempt, abandoned (a failed attempt) after `limit`.
    Probe {
        limit: Duration,
    },
    /// Start resource sampling afresh: a new server tree is about to start, and its
    /// CPU figures must not be computed against the old tree's counters.
    ResetSampler,
    RunDiagnostics {
        reason: String,
        incident: Option<u64>,
    },
    /// The post-mortem of a server process that has ended (a crash): read what it left
    /// (the `/proc` snapshot of its leftover processes, bounded), report
    /// [`Event::PostMortemCaptured`] at once, then write the diagnostics file (and run
    /// `QOS_NSD_PATH`) while the server restarts, and report
    /// [`Event::DiagnosticsFinished`]. A dead server's restart never waits for its
    /// diagnostics.
    RunPostMortem {
        incident: u64,
    },
    /// Write the trigger file (`1`, or `0` when failover is disabled in the config).
    WriteTrigger,
    RemoveTrigger,
    /// What readiness/agent listeners answer.
    SetHealth(Health),
    /// Run the failover hook (`Failover`, `Faulted`) or the recovery hook.
    RunHook {
        event: HookEvent,
        reason: String,
        incident: u64,
    },
    Mail(Alert),
    /// A state change, for events, systemd STATUS= and metrics.
    StateChanged {
        from: StateName,
        to: StateName,
        why: String,
    },
    /// The failover state (the HA view) changed, for the log, events and the state
    /// record kept for `status` when no controller runs.
    FailoverChanged {
        from: FailoverState,
        to: FailoverState,
        why: String,
    },
    /// An incident opened (`Detected`) or progressed, for the events file and metrics.
    Incident {
        id: u64,
        kind: String,
        outcome: IncidentOutcome,
    },
    /// Answer an operator command.
    Reply {
        request: u64,
        ok: bool,
        message: String,
    },
    /// The controller's work is done: exit with this code.
    Exit(u8),
    /// Check the binary now at the controller's path and replace the running image with
    /// it, handing over this state; the shell answers `request` (a refusal if the check or
    /// the exec fails, in which case nothing changes).
    Reexec {
        request: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    pub summary: String,
    pub diagnostics: Option<String>,
    pub incident: Option<u64>,
}

/// What happens once a stopping server has exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum AfterStop {
    Exit,
    StayDown,
    Restart,
}

/// What happens once a kill (or crash cleanup) is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum AfterKill {
    /// Automatic restart: counts against the restart limit.
    AutoRestart,
    /// Operator-requested restart: does not count.
    OperatorRestart,
    StayDown,
    Exit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum State {
    Starting {
        pid: Option<i32>,
        #[serde(with = "instants::instant")]
        deadline: Instant,
    },
    Ready {
        pid: i32,
    },
    Stopping {
        pid: i32,
        #[serde(with = "instants::instant")]
        deadline: Instant,
        #[serde(with = "instants::option")]
        next_nsd: Option<Instant>,
        then: AfterStop,
    },
    Killing {
        pid: Option<i32>,
        phase: KillPhase,
        reason: Reason,
        incident: u64,
        #[serde(with = "instants::option")]
        deadline: Option<Instant>,
        then: AfterKill,
    },
    Crashed {
        pid: Option<i32>,
        incident: u64,
        diagnostics_done: bool,
        then: AfterKill,
    },
    /// `spawn_at`: a delayed restart (backoff after failed starts); `None` while the
    /// spawn itself is under way.
    Restarting {
        #[serde(with = "instants::option")]
        spawn_at: Option<Instant>,
    },
    Stopped,
    Faulted {
        #[serde(with = "instants::option")]
        clear_at: Option<Instant>,
    },
}

impl State {
    fn name(&self) -> StateName {
        match self {
            State::Starting { .. } => StateName::Starting,
            State::Ready { .. } => StateName::Ready,
            State::Stopping { .. } => StateName::Stopping,
            State::Killing { .. } => StateName::Killing,
            State::Crashed { .. } => StateName::Crashed,
            State::Restarting { .. } => StateName::Restarting,
            State::Stopped => StateName::Stopped,
            State::Faulted { .. } => StateName::Faulted,
        }
    }

    fn server_pid(&self) -> Option<i32> {
        match self {
            State::Starting { pid, .. }
            | State::Killing { pid, .. }
            | State::Crashed { pid, .. } => *pid,
            State::Ready { pid } | State::Stopping { pid, .. } => Some(*pid),
            State::Restarting { .. } | State::Stopped | State::Faulted { .. } => None,
        }
    }
}

/// Probe bookkeeping: cadence, last results and the timeout baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProbeTracker {
    /// Activated once the server is READY; probes in STARTING only look for readiness.
    active: bool,
    in_flight: bool,
    #[serde(with = "instants::option")]
    next_attempt: Option<Instant>,
    /// Start of the current timeout window: activation, the last success, or the moment
    /// long-running applications finished.
    #[serde(with = "instants::option")]
    baseline: Option<Instant>,
    #[serde(with = "instants::option")]
    last_success: Option<Instant>,
    last_result: Option<(bool, Duration, String)>,
    /// The probe has failed to answer within the timeout and the incident is open.
    timed_out: bool,
    /// The "long running applications" line was written for this window.
    deferral_logged: bool,
    /// A success after READY has not been seen yet (recovery needs one).
    awaiting_first_success: bool,
    /// When the attempt in flight (or the last one) was started.
    #[serde(with = "instants::option")]
    attempt_started: Option<Instant>,
    /// Since when the controller cannot probe (its own fault); the probe timeout does
    /// not run meanwhile, and the time does not count once probing works again.
    #[serde(default, with = "instants::option")]
    blind_since: Option<Instant>,
    /// Since when operator-requested diagnostics run on the live server. Stack
    /// collectors (gdb, eu-stack) stop the server's threads while they read them, so
    /// the probe cannot be answered meanwhile: that time is the controller's doing and
    /// must not turn into a probe timeout. Bounded by QOS_NSD_TIMEOUT.
    #[serde(default, with = "instants::option")]
    operator_diagnostics_since: Option<Instant>,
}

/// After a stall: no timeout is declared until a probe started after the stall has
/// answered, or until `until` (bounded wait).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StallHold {
    #[serde(with = "instants::instant")]
    since: Instant,
    #[serde(with = "instants::instant")]
    until: Instant,
}

/// Where an incident stands. Every incident starts `Detected` (the metric
/// `qoscntrlr_last_incident_timestamp_seconds` and the events file see each one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentOutcome {
    Detected,
    /// Diagnostics are being collected before a kill or restart.
    Diagnostics,
    Killing,
    Killed,
    /// Crash post-mortem done; the server is being restarted.
    Restarting,
    Restarted,
    /// The server was stopped on purpose after the kill (shutdown timeout).
    Stopped,
    /// QOS_NOKILL: reported, not acted on.
    NotKilled,
    /// The condition cleared by itself.
    RecoveredWithoutKill,
    /// A rule with a `failover` action: traffic moved, the server is kept.
    FailedOver,
    /// Paused: not acted on until resume.
    Suppressed,
    /// The restart limit was reached; the server is left down.
    Faulted,
    /// The server is READY and probing well again and traffic came back.
    Recovered,
}

impl IncidentOutcome {
    /// Every outcome (the `status --json` contract documents each of them).
    pub const ALL: [IncidentOutcome; 13] = [
        IncidentOutcome::Detected,
        IncidentOutcome::Diagnostics,
        IncidentOutcome::Killing,
        IncidentOutcome::Killed,
        IncidentOutcome::Restarting,
        IncidentOutcome::Restarted,
        IncidentOutcome::Stopped,
        IncidentOutcome::NotKilled,
        IncidentOutcome::RecoveredWithoutKill,
        IncidentOutcome::FailedOver,
        IncidentOutcome::Suppressed,
        IncidentOutcome::Faulted,
        IncidentOutcome::Recovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentOutcome::Detected => "detected",
            IncidentOutcome::Diagnostics => "diagnostics",
            IncidentOutcome::Killing => "killing",
            IncidentOutcome::Killed => "killed",
            IncidentOutcome::Restarting => "restarting",
            IncidentOutcome::Restarted => "restarted",
            IncidentOutcome::Stopped => "stopped",
            IncidentOutcome::NotKilled => "not-killed-nokill",
            IncidentOutcome::RecoveredWithoutKill => "recovered-without-kill",
            IncidentOutcome::FailedOver => "failover-server-kept",
            IncidentOutcome::Suppressed => "suppressed-paused",
            IncidentOutcome::Faulted => "faulted",
            IncidentOutcome::Recovered => "recovered",
        }
    }
}

impl std::fmt::Display for IncidentOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notable thing that happened, kept for status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRecord {
    pub id: u64,
    pub kind: String,
    #[serde(with = "instants::instant")]
    pub detected_at: Instant,
    pub outcome: IncidentOutcome,
    pub diagnostics: Option<String>,
}

/// The HA view for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverView {
    pub state: FailoverState,
    /// The failover outputs are down (trigger written, readiness/agent down).
    pub outputs_down: bool,
    /// What readiness and the agent say now.
    pub health: Health,
    /// Reasons holding the outputs down, e.g. `incident`, `faulted`, `nokill:probe-timeout`.
    pub holds: Vec<String>,
    /// FAILBACK_HOLD: when the outputs come back by themselves (None: waits for the
    /// operator, QOS_FAILBACK=manual).
    pub failback_at: Option<Instant>,
    pub awaiting_operator: bool,
    pub changed_at: Option<Instant>,
    pub changed_why: String,
}

/// Read-only view for `status`.
#[derive(Debug, Clone)]
pub struct CoreStatus {
    pub state: StateName,
    pub phase: Option<KillPhase>,
    pub why: String,
    pub state_since: Instant,
    pub server_pid: Option<i32>,
    pub server_started: Option<Instant>,
    pub restarts_in_window: usize,
    pub last_exit: Option<String>,
    pub probe_active: bool,
    pub probe_last_result: Option<(bool, Duration, String)>,
    pub probe_last_success: Option<Instant>,
    pub probe_timeout_at: Option<Instant>,
    /// Name, time since START, time since the last progress.
    pub apps: Vec<(String, Duration, Duration)>,
    pub paused: bool,
    pub paused_until: Option<Instant>,
    pub nokill: bool,
    pub failover_triggered: bool,
    pub failover: FailoverView,
    pub incidents: Vec<IncidentRecord>,
    /// Every rule in force, its last value and streak.
    pub rules: Vec<RuleStatus>,
    /// Keys of the `action=failover` rules holding the outputs down now.
    pub rule_failovers: Vec<String>,
}

fn serde_true() -> bool {
    true
}

/// The controller state machine. Its whole state is serde data (instants as offsets, see
/// [`instants`]) so `qoscntrlr reexec` hands it to the next image with every timer; a
/// field added here is carried over by the derive.
#[derive(Debug, Serialize, Deserialize)]
pub struct Controller {
    policy: Policy,
    state: State,
    why: String,
    #[serde(with = "instants::instant")]
    state_since: Instant,
    probe: ProbeTracker,
    apps: AppsList,
    #[serde(with = "instants::deque")]
    restarts: VecDeque<Instant>,
    paused: bool,
    #[serde(with = "instants::option")]
    paused_until: Option<Instant>,
    /// The failover outputs and why they are down (the HA state machine).
    ha: FailoverBook,
    /// What readiness/agent say from the server's state alone; the published view is
    /// `Down` instead whenever the failover outputs are down.
    server_health: Health,
    /// The server has been READY and probing well since (None while it is not).
    #[serde(with = "instants::option")]
    well_since: Option<Instant>,
    /// The server has sent at least one message since it was spawned, so READY will come
    /// as a message rather than from the first successful probe.
    server_speaks: bool,
    /// The controller logged `OpMsg=END Type=SERVER` for this run (it asked the server
    /// to stop): the server's own END is the same line again.
    own_end_logged: bool,
    #[serde(with = "instants::option")]
    server_started: Option<Instant>,
    last_exit: Option<String>,
    quit_requested: bool,
    /// A NOKILL incident is open (logged and reported once until the server recovers).
    nokill_incident: Option<u64>,
    /// What the open NOKILL incident is about (decides what clears it).
    nokill_reason: Option<Reason>,
    /// A pause suppressed this kill; it is carried out on resume if still due.
    pause_suppressed: Option<Reason>,
    /// The incident of the kill a pause holds back (`suppressed-paused` in status); the
    /// kill carried out on resume continues it.
    #[serde(default)]
    pause_incident: Option<u64>,
    /// A pause kept a server that went down from being restarted; resume restarts it.
    restart_on_resume: bool,
    /// The current (or last) server reached READY.
    became_ready: bool,
    /// Servers in a row that ended before READY (or never started): restarts back off.
    failed_starts: u32,
    /// Spawns in a row that failed (no process was started at all): retried after
    /// [`spawn_retry_backoff`], so a passing cause (a full or read-only disk, no free
    /// pids, missing memory) has time to clear before the restart limit is used up.
    /// (Defaults keep a handoff from a build without these fields readable.)
    #[serde(default)]
    spawn_failures: u32,
    /// The trigger file of the failover in effect was written (false when the shell
    /// reported [`Event::TriggerWriteFailed`]): recovery says "trigger removed" only then.
    /// An older build always wrote it, as far as it knew.
    #[serde(default = "serde_true")]
    trigger_written: bool,
    next_incident: u64,
    incidents: VecDeque<IncidentRecord>,
    /// Set after a stall longer than the probe interval (see [`Event::StallObserved`]).
    stall_hold: Option<StallHold>,
    /// SIGKILL rounds repeated because the server had not gone yet.
    #[serde(default)]
    kill_retries: u32,
    /// Server processes that have ended (their late messages are ignored).
    #[serde(default)]
    ended: EndedServers,
    /// A measured exhaustion (or a kill rule's breach) reported during a stall hold,
    /// acted on when it ends: the line to log then, and the kill's reason.
    deferred_exhaustion: Option<(String, Reason)>,
    /// Windows and breach state of every resource rule (absent in the state of an
    /// image without rules: they start empty).
    #[serde(default)]
    rules: RuleEngine,
    /// `action=failover` rules holding the failover outputs down: (key, incident).
    #[serde(default)]
    rule_failovers: Vec<(String, u64)>,
    /// Crash incidents whose post-mortem file is still being written after the restart
    /// began (their mail goes out when it is done; a re-exec waits for them).
    #[serde(default)]
    post_mortems: Vec<u64>,
}

/// A stall shorter than this is scheduling noise, not a stall.
pub const STALL_MIN: Duration = Duration::from_secs(1);
/// Beyond the time limit of one probe attempt, how long the controller waits for the
/// first answer after a stall before timeouts apply again.
const STALL_PROBE_SLACK: Duration = Duration::from_secs(5);

const KEPT_INCIDENTS: usize = 10;
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(60);
/// How long a killed tree may take to be reaped before the controller moves on.
const KILL_GRACE: Duration = Duration::from_secs(15);
/// Extra time granted to a diagnostics run beyond QOS_NSD_TIMEOUT before giving up on it.
const DIAGNOSTICS_GRACE: Duration = Duration::from_secs(30);

fn log(component: Component, text: impl Into<String>) -> Action {
    Action::Log {
        component,
        text: text.into(),
        append_timedate: false,
    }
}

/// A line of the wording table (the texts the log review reads), its variable parts
/// filled in order.
fn say(wording: &wording::Wording, args: &[&dyn std::fmt::Display]) -> Action {
    log(wording.component, wording.fill(args))
}

fn log_td(component: Component, text: impl Into<String>) -> Action {
    Action::Log {
        component,
        text: text.into(),
        append_timedate: true,
    }
}

/// How long to wait before restarting a server that failed `failed_starts` times in a row
/// before becoming ready: nothing for the first restart (a crash of a healthy server is
/// restarted at once), then 1 s, 2 s, 4 s … up to a minute, so a server that cannot start
/// does not spin the machine when the restart limit is off.
fn restart_backoff(failed_starts: u32) -> Option<Duration> {
    match failed_starts {
        0 | 1 => None,
        n => Some(MAX_RESTART_BACKOFF.min(Duration::from_secs(1 << (n - 2).min(6)))),
    }
}

/// How long to wait before trying again after `failures` spawns in a row could not start
/// any process: 5 s, 10 s, 20 s, 40 s, then a minute. Never at once: the cause (a
/// read-only or full disk, no free pids or memory) is outside the server and a retry
/// within the same second fails the same way, using up the restart limit for nothing.
pub fn spawn_retry_backoff(failures: u32) -> Duration {
    let first = Duration::from_secs(5);
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    MAX_RESTART_BACKOFF.min(first.saturating_mul(factor))
}

/// `5 minutes`, `30 seconds`, `1500 ms` — the reference's wording for durations.
pub fn describe_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms > 0 {
        let m = ms / 60_000;
        if m == 1 {
            "1 minute".into()
        } else {
            format!("{m} minutes")
        }
    } else if ms % 1000 == 0 {
        let s = ms / 1000;
        if s == 1 {
            "1 second".into()
        } else {
            format!("{s} seconds")
        }
    } else {
        format!("{ms} ms")
    }
}

/// The longest pause an operator may ask for (the same bound as every duration in the
/// configuration and on the command line: 3650 days). Anything longer is a typo or an
/// attack, and would not fit the clock arithmetic.
pub const MAX_PAUSE: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Durations beyond this are "for ever" in practice (a century); clamping to it keeps
/// every deadline far inside what `Instant` and timer wheels can represent.
pub const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `t + d` that never panics: every duration the core adds comes from outside (the
/// configuration, an operator, a message), and an `Instant` overflow would end the
/// controller and leave the server unsupervised. `d` is clamped to [`HORIZON`]; should
/// even that not fit, the latest representable instant below the sum is found by
/// halving.
pub fn later(t: Instant, d: Duration) -> Instant {
    let d = d.min(HORIZON);
    if let Some(at) = t.checked_add(d) {
        return at;
    }
    // Binary approach to the limit: a step that no longer fits is halved; one that fits is
    // taken (and cannot fit a second time, since double it did not), so this ends after
    // about as many rounds as the duration has bits.
    let mut at = t;
    let mut step = d;
    while !step.is_zero() {
        match at.checked_add(step) {
            Some(next) => at = next,
            None => step /= 2,
        }
    }
    at
}

impl Controller {
    pub fn new(policy: Policy, now: Instant) -> Controller {
        Controller {
            state: State::Stopped,
            why: "controller starting".into(),
            state_since: now,
            probe: ProbeTracker::default(),
            apps: AppsList::default(),
            restarts: VecDeque::new(),
            paused: false,
            paused_until: None,
            ha: FailoverBook::default(),
            server_health: Health::Down {
                reason: "starting".into(),
            },
            well_since: None,
            server_speaks: false,
            own_end_logged: false,
            server_started: None,
            last_exit: None,
            quit_requested: false,
            nokill_incident: None,
            nokill_reason: None,
            pause_suppressed: None,
            pause_incident: None,
            restart_on_resume: false,
            became_ready: false,
            failed_starts: 0,
            spawn_failures: 0,
            trigger_written: false,
            next_incident: 1,
            incidents: VecDeque::new(),
            stall_hold: None,
            deferred_exhaustion: None,
            kill_retries: 0,
            ended: EndedServers::default(),
            rules: RuleEngine::new(policy.rules.clone()),
            rule_failovers: Vec::new(),
            post_mortems: Vec::new(),
            policy,
        }
    }

    /// Replace the policy (SIGHUP reload). Running timers keep their deadlines; new ones
    /// use the new values.
    pub fn set_policy(&mut self, policy: Policy) {
        if policy.rules != self.policy.rules {
            // Unchanged rules keep their windows; a removed failover rule lets go of
            // the outputs at the next sampling pass.
            self.rules.replace(policy.rules.clone());
        }
        self.policy = policy;
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Pids of server processes known to have ended, oldest first (carried to an older
    /// image by a re-exec, which keeps them in the shell).
    pub fn ended_servers(&self) -> Vec<i32> {
        self.ended.pids().collect()
    }

    pub fn state(&self) -> StateName {
        self.state.name()
    }

    pub fn server_pid(&self) -> Option<i32> {
        self.state.server_pid()
    }

    /// Whether an operator paused kills and restarts (O(1), unlike [`Self::status`]).
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// How many long-running applications are listed (O(1), unlike [`Self::status`],
    /// which copies every one of them).
    pub fn apps_in_list(&self) -> usize {
        self.apps.len()
    }

    /// The items the rules in force watch (what a sampling pass must read).
    pub fn rule_items(&self) -> Vec<Item> {
        self.rules.items()
    }

    /// When the controller next wants [`Event::DeadlineReached`]: the earliest armed
    /// named timer ([`Controller::timers`]). Allocation-free; the loop asks every turn.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_timer().map(|(_, at)| at)
    }

    /// The named timer behind [`Controller::next_deadline`], and when it comes due.
    pub fn next_timer(&self) -> Option<(Timer, Instant)> {
        self.timers().next()
    }

    /// Every named timer of the current state: what the controller waits for and until
    /// when. Filled from the state on each call, so it can never disagree with it (the
    /// state's fields are the one record; a re-exec hands them over), into a fixed array.
    pub fn timers(&self) -> Timers {
        let mut timers = Timers::default();
        match &self.state {
            // While the controller cannot probe, a silent server cannot be seen to
            // become ready: its start is not timed meanwhile.
            State::Starting { deadline, .. } if self.probe.blind_since.is_none() => {
                timers.set(Timer::StartDeadline, Some(*deadline));
            }
            State::Stopping {
                deadline, next_nsd, ..
            } => {
                timers.set(Timer::StopDeadline, Some(*deadline));
                timers.set(Timer::ShutdownNsd, *next_nsd);
            }
            State::Killing { deadline, .. } => timers.set(Timer::KillDeadline, *deadline),
            State::Faulted { clear_at } => timers.set(Timer::FaultAutoClear, *clear_at),
            State::Restarting { spawn_at } => timers.set(Timer::RestartBackoff, *spawn_at),
            _ => {}
        }
        if self.probing_wanted() && !self.probe.in_flight {
            timers.set(Timer::ProbeDue, self.probe.next_attempt);
        }
        timers.set(Timer::ProbeTimeout, self.probe_timeout_at());
        if matches!(self.state, State::Ready { .. })
            && self.probe.operator_diagnostics_since.is_none()
        {
            timers.set(
                Timer::AppExpiry,
                self.apps.next_deadline(self.policy.apps_timeout),
            );
        }
        // While it is armed, the timeouts it defers wait for its end (`Timers::next`).
        timers.set(Timer::StallHold, self.stall_hold.map(|hold| hold.until));
        timers.set(Timer::PauseEnd, self.paused_until);
        timers.set(Timer::FailbackHold, self.ha.failback_at);
        timers.set(Timer::TrustTime, self.trust_at());
        timers
    }

    /// When QOS_ONLINE_TRUST_TIME empties the restart-limit window, if it will.
    fn trust_at(&self) -> Option<Instant> {
        if self.policy.online_trust_time.is_zero() || self.restarts.is_empty() {
            return None;
        }
        self.well_since
            .map(|t| later(t, self.policy.online_trust_time))
    }

    /// When the probe timeout fires if nothing succeeds before; `None` while it cannot.
    fn probe_timeout_at(&self) -> Option<Instant> {
        if !self.probe.active
            || self.probe.timed_out
            || !self.apps.is_empty()
            || self.probe.blind_since.is_some()
            || self.probe.operator_diagnostics_since.is_some()
        {
            return None;
        }
        if !matches!(self.state, State::Ready { .. }) {
            return None;
        }
        self.probe
            .baseline
            .map(|b| later(b, self.policy.probe_timeout))
    }

    /// Probe attempts are scheduled by the controller (not for `QOS_PROBE=message`).
    fn probing_wanted(&self) -> bool {
        self.policy.probing
            && !self.policy.probe_by_message
            && matches!(self.state, State::Starting { .. } | State::Ready { .. })
    }

    fn set_state(&mut self, now: Instant, state: State, why: impl Into<String>) -> Action {
        let from = self.state.name();
        if !matches!(state, State::Ready { .. }) {
            // Not READY: not "ready and probing well" any more; a failback hold and the
            // online trust time start again from the next recovery.
            self.well_since = None;
            self.ha.failback_at = None;
            self.ha.awaiting_operator = false;
        }
        self.state = state;
        if !matches!(self.state, State::Starting { .. } | State::Ready { .. }) {
            // A stall hold guards a running server's timeouts; it ends with that server.
            self.stall_hold = None;
        }
        self.why = why.into();
        self.state_since = now;
        Action::StateChanged {
            from,
            to: self.state.name(),
            why: self.why.clone(),
        }
    }

    /// Open an incident: every one is announced as `Detected` first.
    fn open_incident(&mut self, now: Instant, kind: &str, out: &mut Vec<Action>) -> u64 {
        let id = self.next_incident;
        self.next_incident += 1;
        self.incidents.push_back(IncidentRecord {
            id,
            kind: kind.to_string(),
            detected_at: now,
            outcome: IncidentOutcome::Detected,
            diagnostics: None,
        });
        while self.incidents.len() > KEPT_INCIDENTS {
            self.incidents.pop_front();
        }
        out.push(Action::Incident {
            id,
            kind: kind.to_string(),
            outcome: IncidentOutcome::Detected,
        });
        id
    }

    fn update_incident(
        &mut self,
        id: u64,
        outcome: IncidentOutcome,
        diagnostics: Option<&str>,
    ) -> Option<Action> {
        let record = self.incidents.iter_mut().find(|r| r.id == id)?;
        record.outcome = outcome;
        if let Some(d) = diagnostics {
            record.diagnostics = Some(d.to_string());
        }
        Some(Action::Incident {
            id,
            kind: record.kind.clone(),
            outcome,
        })
    }

    // ----- failover outputs (the HA state machine, core/ha.rs) --------------------

    /// The HA state as it follows from the outputs and the server's state.
    pub fn failover_state(&self) -> FailoverState {
        match self.state {
            State::Faulted { .. } | State::Stopped => FailoverState::OutOfService,
            _ if self.ha.in_failback_hold() => FailoverState::FailbackHold,
            _ if self.ha.down => FailoverState::FailoverTriggered,
            _ => FailoverState::InService,
        }
    }

    /// What readiness and the agent say now.
    fn published_health(&self) -> Health {
        if self.ha.down {
            Health::Down {
                reason: self.ha.down_reason.clone(),
            }
        } else {
            self.server_health.clone()
        }
    }

    /// The server's own health changed; published unless the outputs are held down.
    fn set_health(&mut self, health: Health, out: &mut Vec<Action>) {
        self.server_health = health;
        out.push(Action::SetHealth(self.published_health()));
    }

    /// READY, and (when probing) the probe is active and has succeeded since READY and
    /// has not failed since.
    fn is_well(&self) -> bool {
        matches!(self.state, State::Ready { .. })
            && (!self.policy.probing || self.well_since.is_some())
    }

    /// Put the failover outputs down for `hold` (or keep them down for one more reason):
    /// trigger file, then readiness/agent down, then the hook — the order a smart kill
    /// needs before diagnostics start. A failback hold in progress is cancelled: a server
    /// that is sick again inside the hold never gets traffic back in between.
    #[allow(clippy::too_many_arguments)]
    fn hold_down(
        &mut self,
        hold: Hold,
        reason: &str,
        hook: HookEvent,
        hook_reason: &str,
        incident: u64,
        out: &mut Vec<Action>,
    ) {
        let was_down = self.ha.down;
        let already_held = self.ha.holds.contains(&hold);
        if self.ha.in_failback_hold() {
            out.push(log(
                Component::Controller,
                format!("Failback hold cancelled: {reason}; the failover outputs stay down"),
            ));
        }
        self.ha.failback_at = None;
        self.ha.awaiting_operator = false;
        self.ha.holds.insert(hold);
        self.ha.down = true;
        self.ha.down_reason = reason.to_string();
        self.ha.incident = Some(incident);
        // Written again even when already down: cheap, and it repairs a deleted file.
        self.trigger_written = true;
        out.push(Action::WriteTrigger);
        out.push(Action::SetHealth(self.published_health()));
        // The failover hook announces the move; FAULTED is announced even when traffic
        // had already moved (the server is now not coming back by itself), but only once
        // (a FAULTED decided ahead, see `fault_ahead`, is not announced again).
        let announce = !was_down || (hook == HookEvent::Faulted && !already_held);
        if announce && !self.policy.failover_trigger_disabled {
            out.push(Action::RunHook {
                event: hook,
                reason: hook_reason.to_string(),
                incident,
            });
        }
    }

    /// One reason for the outputs to be down is gone; they come back when none is left
    /// and the server is well (after the failback hold).
    fn release(&mut self, now: Instant, hold: &Hold, out: &mut Vec<Action>) {
        if self.ha.holds.remove(hold) {
            self.try_failback(now, out);
        }
    }

    /// Release every NOKILL hold (the condition ended, or the server went away).
    fn end_nokill(
        &mut self,
        now: Instant,
        outcome: Option<IncidentOutcome>,
        out: &mut Vec<Action>,
    ) {
        self.nokill_reason = None;
        if let Some(id) = self.nokill_incident.take() {
            if let Some(outcome) = outcome {
                if let Some(a) = self.update_incident(id, outcome, None) {
                    out.push(a);
                }
            }
        }
        let nokill: Vec<Hold> = self
            .ha
            .holds
            .iter()
            .filter(|h| matches!(h, Hold::NoKill(_)))
            .cloned()
            .collect();
        for hold in nokill {
            self.release(now, &hold, out);
        }
    }

    /// Every hold is released and the server is well: start the failback hold, wait for
    /// the operator, or bring the outputs back now.
    fn try_failback(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.ha.down || !self.ha.holds.is_empty() || !self.is_well() {
            return;
        }
        if self.ha.in_failback_hold() {
            return;
        }
        if self.policy.failback == FailbackMode::Manual {
            self.ha.awaiting_operator = true;
            out.push(log(Component::Controller, "Server is ready and probing well; QOS_FAILBACK=manual: the failover outputs stay down until qoscntrlr failback"));
            return;
        }
        if !self.policy.failback_hold.is_zero() {
            let hold = self.policy.failback_hold;
            self.ha.failback_at = Some(later(now, hold));
            out.push(log(
                Component::Controller,
                format!(
                    "Server is ready and probing well; failback hold: the failover outputs stay down for {} (QOS_FAILBACK_HOLD)",
                    describe_duration(hold)
                ),
            ));
            return;
        }
        self.failback(out);
    }

    /// Bring the failover outputs back: trigger removed, readiness/agent up, recovery
    /// hook and mail.
    fn failback(&mut self, out: &mut Vec<Action>) {
        self.ha.down = false;
        self.ha.failback_at = None;
        self.ha.awaiting_operator = false;
        self.ha.holds.clear();
        let incident = self
            .ha
            .incident
            .take()
            .or_else(|| self.incidents.back().map(|r| r.id))
            .unwrap_or(self.next_incident);
        out.push(Action::RemoveTrigger);
        out.push(Action::SetHealth(self.published_health()));
        if std::mem::take(&mut self.trigger_written) {
            out.push(say(&wording::SERVER_RECOVERED, &[]));
        } else {
            out.push(say(&wording::SERVER_RECOVERED_NO_TRIGGER, &[]));
        }
        out.push(Action::RunHook {
            event: HookEvent::Recovery,
            reason: "recovered".into(),
            incident,
        });
        out.push(Action::Mail(Alert {
            kind: AlertKind::Recovery,
            summary: "The server is ready and probing well again.".into(),
            diagnostics: None,
            incident: Some(incident),
        }));
        let open = self
            .incidents
            .iter()
            .find(|r| r.id == incident)
            .is_some_and(|r| r.outcome != IncidentOutcome::RecoveredWithoutKill);
        if open {
            if let Some(a) = self.update_incident(incident, IncidentOutcome::Recovered, None) {
                out.push(a);
            }
        }
    }

    /// After every event: note a change of the HA state (log, events, state record).
    fn note_failover_state(&mut self, now: Instant, out: &mut Vec<Action>) {
        let to = self.failover_state();
        let from = self.ha.state.unwrap_or(FailoverState::InService);
        if self.ha.state == Some(to) {
            return;
        }
        if self.ha.state.is_none() && to == FailoverState::InService {
            self.ha.state = Some(to);
            self.ha.changed_at = Some(now);
            self.ha.changed_why = "controller started".into();
            return;
        }
        let why = match to {
            FailoverState::InService if from == FailoverState::OutOfService => {
                format!("server {}", self.state.name().as_str())
            }
            FailoverState::InService => "server ready and probing well".to_string(),
            FailoverState::FailoverTriggered => {
                if self.ha.holds.is_empty() {
                    format!(
                        "{} (waiting for the server to be ready and probing well)",
                        self.ha.down_reason
                    )
                } else {
                    self.ha.down_reason.clone()
                }
            }
            FailoverState::FailbackHold => match self.ha.failback_at {
                Some(at) => format!(
                    "server ready and probing well; outputs back in {}",
                    describe_duration(at.saturating_duration_since(now))
                ),
                None => "server ready and probing well; waiting for qoscntrlr failback".to_string(),
            },
            FailoverState::OutOfService => {
                format!("server {} ({})", self.state.name().as_str(), self.why)
            }
        };
        self.ha.state = Some(to);
        self.ha.changed_at = Some(now);
        self.ha.changed_why = why.clone();
        out.push(Action::FailoverChanged { from, to, why });
    }

    /// The one entry point: feed an event that happened at `now`, get the actions.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::ControllerStarted { trigger_present } => {
                self.trigger_written = trigger_present;
                if trigger_present {
                    self.ha.down = true;
                    self.ha.down_reason = "failover left by a previous run".into();
                    out.push(log(Component::Controller, "Failover trigger left by a previous run is kept until the server is healthy"));
                }
                self.set_health(
                    Health::Down {
                        reason: "starting".into(),
                    },
                    &mut out,
                );
                self.spawn(now, "controller started", &mut out);
            }
            Event::ServerSpawned { pid, program } => {
                // A recycled pid given to the new server is that server's, not a ghost.
                self.ended.remove(pid);
                self.on_spawned(now, pid, &program, &mut out)
            }
            Event::SpawnFailed { error } => self.on_spawn_failed(now, &error, &mut out),
            Event::TriggerWriteFailed { error } => self.on_trigger_write_failed(&error, &mut out),
            Event::ServerExited { pid, exit } => {
                if self.state.server_pid() == Some(pid) {
                    self.ended.add([pid]);
                }
                self.on_exited(now, pid, &exit, &mut out)
            }
            Event::ServerProcessesEnded { pids } => self.ended.add(pids),
            Event::ProbeFinished {
                success,
                latency,
                detail,
            } => self.on_probe(now, success, latency, &detail, &mut out),
            Event::ProbeUnavailable { reason } => self.on_probe_unavailable(now, &reason, &mut out),
            Event::MessageReceived {
                from: Some(MessageSender { pid, line }),
                ..
            } if self.ended.contains(pid) => {
                // Written before that server ended, read after its successor started: it
                // would act on the wrong server (an END would stop the new one).
                out.push(log(
                    Component::Controller,
                    format!("Ignored a message from server process {pid}, which has ended: {line}"),
                ));
            }
            Event::MessageReceived {
                text,
                append_timedate,
                signal,
                from: _,
            } => {
                if !self.repeats_own_line(&signal) {
                    out.push(Action::Log {
                        component: Component::Controller,
                        text,
                        append_timedate,
                    });
                }
                self.on_signal(now, signal, &mut out);
            }
            Event::MessageRejected { reason } => {
                out.push(log(
                    Component::Controller,
                    format!("Message rejected: {reason}"),
                ));
            }
            Event::ResourceWarning { resource, detail } => {
                out.push(log(
                    Component::Controller,
                    format!("Warning: server is close to its {resource} limit ({detail})"),
                ));
                out.push(Action::Mail(Alert {
                    kind: AlertKind::ResourceWarning {
                        resource: resource.clone(),
                    },
                    summary: format!("The server is close to its {resource} limit: {detail}."),
                    diagnostics: None,
                    incident: None,
                }));
            }
            Event::ResourceExhausted { resource, detail } if self.holding(now) => {
                out.push(log(
                    Component::Controller,
                    format!(
                        "{}; acting once the probe after the stall has answered",
                        wording::SERVER_EXHAUSTED.fill(&[&resource, &detail])
                    ),
                ));
                let line = wording::SERVER_EXHAUSTED.fill(&[&resource, &detail]);
                self.deferred_exhaustion = Some((line, Reason::Exhausted { resource, detail }));
            }
            Event::ResourceExhausted { resource, detail } => {
                if matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
                    out.push(log(
                        Component::Controller,
                        wording::SERVER_EXHAUSTED.fill(&[&resource, &detail]),
                    ));
                    self.smart_kill(now, Reason::Exhausted { resource, detail }, &mut out);
                }
            }
            Event::OomKilled { kills, total } => self.on_oom_killed(now, kills, total, &mut out),
            Event::ResourcesSampled { readings } => self.on_samples(now, &readings, &mut out),
            Event::CommandReceived {
                command,
                uid,
                request,
            } => self.on_command(now, command, uid, request, &mut out),
            Event::DiagnosticsFinished {
                incident,
                path,
                error,
            } => self.on_diagnostics(now, incident, path, error, &mut out),
            Event::PostMortemCaptured { incident } => {
                self.on_post_mortem_captured(now, incident, &mut out)
            }
            Event::StopRequested => self.on_stop_requested(now, &mut out),
            Event::ResourceRecovered { resource } => {
                self.resource_back(now, &resource, &mut out);
            }
            Event::DeadlineReached => self.on_deadline(now, &mut out),
            Event::StallObserved { stalled_for } => self.on_stall(now, stalled_for, &mut out),
        }
        if self.stall_hold.is_none() {
            if let Some((line, reason)) = self.deferred_exhaustion.take() {
                if matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
                    if !line.is_empty() {
                        out.push(log(Component::Controller, line));
                    }
                    self.smart_kill(now, reason, &mut out);
                }
            }
        }
        self.note_failover_state(now, &mut out);
        out
    }

    /// A measured resource is back under its limit (a shorthand rule such as
    /// QOS_MAX_MEMORY cleared): a QOS_NOKILL condition about it ends, and so does a kill
    /// a pause held back — the server got out of it by itself.
    fn resource_back(&mut self, now: Instant, resource: &str, out: &mut Vec<Action>) {
        let about = |reason: &Option<Reason>| matches!(reason, Some(Reason::Exhausted { resource: r, .. }) if r == resource);
        if about(&self.nokill_reason) {
            out.push(log(
                Component::Controller,
                wording::NOKILL_RESOURCE_BACK.fill(&[&resource]),
            ));
            self.end_nokill(now, Some(IncidentOutcome::RecoveredWithoutKill), out);
        }
        if about(&self.pause_suppressed) {
            out.push(log(
                Component::Controller,
                wording::RESOURCE_BACK_NO_KILL.fill(&[&resource]),
            ));
            self.pause_suppressed = None;
            self.end_suppressed(IncidentOutcome::RecoveredWithoutKill, out);
        }
    }

    /// The incident a pause held back is over without a kill.
    fn end_suppressed(&mut self, outcome: IncidentOutcome, out: &mut Vec<Action>) {
        if let Some(id) = self.pause_incident.take() {
            if let Some(a) = self.update_incident(id, outcome, None) {
                out.push(a);
            }
        }
    }

    /// An OOM kill in the server's cgroup: logged, mailed and recorded as an incident.
    /// Nothing is killed or restarted for it: if the server itself died, its exit is
    /// the crash that follows; if a worker died, the server may well cope.
    fn on_oom_killed(&mut self, now: Instant, kills: u64, total: u64, out: &mut Vec<Action>) {
        if kills == 0 {
            return;
        }
        let id = self.open_incident(now, "oom-kill", out);
        out.push(log(
            Component::Controller,
            wording::OOM_KILLED.fill(&[&kills, &total]),
        ));
        out.push(Action::Mail(Alert {
            kind: AlertKind::Other {
                event: "OOM kill".into(),
            },
            summary: format!(
                "The kernel's out-of-memory killer killed {kills} process(es) of server {} \
                 (oom_kill count of its cgroup: {total}).",
                self.policy.server_name
            ),
            diagnostics: None,
            incident: Some(id),
        }));
    }

    // ----- spawning and readiness -------------------------------------------------

    fn spawn(&mut self, now: Instant, why: &str, out: &mut Vec<Action>) {
        self.apps.clear();
        // A new tree: windows start over (see RuleEngine::reset for what is kept), and
        // so do the sampler's CPU counters.
        self.rules.reset();
        out.push(Action::ResetSampler);
        self.server_speaks = false;
        self.became_ready = false;
        self.probe = ProbeTracker::default();
        out.push(self.set_state(now, State::Restarting { spawn_at: None }, why));
        out.push(Action::Spawn);
    }

    fn on_spawned(&mut self, now: Instant, pid: i32, program: &str, out: &mut Vec<Action>) {
        self.spawn_failures = 0;
        let name = self.policy.server_name.clone();
        out.push(log_td(
            Component::Controller,
            format!(
                "OpMsg=START Type=QOS ObjectType=ServerName ObjectValue={name} ObjectType2=ProcessName ObjectValue2={program}"
            ),
        ));
        out.push(log_td(Component::Controller, "OpMsg=START Type=SERVER"));
        out.push(say(&wording::CLEARING_APPS, &[]));
        self.own_end_logged = false;
        self.server_started = Some(now);
        let deadline = later(now, self.policy.restart_timeout);
        out.push(self.set_state(
            now,
            State::Starting {
                pid: Some(pid),
                deadline,
            },
            "waiting for the server to be ready",
        ));
        if !self.policy.probing {
            // Without a probe nothing but the process itself can prove readiness.
            self.become_ready(now, pid, false, out);
            return;
        }
        if !self.policy.probe_by_message {
            // First attempt straight away: a server that sends no READY becomes READY on it.
            self.probe.next_attempt = Some(now);
        }
    }

    /// The trigger file could not be written (read-only or full data directory): the
    /// HA stack that watches the file does not move traffic, so this is an alert of its
    /// own. Readiness, the agent port and the hooks have been told already and stay
    /// down; they do not depend on the file.
    fn on_trigger_write_failed(&mut self, error: &str, out: &mut Vec<Action>) {
        self.trigger_written = false;
        out.push(log(
            Component::Kill,
            format!(
                "ALERT: the failover trigger could not be written ({error}); readiness, agent and hooks still report the server down"
            ),
        ));
        out.push(Action::Mail(Alert {
            kind: AlertKind::Other {
                event: "failover trigger not written".into(),
            },
            summary: format!(
                "The failover trigger file could not be written: {error}. Anything that watches the file (keepalived track_file) has NOT moved traffic away; the readiness endpoint, the agent port and the failover hook report the server down."
            ),
            diagnostics: None,
            incident: self.incidents.back().map(|r| r.id),
        }));
    }

    fn on_spawn_failed(&mut self, now: Instant, error: &str, out: &mut Vec<Action>) {
        self.spawn_failures = self.spawn_failures.saturating_add(1);
        out.push(log(
            Component::Controller,
            format!("Cannot start the server: {error}"),
        ));
        self.last_exit = Some(format!("not started: {error}"));
        self.after_down(now, AfterKill::AutoRestart, None, out);
    }

    fn become_ready(&mut self, now: Instant, pid: i32, log_ready: bool, out: &mut Vec<Action>) {
        if log_ready {
            out.push(log_td(Component::Controller, "OpMsg=READY Type=SERVER"));
        }
        out.push(say(&wording::SERVER_READY, &[]));
        self.became_ready = true;
        self.failed_starts = 0;
        out.push(self.set_state(now, State::Ready { pid }, "server is ready"));
        if self.policy.probing {
            out.push(say(&wording::ACTIVATING_PROBE, &[]));
            out.push(say(&wording::PROBE_ACTIVATED, &[]));
            out.push(say(&wording::STARTING_QOSPROBE, &[]));
            out.push(say(&wording::PROBE_START, &[]));
            out.push(say(&wording::PROBE_PROBING, &[]));
            self.probe.active = true;
            self.probe.baseline = Some(now);
            self.probe.timed_out = false;
            self.probe.deferral_logged = false;
            self.probe.awaiting_first_success = true;
            if !self.policy.probe_by_message && !self.probe.in_flight {
                self.probe.next_attempt = Some(now);
            }
        } else {
            self.recovered(now, out);
        }
    }

    /// The server is READY and probing well: the holds of the incident and of FAULTED
    /// end; the outputs come back (after the failback hold) if nothing else holds them.
    fn recovered(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.well_since = Some(now);
        self.set_health(Health::Ready, out);
        // A restart timeout under QOS_NOKILL ends when the server is ready after all.
        if matches!(self.nokill_reason, Some(Reason::RestartTimeout)) {
            self.end_nokill(now, Some(IncidentOutcome::RecoveredWithoutKill), out);
        }
        self.ha.holds.remove(&Hold::Incident);
        self.ha.holds.remove(&Hold::Faulted);
        self.try_failback(now, out);
    }

    fn deactivate_probe(&mut self, out: &mut Vec<Action>) {
        if self.probe.active {
            out.push(say(&wording::DEACTIVATING_PROBE, &[]));
            out.push(say(&wording::PROBE_DEACTIVATED, &[]));
        }
        self.probe.active = false;
        self.probe.next_attempt = None;
        self.probe.baseline = None;
    }

    /// The controller could not make a probe attempt (its own fault): logged and
    /// alerted once per episode; the probe timeout waits for a real answer.
    fn on_probe_unavailable(&mut self, now: Instant, reason: &str, out: &mut Vec<Action>) {
        self.probe.in_flight = false;
        if self.probe.blind_since.is_some() {
            return;
        }
        self.probe.blind_since = Some(now);
        out.push(log(
            Component::Controller,
            format!(
                "Controller fault: cannot probe the server ({reason}); not counted against the server"
            ),
        ));
        out.push(Action::Mail(Alert {
            kind: AlertKind::Other {
                event: "controller fault".into(),
            },
            summary: format!(
                "The controller cannot probe the server: {reason}. This is a fault of the controller (out of file descriptors), not of the server; the server is kept and probing is retried."
            ),
            diagnostics: None,
            incident: None,
        }));
    }

    // ----- stalls -----------------------------------------------------------------

    /// A stall hold is in force at `now`.
    fn holding(&self, now: Instant) -> bool {
        self.stall_hold.is_some_and(|hold| now < hold.until)
    }

    /// The loop ran `stalled_for` late. Longer than the probe interval, that blind time
    /// could otherwise look like a hang: the probe baseline, the applications' progress
    /// and the state's own deadline move on by the stall (it does not count), a probe is
    /// sent at once, and no timeout is declared until it answers or a bounded wait ends.
    fn on_stall(&mut self, now: Instant, stalled_for: Duration, out: &mut Vec<Action>) {
        let probing = self.policy.probing
            && matches!(self.state, State::Starting { .. } | State::Ready { .. });
        let threshold = if probing {
            self.policy.probe_interval.max(STALL_MIN)
        } else {
            STALL_MIN
        };
        if stalled_for <= threshold {
            return;
        }
        // Whole seconds, rounded: "stalled for 10 s" after a 10 s SIGSTOP.
        let secs = stalled_for.as_millis().saturating_add(500) / 1000;
        let how = if probing {
            "probing again before acting"
        } else {
            "timers continue from where they were"
        };
        out.push(log(
            Component::Controller,
            format!("Controller was stalled for {secs} s; {how}"),
        ));
        let moved = |t: Instant| later(t, stalled_for).min(now);
        if let Some(baseline) = self.probe.baseline {
            self.probe.baseline = Some(moved(baseline));
        }
        self.apps.shift_progress(stalled_for, now);
        let shift = |t: Instant| later(t, stalled_for);
        match &mut self.state {
            State::Starting { deadline, .. } => *deadline = shift(*deadline),
            State::Stopping {
                deadline, next_nsd, ..
            } => {
                *deadline = shift(*deadline);
                *next_nsd = next_nsd.map(shift);
            }
            State::Killing { deadline, .. } => *deadline = deadline.map(shift),
            _ => {}
        }
        if probing {
            let attempt_limit = self.policy.probe_interval.min(self.policy.probe_timeout);
            self.stall_hold = Some(StallHold {
                since: now,
                until: later(now, attempt_limit.saturating_add(STALL_PROBE_SLACK)),
            });
            if !self.policy.probe_by_message {
                self.probe.next_attempt = Some(now);
                self.schedule_probe(now, out);
            }
        }
    }

    /// Operator diagnostics are done: the time they held the server's threads does not
    /// count against the probe or the applications, and a fresh probe goes out at once.
    fn end_operator_diagnostics(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(since) = self.probe.operator_diagnostics_since.take() else {
            return;
        };
        let held = now.saturating_duration_since(since);
        if let Some(baseline) = self.probe.baseline {
            self.probe.baseline = Some(later(baseline, held).min(now));
        }
        self.apps.shift_progress(held, now);
        if self.probing_wanted() && !self.probe.in_flight {
            self.probe.next_attempt = Some(now);
            self.schedule_probe(now, out);
        }
    }

    /// A stall hold ran out without an answer: timeouts apply again.
    fn end_stall_hold(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Some(hold) = self.stall_hold {
            if now >= hold.until {
                self.stall_hold = None;
                out.push(log(
                    Component::Controller,
                    "No probe answer since the stall; timeouts apply again",
                ));
            }
        }
    }

    // ----- probe ------------------------------------------------------------------

    fn on_probe(
        &mut self,
        now: Instant,
        success: bool,
        latency: Duration,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        self.probe.in_flight = false;
        if let Some(since) = self.probe.blind_since.take() {
            let blind = now.saturating_duration_since(since);
            out.push(log(
                Component::Controller,
                format!(
                    "The controller can probe again after {} s; that time does not count against the server",
                    blind.as_secs()
                ),
            ));
            if let Some(baseline) = self.probe.baseline {
                self.probe.baseline = Some(later(baseline, blind).min(now));
            }
            if let State::Starting { deadline, .. } = &mut self.state {
                *deadline = later(*deadline, blind);
            }
        }
        if let Some(hold) = self.stall_hold {
            let stale = self
                .probe
                .attempt_started
                .is_some_and(|started| started < hold.since);
            if success || !stale {
                // The first answer after the stall decides; timeouts apply again.
                self.stall_hold = None;
            } else if !self.policy.probe_by_message {
                // That attempt straddled the stall (its own time limit ran out while the
                // controller was stopped): ask again at once.
                self.probe.next_attempt = Some(now);
            }
        }
        if !matches!(self.state, State::Starting { .. } | State::Ready { .. }) {
            return;
        }
        if success {
            out.push(log(
                Component::Probe,
                wording::PROBE_SUCCESS.fill(&[&latency.as_millis()]),
            ));
        } else {
            out.push(log(Component::Probe, wording::PROBE_ERROR.fill(&[&detail])));
        }
        self.probe.last_result = Some((success, latency, detail.to_string()));
        if !success {
            if matches!(self.state, State::Ready { .. }) && self.well_since.is_some() {
                // "Probing well" means without failures: the failback hold and the
                // online trust time start again at the next success.
                self.well_since = None;
                if self.ha.failback_at.take().is_some() {
                    out.push(log(
                        Component::Controller,
                        "Failback hold restarted: the probe failed",
                    ));
                }
            }
            return;
        }
        self.probe.last_success = Some(now);
        match self.state {
            State::Starting { pid: Some(pid), .. } if !self.server_speaks => {
                self.become_ready(now, pid, true, out);
                // This success is the first one after READY too.
                self.first_success_after_ready(now, out);
            }
            State::Ready { .. } => {
                self.probe.baseline = Some(now);
                if self.probe.timed_out {
                    self.probe.timed_out = false;
                    if matches!(self.pause_suppressed, Some(Reason::ProbeTimeout)) {
                        // Only a probe timeout is cleared by a probe answering again; an
                        // exhaustion or a stalled application held back by the pause
                        // is still there.
                        self.pause_suppressed = None;
                        out.push(say(&wording::PROBE_OK_NO_KILL, &[]));
                        self.end_suppressed(IncidentOutcome::RecoveredWithoutKill, out);
                    } else if matches!(self.nokill_reason, Some(Reason::ProbeTimeout)) {
                        out.push(say(&wording::NOKILL_PROBE_RECOVERED, &[]));
                        self.end_nokill(now, Some(IncidentOutcome::RecoveredWithoutKill), out);
                    } else {
                        out.push(say(&wording::PROBE_OK_NO_KILL, &[]));
                    }
                }
                if self.probe.awaiting_first_success {
                    self.first_success_after_ready(now, out);
                } else if self.well_since.is_none() {
                    self.well_since = Some(now);
                    self.try_failback(now, out);
                }
            }
            _ => {}
        }
    }

    fn first_success_after_ready(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.probe.awaiting_first_success {
            self.probe.awaiting_first_success = false;
            self.recovered(now, out);
        }
    }

    fn schedule_probe(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.probing_wanted() || self.probe.in_flight {
            return;
        }
        if let Some(at) = self.probe.next_attempt {
            if now >= at {
                self.probe.in_flight = true;
                // Keep the cadence anchored to the schedule, not to when we got here.
                let mut next = later(at, self.policy.probe_interval);
                if next <= now {
                    next = later(now, self.policy.probe_interval);
                }
                self.probe.next_attempt = Some(next);
                self.probe.attempt_started = Some(now);
                out.push(Action::Probe {
                    limit: self.policy.probe_attempt_timeout,
                });
            }
        }
    }

    fn check_probe_timeout(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.probe.active
            || self.probe.timed_out
            || self.holding(now)
            || self.probe.blind_since.is_some()
            || self.probe.operator_diagnostics_since.is_some()
        {
            return;
        }
        if !matches!(self.state, State::Ready { .. }) {
            return;
        }
        let Some(baseline) = self.probe.baseline else {
            return;
        };
        if now < later(baseline, self.policy.probe_timeout) {
            return;
        }
        if !self.apps.is_empty() {
            if !self.probe.deferral_logged {
                self.probe.deferral_logged = true;
                out.push(say(&wording::LONG_RUNNING_WAIT, &[]));
            }
            return;
        }
        self.probe.timed_out = true;
        out.push(say(&wording::PROBE_THREAD_TIMEOUT, &[]));
        out.push(say(&wording::PROBE_ADDIN_TIMEOUT, &[]));
        // The reference deactivates the probe here, before the TIMEOUT message, when the
        // server is going to be killed. Under QOS_NOKILL, pause or QOS_ENABLE=0 probing
        // goes on: its next success is how the condition is seen to clear.
        if self.policy.qos_enable && !self.policy.nokill && !self.paused {
            self.deactivate_probe(out);
        }
        out.push(log_td(Component::Controller, "OpMsg=TIMEOUT Type=PROBE"));
        out.push(say(&wording::PROBE_TIMEOUT_RECEIVED, &[]));
        self.smart_kill(now, Reason::ProbeTimeout, out);
    }

    // ----- messages ---------------------------------------------------------------

    /// A server that announces its own START and END repeats lines the controller
    /// wrote itself at the spawn and at its stop request; logging them twice would
    /// double every start and quit a support engineer counts.
    fn repeats_own_line(&self, signal: &ServerSignal) -> bool {
        match signal {
            ServerSignal::QosStart | ServerSignal::ServerStart => {
                matches!(self.state, State::Starting { .. })
            }
            ServerSignal::ServerEnd { .. } => self.own_end_logged,
            _ => false,
        }
    }

    fn on_signal(&mut self, now: Instant, signal: ServerSignal, out: &mut Vec<Action>) {
        if self.state.server_pid().is_some() {
            self.server_speaks = true;
        }
        match signal {
            ServerSignal::QosStart | ServerSignal::ServerStart => {}
            ServerSignal::ServerReady => {
                if let State::Starting { pid: Some(pid), .. } = self.state {
                    self.become_ready(now, pid, false, out);
                }
            }
            ServerSignal::ServerEnd { restart } => {
                if let State::Starting { pid: Some(pid), .. } | State::Ready { pid } = self.state {
                    self.deactivate_probe(out);
                    self.apps.clear();
                    self.end_nokill(now, None, out);
                    self.set_health(Health::Drain, out);
                    let then = if restart {
                        AfterStop::Restart
                    } else {
                        AfterStop::StayDown
                    };
                    self.enter_stopping(now, pid, then, "the server is shutting down", out);
                }
            }
            ServerSignal::QosEnd => {}
            ServerSignal::Crash => {
                if matches!(self.state, State::Starting { .. } | State::Ready { .. }) {
                    let pid = self.state.server_pid();
                    self.crashed(now, pid, None, out);
                }
            }
            ServerSignal::ProbeTimeout => {
                if matches!(self.state, State::Ready { .. }) {
                    out.push(say(&wording::PROBE_TIMEOUT_RECEIVED, &[]));
                    self.probe.timed_out = true;
                    self.smart_kill(now, Reason::ProbeTimeout, out);
                }
            }
            ServerSignal::ProbeResult {
                success,
                latency_ms,
                detail,
            } => {
                if self.policy.probe_by_message {
                    let latency = Duration::from_millis(latency_ms.unwrap_or(0));
                    let detail = detail.unwrap_or_else(|| "probe error reported".into());
                    self.on_probe(now, success, latency, &detail, out);
                }
            }
            ServerSignal::Exhausted { resource } => {
                if matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
                    out.push(log(
                        Component::Controller,
                        wording::SERVER_OUT_OF.fill(&[&resource]),
                    ));
                    self.smart_kill(now, Reason::OutOf { resource }, out);
                }
            }
            ServerSignal::AppStart { app } => {
                if self.apps.start(app.clone(), now) == StartOutcome::Added {
                    out.push(log(
                        Component::Applications,
                        wording::ADDING_APP.fill(&[&app]),
                    ));
                } else {
                    out.push(log(
                        Component::Applications,
                        format!("Refreshing {app} in long running apps list"),
                    ));
                }
            }
            ServerSignal::AppProgress { app } => {
                if !self.apps.progress(&app, now) {
                    out.push(log(
                        Component::Applications,
                        format!("Progress of {app}, which is not in the long running apps list; ignored"),
                    ));
                } else {
                    self.app_condition_cleared(now, &app.to_string(), "made progress", out);
                }
            }
            ServerSignal::AppEnd { app } => {
                if self.apps.end(&app) {
                    out.push(log(
                        Component::Applications,
                        wording::REMOVING_APP.fill(&[&app]),
                    ));
                    self.app_condition_cleared(now, &app.to_string(), "ended", out);
                    if self.apps.is_empty() && self.probe.deferral_logged {
                        // Probing resumes with a full timeout window.
                        self.probe.deferral_logged = false;
                        self.probe.baseline = Some(now);
                    }
                } else {
                    out.push(log(
                        Component::Applications,
                        format!(
                            "End of {app}, which is not in the long running apps list; ignored"
                        ),
                    ));
                }
            }
        }
    }

    /// A stalled application under QOS_NOKILL moved again: that condition has cleared.
    fn app_condition_cleared(&mut self, now: Instant, app: &str, how: &str, out: &mut Vec<Action>) {
        if matches!(&self.nokill_reason, Some(Reason::AppTimeout { app: a }) if a == app) {
            out.push(log(
                Component::Controller,
                wording::NOKILL_APP_MOVED.fill(&[&app, &how]),
            ));
            self.end_nokill(now, Some(IncidentOutcome::RecoveredWithoutKill), out);
        }
        if matches!(&self.pause_suppressed, Some(Reason::AppTimeout { app: a }) if a == app) {
            out.push(log(
                Component::Controller,
                wording::APP_MOVED_NO_KILL.fill(&[&app, &how]),
            ));
            self.pause_suppressed = None;
            self.end_suppressed(IncidentOutcome::RecoveredWithoutKill, out);
        }
    }

    // ----- smart kill -------------------------------------------------------------

    /// Failover → diagnostics → kill → restart, or the NOKILL/paused variants.
    fn smart_kill(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        let Some(pid) = self.state.server_pid() else {
            return;
        };
        if !self.policy.qos_enable {
            out.push(log(
                Component::Controller,
                format!(
                    "QOS_ENABLE=0: not acting on the {} (plain supervision)",
                    reason.describe()
                ),
            ));
            return;
        }
        let was_ready = matches!(self.state, State::Ready { .. });
        if self.policy.nokill {
            if self.nokill_incident.is_none() {
                let id = self.open_incident(now, &reason.slug(), out);
                self.nokill_incident = Some(id);
                self.nokill_reason = Some(reason.clone());
                out.push(log(
                    Component::Controller,
                    format!(
                        "QOS_NOKILL is set: not killing the server ({})",
                        reason.describe()
                    ),
                ));
                // Kept for inspection, not for traffic: the outputs go down while the
                // condition lasts.
                out.push(log(
                    Component::Controller,
                    "QOS_NOKILL: failover outputs down while the condition lasts",
                ));
                self.hold_down(
                    Hold::NoKill(reason.slug()),
                    &reason.describe(),
                    HookEvent::Failover,
                    &reason.slug(),
                    id,
                    out,
                );
                out.push(say(&wording::RUNNING_NSD, &[]));
                out.push(Action::RunDiagnostics {
                    reason: reason.slug(),
                    incident: Some(id),
                });
                if let Some(a) = self.update_incident(id, IncidentOutcome::NotKilled, None) {
                    out.push(a);
                }
            }
            return;
        }
        if self.paused {
            if self.pause_suppressed.is_none() {
                out.push(log(
                    Component::Controller,
                    wording::PAUSED_NOT_KILLING.fill(&[&reason.describe()]),
                ));
                let id = self.open_incident(now, &reason.slug(), out);
                if let Some(a) = self.update_incident(id, IncidentOutcome::Suppressed, None) {
                    out.push(a);
                }
                self.pause_incident = Some(id);
                self.pause_suppressed = Some(reason);
            }
            return;
        }
        self.start_kill(now, pid, reason, was_ready, AfterKill::AutoRestart, out);
    }

    fn start_kill(
        &mut self,
        now: Instant,
        pid: i32,
        reason: Reason,
        failover: bool,
        then: AfterKill,
        out: &mut Vec<Action>,
    ) {
        // A kill a pause held back continues the incident opened then (one incident in
        // status as in the log review).
        let incident = match self.pause_incident.take() {
            Some(id)
                if self
                    .incidents
                    .iter()
                    .any(|r| r.id == id && r.kind == reason.slug()) =>
            {
                if let Some(a) = self.update_incident(id, IncidentOutcome::Detected, None) {
                    out.push(a);
                }
                id
            }
            _ => self.open_incident(now, &reason.slug(), out),
        };
        let why = reason.describe();
        let phase = if failover {
            KillPhase::Failover
        } else {
            KillPhase::Diagnostics
        };
        out.push(self.set_state(
            now,
            State::Killing {
                pid: Some(pid),
                phase,
                reason: reason.clone(),
                incident,
                deadline: Some(later(
                    now,
                    self.policy.nsd_timeout.saturating_add(DIAGNOSTICS_GRACE),
                )),
                then,
            },
            why,
        ));
        // the failover outputs order: trigger file, then readiness/agent down, then hooks.
        if failover {
            out.push(say(&wording::TRIGGERING_FAILOVER, &[]));
            self.hold_down(
                Hold::Incident,
                &reason.describe(),
                HookEvent::Failover,
                &reason.slug(),
                incident,
                out,
            );
        } else {
            self.set_health(
                Health::Down {
                    reason: reason.describe(),
                },
                out,
            );
            // Not serving, and (at the restart limit) not coming back: no traffic while
            // diagnostics run.
            self.fault_ahead(now, then, incident, out);
        }
        self.end_nokill(now, None, out);
        self.deactivate_probe(out);
        out.push(say(&wording::RUNNING_NSD, &[]));
        if let State::Killing { phase, .. } = &mut self.state {
            *phase = KillPhase::Diagnostics;
        }
        out.push(Action::RunDiagnostics {
            reason: reason.slug(),
            incident: Some(incident),
        });
        if let Some(a) = self.update_incident(incident, IncidentOutcome::Diagnostics, None) {
            out.push(a);
        }
    }

    fn on_diagnostics(
        &mut self,
        now: Instant,
        for_incident: Option<u64>,
        path: Option<String>,
        error: Option<String>,
        out: &mut Vec<Action>,
    ) {
        // One truthful outcome: written (perhaps incomplete: the program failed or the
        // time limit cut it short, but the file holds what was collected), or failed
        // (no usable file: it could not be created or written).
        match (&path, &error) {
            (Some(p), None) => {
                out.push(log(
                    Component::Kill,
                    wording::DIAGNOSTICS_WRITTEN.fill(&[&p]),
                ));
            }
            (Some(p), Some(e)) => {
                out.push(log(
                    Component::Kill,
                    wording::DIAGNOSTICS_WRITTEN.fill(&[&p]),
                ));
                out.push(log(Component::Kill, format!("Diagnostics incomplete: {e}")));
            }
            (None, Some(e)) => {
                out.push(log(Component::Kill, format!("Diagnostics failed: {e}")));
            }
            (None, None) => {
                out.push(log(
                    Component::Kill,
                    "Diagnostics failed: no file was written",
                ));
            }
        }
        // Operator and slow-shutdown snapshots carry no incident and decide nothing.
        let Some(for_incident) = for_incident else {
            self.end_operator_diagnostics(now, out);
            return;
        };
        if let Some(i) = self.post_mortems.iter().position(|id| *id == for_incident) {
            // A dead server's post-mortem, finished after its restart began: the record
            // gets its file (its outcome has moved on) and the crash mail carries it.
            self.post_mortems.remove(i);
            if let Some(record) = self.incidents.iter_mut().find(|r| r.id == for_incident) {
                if let Some(p) = &path {
                    record.diagnostics = Some(p.clone());
                }
            }
            out.push(self.crash_alert(for_incident, path));
            return;
        }
        match self.state.clone() {
            State::Killing {
                phase: KillPhase::Diagnostics,
                pid,
                reason,
                incident,
                then,
                ..
            } if incident == for_incident => {
                if let Some(a) =
                    self.update_incident(incident, IncidentOutcome::Killing, path.as_deref())
                {
                    out.push(a);
                }
                out.push(Action::Mail(Alert {
                    kind: AlertKind::SmartKill {
                        reason: reason.describe(),
                    },
                    summary: format!(
                        "The controller detected a {} and is killing and restarting the server.",
                        reason.describe()
                    ),
                    diagnostics: path.clone(),
                    incident: Some(incident),
                }));
                self.kill_now(now, pid, reason, incident, then, out);
            }
            State::Crashed {
                pid,
                incident,
                diagnostics_done: false,
                then,
            } if incident == for_incident => {
                if let Some(a) =
                    self.update_incident(incident, IncidentOutcome::Restarting, path.as_deref())
                {
                    out.push(a);
                }
                out.push(self.crash_alert(incident, path.clone()));
                out.push(Action::KillTree);
                match pid {
                    // A CRASH message: the process may still be alive; wait for its exit.
                    Some(pid) => {
                        self.state = State::Crashed {
                            pid: Some(pid),
                            incident,
                            diagnostics_done: true,
                            then,
                        };
                    }
                    None => self.after_down(now, then, Some(incident), out),
                }
            }
            _ => {
                // A NOKILL incident: the mail carries the file.
                if let Some(id) = self.nokill_incident.filter(|id| *id == for_incident) {
                    out.push(Action::Mail(Alert {
                        kind: AlertKind::Other { event: "problem detected (QOS_NOKILL)".into() },
                        summary: "The controller detected a problem; QOS_NOKILL is set, so the server was not killed.".into(),
                        diagnostics: path.clone(),
                        incident: Some(id),
                    }));
                    if let Some(a) =
                        self.update_incident(id, IncidentOutcome::NotKilled, path.as_deref())
                    {
                        out.push(a);
                    }
                }
            }
        }
    }

    fn kill_now(
        &mut self,
        now: Instant,
        pid: Option<i32>,
        reason: Reason,
        incident: u64,
        then: AfterKill,
        out: &mut Vec<Action>,
    ) {
        out.push(say(&wording::RUNNING_NSD_KILL, &[]));
        out.push(Action::KillTree);
        self.kill_retries = 0;
        match pid {
            Some(pid) => {
                self.state = State::Killing {
                    pid: Some(pid),
                    phase: KillPhase::Kill,
                    reason,
                    incident,
                    deadline: Some(later(now, KILL_GRACE)),
                    then,
                };
                self.why = "killing the server's process tree".into();
            }
            None => self.kill_complete(now, incident, then, out),
        }
    }

    fn kill_complete(
        &mut self,
        now: Instant,
        incident: u64,
        then: AfterKill,
        out: &mut Vec<Action>,
    ) {
        out.push(say(&wording::KILL_COMPLETE, &[]));
        if let Some(a) = self.update_incident(incident, IncidentOutcome::Killed, None) {
            out.push(a);
        }
        self.after_down(now, then, Some(incident), out);
    }

    /// The server is fully down: restart it, stay down, or exit — within the limit.
    fn after_down(
        &mut self,
        now: Instant,
        then: AfterKill,
        incident: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        self.apps.clear();
        // A QOS_NOKILL condition ends with the process it was about; the outputs stay
        // down (if they were) until the next server is ready and probing well.
        self.end_nokill(now, None, out);
        let then = if self.quit_requested {
            AfterKill::Exit
        } else {
            then
        };
        match then {
            AfterKill::Exit => self.finish_quit(out),
            AfterKill::StayDown => {
                if let Some(a) =
                    incident.and_then(|id| self.update_incident(id, IncidentOutcome::Stopped, None))
                {
                    out.push(a);
                }
                self.log_server_ended(out);
                out.push(self.set_state(now, State::Stopped, "stopped on request"));
            }
            AfterKill::OperatorRestart => {
                out.push(say(&wording::RESTARTING, &[]));
                if let Some(a) = incident
                    .and_then(|id| self.update_incident(id, IncidentOutcome::Restarted, None))
                {
                    out.push(a);
                }
                self.spawn(now, "restart requested by the operator", out);
            }
            AfterKill::AutoRestart => {
                if self.paused {
                    out.push(log(
                        Component::Controller,
                        "Paused: the server is left down until resume",
                    ));
                    self.restart_on_resume = true;
                    out.push(self.set_state(
                        now,
                        State::Stopped,
                        "down while paused; restarts on resume",
                    ));
                    return;
                }
                if self.restart_limit_reached(now) {
                    let minutes = describe_duration(self.policy.restart_limit_period);
                    out.push(log(
                        Component::Controller,
                        wording::RESTART_LIMIT.fill(&[&self.restarts.len(), &minutes]),
                    ));
                    let clear_at = (!self.policy.auto_fault_clear.is_zero())
                        .then(|| later(now, self.policy.auto_fault_clear));
                    out.push(self.set_state(
                        now,
                        State::Faulted { clear_at },
                        "restart limit reached",
                    ));
                    // Not coming back by itself: traffic goes elsewhere until the server
                    // is READY again (clear-fault, QOS_AUTO_FAULT_CLEAR).
                    out.push(log(
                        Component::Controller,
                        "Server is FAULTED: failover outputs down until it is ready again",
                    ));
                    let hook_incident = incident
                        .or_else(|| self.incidents.back().map(|r| r.id))
                        .unwrap_or(self.next_incident);
                    self.hold_down(
                        Hold::Faulted,
                        "faulted",
                        HookEvent::Faulted,
                        "faulted",
                        hook_incident,
                        out,
                    );
                    out.push(Action::Mail(Alert {
                        kind: AlertKind::RestartLimit,
                        summary: format!(
                            "The server was restarted {} times within {}; it is left down until an operator runs clear-fault.",
                            self.restarts.len(),
                            minutes
                        ),
                        diagnostics: None,
                        incident,
                    }));
                    if let Some(id) = incident {
                        if let Some(a) = self.update_incident(id, IncidentOutcome::Faulted, None) {
                            out.push(a);
                        }
                    }
                    return;
                }
                self.restarts.push_back(now);
                out.push(say(&wording::RESTARTING, &[]));
                if let Some(id) = incident {
                    if let Some(a) = self.update_incident(id, IncidentOutcome::Restarted, None) {
                        out.push(a);
                    }
                }
                if self.became_ready {
                    self.failed_starts = 0;
                } else {
                    self.failed_starts += 1;
                }
                let (backoff, backoff_why) = if self.spawn_failures > 0 {
                    (
                        spawn_retry_backoff(self.spawn_failures),
                        format!(
                            "the server could not be started {} time(s) in a row",
                            self.spawn_failures
                        ),
                    )
                } else {
                    (
                        restart_backoff(self.failed_starts).unwrap_or(Duration::ZERO),
                        format!(
                            "the server failed {} time(s) in a row before becoming ready",
                            self.failed_starts
                        ),
                    )
                };
                let delay = backoff.max(self.policy.restart_delay);
                match delay.is_zero() {
                    true => self.spawn(now, "automatic restart", out),
                    false => {
                        let why = if backoff >= self.policy.restart_delay {
                            backoff_why
                        } else {
                            "QOS_RESTART_DELAY".to_string()
                        };
                        out.push(log(
                            Component::Controller,
                            format!("Restarting in {} ({why})", describe_duration(delay)),
                        ));
                        out.push(self.set_state(
                            now,
                            State::Restarting {
                                spawn_at: Some(later(now, delay)),
                            },
                            "waiting before the next restart",
                        ));
                    }
                }
            }
        }
    }

    /// The server is going down for good: it crashed (or is being killed for a start
    /// timeout) and the restart limit is already reached, so it will be left down
    /// (FAULTED) as soon as its diagnostics and kill are done. Those can take minutes
    /// (QOS_NSD_TIMEOUT), and a server that is not coming back must not keep traffic that
    /// long: the failover outputs go down now, the hook announces `faulted` now, and
    /// FAULTED itself follows when the server is down.
    fn fault_ahead(&mut self, now: Instant, then: AfterKill, incident: u64, out: &mut Vec<Action>) {
        if then != AfterKill::AutoRestart || self.paused || !self.restart_limit_reached(now) {
            return;
        }
        out.push(log(
            Component::Controller,
            "The restart limit is reached: the server will be left down (FAULTED); failover outputs down now, before its diagnostics",
        ));
        self.hold_down(
            Hold::Faulted,
            "faulted",
            HookEvent::Faulted,
            "faulted",
            incident,
            out,
        );
    }

    fn restart_limit_reached(&mut self, now: Instant) -> bool {
        if !self.policy.restart_limit_enable {
            return false;
        }
        while let Some(first) = self.restarts.front() {
            if now.duration_since(*first) >= self.policy.restart_limit_period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.len() >= self.policy.restart_limit_maximum as usize
    }

    // ----- crash and exit ---------------------------------------------------------

    fn crashed(
        &mut self,
        now: Instant,
        pid: Option<i32>,
        exit: Option<&str>,
        out: &mut Vec<Action>,
    ) {
        let name = self.policy.server_name.clone();
        out.push(log_td(
            Component::Controller,
            format!("OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue={name}"),
        ));
        out.push(log(
            Component::Controller,
            wording::SERVER_CRASHED.fill(&[&name]),
        ));
        if let Some(exit) = exit {
            out.push(log(
                Component::Controller,
                wording::SERVER_EXIT.fill(&[&exit]),
            ));
        }
        let incident = self.open_incident(now, "crash", out);
        out.push(self.set_state(
            now,
            State::Crashed {
                pid,
                incident,
                diagnostics_done: false,
                then: AfterKill::AutoRestart,
            },
            "server crashed; post-mortem diagnostics",
        ));
        self.deactivate_probe(out);
        self.set_health(
            Health::Down {
                reason: "server crashed".into(),
            },
            out,
        );
        self.fault_ahead(now, AfterKill::AutoRestart, incident, out);
        out.push(say(&wording::RUNNING_NSD, &[]));
        match pid {
            // The process is gone: nothing of it is left to wait for. Only what it left
            // behind is read before the kill; the restart does not wait for the file.
            None => out.push(Action::RunPostMortem { incident }),
            // A CRASH message: the server still runs (and may be writing its own crash
            // report): its stacks are worth the wait, until it exits.
            Some(_) => out.push(Action::RunDiagnostics {
                reason: "crash".into(),
                incident: Some(incident),
            }),
        }
    }

    fn crash_alert(&self, incident: u64, diagnostics: Option<String>) -> Action {
        Action::Mail(Alert {
            kind: AlertKind::Crash,
            summary: format!(
                "Server {} has crashed ({}).",
                self.policy.server_name,
                self.last_exit
                    .clone()
                    .unwrap_or_else(|| "reported by the server".into())
            ),
            diagnostics,
            incident: Some(incident),
        })
    }

    /// The leftovers of a dead server are read: kill them and restart now; the
    /// post-mortem's file, its mail and the incident's diagnostics path follow when it
    /// is written ([`Self::on_diagnostics`]).
    fn on_post_mortem_captured(&mut self, now: Instant, incident: u64, out: &mut Vec<Action>) {
        if let State::Crashed {
            pid: None,
            incident: current,
            diagnostics_done: false,
            then,
        } = self.state
        {
            if current == incident {
                self.restart_before_post_mortem(now, incident, then, out);
            }
        }
    }

    /// A crashed server whose process is gone: leftovers killed, restart (or whatever
    /// `then` says) at once, the post-mortem finishing on its own.
    fn restart_before_post_mortem(
        &mut self,
        now: Instant,
        incident: u64,
        then: AfterKill,
        out: &mut Vec<Action>,
    ) {
        if !self.post_mortems.contains(&incident) {
            self.post_mortems.push(incident);
        }
        if let Some(a) = self.update_incident(incident, IncidentOutcome::Restarting, None) {
            out.push(a);
        }
        out.push(Action::KillTree);
        self.after_down(now, then, Some(incident), out);
    }

    fn on_exited(&mut self, now: Instant, pid: i32, exit: &str, out: &mut Vec<Action>) {
        if self.state.server_pid() != Some(pid) {
            return;
        }
        self.last_exit = Some(exit.to_string());
        match self.state.clone() {
            State::Starting { .. } | State::Ready { .. } => {
                self.crashed(now, None, Some(exit), out);
            }
            State::Stopping { then, .. } => {
                out.push(log(
                    Component::Controller,
                    wording::SERVER_ENDED.fill(&[&exit]),
                ));
                out.push(Action::KillTree);
                let then = match then {
                    AfterStop::Exit => AfterKill::Exit,
                    AfterStop::StayDown => AfterKill::StayDown,
                    AfterStop::Restart => AfterKill::OperatorRestart,
                };
                self.after_down(now, then, None, out);
            }
            State::Killing {
                phase,
                reason,
                incident,
                then,
                deadline,
                ..
            } => {
                if phase == KillPhase::Kill {
                    self.kill_complete(now, incident, then, out);
                } else {
                    // It died while diagnostics ran: the kill has nothing left to do.
                    out.push(log(
                        Component::Controller,
                        wording::SERVER_ENDED.fill(&[&exit]),
                    ));
                    self.state = State::Killing {
                        pid: None,
                        phase,
                        reason,
                        incident,
                        deadline,
                        then,
                    };
                }
            }
            State::Crashed {
                incident,
                diagnostics_done,
                then,
                ..
            } => {
                if diagnostics_done {
                    self.after_down(now, then, Some(incident), out);
                } else {
                    // It reported its crash, then ended while its diagnostics ran: a
                    // dead server's restart does not wait for them (they finish on
                    // their own, with whatever they could still read).
                    self.restart_before_post_mortem(now, incident, then, out);
                }
            }
            State::Restarting { .. } | State::Stopped | State::Faulted { .. } => {}
        }
    }

    // ----- stopping ---------------------------------------------------------------

    fn enter_stopping(
        &mut self,
        now: Instant,
        pid: i32,
        then: AfterStop,
        why: &str,
        out: &mut Vec<Action>,
    ) {
        let next_nsd =
            (!self.policy.shutdown_nsd.is_zero()).then(|| later(now, self.policy.shutdown_nsd));
        out.push(self.set_state(
            now,
            State::Stopping {
                pid,
                deadline: later(now, self.policy.shutdown_timeout),
                next_nsd,
                then,
            },
            why,
        ));
    }

    fn request_stop(&mut self, now: Instant, then: AfterStop, why: &str, out: &mut Vec<Action>) {
        let Some(pid) = self.state.server_pid() else {
            return;
        };
        out.push(log_td(
            Component::Controller,
            "OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit",
        ));
        self.own_end_logged = true;
        self.deactivate_probe(out);
        self.apps.clear();
        self.set_health(Health::Drain, out);
        out.push(Action::RequestStop);
        self.enter_stopping(now, pid, then, why, out);
    }

    fn finish_quit(&mut self, out: &mut Vec<Action>) {
        self.log_server_ended(out);
        out.push(Action::Exit(0));
    }

    /// The end of a normal shutdown, as the reference writes it.
    fn log_server_ended(&mut self, out: &mut Vec<Action>) {
        let name = self.policy.server_name.clone();
        out.push(log_td(
            Component::Controller,
            format!("OpMsg=END Type=QOS ObjectType=ServerName ObjectValue={name}"),
        ));
        out.push(say(&wording::CLEARING_APPS, &[]));
    }

    fn on_stop_requested(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.quit_requested {
            // Second request: kill at once.
            out.push(log(
                Component::Controller,
                "Second stop request: killing the server now",
            ));
            out.push(say(&wording::RUNNING_NSD_KILL, &[]));
            out.push(Action::KillTree);
            if self.state.server_pid().is_none() {
                self.finish_quit(out);
            }
            return;
        }
        self.quit_requested = true;
        match self.state.clone() {
            State::Starting { .. } | State::Ready { .. } => {
                self.request_stop(now, AfterStop::Exit, "controller is stopping", out);
            }
            State::Stopping {
                pid,
                deadline,
                next_nsd,
                ..
            } => {
                self.state = State::Stopping {
                    pid,
                    deadline,
                    next_nsd,
                    then: AfterStop::Exit,
                };
            }
            // Let the kill finish; after_down sees quit_requested and exits.
            State::Killing { .. } | State::Crashed { .. } => {}
            State::Restarting { .. } | State::Stopped | State::Faulted { .. } => {
                self.finish_quit(out)
            }
        }
    }

    // ----- operator commands ------------------------------------------------------

    fn on_command(
        &mut self,
        now: Instant,
        command: Command,
        uid: u32,
        request: u64,
        out: &mut Vec<Action>,
    ) {
        out.push(log(
            Component::Controller,
            wording::COMMAND_FROM.fill(&[&command.name(), &uid]),
        ));
        let state = self.state.name();
        let reply = |ok: bool, message: String| Action::Reply {
            request,
            ok,
            message,
        };
        let busy = |verb: &str| -> Option<String> {
            match state {
                StateName::Stopping if self.quit_requested => {
                    Some(format!("{verb} refused: a quit is in progress"))
                }
                StateName::Stopping => Some(format!("{verb} refused: the server is stopping")),
                StateName::Killing => Some(format!("{verb} refused: a kill is in progress")),
                StateName::Crashed => {
                    Some(format!("{verb} refused: crash handling is in progress"))
                }
                _ if self.quit_requested => {
                    Some(format!("{verb} refused: the controller is shutting down"))
                }
                _ => None,
            }
        };
        match command {
            Command::Start => match state {
                StateName::Stopped => {
                    self.spawn(now, "start requested by the operator", out);
                    out.push(reply(true, "server starting".into()));
                }
                StateName::Starting | StateName::Ready | StateName::Restarting => {
                    out.push(reply(
                        true,
                        format!("server already running ({})", state.as_str()),
                    ));
                }
                StateName::Faulted => out.push(reply(
                    false,
                    "start refused: the server is FAULTED; use clear-fault".into(),
                )),
                _ => out.push(reply(false, busy("start").unwrap_or_default())),
            },
            Command::Quit => match state {
                StateName::Starting | StateName::Ready => {
                    self.request_stop(
                        now,
                        AfterStop::StayDown,
                        "quit requested by the operator",
                        out,
                    );
                    out.push(reply(true, "server stopping".into()));
                }
                StateName::Stopped | StateName::Faulted => {
                    out.push(reply(
                        true,
                        format!("server already down ({})", state.as_str()),
                    ));
                }
                _ => out.push(reply(false, busy("quit").unwrap_or_default())),
            },
            Command::Restart => match (state, busy("restart")) {
                (StateName::Starting | StateName::Ready, None) => {
                    self.request_stop(
                        now,
                        AfterStop::Restart,
                        "restart requested by the operator",
                        out,
                    );
                    out.push(reply(true, "server restarting".into()));
                }
                (StateName::Stopped, None) => {
                    self.spawn(now, "restart requested by the operator", out);
                    out.push(reply(true, "server starting".into()));
                }
                (StateName::Faulted, _) => out.push(reply(
                    false,
                    "restart refused: the server is FAULTED; use clear-fault".into(),
                )),
                (_, Some(refusal)) => out.push(reply(false, refusal)),
                (_, None) => out.push(reply(
                    false,
                    format!("restart refused: the server is {}", state.as_str()),
                )),
            },
            Command::Kill => match (self.state.server_pid(), busy("kill")) {
                (Some(pid), None) => {
                    let failover = state == StateName::Ready;
                    self.start_kill(
                        now,
                        pid,
                        Reason::Operator,
                        failover,
                        AfterKill::OperatorRestart,
                        out,
                    );
                    out.push(reply(true, "smart kill started".into()));
                }
                (_, Some(refusal)) => out.push(reply(false, refusal)),
                (None, None) => out.push(reply(
                    false,
                    format!("kill refused: no server is running ({})", state.as_str()),
                )),
            },
            Command::Pause { duration: Some(d) } if d > MAX_PAUSE => out.push(reply(
                false,
                format!(
                    "pause refused: {} seconds is longer than the longest pause, {} days",
                    d.as_secs(),
                    MAX_PAUSE.as_secs() / 86_400
                ),
            )),
            Command::Pause { duration } => {
                let until = duration.map(|d| later(now, d));
                let already = self.paused;
                self.paused = true;
                self.paused_until = until;
                let how = match duration {
                    Some(d) => format!(" for {}", describe_duration(d)),
                    None => String::new(),
                };
                out.push(log(
                    Component::Controller,
                    wording::PAUSED_BY.fill(&[&format!("{uid}{how}")]),
                ));
                let msg = if already {
                    "pause renewed"
                } else {
                    "paused: probing continues, no kill or restart"
                };
                out.push(reply(true, format!("{msg}{how}")));
            }
            Command::Resume => {
                if self.paused {
                    out.push(log(
                        Component::Controller,
                        wording::RESUMED_BY.fill(&[&uid]),
                    ));
                    self.resume(now, out);
                    out.push(reply(true, "resumed".into()));
                } else {
                    out.push(reply(true, "not paused".into()));
                }
            }
            Command::ClearFault { no_start } => match state {
                StateName::Faulted if no_start => {
                    self.restarts.clear();
                    self.failed_starts = 0;
                    // The mark goes; the outputs stay down (the server is not serving)
                    // until a server is READY and probing well again.
                    self.ha.holds.remove(&Hold::Faulted);
                    out.push(log(
                        Component::Controller,
                        "Fault cleared by the operator; the server stays down (--no-start)",
                    ));
                    out.push(self.set_state(
                        now,
                        State::Stopped,
                        "fault cleared by the operator; not started",
                    ));
                    out.push(reply(
                        true,
                        "fault cleared; the server stays down (STOPPED); use start".into(),
                    ));
                }
                StateName::Faulted => {
                    self.restarts.clear();
                    self.failed_starts = 0;
                    out.push(log(Component::Controller, "Fault cleared by the operator"));
                    self.spawn(now, "fault cleared by the operator", out);
                    out.push(reply(true, "fault cleared; server starting".into()));
                }
                _ => out.push(reply(true, format!("not FAULTED ({})", state.as_str()))),
            },
            Command::Failback => self.on_failback_command(uid, request, out),
            Command::Diagnose => {
                if matches!(self.state, State::Starting { .. } | State::Ready { .. })
                    && self.probe.operator_diagnostics_since.is_none()
                {
                    self.probe.operator_diagnostics_since = Some(now);
                }
                out.push(say(&wording::RUNNING_NSD, &[]));
                out.push(Action::RunDiagnostics {
                    reason: "operator".into(),
                    incident: None,
                });
                out.push(reply(
                    true,
                    "collecting diagnostics; the file is named in the log".into(),
                ));
            }
            Command::Reexec => match self.reexec_refusal() {
                Some(refusal) => out.push(reply(false, refusal)),
                None => out.push(Action::Reexec { request }),
            },
        }
    }

    /// Why the image cannot be replaced now, or `None` when it can. A kill, crash
    /// handling or a stop is a sequence of steps whose results (diagnostics, the reaped
    /// tree, the stop command) would arrive at the old image only; in a steady state every
    /// pending thing is a timer, and timers carry over.
    pub fn reexec_refusal(&self) -> Option<String> {
        let state = self.state.name();
        match &self.state {
            _ if self.quit_requested => {
                Some("reexec refused: the controller is shutting down".into())
            }
            State::Stopping { .. } | State::Killing { .. } | State::Crashed { .. } => {
                Some(format!(
                    "reexec refused: the server is {}; try again when it is done",
                    state.as_str()
                ))
            }
            State::Restarting { spawn_at: None } | State::Starting { pid: None, .. } => {
                Some("reexec refused: the server is being spawned; try again".into())
            }
            _ if !self.post_mortems.is_empty() => Some(
                "reexec refused: a crash's post-mortem is still being written; try again when it is done".into(),
            ),
            _ => None,
        }
    }

    /// The first thing a re-executed image does with the state it was handed: a probe
    /// attempt that was in flight in the old image will never report, so the next one
    /// is due now (probing resumes at once rather than after a lost interval), and
    /// everything else — timeout baseline, applications, restart window, pause, fault —
    /// goes on from the handed-over instants.
    pub fn resume_after_reexec(&mut self, now: Instant) {
        self.probe.in_flight = false;
        if self.probing_wanted() {
            let due = self.probe.next_attempt.map_or(now, |at| at.min(now));
            self.probe.next_attempt = Some(due);
        }
    }

    /// Fallback after a re-exec whose state could not be read: take over the running
    /// server `pid` as READY with fresh timers (probe timeout counted from now, no
    /// applications, an empty restart window), rather than losing it. `trigger_present`:
    /// a failover is outstanding and is taken back on the first successful probe.
    pub fn adopt(
        policy: Policy,
        now: Instant,
        pid: i32,
        trigger_present: bool,
    ) -> (Controller, Vec<Action>) {
        let mut ctl = Controller::new(policy, now);
        let mut out = vec![log(
            Component::Controller,
            format!("Server (pid {pid}) adopted without its previous state; its timers start now"),
        )];
        if trigger_present {
            ctl.ha.down = true;
            ctl.ha.down_reason = "failover left by a previous run".into();
            ctl.trigger_written = true;
        }
        ctl.server_started = Some(now);
        ctl.server_speaks = true;
        ctl.became_ready = true;
        out.push(ctl.set_state(now, State::Ready { pid }, "adopted after a re-exec"));
        if ctl.policy.probing {
            ctl.probe.active = true;
            ctl.probe.baseline = Some(now);
            ctl.probe.awaiting_first_success = true;
            if !ctl.policy.probe_by_message {
                ctl.probe.next_attempt = Some(now);
            }
            // Readiness is up unless a failover is outstanding (then it stays down
            // until the first successful probe and any failback hold).
            ctl.set_health(Health::Ready, &mut out);
        } else {
            ctl.recovered(now, &mut out);
        }
        ctl.note_failover_state(now, &mut out);
        (ctl, out)
    }

    /// `qoscntrlr failback`: end the failback hold (or the manual wait) now. Refused
    /// while something still holds the outputs down or the server is not well; a
    /// QOS_NOKILL condition that has no signal of its own to clear (an exhaustion the
    /// server reported) is the operator's to end, so failback releases it.
    fn on_failback_command(&mut self, uid: u32, request: u64, out: &mut Vec<Action>) {
        let reply = |ok: bool, message: String| Action::Reply {
            request,
            ok,
            message,
        };
        if !self.ha.down {
            out.push(reply(
                true,
                "nothing to fail back: the failover outputs are up (IN_SERVICE)".into(),
            ));
            return;
        }
        let blocking: Vec<String> = self
            .ha
            .holds
            .iter()
            .filter(|h| !matches!(h, Hold::NoKill(_)))
            .map(Hold::describe)
            .collect();
        if !blocking.is_empty() {
            out.push(reply(
                false,
                format!(
                    "failback refused: the failover outputs are held down ({})",
                    blocking.join(", ")
                ),
            ));
            return;
        }
        let nokill_well = self.nokill_reason.is_some()
            && matches!(self.state, State::Ready { .. })
            && !self.probe.timed_out;
        if !self.is_well() && !nokill_well {
            out.push(reply(
                false,
                format!(
                    "failback refused: the server is not ready and probing well ({})",
                    self.state.name().as_str()
                ),
            ));
            return;
        }
        out.push(log(
            Component::Controller,
            format!("Failback requested by uid {uid}"),
        ));
        self.nokill_reason = None;
        if let Some(id) = self.nokill_incident.take() {
            if let Some(a) = self.update_incident(id, IncidentOutcome::RecoveredWithoutKill, None) {
                out.push(a);
            }
        }
        self.failback(out);
        out.push(reply(
            true,
            "failback done: the failover outputs are up (IN_SERVICE)".into(),
        ));
    }

    fn resume(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.paused = false;
        self.paused_until = None;
        if std::mem::take(&mut self.restart_on_resume) && self.state.name() == StateName::Stopped {
            self.after_down(now, AfterKill::AutoRestart, None, out);
        }
        if let Some(reason) = self.pause_suppressed.take() {
            if matches!(self.state, State::Starting { .. } | State::Ready { .. }) {
                out.push(log(
                    Component::Controller,
                    wording::RESUMING_ACTING.fill(&[&reason.describe()]),
                ));
                self.smart_kill(now, reason, out);
            }
        }
        // Consumed by the kill it became; otherwise the server went away meanwhile and
        // the incident stays as the pause left it.
        self.pause_incident = None;
    }

    // ----- deadlines --------------------------------------------------------------

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.end_stall_hold(now, out);
        let holding = self.holding(now);
        if let Some(until) = self.paused_until {
            if now >= until {
                out.push(log(Component::Controller, "Pause expired; resuming"));
                self.resume(now, out);
            }
        }
        if self.ha.failback_at.is_some_and(|at| now >= at) && self.is_well() {
            out.push(log(
                Component::Controller,
                format!(
                    "Failback hold over: the server has been ready and probing well for {}",
                    describe_duration(self.policy.failback_hold)
                ),
            ));
            self.failback(out);
        }
        if self.trust_at().is_some_and(|at| now >= at) {
            out.push(log(
                Component::Controller,
                format!(
                    "QOS_ONLINE_TRUST_TIME: the server has been ready and probing well for {}; restart-limit window emptied ({} restart(s) forgotten)",
                    describe_duration(self.policy.online_trust_time),
                    self.restarts.len()
                ),
            ));
            self.restarts.clear();
        }
        match self.state.clone() {
            State::Starting {
                pid: Some(pid),
                deadline,
            } if now >= deadline && !holding && self.probe.blind_since.is_none() => {
                out.push(log(
                    Component::Controller,
                    wording::RESTART_TIMEOUT
                        .fill(&[&describe_duration(self.policy.restart_timeout)]),
                ));
                self.smart_kill(now, Reason::RestartTimeout, out);
                if let State::Starting { .. } = self.state {
                    // Paused or NOKILL: this deadline is spent; look again one period on.
                    self.state = State::Starting {
                        pid: Some(pid),
                        deadline: later(now, self.policy.restart_timeout),
                    };
                }
                return;
            }
            State::Stopping {
                pid,
                deadline,
                next_nsd,
                then,
            } => {
                if now >= deadline && !holding {
                    // The stop phase — quit, controller stop, or the first half of an
                    // operator restart — is bounded by QOS_SHUTDOWN_TIMEOUT; the start
                    // that follows a restart gets QOS_RESTART_TIMEOUT in STARTING.
                    let applied = self.policy.shutdown_timeout;
                    out.push(log(
                        Component::Controller,
                        wording::SHUTDOWN_TIMEOUT.fill(&[&describe_duration(applied)]),
                    ));
                    let reason = Reason::ShutdownTimeout;
                    let incident = self.open_incident(now, &reason.slug(), out);
                    let after = match then {
                        AfterStop::Exit => AfterKill::Exit,
                        AfterStop::StayDown => AfterKill::StayDown,
                        AfterStop::Restart => AfterKill::OperatorRestart,
                    };
                    out.push(self.set_state(
                        now,
                        State::Killing {
                            pid: Some(pid),
                            phase: KillPhase::Kill,
                            reason: reason.clone(),
                            incident,
                            deadline: None,
                            then: after,
                        },
                        "shutdown took too long",
                    ));
                    self.kill_now(now, Some(pid), reason, incident, after, out);
                    return;
                }
                if let Some(at) = next_nsd {
                    if now >= at {
                        out.push(log(
                            Component::Kill,
                            "Running nsd... (shutdown still in progress)",
                        ));
                        out.push(Action::RunDiagnostics {
                            reason: "shutdown".into(),
                            incident: None,
                        });
                        self.state = State::Stopping {
                            pid,
                            deadline,
                            next_nsd: Some(later(now, self.policy.shutdown_nsd)),
                            then,
                        };
                    }
                }
            }
            State::Killing {
                phase,
                deadline: Some(deadline),
                pid,
                reason,
                incident,
                then,
            } if now >= deadline => match phase {
                KillPhase::Diagnostics => {
                    out.push(log(
                        Component::Kill,
                        "Diagnostics did not finish in time; killing anyway",
                    ));
                    self.kill_now(now, pid, reason, incident, then, out);
                }
                _ => {
                    // Never forget a server that may still run: a restart beside it would
                    // fail on its ports, and a stop would leave it unsupervised. Kill
                    // again (the known pid and group are signalled whatever /proc says)
                    // until the reaper reports it gone.
                    self.kill_retries = self.kill_retries.saturating_add(1);
                    let who = pid.map_or_else(|| "process".to_string(), |p| format!("process {p}"));
                    out.push(log(
                        Component::Kill,
                        format!(
                            "The server's {who} did not go away after SIGKILL; killing again (attempt {})",
                            self.kill_retries + 1
                        ),
                    ));
                    if self.kill_retries == 1 {
                        out.push(Action::Mail(Alert {
                            kind: AlertKind::Other {
                                event: "kill not completed".into(),
                            },
                            summary: format!(
                                "The server's {who} did not go away after SIGKILL; the controller keeps killing it and will not start another server beside it."
                            ),
                            diagnostics: None,
                            incident: Some(incident),
                        }));
                    }
                    out.push(Action::KillTree);
                    self.state = State::Killing {
                        pid,
                        phase,
                        reason,
                        incident,
                        deadline: Some(later(now, KILL_GRACE)),
                        then,
                    };
                }
            },
            State::Restarting { spawn_at: Some(at) } if now >= at => {
                self.spawn(now, "automatic restart", out);
                return;
            }
            State::Faulted { clear_at: Some(at) } if now >= at => {
                self.restarts.clear();
                out.push(log(
                    Component::Controller,
                    "QOS_AUTO_FAULT_CLEAR: leaving FAULTED",
                ));
                self.spawn(now, "fault cleared automatically", out);
                return;
            }
            _ => {}
        }
        let diagnosing = self.probe.operator_diagnostics_since.is_some();
        if let (State::Ready { .. }, false, false) = (&self.state, holding, diagnosing) {
            if let Some((app, idle)) = self.apps.expired(now, self.policy.apps_timeout) {
                if self.pause_suppressed.is_none() {
                    out.push(log(
                        Component::Applications,
                        wording::APP_NO_PROGRESS.fill(&[&app, &idle.as_secs()]),
                    ));
                }
                self.smart_kill(
                    now,
                    Reason::AppTimeout {
                        app: app.to_string(),
                    },
                    out,
                );
                if self.paused || self.policy.nokill {
                    // Keep it listed but do not fire every tick: treat as fresh progress.
                    self.apps.progress(&app, now);
                }
                return;
            }
        }
        self.check_probe_timeout(now, out);
        self.schedule_probe(now, out);
    }

    /// Everything `status` shows that the controller knows.
    pub fn status(&self, now: Instant) -> CoreStatus {
        let phase = match &self.state {
            State::Killing { phase, .. } => Some(*phase),
            _ => None,
        };
        CoreStatus {
            state: self.state.name(),
            phase,
            why: self.why.clone(),
            state_since: self.state_since,
            server_pid: self.state.server_pid(),
            server_started: self
                .server_started
                .filter(|_| self.state.server_pid().is_some()),
            restarts_in_window: self
                .restarts
                .iter()
                .filter(|t| now.duration_since(**t) < self.policy.restart_limit_period)
                .count(),
            last_exit: self.last_exit.clone(),
            probe_active: self.probe.active,
            probe_last_result: self.probe.last_result.clone(),
            probe_last_success: self.probe.last_success,
            probe_timeout_at: self.probe_timeout_at(),
            apps: self
                .apps
                .iter(now)
                .map(|(k, ages)| (k.to_string(), ages.running, ages.without_progress))
                .collect(),
            paused: self.paused,
            paused_until: self.paused_until,
            nokill: self.policy.nokill,
            failover_triggered: self.ha.down,
            failover: FailoverView {
                state: self.failover_state(),
                outputs_down: self.ha.down,
                health: self.published_health(),
                holds: self.ha.holds.iter().map(Hold::describe).collect(),
                failback_at: self.ha.failback_at,
                awaiting_operator: self.ha.awaiting_operator,
                changed_at: self.ha.changed_at,
                changed_why: self.ha.changed_why.clone(),
            },
            incidents: self.incidents.iter().cloned().collect(),
            rules: self.rules.status(),
            rule_failovers: self.rule_failovers.iter().map(|(k, _)| k.clone()).collect(),
        }
    }

    // ----- resource rules -----------------------------------------------------------

    /// One sampling pass against every rule: shorthand limits warn and smart-kill in
    /// their long-standing words; `QOS_RULE_<NAME>` rules log, alert, fail over or kill.
    fn on_samples(&mut self, now: Instant, readings: &Readings, out: &mut Vec<Action>) {
        // Failover holds of rules a reload removed let go first.
        let gone: Vec<String> = self
            .rule_failovers
            .iter()
            .filter(|(key, _)| {
                !self
                    .rules
                    .rules()
                    .iter()
                    .any(|r| r.key() == *key && r.action == RuleAction::Failover)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            self.rule_failback(now, &key, "the rule was removed by a reload", out);
        }
        if !matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
            return;
        }
        for verdict in self.rules.observe(readings) {
            match verdict {
                Verdict::Warn { rule, value, limit } => {
                    let Some(Origin::Shorthand { resource, .. }) =
                        self.rules.rule(rule).map(|r| r.origin.clone())
                    else {
                        continue;
                    };
                    let detail = format!("{value} of {limit}");
                    let detail = match self.rules.rule(rule) {
                        Some(r) if matches!(r.op, crate::rules::Op::Lt | crate::rules::Op::Le) => {
                            format!("{value} free, minimum {limit}")
                        }
                        _ => detail,
                    };
                    out.push(log(
                        Component::Controller,
                        format!("Warning: server is close to its {resource} limit ({detail})"),
                    ));
                    out.push(Action::Mail(Alert {
                        kind: AlertKind::ResourceWarning {
                            resource: resource.to_string(),
                        },
                        summary: format!("The server is close to its {resource} limit: {detail}."),
                        diagnostics: None,
                        incident: None,
                    }));
                }
                Verdict::Breached {
                    rule,
                    detail,
                    value,
                } => {
                    let Some(r) = self.rules.rule(rule).cloned() else {
                        continue;
                    };
                    self.rule_breached(now, &r, &detail, &value, out);
                }
                Verdict::Cleared { rule, detail } => {
                    let Some(r) = self.rules.rule(rule).cloned() else {
                        continue;
                    };
                    self.rule_cleared(now, &r, &detail, out);
                }
            }
        }
    }

    fn rule_breached(
        &mut self,
        now: Instant,
        rule: &crate::rules::Rule,
        detail: &str,
        value: &str,
        out: &mut Vec<Action>,
    ) {
        let key = rule.key();
        if let Origin::Shorthand { resource, .. } = &rule.origin {
            // The shorthand keys keep their words: `Server has exhausted memory (…)`.
            if !matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
                return;
            }
            let detail = crate::rules::shorthand_detail(rule, value);
            let line = wording::SERVER_EXHAUSTED.fill(&[&resource, &detail]);
            let reason = Reason::Exhausted {
                resource: resource.to_string(),
                detail,
            };
            self.rule_kill(now, line, reason, out);
            return;
        }
        out.push(log(
            Component::Controller,
            wording::RULE_BREACHED.fill(&[&key, &detail, &rule.action.as_str()]),
        ));
        match rule.action {
            RuleAction::Log => {}
            RuleAction::Alert => out.push(Action::Mail(Alert {
                kind: AlertKind::Rule {
                    rule: key.clone(),
                    detail: detail.to_string(),
                },
                summary: format!("Rule {key} ({}) is breached: {detail}.", rule.spec()),
                diagnostics: None,
                incident: None,
            })),
            RuleAction::Failover => self.rule_failover(now, rule, detail, out),
            RuleAction::Kill => {
                let reason = Reason::Rule {
                    rule: key.clone(),
                    detail: detail.to_string(),
                };
                self.rule_kill(now, String::new(), reason, out);
            }
        }
    }

    /// Smart kill for a rule, logging `line` first (when not empty). During a stall
    /// hold the kill waits for the probe after the stall, as a measured exhaustion does;
    /// a kill already under way (another rule of the same pass, a probe timeout) is not
    /// started twice.
    fn rule_kill(&mut self, now: Instant, line: String, reason: Reason, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Ready { .. } | State::Starting { .. }) {
            return;
        }
        if self.holding(now) {
            out.push(log(
                Component::Controller,
                format!(
                    "{}; acting once the probe after the stall has answered",
                    if line.is_empty() {
                        reason.describe()
                    } else {
                        line.clone()
                    }
                ),
            ));
            if self.deferred_exhaustion.is_none() {
                self.deferred_exhaustion = Some((line, reason));
            }
            return;
        }
        if !line.is_empty() {
            out.push(log(Component::Controller, line));
        }
        self.smart_kill(now, reason, out);
    }

    fn rule_cleared(
        &mut self,
        now: Instant,
        rule: &crate::rules::Rule,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        if let Origin::Shorthand { resource, .. } = &rule.origin {
            // The shorthand keys (QOS_MAX_MEMORY …) speak of the resource, not the rule.
            self.resource_back(now, resource, out);
            return;
        }
        let key = rule.key();
        match rule.action {
            RuleAction::Failover => self.rule_failback(now, &key, detail, out),
            RuleAction::Alert => {
                out.push(log(
                    Component::Controller,
                    format!("Rule {key} cleared: {detail}"),
                ));
                out.push(Action::Mail(Alert {
                    kind: AlertKind::Rule {
                        rule: key.clone(),
                        detail: format!("cleared: {detail}"),
                    },
                    summary: format!("Rule {key} ({}) holds no more: {detail}.", rule.spec()),
                    diagnostics: None,
                    incident: None,
                }));
            }
            RuleAction::Log | RuleAction::Kill => out.push(log(
                Component::Controller,
                format!("Rule {key} cleared: {detail}"),
            )),
        }
    }

    /// `action=failover`: the outputs go down as for a smart kill (trigger file,
    /// readiness/agent, failover hook), the server is kept and probed as usual.
    fn rule_failover(
        &mut self,
        now: Instant,
        rule: &crate::rules::Rule,
        detail: &str,
        out: &mut Vec<Action>,
    ) {
        let key = rule.key();
        if self.rule_failovers.iter().any(|(k, _)| *k == key) {
            return;
        }
        let reason = Reason::Rule {
            rule: key.clone(),
            detail: detail.to_string(),
        };
        let id = self.open_incident(now, &reason.slug(), out);
        self.rule_failovers.push((key.clone(), id));
        out.push(log(
            Component::Controller,
            format!("Rule {key}: failover outputs down; the server is kept running"),
        ));
        self.hold_down(
            Hold::Rule(key.clone()),
            &reason.describe(),
            HookEvent::Failover,
            &reason.slug(),
            id,
            out,
        );
        out.push(Action::Mail(Alert {
            kind: AlertKind::Rule {
                rule: key.clone(),
                detail: detail.to_string(),
            },
            summary: format!(
                "Rule {key} ({}) is breached: {detail}. Traffic was failed over; the server is kept running.",
                rule.spec()
            ),
            diagnostics: None,
            incident: Some(id),
        }));
        if let Some(a) = self.update_incident(id, IncidentOutcome::FailedOver, None) {
            out.push(a);
        }
    }

    /// A failover rule holds no more: the outputs come back once nothing else keeps
    /// them down (another failover rule, a server that is not ready and probing well).
    fn rule_failback(&mut self, now: Instant, key: &str, detail: &str, out: &mut Vec<Action>) {
        let Some(pos) = self.rule_failovers.iter().position(|(k, _)| k == key) else {
            return;
        };
        let (_, id) = self.rule_failovers.remove(pos);
        out.push(log(
            Component::Controller,
            format!("Rule {key} cleared: {detail}"),
        ));
        if let Some(a) = self.update_incident(id, IncidentOutcome::RecoveredWithoutKill, None) {
            out.push(a);
        }
        if let Some((other, _)) = self.rule_failovers.first() {
            out.push(log(
                Component::Controller,
                format!("Failover outputs stay down while rule {other} holds"),
            ));
        }
        // The outputs come back (after any failback hold) once nothing else holds them
        // and the server is ready and probing well.
        let was_down = self.ha.down;
        self.release(now, &Hold::Rule(key.to_string()), out);
        if was_down && !self.ha.down {
            out.push(log(
                Component::Controller,
                wording::RULE_FAILBACK.fill(&[&key]),
            ));
        }
    }
}
