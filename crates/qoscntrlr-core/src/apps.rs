//! The long-running applications list (the supervision rules, the message protocol): applications the server
//! announced with `OpMsg=START Type=<TYPE>`, when each last showed progress, and which
//! one has gone longest without it. Pure: the caller passes `now` in.
//!
//! Every operation is O(log n): a map from application to its entry, and an ordered
//! index of (last progress, sequence) so the oldest deadline is the first index entry.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::AppKey;

/// What a START did to the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// A new entry.
    Added,
    /// The application was already listed; its progress timer restarted.
    Refreshed,
}

/// Ages of one listed application, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppAges {
    /// Since the (first) START.
    pub running: Duration,
    /// Since the last START or PROGRESS.
    pub without_progress: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    started: Instant,
    last_progress: Instant,
    /// Ties entries with equal instants apart in the index.
    seq: u64,
}

/// The list. `Default` is empty. Serialized (for `qoscntrlr reexec`) as its entries in
/// deadline order with instants as anchor offsets; the index is rebuilt on the way in.
#[derive(Debug, Default, Clone)]
pub struct AppsList {
    entries: HashMap<AppKey, Entry>,
    by_progress: BTreeMap<(Instant, u64), AppKey>,
    next_seq: u64,
}

impl AppsList {
    /// Restart `app`'s timer in place: PROGRESS is the flood case, so no key is cloned
    /// or hashed twice (the deadline index gives its own copy of the key back).
    fn touch(&mut self, app: &AppKey, now: Instant) -> bool {
        let Some(entry) = self.entries.get_mut(app) else {
            return false;
        };
        let key = self
            .by_progress
            .remove(&(entry.last_progress, entry.seq))
            .unwrap_or_else(|| app.clone());
        entry.last_progress = now;
        entry.seq = self.next_seq;
        self.next_seq += 1;
        self.by_progress.insert((now, entry.seq), key);
        true
    }

    /// START: add the application, or restart its timer if it is already listed.
    pub fn start(&mut self, app: AppKey, now: Instant) -> StartOutcome {
        if self.touch(&app, now) {
            return StartOutcome::Refreshed;
        }
        let entry = Entry {
            started: now,
            last_progress: now,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.by_progress.insert((now, entry.seq), app.clone());
        self.entries.insert(app, entry);
        StartOutcome::Added
    }

    /// PROGRESS: restart the application's timer. False when it is not listed.
    pub fn progress(&mut self, app: &AppKey, now: Instant) -> bool {
        self.touch(app, now)
    }

    /// END: remove the application. False when it was not listed.
    pub fn end(&mut self, app: &AppKey) -> bool {
        match self.entries.remove(app) {
            Some(entry) => {
                self.by_progress.remove(&(entry.last_progress, entry.seq));
                true
            }
            None => false,
        }
    }

    /// The controller was stalled for `by`: that blind time does not count as time
    /// without progress (a PROGRESS may be waiting unread in the pipe). Every timer moves
    /// `by` later, but never past `now`; order is kept (the map is monotonic).
    pub fn shift_progress(&mut self, by: Duration, now: Instant) {
        let moved = |t: Instant| crate::later(t, by).min(now);
        for entry in self.entries.values_mut() {
            entry.last_progress = moved(entry.last_progress);
        }
        self.by_progress = std::mem::take(&mut self.by_progress)
            .into_iter()
            .map(|((t, seq), app)| ((moved(t), seq), app))
            .collect();
    }

    /// Server start or stop: forget every application.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_progress.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the application longest without progress reaches `timeout`. `None` when the
    /// list is empty (or the deadline lies beyond what `Instant` can represent).
    pub fn next_deadline(&self, timeout: Duration) -> Option<Instant> {
        let (&(last_progress, _), _) = self.by_progress.first_key_value()?;
        last_progress.checked_add(timeout)
    }

    /// The application longest without progress, if that is at least `timeout`, with how
    /// long it has gone without. The entry stays listed: the caller decides what follows.
    pub fn expired(&self, now: Instant, timeout: Duration) -> Option<(AppKey, Duration)> {
        let (&(last_progress, _), app) = self.by_progress.first_key_value()?;
        let without = now.saturating_duration_since(last_progress);
        (without >= timeout).then(|| (app.clone(), without))
    }

    /// Every listed application, longest without progress first.
    pub fn iter(&self, now: Instant) -> impl Iterator<Item = (&AppKey, AppAges)> + '_ {
        self.by_progress.values().filter_map(move |app| {
            let entry = self.entries.get(app)?;
            Some((
                app,
                AppAges {
                    running: now.saturating_duration_since(entry.started),
                    without_progress: now.saturating_duration_since(entry.last_progress),
                },
            ))
        })
    }
}

/// One application as written in the handoff.
#[derive(Serialize, Deserialize)]
struct SavedEntry {
    app: AppKey,
    #[serde(with = "super::instants::instant")]
    started: Instant,
    #[serde(with = "super::instants::instant")]
    last_progress: Instant,
}

