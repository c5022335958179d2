//! Resource rules in the controller, in virtual time: consecutive-sample windows,
//! averages, samples that cannot be taken (`missing=breach|ok`), each action (`log`,
//! `alert`, `failover`, `kill`) and the shorthand keys. A small world answers spawn,
//! probe, diagnostics and kill the way the shell would; a sampling pass is fed every
//! 10 virtual seconds.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use qoscntrlr::core::{
    Action, AlertKind, Command, Component, Controller, Event, Health, IncidentOutcome, Item,
    Policy, Reading, StateName,
};
use qoscntrlr::rules::{parse_rule, Rule, Shorthands};

const MB: f64 = 1024.0 * 1024.0;
const INTERVAL: Duration = Duration::from_secs(10);

struct World {
    ctl: Controller,
    now: Instant,
    pending: Vec<(Instant, Event)>,
    lines: Vec<String>,
    actions: Vec<Action>,
    next_pid: i32,
    alive: Option<i32>,
    trigger: bool,
    health: Option<Health>,
}

fn rule(name: &str, text: &str) -> Rule {
    parse_rule(name, text, 3, INTERVAL, Path::new("/data")).unwrap()
}

fn policy(rules: Vec<Rule>) -> Policy {
    Policy {
        server_name: "CN=rc45/O=dev".into(),
        probe_interval: Duration::from_secs(10),
        probe_timeout: Duration::from_secs(600),
        nsd_timeout: Duration::from_secs(30),
        rules,
        ..Policy::default()
    }
}

impl World {
    fn new(rules: Vec<Rule>) -> World {
        World::with(policy(rules))
    }

    fn with(policy: Policy) -> World {
        let now = Instant::now();
        let mut w = World {
            ctl: Controller::new(policy, now),
            now,
            pending: Vec::new(),
            lines: Vec::new(),
            actions: Vec::new(),
            next_pid: 100,
            alive: None,
            trigger: false,
            health: None,
        };
        w.feed(Event::ControllerStarted {
            trigger_present: false,
        });
        w.run(Duration::from_secs(1));
        assert_eq!(w.ctl.state(), StateName::Ready);
        w
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        let at = self.now + after;
        let pos = self.pending.partition_point(|(t, _)| *t <= at);
        self.pending.insert(pos, (at, event));
    }

    fn feed(&mut self, event: Event) {
        for action in self.ctl.handle(self.now, event) {
            self.apply(&action);
            self.actions.push(action);
        }
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::Log {
                component, text, ..
            } => {
                let prefix = match component {
                    Component::Controller => "QoS Controller: ",
                    Component::Probe => "QoS Probe: ",
                    Component::Applications => "QoS Applications: ",
                    Component::Kill => "QoS Kill: ",
                    Component::Bare => "",
                };
                self.lines.push(format!("{prefix}{text}"));
            }
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
            }
            Action::Probe { .. } => self.schedule(
                Duration::from_millis(12),
                Event::ProbeFinished {
                    success: true,
                    latency: Duration::from_millis(12),
                    detail: String::new(),
                },
            ),
            Action::RunDiagnostics { reason, incident } => self.schedule(
                Duration::from_secs(3),
                Event::DiagnosticsFinished {
                    incident: *incident,
                    path: Some(format!("diagnostics/nsd_{reason}.log")),
                    error: None,
                },
            ),
            Action::RunPostMortem { incident } => {
                self.schedule(
                    Duration::from_millis(5),
                    Event::PostMortemCaptured {
                        incident: *incident,
                    },
                );
                self.schedule(
                    Duration::from_secs(3),
                    Event::DiagnosticsFinished {
                        incident: Some(*incident),
                        path: Some("diagnostics/nsd_crash.log".into()),
                        error: None,
                    },
                );
            }
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
            Action::WriteTrigger => self.trigger = true,
            Action::RemoveTrigger => self.trigger = false,
            Action::SetHealth(h) => self.health = Some(h.clone()),
            _ => {}
        }
    }

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
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if world == Some(next) {
                let (_, event) = self.pending.remove(0);
                self.feed(event);
            } else {
                self.feed(Event::DeadlineReached);
            }
        }
        self.now = self.now.max(end);
    }

    /// One sampling pass with these readings, then one interval of virtual time.
    fn sample(&mut self, readings: &[(Item, Reading)]) {
        let readings: HashMap<Item, Reading> = readings.iter().cloned().collect();
        self.feed(Event::ResourcesSampled { readings });
        self.run(INTERVAL);
    }

    fn memory(&mut self, mb: f64) {
        self.sample(&[(Item::Memory, Reading::Value(mb * MB))]);
    }

    fn count(&self, needle: &str) -> usize {
        self.lines.iter().filter(|l| l.contains(needle)).count()
    }

    fn mails(&self) -> Vec<AlertKind> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Mail(alert) => Some(alert.kind.clone()),
                _ => None,
            })
            .collect()
    }

    fn log(&self) -> String {
        self.lines.join("\n")
    }
}

