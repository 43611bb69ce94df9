#!/usr/bin/env bash
# Live migration over the standard emulated links: NovaCron (two node daemons, DWCP, mutual TLS)
# against QEMU's own migration over the same link, with the same guest, in the same run.
#
# For each link (metro, continent, intercontinental, edge; emulated by novacron-wanem between
# namespaces ncwan-a 10.250.0.1 and ncwan-b 10.250.0.2):
#   1. NovaCron: `novacron server` in each namespace (data on /dev/shm, mutual TLS, peers of each
#      other), the test guest imported as an image on both; a VM of MIGRATE_BENCH_MEMORY is
#      started on a, and once it prints heartbeats it goes a -> b (`novacron vm migrate --json`),
#      then back b -> a, then it is deleted and a second VM of the same image goes a -> b;
#      then a third VM goes a -> b with post-copy allowed (`--postcopy`).
#   2. QEMU alone: the same kernel, initrd, command line, memory and devices (the line
#      crates/novacron-qemu/src/launch.rs builds), source QEMU in ncwan-a, destination in ncwan-b
#      with `-incoming defer` + migrate-incoming tcp:; driven over QMP with socat:
#      (a) plain tcp, default parameters; (b) multifd, 4 channels, zstd, bandwidth uncapped.
#      Both with auto-converge on (as NovaCron's source sets it), so that a link slower than the
#      guest's dirty rate still converges within the time bound.
#   3. Every run: total time and downtime (NovaCron: the operation's elapsed_ms and downtime_ms,
#      the guest's stop on the source to its start on the destination, and the same measured on
#      the clock the namespaces share, from the daemons' logs;
#      QEMU: total-time and downtime of query-migrate on the source, and the same downtime from
#      the source's STOP event to the destination's RESUME event), the time until the guest runs
#      at the destination on the shared clock (NovaCron: from the CLI's start to the
#      destination's `switch-over here` line; QEMU: from `migrate` to the destination's RESUME
#      event; QEMU's total-time ends when its source has written the last bytes, before they
#      have crossed; the time target compares this span), bytes on the wire = the tx
#      byte counter of ncwan0 in the sending namespace around the migration (IP bytes, the
#      control traffic between the nodes included), and the guest check on the destination's
#      serial console: at least 3 new heartbeats (seq continuing the source's), failed=0, no
#      check-failed, no NCGUEST start or error, no Kernel panic or Oops.
# "migration stream MiB" is what QEMU wrote (NovaCron: stream_bytes handed to DWCP; QEMU alone:
# ram.transferred). Prints one Markdown table per link and the targets (met/missed); saves them, the raw JSON of
# every run, the daemons' logs and the consoles under bench/out/.
#
# Usage: sudo bench/migrate.sh [LINK...]   (default: metro continent intercontinental edge)
# Environment:
#   MIGRATE_BENCH_MEMORY    VM memory (default 256M)
#   MIGRATE_BENCH_CMDLINE   guest command line (default: console=ttyS0 quiet panic=-1
#                           nc.mem=160M nc.dirty=4M)
#   MIGRATE_BENCH_TIMEOUT   seconds allowed per migration (default 600)
#   MIGRATE_BENCH_ACCEL     tcg (default) or kvm, for NovaCron's and QEMU's VMs alike
#   MIGRATE_BENCH_QEMU      QEMU configurations to run (default "tcp multifd-zstd"; "" = none)
#   GUEST_DIR               the test guest (default target/test-guest, scripts/build-test-guest.sh)
#   BENCH_NO_BUILD=1        use the binaries already in $CARGO_TARGET_DIR/release
#   CARGO_TARGET_DIR        where cargo builds (default <repo>/target)
# Needs root, iproute2, qemu-system-x86_64, qemu-img, socat, jq, timeout.
# Exits 1 if a run failed or a target was missed, 2 on a setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/wan-lib.sh disable=SC1091
. "$ROOT/bench/wan-lib.sh"
GUEST=${GUEST_DIR:-$ROOT/target/test-guest}
MEMORY=${MIGRATE_BENCH_MEMORY:-256M}
CMDLINE=${MIGRATE_BENCH_CMDLINE:-console=ttyS0 quiet panic=-1 nc.mem=160M nc.dirty=4M}
MIG_TIMEOUT=${MIGRATE_BENCH_TIMEOUT:-600}
ACCEL=${MIGRATE_BENCH_ACCEL:-tcg}
read -r -a QEMU_CONFIGS <<<"${MIGRATE_BENCH_QEMU-tcp multifd-zstd}"
NS_A=ncwan-a
NS_B=ncwan-b
ADDR_A=10.250.0.1
ADDR_B=10.250.0.2
API_PORT=8640
DWCP_PORT=8641
QEMU_PORT=4444
BOOT_TIMEOUT=180      # seconds for a fresh guest to print its first heartbeats
CHECK_TIMEOUT=120     # seconds for the destination to print 3 new heartbeats
DOWNTIME_TARGET_MS=300
LINKS=("$@")
if [ ${#LINKS[@]} -eq 0 ]; then
    LINKS=(metro continent intercontinental edge)
fi

log() { echo "migrate: $(date -u +%H:%M:%S) $*" >&2; }

for link in "${LINKS[@]}"; do
    case $link in
        metro | continent | intercontinental | edge) ;;
        *) log "unknown link: $link (metro continent intercontinental edge)"; exit 2 ;;
    esac
