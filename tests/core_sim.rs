//! The controller state machine in virtual time: every row of the supervision rules and every
//! rule of the supervision core, in milliseconds. A small simulated world answers the
//! controller's actions (spawn, probe, diagnostics, kill) the way the shell would.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use qoscntrlr::core::wording;
use qoscntrlr::core::{
    Action, AppKey, Command, Component, Controller, Event, FailoverState, Health, HookEvent,
    IncidentOutcome, Item, MessageSender, Policy, Reading, ServerSignal, StateName, Timer,
};
use qoscntrlr::rules::{Rule, Shorthands};

const MB: u64 = 1024 * 1024;

/// The shorthand limits `QOS_MAX_MEMORY` (MB) and `QOS_MAX_CPU` (%) as the reader makes
/// them, judged on every sample (`QOS_RESOURCE_SAMPLES=1`) so one pass decides.
fn limits(max_memory_mb: u64, max_cpu: u32) -> Vec<Rule> {
    Shorthands {
        max_memory: max_memory_mb * MB,
        max_cpu,
        max_open_files: 0,
        max_threads: 0,
        min_disk_free: 0,
        max_memory_pressure: 0,
        max_cpu_pressure: 0,
        max_io_pressure: 0,
        samples: 1,
        warn_percent: 0,
        data_directory: "/data".into(),
    }
    .rules()
}

/// One sampling pass of the server's tree: memory in MB and CPU in percent.
fn sampled(memory_mb: u64, cpu: f64) -> Event {
    Event::ResourcesSampled {
        readings: [
            (Item::Memory, Reading::Value((memory_mb * MB) as f64)),
            (Item::Cpu, Reading::Value(cpu)),
        ]
        .into(),
    }
}

/// 2012/05/08 00:15:00 on the review's calendar: the virtual wall clock of `Sim::log`.
const SIM_EPOCH: i64 = 1_336_436_100;

/// How the simulated server answers probes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ProbeMode {
    Ok,
    Refused,
    /// No answer: the attempt times out (the shell bounds it).
    Hang,
    /// No result at all (an attempt lost in a stall): only the core's own bounds help.
    Silent,
    /// The controller cannot make the attempt (out of descriptors).
    Unavailable,
}

struct Sim {
    ctl: Controller,
    now: Instant,
    start: Instant,
    /// Scheduled world events, kept sorted by time.
    pending: Vec<(Instant, Event)>,
    lines: Vec<String>,
    /// The same lines as the log file has them: `YYYY/MM/DD HH:MM:SS ` from a virtual
    /// wall clock starting at 2012/05/08 00:15:00, for the log review.
    log: Vec<String>,
    actions: Vec<Action>,
    next_pid: i32,
    alive: Option<i32>,
    probe: ProbeMode,
    /// The server exits this long after a stop request (None: ignores it).
    stop_delay: Option<Duration>,
    /// A spawned server exits this long after spawning (the "exits at once" server).
    exit_after_spawn: Option<Duration>,
    /// Spawned servers send START/READY messages.
    speaks: bool,
    /// The spawn itself fails (program missing).
    spawn_fails: bool,
    exit_code: Option<u8>,
    replies: VecDeque<(bool, String)>,
    trigger: bool,
    health: Option<Health>,
    /// KillTree has no effect (stuck in uninterruptible sleep, /proc unreadable).
    unkillable: bool,
    /// How long a diagnostics run takes.
    diag_delay: Duration,
}

impl Sim {
    fn new(policy: Policy) -> Sim {
        let now = Instant::now();
        Sim {
            ctl: Controller::new(policy, now),
            now,
            start: now,
            pending: Vec::new(),
            lines: Vec::new(),
            log: Vec::new(),
            actions: Vec::new(),
            next_pid: 100,
            alive: None,
            probe: ProbeMode::Ok,
            stop_delay: Some(Duration::from_secs(2)),
            exit_after_spawn: None,
            speaks: false,
            spawn_fails: false,
            exit_code: None,
            replies: VecDeque::new(),
            trigger: false,
            health: None,
            unkillable: false,
            diag_delay: Duration::from_secs(3),
        }
    }

    fn fast() -> Policy {
        Policy {
            server_name: "CN=rc45/O=dev".into(),
            probe_interval: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(60),
            apps_timeout: Duration::from_secs(120),
            shutdown_timeout: Duration::from_secs(60),
            restart_timeout: Duration::from_secs(60),
            nsd_timeout: Duration::from_secs(30),
            ..Policy::default()
        }
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        let at = self.now + after;
        let pos = self.pending.partition_point(|(t, _)| *t <= at);
        self.pending.insert(pos, (at, event));
    }

    fn feed(&mut self, event: Event) {
        let actions = self.ctl.handle(self.now, event);
        for action in actions {
            self.apply(&action);
            self.actions.push(action);
        }
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::Log {
                component,
                text,
                append_timedate,
            } => {
                let prefix = match component {
                    Component::Controller => "QoS Controller: ",
                    Component::Probe => "QoS Probe: ",
                    Component::Applications => "QoS Applications: ",
                    Component::Kill => "QoS Kill: ",
                    Component::Bare => "",
                };
                let td = if *append_timedate { " TimeDate=T" } else { "" };
                self.lines.push(format!("{prefix}{text}{td}"));
                let stamp = qoscntrlr::review::Stamp(
                    SIM_EPOCH + i64::try_from((self.now - self.start).as_secs()).unwrap_or(0),
                );
                self.log.push(format!("{stamp} {prefix}{text}{td}"));
            }
            Action::Spawn if self.spawn_fails => self.schedule(
                Duration::from_millis(1),
                Event::SpawnFailed {
                    error: "No such file or directory".into(),
                },
            ),
            Action::Spawn => {
                let pid = self.next_pid;
                self.next_pid += 1;
                self.alive = Some(pid);
                self.schedule(
                    Duration::from_millis(5),
                    Event::ServerSpawned {
                        pid,
                        program: "nserver".into(),
                    },
                );
                if let Some(after) = self.exit_after_spawn {
                    self.schedule(
                        after,
                        Event::ServerExited {
                            pid,
                            exit: "exit code 1".into(),
                        },
                    );
                } else if self.speaks {
                    self.schedule(
                        Duration::from_secs(1),
                        msg("OpMsg=READY Type=SERVER", ServerSignal::ServerReady),
                    );
                }
            }
            Action::Probe { .. } => {
                let (after, event) = match self.probe {
                    ProbeMode::Ok => (
                        Duration::from_millis(12),
                        Event::ProbeFinished {
                            success: true,
                            latency: Duration::from_millis(12),
                            detail: String::new(),
                        },
                    ),
                    ProbeMode::Refused => (
                        Duration::from_millis(1),
                        Event::ProbeFinished {
                            success: false,
                            latency: Duration::from_millis(1),
                            detail: "connection refused (127.0.0.1:8089)".into(),
                        },
                    ),
                    ProbeMode::Silent => return,
                    ProbeMode::Unavailable => (
                        Duration::from_millis(1),
                        Event::ProbeUnavailable {
                            reason: "cannot open a socket to 127.0.0.1:8089: Too many open files (os error 24)".into(),
                        },
                    ),
                    ProbeMode::Hang => {
                        let limit = self.ctl.policy().probe_interval;
                        (
                            limit,
                            Event::ProbeFinished {
                                success: false,
                                latency: limit,
                                detail: "timed out".into(),
                            },
                        )
                    }
                };
                self.schedule(after, event);
            }
            Action::RunDiagnostics { reason, incident } => self.schedule(
                self.diag_delay,
                Event::DiagnosticsFinished {
                    incident: *incident,
                    path: Some(format!("diagnostics/nsd_{reason}.log")),
                    error: None,
                },
            ),
            // The leftovers are read in milliseconds; the file takes diag_delay.
            Action::RunPostMortem { incident } => {
                self.schedule(
                    Duration::from_millis(5),
                    Event::PostMortemCaptured {
                        incident: *incident,
                    },
                );
                self.schedule(
                    self.diag_delay,
                    Event::DiagnosticsFinished {
                        incident: Some(*incident),
                        path: Some("diagnostics/nsd_crash.log".into()),
                        error: None,
                    },
                );
            }
            Action::KillTree if self.unkillable => {}
            Action::KillTree => {
                if let Some(pid) = self.alive.take() {
                    self.schedule(
                        Duration::from_millis(20),
                        Event::ServerExited {
                            pid,
                            exit: "killed by SIGKILL".into(),
                        },
                    );
                }
            }
            Action::RequestStop => {
                if let (Some(pid), Some(delay)) = (self.alive, self.stop_delay) {
                    self.alive = None;
                    self.schedule(
                        delay,
                        Event::ServerExited {
                            pid,
                            exit: "exit code 0".into(),
                        },
                    );
                }
            }
            // The shell writes the state line itself (from the wording table too).
            Action::StateChanged { from, to, why } => {
                let stamp = qoscntrlr::review::Stamp(
                    SIM_EPOCH + i64::try_from((self.now - self.start).as_secs()).unwrap_or(0),
                );
                let text = wording::STATE_CHANGED.fill(&[&from.as_str(), &to.as_str(), why]);
                self.log.push(format!("{stamp} QoS Controller: {text}"));
            }
            Action::WriteTrigger => self.trigger = true,
            Action::RemoveTrigger => self.trigger = false,
            Action::SetHealth(h) => self.health = Some(h.clone()),
            Action::Reply { ok, message, .. } => self.replies.push_back((*ok, message.clone())),
            Action::Exit(code) => self.exit_code = Some(*code),
            _ => {}
        }
    }

    /// Run the world and the controller's deadlines forward by `d`.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let world = self.pending.first().map(|(t, _)| *t);
            let timer = self.ctl.next_deadline();
            let next = match (world, timer) {
                (Some(w), Some(t)) => w.min(t),
                (Some(w), None) => w,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > end || self.exit_code.is_some() {
                break;
            }
            self.now = self.now.max(next);
            if world == Some(next) {
                let (_, event) = self.pending.remove(0);
                // A server that was killed or replaced does not exit twice.
                self.feed(event);
            } else {
                self.feed(Event::DeadlineReached);
            }
        }
        if self.exit_code.is_none() {
            self.now = self.now.max(end);
        }
    }

    /// The controller is stopped for `d` (SIGSTOP, suspend): world events keep their
    /// times, the controller sees none of them; on waking the shell reports the stall
    /// first, then the events that waited.
    fn stall(&mut self, d: Duration) {
        self.now += d;
        self.feed(Event::StallObserved { stalled_for: d });
    }

    fn start(&mut self) {
        self.feed(Event::ControllerStarted {
            trigger_present: false,
        });
        self.run(Duration::from_secs(1));
    }

    fn command(&mut self, command: Command) -> (bool, String) {
        self.feed(Event::CommandReceived {
            command,
            uid: 1000,
            request: 1,
        });
        self.replies.pop_front().expect("every command is answered")
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn clear_lines(&mut self) {
        self.lines.clear();
    }

    /// `expected` appear in this order (other lines may come between).
    fn assert_in_order(&self, expected: &[&str]) {
        let mut at = 0;
        for want in expected {
            match self.lines[at..].iter().position(|l| l.contains(want)) {
                Some(i) => at += i + 1,
                None => panic!(
                    "line {want:?} not found in order; log was:\n{}",
                    self.lines.join("\n")
                ),
            }
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines.iter().filter(|l| l.contains(needle)).count()
    }
}

fn msg(text: &str, signal: ServerSignal) -> Event {
    Event::MessageReceived {
        text: text.into(),
        append_timedate: true,
        signal,
        from: None,
    }
}

const SMART_KILL: &[&str] = &[
    "QoS Kill: Triggering failover...",
    "QoS Kill: Running nsd...",
    "QoS Kill: Running nsd -kill",
    "QoS Kill: Setting kill complete.",
    "QoS Kill: Restarting DominoStarter thread",
];

#[test]
fn normal_start_logs_start_lines_then_ready_on_first_probe() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.assert_in_order(&[
        "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev ObjectType2=ProcessName ObjectValue2=nserver TimeDate=T",
        "QoS Controller: OpMsg=START Type=SERVER TimeDate=T",
        "QoS Applications: Clearing long running apps list",
        "QoS Probe: SUCCESS (12ms)",
        "QoS Controller: OpMsg=READY Type=SERVER TimeDate=T",
        "QoS Controller: Server is ready to process requests",
        "QoS Controller: Activating probe...",
        "QoS Controller: QoS Probe activated.",
        "QoS Probe: Starting qosprobe...",
        "QoS Probe: OpMsg=START, Type=PROBE",
        "QoS Probe: The QoS Probe is probing.",
    ]);
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.health, Some(Health::Ready));
}

#[test]
fn server_that_speaks_waits_for_its_ready_message() {
    let mut sim = Sim::new(Sim::fast());
    sim.speaks = true;
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_millis(10));
    sim.feed(msg("OpMsg=START Type=SERVER", ServerSignal::ServerStart));
    sim.run(Duration::from_millis(500));
    assert_eq!(
        sim.ctl.state(),
        StateName::Starting,
        "a probe success alone is not READY"
    );
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.count("OpMsg=READY Type=SERVER"), 1);
}

