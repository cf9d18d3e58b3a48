#!/usr/bin/env bash
# bench.sh: preforkd side by side with nginx and lighttpd (`make bench`).
#
# Each server gets its own configuration in a temp dir: the same document root
# (1k.bin = 1 KiB, 10m.bin = 10 MiB), WORKERS worker processes, sendfile on,
# access log off, keep-alive idle timeout 60 s, backlog 511, a free port on
# 127.0.0.1. The servers run one after the other, ROUNDS times, in an order
# rotated every round; wrk (on 127.0.0.1) loads them for DURATION seconds:
#   ka     1 KiB file, keep-alive, 50 connections    req/s, p99 latency
#   close  1 KiB file, Connection: close, 50 conns   req/s (a connection each)
#   big    10 MiB file, keep-alive, 4 connections    MB/s (wrk's Transfer/sec)
#   idle   RSS of master + workers before and after IDLE_CONNS keep-alive
#          connections that have each done one request (build/idleconns)
#   cpu    utime+stime of master + workers over a wrk run / requests served
# preforkd runs twice in every round: accept = "shared" (the table's
# preforkd column) and accept = "per-cpu" (preforkd-percpu: one socket per
# CPU, workers pinned), and a second table sets the two modes side by side.
# Then the fairness runs: the ka load from wrk pinned to one core (taskset)
# and from both, in each mode: how the requests split between the workers,
# and the p99 (FAIR_DURATION seconds each, default DURATION).
#
# How to read the table: every cell is the MEDIAN over the rounds. The
# "better" column says which way is good for that row; pf/nginx and
# pf/lighttpd are preforkd / peer: for "higher" rows >= 1.00 means preforkd is
# ahead, for "lower" rows <= 1.00 means preforkd is ahead. The last two columns
# give the lowest and highest of the same ratio taken round by round: a range
# that straddles 1.00 says the machine's noise decides that row. Below the table: the cost of
# status reporting (a preforkd built without heartbeats, build/bench-noreport,
# alternated with the normal one on the ka load), the cost of request
# timing (build/bench-notiming: compiled with -DPREFORKD_LATENCY=0, the same
# alternation) and the latency of
# `preforkd status` with 64 workers. With BASE=/path/to/another/preforkd
# (make bench BASE=...), that build runs every row in the same rounds too and
# an A/B table follows (this build / that one): how a change is measured. wrk errors (socket errors, non-2xx) are
# printed in full at the end; they make the numbers of that run suspect.
#
# HTTPS rows (preforkd-tls beside nginx-tls: ssl on, the same self-signed
# P-256 certificate, TLS 1.2 and 1.3, the same TLS 1.2 ciphers and curves,
# session tickets on with a 2 h session lifetime, no session cache, kernel
# TLS only if the kernel has it loaded):
#   hs     1 KiB file, Connection: close, 50 conns   handshakes/s (wrk
#          keeps its SSL objects, SSL_clear: each new connection resumes
#          the last session with its newest ticket, as a returning browser)
#   hsfull 1 KiB file, a new session per connection: handshakes/s of
#          HS_CLIENTS `openssl s_time -new` clients (full handshakes, no
#          resumption; the clients' certificate checks cost about twice the
#          server's CPU, so the rate is the clients' and the server CPU per
#          handshake is the figure that compares the servers)
#   tka    1 KiB file, keep-alive, 50 connections    req/s
#   tbig   10 MiB file, keep-alive, 4 connections    MB/s
#   and the server CPU per request (per file) of each.
# BENCH_ONLY=tls (make bench-tls) runs only these rows.
#
# usage: tests/bench.sh [-d DURATION_S] [-r ROUNDS] [-w WORKERS]
# environment: BENCH_ONLY (tls or empty), PREFORKD_BIN, PREFORKD_NOREPORT_BIN, PREFORKD_NOTIMING_BIN,
# IDLECONNS_BIN (the
# GNUmakefile sets them), IDLE_CONNS (2000), STATUS_WORKERS (64).
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"

DURATION=5
ROUNDS=3
WORKERS=2
IDLE_CONNS=${IDLE_CONNS:-2000}
STATUS_WORKERS=${STATUS_WORKERS:-64}
STATUS_RUNS=20
RELOADS=${RELOADS:-20}               # SIGHUPs under load (zero failures expected)
FAIR_DURATION=${FAIR_DURATION:-}
KA_CONNS=50
SCHEME=http
SERVER_SSL=""
BENCH_ONLY=${BENCH_ONLY:-}
# preforkd's default TLS 1.2 list (server/config.c), for nginx too.
TLS_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
BIG_CONNS=4
WRK_THREADS=2
HS_CLIENTS=4                         # s_time clients of the hsfull row

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFORKD_BIN=${PREFORKD_BIN:-$ROOT/build/preforkd}
PREFORKD_NOREPORT_BIN=${PREFORKD_NOREPORT_BIN:-$ROOT/build/bench-noreport/preforkd}
PREFORKD_NOTIMING_BIN=${PREFORKD_NOTIMING_BIN:-$ROOT/build/bench-notiming/preforkd}
IDLECONNS_BIN=${IDLECONNS_BIN:-$ROOT/build/idleconns}

usage() {
    echo "usage: $0 [-d DURATION_S] [-r ROUNDS] [-w WORKERS]" >&2
    exit 2
}

