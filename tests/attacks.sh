#!/usr/bin/env bash
# attacks.sh: preforkd under hostile clients, beside nginx and lighttpd when
# installed (`make check-attacks`). Each server (2 workers, the same docroot)
# gets slowhttptest's four modes (slowloris -H, slow body -B, slow read -X
# of a 10 MiB file, range -R) and a hold of idle keep-alive connections, one
# after the other, while build/latprobe makes one new-connection GET of 1 KiB
# at a time. Prints each attack's probe p99 / max per server, and each
# server's resident memory (all its processes) before -> peak -> 10 s after.
# Everything is bounded: attack length (-d), connection counts (-c scales
# them), and each tool runs under timeout. Figures are noisy on a shared
# machine. Needs PREFORKD_BIN, LATPROBE_BIN, IDLECONNS_BIN.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/lib.sh
. "$here/lib.sh"

SECS=12              # per attack
SCALE=100            # percent of the connection counts below
usage() { echo "usage: $0 [-d SECONDS] [-c PERCENT]" >&2; exit 2; }
while getopts "d:c:h" opt; do
    case $opt in
        d) SECS=$OPTARG ;;
        c) SCALE=$OPTARG ;;
        *) usage ;;
    esac
done
[[ $SECS =~ ^[1-9][0-9]*$ && $SECS -ge 6 && $SCALE =~ ^[1-9][0-9]*$ ]] || usage
n() { echo $(($1 * SCALE / 100)); }

log() { printf '%s\n' "$*" >&2; }
die() { log "attacks: $*"; exit 1; }
for tool in slowhttptest curl pgrep timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
for v in PREFORKD_BIN LATPROBE_BIN IDLECONNS_BIN; do
    [[ -x ${!v:-} ]] || die "$v is not set to an executable"
done
# Clients and servers each hold thousands of descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HOLD=$(n 10000)
if (($(ulimit -n) < HOLD + 1000)); then
    HOLD=$(($(ulimit -n) - 1000))
    log "attacks: descriptor limit $(ulimit -n): holding $HOLD idle connections"
fi

TMP=$(mktemp -d /tmp/preforkd-attacks.XXXXXX)
chmod 755 "$TMP"
DOCROOT=$TMP/www
mkdir -p "$DOCROOT"
head -c 1024 /dev/urandom >"$DOCROOT/1k.bin"
head -c $((10 << 20)) /dev/urandom >"$DOCROOT/10m.bin"
echo ok >"$DOCROOT/index.html"
SERVER_PID=""
ATTACK_PID=""
RESULTS=$TMP/results        # lines: server attack p99 max fails
MEMORY=$TMP/memory          # lines: server before peak after (KiB)
: >"$RESULTS"
: >"$MEMORY"

server_pids() {
    echo "$SERVER_PID"
    pgrep -P "$SERVER_PID" || true
}

server_rss_kib() {
    local total=0 pid rss
    for pid in $(server_pids); do
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${rss:-0}))
    done
    echo "$total"
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local kids k
    kids=$(pgrep -P "$SERVER_PID" || true)
    stop_pid "$SERVER_PID" TERM
    for k in $kids; do
        pid_gone "$k" || kill -KILL "$k" 2>/dev/null || true
    done
    SERVER_PID=""
}

cleanup() {
    trap - EXIT INT TERM
    [[ -n $ATTACK_PID ]] && stop_pid "$ATTACK_PID" TERM
    stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "attacks: interrupted"; exit 130' INT TERM

# start_server NAME: its configuration, started in its own session.
start_server() {
    local name=$1 dir=$TMP/$1 user=""
    mkdir -p "$dir"
    PORT=$(pick_port)
    case $name in
    preforkd)
        cat >"$dir/preforkd.conf" <<EOF
workers = 2
worker_connections = 16384
graceful_timeout = 2
pidfile = "$dir/preforkd.pid"
control_socket = "$dir/preforkd.sock"
error_log = "$dir/error.log"
log_level = "warn"
listen { address = "127.0.0.1:$PORT" protocol = "http" backlog = 511 }
http { root = "$DOCROOT" keepalive_timeout = 60 }
EOF
        setsid "$PREFORKD_BIN" -f -c "$dir/preforkd.conf" >"$dir/out" 2>&1 &
        ;;
    nginx)
        [[ $(id -u) == 0 ]] && user="user root;"
        cat >"$dir/nginx.conf" <<EOF
$user
worker_processes 2;
worker_rlimit_nofile 20000;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  sendfile on;
  keepalive_timeout 60;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server { listen 127.0.0.1:$PORT backlog=511; root $DOCROOT; }
}
EOF
        setsid nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/out" 2>&1 &
        ;;
    lighttpd)
        cat >"$dir/lighttpd.conf" <<EOF