#[test]
fn probe_timeout_smart_kill_then_restart() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.probe = ProbeMode::Hang;
    sim.clear_lines();
    let before = sim.elapsed();
    sim.run(Duration::from_secs(65));
    sim.assert_in_order(&[
        "The probe thread has not received a message from qosprobe within the timeout period.",
        "QoS Probe: The qosprobe addin has timed out, is not responding, or is not running.",
        "QoS Controller: Deactivating probe...",
        "QoS Controller: QoS Probe deactivated.",
        "QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=T",
        "QoS Controller: The controller has received a probe timeout.",
    ]);
    assert_eq!(sim.count("Deactivating probe..."), 1);
    sim.assert_in_order(SMART_KILL);
    let bare = sim
        .lines
        .iter()
        .find(|l| l.contains("probe thread has not received"))
        .unwrap();
    assert!(
        !bare.starts_with("QoS"),
        "the probe-thread line has no component"
    );
    assert!(sim.elapsed() - before >= Duration::from_secs(60));
    // Failover was triggered before diagnostics, and the trigger stays until recovery.
    let trig = sim
        .actions
        .iter()
        .position(|a| *a == Action::WriteTrigger)
        .unwrap();
    let diag = sim
        .actions
        .iter()
        .position(|a| matches!(a, Action::RunDiagnostics { .. }))
        .unwrap();
    assert!(trig < diag);
    assert!(sim.trigger);
}

#[test]
fn probe_timeout_fires_exactly_at_the_timeout_on_the_monotonic_clock() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    // Last success just happened; the next attempts are refused.
    sim.probe = ProbeMode::Refused;
    let last_success = sim.ctl.status(sim.now).probe_last_success.unwrap();
    sim.run(Duration::from_secs(120));
    let timeout_at = sim.ctl.status(sim.now).incidents[0].detected_at;
    assert_eq!(timeout_at - last_success, Duration::from_secs(60));
}

#[test]
fn recovery_removes_trigger_only_after_ready_and_first_probe_success() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(70));
    assert!(sim.trigger);
    // The new server comes up but is still not answering: trigger stays.
    sim.run(Duration::from_secs(5));
    assert!(sim.trigger);
    sim.probe = ProbeMode::Ok;
    sim.run(Duration::from_secs(30));
    assert!(
        !sim.trigger,
        "trigger removed once the restarted server probes well"
    );
    assert!(sim.actions.iter().any(|a| matches!(
        a,
        Action::RunHook {
            event: HookEvent::Recovery,
            ..
        }
    )));
    assert_eq!(
        sim.count("Server has recovered; failover trigger removed"),
        1
    );
}

#[test]
fn restart_timeout_kills_without_failover_and_restarts() {
    let mut sim = Sim::new(Sim::fast());
    sim.probe = ProbeMode::Refused;
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_secs(65));
    sim.assert_in_order(&[
        "Server was not ready within QOS_RESTART_TIMEOUT (1 minute); killing and restarting",
        "QoS Kill: Running nsd...",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
    ]);
    assert_eq!(sim.count("Triggering failover..."), 0);
    assert!(!sim.trigger);
}

#[test]
fn crash_while_running_post_mortem_then_restart() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.clear_lines();
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "killed by SIGSEGV (core dumped)".into(),
    });
    sim.run(Duration::from_secs(10));
    sim.assert_in_order(&[
        "QoS Controller: OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=T",
        "QoS Controller: Server CN=rc45/O=dev has crashed.",
        "QoS Controller: Server exit: killed by SIGSEGV (core dumped)",
        "QoS Controller: Deactivating probe...",
        "QoS Controller: QoS Probe deactivated.",
        "QoS Kill: Running nsd...",
        "QoS Kill: Restarting DominoStarter thread",
        "OpMsg=START Type=QOS",
    ]);
    assert_eq!(
        sim.count("Triggering failover"),
        0,
        "no failover for a crash"
    );
    assert!(sim
        .actions
        .iter()
        .any(|a| matches!(a, Action::Mail(m) if m.kind == qoscntrlr::core::AlertKind::Crash)));
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn a_dead_servers_restart_does_not_wait_for_its_post_mortem_file() {
    let mut sim = Sim::new(Sim::fast());
    sim.diag_delay = Duration::from_secs(30);
    sim.start();
    sim.clear_lines();
    let pid = sim.alive.take().unwrap();
    let crashed_at = sim.elapsed();
    sim.feed(Event::ServerExited {
        pid,
        exit: "killed by SIGKILL".into(),
    });
    // The post-mortem reads the leftovers first; then they are killed and the server
    // restarts, long before the 30 s file is done.
    sim.run(Duration::from_secs(2));
    sim.assert_in_order(&[
        "QoS Controller: Server CN=rc45/O=dev has crashed.",
        "QoS Kill: Running nsd...",
        "QoS Kill: Restarting DominoStarter thread",
        "OpMsg=START Type=QOS",
    ]);
    let post_mortem = sim
        .actions
        .iter()
        .position(|a| matches!(a, Action::RunPostMortem { .. }))
        .expect("a post-mortem");
    let kill = sim
        .actions
        .iter()
        .position(|a| *a == Action::KillTree)
        .expect("the leftovers are killed");
    let spawn = sim
        .actions
        .iter()
        .rposition(|a| *a == Action::Spawn)
        .expect("a restart");
    assert!(post_mortem < kill && kill < spawn, "{:#?}", sim.actions);
    assert!(sim.elapsed() - crashed_at < Duration::from_secs(3));
    assert_eq!(sim.count("Diagnostics written to"), 0);
    assert!(!sim
        .actions
        .iter()
        .any(|a| matches!(a, Action::Mail(m) if m.kind == qoscntrlr::core::AlertKind::Crash)));
    // A re-exec would lose the file's report: it waits.
    let (ok, text) = sim.command(Command::Reexec);
    assert!(!ok && text.contains("post-mortem"), "{text}");

    // The file is done after the restart: logged, the mail carries it, and the crash's
    // incident in `status` points at it.
    sim.run(Duration::from_secs(40));
    assert_eq!(
        sim.count("Diagnostics written to diagnostics/nsd_crash.log"),
        1
    );
    let mail = sim
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Mail(m) if m.kind == qoscntrlr::core::AlertKind::Crash => Some(m.clone()),
            _ => None,
        })
        .expect("the crash mail");
    assert_eq!(
        mail.diagnostics.as_deref(),
        Some("diagnostics/nsd_crash.log")
    );
    let status = sim.ctl.status(sim.now);
    let crash = status
        .incidents
        .iter()
        .find(|r| r.kind == "crash")
        .expect("the crash incident");
    assert_eq!(
        crash.diagnostics.as_deref(),
        Some("diagnostics/nsd_crash.log")
    );
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(sim.ctl.reexec_refusal().is_none());
}

#[test]
fn a_server_that_reported_its_crash_and_then_ended_is_restarted_without_waiting() {
    let mut sim = Sim::new(Sim::fast());
    sim.diag_delay = Duration::from_secs(30);
    sim.start();
    sim.feed(msg(
        "OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev",
        ServerSignal::Crash,
    ));
    assert_eq!(sim.ctl.state(), StateName::Crashed);
    // Alive, it gets the full diagnostics (stacks); it ends 1 s into them.
    let pid = sim.alive.take().unwrap();
    sim.schedule(
        Duration::from_secs(1),
        Event::ServerExited {
            pid,
            exit: "exit code 1".into(),
        },
    );
    sim.run(Duration::from_secs(3));
    assert_eq!(sim.count("Restarting DominoStarter thread"), 1);
    assert!(sim.actions.contains(&Action::KillTree));
    assert_eq!(sim.count("Diagnostics written to"), 0);
    sim.run(Duration::from_secs(40));
    assert_eq!(sim.count("Diagnostics written to"), 1);
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn crash_message_post_mortem_kills_leftovers_then_restarts() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.feed(msg(
        "OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev",
        ServerSignal::Crash,
    ));
    assert_eq!(sim.ctl.state(), StateName::Crashed);
    sim.run(Duration::from_secs(10));
    assert!(sim.actions.contains(&Action::KillTree));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.count("Restarting DominoStarter thread"), 1);
}

#[test]
fn server_exiting_at_once_hits_restart_limit_and_faults() {
    let mut sim = Sim::new(Sim::fast());
    sim.exit_after_spawn = Some(Duration::from_millis(50));
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_secs(120));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    assert_eq!(sim.count("Restarting DominoStarter thread"), 3);
    sim.assert_in_order(&[
        "Restart limit reached: 3 restarts within 30 minutes; server left down (FAULTED)",
    ]);
    // Still answering commands while FAULTED.
    let (ok, text) = sim.command(Command::Restart);
    assert!(!ok && text.contains("FAULTED"), "{text}");
    sim.exit_after_spawn = None;
    let (ok, _) = sim.command(Command::ClearFault { no_start: false });
    assert!(ok);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn restart_limit_window_slides() {
    let mut sim = Sim::new(Policy {
        restart_limit_period: Duration::from_secs(100),
        ..Sim::fast()
    });
    sim.start();
    for _ in 0..3 {
        let pid = sim.alive.take().unwrap();
        sim.feed(Event::ServerExited {
            pid,
            exit: "exit code 1".into(),
        });
        sim.run(Duration::from_secs(40));
    }
    // Three restarts 40 s apart; the first has left the 100 s window by now.
    assert_eq!(sim.ctl.state(), StateName::Ready);
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.ctl.state(), StateName::Ready, "oldest restart slid out");
}

#[test]
fn auto_fault_clear_leaves_faulted_after_its_time() {
    let mut sim = Sim::new(Policy {
        auto_fault_clear: Duration::from_secs(300),
        ..Sim::fast()
    });
    sim.exit_after_spawn = Some(Duration::from_millis(50));
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    sim.exit_after_spawn = None;
    sim.run(Duration::from_secs(300));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.count("QOS_AUTO_FAULT_CLEAR: leaving FAULTED"), 1);
}

#[test]
fn quit_logs_end_lines_stops_server_and_exits_zero() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.clear_lines();
    sim.feed(Event::StopRequested);
    assert_eq!(sim.health, Some(Health::Drain));
    sim.run(Duration::from_secs(10));
    sim.assert_in_order(&[
        "QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=T",
        "QoS Controller: Deactivating probe...",
        "QoS Controller: QoS Probe deactivated.",
        "QoS Controller: Server ended (exit code 0)",
        "QoS Controller: OpMsg=END Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=T",
    ]);
    assert_eq!(sim.exit_code, Some(0));
    assert_eq!(sim.count("Restarting DominoStarter"), 0);
}

#[test]
fn server_announcing_its_own_start_and_quit_is_logged_once() {
    let mut sim = Sim::new(Sim::fast());
    sim.speaks = true;
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_millis(10));
    sim.feed(msg(
        "OpMsg=START Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev",
        ServerSignal::QosStart,
    ));
    sim.feed(msg("OpMsg=START Type=SERVER", ServerSignal::ServerStart));
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.count("OpMsg=START Type=QOS"), 1, "{:#?}", sim.lines);
    assert_eq!(sim.count("OpMsg=START Type=SERVER"), 1, "{:#?}", sim.lines);

    // The quit the controller asked for, confirmed by the server.
    sim.feed(Event::StopRequested);
    sim.feed(msg(
        "OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit",
        ServerSignal::ServerEnd { restart: false },
    ));
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.exit_code, Some(0));
    assert_eq!(sim.count("OpMsg=END Type=SERVER"), 1, "{:#?}", sim.lines);
}

#[test]
fn server_ending_on_its_own_is_logged() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.clear_lines();
    sim.feed(msg(
        "OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit",
        ServerSignal::ServerEnd { restart: false },
    ));
    assert_eq!(sim.ctl.state(), StateName::Stopping);
    assert_eq!(sim.count("OpMsg=END Type=SERVER"), 1, "{:#?}", sim.lines);
}

#[test]
fn shutdown_too_long_kills_without_restart() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.stop_delay = None; // ignores SIGTERM
    sim.feed(Event::StopRequested);
    sim.run(Duration::from_secs(120));
    sim.assert_in_order(&[
        "Server did not shut down within QOS_SHUTDOWN_TIMEOUT (1 minute); killing",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "OpMsg=END Type=QOS",
    ]);
    assert_eq!(sim.exit_code, Some(0));
    assert_eq!(sim.count("Triggering failover"), 0);
    assert_eq!(sim.count("Restarting DominoStarter"), 0);
}

#[test]
fn shutdown_nsd_collects_diagnostics_periodically_during_slow_shutdown() {
    let mut sim = Sim::new(Policy {
        shutdown_nsd: Duration::from_secs(20),
        ..Sim::fast()
    });
    sim.start();
    sim.stop_delay = None;
    sim.feed(Event::StopRequested);
    sim.run(Duration::from_secs(59));
    let runs = sim
        .actions
        .iter()
        .filter(|a| matches!(a, Action::RunDiagnostics { reason, .. } if reason == "shutdown"))
        .count();
    assert_eq!(runs, 2, "at 20 s and 40 s");
}

