#!/usr/bin/env python3
"""Benchmarks of qoscntrlr against monit and supervisord (issue 8).

Owns the measurement: starts each supervisor on the same demo server (through
bench/stamp-exec, which stamps CLOCK_REALTIME at exec), runs the scenarios with the
tools alternating, writes raw results as JSON. `bench/report.py` turns that JSON into
BENCHMARKS.md and the SVG plot. Run through bench/run-all.sh, which builds what this
needs; see BENCHMARKS.md for what each row means.

Every process this starts is recorded and killed (by pid, never by name) on exit.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where cargo put the release binaries: --bin-dir (run-all.sh passes cargo's own target
# directory, which CARGO_TARGET_DIR may move), else target/release of this checkout.
RELEASE = os.path.join(ROOT, "target", "release")
QOSCNTRLR = os.path.join(RELEASE, "qoscntrlr")
DEMO = os.path.join(RELEASE, "qos-demo-server")
TRIGGER_NAME = "triggerImmediateServerFailover"
# monit holds back a process's port test for the start program's timeout (default
# 30 s) after it (re)starts it; the demo server listens within milliseconds, so 3 s is
# an honest setting an administrator would use for it.
START_TIMEOUT_S = 3
RNG = random.Random(8)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every pid this script started (supervisors) or caused (servers seen in stamp files);
# cleanup() SIGKILLs whatever of them is still alive.
OWNED_PIDS = set()
WORK_DIR = None
STARTED = []  # tools started, stopped (gracefully, then by force) by cleanup()
SUBREAPER = None  # path of the compiled bench/subreaper.c, from --subreaper


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- /proc


def proc_state(pid):
    """The process state letter, or None when the pid no longer exists."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3].decode()


def alive(pid):
    """Alive = exists and is neither a zombie nor dead (a zombie is already killed)."""
    return proc_state(pid) not in (None, "Z", "X")


def proc_stat_fields(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rfind(b")") + 2 :].split()


def cpu_seconds(pid):
    """CPU time of the process itself, in seconds: the time its threads have run on a CPU
    (the first field of /proc/pid/task/*/schedstat, in nanoseconds) where the kernel
    keeps it, else utime + stime (fields 14 and 15 of /proc/pid/stat, in 10 ms clock
    ticks: an idle minute of a few milliseconds' work reads 0 or 1 tick). The tools
    measured are single-threaded; threads that have ended would be missing from the sum."""
    if CPU_CLOCK == "schedstat":
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    fields = proc_stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# What cpu_seconds reads: "schedstat" (exact) or "ticks" (utime + stime).
CPU_CLOCK = "schedstat" if os.path.exists("/proc/self/schedstat") else "ticks"


def threads(pid):
    return int(proc_stat_fields(pid)[17])


def memory_kb(pid):
    """(RSS kB, PSS kB, anonymous kB) from smaps_rollup; RSS - anonymous is file pages
    (the executable's and libraries' code and data read from disk)."""
    rss = pss = anon = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Anonymous:"):
                anon = int(line.split()[1])
    return rss, pss, anon


def rss_by_mapping(pid):
    """Where the resident pages of `pid` are, in kB, from /proc/PID/smaps: `exe` (the
    executable's file pages), `libs` (shared libraries' file pages, e.g. libc, which every
    dynamically linked process maps too), `anon` (heap, stacks, written data), and the
    same three for PSS (`*_pss`)."""
    out = {"exe": 0, "libs": 0, "anon": 0, "exe_pss": 0, "libs_pss": 0, "anon_pss": 0}
    exe = os.path.realpath(f"/proc/{pid}/exe")
    kind = "anon"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and not head[0].endswith(":"):
                path = head[5] if len(head) > 5 else ""
                kind = ("exe" if path == exe else
                        "libs" if path.startswith("/") else "anon")
            elif head[0] == "Rss:":
                rss = int(head[1])
            elif head[0] == "Anonymous:":
                # Written (copy-on-write) pages of a file mapping are anonymous memory.
                anon = int(head[1])
                out["anon"] += anon
                if kind != "anon":
                    out[kind] += rss - anon
            elif head[0] == "Pss:":
                out[kind + "_pss"] += int(head[1])
    return out


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- controller logs

# qoscntrlr<YYYYMMDDHHmm>[-<n>].out|.log: the names src/qoslog.rs writes. The .out being
# written is renamed to .log when it passes QOS_LOG_MAX_SIZE and a new .out (a higher
# -<n> within the same minute, or a later minute) continues it.
LOG_NAME = re.compile(r"qoscntrlr(\d{12})(?:-([1-9]\d*))?\.(out|log)")


def controller_logs(data_dir):
    """The controller's log files in the order they were written: qoslog's LogFileName
    order (minute, then a closed .log before the .out, then the -<n> sequence)."""
    found = []
    for name in os.listdir(data_dir):
        m = LOG_NAME.fullmatch(name)
        if m:
            key = (m.group(1), m.group(3) == "out", int(m.group(2) or 0))
            found.append((key, os.path.join(data_dir, name)))
    return [path for _, path in sorted(found)]


