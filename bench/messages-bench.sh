#!/bin/sh
# Benchmarks of issue 4's pieces (message parsing + pipe throughput with a 200 ms probe
# timer, 100k long-running apps, one sample of a 50-process tree). Prints numbers; the
# thresholds are in BENCHMARKS.md. Release code, built without LTO to keep the build short.
set -eu
cd "$(dirname "$0")/.."
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
cargo test --release --quiet --test pipe_bench -- --ignored --nocapture 2>&1 | grep '^pipe:'
cargo test --release --quiet --test sampler_tree -- --ignored --nocapture 2>&1 | grep '^sampler:'
cargo test --release --quiet -p qoscntrlr-core --lib apps::tests::bench -- --ignored --nocapture 2>&1 | grep '^apps:'