#[test]
fn second_stop_request_kills_at_once() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.stop_delay = None;
    sim.feed(Event::StopRequested);
    sim.feed(Event::StopRequested);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.exit_code, Some(0));
}

#[test]
fn long_running_application_defers_probe_timeout() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.feed(msg(
        "OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf",
        ServerSignal::AppStart {
            app: AppKey::new("FIXUP", Some("C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf")),
        },
    ));
    sim.probe = ProbeMode::Refused;
    sim.run(Duration::from_secs(90));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(
        sim.count(
            "There are long running applications - probing will pause until they have completed."
        ),
        1
    );
    assert!(
        sim.count("QoS Probe: ERROR") >= 8,
        "probing and its log continue"
    );
    sim.feed(msg(
        "OpMsg=END Type=FIXUP",
        ServerSignal::AppEnd {
            app: AppKey::new(
                "FIXUP",
                Some("C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf"),
            ),
        },
    ));
    sim.assert_in_order(&[
        "QoS Applications: Adding FIXUP[C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf] to long running apps list",
        "QoS Applications: Removing FIXUP[C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf] from long running apps list..",
    ]);
    // A full timeout window after the applications finished, the probe timeout fires.
    sim.run(Duration::from_secs(59));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.count("The controller has received a probe timeout."), 1);
}

#[test]
fn application_without_progress_is_killed_after_apps_timeout() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.clear_lines();
    sim.feed(msg(
        "OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=events4.nsf",
        ServerSignal::AppStart {
            app: AppKey::new("COMPACT", Some("events4.nsf")),
        },
    ));
    sim.run(Duration::from_secs(60));
    sim.feed(msg(
        "OpMsg=PROGRESS Type=COMPACT ObjectType=DB ObjectValue=events4.nsf",
        ServerSignal::AppProgress {
            app: AppKey::new("COMPACT", Some("events4.nsf")),
        },
    ));
    sim.run(Duration::from_secs(119));
    assert_eq!(
        sim.count("Triggering failover"),
        0,
        "progress reset its timer"
    );
    sim.run(Duration::from_secs(10));
    sim.assert_in_order(&[
        "QoS Applications: Application COMPACT[events4.nsf] has made no progress for 120 seconds",
    ]);
    sim.assert_in_order(SMART_KILL);
}

#[test]
fn application_that_ends_in_time_is_left_alone() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let app = AppKey::new("COMPACT", Some("events4.nsf"));
    sim.feed(msg(
        "OpMsg=START Type=COMPACT",
        ServerSignal::AppStart { app: app.clone() },
    ));
    sim.run(Duration::from_secs(100));
    sim.feed(msg("OpMsg=END Type=COMPACT", ServerSignal::AppEnd { app }));
    sim.run(Duration::from_secs(300));
    assert_eq!(sim.count("Triggering failover"), 0);
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn end_of_unknown_application_is_logged_and_ignored() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.feed(msg(
        "OpMsg=END Type=BACKUP",
        ServerSignal::AppEnd {
            app: AppKey::new("BACKUP", Some("x")),
        },
    ));
    assert_eq!(
        sim.count("End of BACKUP[x], which is not in the long running apps list; ignored"),
        1
    );
}

#[test]
fn exhausted_resource_message_smart_kills() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.clear_lines();
    sim.feed(msg(
        "OpMsg=EXHAUSTED Type=SESSION_TABLE",
        ServerSignal::Exhausted {
            resource: "SESSION_TABLE".into(),
        },
    ));
    sim.run(Duration::from_secs(10));
    sim.assert_in_order(&["QoS Controller: Server is out of SESSION_TABLE"]);
    sim.assert_in_order(SMART_KILL);
}

#[test]
fn measured_exhaustion_smart_kills() {
    let mut sim = Sim::new(Policy {
        rules: limits(800, 0),
        ..Sim::fast()
    });
    sim.start();
    sim.feed(sampled(812, 5.0));
    sim.run(Duration::from_secs(10));
    sim.assert_in_order(&["Server has exhausted memory (812 MB > 800 MB)"]);
    sim.assert_in_order(SMART_KILL);
}

#[test]
fn an_oom_kill_in_the_servers_cgroup_is_an_incident_of_its_own_without_a_kill() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let pid = sim.alive;
    sim.clear_lines();
    sim.feed(Event::OomKilled { kills: 2, total: 3 });
    sim.run(Duration::from_secs(5));
    sim.assert_in_order(&[
        "QoS Controller: The kernel's OOM killer killed 2 process(es) in the server's cgroup (memory.events oom_kill=3)",
    ]);
    assert!(
        sim.actions.iter().any(|a| matches!(a, Action::Mail(alert) if alert.summary.contains("out-of-memory killer killed 2"))),
        "mailed"
    );
    assert!(
        sim.actions
            .iter()
            .any(|a| matches!(a, Action::Incident { kind, outcome, .. } if kind == "oom-kill" && *outcome == IncidentOutcome::Detected)),
        "recorded as an incident"
    );
    // The server survived it: nothing is killed or restarted.
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.alive, pid);
    assert_eq!(sim.count("Running nsd -kill"), 0);
    // No new kills, no incident.
    let before = sim.actions.len();
    sim.feed(Event::OomKilled { kills: 0, total: 3 });
    assert_eq!(sim.actions.len(), before);
}

#[test]
fn server_probe_timeout_message_smart_kills() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.feed(msg("OpMsg=TIMEOUT Type=PROBE", ServerSignal::ProbeTimeout));
    sim.run(Duration::from_secs(10));
    sim.assert_in_order(&[
        "OpMsg=TIMEOUT Type=PROBE",
        "The controller has received a probe timeout.",
    ]);
    sim.assert_in_order(SMART_KILL);
}

#[test]
fn nokill_detects_reports_once_and_never_kills() {
    let mut sim = Sim::new(Policy {
        nokill: true,
        ..Sim::fast()
    });
    sim.start();
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(300));
    assert_eq!(sim.count("The controller has received a probe timeout."), 1);
    assert_eq!(sim.count("QOS_NOKILL is set: not killing the server"), 1);
    assert_eq!(sim.count("Triggering failover"), 0);
    assert!(!sim.actions.contains(&Action::KillTree));
    // Kept for inspection, not for traffic: the outputs are down while it lasts.
    assert!(sim.trigger, "NOKILL still moves traffic away");
    assert!(matches!(sim.health, Some(Health::Down { .. })));
    assert_eq!(sim.ctl.failover_state(), FailoverState::FailoverTriggered);
    let mails: Vec<_> = sim
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Mail(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].diagnostics.is_some(),
        "the notification carries the diagnostics file"
    );
    sim.probe = ProbeMode::Ok;
    sim.run(Duration::from_secs(20));
    assert_eq!(
        sim.count("Server has recovered: the probe succeeds again"),
        1
    );
    assert!(
        !sim.trigger,
        "the condition cleared by itself: outputs back"
    );
    assert_eq!(sim.health, Some(Health::Ready));
    assert_eq!(sim.ctl.failover_state(), FailoverState::InService);
}

#[test]
fn disabled_failover_trigger_writes_trigger_but_runs_no_hook() {
    let mut sim = Sim::new(Policy {
        failover_trigger_disabled: true,
        ..Sim::fast()
    });
    sim.start();
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(70));
    assert!(sim.actions.contains(&Action::WriteTrigger));
    assert!(!sim.actions.iter().any(|a| matches!(
        a,
        Action::RunHook {
            event: HookEvent::Failover,
            ..
        }
    )));
}

#[test]
fn pause_suppresses_kill_until_resume() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let (ok, _) = sim.command(Command::Pause { duration: None });
    assert!(ok);
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(200));
    assert_eq!(sim.count("Triggering failover"), 0);
    assert!(
        sim.count("QoS Probe: ERROR") > 5,
        "probing continues and is logged"
    );
    assert_eq!(
        sim.count("Paused: not killing the server (probe timeout)"),
        1
    );
    let (ok, _) = sim.command(Command::Resume);
    assert!(ok);
    sim.run(Duration::from_secs(5));
    sim.assert_in_order(SMART_KILL);
}

#[test]
fn pause_for_duration_resumes_by_itself() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.command(Command::Pause {
        duration: Some(Duration::from_secs(100)),
    });
    assert!(sim.ctl.status(sim.now).paused);
    sim.run(Duration::from_secs(101));
    assert!(!sim.ctl.status(sim.now).paused);
    assert_eq!(sim.count("Pause expired; resuming"), 1);
}

#[test]
fn crash_while_paused_stays_down_until_resume() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.command(Command::Pause { duration: None });
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 2".into(),
    });
    sim.run(Duration::from_secs(30));
    assert_eq!(sim.ctl.state(), StateName::Stopped);
    sim.command(Command::Resume);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn operator_commands_answer_and_refuse_clearly() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let (ok, _) = sim.command(Command::Start);
    assert!(ok, "start is idempotent");
    sim.stop_delay = None;
    let (ok, _) = sim.command(Command::Quit);
    assert!(ok);
    assert_eq!(sim.ctl.state(), StateName::Stopping);
    let (ok, text) = sim.command(Command::Restart);
    assert!(!ok);
    assert_eq!(text, "restart refused: the server is stopping");
    sim.run(Duration::from_secs(70));
    assert_eq!(sim.ctl.state(), StateName::Stopped);
    assert!(
        sim.exit_code.is_none(),
        "an operator quit keeps the controller running"
    );
    let (ok, _) = sim.command(Command::Start);
    assert!(ok);
    sim.stop_delay = Some(Duration::from_secs(1));
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(sim.count("Command start from uid 1000") >= 1);
}

#[test]
fn operator_restart_does_not_count_against_the_limit() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    for _ in 0..5 {
        let (ok, _) = sim.command(Command::Restart);
        assert!(ok);
        sim.run(Duration::from_secs(10));
        assert_eq!(sim.ctl.state(), StateName::Ready);
    }
    assert_eq!(sim.ctl.status(sim.now).restarts_in_window, 0);
}

#[test]
fn operator_kill_runs_the_smart_kill_and_restarts() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let (ok, _) = sim.command(Command::Kill);
    assert!(ok);
    assert_eq!(sim.ctl.state(), StateName::Killing);
    let (ok, text) = sim.command(Command::Kill);
    assert!(!ok && text.contains("a kill is in progress"));
    sim.run(Duration::from_secs(10));
    sim.assert_in_order(SMART_KILL);
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn diagnose_collects_without_killing() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let (ok, _) = sim.command(Command::Diagnose);
    assert!(ok);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(!sim.actions.contains(&Action::KillTree));
    assert_eq!(
        sim.count("Diagnostics written to diagnostics/nsd_operator.log"),
        1
    );
}

/// Stack collectors stop the server's threads while they read them: operator
/// diagnostics that outlast the probe timeout must not turn into a probe-timeout kill.
#[test]
fn operator_diagnostics_longer_than_the_probe_timeout_kill_nothing() {
    let policy = Sim::fast();
    let mut sim = Sim::new(policy.clone());
    sim.diag_delay = policy.probe_timeout * 3;
    sim.start();
    let (ok, _) = sim.command(Command::Diagnose);
    assert!(ok);
    sim.probe = ProbeMode::Hang;
    sim.run(sim.diag_delay - Duration::from_secs(1));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    sim.probe = ProbeMode::Ok;
    sim.run(policy.probe_timeout);
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(!sim.actions.contains(&Action::KillTree));
    assert_eq!(sim.count("probe timeout"), 0);
}

/// The hold ends with the diagnostics: a server still hung afterwards is killed.
#[test]
fn a_server_still_hung_after_operator_diagnostics_is_killed() {
    let policy = Sim::fast();
    let mut sim = Sim::new(policy.clone());
    sim.diag_delay = policy.probe_timeout * 3;
    sim.start();
    sim.command(Command::Diagnose);
    sim.probe = ProbeMode::Hang;
    sim.run(sim.diag_delay + policy.probe_timeout * 3);
    assert!(sim.actions.contains(&Action::KillTree));
    sim.assert_in_order(SMART_KILL);
}

#[test]
fn trigger_left_by_previous_run_is_kept_until_healthy() {
    let mut sim = Sim::new(Sim::fast());
    sim.trigger = true;
    sim.probe = ProbeMode::Refused;
    sim.feed(Event::ControllerStarted {
        trigger_present: true,
    });
    sim.run(Duration::from_secs(30));
    assert!(sim.trigger);
    sim.probe = ProbeMode::Ok;
    sim.run(Duration::from_secs(15));
    assert!(!sim.trigger);
}

#[test]
fn qos_disabled_supervises_crashes_only() {
    let mut sim = Sim::new(Policy {
        qos_enable: false,
        probing: false,
        ..Sim::fast()
    });
    sim.probe = ProbeMode::Hang;
    sim.start();
    assert_eq!(sim.ctl.state(), StateName::Ready);
    sim.run(Duration::from_secs(600));
    assert!(!sim
        .actions
        .iter()
        .any(|a| matches!(a, Action::Probe { .. })));
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn probe_cadence_is_one_attempt_per_interval() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let before = sim
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Probe { .. }))
        .count();
    sim.run(Duration::from_secs(100));
    let after = sim
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Probe { .. }))
        .count();
    assert_eq!(after - before, 10);
}

