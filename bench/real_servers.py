#!/usr/bin/env python3
"""Crash -> serving again for real servers: nginx and PostgreSQL 15 (Debian's packages)
under qoscntrlr, monit and supervisord, on the same machine, tools alternating.

    bench/real_servers.py --bin-dir target/release --subreaper bench/out/subreaper \\
        --out bench/out/real-work --results bench/out/real-servers.json \\
        [--reps 10] [--markdown BENCHMARKS.md]

Run as root (PostgreSQL runs as postgres; nginx binds and drops its workers). Each
repetition waits until the server serves, pauses a random 0.3-1.3 s (so the kill falls at
a random phase of the peers' 1 s cycles), SIGKILLs the master (nginx) or the postmaster
(PostgreSQL) and polls every millisecond until a NEW instance serves:

* nginx: `GET /` answered 200 by a worker whose pid is not one of the old tree's (the old
  workers, orphaned, keep answering on the inherited socket: that is not serving again);
* PostgreSQL: a protocol-3 startup on the cluster's Unix socket answered with
  ReadyForQuery (only a running postmaster accepts, and only after crash recovery).

qoscntrlr runs on packaging/examples/nginx.ini and postgresql.ini, with the same per-run
substitutions as tests/real_*.rs. The peers get the configuration an administrator would
write for each server. For nginx they also get a start wrapper that SIGKILLs the old
master's process group (from its pid file) before starting: without it the orphaned
workers keep the port and the new master never binds — measured once per peer as the
"naive" variant, with a time limit.

`--markdown FILE` replaces this benchmark's section of FILE (between its markers);
bench/report.py renders the same section from the results folded into results.json by
bench/run-all.sh. Every process started is found again by its working directory (under
--out) and killed on exit, never by name.
"""

import argparse
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_BIN = "/usr/lib/postgresql/15/bin"
NGINX = "/usr/sbin/nginx"
RNG = random.Random(16)
WORK = None
BEGIN = "<!-- real-servers: begin (bench/real_servers.py) -->"
END = "<!-- real-servers: end -->"
TOOLS = ["qoscntrlr", "qoscntrlr-nsd-off", "monit", "supervisord"]
# qoscntrlr-nsd-off: the same with QOS_NSD_PATH=/bin/true, i.e. without the post-mortem
# (the built-in collector takes gdb stacks of every leftover process before the restart).
HEADERS = {"qoscntrlr": "qoscntrlr", "qoscntrlr-nsd-off": "qoscntrlr, `QOS_NSD_PATH=/bin/true`",
           "monit": "monit", "supervisord": "supervisord"}


