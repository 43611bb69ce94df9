#!/usr/bin/env bash
# API throughput and latency of `novacron server` (release build) on loopback, with wrk:
#   - GET /api/v1/vms with VMS (default 1,000) VM records in the store, CONNS (default 100)
#     concurrent connections;
#   - create + delete of VM records (no QEMU: a qcow2 overlay and a store commit each);
#   - baseline in the same run: GET /healthz (no auth, tiny body) at the same concurrency,
#     the floor of this machine's HTTP stack and of wrk itself.
#
#   bench/api.sh [VMS] [SECONDS] [CONNS]
#
# The paced case sends, on each of the CONNS connections, one list request every PACE_MS
# (default 10) milliseconds: a fixed offered load rather than saturation.
# WRK_THREADS (default 2) sets wrk's threads for the GET cases; LIST_QUERY (e.g. `?limit=50`)
# is appended to the first list case.
# SERVER_CPUS and WRK_CPUS (taskset lists, e.g. 0 and 1) pin the server and wrk to separate
# CPUs, so that the load tool does not preempt the server it measures; the server's runtime
# then starts one worker per CPU it may use.
#
# Needs wrk, curl, jq and qemu-img (installed with apt-get when missing, as root).
set -euo pipefail
[[ -n ${BENCH_TRACE:-} ]] && set -x
cd "$(dirname "$0")/.."
vms=${1:-1000}
secs=${2:-20}
conns=${3:-100}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v qemu-img >/dev/null || need+=(qemu-utils)
if ((${#need[@]})); then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

cargo build --release --quiet -p novacron
bin=${CARGO_TARGET_DIR:-target}/release/novacron
work=$(mktemp -d)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
server_pin=()
wrk_pin=()
[[ -n ${SERVER_CPUS:-} ]] && server_pin=(taskset -c "$SERVER_CPUS")
[[ -n ${WRK_CPUS:-} ]] && wrk_pin=(taskset -c "$WRK_CPUS")

NOVACRON_LOG=warn "${server_pin[@]}" "$bin" server --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 100); do
  grep -q "listening on" "$work/server.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^novacron server listening on \(http:[^ ]*\).*/\1/p' "$work/server.out")
[[ -n $addr ]] || { cat "$work/server.err"; echo "server did not start" >&2; exit 1; }
export NOVACRON_TOKEN
NOVACRON_TOKEN=$(cat "$work/data/admin.token")
auth="Authorization: Bearer $NOVACRON_TOKEN"
api() { curl -sf -H "$auth" -H 'content-type: application/json' "$@"; }

# Room for every record in the admin tenant's quota.
api -d '{"name":"admin","quota":{"max_vms":1000000,"max_vcpus":1000000,"max_memory":"1024T"}}' \
  "$addr/api/v1/tenants" >/dev/null
qemu-img create -q -f qcow2 "$work/base.qcow2" 64M
op=$(api -d "{\"name\":\"bench\",\"disk\":\"$work/base.qcow2\"}" "$addr/api/v1/images" | jq -r .operation.id)
api "$addr/api/v1/operations/$op/wait" >/dev/null

echo "creating $vms VM records..."
t0=$(date +%s.%N)
seq "$vms" | xargs -P 4 -I{} curl -sf -o /dev/null -H "$auth" -H 'content-type: application/json' \
  -d '{"name":"vm-{}","vcpus":1,"memory":"64M","image":"bench"}' "$addr/api/v1/vms"
t1=$(date +%s.%N)
count=$(api "$addr/api/v1/vms?limit=1000" | jq '.items | length')
[[ $count == "$vms" ]] || { echo "expected $vms VMs, found $count" >&2; exit 1; }
list_bytes=$(api "$addr/api/v1/vms" | wc -c)
full_bytes=$(api "$addr/api/v1/vms?limit=1000" | wc -c)

# Prints: requests/s p50_ms p99_ms
run_wrk() {
  local out
  out=$("${wrk_pin[@]}" wrk "$@" --latency)
  echo "$out" >>"$work/wrk.log"
  echo "$out" | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 }
      return v
    }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { bad = $5 }
    /^failed_requests/ { bad = $2 }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, bad + 0 }'
}

