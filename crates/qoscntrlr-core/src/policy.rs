//! The part of the configuration the state machine decides with, as plain values, so
//! tests can build one without a file and a reload can swap it in one assignment. The
//! configuration reader fills it (`Config::policy`); the core never sees the reader.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ha::FailbackMode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub server_name: String,
    pub qos_enable: bool,
    /// The controller probes (or receives probe results by message).
    pub probing: bool,
    /// `QOS_PROBE=message`: results come from the server, no attempts are scheduled.
    pub probe_by_message: bool,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub apps_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub restart_timeout: Duration,
    pub restart_limit_enable: bool,
    pub restart_limit_maximum: u32,
    pub restart_limit_period: Duration,
    pub auto_fault_clear: Duration,
    pub nokill: bool,
    pub nsd_timeout: Duration,
    pub shutdown_nsd: Duration,
    pub failover_trigger_disabled: bool,
    /// Every resource rule in force (the shorthand limits' kill rules included).
    #[serde(default)]
    pub rules: Vec<crate::rules::Rule>,
    /// Time limit of one probe attempt (the shell applies it; `status` shows it).
    pub probe_attempt_timeout: Duration,
    /// Wait before an automatic restart (not before an operator start or restart).
    pub restart_delay: Duration,
    /// READY and probing well this long empties the restart-limit window; zero = off.
    pub online_trust_time: Duration,
    /// READY and probing well this long before the failover outputs come back.
    pub failback_hold: Duration,
    pub failback: FailbackMode,
}

impl Default for Policy {
    /// The defaults of the configuration keys with an HTTP probe (`tests/config_reader.rs`
    /// checks them against the reader's own defaults).
    fn default() -> Policy {
        Policy {
            server_name: "server".into(),
            qos_enable: true,
            probing: true,
            probe_by_message: false,
            probe_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(300),
            apps_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(300),
            restart_timeout: Duration::from_secs(300),
            restart_limit_enable: true,
            restart_limit_maximum: 3,
            restart_limit_period: Duration::from_secs(1800),
            auto_fault_clear: Duration::ZERO,
            nokill: false,
            nsd_timeout: Duration::from_secs(180),
            shutdown_nsd: Duration::ZERO,
            failover_trigger_disabled: false,
            rules: Vec::new(),
            probe_attempt_timeout: Duration::from_secs(60),
            restart_delay: Duration::ZERO,
            online_trust_time: Duration::ZERO,
            failback_hold: Duration::ZERO,
            failback: FailbackMode::Auto,
        }
    }
}