while getopts "d:r:w:h" opt; do
    case $opt in
        d) DURATION=$OPTARG ;;
        r) ROUNDS=$OPTARG ;;
        w) WORKERS=$OPTARG ;;
        *) usage ;;
    esac
done
for v in "$DURATION" "$ROUNDS" "$WORKERS"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || usage
done

TMP=$(mktemp -d /tmp/preforkd-bench.XXXXXX)
chmod 755 "$TMP"                     # nginx/lighttpd workers may not be root
DOCROOT=$TMP/www
RESULTS=$TMP/results                 # lines: round server metric value
PROBLEMS=$TMP/problems               # wrk outputs that reported errors
SERVER_PID=""                        # the server running now (its master)
SERVER_NAME=""
IDLE_PID=""                          # the idle-connection client, if running
: >"$RESULTS"
: >"$PROBLEMS"

log() { printf '%s\n' "$*" >&2; }
die() { log "bench: $*"; exit 1; }

# --- processes ---------------------------------------------------------------


# The master and its live children, one pid a line.
server_pids() {
    echo "$SERVER_PID"
    pgrep -P "$SERVER_PID" || true
}


# Stop the running server (TERM, which preforkd, nginx and lighttpd all take as
# a stop), then whatever workers of it are left.
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local kids
    kids=$(pgrep -P "$SERVER_PID" || true)
    stop_pid "$SERVER_PID" TERM
    for k in $kids; do
        pid_gone "$k" || kill -KILL "$k" 2>/dev/null || true
    done
    SERVER_PID=""
    SERVER_NAME=""
}

cleanup() {
    trap - EXIT INT TERM
    if [[ -n $IDLE_PID ]]; then
        stop_pid "$IDLE_PID" TERM
    fi
    stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "bench: interrupted"; exit 130' INT TERM

# --- measurements ------------------------------------------------------------

# Sum of VmRSS (KiB) over the server's processes.
server_rss_kib() {
    local total=0 pid rss
    for pid in $(server_pids); do
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${rss:-0}))
    done
    echo "$total"
}

# Sum of utime + stime (clock ticks, /proc/PID/stat fields 14 and 15) over the
# server's processes. The comm field may hold spaces: cut after its ')'.
server_cpu_ticks() {
    local total=0 pid t
    for pid in $(server_pids); do
        t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true)
        total=$((total + ${t:-0}))
    done
    echo "$total"
}


# wrk output -> value. wrk prints binary units (1 KB = 1024 B).
wrk_requests() { awk '/ requests in / { print $1 }' "$1"; }
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_p99_ms() {
    awk '$1 == "99%" {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
        if (f > 0) print v * f
    }' "$1"
}
wrk_mbs() {
    awk '/^Transfer\/sec:/ {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v)
        f = (u == "B") ? 1 / 1048576 : (u == "KB") ? 1 / 1024 : (u == "MB") ? 1 : (u == "GB") ? 1024 : -1
        if (f > 0) print v * f
    }' "$1"
}

# Keep a wrk output that reports socket errors or non-2xx/3xx answers.
check_wrk_errors() {
    local out=$1 what=$2
    if grep -q -e '^  Socket errors:' -e '^  Non-2xx or 3xx responses:' "$out"; then
        {
            echo "--- $what"
            cat "$out"
        } >>"$PROBLEMS"
        log "  ! wrk reported errors on $what (printed at the end)"
    fi
}

record() { echo "$1 $2 $3 $4" >>"$RESULTS"; }

# run_load ROUND NAME LOAD CONNS PATH [wrk options...]: one wrk run with the
# server's CPU time around it; records req/s, p99, MB/s and CPU/request.
run_load() {
    local round=$1 name=$2 load=$3 conns=$4 path=$5
    shift 5
    local out=$TMP/wrk-$round-$name-$load.txt port=$SERVER_PORT
    local threads=$((conns < WRK_THREADS ? conns : WRK_THREADS))
    local t0 t1 req rps
    t0=$(server_cpu_ticks)
    timeout -k 5 $((DURATION + 30)) wrk -t "$threads" -c "$conns" -d "${DURATION}s" \
        --latency "$@" "$SCHEME://127.0.0.1:$port$path" >"$out" 2>&1 ||
        log "  ! wrk exited with $? on $name $load"
    t1=$(server_cpu_ticks)
    check_wrk_errors "$out" "$name, $load, round $round"
    req=$(wrk_requests "$out")
    rps=$(wrk_rps "$out")
    if [[ -z $req || $req == 0 || -z $rps ]]; then
        log "  ! no result from wrk on $name $load:"
        sed 's/^/    /' "$out" >&2
        return 0
    fi
    record "$round" "$name" "${load}_rps" "$rps"
    record "$round" "$name" "${load}_p99_ms" "$(wrk_p99_ms "$out")"
    record "$round" "$name" "${load}_mbs" "$(wrk_mbs "$out")"
    # CPU µs per request (ticks -> µs).
    record "$round" "$name" "${load}_cpu_us" \
        "$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$req" 'BEGIN { print d * 1e6 / hz / n }')"
    record "$round" "$name" "${load}_cpu_ms" \
        "$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$req" 'BEGIN { print d * 1e3 / hz / n }')"
    log "  $load: $rps req/s, p99 $(wrk_p99_ms "$out") ms, $(wrk_mbs "$out") MB/s, cpu $((t1 - t0)) ticks / $req req"
}

