#!/usr/bin/env bash
# Built-in diagnostics on a server tree of 50 and of 200 processes: wall time, /proc
# snapshots and thread stacks taken (examples/diag_bench.rs runs the collector exactly as
# the runtime does, on a real tree of one sh, 3 busy loops and sleeps).
#
#   bench/diagnostics-bench.sh                       # current checkout -> JSON on stdout
#   BEFORE=8b50fd9 bench/diagnostics-bench.sh        # also the same bench on an older
#                                                    # commit (its own temporary worktree)
#   SIZES="50 200" PROFILE=release|dev DIAG_JSON=out.json bench/diagnostics-bench.sh
#
# Installs gdb with apt-get when missing (the stacks need it). Prints (and writes to
# $DIAG_JSON when set) {"after": [...], "before": [...], "before_commit": "..."}; each
# row: processes, wall_ms, ok, proc_snapshots, stacks, file_bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"50 200"}
PROFILE=${PROFILE:-release}
if ! command -v gdb >/dev/null && ! command -v eu-stack >/dev/null; then
    echo "[diagnostics-bench] installing gdb" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gdb >/dev/null
fi
target=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
profile_flag=(--release); profile_dir=release
if [ "$PROFILE" = dev ]; then profile_flag=(); profile_dir=debug; fi

run_bench() { # <checkout> -> JSON lines
    (cd "$1" && CARGO_TARGET_DIR=$target cargo build --quiet "${profile_flag[@]}" --example diag_bench)
    # shellcheck disable=SC2086
    "$target/$profile_dir/examples/diag_bench" $SIZES
}

after=$(run_bench .)
before=""
if [ -n "${BEFORE:-}" ]; then
    wt=$(mktemp -d)
    git worktree add --quiet --detach "$wt" "$BEFORE"
    # The example only uses the collector's public API, which the older commit has too.
    cp examples/diag_bench.rs "$wt/examples/diag_bench.rs"
    before=$(run_bench "$wt" || true)
    git worktree remove --force "$wt"
fi
json=$(AFTER="$after" BEFORE_ROWS="$before" BEFORE_COMMIT="${BEFORE:-}" python3 -c '
import json, os
rows = lambda text: [json.loads(l) for l in text.splitlines() if l.strip().startswith("{")]
out = {"after": rows(os.environ["AFTER"]), "profile": os.environ.get("PROFILE", "release")}
if os.environ["BEFORE_ROWS"]:
    out["before"] = rows(os.environ["BEFORE_ROWS"])
    out["before_commit"] = os.environ["BEFORE_COMMIT"]
out["load1_at_end"] = os.getloadavg()[0]
print(json.dumps(out, indent=1))
')
echo "$json"
if [ -n "${DIAG_JSON:-}" ]; then echo "$json" > "$DIAG_JSON"; fi
