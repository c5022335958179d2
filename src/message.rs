//! Server messages (the message protocol): the `OpMsg=… Type=… [ObjectType=… ObjectValue=…]
//! [ObjectType2=… ObjectValue2=…] [TimeDate=…]` line format — parsing, its meaning for the
//! controller, and the canonical text logged as `QoS Controller: <message>`.
//!
//! Pure: no I/O. A value runs until the next ` Key=` of a *known* key, so values may
//! contain spaces and `=` (`ObjectValue=C:\Program Files\…`, `ObjectValue=CN=rc45/O=dev`).

use std::fmt;

use crate::core::{AppKey, Meaning};

/// The keys of a message, in the canonical order in which they are rendered.
const KEYS: [Key; 7] = [
    Key::OpMsg,
    Key::Type,
    Key::ObjectType,
    Key::ObjectValue,
    Key::ObjectType2,
    Key::ObjectValue2,
    Key::TimeDate,
];

/// The OpMsg values a server may send.
pub const KNOWN_OPS: [&str; 8] = [
    "START",
    "READY",
    "END",
    "CRASH",
    "TIMEOUT",
    "PROBE",
    "EXHAUSTED",
    "PROGRESS",
];

/// Types with a fixed meaning; they never name a long-running application.
const RESERVED_TYPES: [&str; 3] = ["SERVER", "QOS", "PROBE"];

/// Longest piece of offending input quoted in an error, so a hostile line cannot flood
/// the log through its own error message.
const QUOTE_MAX: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    OpMsg,
    Type,
    ObjectType,
    ObjectValue,
    ObjectType2,
    ObjectValue2,
    TimeDate,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::OpMsg => "OpMsg",
            Key::Type => "Type",
            Key::ObjectType => "ObjectType",
            Key::ObjectValue => "ObjectValue",
            Key::ObjectType2 => "ObjectType2",
            Key::ObjectValue2 => "ObjectValue2",
            Key::TimeDate => "TimeDate",
        }
    }

    /// Keys whose values are names (no spaces expected): a trailing comma is the
    /// separator of the reference's `OpMsg=START, Type=PROBE` form, not part of the name.
    fn is_name(self) -> bool {
        matches!(
            self,
            Key::OpMsg | Key::Type | Key::ObjectType | Key::ObjectType2
        )
    }

    /// The known key spelled (case-insensitively) at the start of `rest` and followed
    /// by `=`; returns the key and the length of `Key=`.
    fn at(rest: &[u8]) -> Option<(Key, usize)> {
        // Longest names first so `ObjectType2=` is not read as `ObjectType` + `2=`; the
        // `=` check makes the order matter only for clarity. The `=` is looked at first:
        // it rules out most keys with one comparison (every word of every message is
        // tried against every key).
        KEYS.iter().copied().find_map(|key| {
            let name = key.name().as_bytes();
            let matches = rest.get(name.len()) == Some(&b'=')
                && rest[..name.len()].eq_ignore_ascii_case(name);
            matches.then_some((key, name.len() + 1))
        })
    }
}

/// One server message, keys in canonical case. Optional values are never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Upper case, one of [`KNOWN_OPS`].
    pub op: String,
    /// The `Type=` value as sent.
    pub kind: String,
    pub object_type: Option<String>,
    pub object_value: Option<String>,
    pub object_type2: Option<String>,
    pub object_value2: Option<String>,
    pub timedate: Option<String>,
}

/// Why a line is not an acceptable message. Texts are written for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("empty message")]
    Empty,
    #[error("unexpected text '{0}' before OpMsg=")]
    TextBeforeOpMsg(String),
    #[error("{0}= appears twice")]
    DuplicateKey(&'static str),
    #[error("no OpMsg= in the message")]
    MissingOpMsg,
    #[error("no Type= in the message")]
    MissingType,
    #[error("unknown OpMsg={0} (expected one of START, READY, END, CRASH, TIMEOUT, PROBE, EXHAUSTED, PROGRESS)")]
    UnknownOpMsg(String),
    #[error("OpMsg={op} with Type={kind} has no meaning ({hint})")]
    Unsupported {
        op: String,
        kind: String,
        hint: &'static str,
    },
    #[error("probe latency '{0}' is not a number of milliseconds")]
    BadLatency(String),
}