#[test]
fn probe_by_message_feeds_results_and_times_out() {
    let mut sim = Sim::new(Policy {
        probe_by_message: true,
        ..Sim::fast()
    });
    sim.speaks = true;
    sim.start();
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    sim.feed(msg(
        "OpMsg=PROBE Type=SUCCESS ObjectType=Latency ObjectValue=156",
        ServerSignal::ProbeResult {
            success: true,
            latency_ms: Some(156),
            detail: None,
        },
    ));
    assert_eq!(sim.count("QoS Probe: SUCCESS (156ms)"), 1);
    assert!(!sim
        .actions
        .iter()
        .any(|a| matches!(a, Action::Probe { .. })));
    sim.run(Duration::from_secs(61));
    assert_eq!(sim.count("The controller has received a probe timeout."), 1);
}

#[test]
fn restart_timeout_while_paused_is_acted_on_at_resume() {
    let mut sim = Sim::new(Sim::fast());
    sim.probe = ProbeMode::Refused;
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.command(Command::Pause { duration: None });
    sim.run(Duration::from_secs(200));
    assert_eq!(sim.ctl.state(), StateName::Starting);
    assert_eq!(sim.count("Running nsd -kill"), 0);
    assert_eq!(
        sim.count("Paused: not killing the server (restart timeout)"),
        1
    );
    sim.command(Command::Resume);
    sim.run(Duration::from_secs(10));
    sim.assert_in_order(&[
        "Resuming: acting on the restart timeout detected while paused",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Restarting DominoStarter thread",
    ]);
}

#[test]
fn a_server_that_never_starts_is_restarted_with_backoff_when_the_limit_is_off() {
    let mut sim = Sim::new(Policy {
        restart_limit_enable: false,
        ..Sim::fast()
    });
    sim.exit_after_spawn = Some(Duration::from_millis(10));
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_secs(300));
    // 1 s, 2 s, 4 s … then a minute apart: a handful, not thousands.
    let spawns = sim.actions.iter().filter(|a| **a == Action::Spawn).count();
    assert!((8..=12).contains(&spawns), "{spawns} spawns in 5 minutes");
    sim.assert_in_order(&[
        "Restarting in 1 second (the server failed 2 time(s) in a row before becoming ready)",
        "Restarting in 2 seconds (the server failed 3 time(s) in a row before becoming ready)",
        "Restarting in 1 minute",
    ]);
    // Once a server becomes ready, the next crash is restarted at once again.
    sim.exit_after_spawn = None;
    sim.run(Duration::from_secs(70));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    sim.run(Duration::from_secs(4));
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

// ----- stalls of the controller itself ----------------------------------------------

/// Stopped for longer than the probe timeout with a healthy server: the controller
/// probes again, the answer is good, nothing is killed.
#[test]
fn stall_longer_than_the_probe_timeout_probes_again_instead_of_killing() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.run(Duration::from_secs(30));
    sim.clear_lines();
    let probes_before = sim
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Probe { .. }))
        .count();
    sim.stall(Duration::from_secs(90));
    assert_eq!(
        sim.lines.first().map(String::as_str),
        Some("QoS Controller: Controller was stalled for 90 s; probing again before acting")
    );
    sim.run(Duration::from_secs(120));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.count("probe timeout"), 0, "{:#?}", sim.lines);
    assert!(sim.lines.iter().all(|l| !SMART_KILL.contains(&l.as_str())));
    assert!(
        sim.actions
            .iter()
            .filter(|a| matches!(a, Action::Probe { .. }))
            .count()
            > probes_before
    );
}

/// The attempt in flight across the stall timed out because the controller was stopped:
/// that failure is stale, a fresh attempt is sent at once and decides.
#[test]
fn stale_probe_failure_across_a_stall_is_retried_not_counted() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.run(Duration::from_secs(9));
    // The next attempt (due at 10 s) hangs; the controller stops while it is in flight.
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_millis(1500));
    sim.probe = ProbeMode::Ok;
    sim.clear_lines();
    sim.stall(Duration::from_secs(70));
    let probes_at_stall = sim
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Probe { .. }))
        .count();
    sim.run(Duration::from_secs(30));
    assert_eq!(sim.ctl.state(), StateName::Ready, "{:#?}", sim.lines);
    assert_eq!(sim.count("probe timeout"), 0, "{:#?}", sim.lines);
    assert!(sim.count("QoS Probe: SUCCESS") >= 1, "{:#?}", sim.lines);
    assert!(
        sim.actions
            .iter()
            .filter(|a| matches!(a, Action::Probe { .. }))
            .count()
            > probes_at_stall
    );
}

/// A server that really hangs is still killed after a stall: the wait is bounded and
/// the stalled time simply does not count.
#[test]
fn a_real_hang_is_still_killed_after_a_stall() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.probe = ProbeMode::Refused;
    sim.run(Duration::from_secs(20));
    sim.stall(Duration::from_secs(90));
    assert_eq!(
        sim.ctl.state(),
        StateName::Ready,
        "not at once: {:#?}",
        sim.lines
    );
    // 40 s of the 60 s window were left before the stall.
    sim.run(Duration::from_secs(45));
    assert_eq!(
        sim.count("The controller has received a probe timeout."),
        1,
        "{:#?}",
        sim.lines
    );
}

/// No answer at all after the stall (the probe hangs): the hold ends after its bound and
/// the timeout applies with the stalled time left out.
#[test]
fn stall_hold_is_bounded_when_no_answer_comes() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.probe = ProbeMode::Refused;
    sim.run(Duration::from_secs(50));
    sim.probe = ProbeMode::Silent;
    sim.stall(Duration::from_secs(30));
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    sim.run(Duration::from_secs(60));
    assert_eq!(
        sim.count("No probe answer since the stall; timeouts apply again"),
        1
    );
    assert_eq!(sim.count("The controller has received a probe timeout."), 1);
}

/// A long-running application's PROGRESS that waited in the pipe during the stall
/// arrives after the stall: the application is not timed out in between.
#[test]
fn stall_does_not_time_out_long_running_applications() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let app = AppKey::new("COMPACT", Some("big.nsf"));
    sim.feed(msg(
        "OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=big.nsf",
        ServerSignal::AppStart { app: app.clone() },
    ));
    sim.run(Duration::from_secs(100));
    sim.stall(Duration::from_secs(150));
    sim.run(Duration::from_millis(10));
    sim.feed(msg(
        "OpMsg=PROGRESS Type=COMPACT ObjectType=DB ObjectValue=big.nsf",
        ServerSignal::AppProgress { app },
    ));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.ctl.state(), StateName::Ready, "{:#?}", sim.lines);
    assert_eq!(sim.count("has made no progress"), 0);
}

/// A measured exhaustion reported during the hold waits for the probe's answer, then is
/// acted on.
#[test]
fn exhaustion_during_a_stall_hold_is_acted_on_after_the_probe_answers() {
    let mut sim = Sim::new(Policy {
        rules: limits(1024, 0),
        ..Sim::fast()
    });
    sim.start();
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(5));
    sim.stall(Duration::from_secs(30));
    sim.feed(sampled(2048, 5.0));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(
        sim.count("acting once the probe after the stall has answered"),
        1
    );
    sim.run(Duration::from_secs(30));
    assert!(
        sim.lines
            .iter()
            .any(|l| l == "QoS Controller: Server has exhausted memory (2048 MB > 1024 MB)"),
        "{:#?}",
        sim.lines
    );
    assert_ne!(sim.ctl.state(), StateName::Ready);
}

/// Late by less than the probe interval: scheduling noise, nothing logged or changed.
#[test]
fn short_lateness_is_not_a_stall() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.clear_lines();
    sim.stall(Duration::from_secs(5));
    assert_eq!(sim.count("stalled"), 0);
}

// ----- qoscntrlr reexec: the state crosses a handoff ------------------------------------

impl Sim {
    /// Hand the controller's state to a "new image" the way `qoscntrlr reexec` does:
    /// serialized with instants as offsets from the handoff moment, read back after
    /// `gap` against the same moment (the monotonic clock runs on across `execve`).
    /// A probe result still on its way is lost with the old image.
    fn reexec(&mut self, gap: Duration) {
        let handed_at = self.now;
        let json =
            qoscntrlr::core::instants::with_anchor(handed_at, || serde_json::to_string(&self.ctl))
                .expect("the state serializes");
        self.pending
            .retain(|(_, e)| !matches!(e, Event::ProbeFinished { .. }));
        self.now += gap;
        let back: Controller =
            qoscntrlr::core::instants::with_anchor(handed_at, || serde_json::from_str(&json))
                .expect("the state reads back");
        self.ctl = back;
        self.ctl.resume_after_reexec(self.now);
    }
}

/// What status shows and when the controller next wants to run, as text.
fn observable(ctl: &Controller, now: Instant) -> (String, Option<Instant>) {
    (format!("{:?}", ctl.status(now)), ctl.next_deadline())
}

#[test]
fn reexec_is_refused_while_a_kill_crash_or_stop_is_under_way() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.feed(Event::CommandReceived {
        command: Command::Reexec,
        uid: 0,
        request: 7,
    });
    assert!(
        sim.actions.contains(&Action::Reexec { request: 7 }),
        "READY: the shell is asked to re-exec"
    );
    assert!(sim.replies.is_empty(), "the shell answers, not the core");
    sim.command(Command::Kill);
    assert_eq!(sim.ctl.state(), StateName::Killing);
    let (ok, text) = sim.command(Command::Reexec);
    assert!(!ok);
    assert!(text.contains("KILLING"), "{text}");
    sim.run(Duration::from_secs(30));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    sim.stop_delay = None;
    sim.command(Command::Quit);
    let (ok, text) = sim.command(Command::Reexec);
    assert!(!ok && text.contains("STOPPING"), "{text}");
}

#[test]
fn a_handoff_changes_nothing_status_shows_or_any_deadline() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let app = AppKey::new("COMPACT", Some("big.nsf"));
    sim.feed(msg(
        "OpMsg=START Type=COMPACT",
        ServerSignal::AppStart { app },
    ));
    sim.command(Command::Pause {
        duration: Some(Duration::from_secs(300)),
    });
    // A crash while paused (stays down until resume), in the restart window.
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 3".into(),
    });
    sim.run(Duration::from_secs(7));
    for _ in 0..3 {
        let before = observable(&sim.ctl, sim.now);
        sim.reexec(Duration::ZERO);
        assert_eq!(observable(&sim.ctl, sim.now), before);
        sim.run(Duration::from_secs(50));
    }
    // The pause still ends when it was meant to and the server comes back.
    sim.run(Duration::from_secs(200));
    assert_eq!(sim.count("Pause expired; resuming"), 1);
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn the_probe_timeout_baseline_survives_a_handoff() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.run(Duration::from_secs(5));
    let last_success = sim.ctl.status(sim.now).probe_last_success.unwrap();
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(40));
    // The old image had an attempt in flight: lost; the new image probes at once.
    sim.reexec(Duration::from_millis(30));
    sim.clear_lines();
    sim.run(Duration::from_millis(1));
    let timeout_at = last_success + Duration::from_secs(60);
    sim.run(timeout_at - sim.now - Duration::from_millis(10));
    assert_eq!(sim.count("The controller has received a probe timeout."), 0);
    sim.run(Duration::from_millis(20));
    assert_eq!(
        sim.count("The controller has received a probe timeout."),
        1,
        "the timeout counts from the last success before the handoff, not from it"
    );
}

#[test]
fn an_application_keeps_its_deadline_across_a_handoff() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let app = AppKey::new("COMPACT", Some("events4.nsf"));
    sim.feed(msg(
        "OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=events4.nsf",
        ServerSignal::AppStart { app },
    ));
    let started = sim.now;
    sim.run(Duration::from_secs(90));
    sim.reexec(Duration::from_millis(40));
    sim.run(started + Duration::from_secs(119) - sim.now);
    assert_eq!(sim.count("Triggering failover"), 0);
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.ctl.state(), StateName::Killing, "due at START + 120 s");
    sim.run(Duration::from_secs(30));
    sim.assert_in_order(&[
        "QoS Applications: Application COMPACT[events4.nsf] has made no progress for 120 seconds",
    ]);
    sim.assert_in_order(SMART_KILL);
}

#[test]
fn a_probe_in_flight_at_the_handoff_is_replaced_at_once() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.probe = ProbeMode::Silent;
    sim.run(Duration::from_secs(10));
    sim.clear_lines();
    sim.probe = ProbeMode::Ok;
    sim.reexec(Duration::from_millis(20));
    let due = sim.ctl.next_deadline().unwrap();
    assert!(
        due <= sim.now,
        "a new attempt is due now, not an interval later"
    );
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.count("QoS Probe: SUCCESS"), 1);
}

#[test]
fn an_adopted_server_is_supervised_with_fresh_timers() {
    let now = Instant::now();
    let (ctl, actions) = Controller::adopt(Sim::fast(), now, 4242, true);
    let mut sim = Sim::new(Sim::fast());
    sim.ctl = ctl;
    sim.now = now;
    sim.alive = Some(4242);
    sim.trigger = true;
    for action in &actions {
        sim.apply(action);
    }
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.ctl.server_pid(), Some(4242));
    assert_eq!(
        sim.count("QoS Controller: Server (pid 4242) adopted without its previous state"),
        1
    );
    // The outstanding failover is taken back on the first successful probe.
    sim.run(Duration::from_secs(1));
    assert!(!sim.trigger, "{:?}", sim.lines);
    assert_eq!(sim.health, Some(Health::Ready));
    // A hang is still detected and killed.
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(90));
    sim.assert_in_order(SMART_KILL);
}

