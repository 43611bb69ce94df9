#!/usr/bin/env bash
# What the test guest's memory is made of, page by page, and what each kind of page costs
# compressed: the floor under any first migration of that guest.
#
# Boots the test guest under QEMU (TCG, no network), waits for its heartbeat, stops it and saves
# its whole memory (QMP `pmemsave`), then counts its 4 KiB pages: all zeros; copies of a page
# seen before; the guest program's random pages (`NCPG` at the page's start) and text pages
# (`NCGUEST page=`); the rest (kernel, page cache, the program's code). For each kind of unique
# page, its bytes and those of `zstd -3` and `zstd -19` over all such pages in memory order; and
# how many of the rest are pages of the kernel's loadable segments (`readelf -l`) or of the files
# in its initrd (unpacked with `cpio`): what a node holding the image puts into its content
# store.
#
# Usage: bench/guest-memory.sh
# Environment:
#   GUEST_DIR                 the test guest (default target/test-guest, scripts/build-test-guest.sh)
#   GUEST_MEMORY_SIZE         guest memory (default 256M)
#   GUEST_MEMORY_CMDLINE      kernel command line (default: bench/migrate.sh's,
#                             console=ttyS0 quiet panic=-1 nc.mem=160M nc.dirty=4M)
#   GUEST_MEMORY_HEARTBEATS   heartbeats to wait for before the stop (default 3)
# Needs qemu-system-x86_64, qemu-img, socat, zstd, gzip, cpio, readelf (binutils), split,
#   truncate, sha256sum.
# Exits 2 when the guest does not come up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GUEST=${GUEST_DIR:-$ROOT/target/test-guest}
SIZE=${GUEST_MEMORY_SIZE:-256M}
CMDLINE=${GUEST_MEMORY_CMDLINE:-console=ttyS0 quiet panic=-1 nc.mem=160M nc.dirty=4M}
BEATS=${GUEST_MEMORY_HEARTBEATS:-3}
PAGE=4096

log() { echo "guest-memory: $*" >&2; }

for f in vmlinux initrd.img disk.qcow2; do
    [ -f "$GUEST/$f" ] || { log "no $GUEST/$f: run scripts/build-test-guest.sh first"; exit 2; }
done
WORK=$(mktemp -d "${TMPDIR:-/dev/shm}/guest-memory.XXXXXX")
cleanup() {
    [ -f "$WORK/qemu.pid" ] && kill "$(cat "$WORK/qemu.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

qemu-img create -q -f qcow2 -b "$GUEST/disk.qcow2" -F qcow2 "$WORK/disk.qcow2"
qemu-system-x86_64 -machine pc -accel tcg -smp 1 -m "$SIZE" -nodefaults -no-user-config \
    -display none -chardev "file,id=console,path=$WORK/console" -serial chardev:console \
    -qmp "unix:$WORK/qmp,server=on,wait=off" -kernel "$GUEST/vmlinux" -initrd "$GUEST/initrd.img" \
    -append "$CMDLINE" -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$WORK/disk.qcow2" \
    -device virtio-blk-pci,drive=disk0 -daemonize -pidfile "$WORK/qemu.pid"
for _ in $(seq 240); do
    grep -q "NCGUEST heartbeat seq=$BEATS " "$WORK/console" 2>/dev/null && break
    sleep 0.5
done
grep -q "NCGUEST heartbeat seq=$BEATS " "$WORK/console" ||
    { log "no heartbeat $BEATS within 120 s"; tail -5 "$WORK/console" >&2 || true; exit 2; }
bytes=$(numfmt --from=iec "$SIZE")
printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"stop"}' \
    "{\"execute\":\"pmemsave\",\"arguments\":{\"val\":0,\"size\":$bytes,\"filename\":\"$WORK/ram\"}}" \
    '{"execute":"quit"}' | socat -t 10 - "UNIX-CONNECT:$WORK/qmp" >/dev/null
for _ in $(seq 40); do [ "$(stat -c %s "$WORK/ram" 2>/dev/null || echo 0)" -eq "$bytes" ] && break; sleep 0.25; done
log "$SIZE saved after heartbeat $BEATS; cmdline \"$CMDLINE\""