class LogTail:
    """Everything the controller logs from now on, across rolls of its log.

    Follows the current .out by inode (a roll renames it to .log, and it may gain a
    different -<n>), reads it from the offset it had, then every file written after it
    in order. Only the controller writes these files, and a rolled file is never
    written again, so nothing is read twice or missed.
    """

    def __init__(self, data_dir):
        self.dir = data_dir
        outs = [p for p in controller_logs(data_dir) if p.endswith(".out")]
        if not outs:
            raise RuntimeError(f"no controller .out file in {data_dir}")
        st = os.stat(outs[-1])
        self.inode, self.offset = st.st_ino, st.st_size
        self.inodes = [st.st_ino]  # every file read from, in order

    def read(self):
        """The bytes logged since the previous call (or since the tail was made)."""
        for _ in range(20):
            try:
                return self._read()
            except FileNotFoundError:  # renamed between listing and opening: list again
                time.sleep(0.001)
        raise RuntimeError(f"cannot follow the controller log in {self.dir}")

    def _read(self):
        files = [(p, os.stat(p).st_ino) for p in controller_logs(self.dir)]
        start = next((i for i, (_, ino) in enumerate(files) if ino == self.inode), None)
        if start is None:
            raise RuntimeError(f"the controller log being followed vanished from {self.dir}")
        chunks, inode, offset = [], self.inode, self.offset
        for path, ino in files[start:]:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != ino:
                    raise FileNotFoundError(path)
                begin = self.offset if ino == self.inode else 0
                f.seek(begin)
                data = f.read()
            chunks.append(data)
            inode, offset = ino, begin + len(data)
        for _, ino in files[start + 1:]:
            if ino not in self.inodes:
                self.inodes.append(ino)
        self.inode, self.offset = inode, offset
        return b"".join(chunks)


# --------------------------------------------------------------------------- helpers


def http_status(port, path="/health", timeout=0.5):
    """Status code of GET path on 127.0.0.1:port, or None (refused, timeout, garbage)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = s.recv(64)
        m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def read_stamps(path):
    """[(pid, realtime_ns)] in exec order."""
    try:
        with open(path) as f:
            rows = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []
    out = [(int(p), int(t)) for p, t in rows]
    for pid, _ in out:
        OWNED_PIDS.add(pid)
    return out


def wait_until(predicate, timeout, step=0.001):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- tools


class Tool:
    """One supervisor under test, supervising the demo server on its own port."""

    name = "?"

    def __init__(self, workdir, stamp_exec, probe_interval_s, quick_probe):
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.stamps = os.path.join(self.dir, "stamps")
        self.stamp_exec = os.path.abspath(stamp_exec)
        self.probe_interval_s = probe_interval_s
        self.quick_probe = quick_probe
        self.proc = None

    def server_argv(self, messages=False):
        argv = [self.stamp_exec, self.stamps, DEMO, "--listen", f"127.0.0.1:{self.port}"]
        if not messages:
            argv.append("--no-messages")
        return argv

    def popen(self, argv):
        out = open(os.path.join(self.dir, "supervisor.console"), "ab")
        self.proc = subprocess.Popen(
            argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            start_new_session=True,
        )
        OWNED_PIDS.add(self.proc.pid)
        STARTED.append(self)

    def supervisor_pids(self):
        return [self.proc.pid]


    def server_pid(self):
        stamps = read_stamps(self.stamps)
        return stamps[-1][0] if stamps else None

    def serving(self):
        pid = self.server_pid()
        return pid is not None and alive(pid) and http_status(self.port) == 200

    def wait_serving(self, timeout=30):
        if not wait_until(self.serving, timeout, step=0.01):
            raise RuntimeError(f"{self.name}: the demo server is not serving on port {self.port}")

    def ready_for_next(self):
        """Whatever besides 'serving' must hold before the next repetition."""
        return True

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Servers a supervisor leaves behind (monit does not stop them on exit).
        for pid, _ in read_stamps(self.stamps):
            kill_ours(pid)


class Peer(Tool):
    """A peer supervisor, run under bench/subreaper (which plays init: see there)."""

    comm = "?"

    def popen_peer(self, argv):
        self.popen([SUBREAPER] + argv)

    def supervisor_pids(self):
        """The peer's own process(es): children of the subreaper named `comm`."""
        pids = []
        for pid in children_of(self.proc.pid):
            OWNED_PIDS.add(pid)
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == self.comm:
                        pids.append(pid)
            except FileNotFoundError:
                pass
        return pids


