#!/bin/sh
# Generate the man pages qoscntrlr(1), dcontroller.ini(5) and the shell completions
# from the code of a built binary into packaging/generated/, where
# [package.metadata.deb] and qoscntrlr.spec take them from. `cargo test` (the test
# generated_assets) refreshes the same files; this script is for building without it.
#
# Environment: QOSCNTRLR_BIN (default: $CARGO_TARGET_DIR or target, /release/qoscntrlr),
#              ASSETS_DIR (default: packaging/generated, relative to the crate root).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin=${QOSCNTRLR_BIN:-$target_dir/release/qoscntrlr}
out=${ASSETS_DIR:-$root/packaging/generated}

if [ ! -x "$bin" ]; then
    echo "build-assets.sh: $bin not found; run 'cargo build --release' first" >&2
    exit 1
fi

mkdir -p "$out"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

"$bin" generate man > "$tmp/qoscntrlr.1"
"$bin" generate ini-man > "$tmp/dcontroller.ini.5"
"$bin" generate bash > "$tmp/qoscntrlr.bash"
"$bin" generate zsh > "$tmp/_qoscntrlr"
"$bin" generate fish > "$tmp/qoscntrlr.fish"
# -n: no name or time stamp in the header, so the same input gives the same bytes.
gzip -9n "$tmp/qoscntrlr.1" "$tmp/dcontroller.ini.5"

for f in qoscntrlr.1.gz dcontroller.ini.5.gz qoscntrlr.bash _qoscntrlr qoscntrlr.fish; do
    if [ ! -s "$tmp/$f" ]; then
        echo "build-assets.sh: generated $f is empty" >&2
        exit 1
    fi
    mv -f "$tmp/$f" "$out/$f"
done
echo "build-assets.sh: man pages and completions in $out"