# Memory per idle keep-alive connection: RSS before and after IDLE_CONNS
# connections that each completed one request, held open by build/idleconns.
run_idle_memory() {
    local round=$1 name=$2 before after ready="" i
    local out=$TMP/idle-$round-$name.txt
    : >"$out"
    before=$(server_rss_kib)
    "$IDLECONNS_BIN" 127.0.0.1 "$SERVER_PORT" /1k.bin "$IDLE_CONNS" 60 >"$out" 2>&1 &
    IDLE_PID=$!
    for ((i = 0; i < 300; i++)); do          # up to 30 s to open them all
        ready=$(awk '$1 == "ready" || $1 == "failed" { print $1 }' "$out")
        [[ -n $ready ]] && break
        pid_gone "$IDLE_PID" && break
        sleep 0.1
    done
    if [[ $ready != ready ]]; then
        log "  ! idleconns on $name did not get $IDLE_CONNS connections:"
        sed 's/^/    /' "$out" >&2
        stop_pid "$IDLE_PID" TERM
        IDLE_PID=""
        return 0
    fi
    sleep 0.5
    after=$(server_rss_kib)
    stop_pid "$IDLE_PID" TERM
    IDLE_PID=""
    local open
    open=$(awk '$1 == "open" { print $2 }' "$out")
    [[ $open == "$IDLE_CONNS" ]] ||
        log "  ! $name closed idle connections: only ${open:-?} of $IDLE_CONNS still open"
    record "$round" "$name" idle_kib "$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN { print (a - b) / n }')"
    log "  idle: RSS $before KiB -> $after KiB with $IDLE_CONNS connections"
    sleep 0.5                                 # let the server close them
}

# --- servers -----------------------------------------------------------------

make_docroot() {
    mkdir -p "$DOCROOT"
    head -c 1024 /dev/urandom >"$DOCROOT/1k.bin"
    head -c $((10 * 1024 * 1024)) /dev/urandom >"$DOCROOT/10m.bin"
    echo "bench" >"$DOCROOT/index.html"
    chmod -R a+rX "$DOCROOT"
}

# setsid must have exec'd the server in place, so that $! is the server.
check_exec() {
    local i comm
    for ((i = 0; i < 50; i++)); do
        comm=$(cat "/proc/$SERVER_PID/comm" 2>/dev/null || true)
        [[ $comm == setsid ]] || break
        sleep 0.02
    done
    [[ $comm != setsid ]] || die "setsid forked: no pid for $SERVER_NAME"
}

# Wait until the server answers and has its workers; die if it exited.
wait_ready() {
    local i code
    for ((i = 0; i < 100; i++)); do
        pid_gone "$SERVER_PID" && die "$SERVER_NAME exited at startup; its log: $(cat "$TMP/$SERVER_NAME.out" 2>/dev/null)"
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 \
            "$SCHEME://127.0.0.1:$SERVER_PORT/1k.bin" || true)
        if [[ $code == 200 ]] && (($(pgrep -c -P "$SERVER_PID" || true) >= WORKERS)); then
            return 0
        fi
        sleep 0.1
    done
    die "$SERVER_NAME not ready after 10 s"
}

# preforkd_conf FILE PORT WORKERS WORKER_TIMEOUT [ACCEPT]
preforkd_conf() {
    local dir
    dir=$(dirname "$1")
    cat >"$1" <<EOF
workers            = $3
worker_connections = 8192
max_requests       = 0
worker_timeout     = $4
graceful_timeout   = 2
pidfile            = "$dir/preforkd.pid"
control_socket     = "$dir/preforkd.sock"
error_log          = "$dir/preforkd.log"
log_level          = "warn"
listen {
  address  = "127.0.0.1:$2"
  protocol = "http"
  backlog  = 511
  accept   = "${5:-shared}"
}
http {
  root              = "$DOCROOT"
  index             = "index.html"
  access_log        = ""
  keepalive_timeout = 60
}
EOF
}

# start_server NAME: write NAME's configuration, start it in the foreground as
# a background job of this script (SERVER_PID), wait until it is ready. Each
# server gets its own session (setsid, which execs in place: $! is the
# server): lighttpd's master stops its workers with kill(0, SIGTERM), which
# would otherwise hit this script and make too.
start_server() {
    local name=$1 dir=$TMP/$1
    mkdir -p "$dir"
    SERVER_NAME=$name
    SERVER_PORT=$(pick_port)
    SCHEME=http
    SERVER_SSL=""
    [[ $name == *-tls ]] && SCHEME=https
    case $name in
    preforkd-tls)
        preforkd_conf "$dir/preforkd.conf" "$SERVER_PORT" "$WORKERS" 30 shared
        sed -i "s|^  backlog  = 511|  backlog  = 511\n  tls { certificate = \"$TMP/cert.pem\" key = \"$TMP/key.pem\" }|" \
            "$dir/preforkd.conf"
        setsid "$PREFORKD_BIN" -f -c "$dir/preforkd.conf" >"$TMP/$name.out" 2>&1 &
        ;;
    preforkd | preforkd-percpu | preforkd-noreport | preforkd-notiming | preforkd-base)
        local bin=$PREFORKD_BIN timeout=30 accept=shared
        [[ $name == preforkd-percpu ]] && accept=per-cpu
        if [[ $name == preforkd-noreport ]]; then
            bin=$PREFORKD_NOREPORT_BIN
            timeout=86400                    # no heartbeats: keep the watchdog quiet
        elif [[ $name == preforkd-base ]]; then
            bin=$PREFORKD_BASE_BIN
        elif [[ $name == preforkd-notiming ]]; then
            bin=$PREFORKD_NOTIMING_BIN
        fi
        preforkd_conf "$dir/preforkd.conf" "$SERVER_PORT" "$WORKERS" "$timeout" "$accept"
        setsid "$bin" -f -c "$dir/preforkd.conf" >"$TMP/$name.out" 2>&1 &
        ;;
    nginx | nginx-tls)
        local user="" tls=""
        [[ $(id -u) == 0 ]] && user="user root;"
        if [[ $name == nginx-tls ]]; then
            # ssl on the listen line; preforkd's TLS settings.
            SERVER_SSL=" ssl"
            tls="ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_prefer_server_ciphers on;
    ssl_ciphers $TLS_CIPHERS; ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_tickets on; ssl_session_cache off; ssl_session_timeout 2h;"
        fi
        cat >"$dir/nginx.conf" <<EOF
