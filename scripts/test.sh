#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine and runs all of it: formatting, lints,
# unit, property and end-to-end tests, and a time-bounded fuzz run of every fuzz target.
#
#   scripts/test.sh              (as root: the end-to-end tests mount a small tmpfs)
#
# FUZZ_SECONDS (default 30) bounds the fuzz run, split evenly between the targets; 0 skips it.
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

# QEMU >= 10 from bookworm-backports (7.2, bookworm's own, corrupts guests on migration
# under TCG), for the node daemon's end-to-end tests.
if ! qemu-system-x86_64 --version 2>/dev/null | grep -Eq 'version (1[0-9]|[2-9][0-9])\.'; then
  sources=/etc/apt/sources.list.d/debian.sources
  if [[ -f $sources ]] && ! grep -q bookworm-backports "$sources"; then
    sed -i 's/^Suites: bookworm bookworm-updates$/& bookworm-backports/' "$sources"
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports \
    qemu-system-x86 qemu-utils
fi
echo "== test guest (kernel, busybox initramfs, memory checker)"
bash scripts/build-test-guest.sh target/test-guest

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
fuzz_seconds=${FUZZ_SECONDS:-30}
if ((fuzz_seconds > 0)); then
  echo "== fuzz all targets (${fuzz_seconds}s in all)"
  bash fuzz/run.sh "$fuzz_seconds" all
fi
echo "all checks passed"
echo "tests: $passed passed, $failed failed"
