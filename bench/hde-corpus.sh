#!/usr/bin/env bash
# DWCP's data reduction (HDE, PBA, deduplication) on a corpus of VM memory images, disk images,
# random data and logs, against standard tools over the same emulated links, in one run.
#
# The corpus is made here, nothing is downloaded, and kept in CORPUS_DIR (made again only for
# the items that are missing):
#   mem-early, mem-late  QEMU's migration stream of one running test guest (MEMORY, TCG), written
#                        to a file with QMP `migrate file:` EARLY and LATE seconds after its first
#                        heartbeat; the guest runs on (`cont`) between the two;
#   disk, disk-later     qcow2 of an ext4 file system (mkfs.ext4 -d) holding the test guest's files
#                        and part of this machine's /usr/lib/x86_64-linux-gnu and /usr/share/doc;
#                        disk-later: the same file system with about 5 % of its files rewritten
#                        and new files added (debugfs), converted again;
#   random               /dev/urandom;
#   text                 generated log lines (as log_file in crates/novacron/tests/dwcp/main.rs).
# Each link gets the first SAMPLE MiB of every item (all of it when shorter; 256 MiB on dc and
# metro, 128 on continent and intercontinental, 32 on edge), copied to /dev/shm.
#
# For each link (dc = loopback 127.0.0.1; metro, continent, intercontinental, edge = emulated by
# novacron-wanem between namespaces ncwan-a 10.250.0.1 and ncwan-b 10.250.0.2, sender in A,
# receiver in B) and each item, in the same run:
#   1. DWCP: `novacron dwcp send --insecure --json` (defaults: --compress auto, --dedup on,
#      --streams auto) to `novacron dwcp serve --insecure --store S` whose content store S is
#      new and empty, so that nothing is known beforehand;
#   2. one TCP stream (the system's default congestion control) through socat: `zstd -1`, `lz4`
#      and `zstd -19` (`COMP -c FILE | socat`, receiver `socat | COMP -d`), and for random data
#      the file as it is (raw TCP), which the expansion is measured against; `zstd -19` is
#      stopped after twice the time `zstd -1` took, plus 5 s (then it moves less than half as
#      fast, and the table says "<");
#   3. the PBA oracle: DWCP with each fixed --compress setting (none lz4 zstd:1 zstd:3 zstd:9
#      zstd:19), each with a new store; from the second on, a setting is stopped after twice the
#      best time so far plus 5 s (it cannot be the best);
#   4. the local size of `zstd -3` of the sample, which the bytes target compares with.
# Then, per pair (mem: mem-late against mem-early; disk: disk-later against disk):
#   5. `rsync -az` (a daemon in B whose module holds the earlier sample under the later one's
#      name) against DWCP sending the later sample to the receiver whose store holds the earlier
#      one (the store of step 1's run of the earlier item).
# Time = from the sender's start to the receiver's end (DWCP: the sender's exit, which waits for
# the receiver's confirmation); effective throughput = sample bytes / time. Bytes on the wire =
# the tx bytes of ncwan0 in the sender's namespace around the transfer (IP bytes, headers and
# retransmissions included), and for the pairs also the receiver's (rsync's checksums, DWCP's
# store index); not measured on dc. Every received file is compared with cmp.
# Prints Markdown tables and the targets (met/MISSED) and saves them, a JSON line per run, the
# logs of every run and the corpus manifest under bench/out/.
#
# Usage: sudo bench/hde-corpus.sh [LINK...]   (default: metro continent intercontinental edge)
# Environment:
#   CORPUS_BENCH_SCALE     multiply every size (corpus, guest memory filled, samples) (default 1;
#                          e.g. 0.05 for a quick run); each scale has its own corpus directory
#   CORPUS_DIR             corpus directory (default bench/out/corpus/scale-SCALE)
#   CORPUS_BENCH_ITEMS     items sent (default "mem-early mem-late disk random text")
#   CORPUS_BENCH_PAIRS     rsync comparisons (default "mem disk"; "" = none)
#   CORPUS_BENCH_SETTINGS  fixed settings of the oracle (default "none lz4 zstd:1 zstd:3 zstd:9
#                          zstd:19"; "" = no oracle)
#   CORPUS_BENCH_MEMORY    guest memory (default 256M)
#   CORPUS_BENCH_CMDLINE   guest command line (default: console=ttyS0 quiet panic=-1
#                          nc.mem=160M nc.dirty=4M, nc.mem and nc.dirty times the scale)
#   CORPUS_BENCH_MEM_TIMES seconds after the first heartbeat of the two images (default "20 50")
#   CORPUS_BENCH_ACCEL     tcg (default) or kvm
#   CORPUS_BENCH_TIMEOUT   seconds allowed per transfer (default: the sample at 10 % of the
#                          link's rate or 1.2 s per MiB, at least 120 s)
#   CORPUS_BENCH_PORT      DWCP port (default 7481); TCP_PORT 5281 and RSYNC_PORT 8731 after it
#   GUEST_DIR              the test guest (default target/test-guest, scripts/build-test-guest.sh)
#   BENCH_NO_BUILD=1       use the binaries already in $CARGO_TARGET_DIR/release
#   CARGO_TARGET_DIR       where cargo builds (default <repo>/target)
# Needs root, iproute2, jq, socat, zstd, lz4, rsync, qemu-system-x86_64, qemu-img, mkfs.ext4 and
#   debugfs (e2fsprogs), timeout, cmp (apt-get install -y iproute2 jq socat zstd lz4 rsync
#   qemu-system-x86 qemu-utils e2fsprogs).
# Exits 1 if a transfer failed or a target was missed, 2 on a setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/wan-lib.sh
. "$ROOT/bench/wan-lib.sh"
GUEST=${GUEST_DIR:-$ROOT/target/test-guest}
SCALE=${CORPUS_BENCH_SCALE:-1}
CORPUS=${CORPUS_DIR:-$ROOT/bench/out/corpus/scale-$SCALE}
read -r -a ITEMS <<<"${CORPUS_BENCH_ITEMS-mem-early mem-late disk random text}"
read -r -a PAIRS <<<"${CORPUS_BENCH_PAIRS-mem disk}"
read -r -a SETTINGS <<<"${CORPUS_BENCH_SETTINGS-none lz4 zstd:1 zstd:3 zstd:9 zstd:19}"
MEMORY=${CORPUS_BENCH_MEMORY:-256M}
read -r EARLY_S LATE_S <<<"${CORPUS_BENCH_MEM_TIMES:-20 50}"
ACCEL=${CORPUS_BENCH_ACCEL:-tcg}
DWCP_PORT=${CORPUS_BENCH_PORT:-7481}
TCP_PORT=5281
RSYNC_PORT=8731
NS_A=ncwan-a
NS_B=ncwan-b
ADDR_B=10.250.0.2
BOOT_TIMEOUT=180 # seconds for the guest's first heartbeat
MIG_TIMEOUT=300  # seconds for QEMU to write one memory image
SOCAT_BUF=131072 # socat's read/write size (its default of 8 KiB costs CPU at 1 Gbit/s)
# Corpus sizes (MiB, before scaling): disk = the raw file system (80 % filled with files).
RANDOM_MIB=256
TEXT_MIB=256
DISK_MIB=320
LINKS=("$@")
if [ ${#LINKS[@]} -eq 0 ]; then
    LINKS=(metro continent intercontinental edge)
fi

log() { echo "hde-corpus: $(date -u +%H:%M:%S) $*" >&2; }

# Sample size (MiB, before scaling) per link: about the same time per transfer at the link's rate.
base_mib() {
    case $1 in
        dc | metro) echo 256 ;;
        continent | intercontinental) echo 128 ;;
        edge) echo 32 ;;
        *) return 1 ;;
    esac
}
# $1 MiB times the scale, at least $2 (default 1).
scaled() { awk -v b="$1" -v s="$SCALE" -v m="${2:-1}" 'BEGIN { v = int(b * s + 0.5); print (v < m ? m : v) }'; }