/// Shortens offending input for an error message, on a character boundary.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Parse one message line. Keys are case-insensitive, trailing whitespace and CR are
/// ignored, and keys may come in any order (the canonical order is restored on output).
pub fn parse(line: &str) -> Result<Message, MessageError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(MessageError::Empty);
    }
    let bytes = line.as_bytes();

    // Every place where a known key starts: the line's start, or after a space or tab.
    // Key names are ASCII, so these offsets are character boundaries. Kept on the stack
    // (every message is parsed, a flood included): with 7 keys, an 8th start means a key
    // appears twice, and the first repeat is always among the first 8 starts, so starts
    // past them would change nothing but the discarded value of that repeat.
    let mut starts = [(0usize, Key::OpMsg, 0usize); KEYS.len() + 1];
    let mut found = 0;
    for at in 0..bytes.len() {
        if found == starts.len() {
            break;
        }
        if at > 0 && !matches!(bytes[at - 1], b' ' | b'\t') {
            continue;
        }
        if let Some((key, len)) = Key::at(&bytes[at..]) {
            starts[found] = (at, key, len);
            found += 1;
        }
    }
    let starts = &starts[..found];
    match starts.first() {
        None => return Err(MessageError::MissingOpMsg),
        Some(&(0, _, _)) => {}
        Some(&(first, _, _)) => {
            return Err(MessageError::TextBeforeOpMsg(quote(line[..first].trim())))
        }
    }

    // Borrowed until the message is known to be valid: only its fields are copied.
    let mut values: [Option<&str>; 7] = Default::default();
    for (index, &(at, key, len)) in starts.iter().enumerate() {
        let end = starts.get(index + 1).map_or(line.len(), |next| next.0);
        let mut value = line[at + len..end].trim();
        if key.is_name() {
            value = value.strip_suffix(',').unwrap_or(value).trim_end();
        }
        let slot = &mut values[key as usize];
        if slot.is_some() {
            return Err(MessageError::DuplicateKey(key.name()));
        }
        *slot = Some(value);
    }

    let [op, kind, object_type, object_value, object_type2, object_value2, timedate] = values;
    fn non_empty(value: Option<&str>) -> Option<&str> {
        value.filter(|v| !v.is_empty())
    }
    let owned = |value: Option<&str>| non_empty(value).map(str::to_string);
    let op = non_empty(op).ok_or(MessageError::MissingOpMsg)?;
    let op = op.to_ascii_uppercase();
    if !KNOWN_OPS.contains(&op.as_str()) {
        return Err(MessageError::UnknownOpMsg(quote(&op)));
    }
    let kind = owned(kind).ok_or(MessageError::MissingType)?;
    Ok(Message {
        op,
        kind,
        object_type: owned(object_type),
        object_value: owned(object_value),
        object_type2: owned(object_type2),
        object_value2: owned(object_value2),
        timedate: owned(timedate),
    })
}

impl Message {
    fn fields(&self) -> [(Key, Option<&str>); 7] {
        [
            (Key::OpMsg, Some(self.op.as_str())),
            (Key::Type, Some(self.kind.as_str())),
            (Key::ObjectType, self.object_type.as_deref()),
            (Key::ObjectValue, self.object_value.as_deref()),
            (Key::ObjectType2, self.object_type2.as_deref()),
            (Key::ObjectValue2, self.object_value2.as_deref()),
            (Key::TimeDate, self.timedate.as_deref()),
        ]
    }

