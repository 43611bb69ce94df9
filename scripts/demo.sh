#!/usr/bin/env bash
# Builds NovaCron and moves a generated file with DWCP over mutual TLS on loopback: a cluster
# CA and two node certificates, a receiver, and a sender with its live progress and summary.
#
#   scripts/demo.sh [SIZE]        SIZE of the generated file, default 1G (suffixes K, M, G)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1G}

cargo build --release -p novacron
bin=$PWD/target/release/novacron
work=$(mktemp -d)
rx_pid=
cleanup() {
  [[ -n $rx_pid ]] && kill "$rx_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$bin" ca init --dir "$work/pki" >/dev/null
"$bin" ca issue rx --san 127.0.0.1 --dir "$work/pki" >/dev/null
"$bin" ca issue tx --dir "$work/pki" >/dev/null
mkdir "$work/inbox"
head -c "$size" /dev/urandom >"$work/payload.bin"

"$bin" dwcp serve --listen 127.0.0.1:0 --dir "$work/inbox" --tls-dir "$work/pki" --node rx \
  2>"$work/rx.log" &
rx_pid=$!
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$work/rx.log")
  [[ -n $addr ]] && break
  sleep 0.1
done
[[ -n $addr ]] || { cat "$work/rx.log" >&2; exit 1; }

"$bin" dwcp send "$work/payload.bin" "$addr" --tls-dir "$work/pki" --node tx --server-name rx
cmp "$work/payload.bin" "$work/inbox/payload.bin" && echo "received file is identical"
