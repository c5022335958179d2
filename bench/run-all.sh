#!/usr/bin/env bash
# Rerun every benchmark of qoscntrlr against monit and supervisord and rewrite
# BENCHMARKS.md and docs/bench-crash-restart.svg from the numbers measured.
#
#   bench/run-all.sh            # from anywhere in the checkout, as root (apt-get, netns)
#
# Installs monit, supervisor, keepalived and iproute2 from Debian's packages when
# missing, builds the release binaries, examples/gen_logs and the small C helpers
# (bench/stamp-exec.c, bench/subreaper.c, bench/rusage.c), then runs, each stage saving
# its raw output
# in bench/out/:
#   1. the resource-sample micro-benchmark (benches/sampler.rs)      -> sampler.json
#   2. the 100k long-running-apps benchmark (the core crate's apps, ignored test) -> apps.txt
#   3. bench/ha-latency.sh: decision -> trigger -> 503 -> VIP moved, with keepalived in
#      network namespaces of its own                                 -> ha-latency.json
#   3b. bench/reexec-gap.py: supervision gap of `qoscntrlr reexec`    -> reexec.json
#   3c. bench/real_servers.py: crash -> serving again for nginx and PostgreSQL 15 under
#      the three tools                                               -> real-servers.json
#   3d. bench/diagnostics-bench.sh: built-in diagnostics of a 50- and a
#       200-process tree                                              -> diagnostics.json
#   4. bench/bench.py: crash / hang / idle side by side, trigger latency, message flood,
#      `logs summary` over ~1 GB of generated logs; folds 1-3d in    -> results.json
#   4b. cargo bench --bench cgroup: containment sample cost and fork-storm kill, last
#      (its fork storm loads the machine)                             -> cgroup.json
#   5. bench/report.py: BENCHMARKS.md + SVG from results.json, then
#      bench/cgroup_report.py splices the containment section in
# Defaults are sized so the whole run fits in about 10 minutes on 2 cores with warm builds
# (each stage's time is in bench/out/stages.txt and the report). Knobs for a quick try:
#   CRASH_REPS=5 HANG_REPS=2 TRIGGER_REPS=2 IDLE_SECONDS=10 HA_RUNS=2 REVIEW_MB=64 REEXEC_REPS=5 \
#       REAL_REPS=2 bench/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
OUT=bench/out
mkdir -p "$OUT" docs
# Each stage's duration (for the report and for keeping the whole run within 10 minutes
# on 2 cores), and the machine's 1-minute load average at every stage boundary (the
# machine is shared: the report states how busy it was).
: > "$OUT/stages.txt"
loads="$(cut -d' ' -f1 /proc/loadavg)"
stage_name="" stage_at=$started
stage() {
    local now
    now=$(date +%s)
    if [ -n "$stage_name" ]; then
        echo "$stage_name $((now - stage_at))" >> "$OUT/stages.txt"
    fi
    loads="$loads $(cut -d' ' -f1 /proc/loadavg)"
    stage_name=$1 stage_at=$now
    [ -z "$1" ] || echo "[run-all] $(date -u +%H:%M:%S) $1"
}