    /// The text logged as `QoS Controller: <text>`: the message in canonical form, with
    /// ` TimeDate=<now_timedate()>` appended when the sender gave none.
    pub fn log_text(&self, now_timedate: impl FnOnce() -> String) -> String {
        // Built with `push_str` into one allocation of the right size: every message is
        // logged this way, and `write!` per field cost more than the rest of the line.
        const TIMEDATE_ROOM: usize = " TimeDate=20120508T001506,95+0530".len();
        let size = self
            .fields()
            .iter()
            .filter_map(|(key, value)| value.map(|v| key.name().len() + 2 + v.len()))
            .sum::<usize>();
        let mut text = String::with_capacity(size + TIMEDATE_ROOM);
        // Writing to a String cannot fail.
        let _ = self.write_canonical(&mut text);
        if self.timedate.is_none() {
            text.push_str(" TimeDate=");
            text.push_str(&now_timedate());
        }
        text
    }

    /// The canonical form (`Display`, `log_text`): `Key=value` pairs in [`KEYS`] order,
    /// one space apart, written piece by piece (no format string to interpret).
    fn write_canonical(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut first = true;
        for (key, value) in self.fields() {
            if let Some(value) = value {
                if !first {
                    out.write_char(' ')?;
                }
                first = false;
                out.write_str(key.name())?;
                out.write_char('=')?;
                out.write_str(value)?;
            }
        }
        Ok(())
    }

    /// The value paired with `ObjectType=<object_type>` (either pair), case-insensitive.
    pub fn object(&self, object_type: &str) -> Option<&str> {
        let pairs = [
            (&self.object_type, &self.object_value),
            (&self.object_type2, &self.object_value2),
        ];
        pairs.into_iter().find_map(|(t, v)| {
            t.as_deref()
                .filter(|t| t.eq_ignore_ascii_case(object_type))
                .and(v.as_deref())
        })
    }

    fn kind_is(&self, kind: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind)
    }

    fn unsupported(&self, hint: &'static str) -> MessageError {
        MessageError::Unsupported {
            op: self.op.clone(),
            kind: quote(&self.kind),
            hint,
        }
    }

    /// What the message asks of the controller.
    pub fn meaning(&self) -> Result<Meaning, MessageError> {
        let app = || AppKey::new(&self.kind, self.object_value.as_deref());
        let reserved = RESERVED_TYPES.iter().any(|t| self.kind_is(t));
        match self.op.as_str() {
            "START" if self.kind_is("QOS") => Ok(Meaning::QosStart),
            "START" if self.kind_is("SERVER") => Ok(Meaning::ServerStart),
            "END" if self.kind_is("QOS") => Ok(Meaning::QosEnd),
            "END" if self.kind_is("SERVER") => Ok(Meaning::ServerEnd {
                restart: self
                    .object("Detail")
                    .is_some_and(|d| d.eq_ignore_ascii_case("restart")),
            }),
            "START" | "END" | "PROGRESS" if reserved => {
                Err(self.unsupported("SERVER, QOS and PROBE are not application types"))
            }
            "START" => Ok(Meaning::AppStart { app: app() }),
            "PROGRESS" => Ok(Meaning::AppProgress { app: app() }),
            "END" => Ok(Meaning::AppEnd { app: app() }),
            "READY" if self.kind_is("SERVER") => Ok(Meaning::ServerReady),
            "READY" => Err(self.unsupported("READY takes Type=SERVER")),
            "CRASH" if self.kind_is("QOS") => Ok(Meaning::Crash),
            "CRASH" => Err(self.unsupported("CRASH takes Type=QOS")),
            "TIMEOUT" if self.kind_is("PROBE") => Ok(Meaning::ProbeTimeout),
            "TIMEOUT" => Err(self.unsupported("TIMEOUT takes Type=PROBE")),
            "PROBE" if self.kind_is("SUCCESS") || self.kind_is("ERROR") => self.probe_result(),
            "PROBE" => Err(self.unsupported("PROBE takes Type=SUCCESS or Type=ERROR")),
            "EXHAUSTED" => Ok(Meaning::Exhausted {
                resource: self.kind.clone(),
            }),
            // parse() admits only KNOWN_OPS; a hand-built Message may hold anything.
            other => Err(MessageError::UnknownOpMsg(quote(other))),
        }
    }

    fn probe_result(&self) -> Result<Meaning, MessageError> {
        let latency_ms = self.object("Latency").map(parse_latency).transpose()?;
        let detail = self.object("Error").map(str::to_string).or_else(|| {
            // Any other pair is shown as the reference shows `ProbeError=4803`.
            [
                (&self.object_type, &self.object_value),
                (&self.object_type2, &self.object_value2),
            ]
            .into_iter()
            .find_map(|(t, v)| match (t.as_deref(), v.as_deref()) {
                (Some(t), Some(v)) if !t.eq_ignore_ascii_case("Latency") => {
                    Some(format!("{t}={v}"))
                }
                _ => None,
            })
        });
        Ok(Meaning::ProbeResult {
            success: self.kind_is("SUCCESS"),
            latency_ms,
            detail,
        })
    }
}

