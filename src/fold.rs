//! Folding of repeated alerts, shared by the mailer and the webhook sender: the first
//! alert of a kind goes out at once and opens a window; repeats within the window are
//! held and go out together when it closes, which opens the next window.

use std::collections::BTreeMap;
use std::time::Duration;

// The senders sleep on tokio's clock, so the windows are measured on it too.
use tokio::time::Instant;

struct Window<A> {
    end: Instant,
    held: Vec<A>,
}

/// Open fold windows, one per key (the server and the alert kind).
pub struct Folds<A> {
    window: Duration,
    open: BTreeMap<String, Window<A>>,
}

impl<A> Folds<A> {
    pub fn new(window: Duration) -> Self {
        Folds {
            window,
            open: BTreeMap::new(),
        }
    }

    /// The alert to send now (it opens a window), or `None` when a window of its key is
    /// open and holds it.
    pub fn accept(&mut self, key: String, alert: A, now: Instant) -> Option<A> {
        match self.open.get_mut(&key) {
            Some(window) if now < window.end => {
                window.held.push(alert);
                None
            }
            _ => {
                self.open.insert(
                    key,
                    Window {
                        end: now + self.window,
                        held: Vec::new(),
                    },
                );
                Some(alert)
            }
        }
    }

    /// The alerts held by each window that has ended, to be sent as one. A window that
    /// held some opens the next one; an empty one closes, so the next alert of its key
    /// goes out at once.
    pub fn close_due(&mut self, now: Instant) -> Vec<Vec<A>> {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, w)| w.end <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in due {
            let Some(window) = self.open.remove(&key) else {
                continue;
            };
            if !window.held.is_empty() {
                self.open.insert(
                    key,
                    Window {
                        end: now + self.window,
                        held: Vec::new(),
                    },
                );
                out.push(window.held);
            }
        }
        out
    }

    /// Every window's held alerts (at shutdown, to be spooled), closing them all.
    pub fn drain(&mut self) -> Vec<Vec<A>> {
        std::mem::take(&mut self.open)
            .into_values()
            .map(|w| w.held)
            .filter(|held| !held.is_empty())
            .collect()
    }

    /// When the next window ends.
    pub fn next_end(&self) -> Option<Instant> {
        self.open.values().map(|w| w.end).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_goes_out_repeats_are_held_until_the_window_ends() {
        let t0 = Instant::now();
        let mut folds = Folds::new(Duration::from_secs(10));
        assert_eq!(folds.accept("a".into(), 1, t0), Some(1));
        assert_eq!(
            folds.accept("a".into(), 2, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(folds.accept("b".into(), 3, t0), Some(3));
        assert_eq!(folds.next_end(), Some(t0 + Duration::from_secs(10)));
        assert!(folds.close_due(t0 + Duration::from_secs(9)).is_empty());
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(folds.close_due(t10), vec![vec![2]]);
        // "a" held something, so a new window is open; "b" held nothing and closed.
        assert_eq!(folds.accept("a".into(), 4, t10), None);
        assert_eq!(folds.accept("b".into(), 5, t10), Some(5));
        assert_eq!(folds.drain(), vec![vec![4]]);
        assert_eq!(folds.next_end(), None);
    }
}
