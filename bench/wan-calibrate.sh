#!/usr/bin/env bash
# Calibrate novacron-wanem against ping and iperf3.
#
# For each preset: bring the emulated link up between namespaces ncwan-a and ncwan-b, measure the
# RTT with ping (20 probes, 0.2 s apart) and the single-stream TCP throughput with iperf3 (server
# in B, client in A), and print a Markdown table against the preset's targets:
#   - RTT within 5 % of the preset RTT, on every preset;
#   - throughput at most the preset rate and at least 90 % of it, on loss-free presets (metro);
#     lossy presets only report their single-stream figure.
# Traffic only flows between the two namespaces the emulator creates.
#
# Usage: bench/wan-calibrate.sh [PRESET...]      (default: metro continent intercontinental edge)
# Environment: IPERF_SECONDS (default 10), PING_COUNT (default 20), IPERF_CC (default cubic),
#              LOSS_PCT (override every preset's loss, e.g. 0 to check the rate limit of the
#              lossy presets; the throughput target then applies to them),
#              CARGO_TARGET_DIR (where cargo builds; default <repo>/target).
# Needs root, iproute2, iputils-ping and iperf3. Exits 1 if a target is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/wan-lib.sh
. "$ROOT/bench/wan-lib.sh"
BIN=$WANEM
IPERF_SECONDS=${IPERF_SECONDS:-10}
PING_COUNT=${PING_COUNT:-20}
IPERF_CC=${IPERF_CC:-cubic}
LOSS_PCT=${LOSS_PCT:-}
LOSS_ARGS=()
if [ -n "$LOSS_PCT" ]; then
    LOSS_ARGS=(--loss-pct "$LOSS_PCT")
fi
NS_A=ncwan-a
NS_B=ncwan-b
ADDR_B=10.250.0.2
PRESETS=("$@")
if [ ${#PRESETS[@]} -eq 0 ]; then
    PRESETS=(metro continent intercontinental edge)
fi

WORK=$(mktemp -d /tmp/wan-calibrate.XXXXXX)
EMU_PID=
SERVER_PID=

log() { echo "wan-calibrate: $*" >&2; }


stop_link() {
    stop_pid "$SERVER_PID"
    SERVER_PID=
    stop_pid "$EMU_PID"
    EMU_PID=
    # Leftovers of an emulator that could not clean up after itself.
    if [ -x "$BIN" ]; then
        "$BIN" down --ns-a "$NS_A" --ns-b "$NS_B" >/dev/null 2>&1 || true
    fi
}

wan_install_cleanup

for tool in ip ping iperf3 timeout awk; do
    command -v "$tool" >/dev/null || { log "missing $tool (apt-get install -y iproute2 iputils-ping iperf3)"; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { log "needs root (network namespaces and TUN devices)"; exit 2; }

log "building novacron-wanem (release)"
(cd "$ROOT" && timeout 1200 cargo build --release --quiet -p novacron-wanem)

# Print target RTT (ms), rate (Mbit/s) and loss (%) of a preset from the emulator's own table.
preset_targets() {
    "$BIN" presets | awk -v p="$1" '$1 == p { print $2, $3, $4 }'
}

# Bring the link up for preset $1 and wait (at most 10 s) for its ready file.
start_link() {
    wan_up "$BIN" "$1" "$WORK" "${LOSS_ARGS[@]}" --ns-a "$NS_A" --ns-b "$NS_B"
}

# Start an iperf3 server in B for one test and wait (at most 5 s) until it listens.
start_server() {
    local i
    ip netns exec "$NS_B" iperf3 -s -1 -B "$ADDR_B" >"$WORK/iperf3-server.log" 2>&1 &
    SERVER_PID=$!
    for i in $(seq 50); do
        ip netns exec "$NS_B" ss -ltn 2>/dev/null | grep -q ":5201 " && return 0
        sleep 0.1
    done
    log "iperf3 server did not start"
    return 1
}

failed=0
rows=()
for preset in "${PRESETS[@]}"; do
    read -r rtt_ms rate_mbit loss_pct <<<"$(preset_targets "$preset")" || true
    if [ -z "${rtt_ms:-}" ] || ! [[ $rtt_ms =~ ^[0-9.]+$ ]]; then
        log "unknown or non-emulated preset: $preset"
        exit 2
    fi
    loss_pct=${LOSS_PCT:-$loss_pct}
    log "$preset: link up (loss ${loss_pct} % per direction)"
    start_link "$preset"

    ping_out=$(ip netns exec "$NS_A" timeout 60 ping -c "$PING_COUNT" -i 0.2 -W 2 "$ADDR_B" || true)
    rtt_avg=$(awk -F/ '/^rtt|^round-trip/ { print $5 }' <<<"$ping_out")
    # The median shows the link itself when a few probes met a stall of the (shared) machine.
    rtt_median=$(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' <<<"$ping_out" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
    ping_loss=$(awk '/packet loss/ { for (i = 1; i <= NF; i++) if ($i ~ /%$/) print $i }' <<<"$ping_out")
    log "$preset: ping avg ${rtt_avg:-none} ms, median ${rtt_median:-none} ms, loss ${ping_loss:-?}"

    start_server
    ip netns exec "$NS_A" timeout $((IPERF_SECONDS + 60)) \
        iperf3 -c "$ADDR_B" -t "$IPERF_SECONDS" -C "$IPERF_CC" -f m >"$WORK/$preset.iperf3" 2>&1 || true
    mbit=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' "$WORK/$preset.iperf3")
    retr=$(awk '/sender/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i + 1) }' "$WORK/$preset.iperf3")
    if [ -z "$mbit" ]; then
        log "$preset: iperf3 gave no result:"
        cat "$WORK/$preset.iperf3" >&2
    fi
    log "$preset: iperf3 ${mbit:-none} Mbit/s, ${retr:-?} retransmits"
    stop_link
    wan_counters "$WORK/$preset.wanem.log"

    row=$(awk -v p="$preset" -v trtt="$rtt_ms" -v rtt="${rtt_avg:-}" -v med="${rtt_median:--}" -v rate="$rate_mbit" \
        -v loss="$loss_pct" -v mbit="${mbit:-}" -v cc="$IPERF_CC" -v retr="${retr:-?}" 'BEGIN {
        ok = 1
        if (rtt == "") { rtt = "-"; err = "-"; ok = 0 }
        else { e = (rtt - trtt) / trtt * 100; err = sprintf("%+.1f", e); if (e > 5 || e < -5) ok = 0 }
        if (mbit == "") { mbit = "-"; pct = "-"; ok = 0 }
        else {
            q = mbit / rate * 100; pct = sprintf("%.1f", q)
            if (q > 100 || (loss == 0 && q < 90)) ok = 0
        }
        verdict = ok ? "ok" : "MISSED"
        if (loss != 0 && ok) verdict = "ok (rate: report only)"
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p, trtt, rtt, err, med, rate, mbit, pct, cc, retr, verdict
    }')
    rows+=("$row")
    if [[ $row == *MISSED* ]]; then failed=1; fi
done

echo
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); kernel $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| preset | target RTT ms | ping RTT avg ms | RTT error % | ping RTT median ms | target Mbit/s | iperf3 Mbit/s | % of rate | congestion control | retransmits | check |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"
printf '%s\n' "${rows[@]}"
if [ -n "$LOSS_PCT" ]; then
    echo
    echo "(loss overridden: --loss-pct $LOSS_PCT on every preset)"
fi
exit "$failed"
