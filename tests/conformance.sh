#!/usr/bin/env bash
# conformance.sh: raw HTTP/1.1 requests covering the request-side MUSTs and
# SHOULDs of RFC 9110 and RFC 9112, sent to preforkd, nginx and lighttpd
# serving the same directory (`make check-conformance`). Each server runs
# in the foreground in its own session on a free port of 127.0.0.1, is
# stopped by its pid (TERM, then KILL) and only the processes this script
# started are touched; the approach is tests/bench.sh's.
#
# Each case says what the RFC asks and how strongly:
#   MUST   the RFC says a server MUST reject (or MUST close) / MUST serve
#   SHOULD the RFC says SHOULD (reject, or serve)
#   MAY    the RFC lets the server choose; the strict choice is expected
#          (a lenient answer is counted apart, it breaks no rule)
#   EXTRA  not an RFC requirement: what issue 13 asks of preforkd
#   INFO   either answer conforms; shown, never counted
# and whether it is a refusal (R: the request is malformed; a 2xx/3xx or
# 404 answer, or the right code on a connection kept open where it must
# close, is "lenient") or a request to serve (A). An answer that is neither
# the expected one nor lenient is "wrong" (another code, no answer).
#
# Requests target files that exist, so accepting a malformed request
# shows as 2xx (or 404, when the server took another target than the one
# meant). Expected: "400/close" = status 400, then the server closes;
# "200 200/open" = two pipelined answers, connection kept; "400|501" =
# either code; "2xx" = any 2xx; "A||B" = either answer. A GET with content
# may be refused and closed (RFC 9110 9.3.1), so the framing cases that
# send one also take "400/close".
#
# usage: tests/conformance.sh [SERVER...]   (default: preforkd nginx lighttpd)
# environment: PREFORKD_BIN, H1PROBE_BIN (the GNUmakefile sets them).
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFORKD_BIN=${PREFORKD_BIN:-$ROOT/build/preforkd}
H1PROBE_BIN=${H1PROBE_BIN:-$ROOT/build/h1probe}
SERVERS=("$@")
[[ ${#SERVERS[@]} -gt 0 ]] || SERVERS=(preforkd nginx lighttpd)

TMP=$(mktemp -d /tmp/preforkd-conformance.XXXXXX)
chmod 755 "$TMP"                     # nginx/lighttpd workers may not be root
DOCROOT=$TMP/www
SERVER_PID=""
SERVER_NAME=""
SERVER_PORT=""

log() { printf '%s\n' "$*" >&2; }
die() { log "conformance: $*"; exit 1; }

# --- processes (as tests/bench.sh) -------------------------------------------



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
    stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "conformance: interrupted"; exit 130' INT TERM


make_docroot() {
    mkdir -p "$DOCROOT"
    echo "index" >"$DOCROOT/index.html"
    printf '0123456789' >"$DOCROOT/digits"
    echo "cafe" >"$DOCROOT/caf$(printf '\303\251').txt"
    chmod -R a+rX "$DOCROOT"
}

check_exec() {
    local i comm
    for ((i = 0; i < 50; i++)); do
        comm=$(cat "/proc/$SERVER_PID/comm" 2>/dev/null || true)
        [[ $comm == setsid ]] || break
        sleep 0.02
    done
    [[ $comm != setsid ]] || die "setsid forked: no pid for $SERVER_NAME"
}

wait_ready() {
    local i code
    for ((i = 0; i < 100; i++)); do
        pid_gone "$SERVER_PID" && die "$SERVER_NAME exited at startup: $(cat "$TMP/$SERVER_NAME.out" 2>/dev/null)"
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
            "http://127.0.0.1:$SERVER_PORT/index.html" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    die "$SERVER_NAME not ready after 10 s"
}

# Every server: one worker, keep-alive 60 s, access log off, default limits.
start_server() {
    local name=$1 dir=$TMP/$1
    mkdir -p "$dir"
    SERVER_NAME=$name
    SERVER_PORT=$(pick_port)
    case $name in
    preforkd)
        cat >"$dir/preforkd.conf" <<EOF
workers        = 1
pidfile        = "$dir/preforkd.pid"
control_socket = "$dir/preforkd.sock"
error_log      = "$dir/preforkd.log"
log_level      = "warn"
listen { address = "127.0.0.1:$SERVER_PORT" protocol = "http" }
http { root = "$DOCROOT" keepalive_timeout = 60 }
EOF
        setsid "$PREFORKD_BIN" -f -c "$dir/preforkd.conf" >"$TMP/$name.out" 2>&1 &
        ;;
    nginx)
        local user=""
        [[ $(id -u) == 0 ]] && user="user root;"
        cat >"$dir/nginx.conf" <<EOF
$user
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_timeout 60;
  default_type application/octet-stream;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  server {
    listen 127.0.0.1:$SERVER_PORT;
    root $DOCROOT;
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
server.errorlog = "$dir/error.log"
server.max-keep-alive-idle = 60
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

server_version() {
    case $1 in
    preforkd) echo "preforkd $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" ;;
    nginx) nginx -v 2>&1 | sed 's/^nginx version: //' ;;
    lighttpd) lighttpd -v 2>&1 | head -1 | sed 's/ - .*//' ;;
    esac
}

