# lib.sh: process and port helpers shared by the benchmark and probe
# scripts (bench.sh, bench_app.sh, conformance.sh), which source it.
# Bash; they stop only processes they started, by pid.

# Gone: no /proc entry, or a zombie (our own child not yet waited for).
pid_gone() {
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 0
    [[ -z $st || $st == Z ]]
}

# Send sig to pid, wait up to 5 s, then SIGKILL it.
stop_pid() {
    local pid=$1 sig=$2 i
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_gone "$pid" && break
        sleep 0.1
    done
    pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A TCP port on 127.0.0.1 that nobody uses, below the ephemeral range (so wrk's
# and idleconns' client ports never collide with it).
pick_port() {
    local port hex i
    for ((i = 0; i < 100; i++)); do
        port=$((20000 + RANDOM % 12000))
        hex=$(printf '%04X' "$port")
        if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ":$hex "; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}