# Pages as files p/NNNNNN; kinds by the offsets of their markers.
mkdir "$WORK/p"
split -b "$PAGE" -a 6 -d "$WORK/ram" "$WORK/p/"
marked() { grep -obUaF "$1" "$WORK/ram" | awk -F: -v p="$PAGE" '$1 % p == 0 { printf "%06d\n", $1 / p }'; }
marked NCPG >"$WORK/random.idx"
marked 'NCGUEST page=' >"$WORK/text.idx"
zero=$(head -c "$PAGE" /dev/zero | sha256sum | cut -d' ' -f1)
(cd "$WORK/p" && find . -type f -printf '%f\n' | sort | xargs sha256sum) >"$WORK/sums"

# Kernel pages: each loadable segment from its page-aligned file offset, whole pages only.
: >"$WORK/kernel.sums"
while read -r off filesz; do
    off=$((off)) filesz=$((filesz)) # hexadecimal in readelf's table
    start=$((off / PAGE))
    count=$(((off + filesz) / PAGE - start))
    [ "$count" -gt 0 ] || continue
    dd if="$GUEST/vmlinux" bs="$PAGE" skip="$start" count="$count" status=none |
        split -b "$PAGE" -a 6 -d - "$WORK/k$start."
done < <(readelf -lW "$GUEST/vmlinux" | awk '$1 == "LOAD" { print $2, $5 }')
find "$WORK" -maxdepth 1 -name 'k*.*' -print0 | xargs -0 -r sha256sum | cut -d' ' -f1 | sort -u >"$WORK/kernel.sums"

# Initrd pages: each regular file of the unpacked archive from its first byte, the last page
# padded with zeros, as the kernel holds them in its RAM file system.
mkdir "$WORK/initrd" "$WORK/i"
(cd "$WORK/initrd" && { gzip -dc "$GUEST/initrd.img" 2>/dev/null || zstd -qdc "$GUEST/initrd.img"; } |
    cpio -id --quiet --no-absolute-filenames 2>/dev/null) || true
n=0
while IFS= read -r -d '' f; do
    n=$((n + 1))
    split -b "$PAGE" -a 6 -d "$f" "$WORK/i/$n."
done < <(find "$WORK/initrd" -type f -size +0 -print0)
find "$WORK/i" -type f -print0 | xargs -0 -r truncate -s "$PAGE"
find "$WORK/i" -type f -print0 | xargs -0 -r sha256sum | cut -d' ' -f1 | sort -u >"$WORK/initrd.sums"

# One kind per page, first sight only for copies.
awk -v zero="$zero" -v rnd="$WORK/random.idx" -v txt="$WORK/text.idx" -v ker="$WORK/kernel.sums" \
    -v ird="$WORK/initrd.sums" '
    BEGIN {
        while ((getline l < rnd) > 0) kind[l] = "random"
        while ((getline l < txt) > 0) kind[l] = "text"
        while ((getline l < ker) > 0) kernel[l] = 1
        while ((getline l < ird) > 0) initrd[l] = 1
    }
    {
        page = $2; sub(/^\.\//, "", page)
        if ($1 == zero) k = "zero"
        else if ($1 in seen) k = "copy"
        else if (page in kind) k = kind[page]
        else if ($1 in kernel) k = "kernel"
        else if ($1 in initrd) k = "initrd"
        else k = "other"
        seen[$1] = 1
        print k, page
    }' "$WORK/sums" >"$WORK/kinds"

echo "| kind | pages | MiB | zstd -3 MiB | zstd -19 MiB |"
echo "| --- | ---: | ---: | ---: | ---: |"
for k in zero copy random text kernel initrd other; do
    n=$(awk -v k="$k" '$1 == k' "$WORK/kinds" | wc -l)
    if [ "$k" = zero ] || [ "$k" = copy ] || [ "$n" -eq 0 ]; then
        echo "| $k | $n | $(awk -v n="$n" 'BEGIN { printf "%.1f", n * 4096 / 1048576 }') | - | - |"
        continue
    fi
    awk -v k="$k" -v d="$WORK/p" '$1 == k { print d "/" $2 }' "$WORK/kinds" | xargs cat >"$WORK/$k.bin"
    z3=$(zstd -3 -c "$WORK/$k.bin" | wc -c)
    z19=$(zstd -19 -T0 -c "$WORK/$k.bin" | wc -c)
    awk -v n="$n" -v a="$z3" -v b="$z19" -v k="$k" \
        'BEGIN { printf "| %s | %d | %.1f | %.1f | %.1f |\n", k, n, n * 4096 / 1048576, a / 1048576, b / 1048576 }'
done
