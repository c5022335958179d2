//! The controller's inputs and outputs: the past-tense [`Event`]s the shell reports
//! (with operator [`Command`]s among them) and the imperative [`Action`]s it carries out,
//! with the [`Reason`] of an unhealthy server and the [`Alert`]s sent.

use super::*;

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