# --- the cases ----------------------------------------------------------------
# case LEVEL KIND EXPECTED RFC TITLE REQUEST (C escapes, for h1probe)

IDS=() LEVELS=() KINDS=() EXPECTS=() REFS=() TITLES=() REQS=()
case_() {
    IDS+=("$(printf '%02d' $((${#IDS[@]} + 1)))")
    LEVELS+=("$1") KINDS+=("$2") EXPECTS+=("$3") REFS+=("$4") TITLES+=("$5") REQS+=("$6")
}

G='GET /index.html HTTP/1.1\r\nHost: h\r\n'     # a GET's head, minus the end
A300=$(printf "a%.0s" $(seq 300))
A8000=$(printf 'a%.0s' $(seq 8000))

# Request line (RFC 9112 2-3)
case_ MUST   A "200/open"    "9112 3"     "a plain GET (baseline)"                  "$G\r\n"
case_ SHOULD A "200/open"    "9112 2.2"   "empty line before the request line"     "\r\n$G\r\n"
case_ MAY    R "400/close"   "9112 3"     "two SP after the method"                 "GET  /index.html HTTP/1.1\r\nHost: h\r\n\r\n"
case_ MAY    R "400/close"   "9112 3"     "two SP before the version"               "GET /index.html  HTTP/1.1\r\nHost: h\r\n\r\n"
case_ MAY    R "400/close"   "9112 3"     "HTAB between method and target"         "GET\t/index.html HTTP/1.1\r\nHost: h\r\n\r\n"
case_ MAY    R "400/close"   "9112 3"     "SP after the version"                    "GET /index.html HTTP/1.1 \r\nHost: h\r\n\r\n"
case_ MAY    R "400/close"   "9112 2.2"   "bare LF ends the request line"           "GET /index.html HTTP/1.1\nHost: h\r\n\r\n"
case_ MAY    R "400/close"   "9112 2.2"   "bare LF ends a header line"              "${G}X: y\n\r\n"
case_ MAY    R "400/close"   "9112 2.2"   "bare LF as the empty last line"          "$G\n"
case_ SHOULD R "400/close"   "9112 2.2"   "bare CR in the request line"             "GET /index.html HTTP/1.1\rHost: h\r\n\r\n"
case_ MAY    R "400/close"   "9110 5.5"   "bare CR in a field value"                "${G}X: a\rb\r\n\r\n"
case_ SHOULD A "200/open"    "9110 2.5"   "HTTP/1.2 served as HTTP/1.1"             "GET /index.html HTTP/1.2\r\nHost: h\r\n\r\n"
case_ SHOULD R "505|400/close" "9110 15.6.6" "HTTP/2.0 in an HTTP/1 request line"   "GET /index.html HTTP/2.0\r\nHost: h\r\n\r\n"
case_ SHOULD R "505|400/close" "9110 15.6.6" "HTTP/3.0"                             "GET /index.html HTTP/3.0\r\nHost: h\r\n\r\n"
case_ SHOULD R "400|505/close" "9112 2.3" "two-digit minor version HTTP/1.10"       "GET /index.html HTTP/1.10\r\nHost: h\r\n\r\n"
case_ SHOULD R "400/close"   "9112 2.3"   "lower-case http/1.1"                     "GET /index.html http/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD R "501"         "9110 9.1"   "unknown method FOO: 501"                 "FOO /index.html HTTP/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD R "501|400"     "9110 9.1"   "lower-case method (case-sensitive)"      "get /index.html HTTP/1.1\r\nHost: h\r\n\r\n"

