//! The trigger file: exact content, atomic replacement, removal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use qoscntrlr::failover::{TriggerFile, TRIGGER_FILE_NAME};

#[test]
fn trigger_content_is_1_or_0_and_removal_tolerates_absence() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trigger = TriggerFile::new(tmp.path());
    assert_eq!(
        trigger.path(),
        tmp.path().join("triggerImmediateServerFailover")
    );
    assert!(!trigger.exists());
    trigger.remove().expect("absent is fine");

    trigger.write(true).expect("write");
    assert!(trigger.exists());
    assert_eq!(std::fs::read(trigger.path()).expect("read"), b"1\n");

    trigger.write(false).expect("write");
    assert_eq!(std::fs::read(trigger.path()).expect("read"), b"0\n");

    // Latency of the write (temp + fsync + rename), reported, not asserted.
    let mut micros: Vec<u128> = (0..200)
        .map(|i| {
            let t = Instant::now();
            trigger.write(i % 2 == 0).expect("write");
            t.elapsed().as_micros()
        })
        .collect();
    micros.sort_unstable();
    eprintln!(
        "MEASURE trigger write: p50 {} us, p99 {} us, max {} us (200 writes)",
        micros[100], micros[198], micros[199]
    );

    trigger.remove().expect("remove");
    assert!(!trigger.exists());
    trigger.remove().expect("twice is fine");

    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(names.is_empty(), "no temp file left behind: {names:?}");
}

#[test]
fn a_reader_never_sees_a_partial_trigger() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trigger = TriggerFile::new(tmp.path());
    trigger.write(true).expect("first write");
    let path = tmp.path().join(TRIGGER_FILE_NAME);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut bad = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match std::fs::read(&path) {
                    Ok(c) if c == b"1\n" || c == b"0\n" => {}
                    other => bad.push(format!("{other:?}")),
                }
                reads += 1;
            }
            (reads, bad)
        })
    };
    let started = Instant::now();
    const WRITES: u32 = 300;
    for i in 0..WRITES {
        trigger.write(i % 2 == 0).expect("write");
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (reads, bad) = reader.join().expect("reader thread");
    eprintln!(
        "MEASURE trigger write with a concurrent reader: {:.1} us mean over {WRITES}, {reads} reads",
        took.as_secs_f64() * 1e6 / f64::from(WRITES)
    );
    assert!(reads > 0);
    assert!(
        bad.is_empty(),
        "partial or missing trigger seen: {:?}",
        &bad[..bad.len().min(5)]
    );
}

#[test]
fn writing_into_a_missing_directory_fails_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let trigger = TriggerFile::new(&tmp.path().join("absent"));
    assert!(trigger.write(true).is_err());
    assert!(!trigger.exists());
}
