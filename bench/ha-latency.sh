#!/usr/bin/env bash
# bench/ha-latency.sh: how fast a smart-kill decision reaches the HA engines.
#
# Measures, per run, from the decision (the moment an "OpMsg=TIMEOUT Type=PROBE" line is
# written to the controller's message socket: the controller decides on receipt) to
#   1. the trigger file DATA_DIRECTORY/triggerImmediateServerFailover being visible,
#   2. the readiness endpoint (QOS_READINESS_LISTEN) answering 503,
#   3. the client being served by the peer through the VIP, with keepalived using
#      packaging/examples/keepalived.conf (also reported from the trigger file onwards).
# Goals (issue 7): <= 5 ms, <= 5 ms, < 1 s.
#
# Setup, like tests/ha_keepalived.rs: namespaces qosA-benchPID / qosB-benchPID (VRRP
# nodes) and qosC-benchPID (client, bridge), 10.231.77.0/24 inside them only. qoscntrlr
# supervises qos-demo-server in qosA; a plain demo server plays the peer in qosB. After
# each run the controller restarts the server and recovers; the bench waits for the VIP to
# come back before the next run. Everything is removed on exit.
#
# Usage: sudo bench/ha-latency.sh [RUNS]        (default 10)
# Env:   BIN_DIR  directory holding qoscntrlr and qos-demo-server
#                 [target/release if built there, else target/debug]
#        HA_JSON  also write the runs, the keepalived version and the backup's VRRP
#                 settings (priority, advert_int, version) to this JSON file
# Needs: root, keepalived, iproute2, python3.
set -euo pipefail

RUNS=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z ${BIN_DIR:-} ]]; then
    if [[ -x $ROOT/target/release/qoscntrlr && -x $ROOT/target/release/qos-demo-server ]]; then
        BIN_DIR=$ROOT/target/release
    else
        BIN_DIR=$ROOT/target/debug
        (cd "$ROOT" && cargo build --quiet --bins)
    fi
fi
for need in keepalived ip python3; do
    command -v "$need" >/dev/null || { echo "ha-latency: $need not found (apt-get install keepalived iproute2 python3)" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "ha-latency: needs root (network namespaces)" >&2; exit 2; }

TAG=bench$$
NS_A=qosA-$TAG NS_B=qosB-$TAG NS_C=qosC-$TAG
NET=10.231.77
WORK=$(mktemp -d /tmp/qos-ha-latency.XXXXXX)
DATA=$WORK/data-a
PIDS=()