// ----- the controller's own faults ------------------------------------------------------

/// Out of descriptors, the controller cannot probe: a controller fault, logged and
/// alerted once, never a failed probe; the blind time does not count afterwards.
#[test]
fn probe_the_controller_cannot_make_is_not_a_server_failure() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.run(Duration::from_secs(5));
    sim.clear_lines();
    // Every attempt for 5 minutes fails on the controller's side.
    sim.probe = ProbeMode::Unavailable;
    sim.run(Duration::from_secs(300));
    assert_eq!(sim.ctl.state(), StateName::Ready, "{:#?}", sim.lines);
    assert_eq!(sim.count("Controller fault: cannot probe the server"), 1);
    assert_eq!(sim.count("probe timeout"), 0);
    let alerts = sim
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Mail(alert) if alert.summary.contains("fault of the controller")))
        .count();
    assert_eq!(alerts, 1);
    // Probing works again, then the server hangs: the timeout counts from the recovery.
    sim.probe = ProbeMode::Ok;
    sim.run(Duration::from_secs(15));
    assert_eq!(
        sim.count("The controller can probe again after"),
        1,
        "{:#?}",
        sim.lines
    );
    sim.probe = ProbeMode::Refused;
    sim.run(Duration::from_secs(55));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.count("The controller has received a probe timeout."), 1);
}

/// A server that does not go away after SIGKILL is never dropped from the books: the
/// controller keeps killing it (alerting once) and starts no second server beside it.
#[test]
fn a_server_that_survives_sigkill_is_killed_again_not_forgotten() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let pid = sim.alive.expect("the server runs");
    sim.unkillable = true;
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(65));
    let spawns_before = sim.actions.iter().filter(|a| **a == Action::Spawn).count();
    sim.run(Duration::from_secs(100));
    assert_eq!(sim.ctl.state(), StateName::Killing, "{:#?}", sim.lines);
    assert_eq!(sim.ctl.server_pid(), Some(pid));
    assert!(
        sim.actions
            .iter()
            .filter(|a| **a == Action::KillTree)
            .count()
            >= 6
    );
    assert_eq!(
        sim.actions.iter().filter(|a| **a == Action::Spawn).count(),
        spawns_before,
        "no server is started beside the one still alive"
    );
    assert!(sim.count("did not go away after SIGKILL; killing again") >= 5);
    let alerts = sim
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Mail(alert) if alert.summary.contains("did not go away after SIGKILL")))
        .count();
    assert_eq!(alerts, 1);
    // When it finally goes, the kill completes and the restart follows.
    sim.unkillable = false;
    sim.alive = None;
    sim.feed(Event::ServerExited {
        pid,
        exit: "killed by SIGKILL".into(),
    });
    sim.run(Duration::from_secs(5));
    assert!(sim.count("Setting kill complete.") >= 1);
    assert!(sim.actions.iter().filter(|a| **a == Action::Spawn).count() > spawns_before);
}

// ----- failover outputs, failback and the HA state (issue 13) --------------------------

impl Sim {
    fn hooks(&self) -> Vec<HookEvent> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::RunHook { event, .. } => Some(*event),
                _ => None,
            })
            .collect()
    }

    fn ha(&self) -> FailoverState {
        self.ctl.failover_state()
    }

    fn down_reason(&self) -> String {
        match &self.health {
            Some(Health::Down { reason }) => reason.clone(),
            other => panic!("readiness is not down: {other:?}"),
        }
    }

    /// Run in 1 s steps, asserting after each that the outputs never came back.
    fn run_never_failing_back(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.run(Duration::from_secs(1));
            assert!(self.trigger, "trigger removed at {:?}", self.elapsed());
            assert_ne!(
                self.health,
                Some(Health::Ready),
                "readiness up at {:?}",
                self.elapsed()
            );
        }
    }

    /// A hang detected and killed, then a healthy restart: ends READY, probing well.
    fn hang_then_recover(&mut self) {
        self.probe = ProbeMode::Hang;
        self.run(Duration::from_secs(70));
        assert!(self.trigger);
        self.probe = ProbeMode::Ok;
        self.run(Duration::from_secs(20));
        assert_eq!(self.ctl.state(), StateName::Ready);
    }
}

fn crash_loop(policy: Policy) -> Sim {
    let mut sim = Sim::new(policy);
    sim.exit_after_spawn = Some(Duration::from_millis(50));
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_secs(120));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    sim
}

#[test]
fn faulted_by_a_crash_loop_puts_every_output_down_until_ready_again() {
    let mut sim = crash_loop(Sim::fast());
    assert!(sim.trigger, "FAULTED writes the trigger");
    assert_eq!(sim.down_reason(), "faulted");
    assert_eq!(sim.hooks(), vec![HookEvent::Faulted]);
    assert!(sim.actions.iter().any(|a| matches!(a, Action::Mail(m)
        if m.kind == qoscntrlr::core::AlertKind::RestartLimit)));
    assert_eq!(sim.ha(), FailoverState::OutOfService);
    // It stays moved: nothing brings the outputs back while FAULTED.
    sim.run_never_failing_back(Duration::from_secs(600));
    // Operator clears; a healthy server becomes READY and probes well: back.
    sim.exit_after_spawn = None;
    let (ok, _) = sim.command(Command::ClearFault { no_start: false });
    assert!(ok);
    assert!(sim.trigger, "not before the server is READY");
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(!sim.trigger);
    assert_eq!(sim.health, Some(Health::Ready));
    assert_eq!(sim.ha(), FailoverState::InService);
    assert_eq!(
        sim.hooks(),
        vec![HookEvent::Faulted, HookEvent::Recovery],
        "failover hook with QOS_EVENT=faulted, then the recovery hook"
    );
}

#[test]
fn faulted_by_spawn_failures_and_start_timeouts_moves_traffic_too() {
    let mut sim = Sim::new(Sim::fast());
    sim.spawn_fails = true;
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_secs(120));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    assert!(sim.trigger);
    assert_eq!(sim.down_reason(), "faulted");

    let mut sim = Sim::new(Policy {
        restart_timeout: Duration::from_secs(20),
        ..Sim::fast()
    });
    sim.probe = ProbeMode::Refused;
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_secs(600));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    assert_eq!(
        sim.count("Triggering failover"),
        0,
        "start timeouts fail over only at FAULTED"
    );
    assert!(sim.trigger);
    assert_eq!(sim.hooks(), vec![HookEvent::Faulted]);
}

#[test]
fn faulted_with_failover_disabled_writes_the_trigger_but_runs_no_hook() {
    let sim = crash_loop(Policy {
        failover_trigger_disabled: true,
        ..Sim::fast()
    });
    assert!(
        sim.actions.contains(&Action::WriteTrigger),
        "the shell writes 0"
    );
    assert!(sim.hooks().is_empty());
    assert_eq!(sim.down_reason(), "faulted");
}

#[test]
fn the_crash_that_reaches_the_restart_limit_moves_traffic_before_its_post_mortem_diagnostics() {
    // Diagnostics can take minutes (an operator's nsd under QOS_NSD_TIMEOUT); a server
    // that will be left down must not keep traffic that long. The last crash is reported
    // by the server itself (CRASH message, the process still there): its diagnostics,
    // with stacks, run before the kill.
    let mut sim = Sim::new(Policy {
        nsd_timeout: Duration::from_secs(300),
        ..Sim::fast()
    });
    sim.diag_delay = Duration::from_secs(120);
    sim.start();
    // Three crashes within the limit (3 restarts): no failover.
    for n in 1..=3 {
        let pid = sim.alive.take().expect("a running server");
        sim.feed(Event::ServerExited {
            pid,
            exit: "killed by signal 11 (SIGSEGV)".into(),
        });
        assert!(!sim.trigger, "crash {n} within the limit: no trigger");
        sim.run(Duration::from_secs(130));
        assert_eq!(
            sim.ctl.state(),
            StateName::Ready,
            "restarted after crash {n}"
        );
        assert!(!sim.trigger);
    }
    // The fourth reaches it: the outputs go down at the crash, not 120 s later.
    sim.clear_lines();
    sim.feed(msg(
        "OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev",
        ServerSignal::Crash,
    ));
    assert_eq!(sim.ctl.state(), StateName::Crashed, "diagnostics running");
    assert!(
        sim.trigger,
        "trigger written at the crash that reaches the limit"
    );
    assert_eq!(sim.down_reason(), "faulted");
    assert_eq!(sim.hooks(), vec![HookEvent::Faulted]);
    assert_eq!(sim.ha(), FailoverState::FailoverTriggered);
    sim.assert_in_order(&[
        "QoS Controller: Server CN=rc45/O=dev has crashed.",
        "QoS Controller: The restart limit is reached: the server will be left down (FAULTED); failover outputs down now, before its diagnostics",
        "QoS Kill: Running nsd...",
    ]);
    // FAULTED once the diagnostics are done and the server is down; announced once, and
    // it stays moved.
    sim.run_never_failing_back(Duration::from_secs(130));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    assert_eq!(sim.ha(), FailoverState::OutOfService);
    assert_eq!(
        sim.hooks(),
        vec![HookEvent::Faulted],
        "faulted announced once"
    );
    assert_eq!(
        sim.count(
            "Restart limit reached: 3 restarts within 30 minutes; server left down (FAULTED)"
        ),
        1
    );
    let restart_limit_mails = sim
        .actions
        .iter()
        .filter(
            |a| matches!(a, Action::Mail(m) if m.kind == qoscntrlr::core::AlertKind::RestartLimit),
        )
        .count();
    assert_eq!(restart_limit_mails, 1);
    sim.run_never_failing_back(Duration::from_secs(600));
    // clear-fault: back once READY and probing well.
    let (ok, _) = sim.command(Command::ClearFault { no_start: false });
    assert!(ok);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(!sim.trigger);
    assert_eq!(sim.hooks(), vec![HookEvent::Faulted, HookEvent::Recovery]);
}

#[test]
fn a_dead_server_at_the_restart_limit_moves_traffic_at_its_crash() {
    let mut sim = Sim::new(Policy {
        restart_limit_maximum: 0,
        ..Sim::fast()
    });
    sim.start();
    let pid = sim.alive.take().expect("a running server");
    sim.feed(Event::ServerExited {
        pid,
        exit: "killed by signal 6 (SIGABRT)".into(),
    });
    assert!(sim.trigger, "before the leftovers are even read");
    assert_eq!(sim.hooks(), vec![HookEvent::Faulted]);
    sim.run_never_failing_back(Duration::from_secs(200));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    assert_eq!(
        sim.hooks(),
        vec![HookEvent::Faulted],
        "faulted announced once"
    );
}

#[test]
fn the_start_timeout_that_reaches_the_restart_limit_moves_traffic_before_its_diagnostics() {
    let mut sim = Sim::new(Policy {
        restart_timeout: Duration::from_secs(20),
        restart_limit_maximum: 1,
        nsd_timeout: Duration::from_secs(300),
        ..Sim::fast()
    });
    sim.diag_delay = Duration::from_secs(120);
    sim.probe = ProbeMode::Refused;
    sim.start();
    // First start timeout: within the limit, no failover (the server never served).
    sim.run(Duration::from_secs(25));
    assert_eq!(sim.ctl.state(), StateName::Killing);
    assert!(!sim.trigger);
    sim.run(Duration::from_secs(125));
    assert_eq!(sim.ctl.state(), StateName::Starting, "restarted");
    assert!(!sim.trigger);
    // The second reaches the limit: outputs down at the decision, diagnostics after.
    sim.run(Duration::from_secs(25));
    assert_eq!(sim.ctl.state(), StateName::Killing);
    assert!(sim.trigger, "trigger written before the diagnostics");
    assert_eq!(sim.down_reason(), "faulted");
    assert_eq!(sim.hooks(), vec![HookEvent::Faulted]);
    sim.run_never_failing_back(Duration::from_secs(130));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    assert_eq!(
        sim.hooks(),
        vec![HookEvent::Faulted],
        "faulted announced once"
    );
    assert_eq!(sim.count("Triggering failover"), 0);
}

#[test]
fn a_crash_at_the_limit_while_paused_moves_nothing_ahead() {
    // Paused: the server is left down until resume, not FAULTED; nothing decided ahead.
    let mut sim = Sim::new(Policy {
        restart_limit_maximum: 0,
        ..Sim::fast()
    });
    sim.start();
    let (ok, _) = sim.command(Command::Pause { duration: None });
    assert!(ok);
    let pid = sim.alive.take().expect("a running server");
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.ctl.state(), StateName::Stopped);
    assert!(!sim.trigger);
    assert!(sim.hooks().is_empty());
}

