#!/usr/bin/env bash
# bench_app.sh: what supervising an app costs (`make bench-app`, also run by
# `make bench`). tests/apps/capp, a small C HTTP app, runs WORKERS processes
# two ways, one after the other, ROUNDS times in an order rotated each round:
#   pool     an app pool of preforkd: the master binds, execs WORKERS capps,
#            reads their notify pipes (READY, WATCHDOG and REQUESTS once a
#            second) and samples /proc once a second
#   alone    capp --listen PORT --procs WORKERS: the same program binds one
#            socket itself and forks; no supervisor at all
# wrk loads each for DURATION s: 50 connections, Connection: close (capp
# answers one request per connection). Reported: median req/s of each, the
# ratio pool/alone (>= 0.99 is the target: supervision under 1%) with its
# lowest-highest over the rounds, and the master's own CPU time per second.
#
# usage: tests/bench_app.sh [-d DURATION_S] [-r ROUNDS] [-w WORKERS]
# environment: PREFORKD_BIN, CAPP_BIN (the GNUmakefile sets them).
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"

DURATION=5
ROUNDS=3
WORKERS=2
CONNS=50
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFORKD_BIN=${PREFORKD_BIN:-$ROOT/build/preforkd}
CAPP_BIN=${CAPP_BIN:-$ROOT/build/capp}

while getopts "d:r:w:h" opt; do
    case $opt in
        d) DURATION=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        w) WORKERS=$OPTARG ;;
        *) echo "usage: $0 [-d DURATION_S] [-r ROUNDS] [-w WORKERS]" >&2; exit 2 ;;
    esac
done

TMP=$(mktemp -d /tmp/preforkd-benchapp-XXXXXX)
RESULTS=$TMP/results
: >"$RESULTS"
PIDS=()

log() { printf '%s\n' "$*" >&2; }
die() { log "bench-app: $*"; exit 1; }


# Stop what this script started, by pid: TERM, then KILL after 5 s.
stop_all() {
    local p i
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do pid_gone "$p" && break; sleep 0.1; done
        pid_gone "$p" || kill -KILL "$p" 2>/dev/null || true
    done
    PIDS=()
}

cleanup() { stop_all; rm -rf "$TMP"; }
trap cleanup EXIT


wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    log "nothing answers on port $1"; exit 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_pool() {
    local port=$1
    cat >"$TMP/pool.conf" <<CONF
pidfile = "$TMP/pid"
control_socket = "$TMP/sock"
error_log = "$TMP/error.log"
log_level = "warn"
app bench {
  command = {"$CAPP_BIN", "--answer", "hello"}
  workers = $WORKERS
  listen { address = "127.0.0.1:$port" }
}
CONF
    "$PREFORKD_BIN" -f -c "$TMP/pool.conf" 2>>"$TMP/error.log" &
    PIDS+=($!)
    MASTER=$!
}

start_alone() {
    "$CAPP_BIN" --answer hello --listen "$1" --procs "$WORKERS" >/dev/null 2>&1 &
    PIDS+=($!)
    MASTER=""
}

# One run: start, load, record req/s (and the master's CPU s per s), stop.
run() {
    local round=$1 kind=$2 port out t0 t1
    port=$(pick_port)
    "start_$kind" "$port"
    wait_port "$port"
    [[ -n $MASTER ]] && t0=$(cpu_ticks "$MASTER")
    out="$TMP/wrk.$round.$kind"
    wrk -t2 -c"$CONNS" -d"${DURATION}s" -H 'Connection: close' "http://127.0.0.1:$port/" >"$out" 2>&1
    if grep -q -e 'Socket errors' -e 'Non-2xx' "$out"; then
        log "  ! wrk reported errors for $kind in round $round:"; cat "$out" >&2
    fi
    echo "$round $kind rps $(awk '/^Requests\/sec:/ { print $2 }' "$out")" >>"$RESULTS"
    if [[ -n $MASTER ]]; then
        t1=$(cpu_ticks "$MASTER")
        echo "$round $kind master_cpu $(awk -v a="$t0" -v b="$t1" -v d="$DURATION" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { printf "%.4f", (b - a) / hz / d }')" >>"$RESULTS"
    fi
    stop_all
    log "  round $round $kind: $(awk '/^Requests\/sec:/ { print $2 }' "$out") req/s"
}

median() {
    awk -v k="$1" -v m="$2" '$2 == k && $3 == m { print $4 }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) printf "%.6g\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio_range() {
    awk '$3 == "rps" && $2 == "pool" { p[$1] = $4 } $3 == "rps" && $2 == "alone" { a[$1] = $4 }
        END { for (r in p) if ((r in a) && a[r] > 0) { x = p[r] / a[r]
                  if (n++ == 0 || x < lo) lo = x; if (n == 1 || x > hi) hi = x }
              if (n) printf "%.3f-%.3f\n", lo, hi }' "$RESULTS"
}

main() {
    command -v wrk >/dev/null || { log "wrk is not installed (make bench installs it)"; exit 1; }
    log "bench-app: $WORKERS workers, $ROUNDS rounds of ${DURATION}s, $CONNS connections, Connection: close"
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then run "$r" pool; run "$r" alone; else run "$r" alone; run "$r" pool; fi
    done
    local pool alone
    pool=$(median pool rps)
    alone=$(median alone rps)
    echo
    echo "app pool vs the same app alone ($WORKERS processes, medians of $ROUNDS rounds, $(date -u '+%Y-%m-%d %H:%M UTC'))"
    printf '%-34s %12s\n' "capp alone (one socket, forked)" "$alone req/s"
    printf '%-34s %12s\n' "capp as a preforkd app pool" "$pool req/s"
    printf '%-34s %12s   (rounds: %s; >= 0.99 = supervision costs under 1%%)\n' "pool / alone" \
        "$(awk -v a="$pool" -v b="$alone" 'BEGIN { printf "%.3f", a / b }')" "$(ratio_range)"
    printf '%-34s %12s\n' "master CPU during the load" "$(median pool master_cpu) s/s"
}

main
