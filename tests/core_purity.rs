//! The core stays pure. It is a crate of its own (`crates/qoscntrlr-core`) whose only
//! dependency is serde, so the compiler already refuses a path to the shell's effect
//! modules or to a crate that does I/O (tokio, nix, libc …). What the compiler cannot
//! see is checked here: the core's manifest names no other dependency, and its sources
//! use no `std` module that reaches the outside world (`fs`, `net`, `process`, `io`,
//! `env`, `thread`, `os`), read no clock and print nothing. Every `use` tree is expanded
//! and every path in the code (comments and string literals removed) is checked; a
//! `std::fs` call or an `Instant::now()` in the core fails here with the file and line.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the core crate lives, from the workspace root.
const CORE_CRATE: &str = "crates/qoscntrlr-core";

/// Crates the core may use: data derivation and formatting only.
const ALLOWED_CRATES: &[&str] = &["serde", "serde_json", "thiserror"];

/// The shell crate: the core never names it (it could not: the shell depends on the
/// core), listed so that a path to it reads as what it is.
const SHELL_CRATE: &str = "qoscntrlr";

/// `std` modules that reach the outside world.
const FORBIDDEN_STD: &[&str] = &["fs", "net", "process", "io", "env", "thread", "os"];

/// Clock reads (the shell passes `now` in) and clocks by name.
const FORBIDDEN_SEGMENTS: &[&[&str]] = &[
    &["Instant", "now"],
    &["SystemTime"],
    &["UNIX_EPOCH"],
    &["Local", "now"],
    &["Utc", "now"],
];

/// Macros that write to the process's stdout or stderr.
const FORBIDDEN_MACROS: &[&str] = &["println", "eprintln", "print", "eprint", "dbg"];