$user
worker_processes $WORKERS;
worker_rlimit_nofile 16384;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 60;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$SERVER_PORT$SERVER_SSL backlog=511;
    root $DOCROOT;
    $tls
  }
}
EOF
        setsid nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$TMP/$name.out" 2>&1 &
        ;;
    lighttpd)
        cat >"$dir/lighttpd.conf" <<EOF
server.document-root = "$DOCROOT"
server.bind = "127.0.0.1"
server.port = $SERVER_PORT
server.max-worker = $WORKERS
server.errorlog = "$dir/error.log"
server.network-backend = "sendfile"
server.max-fds = 16384
server.max-connections = 8192
server.listen-backlog = 511
server.max-keep-alive-idle = 60
server.max-keep-alive-requests = 65535
server.modules = ()
index-file.names = ( "index.html" )
mimetype.assign = ( "" => "application/octet-stream" )
EOF
        setsid lighttpd -D -f "$dir/lighttpd.conf" >"$TMP/$name.out" 2>&1 &
        ;;
    *) die "unknown server $name" ;;
    esac
    SERVER_PID=$!
    check_exec
    wait_ready
}

# The HTTPS rows' server session: warm-up, then handshakes (a connection
# per request), keep-alive and the large file, over TLS.
bench_server_tls() {
    local round=$1 name=$2
    log "round $round: $name"
    start_server "$name"
    timeout -k 5 30 wrk -t "$WRK_THREADS" -c "$KA_CONNS" -d 1s \
        "https://127.0.0.1:$SERVER_PORT/1k.bin" >/dev/null 2>&1 || true
    run_load "$round" "$name" hs "$KA_CONNS" /1k.bin -H 'Connection: close'
    run_full_handshakes "$round" "$name"
    run_load "$round" "$name" tka "$KA_CONNS" /1k.bin
    run_load "$round" "$name" tbig "$BIG_CONNS" /10m.bin
    stop_server
}

# run_full_handshakes ROUND NAME: HS_CLIENTS `openssl s_time -new` for
# DURATION seconds, each a full handshake + GET /1k.bin per connection;
# records hsfull_rps (over the wall-clock time of the whole run) and
# hsfull_cpu_us (server CPU per handshake).
run_full_handshakes() {
    local round=$1 name=$2 k t0 t1 w0 w1 n pids=()
    t0=$(server_cpu_ticks)
    w0=$(date +%s%N)
    for ((k = 0; k < HS_CLIENTS; k++)); do
        timeout -k 5 $((DURATION + 30)) openssl s_time -connect "127.0.0.1:$SERVER_PORT" \
            -new -time "$DURATION" -www /1k.bin >"$TMP/stime-$round-$name-$k.txt" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}" || true          # not the server, also a job of this script
    w1=$(date +%s%N)
    t1=$(server_cpu_ticks)
    n=$(cat "$TMP"/stime-"$round-$name"-*.txt |
        awk '/connections in .* real seconds/ { s += $1 } END { print s + 0 }')
    if ((n == 0)); then
        log "  ! no result from s_time on $name hsfull:"
        sed 's/^/    /' "$TMP"/stime-"$round-$name"-*.txt >&2
        return 0
    fi
    record "$round" "$name" hsfull_rps "$(awk -v n="$n" -v ns=$((w1 - w0)) 'BEGIN { print n * 1e9 / ns }')"
    record "$round" "$name" hsfull_cpu_us \
        "$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN { print d * 1e6 / hz / n }')"
    log "  hsfull: $n full handshakes in $(((w1 - w0) / 1000000)) ms, cpu $((t1 - t0)) ticks"
}

# One self-signed P-256 certificate for both HTTPS servers.
make_tls_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 ||
        die "openssl could not make the test certificate"
    chmod a+r "$TMP/key.pem" "$TMP/cert.pem"
}

# One server's session in a round: warm-up, idle memory, then the loads. The
# no-report and no-timing preforkd only run the ka load (the cost
# comparisons).
bench_server() {
    local round=$1 name=$2 full=1
    [[ $name == preforkd-noreport || $name == preforkd-notiming ]] && full=0
    log "round $round: $name"
    start_server "$name"
    timeout -k 5 30 wrk -t "$WRK_THREADS" -c "$KA_CONNS" -d 1s \
        "http://127.0.0.1:$SERVER_PORT/1k.bin" >/dev/null 2>&1 || true
    if ((full)); then
        run_idle_memory "$round" "$name"
    fi
    run_load "$round" "$name" ka "$KA_CONNS" /1k.bin
    if ((full)); then
        run_load "$round" "$name" close "$KA_CONNS" /1k.bin -H 'Connection: close'
        run_load "$round" "$name" big "$BIG_CONNS" /10m.bin
    fi
    stop_server
}

