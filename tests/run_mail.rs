//! End to end, real processes: the mail alerts of `qoscntrlr run` (issue 5, "Done
//! when") — a crash of the demo server delivers one mail to a real SMTP server (aiosmtpd);
//! an SMTP server that accepts and never answers delays neither the smart kill nor the
//! restart, and the undelivered mail is spooled and delivered by the next controller;
//! with `QOS_NOKILL=1` the mail carries the diagnostics file.

mod common;

use std::path::{Path, PathBuf};

use common::smtp::{smtp_available, SilentSmtp, Sink};
use common::{eventually, free_port, Harness, PATIENCE, SERVER_NAME};
use serde_json::Value;

const MAIL_TO: &str = "ops@example.org";
const MAIL_FROM: &str = "qos@example.org";

/// The demo server with mail to 127.0.0.1:`smtp_port`.
fn harness_mailing_to(smtp_port: u16, more: &[(&str, &str)]) -> Harness {
    let server = format!("127.0.0.1:{smtp_port}");
    let mut keys = vec![
        ("QOS_MAIL_TO", MAIL_TO),
        ("QOS_MAIL_SMTP_SERVER", server.as_str()),
        ("QOS_MAIL_FROM", MAIL_FROM),
    ];
    keys.extend_from_slice(more);
    Harness::demo(&keys)
}

fn subject(event: &str) -> String {
    format!("[qoscntrlr] {SERVER_NAME}: {event}")
}

/// The file named by the last `Diagnostics written to` line matched so far.
fn diagnostics_file(h: &Harness) -> PathBuf {
    let line = h
        .seen()
        .into_iter()
        .rev()
        .find_map(|l| {
            l.strip_prefix("QoS Kill: Diagnostics written to ")
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no diagnostics line\n{}", h.dump()));
    PathBuf::from(line)
}

/// The post-mortem file of the `nth` crash (1-based) in the log: a dead server is
/// restarted without waiting for it, so its line can come before or after the restart's.
fn post_mortem_file(h: &Harness, nth: usize) -> PathBuf {
    let find = || {
        let texts: Vec<String> = h
            .lines()
            .iter()
            .map(|l| common::line_text(l).to_string())
            .collect();
        let crash = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.starts_with("QoS Controller: Server ") && t.ends_with(" has crashed.")
            })
            .nth(nth - 1)?
            .0;
        texts[crash..].iter().find_map(|t| {
            t.strip_prefix("QoS Kill: Diagnostics written to ")
                .map(PathBuf::from)
        })
    };
    assert!(
        eventually("the post-mortem file", || find().is_some()),
        "no diagnostics line after crash {nth}\n{}",
        h.dump()
    );
    find().unwrap_or_default()
}