server.document-root = "$DOCROOT"
server.bind = "127.0.0.1"
server.port = $PORT
server.max-worker = 2
server.errorlog = "$dir/error.log"
server.network-backend = "sendfile"
server.max-fds = 20000
server.max-connections = 16384
server.listen-backlog = 511
server.max-keep-alive-idle = 60
server.modules = ()
index-file.names = ( "index.html" )
mimetype.assign = ( "" => "application/octet-stream" )
EOF
        setsid lighttpd -D -f "$dir/lighttpd.conf" >"$dir/out" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        curl -fs -o /dev/null "http://127.0.0.1:$PORT/1k.bin" && return 0
        pid_gone "$SERVER_PID" && break
        sleep 0.1
    done
    cat "$dir/out" >&2
    die "$name did not start"
}

# The kernel's TCP memory back near idle (pages, /proc/net/sockstat): a
# previous attack's orphaned sockets still holding queued data would slow
# the next server down. At most 30 s.
wait_calm() {
    local i mem
    for ((i = 0; i < 60; i++)); do
        mem=$(awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) }' \
              /proc/net/sockstat)
        ((${mem:-0} < 5000)) && return 0
        sleep 0.5
    done
    log "  (TCP memory still at $mem pages)"
}

# attack NAME COMMAND...: run it in the background for SECS seconds, the
# probe from 1 s in to 1 s before its end, the server's memory sampled.
PEAK=0
attack() {
    local name=$1 server=$2
    shift 2
    wait_calm
    timeout -k 5 $((SECS + 10)) "$@" >"$TMP/$server-$name.out" 2>&1 &
    ATTACK_PID=$!
    sleep 1
    "$LATPROBE_BIN" 127.0.0.1 "$PORT" /1k.bin $((SECS - 2)) >"$TMP/probe" 2>&1 &
    local probe=$! rss
    while ! pid_gone "$probe"; do
        rss=$(server_rss_kib)
        ((rss > PEAK)) && PEAK=$rss
        sleep 0.5
    done
    wait "$probe" 2>/dev/null
    stop_pid "$ATTACK_PID" TERM
    ATTACK_PID=""
    local line
    line=$(cat "$TMP/probe")
    log "  $name: $line"
    awk -v s="$server" -v a="$name" '{ print s, a, $8, $10, $4 }' <<<"$line" >>"$RESULTS"
    sleep 2                     # the attack's connections close
}

run_server() {
    local server=$1 url before after
    log "$server"
    start_server "$server"
    url=http://127.0.0.1:$PORT
    "$LATPROBE_BIN" 127.0.0.1 "$PORT" /1k.bin 1 >/dev/null 2>&1   # warm up
    before=$(server_rss_kib)
    PEAK=$before
    attack slowloris "$server" slowhttptest -H -c "$(n 3000)" -r 1000 -i 5 -l "$SECS" -u "$url/1k.bin"
    attack slow-body "$server" slowhttptest -B -c "$(n 3000)" -r 1000 -i 5 -s 16384 -l "$SECS" \
        -u "$url/1k.bin"
    attack slow-read "$server" slowhttptest -X -c "$(n 4000)" -r 2000 -n 1 -w 512 -y 1024 \
        -z 32 -k 3 -l "$SECS" -u "$url/10m.bin"
    attack range "$server" slowhttptest -R -c "$(n 1000)" -r 500 -a 5 -b 2000 -l "$SECS" \
        -u "$url/10m.bin"
    attack "hold-$HOLD" "$server" "$IDLECONNS_BIN" 127.0.0.1 "$PORT" /1k.bin "$HOLD" "$SECS"
    sleep 8
    after=$(server_rss_kib)
    echo "$server $before $PEAK $after" >>"$MEMORY"
    stop_server
}

SERVERS=(preforkd)
command -v nginx >/dev/null && SERVERS+=(nginx)
command -v lighttpd >/dev/null && SERVERS+=(lighttpd)
for s in "${SERVERS[@]}"; do
    run_server "$s"
done

echo
echo "probe (one new-connection GET of 1 KiB at a time) during each attack: p99 / max ms" \
     "(failed probes in brackets); $SECS s per attack, 2 workers each"
printf '%-14s' attack
for s in "${SERVERS[@]}"; do printf ' %-22s' "$s"; done
echo
for a in slowloris slow-body slow-read range "hold-$HOLD"; do
    printf '%-14s' "$a"
    for s in "${SERVERS[@]}"; do
        printf ' %-22s' "$(awk -v s="$s" -v a="$a" '$1 == s && $2 == a {
            printf "%s / %s%s", $3, $4, ($5 > 0 ? " [" $5 "]" : "") }' "$RESULTS")"
    done
    echo
done
echo
echo "resident memory, all processes: before -> peak -> 10 s after the last attack (MiB)"
awk '{ printf "%-10s %.1f -> %.1f -> %.1f\n", $1, $2 / 1024, $3 / 1024, $4 / 1024 }' "$MEMORY"