# bench_reloads FILE: RELOADS SIGHUPs to preforkd, one every 0.4 s, while
# wrk runs keep-alive and then connection-per-request load; every request
# must succeed (no socket error, no non-2xx). One line per load into FILE.
bench_reloads() {
    local load out secs=$((RELOADS * 4 / 10 + 2)) i mode server
    : >"$1"
    for mode in shared per-cpu; do
    for load in keep-alive close; do
        server=preforkd
        [[ $mode == per-cpu ]] && server=preforkd-percpu
        start_server "$server"
        out=$TMP/reloads-$mode-$load.txt
        local hdr=()
        [[ $load == close ]] && hdr=(-H 'Connection: close')
        timeout -k 5 $((secs + 30)) wrk -t "$WRK_THREADS" -c "$KA_CONNS" -d "${secs}s" \
            "${hdr[@]}" "http://127.0.0.1:$SERVER_PORT/1k.bin" >"$out" 2>&1 &
        local wrk_pid=$!
        sleep 1
        for ((i = 0; i < RELOADS; i++)); do
            kill -HUP "$SERVER_PID"
            sleep 0.4
        done
        wait "$wrk_pid" || true
        local gen
        gen=$("$PREFORKD_BIN" status --json -c "$TMP/$server/preforkd.conf" 2>/dev/null |
              sed -n 's/.*"generation":\([0-9]*\).*/\1/p')
        stop_server
        local errors
        errors=$(awk '/Socket errors:/ { n += $4 + $6 + $8 + $10 }
                      /Non-2xx or 3xx responses:/ { n += $5 } END { print n + 0 }' "$out")
        [[ $errors != 0 ]] && check_wrk_errors "$out" "reloads, $load"
        printf '%d reloads under %s load, accept %s: %s requests, %s failed (socket errors + non-2xx), generation %s\n' \
            "$RELOADS" "$load" "$mode" "$(wrk_requests "$out")" "$errors" "${gen:-?}" >>"$1"
    done
    done
}

# Each worker's "requests" from preforkd status --json, one a line, in slot order.
worker_requests() {
    "$PREFORKD_BIN" status --json -c "$TMP/$SERVER_NAME/preforkd.conf" 2>/dev/null |
        sed 's/.*"workers":\[//' | grep -o '"requests":[0-9]*' | cut -d: -f2
}

# bench_fairness FILE: the ka load from wrk pinned to one core, then from
# both cores, in each accept mode: the share of requests each worker served
# (counted by the workers, read through status) and wrk's p99. A line each.
bench_fairness() {
    local mode cores out before after server secs=${FAIR_DURATION:-$DURATION}
    : >"$1"
    for mode in shared per-cpu; do
        server=preforkd
        [[ $mode == per-cpu ]] && server=preforkd-percpu
        for cores in 0 all; do
            start_server "$server"
            out=$TMP/fair-$mode-$cores.txt
            local pin=()
            [[ $cores != all ]] && pin=(taskset -c "$cores")
            sleep 1.1                               # a heartbeat: counts are fresh
            before=$(worker_requests | paste -sd' ')
            timeout -k 5 $((secs + 30)) "${pin[@]}" wrk -t "$WRK_THREADS" -c "$KA_CONNS" \
                -d "${secs}s" --latency "http://127.0.0.1:$SERVER_PORT/1k.bin" >"$out" 2>&1 || true
            sleep 1.1
            after=$(worker_requests | paste -sd' ')
            stop_server
            check_wrk_errors "$out" "fairness, $mode, wrk on CPU $cores"
            awk -v b="$before" -v a="$after" -v m="$mode" -v c="$cores" \
                -v rps="$(wrk_rps "$out")" -v p99="$(wrk_p99_ms "$out")" 'BEGIN {
                    nb = split(b, vb, " "); na = split(a, va, " ")
                    for (i = 1; i <= na; i++) { d[i] = va[i] - (i <= nb ? vb[i] : 0); t += d[i] }
                    s = ""
                    for (i = 1; i <= na; i++)
                        s = s sprintf("%s%.0f%%", i > 1 ? "/" : "", t ? 100 * d[i] / t : 0)
                    printf "fairness, accept %-7s wrk on %-5s %8.0f req/s, p99 %s ms, requests per worker %s\n",
                        m, (c == "all" ? "both" : "CPU " c) ":", rps, (p99 == "" ? "n/a" : p99), s
                }' >>"$1"
        done
    done
}

