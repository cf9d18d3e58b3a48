#!/usr/bin/env bash
# check_tls.sh: testssl.sh (Debian's testssl package) against a preforkd
# HTTPS listener with its default TLS settings (`make check-tls`). A test CA
# and a localhost certificate are made here with the openssl CLI; testssl
# trusts the CA (--add-ca). Checked: protocols (-p), cipher categories (-s),
# forward secrecy (-f), server defaults and the certificate (-S) and every
# vulnerability test (-U). Fails on any finding of severity LOW or worse
# (a vulnerability, an offered weak protocol or cipher), and prints them,
# except two that describe the throw-away test certificate and DNS, not the
# server: cert_revocation (the test CA publishes no CRL or OCSP URI) and
# DNS_CAArecord (127.0.0.1 has no DNS name, so no CAA record).
# Takes a few minutes; not part of `make test`.
# usage: tests/check_tls.sh   (environment: PREFORKD_BIN)
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFORKD_BIN=${PREFORKD_BIN:-$ROOT/build/preforkd}
TMP=$(mktemp -d /tmp/preforkd-checktls.XXXXXX)
MASTER_PID=""

log() { printf '%s\n' "$*" >&2; }
die() { log "check-tls: $*"; exit 1; }

cleanup() {
    if [[ -n $MASTER_PID ]] && ! pid_gone "$MASTER_PID"; then
        stop_pid "$MASTER_PID" TERM
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

make_certs() {
    cd "$TMP"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
        -subj '/CN=preforkd check-tls CA' -keyout ca.key -out ca.pem 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >san.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout key.pem -out req.csr 2>/dev/null
    openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 \
        -extfile san.ext -out cert.pem 2>/dev/null
    cd - >/dev/null
}

start_preforkd() {
    local port=$1
    mkdir -p "$TMP/www"
    echo "check-tls" >"$TMP/www/index.html"
    cat >"$TMP/preforkd.conf" <<EOF
workers        = 2
pidfile        = "$TMP/preforkd.pid"
control_socket = "$TMP/preforkd.sock"
error_log      = "$TMP/error.log"
http { root = "$TMP/www" }
listen {
  address = "127.0.0.1:$port"
  tls { certificate = "$TMP/cert.pem"  key = "$TMP/key.pem" }
}
EOF
    "$PREFORKD_BIN" -f -c "$TMP/preforkd.conf" >"$TMP/preforkd.out" 2>&1 &
    MASTER_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        curl -s --cacert "$TMP/ca.pem" --resolve "localhost:$port:127.0.0.1" \
            "https://localhost:$port/" >/dev/null && return 0
        pid_gone "$MASTER_PID" && break
        sleep 0.1
    done
    cat "$TMP/preforkd.out" "$TMP/error.log" >&2 2>/dev/null || true
    echo "check-tls: preforkd did not come up" >&2
    exit 1
}

main() {
    command -v testssl >/dev/null || { echo "testssl not installed (apt-get install testssl.sh)" >&2; exit 1; }
    make_certs
    local port
    port=$(pick_port)
    start_preforkd "$port"
    log "testssl against preforkd on 127.0.0.1:$port (a few minutes)"
    timeout -k 10 900 testssl --quiet --color 0 --warnings batch --add-ca "$TMP/ca.pem" \
        --ip 127.0.0.1 -p -s -f -S -U --jsonfile "$TMP/testssl.json" \
        "localhost:$port" >"$TMP/testssl.txt" 2>&1 || true
    [[ -s $TMP/testssl.json ]] || { cat "$TMP/testssl.txt"; echo "check-tls: testssl wrote no result" >&2; exit 1; }
    # One finding per line: severity, id, finding (testssl's JSON is one
    # object per line in an array).
    local bad
    bad=$(python3 -c '
import json, sys
about_the_test_cert = ("cert_revocation", "DNS_CAArecord")
bad = [f for f in json.load(open(sys.argv[1]))
       if f.get("severity") in ("LOW", "MEDIUM", "HIGH", "CRITICAL")
       and f.get("id") not in about_the_test_cert]
for f in bad:
    print("%-8s %-28s %s" % (f["severity"], f["id"], f["finding"]))
' "$TMP/testssl.json")
    grep -E '^ (SSLv|TLS 1|Obtained|Forward|Vulnerab)' "$TMP/testssl.txt" || true
    echo "check-tls: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$TMP/testssl.json") findings checked"
    if [[ -n $bad ]]; then
        echo "check-tls: FAILED, findings of severity LOW or worse:"
        echo "$bad"
        exit 1
    fi
    echo "check-tls: OK (no vulnerability, no weak protocol or cipher)"
}

main