#[test]
fn log_action_after_n_consecutive_samples_once_then_cleared() {
    let mut w = World::new(vec![rule("MEM", "memory > 100MB samples 3 action=log")]);
    w.memory(150.0);
    w.memory(150.0);
    assert_eq!(w.count("Rule QOS_RULE_MEM breached"), 0, "{}", w.log());
    w.memory(150.0);
    assert_eq!(
        w.count(
            "QoS Controller: Rule QOS_RULE_MEM breached: 150 MB > 100 MB, 3 samples (action=log)"
        ),
        1,
        "{}",
        w.log()
    );
    for _ in 0..5 {
        w.memory(150.0);
    }
    assert_eq!(w.count("Rule QOS_RULE_MEM breached"), 1, "once per breach");
    assert!(w.mails().is_empty(), "log only: no mail");
    w.memory(50.0);
    w.memory(50.0);
    w.memory(50.0);
    assert_eq!(w.count("Rule QOS_RULE_MEM cleared"), 1, "{}", w.log());
    assert_eq!(w.ctl.state(), StateName::Ready);
}

#[test]
fn alert_action_mails_naming_the_rule_and_again_when_it_clears() {
    let mut w = World::new(vec![rule(
        "HOSTMEM",
        "host_memory > 90% samples 2 action=alert",
    )]);
    let host = |p: f64| [(Item::HostMemory, Reading::Value(p))];
    w.sample(&host(95.0));
    w.sample(&host(95.0));
    let mails = w.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(
        mails[0],
        AlertKind::Rule {
            rule: "QOS_RULE_HOSTMEM".into(),
            detail: "95% > 90%, 2 samples".into()
        }
    );
    assert_eq!(
        mails[0].event_words(),
        "rule QOS_RULE_HOSTMEM (95% > 90%, 2 samples)"
    );
    w.sample(&host(10.0));
    w.sample(&host(10.0));
    assert_eq!(w.mails().len(), 2);
    assert!(
        matches!(&w.mails()[1], AlertKind::Rule { detail, .. } if detail.starts_with("cleared: "))
    );
    assert_eq!(w.ctl.state(), StateName::Ready, "alert never kills");
    assert!(!w.trigger);
}

#[test]
fn average_window_catches_a_climb_but_not_a_spike() {
    let mut w = World::new(vec![rule("LEAK", "memory > 100MB average 4 action=kill")]);
    for mb in [50.0, 50.0, 50.0, 240.0, 50.0, 50.0, 50.0] {
        w.memory(mb);
    }
    assert_eq!(w.ctl.state(), StateName::Ready, "a spike is averaged away");
    for mb in [110.0, 120.0] {
        w.memory(mb);
    }
    assert_eq!(w.ctl.state(), StateName::Ready);
    // 50 110 120 130 → 102.5 MB on average: smart kill naming the rule.
    w.memory(130.0);
    w.run(Duration::from_secs(10));
    let log = w.log();
    assert!(
        log.contains("Rule QOS_RULE_LEAK breached: average 102.5 MB > 100 MB over the last 4 samples (action=kill)")
            || log.contains("Rule QOS_RULE_LEAK breached: average 102 MB > 100 MB over the last 4 samples (action=kill)")
            || log.contains("Rule QOS_RULE_LEAK breached: average 103 MB > 100 MB over the last 4 samples (action=kill)"),
        "{log}"
    );
    for line in [
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd...",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
    ] {
        assert_eq!(w.count(line), 1, "{line}\n{log}");
    }
    let kill_mail = w
        .mails()
        .into_iter()
        .find(|k| matches!(k, AlertKind::SmartKill { .. }))
        .expect("smart kill mailed");
    assert!(
        kill_mail.event_words().contains("rule QOS_RULE_LEAK"),
        "{kill_mail:?}"
    );
    // The new server starts with an empty window: three samples do not fill it.
    assert_eq!(w.ctl.state(), StateName::Ready);
    for _ in 0..3 {
        w.memory(500.0);
    }
    assert_eq!(w.ctl.state(), StateName::Ready, "{}", w.log());
    assert_eq!(w.count("Rule QOS_RULE_LEAK breached"), 1);
}

