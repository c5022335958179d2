//! A real leak against an `average` rule: the demo server under the controller, sampled
//! every second. Both servers have the same short memory spikes (200 MB held 2 s every
//! 8 s); one also leaks slowly. The `average 10` rule fails over for the leak (outputs
//! down, server kept) and never fires for the spikes alone, while a `samples 1` rule on the
//! same server proves the sampler did see every spike.

mod common;

use std::time::{Duration, Instant};

use common::{is_alive, Harness};

/// Far above what the controller needs (10 samples a second apart after the leak passes
/// the limit), for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(120);

const LEAK_RULE: (&str, &str) = (
    "QOS_RULE_LEAK",
    "memory > 120MB average 10 missing=ok action=failover",
);
/// The same limit judged on single samples: breached by every spike the sampler sees.
const SPIKE_RULE: (&str, &str) = ("QOS_RULE_SPIKE", "memory > 120MB samples 1 action=log");
const SPIKES: &str = "/spike?mb=200&secs=2&every=8";

fn count(h: &Harness, needle: &str) -> usize {
    h.lines().iter().filter(|l| l.contains(needle)).count()
}

/// Wait (up to [`LIMIT`]) until `done` holds for the log's lines.
fn wait_until(h: &Harness, what: &str, done: impl Fn(&Harness) -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done(h) {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} within {LIMIT:?}\n{}",
            h.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `logs summary --json` over the data directory: the highest memory sample, bytes.
fn usage_memory_max(h: &Harness) -> f64 {
    let out = h
        .command(env!("CARGO_BIN_EXE_qoscntrlr"))
        .args(["logs", "summary", "--json"])
        .arg(h.data())
        .output()
        .expect("run logs summary");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {out:?}"));
    json["usage"]["memory"]["max"].as_f64().unwrap_or(0.0)
}

fn spiky_server() -> Harness {
    let mut h = Harness::demo(&[("QOS_RESOURCE_INTERVAL", "1"), LEAK_RULE, SPIKE_RULE]);
    h.start_ready();
    h.http_ok(SPIKES);
    h
}

#[test]
fn a_slow_leak_breaches_the_average_and_fails_over_keeping_the_server() {
    let mut h = spiky_server();
    let server = h.server_pid();
    h.http_ok("/leak?mb=25&every=1&max=300");
    wait_until(&h, "the leak rule", |h| {
        count(h, "Rule QOS_RULE_LEAK breached: ") > 0
    });
    let line = h.wait_for_containing("Rule QOS_RULE_LEAK breached: average ");
    assert!(
        line.contains("> 120 MB over the last 10 samples (action=failover)"),
        "{line}"
    );
    h.wait_for_containing("Rule QOS_RULE_LEAK: failover outputs down; the server is kept running");
    assert!(
        h.trigger_file().exists(),
        "failover trigger file\n{}",
        h.dump()
    );
    // Failover, not kill: the same server process keeps running.
    assert_eq!(h.server_pid(), server);
    assert!(is_alive(server));
    assert_eq!(count(&h, "QoS Kill: "), 0, "{}", h.dump());
    // The usage history recorded the climb.
    let max = usage_memory_max(&h);
    assert!(max > 120.0 * 1024.0 * 1024.0, "usage memory max {max}");
    h.stop();
}

#[test]
fn the_same_spikes_without_a_leak_never_breach_the_average() {
    let mut h = spiky_server();
    let server = h.server_pid();
    // Three spikes seen one sample at a time (each breached and cleared the single-sample
    // rule) make at least 16 s of spikes, longer than the 10-sample window.
    wait_until(&h, "three spikes seen", |h| {
        count(h, "Rule QOS_RULE_SPIKE cleared: ") >= 3
    });
    assert_eq!(
        count(&h, "Rule QOS_RULE_LEAK breached"),
        0,
        "the average rule fired on spikes\n{}",
        h.dump()
    );
    assert!(!h.trigger_file().exists(), "no failover\n{}", h.dump());
    assert_eq!(h.server_pid(), server);
    // The spikes are in the usage history, well above the average rule's limit.
    let max = usage_memory_max(&h);
    assert!(max > 180.0 * 1024.0 * 1024.0, "usage memory max {max}");
    h.stop();
}
