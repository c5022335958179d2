//! `Controller::next_deadline` (the shell asks it on every loop turn) and the named-timer
//! table behind it allocate nothing, however many applications are listed: counted by a
//! global allocator wrapper over the calls themselves.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use qoscntrlr::core::{AppKey, Controller, Event, Policy, ServerSignal, StateName, Timer};

struct Counting;

thread_local! {
    /// Allocations made by this thread (other test threads do not disturb the count).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the counter is a
// const-initialised thread-local Cell, which never allocates itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn next_deadline_allocates_nothing_with_a_thousand_applications() {
    let t0 = Instant::now();
    let policy = Policy {
        probe_interval: Duration::from_secs(10),
        probe_timeout: Duration::from_secs(60),
        apps_timeout: Duration::from_secs(120),
        failback_hold: Duration::from_secs(30),
        online_trust_time: Duration::from_secs(300),
        ..Policy::default()
    };
    let mut ctl = Controller::new(policy, t0);
    ctl.handle(
        t0,
        Event::ControllerStarted {
            trigger_present: false,
        },
    );
    ctl.handle(
        t0,
        Event::ServerSpawned {
            pid: 4242,
            program: "server".into(),
        },
    );
    ctl.handle(
        t0 + Duration::from_millis(10),
        Event::ProbeFinished {
            success: true,
            latency: Duration::from_millis(10),
            detail: String::new(),
        },
    );
    assert_eq!(ctl.state(), StateName::Ready);
    for i in 0..1000u64 {
        let at = t0 + Duration::from_millis(20 + i);
        ctl.handle(
            at,
            Event::MessageReceived {
                text: format!("OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=db{i}.nsf"),
                append_timedate: true,
                signal: ServerSignal::AppStart {
                    app: AppKey::new("COMPACT", Some(&format!("db{i}.nsf"))),
                },
                from: None,
            },
        );
    }
    assert_eq!(ctl.apps_in_list(), 1000);

    // The counter sees an allocation of this thread (so a zero below means something).
    let probe = allocations();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert!(
        allocations() > probe,
        "the counting allocator is not in use"
    );

    let before = allocations();
    let mut earliest = None;
    for _ in 0..10_000 {
        earliest = ctl.next_deadline();
        let timers = ctl.timers();
        assert!(timers.get(Timer::AppExpiry).is_some());
        let _ = ctl.next_timer();
    }
    let made = allocations() - before;
    assert_eq!(made, 0, "next_deadline and timers() allocated {made} times");

    // And the answer is the right one: the probe is due before the first application
    // (listed 20 ms in) reaches QOS_APPS_TIMEOUT.
    let (timer, at) = ctl.next_timer().expect("armed");
    assert_eq!(earliest, Some(at));
    assert_eq!(timer, Timer::ProbeDue);
    assert_eq!(
        ctl.timers().get(Timer::AppExpiry),
        Some(t0 + Duration::from_millis(20) + Duration::from_secs(120))
    );
}
