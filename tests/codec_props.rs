//! Property tests of everything that reaches the core from outside: arbitrary control
//! requests (the JSON codec of the control socket) and arbitrary OpMsg lines (the pipe's
//! line decoder), with extreme numbers, go through the same codecs the shell uses and
//! into `Controller::handle` together with world events at arbitrary times. Whatever
//! arrives, the controller must not panic: a panic ends the loop and leaves the server
//! running with nothing supervising it.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use qoscntrlr::control;
use qoscntrlr::core::{later, Controller, Event, Policy};
use qoscntrlr::pipe;

/// Numbers where arithmetic breaks: zero, one, around the 3650-day bound, powers of
/// ten, and the ends of every integer width.
fn extreme_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(315_359_999),
        Just(315_360_000),
        Just(315_360_001),
        Just(1_000_000_000_000),
        Just(u64::from(u32::MAX)),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        Just(u64::MAX / 1000),
        Just(u64::MAX - 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

/// A number as a JSON or OpMsg token: plain, negative, fractional, exponent, beyond u64.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        extreme_u64().prop_map(|n| n.to_string()),
        extreme_u64().prop_map(|n| format!("-{n}")),
        extreme_u64().prop_map(|n| format!("{n}.5")),
        Just("1e308".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551616".to_string()),
        Just("340282366920938463463374607431768211456".to_string()),
        Just("NaN".to_string()),
        Just("-0".to_string()),
        "[0-9]{1,40}",
    ]
}

fn command_word() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "status",
            "start",
            "quit",
            "restart",
            "kill",
            "pause",
            "resume",
            "clear-fault",
            "diagnose",
        ])
        .prop_map(str::to_string),
        "[a-z-]{0,12}",
    ]
}

