//! `qoscntrlr report --html`: one self-contained page, checked by rendering it in headless
//! Chromium. Without Chromium the rendering check is skipped with a message — unless
//! CI=true, where a missing browser is a failure.

mod skip;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs")
        .join(name)
}

fn write_report(out: &Path) -> String {
    let status = Command::new(env!("CARGO_BIN_EXE_qoscntrlr"))
        .args(["report", "--html"])
        .arg(out)
        .arg(fixture("design"))
        .env_remove("QOSCNTRLR_CONFIG")
        .status()
        .expect("run qoscntrlr report");
    assert!(status.success());
    std::fs::read_to_string(out).expect("report written")
}

#[test]
fn report_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let page = write_report(&dir.path().join("report.html"));
    assert!(page.starts_with("<!DOCTYPE html>"));
    for forbidden in ["<script", "src=", "href=", "<link", "@import", "url("] {
        assert!(
            !page.contains(forbidden),
            "external/scripted content '{forbidden}' in the report"
        );
    }
    // The only URL is the SVG namespace name, which is never fetched.
    assert_eq!(
        page.matches("http").count(),
        page.matches("http://www.w3.org/2000/svg").count()
    );
    assert!(page.contains("id=\"summary\""));
    assert!(page.contains("id=\"latency-chart\""));
    assert!(page.contains("id=\"downtime-chart\""));
    assert!(page.contains("<details id=\"incident-1\">"));
    // The probe timeout: 5 minutes from the last good probe (00:32:41) to the decision,
    // then out of service until READY and probing well (00:40:05), not "0 s down".
    assert!(
        page.contains("<th>Detection lag</th><th>Out of service</th>"),
        "{page}"
    );
    assert!(
        page.contains("<td class=\"n\">5m 00s</td><td class=\"n\">2m 24s</td>"),
        "{page}"
    );
    assert!(page.contains("class=\"lag\""));
    assert!(page.contains("QoS Kill: Triggering failover..."));
    // Raw lines are escaped, not interpreted.
    assert!(page.contains("C:\\Program Files\\HCL"));
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("QOSCNTRLR_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Run headless Chromium on `page` with `extra` (e.g. `--dump-dom`); stdout on success.
/// The browser runs in its own process group, killed whole when it overruns.
fn chromium(browser: &Path, page: &Path, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let group = child.id() as i32;
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut stdout = stdout;
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait chromium") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever happened, no browser process outlives the test.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    let _ = child.wait();
    let text = reader.join().unwrap_or_default();
    match status {
        Some(status) => assert!(status.success(), "chromium failed: {status}"),
        None => panic!("chromium did not finish within 90 s"),
    }
    text
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(browser) = find_chromium() else {
        skip::skip(
            "report_renders_in_headless_chromium",
            "no chromium on PATH (apt-get install chromium)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    write_report(&page);
    let dom = chromium(&browser, &page, &["--dump-dom"]);
    assert!(dom.contains("qoscntrlr incident report"), "DOM: {dom}");
    assert!(
        dom.contains("id=\"summary\""),
        "summary table missing from the DOM"
    );
    assert!(
        dom.contains("<svg") && dom.contains("latency-chart"),
        "chart missing from the DOM"
    );
    assert!(dom.contains("Probe timeouts"));
    assert!(dom.contains("<details"));

    let shot = dir.path().join("report.png");
    chromium(
        &browser,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        png.len() > 10_000,
        "screenshot suspiciously small ({} bytes)",
        png.len()
    );
}