missing=()
command -v monit >/dev/null || missing+=(monit)
command -v supervisord >/dev/null || missing+=(supervisor)
command -v keepalived >/dev/null || missing+=(keepalived)
command -v ip >/dev/null || missing+=(iproute2)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
if ((${#missing[@]})); then
    echo "[run-all] installing ${missing[*]}"
    apt-get update -qq
    # The packaged services are not what is measured: the bench starts its own
    # instances with its own configuration files, so none may start here.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v gcc >/dev/null || { echo "[run-all] gcc is required for bench/*.c" >&2; exit 1; }

stage "build"
cargo build --release --quiet --bins --example gen_logs
# CARGO_TARGET_DIR may put them elsewhere than target/: ask cargo.
target=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN_DIR=$target/release
gcc -O2 -Wall -o "$OUT/stamp-exec" bench/stamp-exec.c
gcc -O2 -Wall -o "$OUT/subreaper" bench/subreaper.c
gcc -O2 -Wall -o "$OUT/rusage" bench/rusage.c

stage "sampler"
cargo bench --quiet --bench sampler > "$OUT/sampler.json"

stage "apps"
cargo test --release --quiet -p qoscntrlr-core --lib apps::tests::bench -- --ignored --nocapture \
    > "$OUT/apps.txt" 2>&1 || { cat "$OUT/apps.txt" >&2; exit 1; }

stage "keepalived"
rm -f "$OUT/ha-latency.json"
if ! BIN_DIR=$BIN_DIR HA_JSON=$OUT/ha-latency.json bench/ha-latency.sh "${HA_RUNS:-6}" \
        > "$OUT/ha-latency.txt" 2>&1; then
    # Reported as not measured (with the reason in ha-latency.txt); the other stages go on.
    echo "[run-all] ha-latency.sh failed; see $OUT/ha-latency.txt" >&2
    rm -f "$OUT/ha-latency.json"
fi

stage "reexec"
rm -f "$OUT/reexec.json"
if ! python3 bench/reexec-gap.py --bin-dir "$BIN_DIR" --reps "${REEXEC_REPS:-30}" \
        --json "$OUT/reexec.json" > "$OUT/reexec.txt" 2>&1; then
    echo "[run-all] reexec-gap.py failed; see $OUT/reexec.txt" >&2
    rm -f "$OUT/reexec.json"
fi

stage "real-servers"
rm -f "$OUT/real-servers.json"
if ! python3 bench/real_servers.py --bin-dir "$BIN_DIR" --subreaper "$OUT/subreaper" \
        --out "$OUT/real-work" --results "$OUT/real-servers.json" --reps "${REAL_REPS:-6}" \
        > "$OUT/real-servers.txt" 2>&1; then
    # Reported as not measured (the reason is in real-servers.txt); the rest goes on.
    echo "[run-all] real_servers.py failed; see $OUT/real-servers.txt" >&2
    rm -f "$OUT/real-servers.json"
fi

stage "diagnostics"
rm -f "$OUT/diagnostics.json"
if ! DIAG_JSON=$OUT/diagnostics.json bench/diagnostics-bench.sh > "$OUT/diagnostics.txt" 2>&1; then
    echo "[run-all] diagnostics-bench.sh failed; see $OUT/diagnostics.txt" >&2
    rm -f "$OUT/diagnostics.json"
fi

stage "faults"
rm -f "$OUT/faults.json"
# A failing case is reported in the row (its name is in faults.json); the run goes on.
FAULTS_JSON=$OUT/faults.json bench/faults.sh > "$OUT/faults.txt" 2>&1 || true

stage "side-by-side"
python3 bench/bench.py \
    --bin-dir "$BIN_DIR" --gen-logs "$BIN_DIR/examples/gen_logs" --rusage "$OUT/rusage" \
    --stamp-exec "$OUT/stamp-exec" --subreaper "$OUT/subreaper" \
    --out "$OUT/work" --results "$OUT/results.json" \
    --sampler-json "$OUT/sampler.json" --apps-txt "$OUT/apps.txt" \
    --ha-json "$OUT/ha-latency.json" --reexec-json "$OUT/reexec.json" \
    --real-json "$OUT/real-servers.json" \
    --diagnostics-json "$OUT/diagnostics.json" \
    --faults-json "$OUT/faults.json" \
    --crash-reps "${CRASH_REPS:-30}" --hang-reps "${HANG_REPS:-8}" \
    --trigger-reps "${TRIGGER_REPS:-10}" --idle-seconds "${IDLE_SECONDS:-60}" \
    --review-mb "${REVIEW_MB:-512}"

# Containment (cgroup v2): sample cost and fork-storm kill, last of the measurements:
# its 1,000-process fork storm drives the load average up for a minute (to ~90 here),
# which would distort any row measured after it. Timed like every other stage, so the
# run's total includes it; its section is spliced into the new file after the report.
stage "cgroup"
# The load figures the report gives are those the other rows were measured under (the
# storm's own spike is the cgroup section's business).
loads_rows=$loads
cgroup_ok=0
if cargo bench --quiet --bench cgroup -- "${CGROUP_RUNS:-1}" > "$OUT/cgroup.json" 2> "$OUT/cgroup.txt"; then
    cgroup_ok=1
else
    echo "[run-all] cgroup bench failed; see $OUT/cgroup.txt (its section is kept)" >&2
fi

stage ""
python3 bench/report.py "$OUT/results.json" \
    --markdown BENCHMARKS.md --svg docs/bench-crash-restart.svg \
    --run-seconds $(($(date +%s) - started)) --load "$loads_rows" --stages "$OUT/stages.txt"
if [ "$cgroup_ok" = 1 ]; then
    python3 bench/cgroup_report.py "$OUT/cgroup.json" --markdown BENCHMARKS.md
fi
echo "[run-all] wrote BENCHMARKS.md and docs/bench-crash-restart.svg"
