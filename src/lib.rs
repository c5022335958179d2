//! qoscntrlr — a QoS watchdog controller for Linux application servers.
//!
//! # Layout
//!
//! The crate is a *functional core* wrapped in an *imperative shell*.
//!
//! * [`core`] — the pure controller state machine: `handle(now, Event) -> Vec<Action>`
//!   and `next_deadline()`. No clock reads, syscalls or tokio inside.
//! * [`runtime`] — the shell: one `tokio::select!` loop on a current-thread runtime that
//!   turns the world into [`core::Event`]s and executes [`core::Action`]s.
//! * One module per external effect: [`process`] (spawn, signals, whole-tree kill,
//!   reaping), [`probe`] (http/tcp/exec probes), [`pipe`] (the QOSPipeWatcher socket),
//!   [`control`] (operator socket), [`unixsock`] (binding and connecting both Unix
//!   sockets), [`sampler`] (resource samples from `/proc`),
//!   [`diagnostics`] (nsd), [`qoslog`] (the `qoscntrlr*.out` files), [`mail`],
//!   [`failover`] (trigger file, readiness/agent listeners, hooks), [`sdnotify`],
//!   [`events`] (JSON lines), [`metrics`] (Prometheus text), [`lock`] (one controller
//!   per data directory, state file), [`safefs`] (opening data-directory files without
//!   following planted links), [`atomic`] (the one atomic file replacement).
//! * [`webhook`] (alerts POSTed as JSON), [`spool`] (the alert spool and retry backoff of mail and
//!   webhook), [`usage`] (`qoscntrlr-usage.jsonl`), [`host`]
//!   (host-wide and filesystem samples).
//! * Pure helpers: [`rules`] (resource rules and their windows), [`config`] (the
//!   `dcontroller.ini` reader), [`message`] (the OpMsg
//!   parser), [`timefmt`] (log and `TimeDate=` formats), [`status`] (status snapshot and
//!   its rendering), [`review`] (log review: summary, timeline, HTML report) and
//!   [`bundle`] (support bundle).
//! * [`cli`] — the clap command line; `src/main.rs` only calls [`cli::main`];
//!   [`exitcode`] — the exit codes and their documented table.

pub mod atomic;
pub mod bundle;
pub mod cgroup;
pub mod checkconfig;
pub mod cli;
pub mod clone_into;
pub mod config;
pub mod control;
/// The pure controller, its own crate (`crates/qoscntrlr-core`) so the compiler keeps it
/// free of I/O; re-exported so `crate::core::…` names it.
pub use qoscntrlr_core as core;
pub mod demo_server;
pub mod diagnostics;
pub mod events;
pub mod exitcode;
pub mod failover;
pub mod fdreserve;
pub mod fold;
pub mod follow;
pub mod footprint;
pub mod host;
pub mod httphead;
pub mod journal;
pub mod laststate;
pub mod lock;
pub mod mail;
pub mod manpage;
pub mod message;
pub mod metrics;
pub mod pipe;
pub mod probe;
pub mod process;
pub mod qoslog;
pub mod reexec;
pub mod review;
/// The rule engine lives in the core crate; `crate::rules::…` names it.
pub use qoscntrlr_core::rules;
pub mod runtime;
pub mod safefs;
pub mod sampler;
pub mod sdnotify;
pub mod spool;
pub mod status;
pub mod timefmt;
pub mod unixsock;
pub mod usage;
pub mod webhook;
