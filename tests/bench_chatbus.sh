#!/usr/bin/env bash
# bench_chatbus.sh: chat fan-out on one instance and across three instances
# sharing the room through the chat bus (`make bench-chatbus`, also run by
# `make bench`). tests/chatload drives the same load against both:
#   single   one preforkd (workers = WORKERS x 3), no bus
#   bus      three preforkd (workers = WORKERS each) on one redis-server,
#            clients and senders spread round-robin over the three
# Reported per setup: deliveries/s and latency p50/p99/max (from each
# line's send time to its arrival at each client).
#
# usage: tests/bench_chatbus.sh [-c CLIENTS] [-s SENDERS] [-r RATE] [-d SECONDS] [-w WORKERS]
# environment: PREFORKD_BIN, CHATLOAD_BIN (the GNUmakefile sets them).
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"

CLIENTS=1000
SENDERS=10
RATE=20
SECONDS_=5
WORKERS=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFORKD_BIN=${PREFORKD_BIN:-$ROOT/build/preforkd}
CHATLOAD_BIN=${CHATLOAD_BIN:-$ROOT/build/chatload}

while getopts "c:s:r:d:w:h" opt; do
    case $opt in
        c) CLIENTS=$OPTARG ;;
        s) SENDERS=$OPTARG ;;
        r) RATE=$OPTARG ;;
        d) SECONDS_=$OPTARG ;;
        w) WORKERS=$OPTARG ;;
        *) echo "usage: $0 [-c CLIENTS] [-s SENDERS] [-r RATE] [-d SECONDS] [-w WORKERS]" >&2
           exit 2 ;;
    esac
done

die() { echo "bench_chatbus: $*" >&2; exit 1; }
command -v redis-server >/dev/null || die "redis-server is not installed"
TMP=$(mktemp -d /tmp/preforkd-benchbus-XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p" TERM; done
    rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -n 8192 2>/dev/null || true

# start_instance NAME PORT WORKERS [BUS]: a preforkd in the foreground, by pid.
start_instance() {
    local d=$TMP/$1 i
    mkdir -p "$d"
    {
        printf 'workers = %s\nworker_connections = 4096\n' "$3"
        printf 'pidfile = "%s/pid"\ncontrol_socket = "%s/sock"\nerror_log = "%s/error.log"\n' "$d" "$d" "$d"
        printf 'listen { address = "127.0.0.1:%s" protocol = "chat" }\n' "$2"
        [[ -n ${4:-} ]] && printf 'chat { bus = "%s" }\n' "$4"
    } >"$d/chat.conf"
    "$PREFORKD_BIN" -f -c "$d/chat.conf" 2>>"$d/out" &
    PIDS+=($!)
    for ((i = 0; i < 300; i++)); do [[ -s $d/pid ]] && return 0; sleep 0.1; done
    tail -3 "$d/error.log" "$d/out" >&2 || true
    die "$1 did not start"
}

bus_up() {
    "$PREFORKD_BIN" status --json -c "$TMP/$1/chat.conf" 2>/dev/null | grep -q '"connected":true'
}

run_load() {
    "$CHATLOAD_BIN" -p "$1" -c "$CLIENTS" -s "$SENDERS" -r "$RATE" -d "$SECONDS_" || true
}

echo "== single instance, $((WORKERS * 3)) workers, no bus"
P=$(pick_port)
start_instance single "$P" $((WORKERS * 3))
run_load "$P"
stop_pid "${PIDS[0]}" TERM
PIDS=()

echo "== three instances, $WORKERS workers each, on one redis-server"
RP=$(pick_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
PORTS=()
for n in 1 2 3; do
    P=$(pick_port)
    start_instance "i$n" "$P" "$WORKERS" "redis://127.0.0.1:$RP/0"
    PORTS+=("$P")
done
for n in 1 2 3; do
    for ((i = 0; i < 100; i++)); do bus_up "i$n" && break; sleep 0.1; done
    bus_up "i$n" || die "instance i$n is not on the bus (see $TMP/i$n/error.log)"
done
run_load "$(IFS=,; echo "${PORTS[*]}")"
for n in 1 2 3; do
    "$PREFORKD_BIN" status -c "$TMP/i$n/chat.conf" 2>/dev/null | grep '^chat bus' || true
done
