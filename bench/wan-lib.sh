# Shell functions shared by the benchmark scripts that drive novacron-wanem. Sourced, not run.

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