# Request target (RFC 9112 3.2, RFC 3986)
case_ SHOULD R "400/close"   "9112 3.2"   "raw UTF-8 in the target"                 "GET /caf\xc3\xa9.txt HTTP/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD R "400/close"   "9112 3.2"   "overlong UTF-8 (C0 AF) in the target"    "GET /index.html?\xc0\xaf HTTP/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD R "400/close"   "9112 3.2"   "control byte 01 in the target"           "GET /index.html?\x01 HTTP/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD R "400/close"   "9112 3.2"   "DEL in the target"                       "GET /index.html?\x7f HTTP/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD A "200/open"    "9112 3.2"   "percent-encoded UTF-8 is served"         "GET /caf%C3%A9.txt HTTP/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD A "200/open"    "9112 3"     "an 8000-octet request target"            "GET /index.html?$A8000 HTTP/1.1\r\nHost: h\r\n\r\n"
case_ EXTRA  A "404/open"    "9110 15.5.5" "a 300-byte name: 404, not 414"          "GET /$A300 HTTP/1.1\r\nHost: h\r\n\r\n"
case_ MUST   A "200/open"    "9112 3.2.2" "absolute-form"                           "GET http://h/index.html HTTP/1.1\r\nHost: h\r\n\r\n"
case_ MUST   A "200/open"    "9112 3.2.2" "absolute-form wins over another Host"    "GET http://h/index.html HTTP/1.1\r\nHost: other\r\n\r\n"
case_ SHOULD R "400/close"   "9110 4.2.4" "userinfo in an absolute-form target"     "GET http://u@h/index.html HTTP/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD R "400/close"   "9112 3.2"   "asterisk-form with GET"                  "GET * HTTP/1.1\r\nHost: h\r\n\r\n"
case_ SHOULD R "400/close"   "9112 3.2"   "authority-form with GET"                 "GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n"
case_ EXTRA  A "200|204/open" "9110 9.3.7" "OPTIONS * (OPTIONS itself is optional)" "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"
case_ EXTRA  A "200|204/open" "9110 9.3.7" "OPTIONS /index.html"                    "OPTIONS /index.html HTTP/1.1\r\nHost: h\r\n\r\n"

# Host (RFC 9112 3.2, RFC 9110 7.2, 4.2.1)
case_ MUST   R "400/close"   "9112 3.2"   "HTTP/1.1 without Host"                   "GET /index.html HTTP/1.1\r\n\r\n"
case_ MUST   R "400/close"   "9112 3.2"   "two Host lines"                          "${G}Host: i\r\n\r\n"
case_ MUST   R "400/close"   "9112 3.2"   "two Host lines, same value"              "${G}Host: h\r\n\r\n"
case_ MUST   R "400/close"   "9110 4.2.1" "empty Host"                              "GET /index.html HTTP/1.1\r\nHost:\r\n\r\n"
case_ MUST   R "400/close"   "9110 7.2"   "Host with userinfo"                      "GET /index.html HTTP/1.1\r\nHost: u@h\r\n\r\n"
case_ MUST   R "400/close"   "9110 7.2"   "Host with a path"                        "GET /index.html HTTP/1.1\r\nHost: h/x\r\n\r\n"
case_ MUST   R "400/close"   "9110 7.2"   "Host with a list"                        "GET /index.html HTTP/1.1\r\nHost: h, i\r\n\r\n"
case_ MUST   R "400/close"   "9110 7.2"   "Host with a bad port"                    "GET /index.html HTTP/1.1\r\nHost: h:x\r\n\r\n"
case_ MUST   A "200/open"    "9110 7.2"   "Host with an IPv6 literal and port"      "GET /index.html HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"
case_ MUST   A "200/close"   "9112 3.2"   "HTTP/1.0 without Host"                   "GET /index.html HTTP/1.0\r\n\r\n"

# Fields (RFC 9112 5, RFC 9110 5)
case_ MUST   R "400/close"   "9112 5.1"   "whitespace between name and colon"       "${G}X-Test : v\r\n\r\n"
case_ SHOULD R "400/close"   "9110 5.1"   "empty field name"                        "$G: v\r\n\r\n"
case_ SHOULD R "400/close"   "9110 5.1"   "field name not a token"                  "${G}X@Y: v\r\n\r\n"
case_ SHOULD R "400/close"   "9112 5"     "field line without a colon"              "${G}X-Test\r\n\r\n"
case_ MAY    R "400/close"   "9112 5.2"   "obs-fold (reject or unfold)"             "${G}X: a\r\n b\r\n\r\n"
case_ MAY    R "400/close"   "9110 5.5"   "NUL in a value (reject or replace)"      "${G}X: a\0b\r\n\r\n"
case_ MAY    R "400/close"   "9110 5.5"   "control byte 01 in a value"              "${G}X: a\x01b\r\n\r\n"
case_ SHOULD A "200/open"    "9110 5.5"   "obs-text in a value"                     "${G}X: caf\xe9\r\n\r\n"
case_ MUST   A "200/open"    "9110 5.5"   "empty field value"                       "${G}X:\r\n\r\n"

