# The corpus of bench/hde-corpus.sh: its items made (once per scale, kept in $CORPUS) and the
# samples cut from them. Sourced, not run, by bench/hde-corpus.sh after its settings and `log`.

# Appends one line about a corpus item to the manifest.
manifest() { echo "$(date -u '+%Y-%m-%d %H:%M UTC') $*" >>"$CORPUS/MANIFEST"; }

make_random() {
    local mib
    mib=$(scaled "$RANDOM_MIB")
    log "corpus: random, $mib MiB from /dev/urandom"
    head -c $((mib * 1048576)) /dev/urandom >"$CORPUS/random.tmp"
    mv "$CORPUS/random.tmp" "$CORPUS/random"
    manifest "random: $mib MiB of /dev/urandom"
}

# Log lines as log_file in crates/novacron/tests/dwcp/main.rs writes them, with a level and a VM
# id that vary, cut at the size.
make_text() {
    local mib
    mib=$(scaled "$TEXT_MIB")
    log "corpus: text, $mib MiB of log lines"
    awk -v n=$((mib * 1048576)) 'BEGIN {
        split("INFO INFO INFO DEBUG WARN", lv, " ")
        while (t < n) {
            s = sprintf("2026-11-25T%02d:%02d:%02d %s node-%d vm-%04x migrated page range %.0f..%.0f in %d us\n",
                int(i / 3600) % 24, int(i / 60) % 60, i % 60, lv[i % 5 + 1], i % 7, (i * 2654435761) % 65536,
                i * 4096, i * 4096 + 4095, (i * 37) % 1000)
            if (t + length(s) > n) s = substr(s, 1, n - t)
            printf "%s", s
            t += length(s)
            i++
        }
    }' >"$CORPUS/text.tmp"
    mv "$CORPUS/text.tmp" "$CORPUS/text"
    manifest "text: $mib MiB of generated log lines"
}

# Files of directory $1 (regular files, sorted by path) up to $2 bytes, one path a line.
pick_files() {
    find "$1" -type f -printf '%s %p\n' 2>/dev/null | LC_ALL=C sort -k2 |
        awk -v budget="$2" '{ size = $1; sub(/^[0-9]+ /, ""); if (used + size <= budget) { used += size; print } }'
}

