# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_qoscntrlr_global_optspecs
    string join \n c/config= color= h/help V/version
end

function __fish_qoscntrlr_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_qoscntrlr_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_qoscntrlr_using_subcommand
    set -l cmd (__fish_qoscntrlr_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -s c -l config -d 'Configuration file, before the subcommand (also accepted after it)' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -s V -l version -d 'Print version'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "run" -d 'Run the supervisor in the foreground (what the service runs)'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "check-config" -d 'Validate the configuration, check what `run` would trip over, print the effective values'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "status" -d 'Show the state of the controller, server, probe, applications and restarts'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "start" -d 'Start the server (when STOPPED)'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "quit" -d 'Stop the server gracefully (it stays down)'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "stop" -d 'Stop the server gracefully (it stays down)'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "restart" -d 'Stop the server gracefully and start it again'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "kill" -d 'Smart kill: trigger failover, collect diagnostics, kill the tree, restart'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "pause" -d 'Pause kills and restarts (probing continues and is logged)'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "resume" -d 'Resume after a pause'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "clear-fault" -d 'Leave FAULTED and start the server'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "failback" -d 'End a failback hold now: the failover outputs come back at once'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "diagnose" -d 'Collect diagnostics now, without killing; prints the file written'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "reload" -d 'Re-read the configuration file now; prints what changed or the errors'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "send" -d 'Send one server message (OpMsg line) to the controller\'s pipe'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "logs" -d 'Review controller logs: summary, timeline, or follow the live log'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "report" -d 'Write an incident report'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "support-bundle" -d 'Pack logs, redacted config, diagnostics and system facts into a .tar.gz'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "reexec" -d 'Replace the running controller with the binary now at its path (after an upgrade), keeping the server running and every timer'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "reexec-check" -d 'Run by `reexec` on the new binary: read the configuration and accept the state'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "generate" -d 'Print a man page or shell completions (for packaging)'
complete -c qoscntrlr -n "__fish_qoscntrlr_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand run" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand run" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand check-config" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand check-config" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand check-config" -l strict -d 'Treat warnings (unknown keys, ...) as errors'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand check-config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand status" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand status" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand status" -l json -d 'Machine-readable output'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand start" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand start" -l wait -d 'Return when the target state is reached (READY; STOPPED for stop), at most this long [default: QOS_SHUTDOWN_TIMEOUT + QOS_RESTART_TIMEOUT + 1 minute]' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand start" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand quit" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand quit" -l wait -d 'Return when the target state is reached (READY; STOPPED for stop), at most this long [default: QOS_SHUTDOWN_TIMEOUT + QOS_RESTART_TIMEOUT + 1 minute]' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand quit" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand quit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand stop" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand stop" -l wait -d 'Return when the target state is reached (READY; STOPPED for stop), at most this long [default: QOS_SHUTDOWN_TIMEOUT + QOS_RESTART_TIMEOUT + 1 minute]' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand stop" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand stop" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand restart" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand restart" -l wait -d 'Return when the target state is reached (READY; STOPPED for stop), at most this long [default: QOS_SHUTDOWN_TIMEOUT + QOS_RESTART_TIMEOUT + 1 minute]' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand restart" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand restart" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand kill" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand kill" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand kill" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand pause" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand pause" -l for -d 'Resume by itself after this long (e.g. 30m, 2h)' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand pause" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand resume" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand resume" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand clear-fault" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand clear-fault" -l wait -d 'Return when the target state is reached (READY; STOPPED for stop), at most this long [default: QOS_SHUTDOWN_TIMEOUT + QOS_RESTART_TIMEOUT + 1 minute]' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand clear-fault" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand clear-fault" -l no-start -d 'Clear the mark only; the server stays down (STOPPED) until `start`'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand clear-fault" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand failback" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand failback" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand failback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand diagnose" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand diagnose" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand diagnose" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reload" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reload" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand send" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand send" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and not __fish_seen_subcommand_from summary timeline follow help" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and not __fish_seen_subcommand_from summary timeline follow help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and not __fish_seen_subcommand_from summary timeline follow help" -f -a "summary" -d 'Counts, probe statistics and one entry per incident'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and not __fish_seen_subcommand_from summary timeline follow help" -f -a "timeline" -d 'Incidents and state changes, one line each'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and not __fish_seen_subcommand_from summary timeline follow help" -f -a "follow" -d 'The live controller log, like tail -f (follows the controller to each new file)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and not __fish_seen_subcommand_from summary timeline follow help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from summary" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from summary" -l since -d 'Only from this time on (YYYY-MM-DD[ HH:MM[:SS]] or YYYY/MM/DD HH:MM:SS)' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from summary" -l until -d 'Only up to this time' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from summary" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from summary" -l json -d 'Machine-readable output'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from summary" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from timeline" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from timeline" -l since -d 'Only from this time on (YYYY-MM-DD[ HH:MM[:SS]] or YYYY/MM/DD HH:MM:SS)' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from timeline" -l until -d 'Only up to this time' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from timeline" -l event -d 'Only this kind of event (crash, probe-timeout, app-timeout, exhausted, kill, restart, ...)' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from timeline" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from timeline" -l json -d 'Machine-readable output'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from timeline" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from follow" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from follow" -s n -l lines -d 'Start with this many lines of the current log' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from follow" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from follow" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from help" -f -a "summary" -d 'Counts, probe statistics and one entry per incident'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from help" -f -a "timeline" -d 'Incidents and state changes, one line each'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from help" -f -a "follow" -d 'The live controller log, like tail -f (follows the controller to each new file)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand logs; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand report" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand report" -l html -d 'Self-contained HTML output file' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand report" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand support-bundle" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand support-bundle" -s o -l output -d 'Output file [default: qoscntrlr-support-<host>-<time>.tar.gz]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand support-bundle" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand support-bundle" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reexec" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reexec" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reexec" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reexec-check" -s c -l config -d 'Configuration file [default: $QOSCNTRLR_CONFIG, else ./dcontroller.ini, else /etc/qoscntrlr/dcontroller.ini]' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reexec-check" -l state-version -d 'The state format version the running controller writes' -r
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reexec-check" -l state-file -d 'The running controller\'s state, to be read in full' -r -F
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reexec-check" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand reexec-check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand generate" -l color -d 'Colour the output: auto (a terminal, unless NO_COLOR is set), always or never' -r -f -a "auto\t'On a terminal, unless NO_COLOR is set'
always\t''
never\t''"
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand generate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "run" -d 'Run the supervisor in the foreground (what the service runs)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "check-config" -d 'Validate the configuration, check what `run` would trip over, print the effective values'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "status" -d 'Show the state of the controller, server, probe, applications and restarts'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "start" -d 'Start the server (when STOPPED)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "quit" -d 'Stop the server gracefully (it stays down)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "restart" -d 'Stop the server gracefully and start it again'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "kill" -d 'Smart kill: trigger failover, collect diagnostics, kill the tree, restart'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "pause" -d 'Pause kills and restarts (probing continues and is logged)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "resume" -d 'Resume after a pause'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "clear-fault" -d 'Leave FAULTED and start the server'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "failback" -d 'End a failback hold now: the failover outputs come back at once'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "diagnose" -d 'Collect diagnostics now, without killing; prints the file written'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "reload" -d 'Re-read the configuration file now; prints what changed or the errors'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "send" -d 'Send one server message (OpMsg line) to the controller\'s pipe'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "logs" -d 'Review controller logs: summary, timeline, or follow the live log'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "report" -d 'Write an incident report'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "support-bundle" -d 'Pack logs, redacted config, diagnostics and system facts into a .tar.gz'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "reexec" -d 'Replace the running controller with the binary now at its path (after an upgrade), keeping the server running and every timer'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "reexec-check" -d 'Run by `reexec` on the new binary: read the configuration and accept the state'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "generate" -d 'Print a man page or shell completions (for packaging)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and not __fish_seen_subcommand_from run check-config status start quit restart kill pause resume clear-fault failback diagnose reload send logs report support-bundle reexec reexec-check generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and __fish_seen_subcommand_from logs" -f -a "summary" -d 'Counts, probe statistics and one entry per incident'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and __fish_seen_subcommand_from logs" -f -a "timeline" -d 'Incidents and state changes, one line each'
complete -c qoscntrlr -n "__fish_qoscntrlr_using_subcommand help; and __fish_seen_subcommand_from logs" -f -a "follow" -d 'The live controller log, like tail -f (follows the controller to each new file)'