done
for c in "${QEMU_CONFIGS[@]}"; do
    case $c in tcp | multifd-zstd) ;; *) log "unknown QEMU configuration: $c (tcp multifd-zstd)"; exit 2 ;; esac
done
if ! [[ $MIG_TIMEOUT =~ ^[1-9][0-9]*$ ]]; then
    log "MIGRATE_BENCH_TIMEOUT must be a positive integer"
    exit 2
fi
MEM_MIB=$(numfmt --from=iec "$MEMORY" 2>/dev/null | awk '{ printf "%d", $1 / 1048576 }') ||
    { log "MIGRATE_BENCH_MEMORY: not a size: $MEMORY"; exit 2; }
[ "${MEM_MIB:-0}" -gt 0 ] || { log "MIGRATE_BENCH_MEMORY: not a size: $MEMORY"; exit 2; }
[ "$(id -u)" -eq 0 ] || { log "needs root (network namespaces and TUN devices)"; exit 2; }
for tool in ip jq timeout socat qemu-system-x86_64 qemu-img numfmt awk ss; do
    command -v "$tool" >/dev/null || { log "missing $tool (apt-get install -y iproute2 jq socat qemu-system-x86 qemu-utils)"; exit 2; }
done
for f in vmlinux initrd.img disk.qcow2; do
    [ -f "$GUEST/$f" ] || { log "no $GUEST/$f: run scripts/build-test-guest.sh first"; exit 2; }
done
wan_refuse_taken

WORK=$(mktemp -d /dev/shm/migrate-bench.XXXXXX)
PKI=$WORK/pki
OUT_DIR=$ROOT/bench/out
STAMP=$(date -u +%Y-%m-%d-%H%M)
LOGS=$OUT_DIR/migrate-$STAMP
mkdir -p "$PKI" "$LOGS"
EMU_PID=
EMU_STARTED=0
PIDS=()       # background processes this script started (daemons, QEMUs, CLIs)
DATA_DIRS=()  # data directories of running daemons, for their QEMUs' pidfiles

# Every QEMU of this run: from the pidfiles of the daemons' VMs and of the baseline, then any
# process whose command line names this run's directory (a QEMU whose pidfile is gone).
our_qemu_pids() {
    local f p
    for f in "$WORK"/*/*/vms/*/run/qemu.pid "$WORK"/*/qemu-*/*.pid; do
        [ -f "$f" ] && cat "$f" 2>/dev/null
    done
    for p in /proc/[0-9]*; do
        grep -qa -- "$WORK" "$p/cmdline" 2>/dev/null && grep -qa qemu-system "$p/cmdline" 2>/dev/null &&
            echo "${p#/proc/}"
    done
    return 0
}

stop_children() {
    local pid
    stop_pids
    for pid in $(our_qemu_pids | sort -u); do
        stop_pid "$pid"
    done
}

stop_link() { wan_stop_link; }

wan_install_cleanup


if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building novacron and novacron-wanem (release)"
    (cd "$ROOT" && timeout 3600 cargo build --release --quiet -p novacron -p novacron-wanem)
fi
for bin in "$NC" "$WANEM"; do
    [ -x "$bin" ] || { log "missing $bin"; exit 2; }
done

"$NC" ca init --dir "$PKI" >/dev/null
"$NC" ca issue a --dir "$PKI" --san "$ADDR_A" >/dev/null
"$NC" ca issue b --dir "$PKI" --san "$ADDR_B" >/dev/null

# ---- helpers ---------------------------------------------------------------------------------

ns_of() { if [ "$1" = a ]; then echo "$NS_A"; else echo "$NS_B"; fi; }
addr_of() { if [ "$1" = a ]; then echo "$ADDR_A"; else echo "$ADDR_B"; fi; }

# The CLI against node $1 (a|b), from inside its namespace.
cli() {
    local node=$1
    shift
    ip netns exec "$(ns_of "$node")" env NOVACRON_ADDR="https://$(addr_of "$node"):$API_PORT" \
        NOVACRON_TOKEN_FILE="$DATA/$node/admin.token" NOVACRON_CA_CERT="$PKI/ca.crt" \
        timeout -k 5 120 "$NC" "$@"
}

# Starts the node daemon $1 (a|b) with data in $DATA/$1; waits at most 60 s for its API.
start_daemon() {
    local node=$1 peer ns addr
    peer=$([ "$node" = a ] && echo b || echo a)
    ns=$(ns_of "$node")
    addr=$(addr_of "$node")
    mkdir -p "$DATA/$node"
    ip netns exec "$ns" "$NC" server --data-dir "$DATA/$node" --listen "$addr:$API_PORT" \
        --accel "$ACCEL" --tls-dir "$PKI" --node "$node" --dwcp-listen "$addr:$DWCP_PORT" \
        --peer "$peer=https://$(addr_of "$peer"):$API_PORT" \
        >>"$LOGS/$LINK.$node.daemon.log" 2>&1 &
    PIDS+=("$!")
    DAEMON_PID[$node]=$!
    DATA_DIRS+=("$DATA/$node")
    for _ in $(seq 600); do
        if [ -s "$DATA/$node/admin.token" ] && cli "$node" vm list >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "${DAEMON_PID[$node]}" 2>/dev/null || break
        sleep 0.1
    done
    log "$LINK: daemon $node did not come up:"
    tail -n 20 "$LOGS/$LINK.$node.daemon.log" >&2
    return 1
}

# Stops both daemons and every QEMU of theirs, and keeps the VMs' QEMU logs.
stop_daemons() {
    local node pid f
    for node in a b; do
        pid=${DAEMON_PID[$node]:-}
        [ -n "$pid" ] || continue
        stop_pid "$pid"
        forget_pid "$pid"
        DAEMON_PID[$node]=
    done
    for pid in $(our_qemu_pids | sort -u); do
        stop_pid "$pid"
    done
    for node in a b; do
        for f in "$DATA/$node"/vms/*/run/qemu.log; do
            [ -f "$f" ] && cp "$f" "$LOGS/$LINK.$node.$(basename "$(dirname "$(dirname "$f")")").qemu.log"
        done
    done
    return 0
}

