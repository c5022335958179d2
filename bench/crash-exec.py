#!/usr/bin/env python3
"""Row 1 alone: crash -> new server exec under qoscntrlr, for one or more builds.

    bench/crash-exec.py --stamp-exec bench/out/stamp-exec --reps 30 \
        [--bin-dir DIR ...]

The same scenario as bench/bench.py's row 1 (`crash_once`: SIGKILL the demo server, ms
until bench/stamp-exec stamps the exec of its successor), qoscntrlr only, so a change to
the crash path can be measured in a minute instead of the whole run-all.sh. Several
`--bin-dir`s (each holding `qoscntrlr` and `qos-demo-server`) run side by side with the
repetitions alternating between them, so a before/after comparison sees the same machine
load. Prints one summary line per build and the machine's load average.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the scenario and the process bookkeeping live there)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stamp-exec", required=True)
    ap.add_argument("--bin-dir", action="append",
                    help="directory of qoscntrlr and qos-demo-server (repeatable) "
                         "[target/release]")
    ap.add_argument("--ini", action="append", default=[],
                    help="an extra dcontroller.ini line for every controller (repeatable)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out", default=os.path.join(bench.ROOT, "bench", "out", "crash-exec"))
    args = ap.parse_args()
    dirs = [os.path.abspath(d) for d in (args.bin_dir or [bench.RELEASE])]
    bench.WORK_DIR = args.out = os.path.abspath(args.out)
    bench.shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    load_before = open("/proc/loadavg").read().split()[0]
    tools = []
    try:
        for i, d in enumerate(dirs):
            bench.QOSCNTRLR = os.path.join(d, "qoscntrlr")
            bench.DEMO = os.path.join(d, "qos-demo-server")
            t = bench.Qoscntrlr(os.path.join(args.out, f"q{i}"), args.stamp_exec, 0.2, True)
            t.start(extra=args.ini)
            t.bin_dir = d
            tools.append(t)
        for t in tools:
            t.wait_serving()
        results = {t.bin_dir: [] for t in tools}
        for rep in range(args.reps):
            for t in (tools if rep % 2 == 0 else tools[::-1]):
                r = bench.crash_once(t)
                results[t.bin_dir].append(r["exec_ms"])
        load_after = open("/proc/loadavg").read().split()[0]
        for d, values in results.items():
            values.sort()
            p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
            print(f"{d}: crash -> exec median {statistics.median(values):.1f} ms "
                  f"(min {values[0]:.1f}, p95 {p95:.1f}, max {values[-1]:.1f}; "
                  f"{len(values)} reps)")
        print(f"load average (1 min): {load_before} at the start, {load_after} at the end")
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
