//! The usage history `DATA_DIRECTORY/qoscntrlr-usage.jsonl`: one JSON object per
//! sampling pass with every item in use (the server tree's memory, CPU, open files and
//! threads, plus every item a rule watches), rotated and pruned exactly like the events
//! file (same appender: one `write(2)` per line, rotation at 50 MB to
//! `qoscntrlr-usage-<stamp>.jsonl`, rotated files older than QOS_LOG_RETENTION_DAYS
//! deleted at start). Also the reader the log review uses for its per-item statistics
//! and the HTML report's charts.
//!
//! Line shape: `{"ts":"<RFC 3339>","memory":812345344,"cpu":4.5,...,"missing":{"<item>":
//! "<why>"}}` — values in base units (bytes, percent, count, load, milliseconds); an item
//! whose sample could not be taken is listed under `missing` instead.

use std::path::Path;

use chrono::{DateTime, Local, SecondsFormat};
use serde_json::{Map, Value};

use crate::events::{EventsError, EventsFile, MAX_SIZE};
use crate::rules::{Item, Reading};

/// The live file's base name (without `.jsonl`).
pub const BASE: &str = "qoscntrlr-usage";
/// The live file's name.
pub const FILE_NAME: &str = "qoscntrlr-usage.jsonl";

/// The appender. Owned by the runtime; every call returns at once.
pub struct UsageFile {
    file: EventsFile,
}

impl UsageFile {
    /// Open the live file and prune rotated ones (as the events file does).
    pub fn open(data_dir: &Path, retention_days: u32) -> (UsageFile, Vec<EventsError>) {
        let (file, problems) = EventsFile::open_named(data_dir, BASE, retention_days, MAX_SIZE);
        (UsageFile { file }, problems)
    }

    /// Record one pass. A problem is returned (to log) only on the first failure of a
    /// run of failures.
    pub fn record(
        &mut self,
        ts: DateTime<Local>,
        readings: &[(Item, Reading)],
    ) -> Option<EventsError> {
        self.file.append(ts, &line(ts, readings))
    }
}

/// The JSON line of one pass (without the newline).
pub fn line(ts: DateTime<Local>, readings: &[(Item, Reading)]) -> String {
    let mut object = Map::new();
    object.insert(
        "ts".into(),
        ts.to_rfc3339_opts(SecondsFormat::Millis, false).into(),
    );
    let mut missing = Map::new();
    for (item, reading) in readings {
        match reading {
            Reading::Value(v) if v.is_finite() => {
                let value = match item.unit() {
                    crate::rules::Unit::Bytes | crate::rules::Unit::Count => {
                        Value::from(v.round() as u64)
                    }
                    _ => serde_json::Number::from_f64((v * 100.0).round() / 100.0)
                        .map_or(Value::Null, Value::Number),
                };
                object.insert(item.name(), value);
            }
            Reading::Value(_) => {
                missing.insert(item.name(), "not a finite value".into());
            }
            Reading::Missing(why) => {
                missing.insert(item.name(), why.clone().into());
            }
            Reading::Failed(why) => {
                missing.insert(item.name(), format!("failed: {why}").into());
            }
        }
    }
    if !missing.is_empty() {
        object.insert("missing".into(), Value::Object(missing));
    }
    Value::Object(object).to_string()
}

/// One parsed line: its time (as written), the items' values, and the items that could
/// not be sampled in that pass.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSample {
    pub ts: String,
    pub values: Vec<(String, f64)>,
    pub missing: Vec<String>,
}

/// Parse one line of the usage file; `None` for anything else.
pub fn parse_line(text: &str) -> Option<UsageSample> {
    let Value::Object(object) = serde_json::from_str::<Value>(text.trim()).ok()? else {
        return None;
    };
    let ts = object.get("ts")?.as_str()?.to_string();
    let values = object
        .iter()
        .filter(|(k, _)| k.as_str() != "ts" && k.as_str() != "missing")
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    let missing = match object.get("missing") {
        Some(Value::Object(missing)) => missing.keys().cloned().collect(),
        _ => Vec::new(),
    };
    Some(UsageSample {
        ts,
        values,
        missing,
    })
}

/// `qoscntrlr-usage.jsonl` or a rotated `qoscntrlr-usage-<stamp>.jsonl`.
pub fn is_usage_name(name: &str) -> bool {
    name == FILE_NAME || crate::events::is_rotated_name_of(BASE, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_line_and_back() {
        let ts = Local::now();
        let readings = vec![
            (Item::Memory, Reading::Value(812_345_344.0)),
            (Item::Cpu, Reading::Value(4.567)),
            (Item::DiskFree(PathBuf::from("/var")), Reading::Value(1e9)),
            (
                Item::WriteLatency,
                Reading::Failed("read-only file system".into()),
            ),
            (Item::Load1, Reading::Missing("no /proc/loadavg".into())),
        ];
        let text = line(ts, &readings);
        assert!(text.contains("\"memory\":812345344"), "{text}");
        assert!(text.contains("\"cpu\":4.57"), "{text}");
        assert!(text.contains("\"write_latency\":\"failed: read-only file system\""));
        let parsed = parse_line(&text).unwrap();
        let names: Vec<&str> = parsed.values.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["cpu", "disk_free:/var", "memory"]);
        assert_eq!(parsed.missing, vec!["load1", "write_latency"]);
        assert!(parse_line("not json").is_none());
        assert!(is_usage_name("qoscntrlr-usage.jsonl"));
        assert!(is_usage_name("qoscntrlr-usage-20261202013000.jsonl"));
        assert!(!is_usage_name("qoscntrlr-events.jsonl"));
    }
}