#[test]
fn missing_samples_count_as_breaches_only_with_missing_breach() {
    let mut ok = World::new(vec![rule(
        "LAT",
        "write_latency > 500ms samples 2 action=log",
    )]);
    let mut breach = World::new(vec![rule(
        "LAT",
        "write_latency > 500ms samples 2 missing=breach action=log",
    )]);
    let gone = [(
        Item::WriteLatency,
        Reading::Missing("probe could not start".into()),
    )];
    for w in [&mut ok, &mut breach] {
        w.sample(&gone);
        w.sample(&gone);
    }
    assert_eq!(ok.count("breached"), 0, "{}", ok.log());
    assert_eq!(
        breach.count("Rule QOS_RULE_LAT breached: not measured (probe could not start), 2 samples"),
        1,
        "{}",
        breach.log()
    );
    // A hung or read-only filesystem is a breach either way.
    let ro = [(
        Item::WriteLatency,
        Reading::Failed("read-only file system at /data".into()),
    )];
    ok.sample(&ro);
    ok.sample(&ro);
    assert_eq!(
        ok.count("Rule QOS_RULE_LAT breached: failed (read-only file system at /data)"),
        1,
        "{}",
        ok.log()
    );
}

#[test]
fn failover_action_takes_outputs_down_keeps_the_server_and_brings_them_back() {
    let mut w = World::new(vec![rule(
        "DISK",
        "disk_free:/data < 1GB samples 2 action=failover",
    )]);
    let pid = w.ctl.server_pid();
    let disk = |mb: f64| [(Item::DiskFree("/data".into()), Reading::Value(mb * MB))];
    w.sample(&disk(500.0));
    assert!(!w.trigger);
    w.sample(&disk(500.0));
    assert!(w.trigger, "trigger written\n{}", w.log());
    assert!(
        matches!(&w.health, Some(Health::Down { reason }) if reason.contains("QOS_RULE_DISK")),
        "{:?}",
        w.health
    );
    assert!(w.actions.iter().any(
        |a| matches!(a, Action::RunHook { event: qoscntrlr::core::HookEvent::Failover, reason, .. } if reason == "rule-disk")
    ));
    assert_eq!(w.ctl.state(), StateName::Ready, "the server is kept");
    assert_eq!(w.ctl.server_pid(), pid);
    assert_eq!(w.count("QoS Kill:"), 0, "no smart kill\n{}", w.log());
    assert!(w.ctl.status(w.now).rule_failovers == vec!["QOS_RULE_DISK".to_string()]);
    // Still low: nothing new.
    let actions_before = w.actions.len();
    w.sample(&disk(500.0));
    assert!(!w.actions[actions_before..]
        .iter()
        .any(|a| matches!(a, Action::WriteTrigger)));
    // Space back for two samples: the outputs come back.
    w.sample(&disk(5000.0));
    assert!(w.trigger);
    w.sample(&disk(5000.0));
    assert!(!w.trigger, "{}", w.log());
    assert_eq!(w.health, Some(Health::Ready));
    assert!(w.actions.iter().any(|a| matches!(
        a,
        Action::RunHook {
            event: qoscntrlr::core::HookEvent::Recovery,
            ..
        }
    )));
    assert_eq!(
        w.count("Rule QOS_RULE_DISK cleared; failover outputs back up"),
        1,
        "{}",
        w.log()
    );
}

#[test]
fn two_failover_rules_hold_the_outputs_until_both_clear() {
    let mut w = World::new(vec![
        rule("A", "load1 > 4 samples 1 action=failover"),
        rule("B", "host_cpu > 90 samples 1 action=failover"),
    ]);
    let pass = |load: f64, cpu: f64| {
        [
            (Item::Load1, Reading::Value(load)),
            (Item::HostCpu, Reading::Value(cpu)),
        ]
    };
    w.sample(&pass(9.0, 99.0));
    assert!(w.trigger);
    w.sample(&pass(1.0, 99.0));
    assert!(w.trigger, "B still holds");
    assert_eq!(
        w.count("Failover outputs stay down while rule QOS_RULE_B holds"),
        1
    );
    w.sample(&pass(1.0, 10.0));
    assert!(!w.trigger);
    assert_eq!(w.health, Some(Health::Ready));
}

