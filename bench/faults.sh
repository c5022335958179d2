#!/bin/sh
# False kills and abandoned servers across the fault suite.
#
# Runs the fault-injection suite (tests/fault_suite.rs: the controller itself;
# tests/fault_files.rs: files and the data directory) and counts its cases. Every case
# asserts that no healthy server was killed, that no server was left running
# unsupervised and that no log line was lost without the loss being reported, so a
# failed case is a false kill, an abandoned server or a silent loss; a skipped case
# (a root-only case on a machine without root) is counted apart.
#
# Usage: bench/faults.sh            (prints the summary; FAULTS_JSON=FILE also writes JSON)
set -u
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
started=$(date +%s)
# Two cases at a time on the 2 cores, as `cargo test` and CI run them: a case that
# falsely kills or abandons a server under that load is a finding, not noise.
cargo test --no-fail-fast --test fault_suite --test fault_files -- --test-threads=2 >"$out" 2>&1
status=$?
seconds=$(($(date +%s) - started))
# libtest's summary lines (a case's own stderr can break its "... ok" line).
passed=$(sed -n 's/^test result: .* \([0-9]*\) passed;.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
failed=$(sed -n 's/^test result: .* \([0-9]*\) failed;.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
skipped=$(grep -c '^SKIPPED ' "$out")
cases=$((passed + failed))
echo "fault suite: $cases cases, $failed with a false kill, an abandoned server or a silent loss, $skipped skipped (run in ${seconds} s, cargo test exit $status)"
grep '^test .* \.\.\. FAILED$' "$out" | sed 's/^/  /'
grep '^SKIPPED ' "$out" | sed 's/^/  /'
if [ -n "${FAULTS_JSON:-}" ]; then
    failures=$(grep '^test .* \.\.\. FAILED$' "$out" | sed 's/^test \(.*\) \.\.\. FAILED$/"\1"/' | paste -sd, -)
    printf '{"cases": %d, "failed": %d, "skipped": %d, "seconds": %d, "failures": [%s], "commit": "%s"}\n' \
        "$cases" "$failed" "$skipped" "$seconds" "$failures" "$(git rev-parse --short HEAD)" >"$FAULTS_JSON"
fi
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
