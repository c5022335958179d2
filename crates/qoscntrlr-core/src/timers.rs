//! The core's named timers: one slot per thing the controller waits for (the next probe,
//! the probe timeout, the first application to expire, the start/stop/kill deadlines,
//! the restart backoff, the end of a pause, the failback hold, the automatic fault clear,
//! the online trust time, the end of a stall hold). [`Controller::timers`] fills the
//! table from the state; [`Controller::next_deadline`] is its earliest armed slot. A
//! fixed array indexed by [`Timer`]: reading or filling it never allocates, whatever the
//! number of applications (the loop asks once per turn).
//!
//! [`Controller::timers`]: super::Controller::timers
//! [`Controller::next_deadline`]: super::Controller::next_deadline

use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// The next probe attempt (the controller schedules them; not `QOS_PROBE=message`).
    ProbeDue,
    /// QOS_PROBE_TIMEOUT past the last success (READY, no application listed).
    ProbeTimeout,
    /// The application longest without progress reaches QOS_APPS_TIMEOUT (READY).
    AppExpiry,
    /// STARTING: the server must be ready within QOS_RESTART_TIMEOUT.
    StartDeadline,
    /// STOPPING: the server must be down within QOS_SHUTDOWN_TIMEOUT.
    StopDeadline,
    /// STOPPING: the next diagnostics run every QOS_SHUTDOWN_NSD.
    ShutdownNsd,
    /// KILLING: diagnostics time limit, then the SIGKILL re-check.
    KillDeadline,
    /// RESTARTING: the spawn after the restart delay or the backoff of failed starts.
    RestartBackoff,
    /// `pause --for`: the pause ends.
    PauseEnd,
    /// QOS_FAILBACK_HOLD: the failover outputs come back.
    FailbackHold,
    /// QOS_AUTO_FAULT_CLEAR: FAULTED is left.
    FaultAutoClear,
    /// QOS_ONLINE_TRUST_TIME: the restart-limit window is emptied.
    TrustTime,
    /// After a controller stall: timeouts apply again (a probe answer ends it sooner).
    StallHold,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 13] = [
        Timer::ProbeDue,
        Timer::ProbeTimeout,
        Timer::AppExpiry,
        Timer::StartDeadline,
        Timer::StopDeadline,
        Timer::ShutdownNsd,
        Timer::KillDeadline,
        Timer::RestartBackoff,
        Timer::PauseEnd,
        Timer::FailbackHold,
        Timer::FaultAutoClear,
        Timer::TrustTime,
        Timer::StallHold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Timer::ProbeDue => "probe due",
            Timer::ProbeTimeout => "probe timeout",
            Timer::AppExpiry => "application expiry",
            Timer::StartDeadline => "start deadline",
            Timer::StopDeadline => "stop deadline",
            Timer::ShutdownNsd => "shutdown diagnostics",
            Timer::KillDeadline => "kill deadline",
            Timer::RestartBackoff => "restart backoff",
            Timer::PauseEnd => "pause end",
            Timer::FailbackHold => "failback hold",
            Timer::FaultAutoClear => "fault auto-clear",
            Timer::TrustTime => "trust time",
            Timer::StallHold => "stall hold",
        }
    }

    /// Timeouts a stall hold defers: nothing measured across a stall counts, so none of
    /// these is acted on before the hold ends. The next probe (sent at once after a
    /// stall, its answer ends the hold), the operator's pause, the failback hold and the
    /// trust time are not timeouts of the server and run as set.
    pub fn held_by_stall(self) -> bool {
        matches!(
            self,
            Timer::ProbeTimeout
                | Timer::AppExpiry
                | Timer::StartDeadline
                | Timer::StopDeadline
                | Timer::ShutdownNsd
                | Timer::KillDeadline
                | Timer::RestartBackoff
                | Timer::FaultAutoClear
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The armed timers: at most one instant per [`Timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timers {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl Timers {
    /// Arm `timer` at `at`, or disarm it with `None`.
    pub fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer.index()] = at;
    }

    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// Every armed timer, in table order.
    pub fn armed(&self) -> impl Iterator<Item = (Timer, Instant)> + '_ {
        Timer::ALL
            .iter()
            .filter_map(move |&timer| self.get(timer).map(|at| (timer, at)))
    }

    /// The timer the controller must be woken for next, and when. While a stall hold is
    /// armed, the timeouts it defers are not candidates: the hold's own end comes first
    /// and they are looked at again then. Ties go to the earlier timer in table order.
    pub fn next(&self) -> Option<(Timer, Instant)> {
        let holding = self.get(Timer::StallHold).is_some();
        self.armed()
            .filter(|(timer, _)| !(holding && timer.held_by_stall()))
            .fold(
                None,
                |best: Option<(Timer, Instant)>, (timer, at)| match best {
                    Some((_, best_at)) if best_at <= at => best,
                    _ => Some((timer, at)),
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t0() -> Instant {
        // Any fixed instant: the table only compares.
        Instant::now()
    }

    #[test]
    fn empty_table_has_no_deadline() {
        assert_eq!(Timers::default().next(), None);
        assert_eq!(Timers::default().armed().count(), 0);
    }

    #[test]
    fn next_is_the_earliest_armed_timer_by_name() {
        let t0 = t0();
        let mut timers = Timers::default();
        timers.set(Timer::ProbeTimeout, Some(t0 + Duration::from_secs(300)));
        timers.set(Timer::ProbeDue, Some(t0 + Duration::from_secs(60)));
        timers.set(Timer::TrustTime, Some(t0 + Duration::from_secs(30)));
        assert_eq!(
            timers.next(),
            Some((Timer::TrustTime, t0 + Duration::from_secs(30)))
        );
        timers.set(Timer::TrustTime, None);
        assert_eq!(
            timers.next(),
            Some((Timer::ProbeDue, t0 + Duration::from_secs(60)))
        );
    }

    #[test]
    fn ties_go_to_the_earlier_timer_in_table_order() {
        let t0 = t0();
        let mut timers = Timers::default();
        timers.set(Timer::FailbackHold, Some(t0));
        timers.set(Timer::ProbeDue, Some(t0));
        assert_eq!(timers.next(), Some((Timer::ProbeDue, t0)));
    }

    #[test]
    fn a_stall_hold_defers_the_timeouts_but_not_the_probe_or_the_operators_timers() {
        let t0 = t0();
        let mut timers = Timers::default();
        // A probe timeout long past (it was due during the stall) and an application.
        timers.set(Timer::ProbeTimeout, Some(t0 - Duration::from_secs(10)));
        timers.set(Timer::AppExpiry, Some(t0 - Duration::from_secs(5)));
        timers.set(Timer::StallHold, Some(t0 + Duration::from_secs(20)));
        assert_eq!(
            timers.next(),
            Some((Timer::StallHold, t0 + Duration::from_secs(20)))
        );
        // The probe after the stall goes out at once.
        timers.set(Timer::ProbeDue, Some(t0));
        assert_eq!(timers.next(), Some((Timer::ProbeDue, t0)));
        timers.set(Timer::ProbeDue, None);
        // A pause ending during the hold ends on time.
        timers.set(Timer::PauseEnd, Some(t0 + Duration::from_secs(3)));
        assert_eq!(
            timers.next(),
            Some((Timer::PauseEnd, t0 + Duration::from_secs(3)))
        );
        // The hold over, the deferred timeout is next (at once: it is in the past).
        timers.set(Timer::PauseEnd, None);
        timers.set(Timer::StallHold, None);
        assert_eq!(
            timers.next(),
            Some((Timer::ProbeTimeout, t0 - Duration::from_secs(10)))
        );
    }

    #[test]
    fn every_timer_has_its_own_slot_and_name() {
        let t0 = t0();
        let mut timers = Timers::default();
        for (i, timer) in Timer::ALL.iter().enumerate() {
            assert_eq!(timer.index(), i, "{timer} out of table order");
            timers.set(*timer, Some(t0 + Duration::from_secs(i as u64)));
        }
        for (i, timer) in Timer::ALL.iter().enumerate() {
            assert_eq!(timers.get(*timer), Some(t0 + Duration::from_secs(i as u64)));
        }
        let names: std::collections::BTreeSet<_> = Timer::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), Timer::ALL.len());
    }
}
