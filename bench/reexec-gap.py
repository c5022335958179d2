#!/usr/bin/env python3
"""Supervision gap of `qoscntrlr reexec`: how long the controller does not supervise
while it replaces its own image (last loop turn of the old image -> first loop turn of
the new one), over N re-executions of a real controller that supervises the demo server.

    bench/reexec-gap.py [--bin-dir target/release] [--reps 50] [--json OUT.json]

The controller measures the gap itself, on CLOCK_MONOTONIC (which runs on across
execve): the old image reads the clock in its last loop turn, right before it writes the
handoff and calls execve, and passes the reading in the handoff; the new image reads it
again just before its first loop turn and logs `Supervision resumed X ms after the
previous image's last loop turn`. The gap therefore covers the handoff, execve, the
dynamic loader, reading the configuration, restoring the state and re-adopting every
socket, the log and the server. The script also times each `qoscntrlr reexec` command
as the operator sees it (it includes running the new binary's check first, while the old
image keeps supervising), and checks after every round that the server kept its pid.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

GAP = re.compile(r"Supervision resumed ([0-9.]+) ms after the previous image's last loop turn")
READY = "Server is ready to process requests"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def out_lines(data):
    lines = []
    for name in sorted(os.listdir(data)):
        if name.startswith("qoscntrlr") and name.endswith(".out"):
            with open(os.path.join(data, name), errors="replace") as f:
                lines.extend(f.read().splitlines())
    return lines


def wait_for(data, pattern, count, limit=30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = [l for l in out_lines(data) if re.search(pattern, l)]
        if len(found) >= count:
            return found
        time.sleep(0.01)
    sys.exit(f"reexec-gap: no {count}th line matching {pattern!r} within {limit} s in {data}")


def server_pid(qos, ini):
    out = subprocess.run([qos, "status", "--json", "-c", ini], capture_output=True, text=True)
    return json.loads(out.stdout)["server"]["pid"]


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def summary(values):
    return {"n": len(values), "median": statistics.median(values), "min": min(values),
            "max": max(values), "p95": pct(values, 95)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default="target/release",
                    help="directory of qoscntrlr and qos-demo-server [target/release]")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    qos = os.path.abspath(os.path.join(args.bin_dir, "qoscntrlr"))
    demo = os.path.abspath(os.path.join(args.bin_dir, "qos-demo-server"))
    for program in (qos, demo):
        if not os.access(program, os.X_OK):
            sys.exit(f"reexec-gap: {program} is missing (cargo build --release --bins)")

    work = tempfile.mkdtemp(prefix="qos-reexec-bench-")
    port = free_port()
    ini = os.path.join(work, "dcontroller.ini")
    with open(ini, "w") as f:
        f.write(f"SERVER_NAME=bench\nDATA_DIRECTORY={work}\n"
                f"SERVER_COMMAND={demo} --listen 127.0.0.1:{port}\n"
                f"QOS_PROBE=http://127.0.0.1:{port}/health\n"
                "QOS_PROBE_INTERVAL=200ms\nQOS_PROBE_TIMEOUT=10s\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "QOSCNTRLR_CONFIG")}
    with open(os.path.join(work, "controller.stderr"), "w") as err:
        controller = subprocess.Popen([qos, "run", "-c", ini], stdout=err, stderr=err,
                                      stdin=subprocess.DEVNULL, env=env)
    try:
        wait_for(work, READY, 1)
        server = server_pid(qos, ini)
        commands = []
        for rep in range(args.reps):
            t0 = time.monotonic()
            done = subprocess.run([qos, "reexec", "-c", ini], capture_output=True, text=True,
                                  env=env)
            commands.append((time.monotonic() - t0) * 1000)
            if done.returncode != 0:
                sys.exit(f"reexec-gap: reexec #{rep} failed: {done.stdout}{done.stderr}")
            wait_for(work, GAP.pattern, rep + 1)
            if controller.poll() is not None:
                sys.exit("reexec-gap: the controller exited")
            if server_pid(qos, ini) != server:
                sys.exit(f"reexec-gap: the server changed after reexec #{rep}")
        gaps = [float(GAP.search(l).group(1)) for l in out_lines(work) if GAP.search(l)]
        # Probing goes on afterwards.
        probes = len([l for l in out_lines(work) if "QoS Probe: SUCCESS" in l])
        wait_for(work, "QoS Probe: SUCCESS", probes + 1)
    finally:
        controller.send_signal(signal.SIGTERM)
        try:
            controller.wait(timeout=30)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait()
    result = {
        "reps": args.reps,
        "gap_ms": summary(gaps),
        "command_ms": summary(commands),
        "gaps": gaps,
        "binary_bytes": os.path.getsize(qos),
        "load1_at_end": os.getloadavg()[0],
    }
    shutil.rmtree(work, ignore_errors=True)
    g, c = result["gap_ms"], result["command_ms"]
    print(f"supervision gap over {g['n']} reexecs: median {g['median']:.1f} ms "
          f"(min {g['min']:.1f}, max {g['max']:.1f}, p95 {g['p95']:.1f}); "
          f"`qoscntrlr reexec` as the operator sees it: median {c['median']:.0f} ms "
          f"(p95 {c['p95']:.0f}); load average {result['load1_at_end']:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
