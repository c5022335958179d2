//! Status snapshot assembly: everything `status` / `status --json` shows, and the
//! figures published to the metrics endpoint.

use std::time::Instant;

use chrono::Local;

use crate::failover;
use crate::status::{self, StatusSnapshot};

use super::{chrono_duration, nonzero, Shell};

impl Shell {
    /// Runs after every loop turn, so it costs O(1) whatever the number of listed
    /// applications: three fields read from the core, a comparison with the published
    /// copy, and a copy only when something changed. The `/metrics` server is never
    /// woken for it (`send_if_modified` returning false): it reads the value when a
    /// scraper asks.
    pub(super) fn publish_metrics(&mut self) {
        self.metrics.state = self.ctl.state();
        self.metrics.paused = self.ctl.paused();
        self.metrics.apps_in_list = self.ctl.apps_in_list() as u64;
        let current = &self.metrics;
        self.metrics_tx.send_if_modified(|published| {
            if published != current {
                published.clone_from(current);
            }
            false
        });
    }

    /// Everything `status` shows.
    pub(super) fn snapshot(&self) -> StatusSnapshot {
        let now = Instant::now();
        let wall = Local::now();
        let core = self.ctl.status(now);
        let at = |t: Instant| {
            status::rfc3339(
                wall.checked_sub_signed(chrono_duration(now.saturating_duration_since(t)))
                    .unwrap_or(wall),
            )
        };
        let policy = self.ctl.policy();
        let resources = self
            .last_sample
            .as_ref()
            .map(|(s, at)| status::ResourceStatus {
                sampled_at: status::rfc3339(*at),
                memory_bytes: s.rss_bytes,
                max_memory_bytes: nonzero(self.cfg.max_memory),
                cpu_percent: s.cpu_percent.unwrap_or(0.0),
                max_cpu_percent: (self.cfg.max_cpu > 0).then_some(self.cfg.max_cpu),
                open_files: s.open_files,
                max_open_files: nonzero(self.cfg.max_open_files),
                threads: s.threads,
                max_threads: nonzero(self.cfg.max_threads),
                disk_free_bytes: s.disk_free_bytes,
                min_disk_free_bytes: nonzero(self.cfg.min_disk_free),
                measured_by: Some(s.source.as_str().to_string()),
                open_files_counted: Some(s.open_files_counted),
                memory_pressure_percent: s.memory_pressure,
                max_memory_pressure_percent: (self.cfg.max_memory_pressure > 0)
                    .then_some(self.cfg.max_memory_pressure),
                cpu_pressure_percent: s.cpu_pressure,
                max_cpu_pressure_percent: (self.cfg.max_cpu_pressure > 0)
                    .then_some(self.cfg.max_cpu_pressure),
                io_pressure_percent: s.io_pressure,
                max_io_pressure_percent: (self.cfg.max_io_pressure > 0)
                    .then_some(self.cfg.max_io_pressure),
                oom_kills: s.oom_kills,
            });
        StatusSnapshot {
            taken_at: status::rfc3339(wall),
            controller: status::ControllerStatus {
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                since: status::rfc3339(self.started_wall),
                config_path: self.config_path.display().to_string(),
                log_file: Some(self.log.path().display().to_string()),
                log_problem: self.log.problem(),
            },
            server: status::ServerStatus {
                name: self.cfg.server_name.clone(),
                state: core.state,
                phase: core.phase,
                why: core.why.clone(),
                state_since: at(core.state_since),
                pid: core.server_pid.map(|p| p as u32),
                uptime_secs: self
                    .server
                    .as_ref()
                    .map(|s| now.saturating_duration_since(s.started).as_secs()),
                restarts_in_window: core.restarts_in_window as u32,
                restart_limit: policy
                    .restart_limit_enable
                    .then_some(policy.restart_limit_maximum),
                restart_period_secs: policy.restart_limit_period.as_secs(),
                last_exit: core.last_exit.clone(),
            },
            probe: status::ProbeStatus {
                target: self
                    .cfg
                    .probe
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |p| p.to_string()),
                interval_secs: self.cfg.probe_interval.as_secs(),
                interval_ms: Some(self.cfg.probe_interval.as_millis() as u64),
                last_result: core.probe_last_result.as_ref().map(|(ok, _, detail)| {
                    if *ok {
                        "SUCCESS".to_string()
                    } else {
                        format!("ERROR: {detail}")
                    }
                }),
                last_latency_ms: core
                    .probe_last_result
                    .as_ref()
                    .map(|(_, l, _)| l.as_millis() as u64),
                since_last_success_secs: core
                    .probe_last_success
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                timeout_left_secs: core
                    .probe_timeout_at
                    .map(|t| t.saturating_duration_since(now).as_secs()),
                enabled: policy.probing,
            },
            apps: core
                .apps
                .iter()
                .map(|(name, running, without)| status::AppStatus {
                    name: name.clone(),
                    age_secs: running.as_secs(),
                    since_progress_secs: without.as_secs(),
                })
                .collect(),
            resources,
            failover: failover::status_view(
                &core.failover,
                failover::OutputsNow {
                    trigger: &self.trigger,
                    health: self.health.current(),
                    readiness_listen: self.cfg.readiness_listen,
                    readiness_listening: self.listen_fds.readiness.is_some(),
                    agent_listen: self.cfg.agent_listen,
                    agent_listening: self.listen_fds.agent.is_some(),
                },
                now,
                at,
            ),
            flags: status::Flags {
                paused: core.paused,
                // Checked: a calendar overflow must not end the controller over a status.
                paused_until: core.paused_until.and_then(|t| {
                    wall.checked_add_signed(chrono_duration(t.saturating_duration_since(now)))
                        .map(status::rfc3339)
                }),
                nokill: core.nokill,
                failover_triggered: core.failover_triggered,
            },
            incidents: core
                .incidents
                .iter()
                .map(|i| status::IncidentStatus {
                    id: self.incident_id(i.id),
                    kind: i.kind.clone(),
                    detected_at: at(i.detected_at),
                    outcome: i.outcome.as_str().to_string(),
                    diagnostics: i.diagnostics.clone(),
                })
                .collect(),
            rules: core
                .rules
                .iter()
                .map(|r| status::RuleView {
                    name: r.key.clone(),
                    rule: r.spec.clone(),
                    action: r.action.as_str().to_string(),
                    value: r.value.clone(),
                    average: r.average.clone(),
                    streak: r.streak,
                    window_filled: r.window_filled,
                    window_len: r.window_len,
                    breached: r.breached,
                })
                .collect(),
            containment: Some(self.containment.status()),
        }
    }
}