/// Subjects of the mails waiting in the spool, sorted.
fn spooled_subjects(data: &Path) -> Vec<String> {
    let spool = data.join("mail-spool");
    let mut subjects: Vec<String> = std::fs::read_dir(&spool)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .filter_map(|p| std::fs::read(p).ok())
                .filter_map(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .filter_map(|mail| mail["subject"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    subjects.sort();
    subjects
}

fn text_of(mail: &Value) -> &str {
    mail["text"].as_str().unwrap_or_default()
}

#[test]
fn a_crash_delivers_exactly_one_mail_naming_the_server_the_event_and_the_diagnostics() {
    if !smtp_available() {
        return;
    }
    let sink = Sink::start(free_port());
    let mut h = harness_mailing_to(sink.port, &[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");

    let _ = h.http("/crash");
    h.expect_in_order(&[
        &format!("QoS Controller: Server {SERVER_NAME} has crashed."),
        "QoS Kill: Running nsd...",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Server is ready to process requests",
    ]);
    let diag = post_mortem_file(&h, 1);
    let sent = format!(
        "QoS Controller: Mail sent: {} (to {MAIL_TO})",
        subject("crashed")
    );
    assert!(
        eventually("the crash mail is reported sent", || h.count(&sent) == 1),
        "{}",
        h.dump()
    );
    let got = sink
        .wait_for(1, PATIENCE)
        .unwrap_or_else(|| panic!("no mail arrived\n{}", h.dump()));
    // Stopping flushes anything still queued: a second mail would show up now.
    h.stop();
    let got_after_stop = sink.messages();
    assert_eq!(
        got_after_stop.len(),
        1,
        "exactly one mail per crash: {got_after_stop:#?}"
    );
    assert_eq!(got, got_after_stop);

    let mail = &got[0];
    assert_eq!(mail["subject"], subject("crashed"));
    assert_eq!(mail["mail_from"], MAIL_FROM);
    assert_eq!(mail["rcpt_tos"], serde_json::json!([MAIL_TO]));
    assert_eq!(mail["attachments"], serde_json::json!([]), "no NOKILL");
    let text = text_of(mail);
    for needle in [
        format!("Server {SERVER_NAME} has crashed ("),
        format!("Server:      {SERVER_NAME}\n"),
        "Event:       crashed\n".to_string(),
        format!("Diagnostics: {}\n", diag.display()),
        format!("QoS Controller: Server {SERVER_NAME} has crashed."),
        "OpMsg=CRASH Type=QOS".to_string(),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    assert!(diag.is_absolute(), "{}", diag.display());
    assert!(diag.is_file(), "{} is not on disk", diag.display());
    assert!(
        spooled_subjects(h.data()).is_empty(),
        "delivered mail leaves the spool"
    );
}

#[test]
fn an_smtp_server_that_never_answers_delays_nothing_and_the_mail_is_spooled() {
    let silent = SilentSmtp::start();
    let silent_port = silent.port;
    let mut h = harness_mailing_to(silent.port, &[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let first = h.server_pid();

    h.http_ok("/hang");
    // The same sequence, in the same order and within the same bound, as without mail
    // (tests/run_smart_kill.rs): the mail is submitted between the diagnostics and the
    // kill, while the SMTP exchange hangs.
    h.expect_in_order(&[
        "QoS Controller: Deactivating probe...",
        "QoS Controller: QoS Probe deactivated.",
        "QoS Controller: The controller has received a probe timeout.",
        "QoS Kill: Triggering failover...",
        "QoS Kill: Running nsd...",
        "QoS Kill: Diagnostics written to ",
        "QoS Kill: Running nsd -kill",
        "QoS Kill: Setting kill complete.",
        "QoS Kill: Restarting DominoStarter thread",
        "QoS Controller: Server is ready to process requests",
        "QoS Probe: SUCCESS (",
        "QoS Controller: Server has recovered; failover trigger removed",
    ]);
    assert_eq!(h.http_ok("/health"), "ok\n");
    assert_ne!(h.server_pid(), first, "the server was not restarted");

    assert!(
        silent.accepted() >= 1,
        "the controller never tried the SMTP server\n{}",
        h.dump()
    );
    let expected = vec![subject("recovered"), subject("smart kill (probe timeout)")];
    assert!(
        eventually("both mails are spooled", || spooled_subjects(h.data())
            == expected),
        "spooled: {:?}\n{}",
        spooled_subjects(h.data()),
        h.dump()
    );
    assert_eq!(h.count("QoS Controller: Mail sent:"), 0, "{}", h.dump());
    h.stop();
    assert_eq!(
        spooled_subjects(h.data()),
        expected,
        "undelivered mail stays spooled after the controller stops"
    );
    drop(silent);

    // The next controller delivers the spool once the SMTP server works again.
    if !smtp_available() {
        return;
    }
    let sink = Sink::start(free_port());
    let old = format!("QOS_MAIL_SMTP_SERVER=127.0.0.1:{}\n", silent_port);
    let ini = std::fs::read_to_string(&h.ini).expect("read dcontroller.ini");
    assert!(ini.contains(&old), "{ini}");
    h.overwrite_ini(&ini.replace(
        &old,
        &format!("QOS_MAIL_SMTP_SERVER=127.0.0.1:{}\n", sink.port),
    ));
    h.start_ready();
    let got = sink
        .wait_for(2, PATIENCE)
        .unwrap_or_else(|| panic!("the spooled mail was not delivered\n{}", h.dump()));
    let mut subjects: Vec<String> = got
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    subjects.sort();
    assert_eq!(subjects, expected);
    assert!(
        eventually("the spool is empty", || spooled_subjects(h.data())
            .is_empty()),
        "{}",
        h.dump()
    );
    assert_eq!(
        h.count("QoS Controller: Mail '"),
        2,
        "each spooled mail is announced once\n{}",
        h.dump()
    );
    h.stop();
    assert_eq!(sink.messages().len(), 2, "{:#?}", sink.messages());
}

#[test]
fn with_nokill_the_problem_mail_carries_the_diagnostics_file_and_recovery_follows() {
    if !smtp_available() {
        return;
    }
    let sink = Sink::start(free_port());
    let mut h = harness_mailing_to(sink.port, &[("QOS_NOKILL", "1")]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let server = h.server_pid();

    h.http_ok("/hang?secs=4");
    h.expect_in_order(&[
        "QoS Controller: QOS_NOKILL is set: not killing the server (probe timeout)",
        "QoS Kill: Running nsd...",
        "QoS Kill: Diagnostics written to ",
    ]);
    let diag = diagnostics_file(&h);
    h.expect_in_order(&[
        "QoS Probe: SUCCESS (",
        "QoS Controller: Server has recovered: the probe succeeds again",
    ]);
    // Under QOS_NOKILL the failover outputs go down while the condition lasts and come
    // back when it clears by itself: the problem mail (with the diagnostics), then the
    // recovery mail, and nothing else.
    let got = sink
        .wait_for(2, PATIENCE)
        .unwrap_or_else(|| panic!("not both mails arrived\n{}", h.dump()));
    assert!(
        eventually("the mails are reported sent", || h
            .count("QoS Controller: Mail sent: ")
            == 2),
        "{}",
        h.dump()
    );
    assert_eq!(h.server_pid(), server, "QOS_NOKILL: the server lives on");
    h.stop();
    let got_after_stop = sink.messages();
    assert_eq!(got_after_stop.len(), 2, "two mails: {got_after_stop:#?}");
    assert_eq!(got, got_after_stop);
    assert_eq!(got[1]["subject"], subject("recovered"));

    let mail = &got[0];
    assert_eq!(mail["subject"], subject("problem detected (QOS_NOKILL)"));
    let content = std::fs::read(&diag).expect("read the diagnostics file");
    let name = diag
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert_eq!(
        mail["attachments"],
        serde_json::json!([{
            "filename": name,
            "content": String::from_utf8_lossy(&content),
        }]),
        "the attachment is the diagnostics file"
    );
    assert!(
        text_of(mail).contains(&format!("Diagnostics: {} (attached)\n", diag.display())),
        "{}",
        text_of(mail)
    );
}

#[test]
fn a_repeat_within_the_fold_window_is_held_and_spooled_when_the_controller_stops() {
    if !smtp_available() {
        return;
    }
    let sink = Sink::start(free_port());
    let mut h = harness_mailing_to(sink.port, &[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let _ = h.http("/crash");
    h.expect_in_order(&[
        &format!("QoS Controller: Server {SERVER_NAME} has crashed."),
        "QoS Controller: Server is ready to process requests",
        "QoS Probe: SUCCESS (",
    ]);
    sink.wait_for(1, PATIENCE)
        .unwrap_or_else(|| panic!("no mail for the first crash\n{}", h.dump()));

    // The second crash falls in the 10-minute window of the first: held, not sent.
    let _ = h.http("/crash");
    h.expect_in_order(&[
        &format!("QoS Controller: Server {SERVER_NAME} has crashed."),
        "QoS Controller: Server is ready to process requests",
    ]);
    let second_diag = post_mortem_file(&h, 2);
    h.stop();
    assert_eq!(sink.messages().len(), 1, "{:#?}", sink.messages());
    assert_eq!(h.count("QoS Controller: Mail sent: "), 1, "{}", h.dump());

    // Stopping handed the held crash to the spool for the next controller.
    let spool = h.data().join("mail-spool");
    let held: Vec<Value> = std::fs::read_dir(&spool)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", spool.display(), h.dump()))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0]["subject"], subject("crashed"));
    let body = held[0]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains(&format!("Diagnostics: {}\n", second_diag.display())),
        "{body}"
    );
}

#[test]
fn a_reload_points_waiting_mail_at_the_new_smtp_server() {
    if !smtp_available() {
        return;
    }
    let dead = free_port(); // nothing listens: connection refused
    let mut h = harness_mailing_to(dead, &[]);
    h.start_ready();
    h.wait_for("QoS Probe: SUCCESS (");
    let _ = h.http("/crash");
    h.wait_for(&format!(
        "QoS Controller: Server {SERVER_NAME} has crashed."
    ));
    h.wait_for_containing(&format!(
        "Mail '{}' to {MAIL_TO} via 127.0.0.1:{dead} failed (attempt 1)",
        subject("crashed")
    ));

    // The first retry is 30 s away; the reload does not wait for it.
    let sink = Sink::start(free_port());
    let server = format!("127.0.0.1:{}", sink.port);
    h.set_keys(&[("QOS_MAIL_SMTP_SERVER", &server)]);
    h.signal(nix::sys::signal::Signal::SIGHUP);
    h.expect_in_order(&[
        "QoS Controller: Configuration reloaded",
        &format!("QoS Controller: Mail settings changed: to {MAIL_TO} via {server}"),
        &format!(
            "QoS Controller: Mail sent: {} (to {MAIL_TO})",
            subject("crashed")
        ),
    ]);
    let got = sink
        .wait_for(1, PATIENCE)
        .unwrap_or_else(|| panic!("no mail arrived\n{}", h.dump()));
    assert_eq!(got[0]["subject"], subject("crashed"));
    assert!(spooled_subjects(h.data()).is_empty(), "{}", h.dump());
    h.stop();
}
