# Shell functions shared by the benchmark scripts that drive novacron-wanem. Sourced, not run,
# by a script that has set ROOT (the repository's root) first.

# The release binaries the scripts run: in $CARGO_TARGET_DIR, by default <repo>/target.
NC=${CARGO_TARGET_DIR:-$ROOT/target}/release/novacron
WANEM=${CARGO_TARGET_DIR:-$ROOT/target}/release/novacron-wanem

# Stops one background process: signal $2 (default TERM), up to 5 s to exit, then SIGKILL.
stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stops every process in the caller's PIDS array and empties it.
stop_pids() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    PIDS=()
}

# Exits 2 (with the caller's `log`) if namespace NS_A or NS_B exists: another run, or the
# leftovers of a crashed one (WANEM down removes them); a run never takes them over.
wan_refuse_taken() {
    local ns
    for ns in "$NS_A" "$NS_B"; do
        if ip netns list | awk '{ print $1 }' | grep -qx "$ns"; then
            # shellcheck disable=SC2153 # WANEM is the caller's
            log "namespace $ns exists: another emulator is running, or a crashed one left it behind ($WANEM down)"
            exit 2
        fi
    done
}

# Starts `$1 up --preset $2 ARGS...` (ARGS = the rest) in the background, its pid in EMU_PID,
# its output in $3/$2.wanem.out and .log, and waits at most 10 s for its ready file.
wan_up() {
    local wanem=$1 preset=$2 dir=$3 ready i
    shift 3
    ready=$dir/ready
    rm -f "$ready"
    "$wanem" up --preset "$preset" "$@" --ready-file "$ready" \
        >"$dir/$preset.wanem.out" 2>"$dir/$preset.wanem.log" &
    EMU_PID=$!
    for i in $(seq 100); do
        [ -s "$ready" ] && return 0
        kill -0 "$EMU_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "link $preset did not come up:" >&2
    cat "$dir/$preset.wanem.log" >&2
    return 1
}

# Prints the per-direction counters the emulator logged when it stopped.
wan_counters() {
    grep -h "direction stopped" "$1" | sed 's/\x1b\[[0-9;]*m//g; s/.*direction=/  direction=/' >&2 || true
}

# Installs the exit trap both scripts use: the caller defines `stop_link` and sets WORK; on any
# exit the link is stopped and WORK removed, and INT/TERM exit at once through the same path.
wan_install_cleanup() {
    trap wan_cleanup EXIT
    trap 'exit 130' INT TERM
}

wan_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_link
    rm -rf "$WORK"
    exit "$rc"
}

# Stops a link whose emulator the caller started: the caller's `stop_children` first, then the
# emulator (SIGINT lets it delete its namespaces; EMU_PID), then `down` for whatever a killed one
# left (when EMU_STARTED is 1; WANEM, NS_A, NS_B).
wan_stop_link() {
    stop_children
    if [ -n "$EMU_PID" ]; then
        stop_pid "$EMU_PID" INT
        EMU_PID=
    fi
    if [ "$EMU_STARTED" -eq 1 ] && [ -x "$WANEM" ]; then
        timeout 30 "$WANEM" down --ns-a "$NS_A" --ns-b "$NS_B" >/dev/null 2>&1 || true
    fi
}

# Removes pid $1 from the caller's PIDS.
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# Runs a command in the background (its pid in PIDS meanwhile) and waits for it, so that a
# signal reaches the trap at once.
run() {
    "$@" &
    local pid=$! rc=0
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# tx bytes of ncwan0 in namespace $1 (IP bytes the namespace sent over the emulated link).
tx_bytes() { ip -n "$1" -s -j link show ncwan0 | jq '.[0].stats64.tx.bytes'; }

# QMP command $2 (JSON) to the QEMU of socket $1; prints its answer (one JSON object).
qmp() {
    local cmd
    cmd=$(jq -c '. + {id: "bench"}' <<<"$2")
    { printf '%s\n%s\n' '{"execute":"qmp_capabilities"}' "$cmd"; sleep 0.3; } |
        timeout 10 socat -t 1 - "UNIX-CONNECT:$1" 2>/dev/null |
        jq -c 'select(.id == "bench")' 2>/dev/null | tail -n 1
}

# qmp, and fails unless QEMU answered with "return" (said through the caller's `log`).
qmp_ok() {
    local out
    out=$(qmp "$1" "$2")
    jq -e 'has("return")' <<<"${out:-null}" >/dev/null 2>&1 || { log "QMP $2 -> ${out:-no answer}"; return 1; }
}

# $1 with $2 decimals (default 1), or $1 as it is when it is not a number.
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { if (v ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/) printf "%.*f", d, v; else printf "%s", v }'; }
# ratio a/b with $3 decimals, "-" when either is not a number
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN {
    if (a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b > 0) printf "%.*f", d, a / b; else printf "-" }'; }
# "met" when the command succeeds, else "MISSED".
verdict() { if "$@"; then echo met; else echo MISSED; fi; }