# Message body framing (RFC 9112 6)
case_ MUST   R "400|2xx/close" "9112 6.1" "Transfer-Encoding with Content-Length"   "${G}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"
case_ MUST   R "400/close"   "9112 6.1"   "empty Transfer-Encoding, Content-Length" "${G}Transfer-Encoding:\r\nContent-Length: 0\r\n\r\n"
case_ MUST   R "400|501/close" "9112 6.1" "Transfer-Encoding: chunked, gzip"        "${G}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
case_ MUST   R "400|501/close" "9112 6.1" "Transfer-Encoding: identity"             "${G}Transfer-Encoding: identity\r\n\r\n"
case_ SHOULD R "501|400"     "9112 6.1"   "Transfer-Encoding: gzip, chunked"        "${G}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
case_ MUST   R "400|2xx/close" "9112 6.1" "Transfer-Encoding in HTTP/1.0"           "GET /index.html HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
case_ MUST   A "200 200/open||400/close" "9112 7.1" "chunked body, then a pipelined GET"      "${G}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n$G\r\n"
case_ SHOULD R "400/close"   "9112 7.1"   "chunk size not hex"                      "${G}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
case_ MUST   R "400/close"   "9112 6.3"   "Content-Length with a sign"              "${G}Content-Length: +5\r\n\r\nhello"
case_ MUST   R "400/close"   "9112 6.3"   "Content-Length with inner space"         "${G}Content-Length: 1 2\r\n\r\nhello"
case_ MUST   R "400/close"   "9112 6.3"   "Content-Length not a number"             "${G}Content-Length: abc\r\n\r\nhello"
case_ MUST   R "400/close"   "9110 8.6"   "two different Content-Lengths"           "${G}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
case_ INFO   A "400|2xx"     "9110 8.6"   "Content-Length: 5, 5 (either)"           "${G}Content-Length: 5, 5\r\n\r\nhello"
case_ MUST   A "200 200/open||400/close" "9110 8.6" "Content-Length: 005 (1*DIGIT)"           "${G}Content-Length: 005\r\n\r\nhello$G\r\n"
case_ MUST   R "200|400"     "9110 6.5.1" "a Range trailer is not applied"          "GET /digits HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nRange: bytes=0-1\r\n\r\n"

# Connections (RFC 9112 9)
case_ MUST   A "200/close"   "9112 9.6"   "Connection: close is honoured"           "${G}Connection: close\r\n\r\n"
case_ SHOULD A "200/close"   "9112 9.3"   "HTTP/1.0 closes by default"              "GET /index.html HTTP/1.0\r\n\r\n"
case_ MUST   A "200 200/open" "9112 9.3.2" "pipelined GETs answered in order"       "$G\r\n$G\r\n"
case_ MUST   A "200 200/open" "9110 9.3.2" "HEAD has no body (then a GET)"          "HEAD /index.html HTTP/1.1\r\nHost: h\r\n\r\n$G\r\n"
case_ SHOULD A "200 200/open" "9110 7.8"  "unknown Upgrade ignored, then a GET"      "${G}Connection: upgrade\r\nUpgrade: example/1\r\n\r\n$G\r\n"

# --- judging -------------------------------------------------------------------