# Highest heartbeat seq in file $1 (0 if none).
last_seq() {
    { grep -o 'NCGUEST heartbeat seq=[0-9]*' "$1" 2>/dev/null || true; } |
        awk -F= '{ if ($2 > m) m = $2 } END { print m + 0 }'
}

# Number of heartbeats in file $1 with seq > $2.
new_beats() {
    { grep -o 'NCGUEST heartbeat seq=[0-9]*' "$1" 2>/dev/null || true; } |
        awk -F= -v after="$2" '$2 > after { n++ } END { print n + 0 }'
}

# Verdict of the guest check on console file $1, heartbeats expected after seq $2: "ok" or why not.
guest_verdict() {
    local f=$1 after=$2 n bad=()
    n=$(new_beats "$f" "$after")
    grep -q 'NCGUEST heartbeat.* failed=[1-9]' "$f" && bad+=("failed>0")
    grep -q 'NCGUEST check-failed' "$f" && bad+=("check-failed")
    grep -q 'NCGUEST start' "$f" && bad+=("rebooted")
    grep -q 'NCGUEST error' "$f" && bad+=("guest error")
    grep -q 'Kernel panic' "$f" && bad+=("kernel panic")
    grep -q 'Oops' "$f" && bad+=("oops")
    [ "$n" -ge 3 ] || bad+=("$n new heartbeats")
    if [ ${#bad[@]} -eq 0 ]; then echo ok; else echo "FAILED: ${bad[*]}"; fi
}

# Waits (at most $3 s) until the console read by `$1` (a function writing it to file $2) has
# 3 heartbeats after seq $4 or shows a failure; leaves the verdict in VERDICT.
wait_guest() {
    local reader=$1 file=$2 limit=$3 after=$4
    for _ in $(seq "$limit"); do
        "$reader" "$file" || true
        if [ "$(new_beats "$file" "$after")" -ge 3 ] ||
            grep -q 'NCGUEST check-failed\|NCGUEST start\|Kernel panic\|Oops\|failed=[1-9]' "$file" 2>/dev/null; then
            break
        fi
        sleep 1
    done
    VERDICT=$(guest_verdict "$file" "$after")
}

# Console of NovaCron VM $VM_NAME on node $VM_NODE into file $1.
nc_console() { cli "$VM_NODE" vm console "$VM_NAME" --lines 10000 >"$1.tmp" 2>/dev/null && mv "$1.tmp" "$1"; }
# Console of a QEMU of the baseline: the file is written by QEMU itself.
# shellcheck disable=SC2317 # called through wait_guest
file_console() { [ -f "$1" ]; }

# is a <= b (numbers)?
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && a + 0 <= b + 0) }'; }
num() { [[ $1 =~ ^[0-9.]+$ ]]; }

declare -A R          # results: R[link.run.field]
declare -A DAEMON_PID
RAW=$OUT_DIR/migrate-$STAMP.jsonl
: >"$RAW"
failed=0

