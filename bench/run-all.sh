#!/usr/bin/env bash
# Rerun every benchmark of qoscntrlr against monit and supervisord and rewrite
# BENCHMARKS.md and docs/bench-crash-restart.svg from the numbers measured.
#
#   bench/run-all.sh            # from the repository root, as root (apt-get); ~8 min
#
# Installs monit and supervisor from Debian's packages when missing, builds the release
# binaries and the two small C helpers (bench/stamp-exec.c, bench/subreaper.c), runs
# the Rust micro-benchmark (benches/sampler.rs), then bench/bench.py (measurements,
# raw JSON in bench/out/) and bench/report.py (markdown + SVG). Knobs for a quick try:
#   CRASH_REPS=5 HANG_REPS=2 TRIGGER_REPS=2 IDLE_SECONDS=10 bench/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
mkdir -p "$OUT" docs

if ! command -v monit >/dev/null || ! command -v supervisord >/dev/null; then
    echo "[run-all] installing monit and supervisor"
    apt-get update -qq
    # policy-rc.d or not, the packaged services are not what is measured: the bench
    # starts its own instances with its own configuration files.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq monit supervisor >/dev/null
fi
command -v gcc >/dev/null || { echo "[run-all] gcc is required for bench/*.c" >&2; exit 1; }

echo "[run-all] building release binaries"
cargo build --release --quiet
gcc -O2 -Wall -o "$OUT/stamp-exec" bench/stamp-exec.c
gcc -O2 -Wall -o "$OUT/subreaper" bench/subreaper.c

echo "[run-all] micro-benchmark: resource sample of a 50-process tree"
cargo bench --quiet --bench sampler > "$OUT/sampler.json"

python3 bench/bench.py \
    --stamp-exec "$OUT/stamp-exec" --subreaper "$OUT/subreaper" \
    --out "$OUT/work" --results "$OUT/results.json" \
    --sampler-json "$OUT/sampler.json" \
    --crash-reps "${CRASH_REPS:-50}" --hang-reps "${HANG_REPS:-10}" \
    --trigger-reps "${TRIGGER_REPS:-10}" --idle-seconds "${IDLE_SECONDS:-60}"

python3 bench/report.py "$OUT/results.json" \
    --markdown BENCHMARKS.md --svg docs/bench-crash-restart.svg
echo "[run-all] wrote BENCHMARKS.md and docs/bench-crash-restart.svg"
