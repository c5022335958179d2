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

// The controller's inputs and outputs, and what it reports.
mod incidents;
mod protocol;
mod status;

// The state machine's transitions, one module per concern, each an `impl Controller`
// block; `handle` below dispatches each event to them.
mod commands;
mod crash;
mod deadlines;
mod failover;
mod kill;
mod messages;
mod probing;
mod resources;
mod spawn;
mod stalls;
mod stopping;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::rules::{Item, Reading, Readings, RuleStatus};
use crate::rules::{Origin, RuleAction, RuleEngine, Verdict};
use apps::{AppsList, StartOutcome};
use ended::EndedServers;
use ha::FailoverBook;
pub use ha::{FailbackMode, FailoverState, Hold};
pub use incidents::{IncidentOutcome, IncidentRecord};
pub use policy::Policy;
pub use protocol::{Action, Alert, Command, Event, MessageSender, Reason};
pub use status::{CoreStatus, FailoverView};
pub use timers::{Timer, Timers};
pub use vocab::{
    AlertKind, AppKey, Component, Health, HookEvent, KillPhase, Meaning, Meaning as ServerSignal,
    ServerState, ServerState as StateName,
};

use wording::{rule_name, slugify};

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

/// A duration in the reference's words (`5 minutes`, `30 seconds`) for log lines.
fn describe_duration(d: Duration) -> String {
    units::format_duration(d, units::DurationStyle::Words)
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
}