# Records one run: R[$LINK.$1.{s,down,mib,check}] and a JSON line (object $2 plus fields).
record() {
    local run=$1 json=$2 secs=$3 down=$4 txb=$5 rxb=$6 check=$7 stream=${8:--}
    R[$LINK.$run.s]=$secs
    R[$LINK.$run.stream]=$(awk -v b="$stream" 'BEGIN { if (b ~ /^[0-9]+$/) printf "%.1f", b / 1048576; else print "-" }')
    R[$LINK.$run.down]=$down
    R[$LINK.$run.mib]=$(awk -v b="$txb" 'BEGIN { if (b ~ /^[0-9]+$/) printf "%.1f", b / 1048576; else print "-" }')
    R[$LINK.$run.check]=$check
    [ "$check" = ok ] || failed=1
    jq -c --arg link "$LINK" --arg run "$run" --arg check "$check" --arg tx "$txb" --arg rx "$rxb" \
        '{link: $link, run: $run, wire_tx_bytes: ($tx | tonumber? // null),
          wire_rx_bytes: ($rx | tonumber? // null), guest_check: $check, result: .}' \
        <<<"${json:-null}" >>"$RAW" 2>/dev/null ||
        jq -nc --arg link "$LINK" --arg run "$run" --arg check "$check" \
            '{link: $link, run: $run, guest_check: $check, failed: true}' >>"$RAW"
}

# ---- NovaCron --------------------------------------------------------------------------------

# Creates and starts VM $1 on a from image guest; waits for its heartbeats.
nc_start_vm() {
    local vm=$1 f=$LOGS/$LINK.$1.boot.console
    cli a vm create "$vm" --image guest --memory "$MEMORY" --start >/dev/null
    VM_NODE=a VM_NAME=$vm
    for _ in $(seq "$BOOT_TIMEOUT"); do
        nc_console "$f" || true
        [ "$(new_beats "$f" 0)" -ge 3 ] && return 0
        sleep 1
    done
    log "$LINK: VM $vm printed no heartbeats within $BOOT_TIMEOUT s:"
    tail -n 20 "$f" >&2 || true
    return 1
}

# Microsecond of the shared clock of the first `switch-over here` line for VM $2 (written once
# the guest runs there) at or after microsecond $3 in node $1's log; "-" when there is none.
running_here_us() {
    local to=$1 vm=$2 from_us=$3 l here
    while read -r l; do
        here=$(date -d "${l%%Z *}Z" +%s%6N)
        if [ "$here" -ge "$from_us" ]; then
            echo "$here"
            return
        fi
    done < <(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/$LINK.$to.daemon.log" | grep "switch-over here vm=$vm ")
    echo -
}

# The guest's downtime of migration $3 (VM $4) from node $1 to node $2 on the clock both
# namespaces share, to check the one NovaCron reports (which cannot rely on a shared clock):
# from the guest's stop, dated by the source's `switch-over` line (its time less
# commit_answered_ms), to the destination's first `switch-over here` line for the VM after it.
# "-" when a line is missing.
clock_downtime() {
    local from=$1 to=$2 op=$3 vm=$4 line answered stop here
    # (No grep -m1: with pipefail, sed's SIGPIPE would fail the pipeline.)
    line=$(sed 's/\x1b\[[0-9;]*m//g' "$LOGS/$LINK.$from.daemon.log" |
        grep "switch-over operation=$op " | sed -n 1p) || { echo -; return; }
    [ -n "$line" ] || { echo -; return; }
    answered=$(grep -o 'commit_answered_ms=[0-9]*' <<<"$line" | cut -d= -f2)
    [ -n "$answered" ] || { echo -; return; }
    stop=$(($(date -d "${line%%Z *}Z" +%s%N) / 1000000 - answered))
    here=$(running_here_us "$to" "$vm" $((stop * 1000)))
    if num "$here"; then echo $((here / 1000 - stop)); else echo -; fi
}

# Seconds, to two decimals, from microsecond $1 to microsecond $2 of the shared clock.
span_s() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e6 }'
}

# Seconds from microsecond $3 of the shared clock to the guest running at node $1 (VM $2; see
# `running_here_us`); "-" when it did not.
clock_running() {
    local here
    here=$(running_here_us "$1" "$2" "$3")
    if num "$here"; then span_s "$3" "$here"; else echo -; fi
}