#[test]
fn clear_fault_no_start_clears_the_mark_only() {
    let mut sim = crash_loop(Sim::fast());
    sim.exit_after_spawn = None;
    let spawns = sim.count("OpMsg=START Type=QOS");
    let (ok, text) = sim.command(Command::ClearFault { no_start: true });
    assert!(ok, "{text}");
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.ctl.state(), StateName::Stopped);
    assert_eq!(
        sim.count("OpMsg=START Type=QOS"),
        spawns,
        "the server stays down"
    );
    assert_eq!(sim.ctl.status(sim.now).restarts_in_window, 0);
    assert!(sim.trigger, "still not serving: outputs stay down");
    assert_eq!(sim.ha(), FailoverState::OutOfService);
    let (ok, _) = sim.command(Command::Start);
    assert!(ok);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(!sim.trigger);
    assert_eq!(sim.ha(), FailoverState::InService);
}

#[test]
fn nokill_stalled_application_holds_outputs_down_until_it_moves_again() {
    let mut sim = Sim::new(Policy {
        nokill: true,
        ..Sim::fast()
    });
    sim.start();
    let app = AppKey::new("COMPACT", Some("mail.nsf"));
    sim.feed(msg(
        "OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=mail.nsf",
        ServerSignal::AppStart { app: app.clone() },
    ));
    sim.run(Duration::from_secs(125));
    assert!(sim.trigger);
    assert_eq!(sim.ha(), FailoverState::FailoverTriggered);
    assert_eq!(sim.hooks(), vec![HookEvent::Failover]);
    sim.run_never_failing_back(Duration::from_secs(300));
    sim.feed(msg(
        "OpMsg=PROGRESS Type=COMPACT ObjectType=DB ObjectValue=mail.nsf",
        ServerSignal::AppProgress { app },
    ));
    assert!(!sim.trigger, "cleared by itself: outputs back");
    assert_eq!(sim.health, Some(Health::Ready));
    assert_eq!(sim.ha(), FailoverState::InService);
    assert!(!sim.actions.contains(&Action::KillTree));
}

#[test]
fn nokill_measured_exhaustion_clears_when_back_under_the_limit() {
    let mut sim = Sim::new(Policy {
        nokill: true,
        rules: limits(2048, 50),
        ..Sim::fast()
    });
    sim.start();
    sim.feed(sampled(3072, 80.0));
    assert!(sim.trigger);
    sim.feed(sampled(3072, 5.0));
    assert!(
        sim.trigger,
        "another resource back under its limit does not clear it"
    );
    sim.feed(sampled(1024, 5.0));
    assert!(!sim.trigger, "{:#?}", sim.lines);
    let outcome = sim.ctl.status(sim.now).incidents[0].outcome;
    assert_eq!(outcome, IncidentOutcome::RecoveredWithoutKill);
}

#[test]
fn failback_hold_keeps_outputs_down_until_ready_and_probing_well_that_long() {
    let mut sim = Sim::new(Policy {
        failback_hold: Duration::from_secs(300),
        ..Sim::fast()
    });
    sim.start();
    sim.hang_then_recover();
    assert_eq!(sim.ha(), FailoverState::FailbackHold);
    let view = sim.ctl.status(sim.now).failover;
    assert!(view.failback_at.is_some());
    sim.run_never_failing_back(Duration::from_secs(250));
    // A failed probe inside the hold starts it again.
    sim.probe = ProbeMode::Refused;
    sim.run(Duration::from_secs(10));
    sim.probe = ProbeMode::Ok;
    sim.run_never_failing_back(Duration::from_secs(280));
    assert_eq!(sim.count("Failback hold restarted: the probe failed"), 1);
    sim.run(Duration::from_secs(30));
    assert!(!sim.trigger);
    assert_eq!(sim.health, Some(Health::Ready));
    assert_eq!(sim.ha(), FailoverState::InService);
    assert_eq!(sim.count("Failback hold over"), 1);
}

#[test]
fn a_server_that_flaps_inside_the_hold_never_gets_traffic_back() {
    let mut sim = Sim::new(Policy {
        failback_hold: Duration::from_secs(600),
        restart_limit_maximum: 10,
        ..Sim::fast()
    });
    sim.start();
    sim.hang_then_recover();
    let removes_before = sim
        .actions
        .iter()
        .filter(|a| **a == Action::RemoveTrigger)
        .count();
    for _ in 0..3 {
        // Hangs again inside the hold, is killed, recovers: still held.
        sim.probe = ProbeMode::Hang;
        for _ in 0..75 {
            sim.run(Duration::from_secs(1));
            assert!(sim.trigger);
            assert_ne!(sim.health, Some(Health::Ready));
        }
        sim.probe = ProbeMode::Ok;
        sim.run_never_failing_back(Duration::from_secs(60));
        assert_eq!(sim.ha(), FailoverState::FailbackHold);
    }
    let removes = sim
        .actions
        .iter()
        .filter(|a| **a == Action::RemoveTrigger)
        .count();
    assert_eq!(removes, removes_before, "no failback in between");
    assert_eq!(
        sim.hooks()
            .iter()
            .filter(|e| **e == HookEvent::Recovery)
            .count(),
        0
    );
    sim.run(Duration::from_secs(600));
    assert!(!sim.trigger);
}

#[test]
fn manual_failback_waits_for_the_operator() {
    let mut sim = Sim::new(Policy {
        failback: qoscntrlr::core::FailbackMode::Manual,
        ..Sim::fast()
    });
    sim.start();
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(65));
    let (ok, text) = sim.command(Command::Failback);
    assert!(!ok && text.contains("held down"), "{text}");
    sim.probe = ProbeMode::Ok;
    sim.run(Duration::from_secs(20));
    assert_eq!(sim.ha(), FailoverState::FailbackHold);
    sim.run_never_failing_back(Duration::from_secs(3600));
    let (ok, text) = sim.command(Command::Failback);
    assert!(ok, "{text}");
    assert!(!sim.trigger);
    assert_eq!(sim.health, Some(Health::Ready));
    assert_eq!(sim.ha(), FailoverState::InService);
    let (ok, text) = sim.command(Command::Failback);
    assert!(ok && text.contains("nothing to fail back"), "{text}");
}

#[test]
fn failback_command_ends_a_hold_early() {
    let mut sim = Sim::new(Policy {
        failback_hold: Duration::from_secs(3600),
        ..Sim::fast()
    });
    sim.start();
    sim.hang_then_recover();
    assert_eq!(sim.ha(), FailoverState::FailbackHold);
    let (ok, _) = sim.command(Command::Failback);
    assert!(ok);
    assert!(!sim.trigger);
    assert_eq!(sim.ha(), FailoverState::InService);
}

#[test]
fn online_trust_time_empties_the_restart_window() {
    let crash = |sim: &mut Sim| {
        let pid = sim.alive.take().unwrap();
        sim.feed(Event::ServerExited {
            pid,
            exit: "killed by SIGSEGV".into(),
        });
        sim.run(Duration::from_secs(10));
    };
    let policy = Policy {
        restart_limit_period: Duration::from_secs(24 * 3600),
        ..Sim::fast()
    };
    // Without trust: the fourth crash of the day ends FAULTED.
    let mut sim = Sim::new(policy.clone());
    sim.start();
    for _ in 0..3 {
        crash(&mut sim);
        sim.run(Duration::from_secs(3600));
    }
    crash(&mut sim);
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    // With QOS_ONLINE_TRUST_TIME, an hour READY and probing well forgets old restarts.
    let mut sim = Sim::new(Policy {
        online_trust_time: Duration::from_secs(1800),
        ..policy
    });
    sim.start();
    for _ in 0..6 {
        crash(&mut sim);
        sim.run(Duration::from_secs(3600));
        assert_eq!(sim.ctl.status(sim.now).restarts_in_window, 0);
    }
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(sim.count("QOS_ONLINE_TRUST_TIME") >= 6);
}

#[test]
fn restart_delay_waits_before_an_automatic_restart_only() {
    let mut sim = Sim::new(Policy {
        restart_delay: Duration::from_secs(30),
        ..Sim::fast()
    });
    sim.start();
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    sim.run(Duration::from_secs(29));
    assert_eq!(sim.ctl.state(), StateName::Restarting);
    assert_eq!(sim.count("Restarting in 30 seconds (QOS_RESTART_DELAY)"), 1);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    // An operator restart does not wait.
    sim.command(Command::Restart);
    sim.run(Duration::from_secs(4));
    assert_eq!(sim.ctl.state(), StateName::Ready);
}

#[test]
fn restart_is_bounded_by_shutdown_timeout_then_restart_timeout_and_logs_the_one_applied() {
    let mut sim = Sim::new(Policy {
        shutdown_timeout: Duration::from_secs(20),
        restart_timeout: Duration::from_secs(90),
        ..Sim::fast()
    });
    sim.start();
    sim.stop_delay = None; // ignores the stop request
    let asked = sim.now;
    let (ok, _) = sim.command(Command::Restart);
    assert!(ok);
    // The next server will never answer its probe.
    sim.probe = ProbeMode::Refused;
    sim.run(Duration::from_secs(19));
    assert_eq!(sim.ctl.state(), StateName::Stopping);
    sim.run(Duration::from_secs(2));
    assert_eq!(
        sim.count("Server did not shut down within QOS_SHUTDOWN_TIMEOUT (20 seconds); killing"),
        1
    );
    assert_eq!(sim.count("QOS_RESTART_TIMEOUT"), 0);
    let killed_at = sim.ctl.status(sim.now).incidents[0].detected_at;
    assert_eq!(killed_at - asked, Duration::from_secs(20));
    // The new server never gets ready: QOS_RESTART_TIMEOUT bounds spawn → READY.
    sim.run(Duration::from_secs(85));
    assert_eq!(sim.ctl.state(), StateName::Starting);
    sim.run(Duration::from_secs(10));
    assert_eq!(
        sim.count("Server was not ready within QOS_RESTART_TIMEOUT (1 minute 30 seconds)")
            + sim.count("Server was not ready within QOS_RESTART_TIMEOUT (90 seconds)"),
        1
    );
}

#[test]
fn every_incident_is_announced_as_detected() {
    let detected = |sim: &Sim| -> Vec<String> {
        sim.actions
            .iter()
            .filter_map(|a| match a {
                Action::Incident {
                    kind,
                    outcome: IncidentOutcome::Detected,
                    ..
                } => Some(kind.clone()),
                _ => None,
            })
            .collect()
    };
    // crash
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    assert_eq!(detected(&sim), ["crash"]);
    // shutdown timeout
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.stop_delay = None;
    sim.command(Command::Quit);
    sim.run(Duration::from_secs(70));
    assert_eq!(detected(&sim), ["shutdown-timeout"]);
    // NOKILL
    let mut sim = Sim::new(Policy {
        nokill: true,
        ..Sim::fast()
    });
    sim.start();
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(70));
    assert_eq!(detected(&sim), ["probe-timeout"]);
    // probe timeout kill
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(70));
    assert_eq!(detected(&sim), ["probe-timeout"]);
}

#[test]
fn application_age_counts_from_start_not_from_progress() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let app = AppKey::new("FIXUP", Some("ddm.nsf"));
    sim.feed(msg(
        "OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=ddm.nsf",
        ServerSignal::AppStart { app: app.clone() },
    ));
    sim.run(Duration::from_secs(100));
    sim.feed(msg(
        "OpMsg=PROGRESS Type=FIXUP ObjectType=DB ObjectValue=ddm.nsf",
        ServerSignal::AppProgress { app },
    ));
    sim.run(Duration::from_secs(30));
    let apps = sim.ctl.status(sim.now).apps;
    assert_eq!(apps.len(), 1);
    let (_, age, since_progress) = &apps[0];
    assert_eq!(age.as_secs(), 130);
    assert_eq!(since_progress.as_secs(), 30);
}

#[test]
fn failover_state_changes_are_reported_with_why() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    sim.hang_then_recover();
    let changes: Vec<(FailoverState, FailoverState)> = sim
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::FailoverChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (FailoverState::InService, FailoverState::FailoverTriggered),
            (FailoverState::FailoverTriggered, FailoverState::InService),
        ]
    );
    let view = sim.ctl.status(sim.now).failover;
    assert_eq!(view.state, FailoverState::InService);
    assert!(view.changed_at.is_some());
    assert_eq!(view.changed_why, "server ready and probing well");
}

/// `qoscntrlr reexec` during a failback hold: the hold keeps its end and the outputs
/// stay down until then, in the new image.
#[test]
fn a_failback_hold_keeps_its_end_across_a_handoff() {
    let mut sim = Sim::new(Policy {
        failback_hold: Duration::from_secs(300),
        ..Sim::fast()
    });
    sim.start();
    sim.hang_then_recover();
    assert_eq!(sim.ha(), FailoverState::FailbackHold);
    let ends = sim.ctl.status(sim.now).failover.failback_at;
    assert!(ends.is_some());
    sim.run_never_failing_back(Duration::from_secs(100));
    // What status shows is unchanged (a probe in flight is replaced at once, so the
    // next deadline may move earlier; see a_probe_in_flight_at_the_handoff_...).
    let before = observable(&sim.ctl, sim.now).0;
    sim.reexec(Duration::ZERO);
    assert_eq!(observable(&sim.ctl, sim.now).0, before);
    assert_eq!(sim.ha(), FailoverState::FailbackHold);
    assert_eq!(sim.ctl.status(sim.now).failover.failback_at, ends);
    sim.run_never_failing_back(Duration::from_secs(150));
    sim.run(Duration::from_secs(90));
    assert_eq!(sim.ha(), FailoverState::InService);
    assert!(!sim.trigger);
    assert_eq!(sim.count("Failback hold over"), 1);
}

