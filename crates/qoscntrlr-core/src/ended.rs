//! Pids of server processes that have ended — the server itself and what was killed
//! of its tree — so that a message one of them wrote before it ended, read after its
//! successor started, is not taken for the successor's (an END would stop the new
//! server). Newest last and bounded; a pid given to a new server is forgotten (the
//! kernel recycles pids).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedServers(VecDeque<i32>);

impl EndedServers {
    /// Enough for every process of a large tree killed at once; the oldest make room.
    pub const KEPT: usize = 256;

    pub fn add(&mut self, pids: impl IntoIterator<Item = i32>) {
        for pid in pids {
            if !self.0.contains(&pid) {
                if self.0.len() == Self::KEPT {
                    self.0.pop_front();
                }
                self.0.push_back(pid);
            }
        }
    }

    /// A new server may have been given a recycled pid.
    pub fn remove(&mut self, pid: i32) {
        self.0.retain(|p| *p != pid);
    }

    pub fn contains(&self, pid: i32) -> bool {
        self.0.contains(&pid)
    }

    /// Oldest first.
    pub fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::EndedServers;

    #[test]
    fn ended_servers_are_remembered_bounded_and_forgotten_on_reuse() {
        let mut ended = EndedServers::default();
        ended.add([100, 101, 100]);
        assert!(ended.contains(100) && ended.contains(101) && !ended.contains(102));
        // A recycled pid given to the new server is that server's, not a ghost.
        ended.remove(100);
        assert!(!ended.contains(100));
        ended.add(1000..1000 + EndedServers::KEPT as i32);
        assert!(!ended.contains(101), "the oldest make room");
        assert!(ended.contains(1000) && ended.contains(999 + EndedServers::KEPT as i32));
        assert_eq!(ended.pids().count(), EndedServers::KEPT);
    }
}