make_disk() {
    local mib tree raw budget cmds n i f extra
    mib=$(scaled "$DISK_MIB" 16)
    tree=$WORK/disk-tree
    raw=$WORK/disk.raw
    budget=$((mib * 1048576 * 8 / 10))
    log "corpus: disk, ext4 of $mib MiB (files up to $((budget / 1048576)) MiB) as qcow2, and disk-later"
    rm -rf "$tree"
    mkdir -p "$tree/guest"
    for f in cmdline initrd.img vmlinuz vmlinux; do
        [ -f "$GUEST/$f" ] || continue
        [ "$(($(stat -c %s "$GUEST/$f") + $(du -sb "$tree" | cut -f1)))" -le $((budget / 2)) ] || continue
        cp "$GUEST/$f" "$tree/guest/"
    done
    budget=$((budget - $(du -sb "$tree" | cut -f1)))
    {
        pick_files /usr/lib/x86_64-linux-gnu $((budget * 6 / 10))
        pick_files /usr/share/doc $((budget * 4 / 10))
    } >"$WORK/disk-files"
    tar -C / --verbatim-files-from -T <(sed 's|^/||' "$WORK/disk-files") -cf - 2>/dev/null | tar -C "$tree" -xf -
    rm -f "$raw"
    truncate -s "${mib}M" "$raw"
    mkfs.ext4 -q -F -E root_owner=0:0 -L corpus -d "$tree" "$raw"
    qemu-img convert -O qcow2 "$raw" "$CORPUS/disk.tmp"
    # The later disk: every 20th file rewritten (its content plus a few KiB of log lines, as an
    # update or a growing log would), a new directory with a log and new library files (about
    # 5 % of the files' size), through debugfs on the raw file system.
    cmds=$WORK/disk-later.debugfs
    mkdir -p "$WORK/later"
    : >"$cmds"
    n=0
    i=0
    while read -r f; do
        i=$((i + 1))
        [ $((i % 20)) -eq 0 ] || continue
        n=$((n + 1))
        { cat "$f"; head -c 4096 "$CORPUS/text" 2>/dev/null || printf 'updated %d\n' "$n"; } >"$WORK/later/$n"
        printf 'rm "%s"\nwrite "%s" "%s"\n' "$f" "$WORK/later/$n" "$f" >>"$cmds"
    done <"$WORK/disk-files"
    extra=$((budget / 20))
    head -c $((extra / 2)) "$CORPUS/text" >"$WORK/later/new.log" 2>/dev/null || : >"$WORK/later/new.log"
    printf 'mkdir /later\nwrite "%s" /later/new.log\n' "$WORK/later/new.log" >>"$cmds"
    i=0
    while read -r f; do
        i=$((i + 1))
        printf 'write "%s" "/later/lib-%d"\n' "$f" "$i" >>"$cmds"
    done < <(find /usr/lib/x86_64-linux-gnu -type f -printf '%s %p\n' 2>/dev/null | LC_ALL=C sort -k2 -r |
        awk -v budget=$((extra / 2)) '{ size = $1; sub(/^[0-9]+ /, ""); if (used + size <= budget) { used += size; print } }')
    debugfs -w -f "$cmds" "$raw" >"$WORK/disk-later.debugfs.log" 2>&1
    if ! e2fsck -fn "$raw" >"$WORK/disk-later.fsck.log" 2>&1; then
        log "corpus: the later file system does not check:"
        tail -n 20 "$WORK/disk-later.fsck.log" >&2
        return 1
    fi
    qemu-img convert -O qcow2 "$raw" "$CORPUS/disk-later.tmp"
    mv "$CORPUS/disk.tmp" "$CORPUS/disk"
    mv "$CORPUS/disk-later.tmp" "$CORPUS/disk-later"
    manifest "disk: qcow2 of a $mib MiB ext4 holding $(wc -l <"$WORK/disk-files") files of /usr/lib/x86_64-linux-gnu and /usr/share/doc and $(find "$tree/guest" -type f | wc -l) of the test guest, $(($(du -sb "$tree" | cut -f1) / 1048576)) MiB"
    manifest "disk-later: the same with $n files rewritten and $((i + 1)) added ($(mib "$extra") MiB)"
    rm -rf "$tree" "$raw" "$WORK/later"
}

# Heartbeats with seq > $2 in console file $1.
beats_after() {
    { grep -o 'NCGUEST heartbeat seq=[0-9]*' "$1" 2>/dev/null || true; } |
        awk -F= -v after="$2" '$2 > after { n++ } END { print n + 0 }'
}
last_seq() {
    { grep -o 'NCGUEST heartbeat seq=[0-9]*' "$1" 2>/dev/null || true; } |
        awk -F= '{ if ($2 > m) m = $2 } END { print m + 0 }'
}

# Writes QEMU's migration stream of the running guest (socket $1) to file $2; the guest runs on.
save_memory() {
    local qmp_sock=$1 file=$2 out status deadline
    rm -f "$file"
    qmp_ok "$qmp_sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"file:$file\"}}" || return 1
    deadline=$((SECONDS + MIG_TIMEOUT))
    while :; do
        out=$(qmp "$qmp_sock" '{"execute":"query-migrate"}')
        status=$(jq -r '.return.status // "none"' <<<"${out:-null}" 2>/dev/null || echo none)
        case $status in
            completed) break ;;
            failed | cancelled)
                log "corpus: migrate to $file: $status $(jq -c '.return["error-desc"] // empty' <<<"$out")"
                return 1
                ;;
        esac
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "corpus: migrate to $file not done after $MIG_TIMEOUT s (status $status)"
            qmp "$qmp_sock" '{"execute":"migrate_cancel"}' >/dev/null || true
            return 1
        fi
        sleep 0.5
    done
    echo "$out" >"$file.query-migrate.json"
    # The source stops at the end of a migration (postmigrate): let the guest go on.
    qmp_ok "$qmp_sock" '{"execute":"cont"}'
}