cleanup() {
    set +e
    # SIGTERM first: the controller stops its server, keepalived releases its addresses.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for _ in $(seq 50); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    # Whatever is still inside the namespaces made here is ours.
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    done
    wait 2>/dev/null
    for ns in "$NS_A" "$NS_B" "$NS_C"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

for ns in "$NS_A" "$NS_B" "$NS_C"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip -n "$NS_C" link add br0 type bridge
ip -n "$NS_C" link set br0 up
ip -n "$NS_C" addr add "$NET.3/24" dev br0
host=1
for ns in "$NS_A" "$NS_B"; do
    port=v$host
    ip -n "$ns" link add eth0 type veth peer name "$port" netns "$NS_C"
    ip -n "$NS_C" link set "$port" master br0
    ip -n "$NS_C" link set "$port" up
    ip -n "$ns" addr add "$NET.$host/24" dev eth0
    ip -n "$ns" link set eth0 up
    host=$((host + 1))
done

mkdir -p "$DATA"
keepalived_conf() { # TRIGGER
    sed -e "s#^\\\$VIP_1=.*#\$VIP_1=$NET.100/24#" \
        -e "s#^\\\$VIP_2=.*#\$VIP_2=$NET.101/24#" \
        -e "s#^\\\$QOS_TRIGGER=.*#\$QOS_TRIGGER=$1#" \
        -e "s#198\\.51\\.100\\.11#$NET.1#g" -e "s#198\\.51\\.100\\.12#$NET.2#g" \
        "$ROOT/packaging/examples/keepalived.conf"
}
keepalived_conf "$DATA/triggerImmediateServerFailover" >"$WORK/nodeA.conf"
keepalived_conf "$WORK/nodeB-trigger" >"$WORK/nodeB.conf"
for id in nodeA nodeB; do
    ns=$NS_A; [[ $id == nodeB ]] && ns=$NS_B
    ip netns exec "$ns" keepalived --dont-fork --log-console --vrrp --no-syslog \
        --use-file "$WORK/$id.conf" --config-id "$id" --pid="$WORK/$id.pid" \
        --vrrp_pid="$WORK/$id-vrrp.pid" --checkers_pid="$WORK/$id-checkers.pid" \
        >"$WORK/keepalived-$id.log" 2>&1 &
    PIDS+=($!)
done
ip netns exec "$NS_B" "$BIN_DIR/qos-demo-server" --listen 0.0.0.0:8080 --name peer-$TAG --no-messages \
    >"$WORK/peer.log" 2>&1 &
PIDS+=($!)

cat >"$DATA/dcontroller.ini" <<EOF
SERVER_NAME=ha-latency
SERVER_COMMAND=$BIN_DIR/qos-demo-server --listen 0.0.0.0:8080 --name app-$TAG
QOS_PROBE=http://127.0.0.1:8080/health
QOS_PROBE_INTERVAL=200ms
# The decision is injected as a TIMEOUT/PROBE message; no probe timeout of its own.
QOS_PROBE_TIMEOUT=5min
QOS_RESTART_LIMIT_ENABLE=0
QOS_NSD_TIMEOUT=10s
QOS_SHUTDOWN_TIMEOUT=5s
QOS_READINESS_LISTEN=127.0.0.1:8090
EOF
ip netns exec "$NS_A" "$BIN_DIR/qoscntrlr" run -c "$DATA/dcontroller.ini" >"$WORK/controller.log" 2>&1 &
PIDS+=($!)

echo "ha-latency: $RUNS runs, binaries from $BIN_DIR, keepalived $(keepalived --version 2>&1 | head -1 | awk '{print $2}')"
python3 - "$RUNS" "$DATA" "$NS_A" "$NS_C" "$NET.100" "app-$TAG" "peer-$TAG" \
    "$WORK/nodeB.conf" "$(keepalived --version 2>&1 | head -1)" "${HA_JSON:-}" <<'PY'
import ctypes, json, os, socket, statistics, sys, threading, time

runs, data, ns_a, ns_c, vip, app_name, peer_name, conf_b, keepalived, out_json = sys.argv[1:]
runs = int(runs)
trigger = os.path.join(data, "triggerImmediateServerFailover")
pipe = os.path.join(data, "qoscntrlr.pipe")
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
sys.setswitchinterval(0.0001)  # pollers share the GIL; keep hand-overs sub-millisecond

def enter(ns):
    # Network namespaces are per thread: only this poller thread moves.
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)

