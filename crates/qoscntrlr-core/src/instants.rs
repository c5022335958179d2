//! `Instant`s in the controller's state, written as signed nanosecond offsets from an
//! anchor instant, so the whole state can cross an `execve` (`qoscntrlr reexec`) as
//! data. An `Instant` is opaque and meaningless outside the process that made it; an
//! offset from a moment both sides agree on is not. The caller picks the anchor (the
//! shell reads the clock; this module never does) and runs serialization or
//! deserialization inside [`with_anchor`]. Used through `#[serde(with = ...)]` on every
//! `Instant` field of the core's state types: a new `Instant` field without it does not
//! compile, so nothing with a time in it is silently left out of the handoff.

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    static ANCHOR: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Run `f` with `anchor` as the instant that offsets are taken from (serialization) or
/// added to (deserialization). Nested calls restore the outer anchor.
pub fn with_anchor<T>(anchor: Instant, f: impl FnOnce() -> T) -> T {
    let outer = ANCHOR.with(|a| a.replace(Some(anchor)));
    let result = f();
    ANCHOR.with(|a| a.set(outer));
    result
}

fn anchor() -> Option<Instant> {
    ANCHOR.with(Cell::get)
}

/// Nanoseconds from the anchor (negative: before it).
fn encode(t: Instant) -> Result<i64, String> {
    let anchor = anchor().ok_or("an Instant was serialized outside with_anchor")?;
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).map_err(|_| "offset out of range");
    Ok(if t >= anchor {
        nanos(t - anchor)?
    } else {
        -nanos(anchor - t)?
    })
}

fn decode(offset: i64) -> Result<Instant, String> {
    let anchor = anchor().ok_or("an Instant was deserialized outside with_anchor")?;
    let magnitude = Duration::from_nanos(offset.unsigned_abs());
    let t = if offset >= 0 {
        anchor.checked_add(magnitude)
    } else {
        anchor.checked_sub(magnitude)
    };
    t.ok_or_else(|| format!("instant offset {offset} ns is out of range"))
}

/// `#[serde(with = "crate::instants::instant")]` for `Instant`.
pub mod instant {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        encode(*t).map_err(serde::ser::Error::custom)?.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        decode(i64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "crate::instants::option")]` for `Option<Instant>`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        t.map(encode)
            .transpose()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Option::<i64>::deserialize(d)?
            .map(decode)
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "crate::instants::deque")]` for `VecDeque<Instant>`.
pub mod deque {
    use super::*;

    pub fn serialize<S: Serializer>(ts: &VecDeque<Instant>, s: S) -> Result<S::Ok, S::Error> {
        ts.iter()
            .map(|t| encode(*t))
            .collect::<Result<Vec<i64>, String>>()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VecDeque<Instant>, D::Error> {
        Vec::<i64>::deserialize(d)?
            .into_iter()
            .map(decode)
            .collect::<Result<VecDeque<Instant>, String>>()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Times {
        #[serde(with = "instant")]
        at: Instant,
        #[serde(with = "option")]
        maybe: Option<Instant>,
        #[serde(with = "deque")]
        many: VecDeque<Instant>,
    }

    #[test]
    fn instants_survive_as_offsets_from_the_anchor() {
        let old_anchor = Instant::now() + Duration::from_secs(1000);
        let times = Times {
            at: old_anchor - Duration::from_millis(1500),
            maybe: Some(old_anchor + Duration::from_secs(42)),
            many: [old_anchor, old_anchor - Duration::from_nanos(7)].into(),
        };
        let json = with_anchor(old_anchor, || serde_json::to_string(&times)).unwrap();
        assert_eq!(
            json,
            r#"{"at":-1500000000,"maybe":42000000000,"many":[0,-7]}"#
        );
        // A new process with another anchor for the same moment: same distances.
        let new_anchor = old_anchor + Duration::from_secs(5);
        let back: Times = with_anchor(new_anchor, || serde_json::from_str(&json)).unwrap();
        assert_eq!(back.at, new_anchor - Duration::from_millis(1500));
        assert_eq!(back.maybe, Some(new_anchor + Duration::from_secs(42)));
        assert_eq!(back.many[1], new_anchor - Duration::from_nanos(7));
    }

    #[test]
    fn without_an_anchor_it_is_an_error_not_a_wrong_time() {
        let times = Times {
            at: Instant::now(),
            maybe: None,
            many: VecDeque::new(),
        };
        assert!(serde_json::to_string(&times).is_err());
        assert!(serde_json::from_str::<Times>(r#"{"at":0,"maybe":null,"many":[]}"#).is_err());
    }
}
