#!/usr/bin/env bash
# DWCP file transfer over the standard links, against one plain TCP stream on the same link.
#
# For each link (dc = loopback 127.0.0.1; metro, continent, intercontinental, edge = emulated by
# novacron-wanem between namespaces ncwan-a and ncwan-b, receiver in B, sender in A):
#   1. an incompressible payload on /dev/shm (1 GiB on dc and metro, 512 MiB on continent and
#      intercontinental, 128 MiB on edge), received into a directory on /dev/shm too;
#   2. baselines: one iperf3 TCP stream with -C cubic and one with -C bbr, time-bounded
#      (-t IPERF_SECONDS), and one bbr stream sending as many bytes as the payload (-n: slow
#      start and the end of the transfer count as they do for DWCP); the receiver's goodput
#      from iperf3's JSON. "Never below one stream" is judged against the same-payload stream
#      (dc's targets against the time-bounded one);
#   3. `novacron dwcp send --streams auto` over mutual TLS (the default) and again with
#      --insecure; goodput = file bits / the transfer's `seconds`, streams, peak RSS of each end
#      (GNU time); the stored file is compared byte for byte with the payload, then deleted;
#   4. on the emulated links, the TLS transfer again with `--pacing off` (each connection left
#      to its congestion control), the baseline of session pacing; for every DWCP run the TCP
#      segments the sender's namespace sent and sent again (/proc/net/snmp).
# Prints two Markdown tables (goodput; pacing) and the targets (met/missed), and saves them,
# with the raw JSON of every run, under bench/out/.
#
# Usage: sudo bench/dwcp-links.sh [LINK...]   (default: dc metro continent intercontinental edge)
# Environment:
#   DWCP_BENCH_SCALE    multiply every payload size (e.g. 0.1 for a quick run; default 1)
#   IPERF_SECONDS       length of each iperf3 baseline (default 20)
#   DWCP_BENCH_TIMEOUT  seconds allowed per DWCP transfer (default: enough for 10 % of the rate)
#   DWCP_BENCH_PORT     DWCP port (default 7471); IPERF_PORT iperf3 port (default 5271)
#   DWCP_BENCH_NO_BUILD=1  use the binaries already in $CARGO_TARGET_DIR/release
#   DWCP_BENCH_UNPACED=0   skip the `--pacing off` runs
#   CARGO_TARGET_DIR    where cargo builds (default <repo>/target)
# Needs root, iproute2, iperf3, GNU time (/usr/bin/time), jq, timeout, cmp
#   (apt-get install -y iperf3 time jq).
# Exits 1 if a transfer failed or a target was missed, 2 on a setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/wan-lib.sh
. "$ROOT/bench/wan-lib.sh"
SCALE=${DWCP_BENCH_SCALE:-1}
UNPACED=${DWCP_BENCH_UNPACED:-1}
IPERF_SECONDS=${IPERF_SECONDS:-20}
DWCP_PORT=${DWCP_BENCH_PORT:-7471}
IPERF_PORT=${IPERF_PORT:-5271}
NS_A=ncwan-a
NS_B=ncwan-b
ADDR_A=10.250.0.1
ADDR_B=10.250.0.2
RX_NODE=bench-rx
TX_NODE=bench-tx
RSS_TARGET_MIB=256
LINKS=("$@")
if [ ${#LINKS[@]} -eq 0 ]; then
    LINKS=(dc metro continent intercontinental edge)
fi

log() { echo "dwcp-links: $(date -u +%H:%M:%S) $*" >&2; }

# Payload size (MiB, before scaling) per link.
base_mib() {
    case $1 in
        dc | metro) echo 1024 ;;
        continent | intercontinental) echo 512 ;;
        edge) echo 128 ;;
        *) return 1 ;;
    esac
}

for link in "${LINKS[@]}"; do
    base_mib "$link" >/dev/null || { log "unknown link: $link (dc metro continent intercontinental edge)"; exit 2; }
done
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] && awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' ||
    { log "DWCP_BENCH_SCALE must be a positive number"; exit 2; }
[ "$(id -u)" -eq 0 ] || { log "needs root (network namespaces and TUN devices)"; exit 2; }
for tool in ip iperf3 jq timeout cmp awk head; do
    command -v "$tool" >/dev/null || { log "missing $tool (apt-get install -y iproute2 iperf3 jq)"; exit 2; }