for link in "${LINKS[@]}"; do
    base_mib "$link" >/dev/null || { log "unknown link: $link (dc metro continent intercontinental edge)"; exit 2; }
done
for item in "${ITEMS[@]}"; do
    case $item in mem-early | mem-late | disk | random | text) ;; *) log "unknown item: $item (mem-early mem-late disk random text)"; exit 2 ;; esac
done
for pair in "${PAIRS[@]}"; do
    case $pair in mem | disk) ;; *) log "unknown pair: $pair (mem disk)"; exit 2 ;; esac
done
for s in "${SETTINGS[@]}"; do
    case $s in none | lz4 | zstd | zstd:[0-9] | zstd:[12][0-9]) ;; *) log "unknown setting: $s (none lz4 zstd:N)"; exit 2 ;; esac
done
if ! [[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] || ! awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }'; then
    log "CORPUS_BENCH_SCALE must be a positive number"
    exit 2
fi
if ! [[ ${EARLY_S:-} =~ ^[0-9]+$ && ${LATE_S:-} =~ ^[0-9]+$ ]] || [ "$LATE_S" -le "$EARLY_S" ]; then
    log "CORPUS_BENCH_MEM_TIMES must be two whole numbers of seconds, the second larger"
    exit 2
fi
if [ -n "${CORPUS_BENCH_TIMEOUT:-}" ] && ! [[ $CORPUS_BENCH_TIMEOUT =~ ^[1-9][0-9]*$ ]]; then
    log "CORPUS_BENCH_TIMEOUT must be a positive integer"
    exit 2
