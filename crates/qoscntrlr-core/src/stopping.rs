//! Stopping the server on purpose (quit, restart, the controller's own stop, END
//! SERVER): the stop command or signal, shutdown diagnostics, the shutdown timeout.

use super::*;

impl Controller {
    pub(crate) fn enter_stopping(
        &mut self,
        now: Instant,
        pid: i32,
        then: AfterStop,
        why: &str,
        out: &mut Vec<Action>,
    ) {
        let next_nsd =
            (!self.policy.shutdown_nsd.is_zero()).then(|| later(now, self.policy.shutdown_nsd));
        out.push(self.set_state(
            now,
            State::Stopping {
                pid,
                deadline: later(now, self.policy.shutdown_timeout),
                next_nsd,
                then,
            },
            why,
        ));
    }

    pub(crate) fn request_stop(
        &mut self,
        now: Instant,
        then: AfterStop,
        why: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(pid) = self.state.server_pid() else {
            return;
        };
        out.push(log_td(
            Component::Controller,
            "OpMsg=END Type=SERVER ObjectType=Detail ObjectValue=Quit",
        ));
        self.own_end_logged = true;
        self.deactivate_probe(out);
        self.apps.clear();
        self.set_health(Health::Drain, out);
        out.push(Action::RequestStop);
        self.enter_stopping(now, pid, then, why, out);
    }

    pub(crate) fn finish_quit(&mut self, out: &mut Vec<Action>) {
        self.log_server_ended(out);
        out.push(Action::Exit(0));
    }

    /// The end of a normal shutdown, as the reference writes it.
    pub(crate) fn log_server_ended(&mut self, out: &mut Vec<Action>) {
        let name = self.policy.server_name.clone();
        out.push(log_td(
            Component::Controller,
            format!("OpMsg=END Type=QOS ObjectType=ServerName ObjectValue={name}"),
        ));
        out.push(say(&wording::CLEARING_APPS, &[]));
    }

    pub(crate) fn on_stop_requested(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.quit_requested {
            // Second request: kill at once.
            out.push(log(
                Component::Controller,
                "Second stop request: killing the server now",
            ));
            out.push(say(&wording::RUNNING_NSD_KILL, &[]));
            out.push(Action::KillTree);
            if self.state.server_pid().is_none() {
                self.finish_quit(out);
            }
            return;
        }
        self.quit_requested = true;
        match self.state.clone() {
            State::Starting { .. } | State::Ready { .. } => {
                self.request_stop(now, AfterStop::Exit, "controller is stopping", out);
            }
            State::Stopping {
                pid,
                deadline,
                next_nsd,
                ..
            } => {
                self.state = State::Stopping {
                    pid,
                    deadline,
                    next_nsd,
                    then: AfterStop::Exit,
                };
            }
            // Let the kill finish; after_down sees quit_requested and exits.
            State::Killing { .. } | State::Crashed { .. } => {}
            State::Restarting { .. } | State::Stopped | State::Faulted { .. } => {
                self.finish_quit(out)
            }
        }
    }
}