# Migrates VM $2 from node $1 to the other one; records it as run $3 (further arguments go to
# `vm migrate`).
nc_migrate() {
    local from=$1 vm=$2 run=$3 to ns before t0 t1 r0 r1 rc=0 json secs down f start_us
    shift 3
    to=$([ "$from" = a ] && echo b || echo a)
    ns=$(ns_of "$from")
    f=$LOGS/$LINK.$run.source.console
    VM_NODE=$from VM_NAME=$vm
    nc_console "$f" || true
    before=$(last_seq "$f")
    log "$LINK: NovaCron $run: $vm $from -> $to (source heartbeat seq $before)"
    t0=$(tx_bytes "$ns")
    r0=$(tx_bytes "$(ns_of "$to")")
    start_us=$(date +%s%6N)
    run ip netns exec "$ns" env NOVACRON_ADDR="https://$(addr_of "$from"):$API_PORT" \
        NOVACRON_TOKEN_FILE="$DATA/$from/admin.token" NOVACRON_CA_CERT="$PKI/ca.crt" \
        timeout -k 10 $((MIG_TIMEOUT + 90)) "$NC" vm migrate "$vm" --to "$to" --json \
        --timeout "$MIG_TIMEOUT" --wait-timeout $((MIG_TIMEOUT + 60)) "$@" \
        >"$LOGS/$LINK.$run.json" 2>"$LOGS/$LINK.$run.err" || rc=$?
    t1=$(tx_bytes "$ns")
    r1=$(tx_bytes "$(ns_of "$to")")
    json=$(jq -c . "$LOGS/$LINK.$run.json" 2>/dev/null || true)
    if [ "$rc" -ne 0 ]; then
        log "$LINK: NovaCron $run failed (exit $rc):"
        tail -n 5 "$LOGS/$LINK.$run.err" >&2 || true
        jq -r '.error // empty' <<<"${json:-null}" >&2 || true
        record "$run" "$json" FAILED - $((t1 - t0)) $((r1 - r0)) "FAILED: migration (exit $rc)"
        return 1
    fi
    secs=$(jq -r '.migration.elapsed_ms / 1000' <<<"$json")
    down=$(jq -r '.migration.downtime_ms // "-"' <<<"$json")
    VM_NODE=$to
    wait_guest nc_console "$LOGS/$LINK.$run.dest.console" "$CHECK_TIMEOUT" "$before"
    record "$run" "$json" "$secs" "$down" $((t1 - t0)) $((r1 - r0)) "$VERDICT" \
        "$(jq -r '.migration.stream_bytes // "-"' <<<"$json")"
    R[$LINK.$run.postcopy]=$(jq -r '.migration.postcopy // false' <<<"$json")
    R[$LINK.$run.clock]=$(clock_downtime "$from" "$to" "$(jq -r .id <<<"$json")" \
        "$(jq -r .target <<<"$json")")
    R[$LINK.$run.running]=$(clock_running "$to" "$(jq -r .target <<<"$json")" "$start_us")
    log "$LINK: NovaCron $run: $(fmt "$secs" 2) s (running at the destination after ${R[$LINK.$run.running]} s), downtime $down ms (shared clock ${R[$LINK.$run.clock]} ms), post-copy ${R[$LINK.$run.postcopy]}, wire ${R[$LINK.$run.mib]} MiB, stream $(jq -r '.migration.stream_bytes' <<<"$json") B, DWCP wire $(jq -r '.migration.wire_bytes' <<<"$json") B, guest $VERDICT"
    [ "$VERDICT" = ok ]
}

novacron_runs() {
    local node ok=1
    DATA=$WORK/$LINK
    for node in a b; do
        start_daemon "$node" || { ok=0; break; }
    done
    if [ "$ok" -eq 1 ]; then
        for node in a b; do
            cli "$node" image import guest --disk "$GUEST/disk.qcow2" --kernel "$GUEST/vmlinux" \
                --initrd "$GUEST/initrd.img" --cmdline "$CMDLINE" >/dev/null ||
                { log "$LINK: image import on $node failed"; ok=0; }
        done
    fi
    if [ "$ok" -eq 1 ] && nc_start_vm vm1; then
        if nc_migrate a vm1 nc-first; then
            nc_migrate b vm1 nc-back || true
        else
            record nc-back "" FAILED - - - "not run"
        fi
        cli a vm delete vm1 --force >/dev/null 2>&1 || cli b vm delete vm1 --force >/dev/null 2>&1 || true
        if nc_start_vm vm2; then
            nc_migrate a vm2 nc-second || true
        else
            record nc-second "" FAILED - - - "FAILED: boot"
        fi
        cli a vm delete vm2 --force >/dev/null 2>&1 || cli b vm delete vm2 --force >/dev/null 2>&1 || true
        if nc_start_vm vm3; then
            nc_migrate a vm3 nc-postcopy --postcopy || true
        else
            record nc-postcopy "" FAILED - - - "FAILED: boot"
        fi
    else
        for r in nc-first nc-back nc-second nc-postcopy; do
            [ -n "${R[$LINK.$r.check]:-}" ] || record "$r" "" FAILED - - - "FAILED: setup"
        done
    fi
    stop_daemons
}

# ---- QEMU alone ------------------------------------------------------------------------------