/// Something found in a source file, with its line.
type Located<T> = (T, usize);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// The source with comments, string and character literals blanked (newlines kept, so
/// line numbers stay right).
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && {
                let mut j = i + if c == 'b' { 2 } else { 1 };
                while chars.get(j) == Some(&'#') {
                    j += 1;
                }
                chars.get(j) == Some(&'"')
            }
        {
            // Raw string: r"…", r#"…"#, br"…".
            i += if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F}'); otherwise a lifetime or label.
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    i = end + 1;
                    out.push(' ');
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Identifiers, `::` and single punctuation characters, each with its line.
fn tokens(stripped: &str) -> Vec<(Token, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let chars: Vec<char> = stripped.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push((
                Token::Ident(word.trim_start_matches("r#").to_string()),
                line,
            ));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((Token::PathSep, line));
            i += 2;
        } else {
            out.push((Token::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// Expand one `use` tree starting at `at` (after `use`) into full paths; returns the
/// index after the tree.
fn expand_use(
    toks: &[(Token, usize)],
    mut at: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut path = prefix.to_vec();
    let line = toks.get(at).map_or(0, |t| t.1);
    loop {
        match toks.get(at).map(|t| &t.0) {
            Some(Token::PathSep) => at += 1,
            Some(Token::Ident(word)) => {
                if word == "as" {
                    // `as name`: the alias does not change what is imported.
                    at += 2;
                    continue;
                }
                if word != "self" || path.is_empty() {
                    path.push(word.clone());
                }
                at += 1;
            }
            Some(Token::Punct('*')) => at += 1,
            Some(Token::Punct('{')) => {
                at += 1;
                loop {
                    match toks.get(at).map(|t| &t.0) {
                        Some(Token::Punct('}')) => {
                            at += 1;
                            break;
                        }
                        Some(Token::Punct(',')) => at += 1,
                        None => break,
                        _ => at = expand_use(toks, at, &path, out),
                    }
                }
                return at;
            }
            _ => {
                out.push((path, line));
                return at;
            }
        }
    }
}

/// At `#[cfg(test)]`: the index after the item it guards (unit tests may read the
/// clock; they are not part of the core's build).
fn skip_test_item(toks: &[(Token, usize)], at: usize) -> Option<usize> {
    let want = [
        Token::Punct('#'),
        Token::Punct('['),
        Token::Ident("cfg".into()),
        Token::Punct('('),
        Token::Ident("test".into()),
        Token::Punct(')'),
        Token::Punct(']'),
    ];
    let matches = toks.len() >= at + want.len()
        && toks[at..at + want.len()]
            .iter()
            .zip(&want)
            .all(|((t, _), w)| t == w);
    if !matches {
        return None;
    }
    let mut i = at + want.len();
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i].0 {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            Token::Punct(';') if depth == 0 => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    Some(i)
}

/// Every path the source names (`use` trees expanded, then every `a::b::c` of the code),
/// and every macro invocation, each with its line.
fn paths_of(source: &str) -> (Vec<Located<Vec<String>>>, Vec<Located<String>>) {
    let toks = tokens(&strip(source));
    let mut paths = Vec::new();
    let mut macros = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let Some(after) = skip_test_item(&toks, i) {
            i = after;
            continue;
        }
        match &toks[i].0 {
            Token::Ident(word) if word == "use" => {
                i = expand_use(&toks, i + 1, &[], &mut paths);
            }
            Token::Ident(word) => {
                let preceded_by_sep = i > 0 && toks[i - 1].0 == Token::PathSep;
                if matches!(toks.get(i + 1), Some((Token::Punct('!'), _))) {
                    macros.push((word.clone(), toks[i].1));
                }
                if !preceded_by_sep && matches!(toks.get(i + 1), Some((Token::PathSep, _))) {
                    let line = toks[i].1;
                    let mut path = vec![word.clone()];
                    let mut j = i + 1;
                    while let (Some((Token::PathSep, _)), Some((Token::Ident(next), _))) =
                        (toks.get(j), toks.get(j + 1))
                    {
                        path.push(next.clone());
                        j += 2;
                    }
                    paths.push((path, line));
                    i = j;
                } else {
                    i += 1;
                }
            }
            Token::PathSep => {
                // A leading `::tokio::…` names an external crate.
                if let Some((Token::Ident(root), line)) = toks.get(i + 1) {
                    if i == 0 || !matches!(toks[i - 1].0, Token::Ident(_)) {
                        paths.push((vec![root.clone()], *line));
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    (paths, macros)
}

/// The crates a manifest's `[dependencies]` (also `[build-dependencies]` and
/// `[target.….dependencies]`, which are built into or run for the crate as well) names,
/// as Rust identifiers. `[dev-dependencies]` are left out: only unit tests see them.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let section = line.trim_matches(|c| c == '[' || c == ']');
            inside = section.ends_with("dependencies") && section != "dev-dependencies";
            continue;
        }
        if inside {
            if let Some((name, _)) = line.split_once('=') {
                let name = name.trim();
                if !name.is_empty() && !name.starts_with('#') {
                    deps.push(name.replace('-', "_"));
                }
            }
        }
    }
    deps
}

/// What is wrong with one file, as `FILE:LINE: reason` lines.
fn violations(file: &str, source: &str, forbidden_crates: &[String]) -> Vec<String> {
    let (paths, macros) = paths_of(source);
    let mut found = Vec::new();
    for (path, line) in &paths {
        let text = path.join("::");
        let root = path[0].as_str();
        let why = if root == SHELL_CRATE {
            Some(format!(
                "names `{text}`: the core never names the shell crate; shared types are \
                 defined in the core and the shell imports them"
            ))
        } else if forbidden_crates.iter().any(|c| c == root) {
            Some(format!(
                "names `{text}`: crate `{root}` is not one the core may use"
            ))
        } else if matches!(root, "std" | "core" | "alloc")
            && path
                .get(1)
                .is_some_and(|m| FORBIDDEN_STD.contains(&m.as_str()))
        {
            Some(format!("names `{text}`: the core does no I/O"))
        } else {
            FORBIDDEN_SEGMENTS
                .iter()
                .find(|bad| path.windows(bad.len()).any(|w| w == **bad))
                .map(|_| {
                    format!("names `{text}`: the core reads no clock (the shell passes `now`)")
                })
        };
        if let Some(why) = why {
            found.push(format!("{file}:{line}: {why}"));
        }
    }
    for (name, line) in macros {
        if FORBIDDEN_MACROS.contains(&name.as_str()) {
            found.push(format!(
                "{file}:{line}: `{name}!` writes to the process's output"
            ));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn forbidden_crates() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let deps = dependencies(&manifest);
    assert!(
        deps.iter().any(|d| d == "tokio"),
        "the [dependencies] reader found no tokio in Cargo.toml: {deps:?}"
    );
    let mut forbidden: Vec<String> = deps
        .into_iter()
        .filter(|d| !ALLOWED_CRATES.contains(&d.as_str()))
        .collect();
    // Never a dependency of ours today, but a core naming them would do I/O all the same.
    forbidden.extend(["libc", "tokio", "nix", "mio", "socket2"].map(String::from));
    forbidden
}

#[test]
fn the_core_crate_depends_on_nothing_that_does_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = fs::read_to_string(root.join(CORE_CRATE).join("Cargo.toml"))
        .expect("read the core's Cargo.toml");
    let deps = dependencies(&manifest);
    // The reader works (a reader that finds nothing passes everything).
    assert!(
        deps.iter().any(|d| d == "serde"),
        "the [dependencies] reader found no serde in {CORE_CRATE}/Cargo.toml: {deps:?}"
    );
    let extra: Vec<&String> = deps
        .iter()
        .filter(|d| !ALLOWED_CRATES.contains(&d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "{CORE_CRATE}/Cargo.toml: the core may depend only on {ALLOWED_CRATES:?} (data, no \
         I/O); found {extra:?}: do the effect in the shell and pass its result in as an event"
    );
    assert!(
        !root.join(CORE_CRATE).join("build.rs").exists(),
        "{CORE_CRATE}/build.rs: the core has no build script"
    );
}

#[test]
fn the_core_does_no_io_reads_no_clock_and_prints_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let forbidden = forbidden_crates();
    let mut files = Vec::new();
    rust_files(&root.join(CORE_CRATE).join("src"), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("src/lib.rs")),
        "{CORE_CRATE}/src/lib.rs not found under {}",
        root.display()
    );
    let mut found = Vec::new();
    let mut modules_named = BTreeSet::new();
    for file in &files {
        let source =
            fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        found.extend(violations(&shown, &source, &forbidden));
        for (path, _) in paths_of(&source).0 {
            if path[0] == "crate" && path.len() > 1 {
                modules_named.insert(path[1].clone());
            }
        }
    }
    assert!(
        found.is_empty(),
        "the core must stay pure: define shared types in the core (the shell imports them \
         from there), pass time and facts in as events:\n{}",
        found.join("\n")
    );
    // The scan saw the core's own paths (a scanner that sees nothing passes everything).
    assert!(
        modules_named.contains("rules") && modules_named.contains("units"),
        "no crate::rules / crate::units path seen: {modules_named:?}"
    );
}

#[test]
fn the_scanner_catches_each_kind_of_impurity() {
    let forbidden = forbidden_crates();
    let bad = |source: &str| violations("x.rs", source, &forbidden);
    assert_eq!(bad("use qoscntrlr::failover::Health;").len(), 1);
    // Each path of a use tree into the shell is one finding.
    assert_eq!(
        bad("use qoscntrlr::{core::Policy, status::StatusSnapshot};").len(),
        2
    );
    assert_eq!(bad("fn f() { ::qoscntrlr::mail::send(); }").len(), 1);
    assert_eq!(bad("use std::{fs, time::Duration};").len(), 1);
    assert_eq!(bad("use std::io::Write as _;").len(), 1);
    assert_eq!(bad("fn f() { let _ = std::process::id(); }").len(), 1);
    assert_eq!(bad("fn f() -> Instant { Instant::now() }").len(), 1);
    assert_eq!(bad("use std::time::{Duration, SystemTime};").len(), 1);
    assert_eq!(bad("use tokio::time::sleep;").len(), 1);
    assert_eq!(bad("fn f() { ::nix::unistd::getpid(); }").len(), 1);
    assert_eq!(bad("fn f() { chrono::Local::now(); }").len(), 1);
    assert_eq!(
        bad("#[cfg(test)] fn f() {}\nfn g() { std::fs::read(\"x\"); }").len(),
        1
    );
    assert_eq!(bad("fn f() { eprintln!(\"x\"); }").len(), 1);
    // Allowed: the core's own modules, std data types, serde; and anything in comments
    // or string literals.
    let clean = r##"
        use std::collections::{BTreeMap, VecDeque};
        use std::time::{Duration, Instant};
        use serde::{Deserialize, Serialize};
        use super::ha::FailbackMode;
        use crate::{later, vocab::Health};
        use crate::rules::{Rule, RuleEngine as Engine};
        // use qoscntrlr::failover::Health; — in a comment
        /* std::fs::read("x") /* nested */ crate::mail::x */
        fn f<'a>(s: &'a str) -> usize {
            let _ = "crate::status::x std::fs Instant::now()";
            let _ = r#"use tokio::net;"#;
            let _ = '"';
            let _ = crate::units::parse_duration(s, Duration::from_secs(1));
            format!("{}", s).len()
        }
    "##;
    assert_eq!(bad(clean), Vec::<String>::new());
}