fi
MEM_MIB=$(numfmt --from=iec "$MEMORY" 2>/dev/null | awk '{ printf "%d", $1 / 1048576 }') ||
    { log "CORPUS_BENCH_MEMORY: not a size: $MEMORY"; exit 2; }
[ "${MEM_MIB:-0}" -gt 0 ] || { log "CORPUS_BENCH_MEMORY: not a size: $MEMORY"; exit 2; }
CMDLINE=${CORPUS_BENCH_CMDLINE:-console=ttyS0 quiet panic=-1 nc.mem=$(scaled 160 4)M nc.dirty=$(scaled 4096 64)K}
[ "$(id -u)" -eq 0 ] || { log "needs root (network namespaces and TUN devices)"; exit 2; }
PATH=$PATH:/usr/sbin:/sbin # mkfs.ext4 and debugfs
missing=()
for tool in ip jq socat zstd lz4 rsync qemu-system-x86_64 qemu-img mkfs.ext4 debugfs e2fsck timeout cmp awk numfmt ss; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "missing ${missing[*]} (apt-get install -y iproute2 jq socat zstd lz4 rsync qemu-system-x86 qemu-utils e2fsprogs)"
    exit 2
fi
for f in vmlinux initrd.img disk.qcow2; do
    [ -f "$GUEST/$f" ] || { log "no $GUEST/$f: run scripts/build-test-guest.sh first"; exit 2; }
done
# Refuse to take over namespaces that exist already (another run, or leftovers of a crash).
wan_refuse_taken

WORK=$(mktemp -d /dev/shm/hde-corpus.XXXXXX)
SAMPLES=$WORK/samples
RX_DIR=$WORK/rx
OUT_DIR=$ROOT/bench/out
STAMP=$(date -u +%Y-%m-%d-%H%M)
LOGS=$OUT_DIR/hde-corpus-$STAMP
mkdir -p "$SAMPLES" "$RX_DIR" "$WORK/stores" "$LOGS" "$CORPUS"
EMU_PID=
EMU_STARTED=0
PIDS=() # every other background process this script started (QEMU, receivers, senders, rsyncd)
REAPED=0

stop_children() { stop_pids; }

stop_link() { wan_stop_link; }

wan_install_cleanup

# ---- estimate --------------------------------------------------------------------------------

# Rate (Mbit/s) of link $1 from the standard table (dc: what this machine moves, about).
link_rate() {
    case $1 in dc) echo 2000 ;; metro) echo 1000 ;; continent) echo 200 ;; intercontinental) echo 100 ;; edge) echo 20 ;; esac
}