# Starts a QEMU in namespace $1 with files $2.* (extra arguments: the rest).
qemu_start() {
    local ns=$1 base=$2
    shift 2
    ip netns exec "$ns" qemu-system-x86_64 -name guest=bench -machine pc -accel "$ACCEL" -smp 1 \
        -m "${MEM_MIB}M" -nodefaults -no-user-config -display none -msg timestamp=on \
        -chardev "file,id=console,append=on,path=$base.console" -serial chardev:console \
        -chardev "socket,id=qmp,server=on,wait=off,path=$base.qmp" -mon chardev=qmp,mode=control \
        -chardev "socket,id=ev,server=on,wait=off,path=$base.ev" -mon chardev=ev,mode=control \
        -pidfile "$base.pid" -kernel "$GUEST/vmlinux" -initrd "$GUEST/initrd.img" -append "$CMDLINE" \
        -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$QDIR/disk.qcow2" \
        -device virtio-blk-pci,drive=disk0,id=virtio-disk0 "$@" >>"$base.log" 2>&1 &
    PIDS+=("$!")
    QEMU_PID=$!
}

# Records the QMP events of the QEMU of socket $1 (its second monitor) into file $2, one JSON
# object a line, until that QEMU exits; the recorder's pid goes to PIDS.
qmp_events() {
    cat >"$2.sh" <<'EOF'
printf '%s\n' '{"execute":"qmp_capabilities"}'
exec cat >"$1"
EOF
    socat "UNIX-CONNECT:$1" "EXEC:bash $2.sh $2" 2>/dev/null &
    PIDS+=("$!")
    EVENTS_PID=$!
}

# Microseconds of the host clock (which the namespaces share) of the first event $2 in the
# QMP events of file $1 at or after microsecond $3; "-" when there is none.
event_us() {
    local s us
    while read -r s us; do
        if [ $((s * 1000000 + us)) -ge "$3" ]; then
            echo $((s * 1000000 + us))
            return
        fi
    done < <(jq -r --arg e "$2" 'select(.event? == $e) | "\(.timestamp.seconds) \(.timestamp.microseconds)"' "$1" 2>/dev/null)
    echo -
}