impl Serialize for AppsList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let saved: Vec<SavedEntry> = self
            .by_progress
            .values()
            .filter_map(|app| {
                let entry = self.entries.get(app)?;
                Some(SavedEntry {
                    app: app.clone(),
                    started: entry.started,
                    last_progress: entry.last_progress,
                })
            })
            .collect();
        saved.serialize(s)
    }
}

impl<'de> Deserialize<'de> for AppsList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AppsList, D::Error> {
        let saved = Vec::<SavedEntry>::deserialize(d)?;
        let mut list = AppsList::default();
        // In deadline order, so the sequence numbers keep ties in their old order.
        for entry in saved {
            if list.entries.contains_key(&entry.app) {
                return Err(serde::de::Error::custom(format!(
                    "application {} is listed twice",
                    entry.app
                )));
            }
            let seq = list.next_seq;
            list.next_seq += 1;
            list.by_progress
                .insert((entry.last_progress, seq), entry.app.clone());
            list.entries.insert(
                entry.app,
                Entry {
                    started: entry.started,
                    last_progress: entry.last_progress,
                    seq,
                },
            );
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, object: &str) -> AppKey {
        AppKey::new(kind, Some(object))
    }

    const MIN: Duration = Duration::from_secs(60);

    /// The list's log lines (in the wording table) name an application as the
    /// reference does: `TYPE[object]`, a Windows path kept whole.
    #[test]
    fn log_texts_match_the_reference() {
        use crate::wording::{ADDING_APP, REMOVING_APP};
        let app = key("FIXUP", r"C:\Program Files\HCL\Domino\Data\ddm.nsf");
        assert_eq!(
            ADDING_APP.fill(&[&app]),
            r"Adding FIXUP[C:\Program Files\HCL\Domino\Data\ddm.nsf] to long running apps list"
        );
        assert_eq!(
            REMOVING_APP.fill(&[&app]),
            r"Removing FIXUP[C:\Program Files\HCL\Domino\Data\ddm.nsf] from long running apps list.."
        );
    }

    #[test]
    fn start_end_and_unknown_end() {
        let t0 = Instant::now();
        let mut list = AppsList::default();
        assert!(list.is_empty());
        assert_eq!(list.next_deadline(MIN), None);
        assert_eq!(list.start(key("COMPACT", "a.nsf"), t0), StartOutcome::Added);
        assert_eq!(list.start(key("COMPACT", "b.nsf"), t0), StartOutcome::Added);
        assert_eq!(list.len(), 2);
        assert!(!list.end(&key("COMPACT", "c.nsf")));
        assert!(list.end(&key("COMPACT", "a.nsf")));
        assert!(!list.end(&key("COMPACT", "a.nsf")));
        assert_eq!(list.len(), 1);
        list.clear();
        assert!(list.is_empty());
        assert_eq!(list.next_deadline(MIN), None);
        assert_eq!(list.expired(t0 + 100 * MIN, MIN), None);
    }

    #[test]
    fn the_oldest_progress_sets_the_deadline() {
        let t0 = Instant::now();
        let mut list = AppsList::default();
        list.start(key("COMPACT", "a.nsf"), t0);
        list.start(key("FIXUP", "b.nsf"), t0 + 2 * MIN);
        assert_eq!(list.next_deadline(10 * MIN), Some(t0 + 10 * MIN));
        assert_eq!(
            list.expired(t0 + 10 * MIN - Duration::from_millis(1), 10 * MIN),
            None
        );
        // Progress moves a's deadline behind b's.
        assert!(list.progress(&key("COMPACT", "a.nsf"), t0 + 5 * MIN));
        assert_eq!(list.next_deadline(10 * MIN), Some(t0 + 12 * MIN));
        assert_eq!(
            list.expired(t0 + 13 * MIN, 10 * MIN),
            Some((key("FIXUP", "b.nsf"), 11 * MIN))
        );
        // A duplicate START refreshes instead of adding.
        assert_eq!(
            list.start(key("FIXUP", "b.nsf"), t0 + 13 * MIN),
            StartOutcome::Refreshed
        );
        assert_eq!(list.len(), 2);
        assert_eq!(list.next_deadline(10 * MIN), Some(t0 + 15 * MIN));
        assert!(!list.progress(&key("BACKUP", "x"), t0));
    }