# Rough duration in seconds: per link about 2 s of set-up per transfer and, with T the time of
# one sample at the link's rate (at most 800 Mbit/s here), 34 T of data (the compressible items
# go faster than T, random slower, the stopped runs at 2 T + 5 s), plus the corpus when missing.
estimate_s() {
    local link t total=0 n
    n=$((${#ITEMS[@]} * (4 + ${#SETTINGS[@]}) + 1 + 2 * ${#PAIRS[@]}))
    for link in "${LINKS[@]}"; do
        t=$(awk -v m="$(scaled "$(base_mib "$link")")" -v r="$(link_rate "$link")" 'BEGIN { printf "%d", m * 8.39 / (r > 800 ? 800 : r) + 0.5 }')
        total=$((total + 2 * n + t * (7 * ${#ITEMS[@]} - 1) + 2 * t * ${#PAIRS[@]}))
    done
    [ -f "$CORPUS/mem-late" ] && [ -f "$CORPUS/mem-early" ] || total=$((total + LATE_S + 60))
    [ -f "$CORPUS/disk-later" ] && [ -f "$CORPUS/disk" ] || total=$((total + 60))
    echo "$total"
}

# The corpus and the samples (make_random, make_text, make_disk, make_memory, make_sample).
# shellcheck source=bench/corpus-lib.sh
. "$ROOT/bench/corpus-lib.sh"

# ---- runs ------------------------------------------------------------------------------------

now() { date +%s.%N; }
num() { [[ ${1:-} =~ ^[0-9.]+$ ]]; }
# b - a of two numbers, or "-".
minus() { if num "$1" && num "$2"; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; else echo -; fi; }
# tx bytes of both namespaces, then the TCP segments the sender's namespace sent and sent again
# (its /proc/net/snmp); "- - - -" on dc, where nothing is counted.
counters() {
    if [ "$LINK" = dc ]; then
        echo "- - - -"
    else
        # shellcheck disable=SC2016 # awk's fields
        echo "$(tx_bytes "$NS_A") $(tx_bytes "$NS_B") $(ip netns exec "$NS_A" awk '$1 == "Tcp:" {
            if (!n) { for (i = 2; i <= NF; i++) col[$i] = i; n = 1 } else print $col["OutSegs"], $col["RetransSegs"] }' /proc/net/snmp)"
    fi
}
# Records the TCP segments of run $1 (a key) from the counters before ($2 $3) and after ($4 $5).
segments() {
    R[$1.segs]=$(minus "$2" "$4")
    R[$1.retrans]=$(minus "$3" "$5")
}

declare -A R # results: R[link.item.run.field], fields s tx rx st (ok|stopped|FAILED), cap, ...
RAW=$OUT_DIR/hde-corpus-$STAMP.jsonl
failed=0

# Records run $2 of item $1: status $3, seconds $4, wire bytes sender $5 and receiver $6, JSON
# of DWCP's summary or rsync's output in file $7 (optional).
record() {
    local item=$1 run=$2 st=$3 secs=$4 txb=$5 rxb=$6 extra=${7:-} k=$LINK.$1.$2 json=
    R[$k.st]=$st
    R[$k.s]=$secs
    R[$k.tx]=$txb
    R[$k.rx]=$rxb
    [ "$st" != FAILED ] || failed=1
    [ -z "$extra" ] || json=$(jq -c . "$extra" 2>/dev/null | tail -n 1 || true)
    jq -nc --arg link "$LINK" --arg item "$item" --arg run "$run" --arg st "$st" --arg s "$secs" \
        --arg tx "$txb" --arg rx "$rxb" --arg bytes "${R[$LINK.$item.bytes]:-}" \
        --arg segs "${R[$k.segs]:-}" --arg retr "${R[$k.retrans]:-}" --argjson dwcp "${json:-null}" \
        '{link: $link, item: $item, run: $run, status: $st, seconds: ($s | tonumber? // null),
          sample_bytes: ($bytes | tonumber? // null), wire_tx_bytes: ($tx | tonumber? // null),
          wire_rx_bytes: ($rx | tonumber? // null), tcp_segments_sent: ($segs | tonumber? // null),
          tcp_segments_retransmitted: ($retr | tonumber? // null), dwcp: $dwcp}' >>"$RAW"
}

# Waits (at most 10 s) until something listens on TCP port $1 in the receiver's namespace while
# pid $2 lives.
wait_listen() {
    for _ in $(seq 100); do
        "${IN_B[@]}" ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Stops pid $1 now when $2 is 1, else gives it up to 30 s to exit; its exit status in REAPED.
reap() {
    local pid=$1 now=$2 rc=0
    if [ "$now" -ne 1 ]; then
        for _ in $(seq 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if kill -0 "$pid" 2>/dev/null; then
        stop_pid "$pid"
        rc=124
    else
        wait "$pid" || rc=$?
    fi
    forget_pid "$pid"
    REAPED=$rc
}

# Status of a run from the sender's exit $1, the receiver's $2, whether the run had a cap ($3)
# and whether the received file $4 equals the sample $5.
run_status() {
    local rc=$1 rrc=$2 capped=$3 got=$4 want=$5
    if [ "$rc" -eq 124 ] && [ "$capped" -eq 1 ]; then
        echo stopped
    elif [ "$rc" -ne 0 ] || [ "$rrc" -ne 0 ]; then
        echo FAILED
    elif ! cmp -s "$got" "$want"; then
        echo FAILED
    else
        echo ok
    fi
}

# One DWCP transfer of sample $1 as run $2 into a receiver with store $3, within $4 s ($5 = 1: a
# cap, after which the run counts as stopped rather than failed); more send arguments follow.
dwcp_run() {
    local item=$1 run=$2 store=$3 limit=$4 capped=$5 tag pid rc=0 rrc t0 t1 a0 b0 a1 b1 o0 r0 o1 r1 st
    shift 5
    tag=$LINK.$item.$run
    rm -rf "${RX_DIR:?}"/*
    mkdir -p "$store"
    "${IN_B[@]}" timeout -k 5 $((limit + 90)) "$NC" dwcp serve --listen "$RX_ADDR:$DWCP_PORT" \
        --dir "$RX_DIR" --store "$store" --once --json --insecure \
        >"$LOGS/$tag.rx.json" 2>"$LOGS/$tag.rx.log" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        grep -q "listening on" "$LOGS/$tag.rx.log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "listening on" "$LOGS/$tag.rx.log" 2>/dev/null; then
        log "$tag: receiver did not start:"
        tail -n 20 "$LOGS/$tag.rx.log" >&2
        stop_pid "$pid"
        forget_pid "$pid"
        record "$item" "$run" FAILED - - -
        return 1
    fi
    read -r a0 b0 o0 r0 <<<"$(counters)"
    t0=$(now)
    run "${IN_A[@]}" timeout -k 5 "$limit" "$NC" dwcp send "$SAMPLES/$item" "$RX_ADDR:$DWCP_PORT" \
        --insecure --json --quiet "$@" >"$LOGS/$tag.json" 2>"$LOGS/$tag.tx.log" || rc=$?
    t1=$(now)
    read -r a1 b1 o1 r1 <<<"$(counters)"
    segments "$LINK.$item.$run" "$o0" "$r0" "$o1" "$r1"
    reap "$pid" "$([ "$rc" -eq 124 ] && echo 1 || echo 0)"
    rrc=$REAPED
    st=$(run_status "$rc" "$rrc" "$capped" "$RX_DIR/$item" "$SAMPLES/$item")
    if [ "$st" = FAILED ]; then
        log "$tag: failed (sender exit $rc, receiver exit $rrc$([ "$rc" -eq 0 ] && [ "$rrc" -eq 0 ] && echo ", stored file differs or is missing")):"
        tail -n 5 "$LOGS/$tag.tx.log" "$LOGS/$tag.rx.log" >&2 || true
    fi
    rm -rf "${RX_DIR:?}"/*
    if [ "$st" = stopped ]; then
        record "$item" "$run" stopped "$limit" - - "$LOGS/$tag.json"
    else
        record "$item" "$run" "$st" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
            "$(minus "$a0" "$a1")" "$(minus "$b0" "$b1")" "$LOGS/$tag.json"
    fi
    local k=$LINK.$item.$run
    R[$k.codec]=$(jq -r '.codec // "-"' "$LOGS/$tag.json" 2>/dev/null || echo -)
    R[$k.payload]=$(jq -r '.wire_bytes // "-"' "$LOGS/$tag.json" 2>/dev/null || echo -)
    R[$k.ref]=$(jq -r '.ref_bytes // "-"' "$LOGS/$tag.json" 2>/dev/null || echo -)
    log "$tag: $st, $(fmt "${R[$k.s]}" 2) s, $(eff "$item" "$run") Mbit/s, wire $(mib "${R[$k.tx]}") MiB, codec ${R[$k.codec]}, by reference $(mib "${R[$k.ref]}") MiB"
    [ "$st" != FAILED ]
}

# One TCP stream through socat: run $2 (zstd-1 | zstd-19 | lz4 | raw) of sample $1 within $3 s
# ($4 = 1: a cap).
tcp_run() {
    local item=$1 run=$2 limit=$3 capped=$4 tag comp decomp rpid spid rc=0 rrc=0 t0 t1 a0 b0 a1 b1 o0 r0 o1 r1 st out
    tag=$LINK.$item.$run
    case $run in
        zstd-1) comp=(zstd -q -1 -c) decomp=(zstd -q -d -c) ;;
        zstd-19) comp=(zstd -q -19 -c) decomp=(zstd -q -d -c) ;;
        lz4) comp=(lz4 -q -c) decomp=(lz4 -q -d -c) ;;
        raw) comp=(cat) decomp=(cat) ;;
    esac
    out=$RX_DIR/$item
    rm -rf "${RX_DIR:?}"/*
    # shellcheck disable=SC2016 # expanded by the inner bash
    "${IN_B[@]}" timeout -k 5 $((limit + 30)) bash -c \
        'socat -u -b "$1" "TCP-LISTEN:$2,bind=$3,reuseaddr" STDOUT | "${@:5}" >"$4"' \
        _ "$SOCAT_BUF" "$TCP_PORT" "$RX_ADDR" "$out" "${decomp[@]}" 2>"$LOGS/$tag.rx.log" &
    rpid=$!
    PIDS+=("$rpid")
    if ! wait_listen "$TCP_PORT" "$rpid"; then
        log "$tag: receiver did not start:"
        tail -n 5 "$LOGS/$tag.rx.log" >&2 || true
        stop_pid "$rpid"
        forget_pid "$rpid"
        record "$item" "$run" FAILED - - -
        return 1
    fi
    read -r a0 b0 o0 r0 <<<"$(counters)"
    t0=$(now)
    # shellcheck disable=SC2016 # expanded by the inner bash
    "${IN_A[@]}" timeout -k 5 "$limit" bash -c \
        '"${@:4}" "$3" | socat -u -b "$1" STDIN "TCP:$2"' \
        _ "$SOCAT_BUF" "$RX_ADDR:$TCP_PORT" "$SAMPLES/$item" "${comp[@]}" 2>"$LOGS/$tag.tx.log" &
    spid=$!
    PIDS+=("$spid")
    wait "$rpid" || rrc=$?
    t1=$(now)
    forget_pid "$rpid"
    wait "$spid" || rc=$?
    forget_pid "$spid"
    read -r a1 b1 o1 r1 <<<"$(counters)"
    segments "$LINK.$item.$run" "$o0" "$r0" "$o1" "$r1"
    st=$(run_status "$rc" "$rrc" "$capped" "$out" "$SAMPLES/$item")
    if [ "$st" = FAILED ]; then
        log "$tag: failed (sender exit $rc, receiver exit $rrc):"
        tail -n 5 "$LOGS/$tag.tx.log" "$LOGS/$tag.rx.log" >&2 || true
    fi
    rm -rf "${RX_DIR:?}"/*
    if [ "$st" = stopped ]; then
        record "$item" "$run" stopped "$limit" - -
    else
        record "$item" "$run" "$st" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
            "$(minus "$a0" "$a1")" "$(minus "$b0" "$b1")"
    fi
    log "$tag: $st, $(fmt "${R[$LINK.$item.$run.s]}" 2) s, $(eff "$item" "$run") Mbit/s, wire $(mib "${R[$LINK.$item.$run.tx]}") MiB"
    [ "$st" != FAILED ]
}

# rsync -az of sample $2 to a daemon whose module holds sample $1 under $2's name, within $3 s;
# recorded as run rsync of item pair-$4.
rsync_run() {
    local early=$1 late=$2 limit=$3 item=pair-$4 run=rsync tag mod conf pid rc=0 t0 t1 a0 b0 a1 b1 o0 r0 o1 r1 st
    tag=$LINK.$item.rsync
    mod=$WORK/rsync-module
    conf=$WORK/rsyncd.conf
    rm -rf "$mod"
    mkdir -p "$mod"
    cp "$SAMPLES/$early" "$mod/$late"
    cat >"$conf" <<EOF
use chroot = no
[corpus]
    path = $mod
    read only = no
    uid = root
    gid = root
EOF
    "${IN_B[@]}" timeout -k 5 $((limit + 30)) rsync --daemon --no-detach --config="$conf" \
        --address="$RX_ADDR" --port="$RSYNC_PORT" --log-file="$LOGS/$tag.rsyncd.log" \
        >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_listen "$RSYNC_PORT" "$pid"; then
        log "$tag: rsync daemon did not start:"
        tail -n 5 "$LOGS/$tag.rsyncd.log" >&2 || true
        stop_pid "$pid"
        forget_pid "$pid"
        record "$item" rsync FAILED - - -
        return 1
    fi
    read -r a0 b0 o0 r0 <<<"$(counters)"
    t0=$(now)
    run "${IN_A[@]}" timeout -k 5 "$limit" rsync -az --stats "$SAMPLES/$late" \
        "rsync://$RX_ADDR:$RSYNC_PORT/corpus/$late" >"$LOGS/$tag.out" 2>"$LOGS/$tag.err" || rc=$?
    t1=$(now)
    read -r a1 b1 o1 r1 <<<"$(counters)"
    segments "$LINK.$item.$run" "$o0" "$r0" "$o1" "$r1"
    stop_pid "$pid"
    forget_pid "$pid"
    st=$(run_status "$rc" 0 0 "$mod/$late" "$SAMPLES/$late")
    if [ "$st" = FAILED ]; then
        log "$tag: failed (exit $rc):"
        tail -n 5 "$LOGS/$tag.err" >&2 || true
    fi
    rm -rf "$mod"
    record "$item" rsync "$st" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
        "$(minus "$a0" "$a1")" "$(minus "$b0" "$b1")"
    R[$LINK.$item.rsync.sent]=$(awk '/^Total bytes sent:/ { gsub(",", "", $4); print $4 }' "$LOGS/$tag.out" 2>/dev/null || true)
    log "$tag: $st, $(fmt "${R[$LINK.$item.rsync.s]}" 2) s, wire $(mib "${R[$LINK.$item.rsync.tx]}") + $(mib "${R[$LINK.$item.rsync.rx]}") MiB"
    [ "$st" != FAILED ]
}

# The report (mib, eff, tables, targets, write_report).
# shellcheck source=bench/hde-corpus-report.sh
. "$ROOT/bench/hde-corpus-report.sh"

# ---- main ------------------------------------------------------------------------------------

est=$(estimate_s)
log "links: ${LINKS[*]}; items: ${ITEMS[*]}; pairs: ${PAIRS[*]:-none}; scale $SCALE; corpus in $CORPUS"
log "estimated duration: about $(((est + 59) / 60)) min"

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building novacron and novacron-wanem (release)"
    (cd "$ROOT" && timeout 3600 cargo build --release --quiet -p novacron -p novacron-wanem)
fi
for bin in "$NC" "$WANEM"; do
    [ -x "$bin" ] || { log "missing $bin"; exit 2; }
done

# The corpus: what any item, sample or pair needs.
need_mem=0 need_disk=0
for x in "${ITEMS[@]}" "${PAIRS[@]}"; do
    case $x in mem*) need_mem=1 ;; disk*) need_disk=1 ;; esac
done
[ -f "$CORPUS/random" ] || [[ " ${ITEMS[*]} " != *" random "* ]] || make_random
[ -f "$CORPUS/text" ] || { [[ " ${ITEMS[*]} " != *" text "* ]] && [ "$need_disk" -eq 0 ]; } || make_text
if [ "$need_mem" -eq 1 ] && { [ ! -f "$CORPUS/mem-early" ] || [ ! -f "$CORPUS/mem-late" ]; }; then
    make_memory || { log "could not make the memory images"; exit 2; }
fi
if [ "$need_disk" -eq 1 ] && { [ ! -f "$CORPUS/disk" ] || [ ! -f "$CORPUS/disk-later" ]; }; then
    make_disk || { log "could not make the disk images"; exit 2; }
fi
cp "$CORPUS/MANIFEST" "$LOGS/corpus-MANIFEST" 2>/dev/null || true
for f in mem-early mem-late disk disk-later random text; do
    [ -f "$CORPUS/$f" ] && log "corpus: $f $(mib "$(stat -c %s "$CORPUS/$f")") MiB"
done

: >"$RAW"
DEFAULT_CC=$(sysctl -n net.ipv4.tcp_congestion_control)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
declare -A KEEP_STORE # store of the first transfer of an earlier item, for its pair
REPORT=$OUT_DIR/hde-corpus-$STAMP.md
DONE=() # links measured

for LINK in "${LINKS[@]}"; do
    mibs=$(scaled "$(base_mib "$LINK")")
    rate=$(link_rate "$LINK")
    # Samples: the items sent, and the later halves of the pairs.
    want=("${ITEMS[@]}")
    for pair in "${PAIRS[@]}"; do
        case $pair in mem) want+=(mem-early mem-late) ;; disk) want+=(disk disk-later) ;; esac
    done
    for item in $(printf '%s\n' "${want[@]}" | awk '!seen[$0]++'); do
        make_sample "$item" "$mibs"
        R[$LINK.$item.bytes]=$(stat -c %s "$SAMPLES/$item")
        R[$LINK.$item.z3]=$(zstd -q -3 -c "$SAMPLES/$item" | wc -c)
    done
    # Seconds allowed per transfer: the sample at 10 % of the rate, or 1.2 s per MiB (CPU-bound
    # compression), at least 120 s.
    limit=${CORPUS_BENCH_TIMEOUT:-$(awk -v m="$mibs" -v r="$rate" 'BEGIN {
        t = m * 8.388608 / (r * 0.1); if (m * 1.2 > t) t = m * 1.2; printf "%d", (t < 120 ? 120 : t + 1) }')}
    if [ "$LINK" = dc ]; then
        IN_A=()
        IN_B=()
        RX_ADDR=127.0.0.1
    else
        log "$LINK: link up (samples of $mibs MiB, $limit s per transfer at most)"
        EMU_STARTED=1
        wan_up "$WANEM" "$LINK" "$WORK" --ns-a "$NS_A" --ns-b "$NS_B"
        IN_A=(ip netns exec "$NS_A")
        IN_B=(ip netns exec "$NS_B")
        RX_ADDR=$ADDR_B
    fi
    KEEP_STORE=()

    for item in "${ITEMS[@]}"; do
        store=$WORK/stores/$LINK.$item.auto
        dwcp_run "$item" auto "$store" "$limit" 0 || true
        case $item in mem-early | disk) KEEP_STORE[$item]=$store ;; *) rm -rf "$store" ;; esac
        tcp_run "$item" zstd-1 "$limit" 0 || true
        tcp_run "$item" lz4 "$limit" 0 || true
        cap=$limit
        if [ "${R[$LINK.$item.zstd-1.st]}" = ok ]; then
            cap=$(awk -v t="${R[$LINK.$item.zstd-1.s]}" -v l="$limit" 'BEGIN { c = int(2 * t + 5.999); print (c < l ? c : l) }')
        fi
        tcp_run "$item" zstd-19 "$cap" 1 || true
        [ "$item" != random ] || tcp_run "$item" raw "$limit" 0 || true
        best=
        for s in "${SETTINGS[@]}"; do
            cap=$limit
            [ -z "$best" ] || cap=$(awk -v t="$best" -v l="$limit" 'BEGIN { c = int(2 * t + 5.999); print (c < l ? c : l) }')
            store=$WORK/stores/$LINK.$item.c
            dwcp_run "$item" "c-${s/:/-}" "$store" "$cap" "$([ -n "$best" ] && echo 1 || echo 0)" --compress "$s" || true
            rm -rf "$store"
            if [ "${R[$LINK.$item.c-${s/:/-}.st]}" = ok ] && { [ -z "$best" ] || lt "${R[$LINK.$item.c-${s/:/-}.s]}" "$best"; }; then
                best=${R[$LINK.$item.c-${s/:/-}.s]}
            fi
        done
    done

    for pair in "${PAIRS[@]}"; do
        case $pair in mem) early=mem-early late=mem-late ;; disk) early=disk late=disk-later ;; esac
        rsync_run "$early" "$late" "$limit" "$pair" || true
        store=${KEEP_STORE[$early]:-}
        if [ -z "$store" ]; then
            # The earlier item was not sent above: send it now to fill the store.
            store=$WORK/stores/$LINK.$early.pair
            dwcp_run "$early" pair-first "$store" "$limit" 0 || true
        fi
        # The later sample under the pair's item name, so that its results sit beside rsync's.
        ln -f "$SAMPLES/$late" "$SAMPLES/pair-$pair"
        R[$LINK.pair-$pair.bytes]=${R[$LINK.$late.bytes]}
        dwcp_run "pair-$pair" dwcp "$store" "$limit" 0 || true
        rm -f "$SAMPLES/pair-$pair"
    done

    if [ "$LINK" != dc ]; then
        stop_link
        cp "$WORK/$LINK.wanem.log" "$LOGS/" 2>/dev/null || true
        wan_counters "$WORK/$LINK.wanem.log"
    fi
    rm -rf "${SAMPLES:?}"/* "$WORK"/stores/*
    DONE+=("$LINK")
    write_report
done

write_report
if grep -q "MISSED\|FAILED" "$REPORT"; then failed=1; fi
echo
cat "$REPORT"
echo
log "saved $REPORT, $RAW and the logs in $LOGS"
exit "$failed"