def log(msg):
    print(f"[real-servers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- /proc


def stat_fields(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rfind(b")") + 2:].split()


def alive(pid):
    f = stat_fields(pid)
    return f is not None and f[0] not in (b"Z", b"X")


def table():
    """(pid, ppid, cwd) of every live process."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = stat_fields(int(name))
        if f is None or f[0] in (b"Z", b"X"):
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            cwd = ""
        out.append((int(name), int(f[1]), cwd))
    return out


def tree(root):
    t = table()
    pids = {root} if alive(root) else set()
    grew = True
    while grew:
        grew = False
        for pid, ppid, _ in t:
            if ppid in pids and pid not in pids:
                pids.add(pid)
                grew = True
    return pids


def kill_work_processes():
    """SIGKILL everything running in the work directory, until nothing is left."""
    me = os.getpid()
    for _ in range(100):
        left = [p for p, _, cwd in table() if p != me and WORK and cwd.startswith(WORK)]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


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


# --------------------------------------------------------------------------- servers


class Nginx:
    name = "nginx"

    def __init__(self, d):
        self.dir = d
        self.port = free_port()
        self.conf = os.path.join(d, "nginx.conf")
        self.pidfile = os.path.join(d, "nginx.pid")
        os.makedirs(os.path.join(d, "nginx-temp"), exist_ok=True)
        t = os.path.join(d, "nginx-temp")
        with open(self.conf, "w") as f:
            f.write(
                "worker_processes 2;\n"
                f"pid {self.pidfile};\nerror_log stderr notice;\n"
                "events { worker_connections 64; }\nhttp {\n  access_log off;\n"
                f"  client_body_temp_path {t}/body; proxy_temp_path {t}/proxy;\n"
                f"  fastcgi_temp_path {t}/fastcgi; uwsgi_temp_path {t}/uwsgi;\n"
                f"  scgi_temp_path {t}/scgi;\n"
                f"  server {{ listen 127.0.0.1:{self.port};\n"
                "    location = /qos-health { access_log off; return 200 \"ok\\n\"; }\n"
                "    location / { return 200 \"served by worker $pid\\n\"; } }\n}\n")
        self.old = set()

    def foreground_argv(self):
        return [NGINX, "-c", self.conf, "-g", "daemon off;"]

    def daemon_argv(self):
        return [NGINX, "-c", self.conf]

    def qos_ini(self):
        with open(os.path.join(ROOT, "packaging/examples/nginx.ini")) as f:
            text = f.read()
        return substitute(text, [
            ("/etc/nginx/nginx.conf", self.conf),
            ("QOS_PROBE=http://127.0.0.1:80/qos-health",
             f"QOS_PROBE=http://127.0.0.1:{self.port}/qos-health"),
        ])

    def master(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def serving_worker(self, timeout=0.2):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                s.settimeout(timeout)
                s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return None
        m = re.search(rb"^HTTP/1\.\d 200.*served by worker (\d+)", data, re.S)
        return int(m.group(1)) if m else None

    def serving(self):
        """A worker of a new tree answers."""
        w = self.serving_worker()
        return w is not None and w not in self.old

    def remember_tree(self):
        m = self.master()
        self.old = tree(m) if m else set()
        return m


class Postgres:
    name = "postgresql"

    def __init__(self, d):
        self.dir = d
        self.port = free_port()
        self.pgdata = os.path.join(d, "pgdata")
        self.sock = os.path.join(d, "sock")
        pw = pwd.getpwnam("postgres")
        for p in (self.pgdata, self.sock):
            os.makedirs(p, exist_ok=True)
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(d, 0o755)
        r = subprocess.run(
            ["runuser", "-u", "postgres", "--", f"{PG_BIN}/initdb", "-D", self.pgdata,
             "--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres",
             "--no-sync", "--no-locale", "-E", "UTF8"],
            cwd=d, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"initdb: {r.stdout}{r.stderr}")
        with open(os.path.join(self.pgdata, "postgresql.conf"), "a") as f:
            # As in tests/real_postgresql.rs. fsync = off: with it on, crash recovery
            # starts by fsyncing every file of the data directory, which takes 3-10 s on
            # this shared disk, the same for every tool, and would drown their difference.
            f.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.sock}'\nshared_buffers = 16MB\n"
                    "max_connections = 20\ndynamic_shared_memory_type = mmap\n"
                    "fsync = off\n")
        self.old = None

    def foreground_argv(self):
        return [f"{PG_BIN}/postgres", "-D", self.pgdata]

    def qos_ini(self):
        with open(os.path.join(ROOT, "packaging/examples/postgresql.ini")) as f:
            text = f.read()
        return substitute(text, [
            ("/etc/postgresql/15/main/postgresql.conf",
             os.path.join(self.pgdata, "postgresql.conf")),
            ("/var/lib/postgresql/15/main", self.pgdata),
            ("-h 127.0.0.1 -p 5432 ", f"-h 127.0.0.1 -p {self.port} "),
        ])

    @property
    def pidfile(self):
        return os.path.join(self.pgdata, "postmaster.pid")

    def master(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) and pid != self.old else None

    def serving(self, timeout=0.2):
        """Protocol 3 startup as postgres (trusted socket): ReadyForQuery = serving."""
        path = os.path.join(self.sock, f".s.PGSQL.{self.port}")
        body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout)
                s.connect(path)
                s.sendall(struct.pack("!I", len(body) + 4) + body)
                buf = b""
                while True:
                    chunk = s.recv(8192)
                    if not chunk:
                        return False
                    buf += chunk
                    while len(buf) >= 5:
                        kind = buf[:1]
                        length = struct.unpack("!I", buf[1:5])[0]
                        if len(buf) < 1 + length:
                            break
                        if kind == b"E":
                            return False
                        if kind == b"Z":
                            s.sendall(b"X" + struct.pack("!I", 4))
                            return True
                        buf = buf[1 + length:]
        except OSError:
            return False

    def remember_tree(self):
        m = self.master()
        self.old = m
        return m


def substitute(text, pairs):
    for a, b in pairs:
        if a not in text:
            raise RuntimeError(f"the example no longer contains {a!r}")
        text = text.replace(a, b)
    return text


# --------------------------------------------------------------------------- tools


class Run:
    """One tool supervising one server in a directory of its own."""

    def __init__(self, tool, server_cls, d, args, naive=False):
        self.tool, self.dir, self.args, self.naive = tool, d, args, naive
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        self.server = server_cls(d)
        self.proc = None

    def popen(self, argv):
        out = open(os.path.join(self.dir, "supervisor.console"), "ab")
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=out, start_new_session=True)

    def start(self):
        s = self.server
        if self.tool.startswith("qoscntrlr"):
            ini = os.path.join(self.dir, "dcontroller.ini")
            nsd = "QOS_NSD_PATH=/bin/true\n" if self.tool == "qoscntrlr-nsd-off" else ""
            with open(ini, "w") as f:
                f.write(s.qos_ini() + "\n# bench overrides\n"
                        f"DATA_DIRECTORY={self.dir}\nQOS_PROBE_INTERVAL=1s\n"
                        "QOS_RESTART_LIMIT_ENABLE=0\n" + nsd)
            self.popen([os.path.join(self.args.bin_dir, "qoscntrlr"), "run", "-c", ini])
        elif self.tool == "supervisord":
            conf = os.path.join(self.dir, "supervisord.conf")
            cmd = self.peer_command(foreground=True)
            user = "user=postgres\n" if isinstance(s, Postgres) else ""
            with open(conf, "w") as f:
                f.write("[supervisord]\nnodaemon=true\nuser=root\n"
                        f"logfile={self.dir}/supervisord.log\n"
                        f"pidfile={self.dir}/supervisord.pid\nchildlogdir={self.dir}\n\n"
                        f"[program:server]\ncommand={cmd}\n{user}"
                        f"directory={self.dir}\n"
                        "autostart=true\nautorestart=true\nstartsecs=0\nstartretries=1000\n"
                        "stopasgroup=true\nkillasgroup=true\n"
                        f"stopsignal={'QUIT' if isinstance(s, Nginx) else 'INT'}\n"
                        "stopwaitsecs=10\nredirect_stderr=true\n"
                        f"stdout_logfile={self.dir}/server.log\n")
            self.popen([self.args.subreaper, "supervisord", "-n", "-c", conf])
        else:  # monit
            start = os.path.join(self.dir, "start.sh")
            with open(start, "w") as f:
                f.write("#!/bin/sh\n" + self.peer_command(foreground=False) + "\n")
            stop = os.path.join(self.dir, "stop.sh")
            with open(stop, "w") as f:
                f.write(f"#!/bin/sh\nkill -KILL $(head -n1 {s.pidfile})\n")
            rc = os.path.join(self.dir, "monitrc")
            with open(rc, "w") as f:
                f.write(f"set daemon 1\nset logfile {self.dir}/monit.log\n"
                        f"set pidfile {self.dir}/monit.pid\nset idfile {self.dir}/monit.id\n"
                        f"set statefile {self.dir}/monit.state\n"
                        f"check process server with pidfile {s.pidfile}\n"
                        f"  start program = \"/bin/sh {start}\" with timeout 30 seconds\n"
                        f"  stop program = \"/bin/sh {stop}\"\n")
            os.chmod(rc, 0o600)
            self.popen([self.args.subreaper, "monit", "-I", "-c", rc])

    def ready(self):
        """qoscntrlr: READY (a server that ends before READY is restarted with a backoff,
        by design); the peers have no such state."""
        if not self.tool.startswith("qoscntrlr"):
            return True
        r = subprocess.run([os.path.join(self.args.bin_dir, "qoscntrlr"), "status", "--json",
                            "-c", os.path.join(self.dir, "dcontroller.ini")],
                           capture_output=True, text=True, timeout=10)
        try:
            return json.loads(r.stdout)["server"]["state"] == "READY"
        except (ValueError, KeyError, TypeError):
            return False

    def peer_command(self, foreground):
        """The server's start command for a peer, as one shell-ready line."""
        s = self.server
        if isinstance(s, Nginx):
            argv = s.foreground_argv() if foreground else s.daemon_argv()
            line = " ".join(f"'{a}'" if " " in a else a for a in argv)
            if self.naive:
                return line
            # Kill what the last master left (its group: master and workers) first.
            wrapper = os.path.join(self.dir, "nginx-clean-start.sh")
            with open(wrapper, "w") as f:
                f.write("#!/bin/sh\n"
                        f"old=$(cat {s.pidfile} 2>/dev/null)\n"
                        "[ -n \"$old\" ] && /bin/kill -s KILL -- -\"$old\" 2>/dev/null\n"
                        f"exec {line}\n")
            return f"/bin/sh {wrapper}"
        argv = " ".join(s.foreground_argv())
        if foreground:
            return argv
        # monit: as postgres (setpriv execs in place, no session), in the background.
        return (f"setpriv --reuid=postgres --regid=postgres --init-groups {argv} "
                f">> {self.dir}/server.log 2>&1 &")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        kill_work_under(self.dir)


def kill_work_under(d):
    me = os.getpid()
    for _ in range(100):
        left = [p for p, _, cwd in table() if p != me and cwd.startswith(d)]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def crash_once(run, limit):
    """ms from SIGKILL of the master to a new instance serving; None past `limit` s."""
    s = run.server
    if not wait_until(lambda: s.master() and s.serving() and run.ready(), 60, step=0.01):
        raise RuntimeError(f"{run.tool}/{s.name}: not serving before the kill")
    time.sleep(RNG.uniform(0.3, 1.3))
    master = s.remember_tree()
    t0 = time.monotonic_ns()
    os.kill(master, signal.SIGKILL)
    # Every PostgreSQL attempt forks a backend: poll it every 10 ms, not every 1 ms, so
    # that the polling does not slow the recovery it measures.
    ok = wait_until(s.serving, limit, step=0.01 if isinstance(s, Postgres) else 0.001)
    if not ok:
        return None
    return (time.monotonic_ns() - t0) / 1e6


def versions(bin_dir):
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    commit = first(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    return {"qoscntrlr": first([os.path.join(bin_dir, "qoscntrlr"), "--version"])
            + f" (commit {commit})",
            "monit": first(["monit", "-V"]),
            "supervisord": "supervisord " + first(["supervisord", "--version"]),
            "nginx": first([NGINX, "-v"]),
            "postgresql": first([f"{PG_BIN}/postgres", "--version"])}


def loadavg():
    """The 1-minute load average: how busy the shared machine was."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stats(values):
    v = sorted(values)
    if not v:
        return None
    pick = lambda q: v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
    return {"n": len(v), "median": pick(0.5), "min": v[0], "max": v[-1], "p95": pick(0.95)}


# --------------------------------------------------------------------------- report


def fmt_ms(v):
    if v is None:
        return "–"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def render(res):
    """The BENCHMARKS.md section, as lines (also used by bench/report.py)."""
    L = [BEGIN, "", "## Row 5: real servers — crash → serving again (nginx, PostgreSQL 15)", ""]
    if not res or res.get("skipped"):
        L += [f"Not measured: {(res or {}).get('skipped', 'bench/real_servers.py did not run')}.",
              "", END]
        return L
    v = res["versions"]
    L += [f"Measured {res['date']} by `bench/real_servers.py` ({res['reps']} crashes per "
          f"tool and server, tools alternating; {res['seconds']:.0f} s): "
          f"{v['qoscntrlr']}, {v['monit']}, {v['supervisord']}, {v['nginx']}, "
          f"{v['postgresql']}. "
          + (f"1-minute load average {res['load_start']:.1f} at the start and "
             f"{res['load_end']:.1f} at the end on {os.cpu_count()} CPUs: the machine was "
             "shared with other jobs (builds and test suites), so absolute times are noisy; "
             "the tools alternate, so the load hits all of them."
             if res.get("load_start") is not None and res.get("load_end") is not None
             else "Same machine caveats as above."), "",
          "Cells: **median** (min–max), p95, from SIGKILL of the nginx master or the "
          "postmaster to a new instance serving.", "",
          "| Server | " + " | ".join(HEADERS[t] for t in TOOLS) + " |",
          "|---|" + "---|" * len(TOOLS)]
    for server in ("nginx", "postgresql"):
        cells = []
        for tool in TOOLS:
            st = res["crash"].get(server, {}).get(tool)
            if st is None:
                cells.append("not measured")
            else:
                cells.append(f"**{fmt_ms(st['median'])}** ({fmt_ms(st['min'])}–"
                             f"{fmt_ms(st['max'])}), p95 {fmt_ms(st['p95'])}"
                             + (f"; {st['failed']} of {st['failed'] + st['n']} never served "
                                "again" if st.get("failed") else ""))
        label = "nginx (master + 2 workers)" if server == "nginx" else "PostgreSQL 15 (idle)"
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    naive = res.get("naive", {})
    if naive:
        L.append("| nginx, peers without the clean-start wrapper | – | – | "
                 + " | ".join(
                     (f"{fmt_ms(naive[t]['ms'])}" if naive.get(t, {}).get("ms") is not None
                      else f"**never** (still not serving after {naive.get(t, {}).get('limit_s', '?')} s)")
                     for t in ("monit", "supervisord")) + " |")
    L += ["",
          "* **What is measured.** nginx: `GET /` answered 200 by a worker that is not one "
          "of the old tree's — the orphaned old workers keep answering on the socket they "
          "inherited, which is not the server coming back. PostgreSQL: a protocol-3 startup "
          "on the cluster's socket answered with ReadyForQuery, which only a running "
          "postmaster gives, after crash recovery. Polled every millisecond (nginx) or every "
          "10 ms (PostgreSQL, where each attempt forks a backend). The cluster runs with "
          "`fsync = off`: with it on, crash recovery first fsyncs every file of the data "
          "directory (3–10 s on this shared disk, the same whatever restarts the server).",
          "* **qoscntrlr** runs on `packaging/examples/nginx.ini` and "
          "`postgresql.ini` as shipped (paths and port substituted, "
          "`QOS_PROBE_INTERVAL=1s`, `QOS_RESTART_LIMIT_ENABLE=0`). A crashed server has "
          "nothing left to wait for: the controller reads the `/proc` snapshot of every "
          "process the dead master left into memory (milliseconds, bounded at 1 s), kills "
          "them and restarts the server at once; the post-mortem file (that snapshot, the "
          "console tail, the output of `QOS_NSD_PATH` if set) is written and fsynced while "
          "the new server starts. The column with `QOS_NSD_PATH=/bin/true` runs a program "
          "that does nothing as the post-mortem's nsd: it no longer differs, since neither "
          "delays the restart. Before that change (commit 1814128, measured 2026-12-02 "
          "02:31 UTC at a load average of 12–17) the post-mortem ran first, with one gdb "
          "attach per leftover process and the file's fsync: 4.25 s (nginx) and 2.87 s "
          "(PostgreSQL) median, against 1.23 s and 500 ms with `/bin/true`. The spread of "
          "the qoscntrlr columns follows the load.",
          "* **monit**: `set daemon 1`, `check process … with pidfile`, start program in the "
          "background (nginx daemonizing itself; the postmaster through `setpriv` as "
          "postgres). **supervisord**: `autorestart=true`, `startsecs=0`, "
          "`stopasgroup`/`killasgroup` (those act on a stop, not on a crash). Both under "
          "`bench/subreaper`, as in rows 1–3.",
          "* **nginx and the peers.** SIGKILL of the master leaves both workers running "
          "with the listening socket: a new master's bind() fails (`Address already in "
          "use`) for as long as they live. qoscntrlr kills the old tree before the "
          "restart. The peers do not, so their nginx rows use a start wrapper an "
          "administrator would have to write (SIGKILL the old master's process group, "
          "from its pid file, then exec nginx); the last row is the same peers without it.",
          "* **PostgreSQL** here is idle: its background processes notice the postmaster's "
          "death and exit, so a restarted postmaster finds the old shared memory free. A "
          "backend busy in a query does not notice; then the peers' new postmaster refuses "
          "to start (`pre-existing shared memory block is still in use`) until that "
          "backend ends, while qoscntrlr kills it first (tests/real_postgresql.rs).",
          "", END]
    return add_commit_column(L, res.get("commit") or commit_of(v["qoscntrlr"]))


def commit_of(version):
    """The commit in `qoscntrlr 0.1.0 (commit abc1234)`."""
    found = re.search(r"\(commit ([0-9a-f]+)\)", version or "")
    return found.group(1) if found else "?"


def add_commit_column(lines, commit):
    """Every markdown table gets a last column naming the commit its rows measured."""
    out, in_table = [], False
    for line in lines:
        if line.startswith("|"):
            if not in_table:
                line += " commit |"
            elif set(line.replace("|", "").strip()) <= set("-: "):
                line += "---|"
            else:
                line += f" `{commit}` |"
            in_table = True
        else:
            in_table = False
        out.append(line)
    return out


def update_markdown(path, res):
    with open(path) as f:
        text = f.read()
    block = "\n".join(render(res)) + "\n"
    if BEGIN in text and END in text:
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        if text[b:b + 1] == "\n":
            b += 1
        text = text[:a] + block + text[b:]
    else:
        marker = "\nRaw results:"
        at = text.find(marker)
        if at < 0:
            text = text.rstrip("\n") + "\n\n" + block
        else:
            text = text[:at + 1] + block + "\n" + text[at + 1:]
    with open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------- main


def main():
    global WORK
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("--subreaper", required=True, help="compiled bench/subreaper.c")
    ap.add_argument("--out", required=True, help="work directory (deleted first)")
    ap.add_argument("--results", required=True, help="JSON file to write")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--limit", type=float, default=30.0,
                    help="seconds to wait for a new instance serving")
    ap.add_argument("--naive-limit", type=float, default=15.0)
    ap.add_argument("--markdown", help="update this file's real-servers section")
    args = ap.parse_args()
    args.subreaper = os.path.abspath(args.subreaper)
    args.bin_dir = os.path.abspath(args.bin_dir)
    started = time.time()
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "reps": args.reps,
           "load_start": loadavg()}
    missing = [p for p in (NGINX, f"{PG_BIN}/postgres", shutil.which("monit") or "monit",
                           shutil.which("supervisord") or "supervisord")
               if not os.path.exists(p)]
    if os.geteuid() != 0 or missing:
        res["skipped"] = ("needs root" if os.geteuid() != 0
                          else "missing " + ", ".join(missing))
        log(res["skipped"])
        with open(args.results, "w") as f:
            json.dump(res, f, indent=1)
        return 0
    WORK = os.path.abspath(args.out)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    os.chmod(WORK, 0o755)
    res["versions"] = versions(args.bin_dir)
    res["crash"] = {}
    res["naive"] = {}
    try:
        for server_cls in (Nginx, Postgres):
            name = server_cls.name
            runs = {t: Run(t, server_cls, os.path.join(WORK, f"{name}-{t}"), args)
                    for t in TOOLS}
            for r in runs.values():
                r.start()
            times = {t: [] for t in TOOLS}
            failed = {t: 0 for t in TOOLS}
            for rep in range(args.reps):
                order = TOOLS if rep % 2 == 0 else list(reversed(TOOLS))
                for t in order:
                    ms = crash_once(runs[t], args.limit)
                    if ms is None:
                        failed[t] += 1
                        log(f"{name}/{t}: not serving again within {args.limit} s")
                    else:
                        times[t].append(ms)
                log(f"{name} rep {rep + 1}/{args.reps}: "
                    + ", ".join(f"{t} {fmt_ms(times[t][-1]) if times[t] else '–'}"
                                for t in TOOLS))
            for r in runs.values():
                r.stop()
            res["crash"][name] = {}
            for t in TOOLS:
                st = stats(times[t])
                if st is not None:
                    st["failed"] = failed[t]
                    st["values"] = times[t]
                res["crash"][name][t] = st
        # Peers on nginx without the wrapper: once each, with a time limit.
        for t in ("monit", "supervisord"):
            r = Run(t, Nginx, os.path.join(WORK, f"nginx-{t}-naive"), args, naive=True)
            r.start()
            ms = crash_once(r, args.naive_limit)
            res["naive"][t] = {"ms": ms, "limit_s": args.naive_limit}
            log(f"nginx/{t} without the wrapper: "
                + (fmt_ms(ms) if ms is not None else f"never within {args.naive_limit} s"))
            r.stop()
    finally:
        kill_work_processes()
    res["seconds"] = time.time() - started
    res["load_end"] = loadavg()
    with open(args.results, "w") as f:
        json.dump(res, f, indent=1)
    if args.markdown:
        update_markdown(args.markdown, res)
        log(f"updated {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
