//! TEMPORARY stand-in for the long-running applications list (replaced by the messages branch).

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct AppsList {
    apps: HashMap<String, Instant>,
}

impl AppsList {
    pub fn start(&mut self, key: &str, now: Instant) -> bool {
        self.apps.insert(key.to_string(), now).is_none()
    }
    pub fn progress(&mut self, key: &str, now: Instant) -> bool {
        match self.apps.get_mut(key) {
            Some(t) => {
                *t = now;
                true
            }
            None => false,
        }
    }
    pub fn end(&mut self, key: &str) -> bool {
        self.apps.remove(key).is_some()
    }
    pub fn clear(&mut self) {
        self.apps.clear()
    }
    pub fn len(&self) -> usize {
        self.apps.len()
    }
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
    pub fn next_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.apps.values().min().map(|t| *t + timeout)
    }
    pub fn expired(&self, now: Instant, timeout: Duration) -> Option<(String, Duration)> {
        self.apps
            .iter()
            .min_by_key(|(_, t)| **t)
            .filter(|(_, t)| now >= **t + timeout)
            .map(|(k, t)| (k.clone(), now - *t))
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Instant)> {
        self.apps.iter()
    }
}