wait_socket() {
    for _ in $(seq 100); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# One QEMU migration, configuration $1 (tcp|multifd-zstd), recorded as run qemu-$1.
qemu_run() {
    local cfg=$1 run=qemu-$1 src dst src_pid dst_pid before t0 t1 r0 r1 st out="" secs down caps params
    local ev_pids=() start_us stop_us resume_us s
    QDIR=$WORK/$LINK/qemu-$cfg
    mkdir -p "$QDIR"
    src=$QDIR/src
    dst=$QDIR/dst
    # One overlay for both ends, as on shared storage: the destination opens it inactive
    # and takes it over at switch-over. (NovaCron copies the VM's overlay during switch-over.)
    qemu-img create -q -f qcow2 -b "$GUEST/disk.qcow2" -F qcow2 "$QDIR/disk.qcow2"
    log "$LINK: QEMU $cfg: booting the source"
    qemu_start "$NS_A" "$src"
    src_pid=$QEMU_PID
    qemu_start "$NS_B" "$dst" -incoming defer
    dst_pid=$QEMU_PID
    if ! wait_socket "$src.qmp" || ! wait_socket "$dst.qmp"; then
        log "$LINK: QEMU $cfg did not start:"
        cat "$src.log" "$dst.log" >&2 || true
        record "$run" "" FAILED - - - "FAILED: QEMU did not start"
        stop_pid "$src_pid"; stop_pid "$dst_pid"; forget_pid "$src_pid"; forget_pid "$dst_pid"
        return 1
    fi
    for _ in $(seq "$BOOT_TIMEOUT"); do
        [ "$(new_beats "$src.console" 0)" -ge 3 ] && break
        sleep 1
    done
    # The guest's stop (source) and start (destination) as QEMU's events date them.
    for s in "$src" "$dst"; do
        wait_socket "$s.ev" && qmp_events "$s.ev" "$s.events" && ev_pids+=("$EVENTS_PID")
    done
    caps='[{"capability":"events","state":true},{"capability":"auto-converge","state":true}]'
    params='{}'
    if [ "$cfg" = multifd-zstd ]; then
        caps='[{"capability":"events","state":true},{"capability":"auto-converge","state":true},{"capability":"multifd","state":true}]'
        params='{"multifd-channels":4,"multifd-compression":"zstd","max-bandwidth":137438953472}'
    fi
    st=ok
    for s in "$src.qmp" "$dst.qmp"; do
        qmp_ok "$s" "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":$caps}}" || st=bad
        [ "$params" = '{}' ] || qmp_ok "$s" "{\"execute\":\"migrate-set-parameters\",\"arguments\":$params}" || st=bad
    done
    qmp_ok "$dst.qmp" "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"tcp:$ADDR_B:$QEMU_PORT\"}}" || st=bad
    for _ in $(seq 50); do
        ip netns exec "$NS_B" ss -Hltn "sport = :$QEMU_PORT" 2>/dev/null | grep -q . && break
        sleep 0.1
    done
    before=$(last_seq "$src.console")
    [ "$before" -gt 0 ] || st=bad
    if [ "$st" != ok ]; then
        log "$LINK: QEMU $cfg: set-up failed (source heartbeat seq $before)"
        record "$run" "" FAILED - - - "FAILED: set-up"
        stop_pid "$src_pid"; stop_pid "$dst_pid"; forget_pid "$src_pid"; forget_pid "$dst_pid"
        return 1
    fi
    log "$LINK: QEMU $cfg: migrating (source heartbeat seq $before)"
    t0=$(tx_bytes "$NS_A")
    r0=$(tx_bytes "$NS_B")
    start_us=$(date +%s%6N)
    qmp_ok "$src.qmp" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:$ADDR_B:$QEMU_PORT\"}}" || st=bad
    local deadline=$((SECONDS + MIG_TIMEOUT)) status=none
    while [ "$st" = ok ]; do
        out=$(qmp "$src.qmp" '{"execute":"query-migrate"}')
        status=$(jq -r '.return.status // "none"' <<<"${out:-null}" 2>/dev/null || echo none)
        case $status in
            completed) break ;;
            failed | cancelled) st=bad; break ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$LINK: QEMU $cfg: no end after $MIG_TIMEOUT s (status $status), cancelling"
            qmp "$src.qmp" '{"execute":"migrate_cancel"}' >/dev/null || true
            st=timeout
            break
        fi
        sleep 1
    done
    t1=$(tx_bytes "$NS_A")
    r1=$(tx_bytes "$NS_B")
    jq -c '.return' <<<"${out:-null}" >"$LOGS/$LINK.$run.json" 2>/dev/null || true
    if [ "$st" != ok ]; then
        log "$LINK: QEMU $cfg failed (status $status): $(jq -c '.return["error-desc"] // .return' <<<"${out:-null}" 2>/dev/null)"
        record "$run" "$(jq -c '.return' <<<"${out:-null}" 2>/dev/null)" FAILED - $((t1 - t0)) $((r1 - r0)) "FAILED: migration $status"
    else
        secs=$(jq -r '.return["total-time"] / 1000' <<<"$out")
        down=$(jq -r '.return.downtime // "-"' <<<"$out")
        wait_guest file_console "$dst.console" "$CHECK_TIMEOUT" "$before"
        record "$run" "$(jq -c '.return' <<<"$out")" "$secs" "$down" $((t1 - t0)) $((r1 - r0)) "$VERDICT" \
            "$(jq -r '.return.ram.transferred // "-"' <<<"$out")"
        stop_us=$(event_us "$src.events" STOP "$start_us")
        resume_us=$(event_us "$dst.events" RESUME "$start_us")
        if num "$stop_us" && num "$resume_us"; then
            R[$LINK.$run.clock]=$(((resume_us - stop_us) / 1000))
        fi
        if num "$resume_us"; then
            R[$LINK.$run.running]=$(span_s "$start_us" "$resume_us")
        fi
        log "$LINK: QEMU $cfg: $(fmt "$secs" 2) s (running at the destination after ${R[$LINK.$run.running]:--} s), downtime $down ms (shared clock ${R[$LINK.$run.clock]:--} ms), wire ${R[$LINK.$run.mib]} MiB, throttle $(jq -r '.return["cpu-throttle-percentage"] // 0' <<<"$out") %, guest $VERDICT"
    fi
    cp "$src.console" "$LOGS/$LINK.$run.source.console" 2>/dev/null || true
    cp "$dst.console" "$LOGS/$LINK.$run.dest.console" 2>/dev/null || true
    cat "$src.log" "$dst.log" >"$LOGS/$LINK.$run.qemu.log" 2>/dev/null || true
    stop_pid "$src_pid"; stop_pid "$dst_pid"; forget_pid "$src_pid"; forget_pid "$dst_pid"
    for s in "${ev_pids[@]}"; do
        stop_pid "$s"; forget_pid "$s"
    done
    rm -f "$QDIR/disk.qcow2"
}

# ---- report ----------------------------------------------------------------------------------

ROWS=(nc-first nc-back nc-second nc-postcopy qemu-tcp qemu-multifd-zstd)
row_name() {
    case $1 in
        nc-first) echo "NovaCron a → b" ;;
        nc-back) echo "NovaCron back b → a" ;;
        nc-second) echo "NovaCron second VM a → b" ;;
        nc-postcopy) echo "NovaCron third VM a → b, post-copy allowed" ;;
        qemu-tcp) echo "QEMU tcp (defaults)" ;;
        qemu-multifd-zstd) echo "QEMU multifd 4 + zstd" ;;
    esac
}

# Best (lowest) field $2 (s or mib) among the QEMU runs of link $1 that completed.
qemu_best() {
    local link=$1 field=$2 best=- c v
    for c in "${QEMU_CONFIGS[@]}"; do
        v=${R[$link.qemu-$c.$field]:-}
        num "${R[$link.qemu-$c.s]:-}" || continue # completed runs only
        num "$v" || continue
        if [ "$best" = - ] || le "$v" "$best"; then best=$v; fi
    done
    echo "$best"
}