done
[ -x /usr/bin/time ] || { log "missing GNU time at /usr/bin/time (apt-get install -y time)"; exit 2; }
[ -d /dev/shm ] || { log "no /dev/shm"; exit 2; }
# Refuse to take over namespaces that exist already (another run, or leftovers of a crash).
wan_refuse_taken

WORK=$(mktemp -d /dev/shm/dwcp-links.XXXXXX)
RX_DIR=$WORK/rx
PKI=$WORK/pki
mkdir -p "$RX_DIR" "$PKI"
OUT_DIR=$ROOT/bench/out
STAMP=$(date -u +%Y-%m-%d-%H%M)
EMU_PID=
EMU_STARTED=0
PIDS=() # every other background process this script started


stop_children() { stop_pids; }

stop_link() { wan_stop_link; }

wan_install_cleanup


if [ "${DWCP_BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building novacron and novacron-wanem (release)"
    (cd "$ROOT" && timeout 1800 cargo build --release --quiet -p novacron -p novacron-wanem)
fi
for bin in "$NC" "$WANEM"; do
    [ -x "$bin" ] || { log "missing $bin"; exit 2; }
done

"$NC" ca init --dir "$PKI" >/dev/null
"$NC" ca issue "$RX_NODE" --dir "$PKI" --san "$ADDR_B" --san 127.0.0.1 >/dev/null
"$NC" ca issue "$TX_NODE" --dir "$PKI" --san "$ADDR_A" --san 127.0.0.1 >/dev/null

# Preset figures from the emulator's own table: rtt_ms rate_mbit loss_pct.
preset_figures() {
    "$WANEM" presets | awk -v p="$1" '$1 == p && $2 ~ /^[0-9.]+$/ { print $2, $3, $4 }'
}

# Bring the emulated link $1 up and wait (at most 10 s) for its ready file.
start_link() {
    EMU_STARTED=1
    wan_up "$WANEM" "$1" "$WORK" --ns-a "$NS_A" --ns-b "$NS_B"
}

# Incompressible payload of $1 MiB, made once per size.
payload() {
    local mib=$1 f=$WORK/payload-${1}M
    if [ ! -f "$f" ]; then
        log "making ${mib} MiB payload from /dev/urandom"
        head -c $((mib * 1048576)) /dev/urandom >"$f.tmp"
        mv "$f.tmp" "$f"
    fi
    echo "$f"
}

# One iperf3 TCP stream, client in A (or loopback), server in B: sets IPERF_MBIT to the
# receiver's Mbit/s (empty if none).
# $3: how much to send (default -t IPERF_SECONDS); $4: seconds allowed.
iperf_run() {
    local cc=$1 tag=$2 i pid amount limit=${4:-$((IPERF_SECONDS + 60))}
    read -ra amount <<<"${3:--t $IPERF_SECONDS}"
    "${IN_B[@]}" timeout "$limit" iperf3 -s -1 -B "$RX_ADDR" -p "$IPERF_PORT" \
        >"$WORK/$tag.server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 50); do
        "${IN_B[@]}" ss -Hltn "sport = :$IPERF_PORT" 2>/dev/null | grep -q . && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    run "${IN_A[@]}" timeout "$limit" iperf3 -c "$RX_ADDR" -p "$IPERF_PORT" \
        "${amount[@]}" -C "$cc" -J >"$WORK/$tag.json" 2>"$WORK/$tag.err" || true
    stop_pid "$pid"
    forget_pid "$pid"
    IPERF_MBIT=$(jq -r '.end.sum_received.bits_per_second // empty | . / 1e6' "$WORK/$tag.json" 2>/dev/null || true)
}

# One DWCP transfer of file $1 (mode tls|insecure|unpaced, the last TLS with --pacing off); the
# sender's JSON goes to $WORK/$tag.json, the peak RSS (KiB) of each end to $WORK/$tag.{tx,rx}.rss,
# the sender namespace's TCP segments sent and sent again to $WORK/$tag.segs. Returns non-zero
# on any failure.
dwcp_run() {
    local file=$1 mode=$2 tag=$3 limit=$4 i pid rc=0 srx=0 s0 s1
    local rx_args tx_args
    if [ "$mode" = tls ] || [ "$mode" = unpaced ]; then
        rx_args=(--tls-dir "$PKI" --node "$RX_NODE")
        tx_args=(--tls-dir "$PKI" --node "$TX_NODE" --server-name "$RX_NODE")
        [ "$mode" = tls ] || tx_args+=(--pacing off)
    else
        rx_args=(--insecure)
        tx_args=(--insecure)
    fi
    rm -f "$RX_DIR"/* "$WORK/$tag".*
    "${IN_B[@]}" timeout -k 5 $((limit + 30)) /usr/bin/time -f %M -o "$WORK/$tag.rx.rss" \
        "$NC" dwcp serve --listen "$RX_ADDR:$DWCP_PORT" --dir "$RX_DIR" --once "${rx_args[@]}" \
        >"$WORK/$tag.rx.out" 2>"$WORK/$tag.rx.log" &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 100); do
        grep -q "listening on" "$WORK/$tag.rx.log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "listening on" "$WORK/$tag.rx.log" 2>/dev/null; then
        log "$tag: receiver did not start:"
        cat "$WORK/$tag.rx.log" >&2
        stop_pid "$pid"
        forget_pid "$pid"
        return 1
    fi
    s0=$(tcp_segments)
    run "${IN_A[@]}" timeout -k 5 "$limit" /usr/bin/time -f %M -o "$WORK/$tag.tx.rss" \
        "$NC" dwcp send "$file" "$RX_ADDR:$DWCP_PORT" "${tx_args[@]}" --streams auto --json --quiet \
        >"$WORK/$tag.json" 2>"$WORK/$tag.tx.log" || rc=$?
    s1=$(tcp_segments)
    echo "$s0 $s1" >"$WORK/$tag.segs"
    # The receiver exits once the session ended; give it 30 s.
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$tag: receiver still running 30 s after the sender finished"
        srx=1
        stop_pid "$pid"
    else
        wait "$pid" || srx=$?
    fi
    forget_pid "$pid"
    if [ "$rc" -ne 0 ]; then
        log "$tag: sender failed (exit $rc$([ "$rc" -eq 124 ] && echo ", timeout after ${limit} s")):"
        tail -n 20 "$WORK/$tag.tx.log" >&2
    fi
    if [ "$srx" -ne 0 ]; then
        log "$tag: receiver exit $srx:"
        tail -n 20 "$WORK/$tag.rx.log" >&2
    fi
    local got=$RX_DIR/$(basename "$file")
    if [ "$rc" -eq 0 ] && [ "$srx" -eq 0 ]; then
        if [ ! -f "$got" ]; then
            log "$tag: receiver stored no $(basename "$file")"
            rc=1
        elif ! cmp -s "$file" "$got"; then
            log "$tag: stored file differs from the payload"
            rc=1
        fi
    fi
    rm -f "$RX_DIR"/* 2>/dev/null || true
    [ "$rc" -eq 0 ] && [ "$srx" -eq 0 ]
}

# TCP segments sent and sent again so far in the sender's namespace (the host's on dc).
tcp_segments() {
    "${IN_A[@]}" awk '/^Tcp:/ { if (!n) { for (i = 2; i <= NF; i++) col[$i] = i; n = 1 }
        else print $col["OutSegs"], $col["RetransSegs"] }' /proc/net/snmp
}

# Percentage of the segments a DWCP run sent that were sent again (or "-").
resent_pct() {
    awk 'NF == 4 && $3 > $1 { printf "%.2f", ($4 - $2) * 100 / ($3 - $1); ok = 1 } END { if (!ok) printf "-" }' \
        "$WORK/$1.segs" 2>/dev/null || echo -
}

# Fields of a DWCP run: Mbit/s streams_max rss_tx_mib rss_rx_mib (or "-" each).
dwcp_fields() {
    local tag=$1 mbit streams tx rx
    mbit=$(jq -r 'if .seconds > 0 then .bytes * 8 / .seconds / 1e6 else empty end' "$WORK/$tag.json" 2>/dev/null || true)
    streams=$(jq -r '.streams_max // empty' "$WORK/$tag.json" 2>/dev/null || true)
    tx=$(awk 'NF == 1 && $1 ~ /^[0-9]+$/ { printf "%.0f", $1 / 1024 }' "$WORK/$tag.tx.rss" 2>/dev/null || true)
    rx=$(awk 'NF == 1 && $1 ~ /^[0-9]+$/ { printf "%.0f", $1 / 1024 }' "$WORK/$tag.rx.rss" 2>/dev/null || true)
    echo "${mbit:--} ${streams:--} ${tx:--} ${rx:--}"
}

mkdir -p "$OUT_DIR"
RAW=$OUT_DIR/dwcp-links-$STAMP.jsonl
: >"$RAW"
DEFAULT_CC=$(sysctl -n net.ipv4.tcp_congestion_control)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
failed=0
declare -A R # results: R[link.key]
NETNS_CC=
IPERF_MBIT=

for link in "${LINKS[@]}"; do
    mib=$(awk -v b="$(base_mib "$link")" -v s="$SCALE" 'BEGIN { m = int(b * s + 0.5); print (m < 1 ? 1 : m) }')
    file=$(payload "$mib")
    if [ "$link" = dc ]; then
        rate=
        IN_A=()
        IN_B=()
        RX_ADDR=127.0.0.1
    else
        read -r _rtt rate _loss <<<"$(preset_figures "$link")" || true
        [ -n "${rate:-}" ] || { log "no preset $link in novacron-wanem"; exit 2; }
        log "$link: link up"
        start_link "$link"
        IN_A=(ip netns exec "$NS_A")
        IN_B=(ip netns exec "$NS_B")
        RX_ADDR=$ADDR_B
    fi
    # Seconds allowed per transfer: the payload at 10 % of the rate (at least 120 s; dc: 1 Gbit/s).
    limit=${DWCP_BENCH_TIMEOUT:-$(awk -v m="$mib" -v r="${rate:-10000}" 'BEGIN {
        t = m * 8.388608 / (r * 0.1); printf "%d", (t < 120 ? 120 : t + 1) }')}
    R[$link.rate]=${rate:-}
    R[$link.mib]=$mib
    [ "$link" = dc ] || NETNS_CC=$("${IN_A[@]}" sysctl -n net.ipv4.tcp_congestion_control)

    for cc in cubic bbr; do
        log "$link: iperf3 -C $cc, ${IPERF_SECONDS} s"
        iperf_run "$cc" "$link.iperf3-$cc"
        v=$IPERF_MBIT
        [ -n "$v" ] || { log "$link: iperf3 $cc gave no result"; cat "$WORK/$link.iperf3-$cc.err" >&2 || true; failed=1; }
        R[$link.$cc]=${v:--}
        log "$link: iperf3 $cc ${v:--} Mbit/s"
        jq -c --arg link "$link" --arg cc "$cc" '{link: $link, tool: "iperf3", cc: $cc,
            bits_per_second: .end.sum_received.bits_per_second,
            retransmits: .end.sum_sent.retransmits}' "$WORK/$link.iperf3-$cc.json" >>"$RAW" 2>/dev/null || true
    done
    log "$link: iperf3 -C bbr, ${mib} MiB (the payload's size)"
    iperf_run bbr "$link.iperf3-bbr-n" "-n $((mib * 1048576))" "$limit"
    v=$IPERF_MBIT
    [ -n "$v" ] || { log "$link: iperf3 bbr -n gave no result"; cat "$WORK/$link.iperf3-bbr-n.err" >&2 || true; failed=1; }
    R[$link.bbrn]=${v:--}
    log "$link: iperf3 bbr, same payload ${v:--} Mbit/s"
    jq -c --arg link "$link" '{link: $link, tool: "iperf3", cc: "bbr", bytes: .end.sum_received.bytes,
        bits_per_second: .end.sum_received.bits_per_second,
        retransmits: .end.sum_sent.retransmits}' "$WORK/$link.iperf3-bbr-n.json" >>"$RAW" 2>/dev/null || true

    modes=(tls insecure)
    [ "$link" = dc ] || [ "$UNPACED" != 1 ] || modes+=(unpaced)
    for mode in "${modes[@]}"; do
        tag=$link.dwcp-$mode
        log "$link: DWCP $mode, ${mib} MiB (limit ${limit} s)"
        ok=1
        dwcp_run "$file" "$mode" "$tag" "$limit" || { ok=0; failed=1; }
        read -r mbit streams tx rx <<<"$(dwcp_fields "$tag")"
        [ "$ok" -eq 1 ] || mbit=FAILED
        R[$link.$mode]=$mbit
        R[$link.$mode.streams]=$streams
        R[$link.$mode.tx]=$tx
        R[$link.$mode.rx]=$rx
        R[$link.$mode.resent]=$(resent_pct "$tag")
        R[$link.$mode.paced]=$(jq -r '.pacing_mbit // "-" | if type == "number" then . * 10 | round / 10 else . end' "$WORK/$tag.json" 2>/dev/null || echo -)
        log "$link: DWCP $mode $mbit Mbit/s, streams $streams, RSS sender $tx MiB, receiver $rx MiB, segments sent again ${R[$link.$mode.resent]} %"
        jq -c --arg link "$link" --arg mode "$mode" --arg tx "$tx" --arg rx "$rx" \
            --arg resent "${R[$link.$mode.resent]}" \
            '. + {link: $link, tool: "dwcp", mode: $mode, rss_sender_mib: $tx, rss_receiver_mib: $rx, segments_resent_pct: $resent}' \
            "$WORK/$tag.json" >>"$RAW" 2>/dev/null ||
            jq -nc --arg link "$link" --arg mode "$mode" '{link: $link, tool: "dwcp", mode: $mode, failed: true}' >>"$RAW"
    done

    if [ "$link" != dc ]; then
        stop_link
        wan_counters "$WORK/$link.wanem.log"
    fi
    rm -f "$file"
done

# ---- report ----------------------------------------------------------------------------------

pct() { awk -v a="$1" -v b="$2" 'BEGIN {
    if (a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b > 0) printf "%.1f", a / b * 100; else printf "-" }'; }
# is a >= b (numbers)?
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && a + 0 >= b + 0) }'; }
size_h() { if [ $(($1 % 1024)) -eq 0 ]; then echo "$(($1 / 1024)) GiB"; else echo "$1 MiB"; fi; }

table() {
    echo "| link | link rate | payload | iperf3 cubic Mbit/s | iperf3 bbr Mbit/s | iperf3 bbr, payload's bytes, Mbit/s | DWCP TLS Mbit/s | % of link rate | ratio DWCP/cubic | ratio DWCP/bbr (payload's bytes) | DWCP insecure Mbit/s | streams (TLS / insecure) | RSS sender MiB (TLS / insecure) | RSS receiver MiB (TLS / insecure) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    local link t i c b n
    for link in "${LINKS[@]}"; do
        t=${R[$link.tls]} i=${R[$link.insecure]} c=${R[$link.cubic]} b=${R[$link.bbr]} n=${R[$link.bbrn]}
        if [ "$link" = dc ]; then
            printf '| dc | loopback | %s | %s | %s | %s | %s | TLS %s %% / insecure %s %% of iperf3 bbr (-t) | TLS %s / insecure %s | TLS %s / insecure %s | %s | %s / %s | %s / %s | %s / %s |\n' \
                "$(size_h "${R[$link.mib]}")" "$(fmt "$c" 0)" "$(fmt "$b" 0)" "$(fmt "$n" 0)" "$(fmt "$t" 0)" \
                "$(pct "$t" "$b")" "$(pct "$i" "$b")" "$(ratio "$t" "$c")" "$(ratio "$i" "$c")" \
                "$(ratio "$t" "$n")" "$(ratio "$i" "$n")" "$(fmt "$i" 0)" \
                "${R[$link.tls.streams]}" "${R[$link.insecure.streams]}" "${R[$link.tls.tx]}" "${R[$link.insecure.tx]}" \
                "${R[$link.tls.rx]}" "${R[$link.insecure.rx]}"
        else
            printf '| %s | %s Mbit/s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s |\n' \
                "$link" "${R[$link.rate]}" "$(size_h "${R[$link.mib]}")" "$(fmt "$c" 2)" "$(fmt "$b" 1)" "$(fmt "$n" 1)" "$(fmt "$t" 1)" \
                "$(pct "$t" "${R[$link.rate]}")" "$(ratio "$t" "$c" 1)" "$(ratio "$t" "$n" 2)" "$(fmt "$i" 1)" \
                "${R[$link.tls.streams]}" "${R[$link.insecure.streams]}" "${R[$link.tls.tx]}" "${R[$link.insecure.tx]}" \
                "${R[$link.tls.rx]}" "${R[$link.insecure.rx]}"
        fi
    done
}

# DWCP with session pacing (the TLS run) against the same transfer with --pacing off.
pacing_table() {
    echo "| link | DWCP TLS Mbit/s | segments sent again % | pacer's rate at the end, Mbit/s | --pacing off Mbit/s | segments sent again % (--pacing off) | goodput paced / unpaced |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    local link t u
    for link in "${LINKS[@]}"; do
        if [ "$link" = dc ] || [ -z "${R[$link.unpaced]:-}" ]; then continue; fi
        t=${R[$link.tls]} u=${R[$link.unpaced]}
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$link" "$(fmt "$t" 1)" "${R[$link.tls.resent]}" \
            "${R[$link.tls.paced]}" "$(fmt "$u" 1)" "${R[$link.unpaced.resent]}" "$(ratio "$t" "$u" 3)"
    done
}

targets() {
    local link t r v
    echo "Targets (DWCP goodput = the TLS run, the product default, unless stated):"
    for link in continent intercontinental; do
        [ -n "${R[$link.mib]:-}" ] || continue
        t=${R[$link.tls]} r=${R[$link.rate]}
        v=$(verdict ge "$t" "$(awk -v r="$r" 'BEGIN { print r * 0.9 }')")
        echo "- $link: DWCP >= 90 % of link rate: $(fmt "$t") of $r Mbit/s ($(pct "$t" "$r") %) - $v"
    done
    if [ -n "${R[intercontinental.mib]:-}" ]; then
        t=${R[intercontinental.tls]} r=${R[intercontinental.cubic]}
        v=$(verdict ge "$t" "$(awk -v r="$r" 'BEGIN { print r * 5 }')")
        echo "- intercontinental: DWCP >= 5 x one cubic stream: $(fmt "$t") vs $(fmt "$r" 2) Mbit/s ($(ratio "$t" "$r" 1) x) - $v"
    fi
    for link in "${LINKS[@]}"; do
        t=${R[$link.tls]} r=${R[$link.bbrn]}
        if [ "$link" = dc ]; then
            echo "- dc: DWCP >= one bbr stream (system default, $DEFAULT_CC): $(fmt "$t" 0) vs $(fmt "$r" 0) Mbit/s ($(ratio "$t" "$r") x) - $(ge "$t" "$r" && echo met || echo "not met (dc is judged by the two dc targets below)")"
        else
            v=$(verdict ge "$t" "$r")
            echo "- $link: DWCP >= one bbr stream (system default, $DEFAULT_CC) sending the same bytes: $(fmt "$t") vs $(fmt "$r") Mbit/s ($(ratio "$t" "$r") x; time-bounded stream $(fmt "${R[$link.bbr]}") Mbit/s) - $v"
        fi
    done
    if [ -n "${R[dc.mib]:-}" ]; then
        t=${R[dc.insecure]} r=${R[dc.bbr]}
        v=$(verdict ge "$t" "$(awk -v r="$r" 'BEGIN { print r * 0.6 }')")
        echo "- dc: DWCP insecure >= 60 % of one iperf3 stream (bbr): $(fmt "$t" 0) vs $(fmt "$r" 0) Mbit/s ($(pct "$t" "$r") %) - $v"
        t=${R[dc.tls]}
        v=$(verdict ge "$t" "$(awk -v r="$r" 'BEGIN { print r * 0.4 }')")
        echo "- dc: DWCP TLS >= 40 % of one iperf3 stream (bbr): $(fmt "$t" 0) vs $(fmt "$r" 0) Mbit/s ($(pct "$t" "$r") %) - $v"
    fi
    for link in "${LINKS[@]}"; do
        local worst=0 m x missing=()
        for m in tls insecure; do
            for x in tx rx; do
                v=${R[$link.$m.$x]}
                if [[ $v =~ ^[0-9]+$ ]]; then
                    [ "$v" -gt "$worst" ] && worst=$v
                else
                    missing+=("$m $([ "$x" = tx ] && echo sender || echo receiver)")
                fi
            done
        done
        if [ "$worst" -gt "$RSS_TARGET_MIB" ]; then
            v=MISSED
        elif [ ${#missing[@]} -gt 0 ]; then
            v="INCOMPLETE (not measured: $(IFS=,; echo "${missing[*]}" | sed 's/,/, /g'), killed after a failed run)"
        else
            v=met
        fi
        echo "- $link: peak RSS <= $RSS_TARGET_MIB MiB per end: highest $worst MiB measured - $v"
    done
}

REPORT=$OUT_DIR/dwcp-links-$STAMP.md
{
    echo "date: $STARTED; $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); kernel $(uname -r); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "system default congestion control: $DEFAULT_CC (in the namespaces: ${NETNS_CC:--}); iperf3: one stream, -t $IPERF_SECONDS and (bbr) -n the payload's bytes, receiver's goodput; DWCP: --streams auto, file bits / transfer seconds; payload scale $SCALE"
    echo
    table
    echo
    if [ "$UNPACED" = 1 ]; then
        echo "Session pacing (TLS; the unpaced run is the same transfer with --pacing off):"
        echo
        pacing_table
        echo
    fi
    targets
} >"$REPORT"
if grep -q "MISSED\|FAILED\|INCOMPLETE" "$REPORT"; then failed=1; fi
echo
cat "$REPORT"
echo
log "saved $REPORT and $RAW"
exit "$failed"