// ----- named timers --------------------------------------------------------------------

impl Sim {
    fn timer(&self, timer: Timer) -> Option<Instant> {
        self.ctl.timers().get(timer)
    }

    /// The controller's next deadline is its earliest armed timer, by name.
    fn next_timer(&self) -> Timer {
        let (timer, at) = self.ctl.next_timer().expect("a timer is armed");
        assert_eq!(self.ctl.next_deadline(), Some(at));
        timer
    }
}

#[test]
fn named_timers_follow_the_server_from_start_to_stop() {
    let mut sim = Sim::new(Sim::fast());
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_millis(5));
    assert_eq!(sim.ctl.state(), StateName::Starting);
    // STARTING: QOS_RESTART_TIMEOUT from the spawn; the first probe went out at once
    // and is in flight (no probe is due while one is).
    assert_eq!(
        sim.timer(Timer::StartDeadline),
        Some(sim.now + Duration::from_secs(60))
    );
    assert!(sim
        .actions
        .iter()
        .any(|a| matches!(a, Action::Probe { .. })));
    assert_eq!(sim.timer(Timer::ProbeDue), None);
    assert_eq!(sim.timer(Timer::ProbeTimeout), None, "not READY yet");
    assert_eq!(sim.next_timer(), Timer::StartDeadline);

    sim.run(Duration::from_secs(1));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.timer(Timer::StartDeadline), None);
    let success = sim.ctl.status(sim.now).probe_last_success.expect("probed");
    assert_eq!(
        sim.timer(Timer::ProbeTimeout),
        Some(success + Duration::from_secs(60))
    );
    let due = sim.timer(Timer::ProbeDue).expect("next probe scheduled");
    assert!(due > sim.now && due <= sim.now + Duration::from_secs(10));
    assert_eq!(sim.next_timer(), Timer::ProbeDue);
    for idle in [
        Timer::AppExpiry,
        Timer::StopDeadline,
        Timer::RestartBackoff,
        Timer::PauseEnd,
        Timer::FailbackHold,
        Timer::FaultAutoClear,
        Timer::TrustTime,
        Timer::StallHold,
    ] {
        assert_eq!(sim.timer(idle), None, "{idle} armed while READY and idle");
    }

    // A long-running application: QOS_APPS_TIMEOUT from its start replaces the probe
    // timeout, and moves with its progress.
    sim.feed(msg(
        "OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=events4.nsf",
        ServerSignal::AppStart {
            app: AppKey::new("COMPACT", Some("events4.nsf")),
        },
    ));
    assert_eq!(
        sim.timer(Timer::AppExpiry),
        Some(sim.now + Duration::from_secs(120))
    );
    assert_eq!(sim.timer(Timer::ProbeTimeout), None);
    sim.run(Duration::from_secs(30));
    sim.feed(msg(
        "OpMsg=PROGRESS Type=COMPACT ObjectType=DB ObjectValue=events4.nsf",
        ServerSignal::AppProgress {
            app: AppKey::new("COMPACT", Some("events4.nsf")),
        },
    ));
    assert_eq!(
        sim.timer(Timer::AppExpiry),
        Some(sim.now + Duration::from_secs(120))
    );
    sim.feed(msg(
        "OpMsg=END Type=COMPACT ObjectType=DB ObjectValue=events4.nsf",
        ServerSignal::AppEnd {
            app: AppKey::new("COMPACT", Some("events4.nsf")),
        },
    ));
    assert_eq!(sim.timer(Timer::AppExpiry), None);
    assert!(sim.timer(Timer::ProbeTimeout).is_some());

    // pause --for: its end is a timer of its own.
    sim.command(Command::Pause {
        duration: Some(Duration::from_secs(100)),
    });
    assert_eq!(
        sim.timer(Timer::PauseEnd),
        Some(sim.now + Duration::from_secs(100))
    );
    sim.command(Command::Resume);
    assert_eq!(sim.timer(Timer::PauseEnd), None);

    // A stop: QOS_SHUTDOWN_TIMEOUT; probing stops.
    sim.feed(Event::StopRequested);
    assert_eq!(sim.ctl.state(), StateName::Stopping);
    assert_eq!(
        sim.timer(Timer::StopDeadline),
        Some(sim.now + Duration::from_secs(60))
    );
    assert_eq!(sim.timer(Timer::ProbeDue), None);
    assert_eq!(sim.timer(Timer::ProbeTimeout), None);
    assert_eq!(sim.next_timer(), Timer::StopDeadline);
}

#[test]
fn a_stall_hold_defers_the_timeouts_and_the_probe_goes_out_at_once() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    // The probe sent after the stall gets no answer: only the hold's end wakes the
    // controller, not the probe timeout.
    sim.probe = ProbeMode::Silent;
    sim.actions.clear();
    sim.stall(Duration::from_secs(90));
    assert!(
        sim.actions
            .iter()
            .any(|a| matches!(a, Action::Probe { .. })),
        "a probe goes out at once after the stall"
    );
    let hold = sim
        .timer(Timer::StallHold)
        .expect("a stall hold after 90 s");
    assert!(hold > sim.now);
    assert!(sim.timer(Timer::ProbeTimeout).is_some());
    assert_eq!(sim.timer(Timer::ProbeDue), None, "the probe is in flight");
    assert_eq!(sim.next_timer(), Timer::StallHold);
    assert_eq!(sim.ctl.next_deadline(), Some(hold));
    sim.probe = ProbeMode::Ok;
    sim.run(hold - sim.now + Duration::from_secs(1));
    assert_eq!(sim.timer(Timer::StallHold), None);
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert!(sim.timer(Timer::ProbeTimeout).is_some());
}

#[test]
fn restart_backoff_and_fault_auto_clear_are_named_timers() {
    // QOS_RESTART_DELAY: a crashed READY server is spawned again after the delay.
    let mut sim = Sim::new(Policy {
        auto_fault_clear: Duration::from_secs(300),
        restart_delay: Duration::from_secs(30),
        ..Sim::fast()
    });
    sim.start();
    let pid = sim.alive.take().expect("running");
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    let deadline = sim.now + Duration::from_secs(20);
    while sim.ctl.state() != StateName::Restarting && sim.now < deadline {
        sim.run(Duration::from_millis(100));
    }
    assert_eq!(sim.ctl.state(), StateName::Restarting);
    let spawn_at = sim
        .timer(Timer::RestartBackoff)
        .expect("restart delay armed");
    assert!(spawn_at > sim.now && spawn_at <= sim.now + Duration::from_secs(30));
    assert_eq!(sim.next_timer(), Timer::RestartBackoff);
    sim.run(spawn_at - sim.now + Duration::from_secs(2));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.timer(Timer::RestartBackoff), None);

    // A crash loop to FAULTED: QOS_AUTO_FAULT_CLEAR is the one timer left.
    sim.exit_after_spawn = Some(Duration::from_millis(50));
    let pid = sim.alive.take().expect("running");
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    sim.run(Duration::from_secs(240));
    assert_eq!(sim.ctl.state(), StateName::Faulted);
    let clear = sim.timer(Timer::FaultAutoClear).expect("auto clear armed");
    assert!(clear > sim.now && clear <= sim.now + Duration::from_secs(300));
    assert_eq!(sim.next_timer(), Timer::FaultAutoClear);
    assert_eq!(sim.ctl.timers().armed().count(), 1);
    sim.exit_after_spawn = None;
    sim.run(clear - sim.now + Duration::from_secs(2));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.timer(Timer::FaultAutoClear), None);
}

#[test]
fn failback_hold_and_trust_time_are_named_timers() {
    let mut sim = Sim::new(Policy {
        failback_hold: Duration::from_secs(300),
        online_trust_time: Duration::from_secs(200),
        ..Sim::fast()
    });
    sim.start();
    sim.hang_then_recover();
    assert_eq!(sim.ha(), FailoverState::FailbackHold);
    let failback = sim.timer(Timer::FailbackHold).expect("failback hold armed");
    let trust = sim.timer(Timer::TrustTime).expect("a restart to forget");
    assert!(
        trust < failback,
        "trust 200 s, failback 300 s from the same recovery"
    );
    assert_eq!(sim.ctl.status(sim.now).failover.failback_at, Some(failback));
    sim.run(trust - sim.now + Duration::from_millis(1));
    assert_eq!(sim.timer(Timer::TrustTime), None, "restart window emptied");
    assert_eq!(sim.timer(Timer::FailbackHold), Some(failback));
    sim.run(failback - sim.now + Duration::from_millis(1));
    assert_eq!(sim.ha(), FailoverState::InService);
    assert_eq!(sim.timer(Timer::FailbackHold), None);
}

/// A message sent by `pid`, as the shell reports one read from the pipe.
fn msg_from(pid: i32, text: &str, signal: ServerSignal) -> Event {
    Event::MessageReceived {
        text: text.into(),
        append_timedate: true,
        signal,
        from: Some(MessageSender {
            pid,
            line: text.into(),
        }),
    }
}

/// A message a server wrote before it ended, read after its successor started, is not
/// the successor's: an END from the crashed server (or from a process killed with its
/// tree) must not stop the new one; a recycled pid given to the new server is its own.
#[test]
fn messages_of_ended_server_processes_are_ignored() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let old = sim.alive.take().unwrap();
    // A worker of the first server, killed with its tree; its pid goes to the next server.
    let recycled = sim.next_pid;
    sim.feed(Event::ServerProcessesEnded {
        pids: vec![recycled, 4242],
    });
    sim.feed(Event::ServerExited {
        pid: old,
        exit: "killed by SIGSEGV (core dumped)".into(),
    });
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.ctl.state(), StateName::Ready);
    assert_eq!(sim.alive, Some(recycled));
    sim.clear_lines();

    let end = ServerSignal::ServerEnd { restart: false };
    sim.feed(msg_from(old, "OpMsg=END Type=SERVER", end.clone()));
    sim.feed(msg_from(4242, "OpMsg=END Type=SERVER", end.clone()));
    sim.run(Duration::from_secs(30));
    assert_eq!(
        sim.count(&format!(
            "QoS Controller: Ignored a message from server process {old}, which has ended: OpMsg=END Type=SERVER"
        )),
        1
    );
    assert_eq!(
        sim.count("QoS Controller: Ignored a message from server process 4242, which has ended"),
        1
    );
    assert_eq!(
        sim.ctl.state(),
        StateName::Ready,
        "the new server was not stopped"
    );

    // The new server's own END (its pid was once a dead worker's) is acted on.
    sim.feed(msg_from(recycled, "OpMsg=END Type=SERVER", end));
    assert_eq!(sim.count("Ignored a message"), 2);
    assert_eq!(sim.ctl.state(), StateName::Stopping);
}

/// Every new server tree starts the sampler afresh (its CPU counters are not compared
/// with the old tree's), before the spawn; nothing else resets it.
#[test]
fn each_new_server_tree_resets_the_sampler_before_its_spawn() {
    let mut sim = Sim::new(Sim::fast());
    sim.start();
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    sim.run(Duration::from_secs(30));
    let spawns: Vec<usize> = (0..sim.actions.len())
        .filter(|&i| sim.actions[i] == Action::Spawn)
        .collect();
    let resets: Vec<usize> = (0..sim.actions.len())
        .filter(|&i| sim.actions[i] == Action::ResetSampler)
        .collect();
    assert_eq!(spawns.len(), 2, "started, then restarted after the crash");
    assert_eq!(resets.len(), spawns.len());
    for (reset, spawn) in resets.iter().zip(&spawns) {
        assert!(reset < spawn, "reset at {reset}, spawn at {spawn}");
    }
}

/// Each probe attempt carries the attempt limit the core decided with, and a reloaded
/// policy applies to the next attempt.
#[test]
fn probe_attempts_carry_the_policy_attempt_limit() {
    let limits = |sim: &Sim| -> Vec<Duration> {
        sim.actions
            .iter()
            .filter_map(|a| match a {
                Action::Probe { limit } => Some(*limit),
                _ => None,
            })
            .collect()
    };
    let mut policy = Sim::fast();
    policy.probe_attempt_timeout = Duration::from_secs(7);
    let mut sim = Sim::new(policy.clone());
    sim.start();
    sim.run(Duration::from_secs(30));
    let before = limits(&sim);
    assert!(before.len() >= 3, "{before:?}");
    assert!(
        before.iter().all(|l| *l == Duration::from_secs(7)),
        "{before:?}"
    );

    policy.probe_attempt_timeout = Duration::from_secs(3);
    sim.ctl.set_policy(policy);
    sim.run(Duration::from_secs(30));
    let after = &limits(&sim)[before.len()..];
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|l| *l == Duration::from_secs(3)),
        "{after:?}"
    );
}