# mem-early and mem-late: one guest, booted like bench/migrate.sh's QEMU baseline.
make_memory() {
    local dir=$WORK/guest pid first t_hb seq_e seq_l before
    mkdir -p "$dir"
    log "corpus: mem-early and mem-late: guest of $MEMORY ($ACCEL), \"$CMDLINE\", images at $EARLY_S and $LATE_S s after the first heartbeat"
    qemu-img create -q -f qcow2 -b "$GUEST/disk.qcow2" -F qcow2 "$dir/disk.qcow2"
    qemu-system-x86_64 -name guest=corpus -machine pc -accel "$ACCEL" -smp 1 \
        -m "${MEM_MIB}M" -nodefaults -no-user-config -display none -msg timestamp=on \
        -chardev "file,id=console,append=on,path=$dir/console" -serial chardev:console \
        -chardev "socket,id=qmp,server=on,wait=off,path=$dir/qmp" -mon chardev=qmp,mode=control \
        -pidfile "$dir/qemu.pid" -kernel "$GUEST/vmlinux" -initrd "$GUEST/initrd.img" -append "$CMDLINE" \
        -blockdev "driver=qcow2,node-name=disk0,file.driver=file,file.filename=$dir/disk.qcow2" \
        -device virtio-blk-pci,drive=disk0,id=virtio-disk0 >>"$dir/qemu.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    first=0
    for _ in $(seq "$BOOT_TIMEOUT"); do
        [ "$(beats_after "$dir/console" 0)" -ge 1 ] && { first=1; break; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if [ "$first" -ne 1 ] || [ ! -S "$dir/qmp" ]; then
        log "corpus: the guest printed no heartbeat within $BOOT_TIMEOUT s:"
        tail -n 20 "$dir/console" "$dir/qemu.log" >&2 2>/dev/null || true
        stop_pid "$pid"
        forget_pid "$pid"
        return 1
    fi
    t_hb=$SECONDS
    local ok=1
    while [ $((SECONDS - t_hb)) -lt "$EARLY_S" ]; do sleep 1; done
    seq_e=$(last_seq "$dir/console")
    save_memory "$dir/qmp" "$CORPUS/mem-early.tmp" || ok=0
    while [ "$ok" -eq 1 ] && [ $((SECONDS - t_hb)) -lt "$LATE_S" ]; do sleep 1; done
    seq_l=$(last_seq "$dir/console")
    [ "$ok" -eq 1 ] && { save_memory "$dir/qmp" "$CORPUS/mem-late.tmp" || ok=0; }
    # The guest ran on after both images: new heartbeats, and none reports a failed check.
    before=$(last_seq "$dir/console")
    for _ in $(seq 10); do
        [ "$(beats_after "$dir/console" "$before")" -ge 2 ] && break
        sleep 1
    done
    if [ "$(beats_after "$dir/console" "$before")" -lt 2 ] ||
        grep -q 'failed=[1-9]\|NCGUEST check-failed\|NCGUEST error\|Kernel panic\|Oops' "$dir/console"; then
        log "corpus: the guest did not run on cleanly after the images:"
        tail -n 10 "$dir/console" >&2
        ok=0
    fi
    stop_pid "$pid"
    forget_pid "$pid"
    cp "$dir/console" "$LOGS/corpus-guest.console" 2>/dev/null || true
    [ "$ok" -eq 1 ] || return 1
    mv "$CORPUS/mem-early.tmp" "$CORPUS/mem-early"
    mv "$CORPUS/mem-late.tmp" "$CORPUS/mem-late"
    mv "$CORPUS/mem-early.tmp.query-migrate.json" "$CORPUS/mem-early.query-migrate.json"
    mv "$CORPUS/mem-late.tmp.query-migrate.json" "$CORPUS/mem-late.query-migrate.json"
    manifest "mem-early: QEMU $(qemu-system-x86_64 --version | head -n1 | awk '{ print $4 }') migration stream (migrate file:) of a $MEMORY $ACCEL guest, \"$CMDLINE\", ${EARLY_S} s after its first heartbeat (heartbeat seq $seq_e), $(stat -c %s "$CORPUS/mem-early") bytes"
    manifest "mem-late: the same guest, running on, ${LATE_S} s after its first heartbeat (heartbeat seq $seq_l), $(stat -c %s "$CORPUS/mem-late") bytes"
    rm -rf "$dir"
}

# Sample of corpus item $1 for this link: its first $2 MiB, in $SAMPLES/$1.
make_sample() {
    head -c $(($2 * 1048576)) "$CORPUS/$1" >"$SAMPLES/$1"
}

