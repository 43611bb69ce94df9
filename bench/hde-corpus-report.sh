# The report of bench/hde-corpus.sh: number formatting, its Markdown tables and the targets
# (met/MISSED), from the results in its array R. Sourced, not run, by bench/hde-corpus.sh.

mib() { if num "${1:-}"; then awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; else echo -; fi; }
# Effective Mbit/s of run $2 of item $1: sample bits / seconds; "<x" for a run stopped at its cap.
eff() {
    local k=$LINK.$1.$2 b=${R[$LINK.$1.bytes]:-}
    case ${R[$k.st]:-} in
        ok) awk -v b="$b" -v s="${R[$k.s]}" 'BEGIN { printf "%.1f", b * 8 / s / 1e6 }' ;;
        stopped) awk -v b="$b" -v s="${R[$k.s]}" 'BEGIN { printf "<%.1f", b * 8 / s / 1e6 }' ;;
        FAILED) echo FAILED ;;
        *) echo - ;;
    esac
}
# The same as a number ("" unless the run completed).
eff_num() { if [ "${R[$LINK.$1.$2.st]:-}" = ok ]; then eff "$1" "$2"; fi; }
# Comparisons of two numbers, false when either is not one (called through verdict and judge).
# shellcheck disable=SC2317
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && a + 0 <= b + 0) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && a + 0 < b + 0) }'; }
# shellcheck disable=SC2317
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && a + 0 >= b + 0) }'; }
# shellcheck disable=SC2317
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && b ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && a + 0 > b + 0) }'; }
times() { awk -v a="$1" -v f="$2" 'BEGIN { if (a ~ /^[-+]?[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/) printf "%.6f", a * f; else printf "-" }'; }
# a as a percentage of b with $3 decimals (default 1), "-" when either is not a number.
pct() { awk -v a="$1" -v b="$2" -v d="${3:-1}" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.*f", d, a / b * 100; else printf "-" }'; }
plus() { if num "$1" && num "$2"; then echo $(($1 + $2)); else echo -; fi; }
# Fixed setting $2 of item $1 with the best completed time: prints "setting Mbit/s" or nothing.
best_fixed() {
    local item=$1 s best='' bs=
    for s in "${SETTINGS[@]}"; do
        [ "${R[$LINK.$item.c-${s/:/-}.st]:-}" = ok ] || continue
        if [ -z "$best" ] || lt "${R[$LINK.$item.c-${s/:/-}.s]}" "$bs"; then
            best=$s
            bs=${R[$LINK.$item.c-${s/:/-}.s]}
        fi
    done
    [ -z "$best" ] || echo "$best $(eff "$item" "c-${best/:/-}")"
}

# ---- report ----------------------------------------------------------------------------------

FIRST=(mem-early mem-late disk) # the images the bytes and throughput targets are about

tables() {
    local item s
    echo "### First transfers: bytes on the wire (MiB, sender to receiver)"
    echo
    echo "| link | item | sample | zstd -3 of the sample (local) | DWCP auto | DWCP / zstd -3 | DWCP segments sent again % | DWCP payload (its summary) | DWCP codec at the end | zstd -1 | lz4 | zstd -19 |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
    for LINK in "${DONE[@]}"; do
        for item in "${ITEMS[@]}"; do
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$LINK" "$item" \
                "$(mib "${R[$LINK.$item.bytes]}")" "$(mib "${R[$LINK.$item.z3]}")" \
                "$(mib "${R[$LINK.$item.auto.tx]:-}")" "$(ratio "${R[$LINK.$item.auto.tx]:-}" "${R[$LINK.$item.z3]}" 3)" \
                "$(pct "${R[$LINK.$item.auto.retrans]:-}" "${R[$LINK.$item.auto.segs]:-}" 2)" \
                "$(mib "${R[$LINK.$item.auto.payload]:-}")" \
                "${R[$LINK.$item.auto.codec]:--}" "$(mib "${R[$LINK.$item.zstd-1.tx]:-}")" \
                "$(mib "${R[$LINK.$item.lz4.tx]:-}")" "$(mib "${R[$LINK.$item.zstd-19.tx]:-}")"
        done
    done
    echo
    echo "### First transfers: effective throughput (Mbit/s of the sample: its bytes / time to the receiver's end)"
    echo
    echo "| link | item | DWCP auto | DWCP s | zstd -1 | zstd -1 s | lz4 | zstd -19 | DWCP / zstd -1 |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for LINK in "${DONE[@]}"; do
        for item in "${ITEMS[@]}"; do
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$LINK" "$item" \
                "$(eff "$item" auto)" "$(fmt "${R[$LINK.$item.auto.s]:-}" 2)" "$(eff "$item" zstd-1)" \
                "$(fmt "${R[$LINK.$item.zstd-1.s]:-}" 2)" "$(eff "$item" lz4)" "$(eff "$item" zstd-19)" \
                "$(ratio "$(eff_num "$item" auto)" "$(eff_num "$item" zstd-1)")"
        done
    done
    if [[ " ${ITEMS[*]} " == *" random "* ]]; then
        echo
        echo "### Random data"
        echo
        echo "| link | link rate Mbit/s | sample MiB | raw TCP wire MiB | DWCP wire MiB | DWCP / raw TCP | segments sent again % (raw TCP / DWCP) | DWCP payload / sample (its summary) | DWCP Mbit/s | % of link rate |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for LINK in "${DONE[@]}"; do
            printf '| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n' "$LINK" \
                "$(if [ "$LINK" = dc ]; then echo loopback; else link_rate "$LINK"; fi)" "$(mib "${R[$LINK.random.bytes]}")" \
                "$(mib "${R[$LINK.random.raw.tx]:-}")" "$(mib "${R[$LINK.random.auto.tx]:-}")" \
                "$(ratio "${R[$LINK.random.auto.tx]:-}" "${R[$LINK.random.raw.tx]:-}" 4)" \
                "$(pct "${R[$LINK.random.raw.retrans]:-}" "${R[$LINK.random.raw.segs]:-}" 2)" \
                "$(pct "${R[$LINK.random.auto.retrans]:-}" "${R[$LINK.random.auto.segs]:-}" 2)" \
                "$(ratio "${R[$LINK.random.auto.payload]:-}" "${R[$LINK.random.bytes]}" 4)" "$(eff random auto)" \
                "$(if [ "$LINK" = dc ]; then echo -; else pct "$(eff_num random auto)" "$(link_rate "$LINK")"; fi)"
        done
    fi
    if [ ${#SETTINGS[@]} -gt 0 ]; then
        echo
        echo "### PBA: auto against each fixed --compress setting (effective Mbit/s; \"<\": stopped after twice the best time so far + 5 s)"
        echo
        printf '| link | item | auto |'
        for s in "${SETTINGS[@]}"; do printf ' %s |' "$s"; done
        echo " best fixed | auto / best |"
        printf '| --- | --- | ---: |'
        for s in "${SETTINGS[@]}"; do printf ' ---: |'; done
        echo " --- | ---: |"
        for LINK in "${DONE[@]}"; do
            for item in "${ITEMS[@]}"; do
                local b
                b=$(best_fixed "$item")
                printf '| %s | %s | %s (%s) |' "$LINK" "$item" "$(eff "$item" auto)" "${R[$LINK.$item.auto.codec]:--}"
                for s in "${SETTINGS[@]}"; do printf ' %s |' "$(eff "$item" "c-${s/:/-}")"; done
                printf ' %s | %s |\n' "${b:--}" "$(ratio "$(eff_num "$item" auto)" "${b#* }" 3)"
            done
        done
    fi
    if [ ${#PAIRS[@]} -gt 0 ]; then
        echo
        echo "### The later image when the receiver holds the earlier one: rsync -az against DWCP (store holding the earlier)"
        echo
        echo "| link | pair | sample MiB | rsync MiB → / ← | rsync s | DWCP MiB → / ← | DWCP s | DWCP by reference MiB | bytes DWCP / rsync (both ways) | time DWCP / rsync |"
        echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        local p
        for LINK in "${DONE[@]}"; do
            for p in "${PAIRS[@]}"; do
                local k=$LINK.pair-$p
                printf '| %s | %s | %s | %s / %s | %s | %s / %s | %s | %s | %s | %s |\n' "$LINK" \
                    "$([ "$p" = mem ] && echo "mem-late (mem-early held)" || echo "disk-later (disk held)")" \
                    "$(mib "${R[$k.bytes]:-}")" "$(mib "${R[$k.rsync.tx]:-}")" "$(mib "${R[$k.rsync.rx]:-}")" \
                    "$([ "${R[$k.rsync.st]:-}" = ok ] && fmt "${R[$k.rsync.s]}" 2 || echo "${R[$k.rsync.st]:--}")" \
                    "$(mib "${R[$k.dwcp.tx]:-}")" "$(mib "${R[$k.dwcp.rx]:-}")" \
                    "$([ "${R[$k.dwcp.st]:-}" = ok ] && fmt "${R[$k.dwcp.s]}" 2 || echo "${R[$k.dwcp.st]:--}")" \
                    "$(mib "${R[$k.dwcp.ref]:-}")" \
                    "$(ratio "$(plus "${R[$k.dwcp.tx]:-}" "${R[$k.dwcp.rx]:-}")" "$(plus "${R[$k.rsync.tx]:-}" "${R[$k.rsync.rx]:-}")" 3)" \
                    "$(ratio "${R[$k.dwcp.s]:-}" "${R[$k.rsync.s]:-}" 3)"
            done
        done
    fi
}

# Verdict of a comparison on two completed runs: met/MISSED, or "not measured" when either is
# missing.
judge() {
    local a=$1 b=$2
    shift 2
    if num "$a" && num "$b"; then verdict "$@"; else echo "MISSED (not measured)"; fi
}

targets() {
    local item v a b r x
    echo "Targets:"
    for LINK in "${DONE[@]}"; do
        [ "$LINK" != dc ] || continue
        if [[ " ${ITEMS[*]} " == *" random "* ]]; then
            a=${R[$LINK.random.auto.tx]:-} b=${R[$LINK.random.raw.tx]:-}
            r=$(ratio "$a" "$b" 6)
            v=$(judge "$a" "$b" lt "$r" 1.005)
            echo "- $LINK, random: DWCP expands < 0.5 % (wire bytes against one raw TCP stream's): $(awk -v r="$r" 'BEGIN { if (r ~ /^[0-9.]+$/) printf "%+.2f %%", (r - 1) * 100; else printf "-" }') - $v"
            a=$(eff_num random auto) r=$(link_rate "$LINK")
            v=$(judge "$a" "$r" ge "$a" "$(times "$r" 0.9)")
            echo "- $LINK, random: DWCP >= 90 % of the link rate: $(fmt "$a") of $r Mbit/s - $v"
        fi
    done
    for LINK in "${DONE[@]}"; do
        for item in "${FIRST[@]}"; do
            [[ " ${ITEMS[*]} " == *" $item "* ]] || continue
            if [ "$LINK" != dc ]; then
                a=${R[$LINK.$item.auto.tx]:-} b=${R[$LINK.$item.z3]}
                v=$(judge "$a" "$b" le "$a" "$b")
                echo "- $LINK, $item: DWCP wire bytes <= zstd -3 of the sample: $(mib "$a") vs $(mib "$b") MiB ($(ratio "$a" "$b" 3) x) - $v"
            fi
            a=$(eff_num "$item" auto) b=$(eff_num "$item" zstd-1)
            if [ "$LINK" = intercontinental ]; then
                v=$(judge "$a" "$b" ge "$a" "$(times "$b" 1.5)")
                x=">= 1.5 x"
            else
                v=$(judge "$a" "$b" gt "$a" "$b")
                x=">"
            fi
            echo "- $LINK, $item: DWCP throughput $x zstd -1 over one TCP stream: $(fmt "$a") vs $(fmt "$b") Mbit/s ($(ratio "$a" "$b") x) - $v"
        done
    done
    if [[ " ${PAIRS[*]} " == *" mem "* ]]; then
        for LINK in "${DONE[@]}"; do
            local k=$LINK.pair-mem
            a=$(plus "${R[$k.dwcp.tx]:-}" "${R[$k.dwcp.rx]:-}") b=$(plus "${R[$k.rsync.tx]:-}" "${R[$k.rsync.rx]:-}")
            [ "${R[$k.dwcp.st]:-}" = ok ] || a=-
            [ "${R[$k.rsync.st]:-}" = ok ] || b=-
            if [ "$LINK" != dc ]; then
                v=$(judge "$a" "$b" le "$a" "$b")
                echo "- $LINK, mem-late with mem-early held: DWCP bytes <= rsync -z bytes (both ways): $(mib "$a") vs $(mib "$b") MiB ($(ratio "$a" "$b" 3) x) - $v"
            fi
            if [ "$LINK" = continent ]; then
                a=${R[$k.dwcp.s]:-} b=${R[$k.rsync.s]:-}
                [ "${R[$k.dwcp.st]:-}" = ok ] || a=-
                [ "${R[$k.rsync.st]:-}" = ok ] || b=-
                v=$(judge "$a" "$b" le "$a" "$(times "$b" 0.5)")
                echo "- $LINK, mem-late with mem-early held: DWCP time <= 0.5 x rsync's: $(fmt "$a" 2) vs $(fmt "$b" 2) s ($(ratio "$a" "$b" 3) x) - $v"
            fi
        done
    fi
    if [ ${#SETTINGS[@]} -gt 0 ]; then
        for LINK in "${DONE[@]}"; do
            local parts=() all=met bst
            for item in "${ITEMS[@]}"; do
                bst=$(best_fixed "$item")
                a=$(eff_num "$item" auto) b=${bst#* }
                v=$(judge "$a" "$b" ge "$a" "$(times "$b" 0.9)")
                [ "$v" = met ] || all=MISSED
                parts+=("$item $(ratio "$a" "$b" 2) of ${bst% *}")
            done
            x=$(IFS=';'; echo "${parts[*]}")
            echo "- $LINK: PBA auto >= 90 % of the best fixed setting: ${x//;/; } - $all"
        done
    fi
}

# Writes the report of the links done so far (after each link, so that a run cut short leaves
# what it measured).
write_report() {
    local LINK
    {
        echo "date: $STARTED; commit $COMMIT; $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); kernel $(uname -r); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "corpus: $CORPUS (scale $SCALE; manifest in $LOGS/corpus-MANIFEST); samples: the first $(for l in "${LINKS[@]}"; do printf '%s MiB on %s, ' "$(scaled "$(base_mib "$l")")" "$l"; done | sed 's/, $//') of each item"
        echo "DWCP: --insecure, --compress auto and --dedup on unless stated, a new empty store per first transfer; baselines: one TCP stream (system default congestion control: $DEFAULT_CC) through socat; rsync $(rsync --version | head -n1 | awk '{ print $3 }') -az to a daemon; zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n1), lz4 $(lz4 -V 2>&1 | grep -o 'v[0-9.]*' | head -n1); wire = tx bytes of ncwan0 in the sending namespace (IP bytes with retransmissions), not measured on dc"
        echo
        tables
        echo
        targets
        [ ${#DONE[@]} -eq ${#LINKS[@]} ] || echo "(cut short: links not measured: ${LINKS[*]:${#DONE[@]}})"
    } >"$REPORT"
}