#[test]
fn kill_action_smart_kills_and_nokill_only_reports() {
    let mut w = World::new(vec![rule(
        "FILES",
        "open_files >= 1000 samples 1 action=kill",
    )]);
    let first = w.ctl.server_pid();
    w.sample(&[(Item::OpenFiles, Reading::Value(1000.0))]);
    w.run(Duration::from_secs(10));
    assert_eq!(
        w.count("QoS Kill: Restarting DominoStarter thread"),
        1,
        "{}",
        w.log()
    );
    assert_ne!(w.ctl.server_pid(), first);
    let incidents = w.ctl.status(w.now).incidents;
    assert_eq!(incidents[0].kind, "rule-files");

    let mut nokill = World::new(vec![rule(
        "FILES",
        "open_files >= 1000 samples 1 action=kill",
    )]);
    let mut p = nokill.ctl.policy().clone();
    p.nokill = true;
    nokill.ctl.set_policy(p);
    nokill.sample(&[(Item::OpenFiles, Reading::Value(5000.0))]);
    nokill.run(Duration::from_secs(10));
    assert_eq!(
        nokill.count("QOS_NOKILL is set: not killing the server (rule QOS_RULE_FILES"),
        1,
        "{}",
        nokill.log()
    );
    assert_eq!(nokill.count("QoS Kill: Running nsd -kill"), 0);
}

#[test]
fn shorthand_keys_keep_their_words_and_warnings() {
    let rules = Shorthands {
        max_memory: (64.0 * MB) as u64,
        max_cpu: 0,
        max_open_files: 0,
        max_threads: 0,
        min_disk_free: 0,
        max_memory_pressure: 0,
        max_cpu_pressure: 0,
        max_io_pressure: 0,
        samples: 2,
        warn_percent: 80,
        data_directory: "/data".into(),
    }
    .rules();
    let mut w = World::new(rules);
    w.memory(60.0);
    assert_eq!(
        w.count("QoS Controller: Warning: server is close to its memory limit (60 MB of 64 MB)"),
        1,
        "{}",
        w.log()
    );
    w.memory(76.0);
    w.memory(76.0);
    w.run(Duration::from_secs(10));
    assert_eq!(
        w.count("QoS Controller: Server has exhausted memory (76 MB > 64 MB)"),
        1,
        "{}",
        w.log()
    );
    assert_eq!(w.count("QoS Kill: Restarting DominoStarter thread"), 1);
    assert!(w
        .mails()
        .iter()
        .any(|k| matches!(k, AlertKind::ResourceWarning { resource } if resource == "memory")));
}

fn memory_limit(mb: f64) -> Vec<Rule> {
    Shorthands {
        max_memory: (mb * MB) as u64,
        max_cpu: 0,
        max_open_files: 0,
        max_threads: 0,
        min_disk_free: 0,
        max_memory_pressure: 0,
        max_cpu_pressure: 0,
        max_io_pressure: 0,
        samples: 2,
        warn_percent: 0,
        data_directory: "/data".into(),
    }
    .rules()
}

fn incidents(w: &World) -> Vec<(String, IncidentOutcome)> {
    w.ctl
        .status(w.now)
        .incidents
        .iter()
        .map(|i| (i.kind.clone(), i.outcome))
        .collect()
}