/// A control request line: well-formed objects with extreme numbers, and junk.
fn control_line() -> impl Strategy<Value = String> {
    prop_oneof![
        (command_word(), extreme_u64())
            .prop_map(|(cmd, secs)| format!(r#"{{"v":1,"cmd":"{cmd}","for_secs":{secs}}}"#)),
        (extreme_u64(), command_word())
            .prop_map(|(v, cmd)| format!(r#"{{"v":{v},"cmd":"{cmd}"}}"#)),
        (command_word(), number_text())
            .prop_map(|(cmd, n)| format!(r#"{{"v":1,"cmd":"{cmd}","for_secs":{n}}}"#)),
        Just(r#"{"v":1,"cmd":"pause","for_secs":18446744073709551615}"#.to_string()),
        "\\PC{0,80}",
    ]
}

/// An OpMsg line: every operation and type, objects with extreme numbers, junk.
fn opmsg_line() -> impl Strategy<Value = String> {
    let op = proptest::sample::select(vec![
        "START",
        "READY",
        "END",
        "CRASH",
        "TIMEOUT",
        "PROBE",
        "EXHAUSTED",
        "PROGRESS",
        "BOGUS",
    ]);
    let kind = proptest::sample::select(vec![
        "QOS", "SERVER", "PROBE", "SUCCESS", "ERROR", "FIXUP", "COMPACT", "memory", "Restart",
    ]);
    let object = prop_oneof![
        Just("Latency"),
        Just("Database"),
        Just("Restart"),
        Just("Memory")
    ];
    prop_oneof![
        (op.clone(), kind.clone(), object, number_text()).prop_map(|(op, kind, object, n)| {
            format!("OpMsg={op} Type={kind} ObjectType={object} ObjectValue={n}")
        }),
        (op, kind).prop_map(|(op, kind)| format!("OpMsg={op} Type={kind}")),
        (number_text(),).prop_map(|(n,)| {
            format!("OpMsg=PROBE Type=SUCCESS ObjectType=Latency ObjectValue={n}")
        }),
        (number_text(),).prop_map(|(n,)| {
            format!("OpMsg=START Type=FIXUP ObjectType=Database ObjectValue=db{n}.nsf TimeDate=20120508T001506,{n}")
        }),
        "\\PC{0,120}",
    ]
}

/// A duration from the extreme to the ordinary.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_secs(u64::MAX / 2)),
        (0u64..3_600_000).prop_map(Duration::from_millis),
        extreme_u64().prop_map(Duration::from_secs),
        extreme_u64().prop_map(Duration::from_millis),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Control(String),
    Pipe(String),
    Advance(Duration),
    Spawned,
    Exited,
    Probe { success: bool, latency: Duration },
    Diagnostics,
    Stop,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => control_line().prop_map(Step::Control),
        3 => opmsg_line().prop_map(Step::Pipe),
        3 => duration().prop_map(Step::Advance),
        1 => Just(Step::Spawned),
        1 => Just(Step::Exited),
        2 => (any::<bool>(), duration()).prop_map(|(success, latency)| Step::Probe { success, latency }),
        1 => Just(Step::Diagnostics),
        1 => Just(Step::Stop),
    ]
}

/// A policy that may itself carry extreme values (the core must not trust its input).
fn policy() -> impl Strategy<Value = Policy> {
    (
        duration(),
        duration(),
        duration(),
        duration(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(probe_interval, probe_timeout, apps_timeout, auto_fault_clear, nokill, msg)| Policy {
                probe_interval,
                probe_timeout,
                apps_timeout,
                auto_fault_clear,
                restart_timeout: probe_timeout,
                shutdown_timeout: apps_timeout,
                shutdown_nsd: probe_interval,
                nsd_timeout: auto_fault_clear,
                restart_limit_period: apps_timeout,
                nokill,
                probe_by_message: msg,
                ..Policy::default()
            },
        )
}

struct World {
    ctl: Controller,
    now: Instant,
    pid: i32,
    request: u64,
}

impl World {
    fn feed(&mut self, event: Event) {
        let _ = self.ctl.handle(self.now, event);
        // What the shell asks after every event must not panic either.
        let _ = self.ctl.next_deadline();
        let _ = self.ctl.status(self.now);
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Control(line) => {
                // The shell's path: the socket's codec, then the core's command.
                if let Ok(command) = control::parse_request(line.as_bytes()) {
                    if let Some(command) = command.to_core() {
                        self.request += 1;
                        self.feed(Event::CommandReceived {
                            command,
                            uid: 0,
                            request: self.request,
                        });
                    }
                }
            }
            Step::Pipe(line) => match pipe::decode_line(line.as_bytes()) {
                Ok(Some(decoded)) => self.feed(Event::MessageReceived {
                    text: decoded.message.log_text(|| "TimeDate=T".into()),
                    append_timedate: false,
                    signal: decoded.meaning,
                    from: None,
                }),
                Ok(None) => {}
                Err(reason) => self.feed(Event::MessageRejected { reason }),
            },
            Step::Advance(d) => {
                self.now = later(self.now, d);
                self.feed(Event::DeadlineReached);
            }
            Step::Spawned => {
                self.pid += 1;
                self.feed(Event::ServerSpawned {
                    pid: self.pid,
                    program: "server".into(),
                });
            }
            Step::Exited => self.feed(Event::ServerExited {
                pid: self.pid,
                exit: "exit code 1".into(),
            }),
            Step::Probe { success, latency } => self.feed(Event::ProbeFinished {
                success,
                latency,
                detail: String::new(),
            }),
            Step::Diagnostics => self.feed(Event::DiagnosticsFinished {
                incident: None,
                path: None,
                error: None,
            }),
            Step::Stop => self.feed(Event::StopRequested),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Arbitrary requests, messages and times through the codecs into the core.
    #[test]
    fn outside_input_never_panics_the_core(
        policy in policy(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let now = Instant::now();
        let mut world = World { ctl: Controller::new(policy, now), now, pid: 100, request: 0 };
        world.feed(Event::ControllerStarted { trigger_present: false });
        for step in steps {
            world.run(step);
        }
    }

    /// The control codec's answer for `pause`: in range it is a pause of exactly that
    /// long; beyond 3650 days it is a refusal naming the bound, never a command.
    #[test]
    fn pause_seconds_are_bounded_by_the_codec(secs in extreme_u64()) {
        let line = format!(r#"{{"v":1,"cmd":"pause","for_secs":{secs}}}"#);
        match control::parse_request(line.as_bytes()) {
            Ok(control::ControlCommand::Pause { for_duration }) => {
                prop_assert!((1..=control::MAX_PAUSE_SECS).contains(&secs));
                prop_assert_eq!(for_duration, Some(Duration::from_secs(secs)));
            }
            Ok(other) => prop_assert!(false, "pause parsed as {other:?}"),
            Err(message) => {
                prop_assert!(secs == 0 || secs > control::MAX_PAUSE_SECS, "{message}");
                prop_assert!(message.contains("for_secs"), "{message}");
            }
        }
    }

    /// `later` is exact whenever the sum fits the horizon, and never panics.
    #[test]
    fn later_is_exact_or_clamped(d in duration()) {
        let t = Instant::now();
        let at = later(t, d);
        prop_assert!(at >= t);
        if d <= qoscntrlr::core::HORIZON {
            prop_assert_eq!(at, t + d);
        } else {
            prop_assert_eq!(at, t + qoscntrlr::core::HORIZON);
        }
    }
}

/// The request of the report: refused with a message naming the bound.
#[test]
fn the_reported_request_is_refused_with_the_bound() {
    let err = control::parse_request(br#"{"v":1,"cmd":"pause","for_secs":18446744073709551615}"#)
        .expect_err("refused");
    assert!(
        err.contains("18446744073709551615") && err.contains("3650 days"),
        "{err}"
    );
    let err = control::parse_request(br#"{"v":1,"cmd":"pause","for_secs":1000000000000}"#)
        .expect_err("10^12 s is refused too");
    assert!(err.contains("3650 days"), "{err}");
    assert_eq!(
        control::parse_request(br#"{"v":1,"cmd":"pause","for_secs":315360000}"#),
        Ok(control::ControlCommand::Pause {
            for_duration: Some(Duration::from_secs(315_360_000))
        })
    );
}

/// The core refuses an over-long pause that did not come through the codec.
#[test]
fn the_core_refuses_an_over_long_pause() {
    let now = Instant::now();
    let mut ctl = Controller::new(Policy::default(), now);
    let actions = ctl.handle(
        now,
        Event::CommandReceived {
            command: qoscntrlr::core::Command::Pause {
                duration: Some(Duration::MAX),
            },
            uid: 0,
            request: 1,
        },
    );
    let refused = actions.iter().any(|a| {
        matches!(a, qoscntrlr::core::Action::Reply { ok: false, message, .. } if message.contains("3650 days"))
    });
    assert!(refused, "{actions:?}");
    assert!(!ctl.status(now).paused);
}
