//! The exit codes of every command, operators' and scripts' contract: the constants
//! the commands return and the one table documenting them ([`EXIT_CODES`]), which the
//! man page's EXIT STATUS is generated from and README.md's table is checked against.
//! A module of its own so that `cli` (which dispatches) and `runtime` (which `run`
//! returns from) need not import each other.

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a refused command or a generic failure; `status`: degraded or paused.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line is wrong (clap's usage error).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `status`: the server is down (STOPPED or FAULTED).
pub const EXIT_STATUS_DOWN: u8 = 3;
/// Exit code: the controller is not reachable (sysexits EX_UNAVAILABLE).
pub const EXIT_UNREACHABLE: u8 = 69;
/// Exit code: internal error of the controller (sysexits EX_SOFTWARE).
pub const EXIT_SOFTWARE: u8 = 70;
/// Exit code: another controller holds the data directory (sysexits EX_TEMPFAIL).
pub const EXIT_LOCKED: u8 = 75;
/// Exit code: configuration error (sysexits EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// One row of the exit code table.
#[derive(Debug, Clone, Copy)]
pub struct ExitCodeDoc {
    pub code: u8,
    pub meaning: &'static str,
}

/// The exit codes of every command, in one table: the man page's EXIT STATUS is
/// generated from it and a test keeps README.md's table equal to it.
pub const EXIT_CODES: &[ExitCodeDoc] = &[
    ExitCodeDoc {
        code: EXIT_OK,
        meaning: "success; `status`: the server is READY, in service (failover state IN_SERVICE) and not paused",
    },
    ExitCodeDoc {
        code: EXIT_FAILURE,
        meaning: "the controller refused the command or it failed, `--wait` gave up; \
                  `status`: the server is starting, stopping, being killed or restarted, paused, \
                  READY while the failover outputs are still down (FAILOVER_TRIGGERED, \
                  FAILBACK_HOLD), or the log cannot be written",
    },
    ExitCodeDoc {
        code: EXIT_USAGE,
        meaning: "usage error: unknown command or option, missing or malformed argument",
    },
    ExitCodeDoc {
        code: EXIT_STATUS_DOWN,
        meaning: "`status`: the server is down (STOPPED or FAULTED)",
    },
    ExitCodeDoc {
        code: EXIT_UNREACHABLE,
        meaning: "no controller answers on the control socket or message pipe \
                  (`status` still shows the last known state from the data directory)",
    },
    ExitCodeDoc {
        code: EXIT_SOFTWARE,
        meaning: "internal error of the controller (cannot start its runtime or signal handling)",
    },
    ExitCodeDoc {
        code: EXIT_LOCKED,
        meaning: "`run`: another controller holds the data directory",
    },
    ExitCodeDoc {
        code: EXIT_CONFIG,
        meaning: "configuration error (`run`, `check-config`, `reload`; client commands only \
                  when the socket or directory paths cannot be read)",
    },
];
