//! The message parser against the reference lines of the log format and generated input.

use proptest::prelude::*;
use qoscntrlr::core::Meaning;
use qoscntrlr::message::{parse, Message, KNOWN_OPS};

/// Every OpMsg line quoted in the log format; each must be logged back exactly.
const REFERENCE_LINES: [&str; 9] = [
    "OpMsg=START Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev ObjectType2=ProcessName ObjectValue2=nserver TimeDate=20120508T001506,95-04",
    "OpMsg=START Type=SERVER TimeDate=20120508T001507,40-04",
    "OpMsg=READY Type=SERVER TimeDate=20120508T001517,92-04",
    r"OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=C:\Program Files\HCL\Domino\Data\ddm.nsf TimeDate=20120508T003826,18-04",
    "OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit TimeDate=20120508T004516,01-04",
    "OpMsg=END Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=20120508T004523,51-04",
    "OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev TimeDate=20120508T010039,48-04",
    "OpMsg=TIMEOUT Type=PROBE TimeDate=null",
    "OpMsg=START Type=PROBE",
];

#[test]
fn reference_lines_are_logged_back_exactly() {
    for line in &REFERENCE_LINES[..8] {
        let message = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(&message.log_text(|| "20990101T000000,00+00".into()), line);
        message
            .meaning()
            .unwrap_or_else(|e| panic!("{line} has a meaning: {e}"));
    }
    // The probe's own start line, in the comma form, parses; it is not an application.
    let probe = parse("OpMsg=START, Type=PROBE").unwrap();
    assert_eq!(probe.to_string(), REFERENCE_LINES[8]);
    assert!(probe.meaning().is_err());
}

#[test]
fn reference_meanings() {
    let meanings: Vec<Meaning> = REFERENCE_LINES[..8]
        .iter()
        .map(|l| parse(l).unwrap().meaning().unwrap())
        .collect();
    assert_eq!(meanings[0], Meaning::QosStart);
    assert_eq!(meanings[1], Meaning::ServerStart);
    assert_eq!(meanings[2], Meaning::ServerReady);
    match &meanings[3] {
        Meaning::AppStart { app } => assert_eq!(
            app.to_string(),
            r"FIXUP[C:\Program Files\HCL\Domino\Data\ddm.nsf]"
        ),
        other => panic!("FIXUP START is an application start, got {other:?}"),
    }
    assert_eq!(meanings[4], Meaning::ServerEnd { restart: false });
    assert_eq!(meanings[5], Meaning::QosEnd);
    assert_eq!(meanings[6], Meaning::Crash);
    assert_eq!(meanings[7], Meaning::ProbeTimeout);
}

const KEY_NAMES: [&str; 7] = [
    "OpMsg",
    "Type",
    "ObjectType",
    "ObjectValue",
    "ObjectType2",
    "ObjectValue2",
    "TimeDate",
];

/// A value as a server could send it: spaces, `=`, backslashes, non-ASCII — but not
/// starting or ending with whitespace and never containing ` Key=` of a known key.
fn value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9=:\\\\/.,_é-][A-Za-z0-9 =:\\\\/.,_é-]{0,30}[A-Za-z0-9=:\\\\/._é-]".prop_filter(
        "no embedded key",
        |v| {
            let lower = v.to_ascii_lowercase();
            !KEY_NAMES
                .iter()
                .any(|k| lower.contains(&format!(" {}=", k.to_ascii_lowercase())))
        },
    )
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,12}"
}

fn message() -> impl Strategy<Value = Message> {
    (
        proptest::sample::select(KNOWN_OPS.to_vec()),
        name(),
        proptest::option::of((name(), value())),
        proptest::option::of((name(), value())),
        proptest::option::of(value()),
    )
        .prop_map(|(op, kind, pair1, pair2, timedate)| Message {
            op: op.to_string(),
            kind,
            object_type: pair1.as_ref().map(|p| p.0.clone()),
            object_value: pair1.map(|p| p.1),
            object_type2: pair2.as_ref().map(|p| p.0.clone()),
            object_value2: pair2.map(|p| p.1),
            timedate,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(line in any::<String>()) {
        if let Ok(m) = parse(&line) {
            let _ = m.meaning();
            let _ = m.log_text(|| "now".into());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let line = String::from_utf8_lossy(&bytes);
        if let Ok(m) = parse(&line) {
            let _ = m.meaning();
        }
    }

    #[test]
    fn key_soup_never_panics(parts in proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(KEY_NAMES.to_vec()).prop_map(|k| format!("{k}=")),
            Just(" ".to_string()), Just(",".to_string()), Just("=".to_string()),
            Just("\t".to_string()), Just("\r".to_string()), "[a-zé\\\\ ]{0,4}",
        ], 0..20)) {
        let line: String = parts.concat();
        if let Ok(m) = parse(&line) {
            let _ = m.meaning();
            // What was accepted renders to something that parses to the same message.
            prop_assert_eq!(parse(&m.to_string()), Ok(m.clone()));
        }
    }

    #[test]
    fn mutated_valid_lines_never_panic(
        line in proptest::sample::select(REFERENCE_LINES.to_vec()),
        cut in 0usize..200,
        insert in any::<String>(),
    ) {
        let mut chars: Vec<char> = line.chars().collect();
        let at = cut.min(chars.len());
        chars.splice(at..at, insert.chars());
        let mutated: String = chars.into_iter().collect();
        if let Ok(m) = parse(&mutated) { let _ = m.meaning(); }
        let truncated: String = line.chars().take(cut).collect();
        if let Ok(m) = parse(&truncated) { let _ = m.meaning(); }
    }

    #[test]
    fn render_then_parse_is_identity(m in message()) {
        let text = m.to_string();
        prop_assert_eq!(parse(&text), Ok(m.clone()), "text: {}", text);
        prop_assert_eq!(parse(&m.log_text(|| "20120508T003826,18-04".into())).map(|p| p.timedate.is_some()), Ok(true));
    }
}
