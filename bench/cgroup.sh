#!/usr/bin/env bash
# cgroup v2 containment benchmark (rerunnable): sample cost for 50 and 1,000 processes
# (cgroup against /proc), time to kill a 1,000-process fork storm and its survivors
# (cgroup.kill against the /proc kill), and the OOM lead time where it can be measured.
# Writes bench/out/cgroup.json and refreshes the containment section of BENCHMARKS.md.
# Needs root and a writable cgroup2 mount. Usage: bench/cgroup.sh [STORM_RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out
mkdir -p "$OUT"
runs="${1:-3}"
cargo bench --bench cgroup -- "$runs" > "$OUT/cgroup.json"
python3 bench/cgroup_report.py "$OUT/cgroup.json" --markdown BENCHMARKS.md
echo "[cgroup] wrote $OUT/cgroup.json and the containment section of BENCHMARKS.md"