echo "wrk: ${secs}s per case, $conns connections (create+delete: 2 connections, one per thread)"
read -r h_rps h_p50 h_p99 h_bad < <(run_wrk -t"${WRK_THREADS:-2}" -c"$conns" -d"${secs}s" "$addr/healthz")
read -r l_rps l_p50 l_p99 l_bad < <(run_wrk -t"${WRK_THREADS:-2}" -c"$conns" -d"${secs}s" -H "$auth" "$addr/api/v1/vms${LIST_QUERY:-}")
read -r f_rps f_p50 f_p99 f_bad < <(run_wrk -t"${WRK_THREADS:-2}" -c"$conns" -d"${secs}s" -H "$auth" "$addr/api/v1/vms?limit=1000")
pace_ms=${PACE_MS:-10}
read -r p_rps p_p50 p_p99 p_bad < <(PACE_MS=$pace_ms run_wrk -t"${WRK_THREADS:-2}" -c"$conns" -d"${secs}s" \
  -s bench/api-paced.lua -H "$auth" "$addr/api/v1/vms${LIST_QUERY:-}")
read -r c_rps c_p50 c_p99 c_bad < <(run_wrk -t2 -c2 -d"${secs}s" -s bench/api-create-delete.lua "$addr")

cpus="$(nproc) CPUs shared by server and wrk"
[[ -n ${SERVER_CPUS:-}${WRK_CPUS:-} ]] && cpus="server on CPUs ${SERVER_CPUS:-any}, wrk on CPUs ${WRK_CPUS:-any}"
printf '\n%s\n' "novacron server API on loopback ($cpus), $vms VMs in the store"
printf '%s\n' "list body: $list_bytes bytes for the first page (100 VMs), $full_bytes bytes for all $vms"
printf '%-36s %10s %9s %9s %8s %12s\n' case req/s p50_ms p99_ms errors "vs healthz"
printf '%-36s %10s %9s %9s %8s %12s\n' "GET /healthz (baseline)" "$h_rps" "$h_p50" "$h_p99" "$h_bad" "1.00x"
printf '%-36s %10s %9s %9s %8s %12s\n' "GET /api/v1/vms ($conns conns)" "$l_rps" "$l_p50" "$l_p99" "$l_bad" \
  "$(awk -v a="$l_rps" -v b="$h_rps" 'BEGIN { printf "%.2fx", a / b }')"
printf '%-36s %10s %9s %9s %8s %12s\n' "GET /api/v1/vms, paced ${pace_ms} ms/conn" "$p_rps" "$p_p50" "$p_p99" "$p_bad" \
  "$(awk -v a="$p_rps" -v b="$h_rps" 'BEGIN { printf "%.2fx", a / b }')"
printf '%-36s %10s %9s %9s %8s %12s\n' "GET /api/v1/vms?limit=1000" "$f_rps" "$f_p50" "$f_p99" "$f_bad" \
  "$(awk -v a="$f_rps" -v b="$h_rps" 'BEGIN { printf "%.2fx", a / b }')"
printf '%-36s %10s %9s %9s %8s %12s\n' "create+delete VM record (2 conns)" "$c_rps" "$c_p50" "$c_p99" "$c_bad" \
  "$(awk -v a="$c_rps" -v b="$h_rps" 'BEGIN { printf "%.3fx", a / b }')"
printf '%s\n' "creating $vms records through the API took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (4 parallel clients)"
p99_ok=$(awk -v p="$l_p99" 'BEGIN { print (p < 5) ? "met" : "missed" }')
echo "target p99 < 5 ms for the list (first page) at $conns connections: $p99_ok"