/// The log the controller writes, read back by the log review: one story with every kind
/// of incident the core decides, and the review must find the same incidents, with the
/// same kinds `status` shows, and count them right. Both sides speak through the one
/// wording table, so a changed text cannot leave the review blind.
#[test]
fn simulated_incidents_round_trip_through_the_log_review() {
    let mut sim = Sim::new(Policy {
        restart_limit_maximum: 10,
        ..Sim::fast()
    });
    sim.start();
    sim.run(Duration::from_secs(30));
    // 1. Probe timeout: smart kill, restart, READY and probing well again.
    sim.hang_then_recover();
    sim.run(Duration::from_secs(60));
    // 2. Crash while running: post-mortem, restart.
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "killed by SIGSEGV (core dumped)".into(),
    });
    sim.run(Duration::from_secs(60));
    // 3. The server reports it is out of a resource: smart kill.
    sim.feed(msg(
        "OpMsg=EXHAUSTED Type=SHARED_HANDLES",
        ServerSignal::Exhausted {
            resource: "SHARED_HANDLES".into(),
        },
    ));
    sim.run(Duration::from_secs(60));
    // 4. Paused: the same report is held back while probes keep succeeding, then carried
    //    out on resume (one incident).
    assert!(sim.command(Command::Pause { duration: None }).0);
    sim.feed(msg(
        "OpMsg=EXHAUSTED Type=SESSION_TABLES",
        ServerSignal::Exhausted {
            resource: "SESSION_TABLES".into(),
        },
    ));
    sim.run(Duration::from_secs(60));
    assert!(sim.command(Command::Resume).0);
    sim.run(Duration::from_secs(60));
    // 5. The operator kills it.
    assert!(sim.command(Command::Kill).0);
    sim.run(Duration::from_secs(60));
    // 6. A long-running application that stops making progress.
    let app = AppKey::new("COMPACT", Some("mail.nsf"));
    sim.feed(msg(
        "OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=mail.nsf",
        ServerSignal::AppStart { app },
    ));
    sim.run(Duration::from_secs(200));
    // 7. A start that never becomes READY: restart timeout.
    sim.probe = ProbeMode::Refused;
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "exit code 1".into(),
    });
    sim.run(Duration::from_secs(70));
    sim.probe = ProbeMode::Ok;
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.ctl.state(), StateName::Ready);

    let text = sim.log.join("\n");
    let review = qoscntrlr::review::review_text("sim.out", text.as_bytes(), Default::default());
    let status = sim.ctl.status(sim.now);
    let core: Vec<&str> = status.incidents.iter().map(|i| i.kind.as_str()).collect();
    let reviewed: Vec<&str> = review.incidents.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(
        core,
        [
            "probe-timeout",
            "crash",
            "out-of-shared-handles",
            "out-of-session-tables",
            "operator-kill",
            "app-timeout",
            "crash",
            "restart-timeout",
        ],
        "the story"
    );
    assert_eq!(reviewed, core, "same incidents, same kinds\n{text}");
    let c = &review.counts;
    assert_eq!(c.probe_timeouts, 1);
    assert_eq!(c.crashes, 2);
    assert_eq!(c.exhaustions, 2);
    assert_eq!(c.app_timeouts, 1);
    assert_eq!(c.pauses, 1);
    let kill_trees = sim
        .actions
        .iter()
        .filter(|a| matches!(a, Action::KillTree))
        .count();
    // Four smart kills (probe, two exhaustions, application), the operator's, the
    // restart timeout's; every crash post-mortem kills leftovers without a kill line.
    assert_eq!(c.kills, 6);
    assert_eq!(c.kills as usize, sim.count("QoS Kill: Running nsd -kill"));
    assert!(kill_trees >= 6);
    assert_eq!(
        c.restarts, 8,
        "every incident restarted the server once\n{text}"
    );
    assert_eq!(
        c.restarts as usize,
        sim.count("Restarting DominoStarter thread")
    );
    // Every incident came back: READY and probing well, with the detection lag from the
    // last good probe and the time out of service.
    use qoscntrlr::review::Outcome;
    let probe = &review.incidents[0];
    assert_eq!(probe.outcome, Outcome::Ready);
    let lag = probe.detection_lag_secs.expect("a good probe came before");
    assert!(
        (60..=70).contains(&lag),
        "the probe timeout (60 s) is the detection lag: {lag}"
    );
    assert!(probe.out_of_service_secs.is_some_and(|s| s > 0));
    let outcomes: Vec<Outcome> = review.incidents.iter().map(|i| i.outcome).collect();
    use Outcome::{Ready, Superseded};
    assert_eq!(
        outcomes,
        [Ready, Ready, Ready, Ready, Ready, Ready, Superseded, Ready],
        "the crash's restart never became READY: the restart timeout took over"
    );
    assert!(review
        .incidents
        .iter()
        .filter(|i| i.outcome == Ready)
        .all(|i| i.in_service_at.is_some() && i.out_of_service_secs.is_some()));
    let paused = &review.incidents[3];
    assert!(
        paused.failover_at.is_some(),
        "the kill on resume continues it"
    );
}

// ----- the reference's example sequences, replayed ---------------------------------------

/// A log line as the replay compares it: the text after the timestamp, with what differs
/// from run to run (the `TimeDate=` the controller appends, a probe's latency) blanked.
fn replay_text(line: &str) -> String {
    let text = line.get(20..).unwrap_or_default();
    let text = match text.find(" TimeDate=") {
        Some(at) => format!("{} TimeDate=…", &text[..at]),
        None => text.to_string(),
    };
    match text.strip_prefix("QoS Probe: SUCCESS (") {
        Some(rest) if rest.ends_with("ms)") => "QoS Probe: SUCCESS (…ms)".to_string(),
        _ => text,
    }
}

/// Lines the controller may write between the reference's lines: the ones the wording
/// table marks as added by qoscntrlr (state changes, the exit status, the diagnostics
/// file, …), and probe results — every attempt is logged, also the ones that look for
/// READY while a server that may never send it is starting (the reference's qosprobe
/// starts only after READY). Nothing else.
fn documented_extra(text: &str) -> bool {
    let (component, rest) = Component::split(text);
    match wording::recognise(component, rest.as_bytes()) {
        Some((entry, _)) => {
            entry.origin == wording::Origin::Added
                || matches!(
                    entry.mark,
                    wording::Mark::ProbeSuccess | wording::Mark::ProbeError
                )
        }
        None => false,
    }
}

/// Replay check: from the first line of `expected` on, the log has exactly the expected
/// lines in this order, with only documented extra lines in between.
fn assert_replays(log: &[String], expected: &[&str]) {
    let texts: Vec<String> = log.iter().map(|l| replay_text(l)).collect();
    let shown = || texts.join("\n");
    let Some(start) = texts.iter().position(|t| t == expected[0]) else {
        panic!("{:?} not in the log:\n{}", expected[0], shown());
    };
    let mut want = expected.iter().skip(1).peekable();
    for text in &texts[start + 1..] {
        let Some(next) = want.peek() else { break };
        if text == *next {
            want.next();
        } else if !documented_extra(text) {
            panic!(
                "expected {next:?}, found {text:?}, which is no documented extra line; log:\n{}",
                shown()
            );
        }
    }
    if let Some(missing) = want.next() {
        panic!("{missing:?} never came; log:\n{}", shown());
    }
}

fn reference_sim() -> Sim {
    let mut sim = Sim::new(Sim::fast());
    sim.speaks = true;
    sim
}

#[test]
fn reference_sequence_normal_start_and_probe() {
    let mut sim = reference_sim();
    sim.feed(Event::ControllerStarted {
        trigger_present: false,
    });
    sim.run(Duration::from_millis(10));
    sim.feed(msg("OpMsg=START Type=SERVER", ServerSignal::ServerStart));
    sim.run(Duration::from_secs(25));
    assert_replays(
        &sim.log,
        &[
            "QoS Controller: OpMsg=START Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev ObjectType2=ProcessName ObjectValue2=nserver TimeDate=…",
            "QoS Controller: OpMsg=START Type=SERVER TimeDate=…",
            "QoS Applications: Clearing long running apps list",
            "QoS Controller: OpMsg=READY Type=SERVER TimeDate=…",
            "QoS Controller: Server is ready to process requests",
            "QoS Controller: Activating probe...",
            "QoS Controller: QoS Probe activated.",
            "QoS Probe: Starting qosprobe...",
            "QoS Probe: OpMsg=START, Type=PROBE",
            "QoS Probe: The QoS Probe is probing.",
            "QoS Probe: SUCCESS (…ms)",
            "QoS Probe: SUCCESS (…ms)",
        ],
    );
}

#[test]
fn reference_sequence_normal_shutdown() {
    let mut sim = reference_sim();
    sim.start();
    sim.run(Duration::from_secs(5));
    sim.log.clear();
    sim.feed(Event::StopRequested);
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.exit_code, Some(0));
    assert_replays(
        &sim.log,
        &[
            "QoS Controller: OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=…",
            "QoS Controller: Deactivating probe...",
            "QoS Controller: QoS Probe deactivated.",
            "QoS Controller: OpMsg=END Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=…",
            "QoS Applications: Clearing long running apps list",
        ],
    );
}

#[test]
fn reference_sequence_crash() {
    let mut sim = reference_sim();
    sim.start();
    sim.run(Duration::from_secs(5));
    sim.log.clear();
    let pid = sim.alive.take().unwrap();
    sim.feed(Event::ServerExited {
        pid,
        exit: "killed by SIGSEGV (core dumped)".into(),
    });
    sim.run(Duration::from_secs(10));
    assert_replays(
        &sim.log,
        &[
            "QoS Controller: OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=…",
            "QoS Controller: Server CN=rc45/O=dev has crashed.",
            "QoS Controller: Deactivating probe...",
            "QoS Controller: QoS Probe deactivated.",
        ],
    );
}

#[test]
fn reference_sequence_probe_timeout_smart_kill() {
    let mut sim = reference_sim();
    sim.start();
    sim.run(Duration::from_secs(5));
    sim.log.clear();
    sim.run(Duration::from_secs(20));
    sim.probe = ProbeMode::Hang;
    sim.run(Duration::from_secs(75));
    assert_replays(
        &sim.log,
        &[
            "QoS Probe: SUCCESS (…ms)",
            "QoS Probe: SUCCESS (…ms)",
            "The probe thread has not received a message from qosprobe within the timeout period.",
            "QoS Probe: The qosprobe addin has timed out, is not responding, or is not running.",
            "QoS Controller: Deactivating probe...",
            "QoS Controller: QoS Probe deactivated.",
            "QoS Controller: OpMsg=TIMEOUT Type=PROBE TimeDate=…",
            "QoS Controller: The controller has received a probe timeout.",
            "QoS Kill: Triggering failover...",
            "QoS Kill: Running nsd...",
            "QoS Kill: Running nsd -kill",
            "QoS Kill: Setting kill complete.",
            "QoS Kill: Restarting DominoStarter thread",
        ],
    );
}

/// The reference's long-running applications example. Its `QoS Applications` thread
/// writes on its own, so there both OpMsg lines of a second come before that thread's
/// lines; qoscntrlr writes each list change right after its message. The replay compares
/// each component's lines in order. The reference spells the second removal without the
/// two dots it writes after the first; qoscntrlr always writes them.
#[test]
fn reference_sequence_long_running_applications() {
    let mut sim = reference_sim();
    sim.start();
    sim.run(Duration::from_secs(5));
    sim.log.clear();
    for (kind, value) in [
        ("FIXUP", "C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf"),
        ("COMPACT", "events4.nsf"),
    ] {
        let app = AppKey::new(kind, Some(value));
        sim.feed(msg(
            &format!("OpMsg=START Type={kind} ObjectType=DB ObjectValue={value}"),
            ServerSignal::AppStart { app: app.clone() },
        ));
        sim.run(Duration::from_secs(1));
        sim.feed(msg(
            &format!("OpMsg=END Type={kind} ObjectType=DB ObjectValue={value}"),
            ServerSignal::AppEnd { app },
        ));
        sim.run(Duration::from_secs(5));
    }
    let expected = [
        "QoS Controller: OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf TimeDate=…",
        "QoS Controller: OpMsg=END Type=FIXUP ObjectType=DB ObjectValue=C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf TimeDate=…",
        "QoS Applications: Adding FIXUP[C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf] to long running apps list",
        "QoS Applications: Removing FIXUP[C:\\Program Files\\HCL\\Domino\\Data\\ddm.nsf] from long running apps list..",
        "QoS Controller: OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=events4.nsf TimeDate=…",
        "QoS Controller: OpMsg=END Type=COMPACT ObjectType=DB ObjectValue=events4.nsf TimeDate=…",
        "QoS Applications: Adding COMPACT[events4.nsf] to long running apps list",
        "QoS Applications: Removing COMPACT[events4.nsf] from long running apps list..",
    ];
    for prefix in ["QoS Controller: ", "QoS Applications: "] {
        let log: Vec<String> = sim
            .log
            .iter()
            .filter(|l| replay_text(l).starts_with(prefix))
            .cloned()
            .collect();
        let want: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|t| t.starts_with(prefix))
            .collect();
        assert_replays(&log, &want);
    }
}