    #[test]
    fn ages_for_status_oldest_first() {
        let t0 = Instant::now();
        let mut list = AppsList::default();
        list.start(key("A", "1"), t0);
        list.start(key("B", "2"), t0 + MIN);
        list.progress(&key("A", "1"), t0 + 3 * MIN);
        let seen: Vec<(String, AppAges)> = list
            .iter(t0 + 4 * MIN)
            .map(|(k, a)| (k.to_string(), a))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "B[2]".to_string(),
                    AppAges {
                        running: 3 * MIN,
                        without_progress: 3 * MIN
                    }
                ),
                (
                    "A[1]".to_string(),
                    AppAges {
                        running: 4 * MIN,
                        without_progress: MIN
                    }
                ),
            ]
        );
    }

    #[test]
    fn equal_instants_are_kept_apart() {
        let t0 = Instant::now();
        let mut list = AppsList::default();
        for i in 0..10 {
            list.start(key("X", &i.to_string()), t0);
        }
        assert_eq!(list.len(), 10);
        assert!(list.end(&key("X", "3")));
        assert_eq!(list.iter(t0).count(), 9);
    }

    #[test]
    fn hundred_thousand_entries_expire_in_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut list = AppsList::default();
        for i in 0..100_000u32 {
            list.start(key("COMPACT", &format!("db{i}.nsf")), t0 + ms * i);
        }
        // Every even entry shows progress late; every entry divisible by 3 ends.
        for i in (0..100_000u32).step_by(2) {
            assert!(list.progress(
                &key("COMPACT", &format!("db{i}.nsf")),
                t0 + ms * (200_000 + i)
            ));
        }
        for i in (0..100_000u32).step_by(3) {
            assert!(list.end(&key("COMPACT", &format!("db{i}.nsf"))));
        }
        let timeout = 10 * MIN;
        // First to expire: the oldest odd index not divisible by 3 → 1.
        assert_eq!(list.next_deadline(timeout), Some(t0 + ms + timeout));
        let mut now = t0;
        let mut expired = 0;
        // Drain like the core would: pop the expired entry, look again.
        while let Some(deadline) = list.next_deadline(timeout) {
            now = now.max(deadline);
            let (app, without) = list.expired(now, timeout).expect("due at its deadline");
            assert_eq!(without, timeout);
            assert!(list.end(&app));
            expired += 1;
        }
        let expected = (0..100_000u32).filter(|i| i % 3 != 0).count();
        assert_eq!(expired, expected);
    }

    /// 100k applications: cost per START / PROGRESS / END and of finding each expiry
    /// at its deadline. Run by bench/messages-bench.sh; prints, asserts no time.
    #[test]
    #[ignore = "benchmark: bench/messages-bench.sh"]
    fn bench_hundred_thousand_apps() {
        const N: u32 = 100_000;
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let keys: Vec<AppKey> = (0..N)
            .map(|i| key("COMPACT", &format!("db{i}.nsf")))
            .collect();
        let mut list = AppsList::default();
        let clock = Instant::now();
        for (i, k) in keys.iter().enumerate() {
            list.start(k.clone(), t0 + ms * i as u32);
        }
        let start = clock.elapsed() / N;
        let clock = Instant::now();
        for (i, k) in keys.iter().enumerate() {
            list.progress(k, t0 + ms * (N + i as u32));
        }
        let progress = clock.elapsed() / N;
        // Expiry on time: every deadline is the progress instant + timeout, found first.
        let timeout = 10 * MIN;
        let clock = Instant::now();
        let mut late = 0;
        for (i, k) in keys.iter().enumerate() {
            let due = t0 + ms * (N + i as u32) + timeout;
            if list.next_deadline(timeout) != Some(due)
                || list.expired(due, timeout).map(|e| e.0) != Some(k.clone())
            {
                late += 1;
            }
            list.end(k);
        }
        let expire = clock.elapsed() / N;
        println!("apps: 100k entries: start {start:?}/op, progress {progress:?}/op, deadline+expired+end {expire:?}/op, {late} not found at their deadline");
    }

    #[test]
    fn the_list_crosses_a_handoff_with_its_deadlines_and_order() {
        let t0 = Instant::now();
        let mut list = AppsList::default();
        list.start(key("COMPACT", "a.nsf"), t0);
        list.start(key("FIXUP", "b.nsf"), t0 + MIN);
        list.start(key("UPDALL", "c.nsf"), t0 + MIN);
        list.progress(&key("COMPACT", "a.nsf"), t0 + 3 * MIN);
        let json =
            super::super::instants::with_anchor(t0, || serde_json::to_string(&list)).unwrap();
        let back: AppsList =
            super::super::instants::with_anchor(t0, || serde_json::from_str(&json)).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back.next_deadline(MIN), Some(t0 + 2 * MIN));
        let now = t0 + 4 * MIN;
        let before: Vec<_> = list.iter(now).map(|(k, a)| (k.clone(), a)).collect();
        let after: Vec<_> = back.iter(now).map(|(k, a)| (k.clone(), a)).collect();
        assert_eq!(before, after, "same entries, ages and deadline order");
        let twice = r#"[{"app":{"kind":"A","object":null},"started":0,"last_progress":0},{"app":{"kind":"A","object":null},"started":0,"last_progress":0}]"#;
        let parsed: Result<AppsList, _> =
            super::super::instants::with_anchor(t0, || serde_json::from_str(twice));
        assert!(parsed.is_err(), "a duplicate is refused, not merged");
    }
}
