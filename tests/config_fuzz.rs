//! Property tests: the reader never panics, whatever the bytes, and what it accepts it
//! accepts consistently.

use std::path::Path;

use proptest::prelude::*;
use qoscntrlr::config;

/// Lines that look like a configuration: known keys (any case), near misses, comments,
/// junk values with units, quotes and separators.
fn ini_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        proptest::sample::select(config::KNOWN_KEYS.to_vec()).prop_map(str::to_string),
        proptest::sample::select(config::KNOWN_KEYS.to_vec()).prop_map(|k| k.to_lowercase()),
        "[A-Za-z_ ]{0,20}",
    ];
    let value = prop_oneof![
        "[0-9]{0,25}(\\.[0-9]{0,20})?(ms|s|m|min|h|K|MB|G|%| minutes)?",
        "(http|tcp|https)://[a-z:\\[\\]0-9.]{0,20}(/[a-z?=]{0,8})?",
        "exec:[ a-z'\"#;\\\\]{0,20}",
        "[ -~]{0,40}",
        "\\PC{0,20}",
    ];
    prop_oneof![
        (key, "[ \t]{0,2}=[ \t]{0,2}", value).prop_map(|(k, eq, v)| format!("{k}{eq}{v}")),
        "[ \t]*[#;][ -~]{0,30}",
        "\\PC{0,30}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn structured_input_never_panics(lines in proptest::collection::vec(ini_line(), 0..30), crlf in any::<bool>(), bom in any::<bool>()) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = if bom { "\u{feff}".to_string() } else { String::new() };
        text.push_str(&lines.join(eol));
        match config::parse_str(&text, Path::new("/nonexistent/dcontroller.ini")) {
            Ok(loaded) => {
                // Accepted: the invariants the controller relies on hold.
                let c = &loaded.config;
                prop_assert!(!c.server_command.is_empty());
                if c.qos_enable && !c.disable_probing {
                    prop_assert!(c.probe.is_some());
                    prop_assert!(c.probe_timeout > c.probe_interval);
                }
                prop_assert!(!c.resource_interval.is_zero());
                let lines = c.effective_lines();
                prop_assert_eq!(lines.len(), config::KNOWN_KEYS.len());
            }
            Err(e) => {
                prop_assert!(!e.errors.is_empty());
                for finding in &e.errors {
                    // Every error names the file; a line number when there is one.
                    prop_assert!(finding.to_string().starts_with("/nonexistent/dcontroller.ini"));
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("dcontroller.ini");
        std::fs::write(&ini, &bytes).unwrap();
        let _ = config::load(&ini);
    }

    #[test]
    fn parsers_never_panic(text in "\\PC{0,40}") {
        let _ = config::parse_duration(&text, std::time::Duration::from_secs(60));
        let _ = config::parse_size(&text, 1 << 20);
        let _ = config::parse_probe(&text);
        let _ = config::parse_listen(&text);
        let _ = config::parse_signal(&text);
        let _ = config::parse_bool(&text);
    }
}