#[test]
fn nokill_memory_exhaustion_clears_when_the_samples_are_back_under_the_limit() {
    let mut w = World::with(Policy {
        nokill: true,
        ..policy(memory_limit(64.0))
    });
    w.memory(80.0);
    w.memory(80.0);
    assert_eq!(
        w.count("Server has exhausted memory (80 MB > 64 MB)"),
        1,
        "{}",
        w.log()
    );
    assert!(
        w.trigger,
        "NOKILL: the outputs go down while the condition lasts"
    );
    assert_eq!(
        w.health,
        Some(Health::Down {
            reason: "memory exhausted (80 MB > 64 MB)".into()
        })
    );
    w.memory(80.0);
    assert!(w.trigger);
    // The sampler sees the tree back under the limit (two samples, as for the breach):
    // that is the signal that ends it.
    w.memory(40.0);
    assert!(w.trigger, "one calm sample is not enough");
    w.memory(40.0);
    assert_eq!(
        w.count("Server is back under its memory limit; the QOS_NOKILL condition has cleared"),
        1,
        "{}",
        w.log()
    );
    assert!(
        !w.trigger,
        "the condition cleared by itself: outputs back\n{}",
        w.log()
    );
    assert_eq!(w.health, Some(Health::Ready));
    assert_eq!(
        incidents(&w),
        [(
            "exhausted-memory".to_string(),
            IncidentOutcome::RecoveredWithoutKill
        )]
    );
    assert!(!w.actions.contains(&Action::KillTree));
}

#[test]
fn paused_memory_exhaustion_is_suppressed_not_recovered_and_kills_on_resume() {
    let mut w = World::new(memory_limit(64.0));
    w.feed(Event::CommandReceived {
        command: Command::Pause { duration: None },
        uid: 0,
        request: 1,
    });
    w.memory(80.0);
    w.memory(80.0);
    // Probes keep succeeding while paused: that says nothing about the memory.
    w.run(Duration::from_secs(60));
    assert_eq!(
        incidents(&w),
        [("exhausted-memory".to_string(), IncidentOutcome::Suppressed)],
        "{}",
        w.log()
    );
    assert!(!w.actions.contains(&Action::KillTree));
    w.feed(Event::CommandReceived {
        command: Command::Resume,
        uid: 0,
        request: 2,
    });
    w.run(Duration::from_secs(30));
    assert!(w.actions.contains(&Action::KillTree), "{}", w.log());
    let seen = incidents(&w);
    assert_eq!(
        seen.len(),
        1,
        "the kill continues the paused incident: {seen:?}"
    );
    assert_eq!(seen[0].0, "exhausted-memory");
}

#[test]
fn paused_memory_exhaustion_that_clears_needs_no_kill() {
    let mut w = World::new(memory_limit(64.0));
    w.feed(Event::CommandReceived {
        command: Command::Pause { duration: None },
        uid: 0,
        request: 1,
    });
    w.memory(80.0);
    w.memory(80.0);
    w.memory(30.0);
    w.memory(30.0);
    assert_eq!(
        w.count("Server is back under its memory limit; no kill needed"),
        1,
        "{}",
        w.log()
    );
    w.feed(Event::CommandReceived {
        command: Command::Resume,
        uid: 0,
        request: 2,
    });
    w.run(Duration::from_secs(30));
    assert!(!w.actions.contains(&Action::KillTree), "{}", w.log());
    assert_eq!(
        incidents(&w),
        [(
            "exhausted-memory".to_string(),
            IncidentOutcome::RecoveredWithoutKill
        )]
    );
}

#[test]
fn samples_are_ignored_while_the_server_is_not_running_and_a_reload_keeps_windows() {
    let r = rule("MEM", "memory > 100MB samples 3 action=log");
    let mut w = World::new(vec![r.clone()]);
    w.memory(150.0);
    w.memory(150.0);
    // A reload with the same rule plus another keeps the streak of two.
    let mut p = w.ctl.policy().clone();
    p.rules = vec![r, rule("CPU", "cpu > 50 samples 1 action=log")];
    w.ctl.set_policy(p);
    w.memory(150.0);
    assert_eq!(w.count("Rule QOS_RULE_MEM breached"), 1, "{}", w.log());
    let status = w.ctl.status(w.now).rules;
    assert_eq!(status.len(), 2);
    assert_eq!(status[0].streak, 3);
    assert!(status[0].breached);
    assert_eq!(status[0].value.as_deref(), Some("150 MB"));
    assert_eq!(
        status[1].value.as_deref(),
        Some("not measured (not sampled)")
    );
    // Stopped: passes are ignored.
    w.feed(Event::CommandReceived {
        command: qoscntrlr::core::Command::Quit,
        uid: 0,
        request: 9,
    });
    w.run(Duration::from_secs(30));
    let before = w.lines.len();
    w.sample(&[(Item::Cpu, Reading::Value(99.0))]);
    assert_eq!(w.lines.len(), before);
}