/// `156`, `156ms` or `156.4` (rounded) milliseconds.
fn parse_latency(text: &str) -> Result<u64, MessageError> {
    let digits = text.trim();
    let digits = digits.strip_suffix("ms").unwrap_or(digits).trim_end();
    if let Ok(ms) = digits.parse::<u64>() {
        return Ok(ms);
    }
    match digits.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms >= 0.0 && ms < u64::MAX as f64 => Ok(ms.round() as u64),
        _ => Err(MessageError::BadLatency(quote(text))),
    }
}

/// The canonical form, without a TimeDate added.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_canonical(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXUP: &str = r"OpMsg=START Type=FIXUP ObjectType=DB ObjectValue=C:\Program Files\HCL\Domino\Data\ddm.nsf TimeDate=20120508T003826,18-04";

    #[test]
    fn reference_fixup_line_round_trips_exactly() {
        let m = parse(FIXUP).unwrap();
        assert_eq!(
            m.object_value.as_deref(),
            Some(r"C:\Program Files\HCL\Domino\Data\ddm.nsf")
        );
        assert_eq!(m.log_text(|| "ignored".into()), FIXUP);
        assert_eq!(
            m.meaning().unwrap(),
            Meaning::AppStart {
                app: AppKey::new("FIXUP", Some(r"C:\Program Files\HCL\Domino\Data\ddm.nsf"))
            }
        );
    }

    #[test]
    fn comma_form_and_case_insensitive_keys() {
        let m = parse("OpMsg=START, Type=PROBE\r\n").unwrap();
        assert_eq!((m.op.as_str(), m.kind.as_str()), ("START", "PROBE"));
        let m = parse("opmsg=ready TYPE=SERVER").unwrap();
        assert_eq!(m.to_string(), "OpMsg=READY Type=SERVER");
        assert_eq!(m.meaning().unwrap(), Meaning::ServerReady);
    }

    #[test]
    fn values_keep_equals_signs_and_unknown_key_lookalikes() {
        let m = parse("OpMsg=CRASH Type=QOS ObjectType=ServerName ObjectValue=CN=rc45/O=dev Foo=bar ObjectTypeX=1").unwrap();
        assert_eq!(
            m.object_value.as_deref(),
            Some("CN=rc45/O=dev Foo=bar ObjectTypeX=1")
        );
        assert_eq!(m.meaning().unwrap(), Meaning::Crash);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(parse("  \r"), Err(MessageError::Empty));
        assert_eq!(parse("Type=SERVER"), Err(MessageError::MissingOpMsg));
        assert_eq!(parse("hello"), Err(MessageError::MissingOpMsg));
        assert_eq!(parse("OpMsg=READY"), Err(MessageError::MissingType));
        assert_eq!(parse("OpMsg=READY Type="), Err(MessageError::MissingType));
        assert_eq!(
            parse("OpMsg=HELLO Type=SERVER"),
            Err(MessageError::UnknownOpMsg("HELLO".into()))
        );
        assert_eq!(
            parse("OpMsg=READY Type=SERVER type=QOS"),
            Err(MessageError::DuplicateKey("Type"))
        );
        let err = parse("garbage OpMsg=READY Type=SERVER").unwrap_err();
        assert_eq!(err, MessageError::TextBeforeOpMsg("garbage".into()));
        assert_eq!(err.to_string(), "unexpected text 'garbage' before OpMsg=");
        let long = format!("{} OpMsg=READY Type=SERVER", "x".repeat(500));
        assert!(parse(&long).unwrap_err().to_string().len() < 120);
    }

    #[test]
    fn meanings_follow_the_design_table() {
        let m = |line: &str| parse(line).unwrap().meaning();
        assert_eq!(m("OpMsg=START Type=QOS"), Ok(Meaning::QosStart));
        assert_eq!(m("OpMsg=START Type=SERVER"), Ok(Meaning::ServerStart));
        assert_eq!(
            m("OpMsg=END Type=SERVER"),
            Ok(Meaning::ServerEnd { restart: false })
        );
        assert_eq!(
            m("OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Restart"),
            Ok(Meaning::ServerEnd { restart: true })
        );
        assert_eq!(m("OpMsg=END Type=QOS"), Ok(Meaning::QosEnd));
        assert_eq!(
            m("OpMsg=TIMEOUT Type=PROBE TimeDate=null"),
            Ok(Meaning::ProbeTimeout)
        );
        assert_eq!(
            m("OpMsg=EXHAUSTED Type=SHARED_HANDLES"),
            Ok(Meaning::Exhausted {
                resource: "SHARED_HANDLES".into()
            })
        );
        assert_eq!(
            m("OpMsg=PROGRESS Type=compact ObjectValue=events4.nsf"),
            Ok(Meaning::AppProgress {
                app: AppKey::new("COMPACT", Some("events4.nsf"))
            })
        );
        assert_eq!(
            m("OpMsg=END Type=BACKUP"),
            Ok(Meaning::AppEnd {
                app: AppKey::new("BACKUP", None)
            })
        );
        assert!(m("OpMsg=START Type=PROBE").is_err());
        assert!(m("OpMsg=READY Type=QOS").is_err());
        assert!(m("OpMsg=CRASH Type=SERVER").is_err());
        assert!(m("OpMsg=PROBE Type=MAYBE").is_err());
    }

    #[test]
    fn probe_results() {
        let m = |line: &str| parse(line).unwrap().meaning();
        assert_eq!(
            m("OpMsg=PROBE Type=SUCCESS ObjectType=Latency ObjectValue=156"),
            Ok(Meaning::ProbeResult {
                success: true,
                latency_ms: Some(156),
                detail: None
            })
        );
        assert_eq!(
            m("OpMsg=PROBE Type=ERROR ObjectType=Latency ObjectValue=12ms ObjectType2=Error ObjectValue2=db not open"),
            Ok(Meaning::ProbeResult {
                success: false,
                latency_ms: Some(12),
                detail: Some("db not open".into())
            })
        );
        assert_eq!(
            m("OpMsg=PROBE Type=ERROR ObjectType=ProbeError ObjectValue=4803"),
            Ok(Meaning::ProbeResult {
                success: false,
                latency_ms: None,
                detail: Some("ProbeError=4803".into())
            })
        );
        assert_eq!(
            m("OpMsg=PROBE Type=SUCCESS ObjectType=Latency ObjectValue=fast"),
            Err(MessageError::BadLatency("fast".into()))
        );
    }

    #[test]
    fn log_text_appends_timedate_only_when_missing() {
        let m = parse("OpMsg=READY Type=SERVER").unwrap();
        assert_eq!(
            m.log_text(|| "20120508T001517,92-04".into()),
            "OpMsg=READY Type=SERVER TimeDate=20120508T001517,92-04"
        );
        let m = parse("OpMsg=TIMEOUT Type=PROBE TimeDate=null").unwrap();
        assert_eq!(
            m.log_text(|| "x".into()),
            "OpMsg=TIMEOUT Type=PROBE TimeDate=null"
        );
    }

    #[test]
    fn app_key_renders_type_and_value() {
        assert_eq!(
            AppKey::new("COMPACT", Some("events4.nsf")).to_string(),
            "COMPACT[events4.nsf]"
        );
        assert_eq!(AppKey::new("backup", None).to_string(), "BACKUP");
    }
}