def http_get(host, port, path, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            chunks = []
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        text = b"".join(chunks).decode(errors="replace")
        return int(text.split()[1]), text.split("\r\n\r\n", 1)[-1]
    except (OSError, IndexError, ValueError):
        return None, ""

def in_ns(ns, fn):
    box = {}
    def run():
        enter(ns)
        box["value"] = fn()
    t = threading.Thread(target=run)
    t.start()
    t.join()
    return box.get("value")

def served_by(body):
    parts = body.split("'")
    return parts[1] if len(parts) > 1 else None

def wait(cond, limit, what):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    sys.exit(f"ha-latency: timed out waiting for {what}")

def steady():
    return (not os.path.exists(trigger)
            and in_ns(ns_a, lambda: http_get("127.0.0.1", 8090, "/", 1))[0] == 200
            and served_by(in_ns(ns_c, lambda: http_get(vip, 8080, "/", 0.5))[1]) == app_name)

results = []
for run in range(1, runs + 1):
    wait(steady, 60, "a healthy server behind the VIP on node A")
    seen = {}
    start = threading.Barrier(4)
    def poll_trigger():
        start.wait()
        while "trigger" not in seen:
            if os.path.exists(trigger):
                seen["trigger"] = time.monotonic_ns()
            else:
                time.sleep(0.0001)
    def poll_readiness():
        enter(ns_a)
        start.wait()
        while "readiness" not in seen:
            if http_get("127.0.0.1", 8090, "/", 1)[0] == 503:
                seen["readiness"] = time.monotonic_ns()
            else:
                time.sleep(0.0002)
    def poll_vip():
        enter(ns_c)
        start.wait()
        deadline = time.monotonic() + 10
        while "vip" not in seen and time.monotonic() < deadline:
            if served_by(http_get(vip, 8080, "/", 0.05)[1]) == peer_name:
                seen["vip"] = time.monotonic_ns()
            else:
                time.sleep(0.002)
    threads = [threading.Thread(target=f) for f in (poll_trigger, poll_readiness, poll_vip)]
    for t in threads:
        t.start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(pipe)
    start.wait()
    time.sleep(0.05)  # every poller is looping
    t0 = time.monotonic_ns()
    client.sendall(b"OpMsg=TIMEOUT Type=PROBE\n")
    for t in threads:
        t.join(15)
    client.close()
    if len(seen) < 3:
        sys.exit(f"ha-latency: run {run}: only saw {sorted(seen)}")
    r = {
        "trigger": (seen["trigger"] - t0) / 1e6,
        "readiness": (seen["readiness"] - t0) / 1e6,
        "vip": (seen["vip"] - t0) / 1e6,
        "vip_after_trigger": (seen["vip"] - seen["trigger"]) / 1e6,
    }
    results.append(r)
    print(f"run {run}: decision->trigger {r['trigger']:.2f} ms, ->readiness 503 {r['readiness']:.2f} ms, "
          f"->VIP served by peer {r['vip']:.0f} ms (trigger->VIP {r['vip_after_trigger']:.0f} ms)", flush=True)

def row(name, key, goal, fmt):
    values = [r[key] for r in results]
    return (f"| {name} | {fmt.format(min(values))} | {fmt.format(statistics.median(values))} "
            f"| {fmt.format(max(values))} | {goal} |")

print()
print(f"| latency ({runs} runs) | min | median | max | goal |")
print("|---|---|---|---|---|")
print(row("decision -> trigger file visible", "trigger", "<= 5 ms", "{:.2f} ms"))
print(row("decision -> readiness 503", "readiness", "<= 5 ms", "{:.2f} ms"))
print(row("decision -> client served by peer via VIP", "vip", "< 1 s", "{:.0f} ms"))
print(row("trigger file -> client served by peer via VIP", "vip_after_trigger", "< 1 s", "{:.0f} ms"))

def backup_vrrp(path, instance="VI_QOS_1", node="@nodeB"):
    """priority / advert_int / version of node B (the backup) in the instance whose
    VIP the client uses, from keepalived's conditional configuration."""
    found, inside = {}, False
    for line in open(path):
        words = line.split()
        if words[:2] == ["vrrp_instance", instance]:
            inside = True
            continue
        if not inside or not words:
            continue
        if words[0] == "vrrp_instance":
            break
        if words[0].startswith("@"):
            if words[0] != node:
                continue
            words = words[1:]
        if len(words) >= 2 and words[0] in ("priority", "advert_int", "version"):
            found[words[0]] = float(words[1])
    return found

if out_json:
    with open(out_json, "w") as f:
        json.dump({"runs": results, "keepalived": keepalived,
                   "backup_vrrp": backup_vrrp(conf_b)}, f, indent=1)
PY
