"""Turns `cargo bench --bench cgroup` output (one JSON object per line) into the
containment section of BENCHMARKS.md, between the markers below; the rest of the file
is left as it is (bench/report.py keeps this section when it rewrites the file)."""
import argparse
import json
import os
import statistics
import subprocess

BEGIN = "<!-- cgroup-containment:begin -->"
END = "<!-- cgroup-containment:end -->"


def memory_controller():
    """Where the memory controller lives on this host."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if right.startswith("cgroup2 "):
                    with open(os.path.join(fields[4], "cgroup.controllers")) as c:
                        if "memory" in c.read().split():
                            return "v2"
                elif right.startswith("cgroup ") and "memory" in right.split()[-1].split(","):
                    return "v1"
    except OSError:
        pass
    return None


def add_commit_column(lines, commit):
    """Every markdown table in `lines` gets a last column naming the commit its rows were
    measured on (each row of BENCHMARKS.md says which build it measured)."""
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


def head_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def render(rows, commit=None):
    samples = [r for r in rows if r["bench"] == "sample"]
    kills = [r for r in rows if r["bench"] == "storm-kill"]
    L = [BEGIN, "## Containment (cgroup v2)", ""]
    L += ["Measured by `bench/cgroup.sh` on this machine's cgroup2 mount "
          "(`/sys/fs/cgroup/unified`, a hybrid host: cgroup v2 without the memory and pids "
          "controllers, which cgroup v1 holds), with the other engineers' builds and tests "
          "running beside it on the 2 cores.", ""]
    L += ["### Sample cost", "",
          "| processes | how | memory figure | p50 | p95 | max |",
          "|---:|---|---|---:|---:|---:|"]
    for r in samples:
        L.append(f"| {r['processes']:,} | {r['how']} | {r['memory']} | "
                 f"{r['p50_ms']:.3f} ms | {r['p95_ms']:.3f} ms | {r['max_ms']:.3f} ms |")
    L += ["",
          "`proc` is the `/proc` walk from the server's pid; `cgroup` is the contained "
          "sample (`cgroup.procs`, `cpu.stat`, the three pressure files, plus "
          "`memory.current`/`pids.current` where those controllers are enabled). On this "
          "host neither is, so the cgroup sample still reads each process's memory and "
          "thread count and its cost grows with the process count like the walk's, minus "
          "the walk itself; `cgroup-files-only` is the part that does not grow (the "
          "membership list aside), which is the whole sample on a host with the memory and "
          "pids controllers on cgroup v2.", ""]
    L += ["### Killing a 1,000-process fork storm", "",
          "Every process calls `setsid` and keeps forking (to the cap, then short-lived "
          "children every 100 ms), so no group or session kill reaches them and forks are "
          "in flight when the kill comes. Survivors are counted from the storm's own pid "
          "record 0.5 s after the kill returned.", "",
          "| how | runs | processes | kill time median (range) | survivors (each run) |",
          "|---|---:|---:|---|---|"]
    for how, label in (("cgroup", "`cgroup.kill`, until `populated 0`"),
                       ("proc", "`/proc` walk: SIGSTOP + SIGKILL in rounds")):
        rs = [r for r in kills if r["how"] == how]
        if not rs:
            continue
        ms = [r["ms"] for r in rs]
        L.append(f"| {label} | {len(rs)} | {min(r['processes'] for r in rs):,} | "
                 f"{statistics.median(ms):.1f} ms ({min(ms):.1f}–{max(ms):.1f}) | "
                 f"{', '.join(str(r['survivors']) for r in rs)} |")
    L += ["", "Goal: 0 survivors."]
    mem = memory_controller()
    L += ["", "### Lead time of memory pressure before the kernel's OOM kill", ""]
    if mem == "v2":
        L += ["Not measured in this run (the benchmark does not include the leak scenario "
              "yet)."]
    else:
        L += ["Not measurable on this host: the memory controller is attached to cgroup v1 "
              "(`/sys/fs/cgroup/memory`), so the server's cgroup v2 has no `memory.max` to "
              "leak against, no `memory.events` OOM kills and no memory charge; "
              "`memory.pressure` exists but only reflects stalls, not a limit being "
              "approached. A host with the memory controller on cgroup v2 (any systemd "
              "distribution in unified mode) is needed for this row; no number is given "
              "rather than a made-up one."]
    L += ["", END]
    return "\n".join(add_commit_column(L, commit or head_commit()))


def splice(markdown_path, section):
    try:
        with open(markdown_path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(markdown_path, "w") as f:
        f.write(text)


def kept_section(markdown_path):
    """The current section, for bench/report.py to carry over when it rewrites the file."""
    try:
        with open(markdown_path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    if BEGIN not in text or END not in text:
        return None
    return BEGIN + text.partition(BEGIN)[2].partition(END)[0] + END


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results")
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--commit", help="the commit measured [git rev-parse --short HEAD]")
    args = ap.parse_args()
    with open(args.results) as f:
        rows = [json.loads(line) for line in f if line.startswith("{")]
    splice(args.markdown, render(rows, args.commit))


if __name__ == "__main__":
    main()
