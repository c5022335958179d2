#!/usr/bin/env bash
# Benchmark: `qoscntrlr logs summary` over ~1 GB of generated controller logs.
# Target (issue 6): >= 300 MB/s on one core, peak RSS < 30 MB.
# Usage: bench/logs-summary.sh [SIZE_MB]   (default 1024; keeps the logs in $BENCH_DIR if set)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1024}
dir=${BENCH_DIR:-$(mktemp -d)}
cleanup() { [ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"; }
trap cleanup EXIT

cargo build --release --quiet --bin qoscntrlr --example gen_logs
if ! ls "$dir"/qoscntrlr*.log >/dev/null 2>&1; then
    ./target/release/examples/gen_logs "$dir" --bytes $((size_mb * 1024 * 1024))
fi
bytes=$(cat "$dir"/qoscntrlr*.log | wc -c)
# Warm the page cache so the number measures parsing, not the disk.
cat "$dir"/qoscntrlr*.log > /dev/null

if [ -x /usr/bin/time ]; then
    /usr/bin/time -v ./target/release/qoscntrlr logs summary --json "$dir" \
        > "$dir.summary.json" 2> "$dir.time.txt" || { cat "$dir.time.txt"; exit 1; }
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$dir.time.txt")
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir.time.txt")
else
    start=$(date +%s.%N)
    ./target/release/qoscntrlr logs summary --json "$dir" > "$dir.summary.json"
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    rss_kb=unknown
fi
mb=$(echo "scale=1; $bytes / 1048576" | bc)
rate=$(echo "scale=1; $mb / $secs" | bc)
echo "logs summary: ${mb} MB in ${secs} s = ${rate} MB/s, peak RSS ${rss_kb} kB"
grep -E '"(successes|crashes|probe_timeouts|kills)"' "$dir.summary.json" | tr -s ' ' | head -4
rm -f "$dir.summary.json" "$dir.time.txt"
