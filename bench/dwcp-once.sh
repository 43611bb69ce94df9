#!/usr/bin/env bash
# One file sent with DWCP over one emulated link, RUNS times, each to a new receiver: what a
# change to the transport does to one transfer, without the baselines of the other scripts.
#
# The link is novacron-wanem's preset LINK between namespaces ncwan-a (sender, 10.250.0.1) and
# ncwan-b (receiver, 10.250.0.2); the receiver is `novacron dwcp serve --insecure --store S`,
# S new for each run (or holding HELD first: HELD is sent to it, untimed, before FILE). Per run,
# one line: seconds (from the sender's start to its exit, which waits for the receiver's
# confirmation), the IP bytes ncwan0 sent in the sender's namespace (MiB, headers and
# retransmissions included), the TCP segments sent again (% of those sent, /proc/net/snmp of
# that namespace), DWCP's payload bytes and final codec (its --json summary). Every received
# file is compared with FILE.
#
# Usage: sudo bench/dwcp-once.sh LINK FILE [RUNS] [-- SEND-ARGS...]
# Environment:
#   HELD                   a file the receiver's store holds before FILE is sent (default none)
#   BENCH_NO_BUILD=1       use the binaries already in $CARGO_TARGET_DIR/release
#   CARGO_TARGET_DIR       where cargo builds (default <repo>/target)
#   NOVACRON_LOG           the sender's log filter (default warn); the senders' logs are saved
#                          as bench/out/dwcp-once-DATE.tx.log
# Needs root, iproute2, jq, cmp. Exits 1 if a transfer failed, 2 on a setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/wan-lib.sh
. "$ROOT/bench/wan-lib.sh"
NS_A=ncwan-a
NS_B=ncwan-b
ADDR=10.250.0.2:7491

log() { echo "dwcp-once: $*" >&2; }

[ $# -ge 2 ] || { log "usage: bench/dwcp-once.sh LINK FILE [RUNS] [-- SEND-ARGS...]"; exit 2; }
LINK=$1
FILE=$(realpath "$2")
shift 2
RUNS=1
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    RUNS=$1
    shift
fi
[ "${1:-}" = "--" ] && shift
SEND_ARGS=("$@")
[ -f "$FILE" ] || { log "$FILE is not a file"; exit 2; }
[ -z "${HELD:-}" ] || [ -f "$HELD" ] || { log "HELD=$HELD is not a file"; exit 2; }
[ "$(id -u)" -eq 0 ] || { log "needs root (namespaces, TUN devices)"; exit 2; }
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet -p novacron -p novacron-wanem) || exit 2
fi
wan_refuse_taken

WORK=$(mktemp -d /dev/shm/dwcp-once.XXXXXX)
PIDS=()
EMU_PID=
EMU_STARTED=0
stop_children() { stop_pids; }
stop_link() { wan_stop_link; }
wan_install_cleanup
OUT=$ROOT/bench/out
mkdir -p "$OUT"
TX_LOG=$OUT/dwcp-once-$(date -u +%Y-%m-%d-%H%M%S).tx.log

EMU_STARTED=1
wan_up "$WANEM" "$LINK" "$WORK" --ns-a "$NS_A" --ns-b "$NS_B" || exit 2

# The TCP segments namespace $1 sent and sent again so far.
segments() {
    ip netns exec "$1" awk '$1 == "Tcp:" { n++ } $1 == "Tcp:" && n == 2 { print $12, $13 }' /proc/net/snmp
}

# Sends $1 to a new receiver over store $2; the summary in $3, and the timing and counters
# around it in $WORK/result as "SECONDS TX_BYTES OUT_SEGS RETRANS_SEGS".
transfer() {
    local file=$1 store=$2 json=$3 dir=$WORK/rx rx_pid t0 t1 tx0 tx1 out0 re0 out1 re1 i
    rm -rf "$dir"
    mkdir -p "$dir" "$store"
    ip netns exec "$NS_B" "$NC" dwcp serve --listen "$ADDR" --dir "$dir" --store "$store" \
        --once --insecure --json >"$WORK/rx.json" 2>"$WORK/rx.log" &
    rx_pid=$!
    PIDS+=("$rx_pid")
    for i in $(seq 100); do
        grep -q "listening on" "$WORK/rx.log" 2>/dev/null && break
        sleep 0.1
    done
    read -r out0 re0 < <(segments "$NS_A")
    tx0=$(tx_bytes "$NS_A")
    t0=$(date +%s.%N)
    ip netns exec "$NS_A" env NOVACRON_LOG="${NOVACRON_LOG:-warn}" "$NC" dwcp send "$file" "$ADDR" \
        --insecure --json --quiet "${SEND_ARGS[@]}" >"$json" 2>>"$TX_LOG" || return 1
    t1=$(date +%s.%N)
    tx1=$(tx_bytes "$NS_A")
    read -r out1 re1 < <(segments "$NS_A")
    wait "$rx_pid" || return 1
    forget_pid "$rx_pid"
    cmp -s "$file" "$dir/$(basename "$file")" || { log "the received $(basename "$file") differs"; return 1; }
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $((tx1 - tx0)) $((out1 - out0)) $((re1 - re0))" >"$WORK/result"
}

echo "| run | seconds | wire MiB | segments sent again % | payload bytes | codec |"
echo "| ---: | ---: | ---: | ---: | ---: | --- |"
for run in $(seq "$RUNS"); do
    store=$WORK/store.$run
    if [ -n "${HELD:-}" ]; then
        transfer "$(realpath "$HELD")" "$store" "$WORK/held.json" || { log "sending HELD failed"; exit 1; }
    fi
    if ! transfer "$FILE" "$store" "$WORK/tx.json"; then
        log "run $run failed:"
        tail -n 3 "$TX_LOG" "$WORK/rx.log" >&2
        exit 1
    fi
    read -r secs bytes out re <"$WORK/result"
    echo "| $run | $(fmt "$secs" 2) | $(fmt "$(awk -v b="$bytes" 'BEGIN { print b / 1048576 }')" 2) | $(fmt "$(awk -v o="$out" -v r="$re" 'BEGIN { print (o > 0) ? 100 * r / o : 0 }')" 2) | $(jq -r '.wire_bytes' "$WORK/tx.json") | $(jq -r '.codec // "-"' "$WORK/tx.json") |"
done
log "senders' logs in $TX_LOG"
