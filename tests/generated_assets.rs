//! The man pages and shell completions the packages ship are generated from the code
//! (`qoscntrlr generate ...`) and kept in `packaging/generated/`, so that a plain
//! `cargo deb` finds them. This test regenerates them: a stale copy is rewritten on a
//! developer machine (commit the result) and is a failure under CI, where the committed
//! files must already be current.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

const CONTROLLER: &str = env!("CARGO_BIN_EXE_qoscntrlr");

fn generated_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/generated")
}

fn generate(what: &str) -> Vec<u8> {
    let out = Command::new(CONTROLLER)
        .args(["generate", what])
        .output()
        .expect("run qoscntrlr generate");
    assert!(out.status.success(), "generate {what}: {out:?}");
    assert!(!out.stdout.is_empty(), "generate {what} printed nothing");
    out.stdout
}

/// gzip with no name and no time stamp: the same input gives the same bytes.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("finish gzip")
}

fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

#[test]
fn packaged_man_pages_and_completions_are_current() {
    let assets: [(&str, &str, bool); 5] = [
        ("man", "qoscntrlr.1.gz", true),
        ("ini-man", "dcontroller.ini.5.gz", true),
        ("bash", "qoscntrlr.bash", false),
        ("zsh", "_qoscntrlr", false),
        ("fish", "qoscntrlr.fish", false),
    ];
    let mut stale = Vec::new();
    for (what, file, compressed) in assets {
        let fresh = generate(what);
        let path = generated_dir().join(file);
        let committed = std::fs::read(&path).ok();
        let current = match (&committed, compressed) {
            (Some(bytes), true) => gunzip(bytes).as_deref() == Some(fresh.as_slice()),
            (Some(bytes), false) => *bytes == fresh,
            (None, _) => false,
        };
        if !current {
            stale.push(file);
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                continue;
            }
            let bytes = if compressed { gzip(&fresh) } else { fresh };
            std::fs::create_dir_all(generated_dir()).expect("create packaging/generated");
            std::fs::write(&path, bytes).expect("refresh the generated file");
        }
    }
    if stale.is_empty() {
        return;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "packaging/generated/{} out of date with the code: run `cargo test --test generated_assets` and commit the result",
            stale.join(", packaging/generated/")
        );
    }
    // Not a failure on a developer machine: the files were just refreshed, to be committed.
    let _ = writeln!(
        std::io::stderr().lock(),
        "REFRESHED packaging/generated/{}: commit them",
        stale.join(", packaging/generated/")
    );
}
