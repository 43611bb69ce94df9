#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine and runs all of it: formatting, lints,
# unit, property and end-to-end tests, and a time-bounded fuzz run of the frame decoder.
#
#   scripts/test.sh              (as root: the end-to-end tests mount a small tmpfs)
#
# FUZZ_SECONDS (default 30) bounds the fuzz run; 0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mount >/dev/null || need_apt+=(mount)
command -v cc >/dev/null || need_apt+=(gcc)
if ((${#need_apt[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
fuzz_seconds=${FUZZ_SECONDS:-30}
if ((fuzz_seconds > 0)); then
  echo "== fuzz frame decoder (${fuzz_seconds}s)"
  bash fuzz/run.sh "$fuzz_seconds"
fi
echo "all checks passed"