# `preforkd status` wall time with STATUS_WORKERS workers: median and max,
# as one line into the file $1.
bench_status() {
    local dir=$TMP/status i t0 t1 times=()
    mkdir -p "$dir"
    SERVER_NAME=preforkd-status
    SERVER_PORT=$(pick_port)
    preforkd_conf "$dir/preforkd.conf" "$SERVER_PORT" "$STATUS_WORKERS" 30
    sed -i 's/^worker_connections.*/worker_connections = 256/' "$dir/preforkd.conf"
    setsid "$PREFORKD_BIN" -f -c "$dir/preforkd.conf" >"$TMP/$SERVER_NAME.out" 2>&1 &
    SERVER_PID=$!
    check_exec
    local save_workers=$WORKERS
    WORKERS=$STATUS_WORKERS
    wait_ready
    WORKERS=$save_workers
    sleep 1                                   # a heartbeat from every worker
    local fails=0 err="" rc
    for ((i = 0; i < STATUS_RUNS; i++)); do
        t0=$(date +%s%N)
        rc=0
        timeout 10 "$PREFORKD_BIN" status -c "$dir/preforkd.conf" >"$dir/status.out" 2>&1 || rc=$?
        t1=$(date +%s%N)
        if ((rc == 0)); then
            times+=("$(((t1 - t0) / 1000))")
        else
            fails=$((fails + 1))
            err="exit $rc: $(head -1 "$dir/status.out")"
        fi
    done
    stop_server
    if ((${#times[@]} == 0)); then
        echo "preforkd status with $STATUS_WORKERS workers: n/a, all $STATUS_RUNS runs failed ($err)" >"$1"
        return 0
    fi
    printf '%s\n' "${times[@]}" | sort -n | awk -v w="$STATUS_WORKERS" -v f="$fails" -v e="$err" '
        { v[NR] = $1 }
        END {
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "preforkd status with %d workers: median %.1f ms, max %.1f ms over %d runs (target < 50 ms)",
                w, med / 1000, v[NR] / 1000, NR
            if (f) printf "; %d runs FAILED (%s)", f, e
            printf "\n"
        }' >"$1"
}

# --- report ------------------------------------------------------------------

# Median of METRIC for SERVER over the rounds; empty when none.
median() {
    awk -v s="$1" -v m="$2" '$2 == s && $3 == m && $4 != "" { print $4 }' "$RESULTS" |
        sort -g | awk '{ v[NR] = $1 }
            END { if (NR) printf "%.6g\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# "min-max" of preforkd / PEER over the rounds where both have METRIC: the
# rounds alternate the servers, so each round's ratio compares neighbours in
# time and the range shows how far the machine's noise moves the ratio.
ratio_range() {
    awk -v p="$1" -v m="$2" -v me="${3:-preforkd}" '
        $3 == m && $4 != "" && $2 == me { pf[$1] = $4 }
        $3 == m && $4 != "" && $2 == p { peer[$1] = $4 }
        END {
            for (r in pf) if ((r in peer) && peer[r] != 0) {
                x = pf[r] / peer[r]
                if (n++ == 0 || x < lo) lo = x
                if (n == 1 || x > hi) hi = x
            }
            if (n) printf "%.2f-%.2f\n", lo, hi
        }' "$RESULTS"
}

print_machine() {
    echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
        "kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
    echo "versions: preforkd $("$PREFORKD_BIN" -v 2>&1 | head -1 | sed 's/^preforkd //')," \
        "$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(lighttpd -v 2>&1 | head -1 | cut -d' ' -f1)," \
        "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "settings: $WORKERS workers each, wrk $WRK_THREADS threads, ${DURATION}s per run, $ROUNDS rounds (medians)," \
        "$IDLE_CONNS idle connections"
}

print_table() {
    local fmt='%-40s %-6s %-6s %10s %10s %10s %9s %9s  %-9s %-9s\n'
    # shellcheck disable=SC2059
    printf "$fmt" "load (median of $ROUNDS)" unit better preforkd nginx lighttpd pf/nginx pf/lighttpd \
        "(rounds:" "per-round ratios)"
    printf '%s\n' "$(printf '%.0s-' {1..127})"
    local label unit better metric pf ng lt
    while IFS='|' read -r label unit better metric; do
        pf=$(median preforkd "$metric")
        ng=$(median nginx "$metric")
        lt=$(median lighttpd "$metric")
        # shellcheck disable=SC2059
        awk -v fmt="$fmt" -v l="$label" -v u="$unit" -v b="$better" -v pf="$pf" -v ng="$ng" -v lt="$lt" \
            -v rn="$(ratio_range nginx "$metric")" -v rl="$(ratio_range lighttpd "$metric")" '
            function num(x) { return x == "" ? "n/a" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.3g", x)) }
            function ratio(a, c) { return (a == "" || c == "" || c == 0) ? "n/a" : sprintf("%.2f", a / c) }
            BEGIN { printf fmt, l, u, b, num(pf), num(ng), num(lt), ratio(pf, ng), ratio(pf, lt), rn, rl }'
    done <<'EOF'
1 KiB keep-alive, 50 conns|req/s|higher|ka_rps
1 KiB keep-alive, 50 conns: p99|ms|lower|ka_p99_ms
1 KiB keep-alive: server CPU/request|us|lower|ka_cpu_us
1 KiB Connection: close, 50 conns|req/s|higher|close_rps
1 KiB Connection: close: CPU/request|us|lower|close_cpu_us
10 MiB file, 4 conns|MB/s|higher|big_mbs
10 MiB file: server CPU/file|ms|lower|big_cpu_ms
memory per idle keep-alive connection|KiB|lower|idle_kib
EOF
    echo "(pf/peer = preforkd / peer: >= 1.00 is good where better = higher, <= 1.00 where better = lower;"
    echo " the last two columns: lowest-highest ratio of one round's preforkd to the same round's nginx, lighttpd)"
}

# preforkd-tls against nginx-tls (the ratio columns as in print_table).
print_tls_table() {
    local fmt='%-40s %-6s %-6s %10s %10s %9s  %-9s\n'
    echo
    echo "HTTPS (same certificate, protocols, ciphers and session settings)"
    # shellcheck disable=SC2059
    printf "$fmt" "load (median of $ROUNDS)" unit better preforkd nginx pf/nginx "(rounds)"
    local label unit better metric a b
    while IFS='|' read -r label unit better metric; do
        a=$(median preforkd-tls "$metric")
        b=$(median nginx-tls "$metric")
        awk -v fmt="$fmt" -v l="$label" -v u="$unit" -v bt="$better" -v a="$a" -v b="$b" \
            -v r="$(ratio_pair preforkd-tls nginx-tls "$metric")" '
            function num(x) { return x == "" ? "n/a" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.3g", x)) }
            BEGIN { printf fmt, l, u, bt, num(a), num(b),
                    (a == "" || b == "" || b == 0) ? "n/a" : sprintf("%.2f", a / b), r }'
    done <<'ROWS'
new TLS connection per request, 50 conns|hs/s|higher|hs_rps
new TLS connection: server CPU/request|us|lower|hs_cpu_us
full handshake per request (s_time -new)|hs/s|higher|hsfull_rps
full handshake: server CPU/request|us|lower|hsfull_cpu_us
1 KiB keep-alive over TLS, 50 conns|req/s|higher|tka_rps
1 KiB keep-alive over TLS: p99|ms|lower|tka_p99_ms
1 KiB keep-alive over TLS: CPU/request|us|lower|tka_cpu_us
10 MiB file over TLS, 4 conns|MB/s|higher|tbig_mbs
10 MiB file over TLS: server CPU/file|ms|lower|tbig_cpu_ms
ROWS
}

# ratio_pair A B METRIC: lowest-highest of round-by-round A / B.
ratio_pair() {
    awk -v a="$1" -v b="$2" -v m="$3" '
        $3 == m && $4 != "" && $2 == a { x[$1] = $4 }
        $3 == m && $4 != "" && $2 == b { y[$1] = $4 }
        END {
            for (r in x) if ((r in y) && y[r] != 0) {
                q = x[r] / y[r]
                if (n++ == 0 || q < lo) lo = q
                if (n == 1 || q > hi) hi = q
            }
            if (n) printf "%.2f-%.2f\n", lo, hi
        }' "$RESULTS"
}

print_report_cost() {
    local on off
    on=$(median preforkd ka_rps)
    off=$(median preforkd-noreport ka_rps)
    if [[ -z $on || -z $off ]]; then
        echo "status reporting cost: n/a (a run failed)"
        return 0
    fi
    awk -v on="$on" -v off="$off" 'BEGIN {
        printf "status reporting cost: %.1f%% (reporting on vs off: %.0f vs %.0f req/s, 1 KiB keep-alive, medians; negative = noise)\n",
            (1 - on / off) * 100, on, off }'
}

print_timing_cost() {
    local on off
    on=$(median preforkd ka_rps)
    off=$(median preforkd-notiming ka_rps)
    if [[ -z $on || -z $off ]]; then
        echo "request timing cost: n/a (a run failed)"
        return 0
    fi
    awk -v on="$on" -v off="$off" 'BEGIN {
        printf "request timing cost: %.1f%% (timing on vs compiled out: %.0f vs %.0f req/s, 1 KiB keep-alive, medians; negative = noise)\n",
            (1 - on / off) * 100, on, off }'
}

print_problems() {
    if [[ -s $PROBLEMS ]]; then
        echo
        echo "wrk reported errors (these runs' numbers are suspect):"
        cat "$PROBLEMS"
    fi
}

# --- main --------------------------------------------------------------------

raise_fd_limit() {
    local want=$((IDLE_CONNS * 2 + 1024)) hard
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=1048576
    ((want > 65536)) || want=65536
    ((want <= hard)) || want=$hard
    ulimit -n "$want" 2>/dev/null || true
    (($(ulimit -n) >= IDLE_CONNS + 256)) ||
        die "open file limit $(ulimit -n) (hard $hard) is too low for $IDLE_CONNS connections"
}

# accept = "per-cpu" beside "shared" and the peers, same rounds: pc/shared
# and pc/nginx with their per-round ranges.
print_accept_table() {
    local fmt='%-40s %-6s %-6s %10s %10s %10s %10s %9s %9s  %-9s %-9s\n'
    echo
    echo "accept modes: preforkd accept = \"shared\" and \"per-cpu\" (same rounds, rotated order)"
    # shellcheck disable=SC2059
    printf "$fmt" "load (median of $ROUNDS)" unit better shared per-cpu nginx lighttpd pc/shared pc/nginx \
        "(rounds:" "pc/shared, pc/nginx)"
    local label unit better metric sh pc ng lt
    while IFS='|' read -r label unit better metric; do
        sh=$(median preforkd "$metric")
        pc=$(median preforkd-percpu "$metric")
        ng=$(median nginx "$metric")
        lt=$(median lighttpd "$metric")
        awk -v fmt="$fmt" -v l="$label" -v u="$unit" -v b="$better" -v sh="$sh" -v pc="$pc" \
            -v ng="$ng" -v lt="$lt" -v rs="$(ratio_range preforkd "$metric" preforkd-percpu)" \
            -v rn="$(ratio_range nginx "$metric" preforkd-percpu)" '
            function num(x) { return x == "" ? "n/a" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.3g", x)) }
            function ratio(a, c) { return (a == "" || c == "" || c == 0) ? "n/a" : sprintf("%.2f", a / c) }
            BEGIN { printf fmt, l, u, b, num(sh), num(pc), num(ng), num(lt), ratio(pc, sh), ratio(pc, ng), rs, rn }'
    done <<'EOF'
1 KiB keep-alive, 50 conns|req/s|higher|ka_rps
1 KiB keep-alive, 50 conns: p99|ms|lower|ka_p99_ms
1 KiB keep-alive: server CPU/request|us|lower|ka_cpu_us
1 KiB Connection: close, 50 conns|req/s|higher|close_rps
1 KiB Connection: close: CPU/request|us|lower|close_cpu_us
10 MiB file, 4 conns|MB/s|higher|big_mbs
10 MiB file: server CPU/file|ms|lower|big_cpu_ms
memory per idle keep-alive connection|KiB|lower|idle_kib
EOF
}

# With PREFORKD_BASE_BIN (make bench BASE=/path/to/an/older/preforkd): the
# same rows for that build, run in the same rounds, and this build / it.
print_ab_table() {
    [[ -n ${PREFORKD_BASE_BIN:-} ]] || return 0
    local fmt='%-40s %-6s %-6s %10s %10s %9s  %-9s\n'
    echo
    echo "A/B: this build against $PREFORKD_BASE_BIN (same rounds, rotated order)"
    # shellcheck disable=SC2059
    printf "$fmt" "load (median of $ROUNDS)" unit better this base this/base "(rounds)"
    local label unit better metric a b
    while IFS='|' read -r label unit better metric; do
        a=$(median preforkd "$metric")
        b=$(median preforkd-base "$metric")
        awk -v fmt="$fmt" -v l="$label" -v u="$unit" -v bt="$better" -v a="$a" -v b="$b" \
            -v r="$(ratio_range preforkd-base "$metric")" '
            function num(x) { return x == "" ? "n/a" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.3g", x)) }
            BEGIN { printf fmt, l, u, bt, num(a), num(b),
                    (a == "" || b == "" || b == 0) ? "n/a" : sprintf("%.3f", a / b), r }'
    done <<'EOF'
1 KiB keep-alive, 50 conns|req/s|higher|ka_rps
1 KiB keep-alive, 50 conns: p99|ms|lower|ka_p99_ms
1 KiB keep-alive: server CPU/request|us|lower|ka_cpu_us
1 KiB Connection: close, 50 conns|req/s|higher|close_rps
1 KiB Connection: close: CPU/request|us|lower|close_cpu_us
10 MiB file, 4 conns|MB/s|higher|big_mbs
memory per idle keep-alive connection|KiB|lower|idle_kib
EOF
}

main() {
    for tool in wrk nginx lighttpd curl pgrep timeout; do
        command -v "$tool" >/dev/null || die "$tool not found (make bench-deps installs it)"
    done
    local bins=("$PREFORKD_BIN" "$PREFORKD_NOREPORT_BIN" "$PREFORKD_NOTIMING_BIN" "$IDLECONNS_BIN")
    [[ $BENCH_ONLY == tls ]] && bins=("$PREFORKD_BIN")
    for bin in "${bins[@]}"; do
        [[ -x $bin ]] || die "$bin not built (run it through make bench)"
    done
    raise_fd_limit
    CLK_TCK=$(getconf CLK_TCK)
    make_docroot
    local machine
    machine=$(print_machine)
    log "$machine"

    make_tls_cert
    local servers=(preforkd preforkd-percpu preforkd-noreport preforkd-notiming nginx lighttpd
                   preforkd-tls nginx-tls)
    local round i name
    [[ $BENCH_ONLY == tls ]] && servers=(preforkd-tls nginx-tls)
    if [[ -n ${PREFORKD_BASE_BIN:-} && $BENCH_ONLY != tls ]]; then
        [[ -x $PREFORKD_BASE_BIN ]] || die "PREFORKD_BASE_BIN $PREFORKD_BASE_BIN is not executable"
        servers+=(preforkd-base)
    fi
    local n=${#servers[@]}
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((i = 0; i < n; i++)); do       # rotate the order every round
            name=${servers[(i + round - 1) % n]}
            if [[ $name == *-tls ]]; then
                bench_server_tls "$round" "$name"
            else
                bench_server "$round" "$name"
            fi
        done
    done
    if [[ $BENCH_ONLY == tls ]]; then
        echo
        echo "$machine"
        echo "command: make bench-tls DURATION=$DURATION ROUNDS=$ROUNDS WORKERS=$WORKERS"
        print_tls_table
        print_problems
        return 0
    fi
    log "preforkd status with $STATUS_WORKERS workers"
    bench_status "$TMP/status-line"
    log "preforkd: $RELOADS reloads under load"
    bench_reloads "$TMP/reload-lines"
    log "fairness: wrk on one core and on both, each accept mode"
    bench_fairness "$TMP/fair-lines"

    echo
    echo "$machine"
    echo "command: make bench DURATION=$DURATION ROUNDS=$ROUNDS WORKERS=$WORKERS"
    echo
    print_table
    print_accept_table
    print_tls_table
    print_ab_table
    echo
    print_report_cost
    print_timing_cost
    cat "$TMP/status-line"
    cat "$TMP/reload-lines"
    cat "$TMP/fair-lines"
    print_problems
}

main