link_report() {
    local link=$1 r bs bm ns nm br nr
    echo "### $link"
    echo
    echo "| run | total s | running at the destination after s | downtime ms | downtime on the shared clock ms | wire MiB | guest check | migration stream MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    for r in "${ROWS[@]}"; do
        [ -n "${R[$link.$r.check]:-}" ] || continue
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(row_name "$r")" "$(fmt "${R[$link.$r.s]}" 2)" \
            "${R[$link.$r.running]:--}" "${R[$link.$r.down]}" "${R[$link.$r.clock]:--}" "${R[$link.$r.mib]}" \
            "${R[$link.$r.check]}" "${R[$link.$r.stream]}"
    done
    echo
    bs=$(qemu_best "$link" s)
    bm=$(qemu_best "$link" mib)
    br=$(qemu_best "$link" running)
    ns=${R[$link.nc-first.s]:--}
    nm=${R[$link.nc-first.mib]:--}
    nr=${R[$link.nc-first.running]:--}
    echo "NovaCron (a → b) / QEMU best: time to the guest running at the destination $(ratio "$nr" "$br") ($nr s vs $br s; against QEMU's own total-time $(ratio "$ns" "$bs"): $(fmt "$ns" 2) s vs $(fmt "$bs" 2) s), bytes $(ratio "$nm" "$bm") ($nm MiB vs $bm MiB)"
    echo
    # The time target compares the same span on both sides, when both were measured: from
    # the command to the guest running at the destination (QEMU's total-time ends when its
    # source has written the last bytes, before they cross).
    if num "$nr" && num "$br"; then
        ns=$nr bs=$br
    fi
    if [ -n "${R[$link.nc-postcopy.postcopy]:-}" ]; then
        echo "The third VM's migration switched to post-copy: ${R[$link.nc-postcopy.postcopy]}."
        echo
    fi
    echo "Targets:"
    if [ "$link" = continent ] || [ "$link" = intercontinental ]; then
        if [ "$bs" = - ]; then
            echo "- total time and wire bytes ≤ 0.5 × QEMU best: not measured (no QEMU run completed)"
        else
            echo "- total time ≤ 0.5 × QEMU best: $(ratio "$ns" "$bs") × - $(verdict le "$(ratio "$ns" "$bs" 4)" 0.5)"
            echo "- wire bytes ≤ 0.5 × QEMU best: $(ratio "$nm" "$bm") × - $(verdict le "$(ratio "$nm" "$bm" 4)" 0.5)"
        fi
    fi
    for r in nc-first nc-back nc-second nc-postcopy; do
        [ -n "${R[$link.$r.check]:-}" ] || continue
        echo "- downtime ≤ $DOWNTIME_TARGET_MS ms, $(row_name "$r"): ${R[$link.$r.down]} ms - $(verdict le "${R[$link.$r.down]}" "$DOWNTIME_TARGET_MS")"
    done
    echo "- migration back ≤ 0.2 × the bytes of the first: $(ratio "${R[$link.nc-back.mib]:--}" "$nm") × (${R[$link.nc-back.mib]:--} vs $nm MiB) - $(verdict le "$(ratio "${R[$link.nc-back.mib]:--}" "$nm" 4)" 0.2)"
    local all=met
    for r in "${ROWS[@]}"; do
        [ -z "${R[$link.$r.check]:-}" ] || [ "${R[$link.$r.check]}" = ok ] || all=MISSED
    done
    echo "- every run passes the guest check - $all"
    echo
}

# ---- main ------------------------------------------------------------------------------------

STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
for LINK in "${LINKS[@]}"; do
    log "$LINK: link up"
    EMU_STARTED=1
    wan_up "$WANEM" "$LINK" "$WORK" --ns-a "$NS_A" --ns-b "$NS_B"
    novacron_runs
    for c in "${QEMU_CONFIGS[@]}"; do
        qemu_run "$c" || true
    done
    stop_link
    cp "$WORK/$LINK.wanem.log" "$LOGS/" 2>/dev/null || true
    wan_counters "$WORK/$LINK.wanem.log"
    rm -rf "${WORK:?}/$LINK"
    link_report "$LINK" | tee "$LOGS/$LINK.md"
done

REPORT=$OUT_DIR/migrate-$STAMP.md
{
    echo "date: $STARTED; commit $COMMIT; $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); kernel $(uname -r); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "guest: $MEMORY, accel $ACCEL, cmdline \"$CMDLINE\"; QEMU $(qemu-system-x86_64 --version | head -n1 | awk '{ print $4 }'); wire = tx bytes of ncwan0 in the sending namespace"
    echo
    for LINK in "${LINKS[@]}"; do
        link_report "$LINK"
    done
} >"$REPORT"
grep -q "MISSED\|FAILED" "$REPORT" && failed=1
log "saved $REPORT, $RAW and the logs in $LOGS"
exit "$failed"