# status_matches GOT ALTERNATIVES ("400|501", "2xx")
status_matches() {
    local got=$1 alt
    IFS='|' read -ra alts <<<"$2"
    for alt in "${alts[@]}"; do
        [[ $alt == "$got" ]] && return 0
        [[ $alt == [0-9]xx && ${got:0:1} == "${alt:0:1}" && ${#got} == 3 ]] && return 0
    done
    return 1
}

# matches EXPECTED GOT: one alternative of EXPECTED (no "||") against GOT.
# Sets MATCH (statuses) and CONN_OK (connection state).
matches() {
    local exp=$1 got=$2
    local exp_st=${exp%%/*} exp_conn="" got_conn=${got##* } got_st=${got% *}
    [[ $exp == */* ]] && exp_conn=${exp##*/}
    local -a e g
    read -ra e <<<"$exp_st"
    read -ra g <<<"$got_st"
    local i
    MATCH=1
    if ((${#g[@]} < ${#e[@]})); then
        MATCH=0
    else
        for ((i = 0; i < ${#e[@]}; i++)); do
            status_matches "${g[$i]}" "${e[$i]}" || MATCH=0
        done
    fi
    CONN_OK=1
    if [[ -n $exp_conn ]]; then
        [[ $exp_conn == close && $got_conn == closed ]] ||
            [[ $exp_conn == open && $got_conn == open ]] || CONN_OK=0
    fi
}

# judge KIND EXPECTED GOT -> ok | lenient | wrong
judge() {
    local kind=$1 exp=$2 got=$3 alt first=${3%% *} any_match=0
    local -a alts
    mapfile -t alts < <(sed 's/||/\n/g' <<<"$exp")
    for alt in "${alts[@]}"; do
        matches "$alt" "$got"
        if ((MATCH && CONN_OK)); then
            echo ok
            return
        fi
        ((MATCH)) && any_match=1
    done
    if [[ $kind == R ]] && { ((any_match)) || [[ $first == [23][0-9][0-9] || $first == 404 ]]; }; then
        echo lenient            # taken, or the right code on a connection kept open
    else
        echo wrong
    fi
}

# --- run -------------------------------------------------------------------------

command -v curl >/dev/null || die "curl is needed"
[[ -x $H1PROBE_BIN ]] || die "no $H1PROBE_BIN (make build/h1probe)"
make_docroot
declare -A GOT VERDICT VERSION
for s in "${SERVERS[@]}"; do
    case $s in
    preforkd) [[ -x $PREFORKD_BIN ]] || die "no $PREFORKD_BIN" ;;
    *) command -v "$s" >/dev/null || die "$s is not installed (make bench-deps)" ;;
    esac
    log "conformance: $s"
    start_server "$s"
    VERSION[$s]=$(server_version "$s")
    for ((i = 0; i < ${#IDS[@]}; i++)); do
        got=$("$H1PROBE_BIN" -t 400 "$SERVER_PORT" "${REQS[$i]}" 2>&1 || true)
        GOT[$s,$i]=$got
        VERDICT[$s,$i]=$(judge "${KINDS[$i]}" "${EXPECTS[$i]}" "$got")
    done
    stop_server
done

mark() {
    case $1 in
    ok) echo "" ;;
    lenient) echo " LENIENT" ;;
    wrong) echo " WRONG" ;;
    esac
}

printf '%-3s %-6s %-11s %-38s %-23s' id level rfc case expected
for s in "${SERVERS[@]}"; do printf ' | %-22s' "$s"; done
printf '\n'
for ((i = 0; i < ${#IDS[@]}; i++)); do
    printf '%-3s %-6s %-11s %-38.38s %-23s' "${IDS[$i]}" "${LEVELS[$i]}" "${REFS[$i]}" \
        "${TITLES[$i]}" "${EXPECTS[$i]}"
    for s in "${SERVERS[@]}"; do
        v=${VERDICT[$s,$i]}
        [[ ${LEVELS[$i]} == INFO ]] && v=ok
        printf ' | %-22s' "${GOT[$s,$i]}$(mark "$v")"
    done
    printf '\n'
done

printf '\n%s cases. LENIENT: a malformed request taken (2xx, or 404 for another\n' "${#IDS[@]}"
printf 'target), or a connection kept open where it must close. WRONG: another\n'
printf 'answer than the RFC asks (RFC 9110 9.3.1 lets a GET with content be refused).\n\n'
printf '%-34s' ""
for s in "${SERVERS[@]}"; do printf ' %12s' "$s"; done
printf '\n'
row() {
    local title=$1 want=$2 levels=$3 s i n
    printf '%-34s' "$title"
    for s in "${SERVERS[@]}"; do
        n=0
        for ((i = 0; i < ${#IDS[@]}; i++)); do
            [[ " $levels " == *" ${LEVELS[$i]} "* ]] || continue
            [[ ${VERDICT[$s,$i]} == "$want" ]] && n=$((n + 1))
        done
        printf ' %12s' "$n"
    done
    printf '\n'
}
row "lenient where a MUST says reject" lenient "MUST"
row "lenient where a SHOULD says reject" lenient "SHOULD"
row "lenient where the RFC allows it" lenient "MAY"
row "wrong (MUST and SHOULD cases)" wrong "MUST SHOULD"
row "wrong (MAY cases)" wrong "MAY"
row "differs from issue 13 (EXTRA)" wrong "EXTRA"
row "as expected (all but INFO)" ok "MUST SHOULD MAY EXTRA"
printf '\n'
for s in "${SERVERS[@]}"; do printf '%s: %s\n' "$s" "${VERSION[$s]}"; done
