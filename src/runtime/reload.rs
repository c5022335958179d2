//! SIGHUP / `qoscntrlr reload`: the new configuration is read and checked, the settings
//! bound or opened at start keep their running value (the key table's start-only keys,
//! `config::keep_start_only`, named in the log), and the rest — policy, probe, limits, hooks, server command, mail and webhook
//! settings — take effect.

use crate::config::{self, Config};
use crate::control::ControlResponse;
use crate::core::Component;

use super::{Shell, MAILER_CLOSE_LIMIT};

impl Shell {
    /// Re-read the configuration (SIGHUP or `qoscntrlr reload`). The answer says what
    /// changed, or carries every error of a rejected file.
    pub(super) fn reload(&mut self, why: &str) -> ControlResponse {
        self.line(
            Component::Controller,
            format!("{why}: reloading {}", self.config_path.display()),
        );
        match config::load(&self.config_path) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    self.line(Component::Controller, format!("Reload warning: {warning}"));
                }
                let before = self.cfg.effective_lines();
                let rules_before = self.cfg.rules();
                let (cfg, waiting) = self.keep_start_only_settings(loaded.config);
                self.ctl.set_policy(cfg.policy());
                self.reload_mail(&cfg);
                self.reload_webhook(&cfg);
                self.cfg = cfg;
                let after = self.cfg.effective_lines();
                for line in &after {
                    self.line(Component::Controller, line);
                }
                for line in self.cfg.rule_lines() {
                    self.line(Component::Controller, line);
                }
                let rule_changes = crate::rules::rule_changes(&rules_before, &self.cfg.rules());
                for change in &rule_changes {
                    self.line(Component::Controller, format!("Reload: rule {change}"));
                }
                self.line(Component::Controller, "Configuration reloaded");
                let mut message = String::from("Configuration reloaded");
                let changed: Vec<String> = after
                    .iter()
                    .filter(|line| !before.contains(line))
                    .map(|line| {
                        let key = line.split('=').next().unwrap_or(line);
                        let old = before
                            .iter()
                            .find(|b| b.split('=').next() == Some(key))
                            .and_then(|b| b.split_once('=').map(|(_, v)| v))
                            .unwrap_or("");
                        let new = line.split_once('=').map_or("", |(_, v)| v);
                        format!("  {key}: {old} -> {new}")
                    })
                    .chain(rule_changes.iter().map(|change| format!("  rule {change}")))
                    .collect();
                if changed.is_empty() && waiting.is_empty() {
                    message.push_str(": nothing changed");
                } else {
                    if !changed.is_empty() {
                        message.push_str("; changed:\n");
                        message.push_str(&changed.join("\n"));
                    }
                    if !waiting.is_empty() {
                        message.push_str(&format!(
                            "\n  waiting for a controller restart (running value kept): {}",
                            waiting.join(", ")
                        ));
                    }
                }
                for warning in &loaded.warnings {
                    message.push_str(&format!("\n  warning: {warning}"));
                }
                ControlResponse::ok(message)
            }
            Err(failure) => {
                for error in &failure.errors {
                    self.line(Component::Controller, format!("Reload error: {error}"));
                }
                self.line(
                    Component::Controller,
                    "Reload failed; the previous configuration stays in force",
                );
                ControlResponse::config_errors(
                    format!("{failure}; the previous configuration stays in force"),
                    failure.errors.iter().map(ToString::to_string).collect(),
                )
            }
        }
    }

    /// What was opened or bound at start (files, sockets, listeners, the sampling
    /// timer) keeps its running value on reload; the log says which changes wait for a
    /// controller restart, so the server is never told a pipe path nobody listens on.
    pub(super) fn keep_start_only_settings(
        &mut self,
        mut new: Config,
    ) -> (Config, Vec<&'static str>) {
        // The key table says which keys are start-only (`Reload::Restart` rows).
        let changed = config::keep_start_only(&self.cfg, &mut new);
        if !changed.is_empty() {
            self.line(
                Component::Controller,
                format!(
                    "Reload: {} cannot change while the controller runs; the running value stays until the controller is restarted",
                    changed.join(", ")
                ),
            );
        }
        (new, changed)
    }

    pub(super) fn start_mailer(&mut self, settings: crate::mail::MailSettings) {
        self.mailer = Some(crate::mail::Mailer::start(
            settings,
            crate::mail::spool_dir(&self.cfg.data_directory),
            self.log_sender(),
        ));
    }

    pub(super) fn start_webhook(&mut self, settings: crate::webhook::WebhookSettings) {
        self.line(
            Component::Controller,
            format!("Alerts are also posted to {}", settings.url),
        );
        self.webhook = Some(crate::webhook::Webhook::start(
            settings,
            crate::webhook::spool_dir(&self.cfg.data_directory),
            self.log_sender(),
        ));
    }

    /// Webhook settings take effect on reload, like mail's.
    pub(super) fn reload_webhook(&mut self, cfg: &Config) {
        match (
            crate::webhook::WebhookSettings::from_config(cfg),
            &self.webhook,
        ) {
            (Some(settings), Some(webhook)) => webhook.reconfigure(settings),
            (Some(settings), None) => self.start_webhook(settings),
            (None, Some(_)) => {
                if let Some(webhook) = self.webhook.take() {
                    tokio::task::spawn_local(webhook.close(MAILER_CLOSE_LIMIT));
                    self.line(
                        Component::Controller,
                        "Alert webhook disabled; undelivered alerts stay spooled",
                    );
                }
            }
            (None, None) => {}
        }
    }

    /// Mail settings take effect on reload: the mailer keeps what it holds and spools.
    pub(super) fn reload_mail(&mut self, cfg: &Config) {
        match crate::mail::MailSettings::from_config(cfg) {
            Ok(Some(settings)) => match &self.mailer {
                Some(mailer) => mailer.reconfigure(settings),
                None => {
                    self.start_mailer(settings);
                    self.line(Component::Controller, "Mail enabled");
                }
            },
            Ok(None) => {
                if let Some(mailer) = self.mailer.take() {
                    // Held repeats go to the spool, as on stop; the loop does not wait.
                    tokio::task::spawn_local(mailer.close(MAILER_CLOSE_LIMIT));
                    self.line(
                        Component::Controller,
                        "Mail disabled (QOS_MAIL_TO or QOS_MAIL_SMTP_SERVER is not set); undelivered mail stays spooled",
                    );
                }
            }
            Err(e) => self.line(
                Component::Controller,
                format!("Mail settings not changed: {e}"),
            ),
        }
    }
}