class Qoscntrlr(Tool):
    name = "qoscntrlr"

    def start(self, extra=None, probe_url=None, server_argv=None):
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        url = probe_url or f"http://127.0.0.1:{self.port}/health"
        timeout = "2s" if self.quick_probe else "10s"
        lines = [
            "SERVER_COMMAND=" + " ".join(server_argv or self.server_argv(messages=True)),
            f"DATA_DIRECTORY={self.data}",
            f"QOS_PROBE={url}",
            f"QOS_PROBE_INTERVAL={int(self.probe_interval_s * 1000)}ms",
            f"QOS_PROBE_TIMEOUT={timeout}",
            # 50 crashes in a few minutes: the cap would (rightly) stop restarting.
            # monit and supervisord have no such cap in the configurations used here.
            "QOS_RESTART_LIMIT_ENABLE=0",
        ] + (extra or [])
        self.ini = os.path.join(self.dir, "dcontroller.ini")
        with open(self.ini, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.popen([QOSCNTRLR, "run", "-c", self.ini])

    def trigger_path(self):
        return os.path.join(self.data, TRIGGER_NAME)

    def ready_for_next(self):
        return not os.path.exists(self.trigger_path())


class Monit(Peer):
    name = "monit"
    comm = "monit"

    def start(self):
        pidfile = os.path.join(self.dir, "server.pid")
        launch = os.path.join(self.dir, "launch.sh")
        with open(launch, "w") as f:
            # $! is the server's pid: stamp-exec execs it in place.
            f.write("#!/bin/sh\n" + " ".join(self.server_argv())
                    + f" </dev/null >/dev/null 2>&1 &\necho $! > {pidfile}\n")
        kill = os.path.join(self.dir, "kill.sh")
        with open(kill, "w") as f:
            # Same kill as qoscntrlr's smart kill: SIGKILL, no grace period.
            f.write(f"#!/bin/sh\nkill -KILL $(cat {pidfile})\n")
        rc = os.path.join(self.dir, "monitrc")
        check = ""
        if self.quick_probe:
            check = (f"  if failed port {self.port} protocol http request /health "
                     "timeout 1 seconds for 2 cycles then restart\n")
        else:
            check = (f"  if failed port {self.port} protocol http request /health "
                     "timeout 5 seconds then restart\n")
        with open(rc, "w") as f:
            f.write(
                f"set daemon {max(1, int(self.probe_interval_s))}\n"
                f"set logfile {self.dir}/monit.log\n"
                f"set pidfile {self.dir}/monit.pid\n"
                f"set idfile {self.dir}/monit.id\n"
                f"set statefile {self.dir}/monit.state\n"
                f"check process demo with pidfile {pidfile}\n"
                f"  start program = \"/bin/sh {launch}\" with timeout {START_TIMEOUT_S} seconds\n"
                f"  stop program = \"/bin/sh {kill}\"\n" + check
            )
        os.chmod(rc, 0o600)
        self.popen_peer(["monit", "-I", "-c", rc])


class Supervisord(Peer):
    name = "supervisord"
    comm = "supervisord"

    def start(self):
        conf = os.path.join(self.dir, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(
                "[supervisord]\nnodaemon=true\nuser=root\n"
                f"logfile={self.dir}/supervisord.log\npidfile={self.dir}/supervisord.pid\n"
                f"childlogdir={self.dir}\n\n"
                "[program:demo]\n"
                f"command={' '.join(self.server_argv())}\n"
                "autostart=true\nautorestart=true\nstartsecs=0\nstartretries=1000\n"
                "stopsignal=TERM\nstopwaitsecs=5\n"
                "stdout_logfile=NONE\nstderr_logfile=NONE\n"
            )
        self.popen_peer(["supervisord", "-n", "-c", conf])


# --------------------------------------------------------------------------- scenarios


def settle(tool, seconds):
    tool.wait_serving()
    if not wait_until(tool.ready_for_next, 30, step=0.01):
        raise RuntimeError(f"{tool.name}: not back to normal")
    time.sleep(seconds)


def crash_once(tool):
    """SIGKILL the server; ms from the kill to the new server's exec, and to serving."""
    # A random pause, so the kill falls at a uniformly random phase of monit's cycle.
    settle(tool, RNG.uniform(0.3, 1.3))
    before = read_stamps(tool.stamps)
    old = before[-1][0]
    t_kill = time.time_ns()
    os.kill(old, signal.SIGKILL)
    new = wait_until(lambda: len(read_stamps(tool.stamps)) > len(before), 30)
    if not new:
        raise RuntimeError(f"{tool.name}: no new server within 30 s of the kill")
    t_exec = read_stamps(tool.stamps)[len(before)][1]
    wait_until(lambda: http_status(tool.port, timeout=0.2) == 200, 30)
    t_serving = time.time_ns()
    return {"exec_ms": (t_exec - t_kill) / 1e6, "serving_ms": (t_serving - t_kill) / 1e6}


def hang_once(tool):
    """Hang the server (/hang); ms to old server killed, new exec, new serving."""
    # Past monit's start grace (see START_TIMEOUT_S): a server that has been up a while.
    settle(tool, START_TIMEOUT_S + RNG.uniform(0.2, 1.2))
    before = read_stamps(tool.stamps)
    old = before[-1][0]
    t0 = time.time_ns()
    if http_status(tool.port, "/hang", timeout=2) != 200:
        raise RuntimeError(f"{tool.name}: /hang was not accepted")
    t_killed = t_trigger = t_exec = None
    trigger = tool.trigger_path() if isinstance(tool, Qoscntrlr) else None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = time.time_ns()
        if t_trigger is None and trigger and os.path.exists(trigger):
            t_trigger = now
        if t_killed is None and not alive(old):
            t_killed = now
        stamps = read_stamps(tool.stamps)
        if len(stamps) > len(before):
            t_exec = stamps[len(before)][1]
            break
        time.sleep(0.001)
    if t_exec is None:
        raise RuntimeError(f"{tool.name}: hung server not replaced within 60 s")
    wait_until(lambda: http_status(tool.port, timeout=0.2) == 200, 30)
    t_serving = time.time_ns()
    ms = lambda t: None if t is None else (t - t0) / 1e6
    return {"killed_ms": ms(t_killed), "exec_ms": ms(t_exec), "serving_ms": ms(t_serving),
            "trigger_ms": ms(t_trigger)}


def idle_footprint(tools, seconds):
    """Per tool: max RSS/PSS (kB), threads, CPU seconds of the supervisor process(es)."""
    for t in tools:
        t.wait_serving()
    time.sleep(5)  # past start-up work
    start = {t.name: {p: cpu_seconds(p) for p in t.supervisor_pids()} for t in tools}
    peak = {t.name: {"rss_kb": 0, "pss_kb": 0, "anon_kb": 0, "threads": 0, "processes": 0}
            for t in tools}
    t_end = time.monotonic() + seconds
    while True:
        for t in tools:
            pids = t.supervisor_pids()
            rss = pss = anon = th = 0
            for p in pids:
                r, s, a = memory_kb(p)
                rss, pss, anon, th = rss + r, pss + s, anon + a, th + threads(p)
            cur = peak[t.name]
            if rss > cur["rss_kb"]:  # the breakdown of the peak sample
                cur.update(rss_kb=rss, anon_kb=anon)
            cur.update(pss_kb=max(cur["pss_kb"], pss), threads=max(cur["threads"], th),
                       processes=max(cur["processes"], len(pids)))
        if time.monotonic() >= t_end:
            break
        time.sleep(min(5, max(0.0, t_end - time.monotonic())))
    out = {}
    for t in tools:
        cpu = sum(cpu_seconds(p) - start[t.name][p] for p in t.supervisor_pids())
        out[t.name] = dict(peak[t.name], cpu_s=cpu, seconds=seconds,
                           restarts=len(read_stamps(t.stamps)) - 1)
        if t.name == "qoscntrlr":
            try:
                out[t.name]["by_mapping_kb"] = rss_by_mapping(t.proc.pid)
                names = []
                for tid in os.listdir(f"/proc/{t.proc.pid}/task"):
                    with open(f"/proc/{t.proc.pid}/task/{tid}/comm") as f:
                        names.append(f.read().strip())
                out[t.name]["thread_names"] = sorted(names)
            except OSError:
                pass
    return out


# --------------------------------------------------------------------------- qoscntrlr-only


class ProbeStub(socketserver.ThreadingTCPServer):
    """An HTTP /health target whose answers are timed here, and which can hang."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.lock = threading.Lock()
        self.hung = False
        self.release = threading.Event()
        self.answered_ns = []  # realtime of each answer sent

    def hang(self):
        with self.lock:
            self.hung = True
            self.release.clear()
            return self.answered_ns[-1]

    def unhang(self):
        with self.lock:
            self.hung = False
            self.release.set()


class StubHandler(socketserver.BaseRequestHandler):
    def handle(self):
        stub = self.server
        try:
            self.request.recv(4096)
            with stub.lock:
                hung = stub.hung
                if not hung:
                    self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                    stub.answered_ns.append(time.time_ns())
            if hung:
                stub.release.wait(60)
        except OSError:
            pass


def trigger_latency(workdir, stamp_exec, reps, timeout_s=2.0):
    """Probe timeout due (last answer + T) → decision log line → trigger file → 503.

    The decision is the moment "The controller has received a probe timeout." reaches
    the .out file (lines are written when logged); the file and the endpoint are polled
    in the same tight loop, so every latency here has ~0.3 ms resolution.
    """
    stub = ProbeStub()
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    q = Qoscntrlr(workdir, stamp_exec, 0.2, True)
    ready_port = free_port()
    q.start(extra=[f"QOS_READINESS_LISTEN=127.0.0.1:{ready_port}"],
            probe_url=f"http://127.0.0.1:{stub.server_address[1]}/health")
    rows = []
    try:
        for _ in range(reps):
            settle(q, 0.6)
            tail = LogTail(q.data)
            t_last = stub.hang()
            t_due = t_last + int(timeout_s * 1e9)
            t_decision = t_trigger = t_503 = None
            buf = b""
            deadline = time.monotonic() + timeout_s + 10
            while time.monotonic() < deadline and None in (t_decision, t_trigger, t_503):
                now = time.time_ns()
                if t_decision is None:
                    buf += tail.read()
                    if b"The controller has received a probe timeout." in buf:
                        t_decision = now
                if t_trigger is None and os.path.exists(q.trigger_path()):
                    t_trigger = now
                if t_503 is None and now > t_due - 100_000_000:
                    if http_status(ready_port, "/", timeout=0.2) == 503:
                        t_503 = time.time_ns()
                time.sleep(0.0001)
            stub.unhang()
            if None in (t_decision, t_trigger, t_503):
                raise RuntimeError("trigger latency: the probe timeout was not seen")
            rows.append({"fires_after_due_ms": (t_decision - t_due) / 1e6,
                         "decision_to_trigger_ms": (t_trigger - t_decision) / 1e6,
                         "decision_to_503_ms": (t_503 - t_decision) / 1e6})
        fsync = trigger_write_ms(q.data)
        # The flood's rate varies run to run on this shared machine (seen: ±25 %); three
        # floods, the median one reported with the range.
        floods = [message_throughput(q, stub) for _ in range(FLOODS)]
    finally:
        stub.unhang()
        q.stop()
        stub.shutdown()
        stub.server_close()
    floods.sort(key=lambda f: f["per_cpu_s"] or 0)
    throughput = dict(floods[len(floods) // 2],
                      runs=[{k: f[k] for k in ("handled", "missing", "rejected", "end_seen",
                                               "per_s_wall", "per_cpu_s", "max_probe_gap_ms",
                                               "log_files")}
                            for f in floods])
    return rows, fsync, throughput


FLOODS = 3


def trigger_write_ms(directory, n=200):
    """How long the controller's way of writing the trigger file takes here: a temp file
    written, fsync'ed and renamed into place (src/failover.rs TriggerFile::write), n
    times 10 ms apart in the data directory. p50 / p99 / max in ms."""
    temp, path = os.path.join(directory, ".fsync-cost.tmp"), os.path.join(directory, "fsync-cost")
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"1\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
            times.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)
    finally:
        for leftover in (temp, path):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return {"n": n, "p50_ms": pct_of(times, 50), "p99_ms": pct_of(times, 99),
            "max_ms": max(times)}


def pct_of(values, q):
    v = sorted(values)
    return v[max(0, -(-q * len(v) // 100) - 1)]


def proc_io(pid):
    """The counters of /proc/pid/io (syscw: write(2)-family calls; socket reads made
    with recv(2) are not counted in syscr, so only writes are used)."""
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            key, value = line.split(":")
            out[key] = int(value)
    return out


def message_throughput(q, stub, n=200_000, quiet_limit_s=10.0):
    """PROGRESS lines handled per second (wall) and per CPU-second of the controller.

    A client sends the START of a COMPACT, n PROGRESS lines as fast as the socket takes
    them, then the END, all on one connection. The pipe does not drop a flood: it stops
    reading the client (backpressure), so the client's writes block instead. Handled =
    the PROGRESS lines the controller logged, counted in every controller log file
    written during the flood (LogTail follows the .out across rolls). The flood is over
    when the END has been handled (`Removing COMPACT[bench.nsf] …` is logged); if that
    never comes, reading stops after quiet_limit_s without a new line and end_seen is
    false. Probing at 200 ms keeps running against the stub; the stub's answer times
    give the largest gap between probes during the flood.
    """
    settle(q, 0.6)
    pipe = os.path.join(q.data, "qoscntrlr.pipe")
    tail = LogTail(q.data)
    app = b"OpMsg=START Type=COMPACT ObjectType=DB ObjectValue=bench.nsf\n"
    progress = b"OpMsg=PROGRESS Type=COMPACT ObjectType=DB ObjectValue=bench.nsf\n"
    end = b"OpMsg=END Type=COMPACT ObjectType=DB ObjectValue=bench.nsf\n"
    removed = b"Removing COMPACT[bench.nsf] from long running apps list"
    pid = q.proc.pid
    cpu0, io0 = cpu_seconds(pid), proc_io(pid)
    handled = rejected = 0
    line_bytes = None
    pending = b""
    end_seen = False
    t0 = time.time_ns()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(pipe)
        s.sendall(app)
        batch = progress * 1000
        for _ in range(n // 1000):
            s.sendall(batch)
        s.sendall(progress * (n % 1000) + end)
        t_sent = time.time_ns()
        # Only complete lines are counted; the read is incremental (a few ms apart), so
        # the bench takes little CPU from the controller it measures.
        last_change = t_end = time.time_ns()
        while True:
            data = tail.read()
            now = time.time_ns()
            if data:
                complete, _, pending = (pending + data).rpartition(b"\n")
                h = complete.count(b"OpMsg=PROGRESS")
                r = complete.count(b"Message rejected:")
                if h and line_bytes is None:  # size of one logged PROGRESS line
                    at = complete.find(b"OpMsg=PROGRESS")
                    stop = complete.find(b"\n", at)
                    line_bytes = ((stop if stop >= 0 else len(complete))
                                  - (complete.rfind(b"\n", 0, at) + 1) + 1)
                if h or r:
                    handled, rejected, last_change = handled + h, rejected + r, now
                if removed in complete:
                    end_seen, t_end = True, now
                    break
            if now - last_change > quiet_limit_s * 1e9:
                t_end = last_change
                break
            time.sleep(0.002)
    cpu = cpu_seconds(pid) - cpu0
    io1 = proc_io(pid)
    answers = [t for t in stub.answered_ns if t0 <= t <= t_end]
    gaps = [(b - a) / 1e6 for a, b in zip(answers, answers[1:])]
    wall = (t_end - t0) / 1e9
    return {"sent": n, "handled": handled, "rejected": rejected,
            "missing": n - handled, "end_seen": end_seen, "wall_s": wall,
            "send_s": (t_sent - t0) / 1e9, "cpu_s": cpu,
            "write_syscalls": io1["syscw"] - io0["syscw"],
            "log_files": len(tail.inodes),
            "per_s_wall": handled / wall if wall > 0 else None,
            "per_cpu_s": handled / cpu if cpu > 0 else None,
            "probe_interval_ms": q.probe_interval_s * 1000,
            "probes_during": len(answers), "max_probe_gap_ms": max(gaps) if gaps else None,
            "log_line_bytes": line_bytes,
            "append_write_us": append_write_us(q.dir, line_bytes or 128, n)}


def append_write_us(directory, size, n):
    """Median cost (µs) of one write(2) of `size` bytes to an O_APPEND file in
    `directory` (the filesystem the controller logs to), over n writes in 20 rounds:
    what the log contract's one unbuffered write per line costs on this machine
    (plus the small cost of the Python call)."""
    path = os.path.join(directory, "append-cost.tmp")
    line = b"x" * (size - 1) + b"\n"
    per_round = max(1, n // 20)
    rounds = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    try:
        for _ in range(20):
            t0 = time.perf_counter()
            for _ in range(per_round):
                os.write(fd, line)
            rounds.append((time.perf_counter() - t0) / per_round * 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    return sorted(rounds)[len(rounds) // 2]


def log_review(workdir, megabytes, gen_logs, rusage, runs=3):
    """`qoscntrlr logs summary --json DIR` over ~megabytes MiB of generated logs.

    examples/gen_logs writes realistic controller logs (probe results with a long latency
    tail, probe errors, smart kills, crashes, app timeouts, exhaustions, pauses,
    restart-limit hits) split into qoscntrlrYYYYMMDDHHmm.log files as the controller
    rotates them; `logs summary` reads a directory's qoscntrlr*.log and qoscntrlr*.out
    files. The files are read once first so the page cache holds them and the runs
    measure parsing, not the disk. Wall time, CPU and peak RSS come from wait4(2) in
    bench/rusage.c (see there why not from this process); the median run is reported.
    """
    if not gen_logs or not os.path.exists(gen_logs):
        return {"skipped": "examples/gen_logs is not built (run through bench/run-all.sh)"}
    if not rusage or not os.path.exists(rusage):
        return {"skipped": "bench/rusage.c is not built (run through bench/run-all.sh)"}
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    gen = subprocess.run([gen_logs, workdir, "--bytes", str(megabytes * 1024 * 1024)],
                         capture_output=True, text=True)
    if gen.returncode != 0:
        return {"skipped": f"gen_logs failed: {gen.stderr.strip()}"}
    files = controller_logs(workdir)
    size = sum(os.path.getsize(p) for p in files)
    for path in files:
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    summary_path = workdir + ".summary.json"
    rows = []
    try:
        usage_path = workdir + ".rusage.json"
        for _ in range(runs):
            with open(summary_path, "wb") as out:
                r = subprocess.run([rusage, usage_path, QOSCNTRLR, "logs", "summary", "--json",
                                    workdir], stdout=out, stderr=subprocess.PIPE)
            if r.returncode != 0:
                err = r.stderr.decode(errors="replace").strip()
                return {"skipped": f"`logs summary` failed with exit code {r.returncode}: {err}"}
            with open(usage_path) as f:
                usage = json.load(f)
            os.unlink(usage_path)
            rows.append({"wall_s": usage["wall_s"], "cpu_s": usage["user_s"] + usage["sys_s"],
                         "peak_rss_kb": usage["maxrss_kb"]})
        with open(summary_path) as f:
            summary = json.load(f)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.path.exists(summary_path):
            os.unlink(summary_path)
    median = sorted(rows, key=lambda r: r["wall_s"])[len(rows) // 2]
    counts = summary.get("counts", {})
    return {"bytes": size, "files": len(files), "runs": rows,
            "wall_s": median["wall_s"], "cpu_s": median["cpu_s"],
            "mb_per_s": size / 1e6 / median["wall_s"],
            "mb_per_cpu_s": size / 1e6 / median["cpu_s"] if median["cpu_s"] else None,
            "peak_rss_kb": max(r["peak_rss_kb"] for r in rows),
            "summary": {"files": summary.get("files"), "lines": summary.get("lines"),
                        "unknown_lines": summary.get("unknown_lines"),
                        "incidents": len(summary.get("incidents", [])),
                        "probe_successes": summary.get("probe", {}).get("successes"),
                        "crashes": counts.get("crashes"), "kills": counts.get("kills"),
                        "probe_timeouts": counts.get("probe_timeouts"),
                        "period": summary.get("period")}}


def duration_ns(text):
    """A Rust `Duration` debug rendering (`312ns`, `1.2µs`, `3.4ms`, `1.5s`) in ns."""
    m = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", text)
    scale = {"ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}[m.group(2)]
    return float(m.group(1)) * scale


def read_apps(path):
    """The `apps:` line of core::apps::tests::bench_hundred_thousand_apps."""
    try:
        with open(path) as f:
            line = next((l for l in f if l.startswith("apps:")), None)
    except FileNotFoundError:
        line = None
    m = line and re.search(
        r"apps: (\d+)k entries: start (\S+)/op, progress (\S+)/op, "
        r"deadline\+expired\+end (\S+)/op, (\d+) not found at their deadline", line)
    if not m:
        return {"skipped": f"no `apps:` line in {path}"}
    return {"entries": int(m.group(1)) * 1000, "start_ns": duration_ns(m.group(2)),
            "progress_ns": duration_ns(m.group(3)), "expire_ns": duration_ns(m.group(4)),
            "late": int(m.group(5)), "line": line.strip()}


def read_json_or_skip(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError) as e:
        return {"skipped": f"{what} wrote no results ({e})"}


# --------------------------------------------------------------------------- main


def versions():
    def first_line(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {"qoscntrlr": first_line([QOSCNTRLR, "--version"]),
            "monit": first_line(["monit", "-V"]),
            "supervisord": first_line(["supervisord", "--version"])}


def ours(pid):
    """True if pid is alive and its command line names this checkout, the binaries'
    directory or the work dir: a guard against killing an unrelated process that reused
    a recorded pid."""
    if not alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except FileNotFoundError:
        return False
    return (ROOT in cmdline or os.path.dirname(QOSCNTRLR) in cmdline
            or (WORK_DIR is not None and WORK_DIR in cmdline))


def kill_ours(pid):
    if ours(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cleanup():
    for tool in STARTED:
        try:
            tool.supervisor_pids()  # records a peer's own pid before it is stopped
            tool.stop()
        except Exception as e:  # keep cleaning up the others
            log(f"cleanup: stopping {tool.name}: {e}")
    for pid in OWNED_PIDS:
        kill_ours(pid)


def save(path, results):
    """Results so far: a later stage that fails leaves the earlier ones on disk."""
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stamp-exec", required=True)
    ap.add_argument("--subreaper", required=True)
    ap.add_argument("--out", required=True, help="work directory (deleted first)")
    ap.add_argument("--results", required=True, help="JSON file to write")
    ap.add_argument("--crash-reps", type=int, default=50)
    ap.add_argument("--hang-reps", type=int, default=10)
    ap.add_argument("--trigger-reps", type=int, default=10)
    ap.add_argument("--idle-seconds", type=int, default=60)
    ap.add_argument("--review-mb", type=int, default=1024,
                    help="MiB of generated logs for `logs summary`")
    ap.add_argument("--bin-dir", help="directory of the release binaries [target/release]")
    ap.add_argument("--gen-logs", help="the built examples/gen_logs")
    ap.add_argument("--rusage", help="the compiled bench/rusage.c")
    ap.add_argument("--sampler-json", help="output of `cargo bench --bench sampler`")
    ap.add_argument("--apps-txt", help="output of the core::apps 100k benchmark test")
    ap.add_argument("--ha-json", help="results written by bench/ha-latency.sh (HA_JSON)")
    ap.add_argument("--reexec-json", help="results written by bench/reexec-gap.py --json")
    ap.add_argument("--real-json", help="results written by bench/real_servers.py")
    ap.add_argument("--diagnostics-json",
                    help="results written by bench/diagnostics-bench.sh (DIAG_JSON)")
    ap.add_argument("--faults-json", help="results written by bench/faults.sh (FAULTS_JSON)")
    args = ap.parse_args()

    global WORK_DIR, SUBREAPER, QOSCNTRLR, DEMO
    if args.bin_dir:
        QOSCNTRLR = os.path.join(os.path.abspath(args.bin_dir), "qoscntrlr")
        DEMO = os.path.join(os.path.abspath(args.bin_dir), "qos-demo-server")
    SUBREAPER = os.path.abspath(args.subreaper)
    args.out = WORK_DIR = os.path.abspath(args.out)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    results = {"versions": versions(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "settings": dict(vars(args), monit_start_timeout_s=START_TIMEOUT_S),
               "binary_bytes": os.path.getsize(QOSCNTRLR)}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        # Rows 1 and 2: the three tools run side by side; repetitions alternate them.
        tools = [Qoscntrlr(os.path.join(args.out, "q-fast"), args.stamp_exec, 0.2, True),
                 Monit(os.path.join(args.out, "m-fast"), args.stamp_exec, 1, True),
                 Supervisord(os.path.join(args.out, "s-fast"), args.stamp_exec, 1, True)]
        for t in tools:
            t.start()
        for t in tools:
            t.wait_serving()
        crash = {t.name: [] for t in tools}
        log(f"crash -> restart, {args.crash_reps} repetitions per tool")
        for rep in range(args.crash_reps):
            for t in (tools if rep % 2 == 0 else tools[::-1]):
                crash[t.name].append(crash_once(t))
        results["crash"] = crash
        save(args.results, results)

        hang = {t.name: [] for t in tools[:2]}
        log(f"hang -> kill -> serving, {args.hang_reps} repetitions (qoscntrlr, monit)")
        for rep in range(args.hang_reps):
            for t in (tools[:2] if rep % 2 == 0 else tools[1::-1]):
                hang[t.name].append(hang_once(t))
        results["hang"] = hang
        save(args.results, results)
        for t in tools:
            t.stop()

        # Row 3: fresh instances with a 1 s probe, measured over the same minute, alone:
        # the crash and hang instances are stopped first, since PSS divides a binary's
        # shared pages among every process that maps it (a second copy of a tool running
        # beside the idle one would halve its PSS).
        idle_tools = [Qoscntrlr(os.path.join(args.out, "q-idle"), args.stamp_exec, 1, False),
                      Monit(os.path.join(args.out, "m-idle"), args.stamp_exec, 1, False),
                      Supervisord(os.path.join(args.out, "s-idle"), args.stamp_exec, 1, False)]
        for t in idle_tools:
            t.start()
        log(f"idle footprint over {args.idle_seconds} s")
        results["idle"] = idle_footprint(idle_tools, args.idle_seconds)
        results["cpu_clock"] = CPU_CLOCK
        save(args.results, results)
        for t in idle_tools:
            t.stop()

        # Row 4: qoscntrlr only.
        log(f"trigger latency ({args.trigger_reps} reps) and message throughput "
            f"({FLOODS} floods)")
        results["trigger"], results["trigger_fsync"], results["messages"] = trigger_latency(
            os.path.join(args.out, "q-trigger"), args.stamp_exec, args.trigger_reps)
        save(args.results, results)
        if args.sampler_json and os.path.exists(args.sampler_json):
            with open(args.sampler_json) as f:
                found = [json.loads(l) for l in f if l.startswith("{")]
            by_memory = {r.get("memory", "pss"): r for r in found}
            results["sampler"] = by_memory.get("pss", {"skipped": "no output"})
            if "rss" in by_memory:
                results["sampler_rss"] = by_memory["rss"]
            if "pss-every-pass" in by_memory:
                results["sampler_pss_every_pass"] = by_memory["pss-every-pass"]
        if args.apps_txt:
            results["apps"] = read_apps(args.apps_txt)
        if args.ha_json:
            results["ha"] = read_json_or_skip(args.ha_json, "bench/ha-latency.sh")
        if args.reexec_json:
            results["reexec"] = read_json_or_skip(args.reexec_json, "bench/reexec-gap.py")
        if args.real_json:
            results["real_servers"] = read_json_or_skip(args.real_json,
                                                        "bench/real_servers.py")
        if args.diagnostics_json:
            results["diagnostics"] = read_json_or_skip(args.diagnostics_json,
                                                       "bench/diagnostics-bench.sh")
        if args.faults_json:
            results["faults"] = read_json_or_skip(args.faults_json, "bench/faults.sh")
        log(f"log review: `logs summary` over {args.review_mb} MiB of generated logs")
        results["review"] = log_review(os.path.join(args.out, "review"), args.review_mb,
                                       args.gen_logs, args.rusage)
    finally:
        cleanup()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    save(args.results, results)
    log(f"results written to {args.results}")


if __name__ == "__main__":
    main()
