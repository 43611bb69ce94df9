#!/usr/bin/env bash
# Fuzzes the DWCP frame decoders for a bounded time; exits non-zero if an input crashes them.
#
#   fuzz/run.sh SECONDS [TARGET]      (TARGET defaults to frame_decoder)
#
# Set DWCP_FUZZ_TOOLCHAIN=stable to build with the stable toolchain even where a nightly one
# is installed (what a machine with only the stable toolchain does anyway).
#
# New interesting inputs go to fuzz/corpus/TARGET (not committed); the checked-in seeds in
# fuzz/seeds/TARGET are read but never written. A crashing input is saved under
# fuzz/artifacts/TARGET and named in the output; replay it with
#   cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...   (from fuzz/, same toolchain flags)
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET]}
target=${2:-frame_decoder}
case $seconds in
  '' | *[!0-9]*) echo "SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# cargo-fuzz hands rustc -Z flags (sanitizer, coverage instrumentation) that only a nightly
# compiler accepts. Use a nightly toolchain when one is installed; machines that have only
# the stable toolchain (and cannot download another) let stable accept them instead.
toolchain=()
if [[ ${DWCP_FUZZ_TOOLCHAIN:-} == stable ]]; then
  export RUSTC_BOOTSTRAP=1
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
echo "fuzzing $target for ${seconds}s with $(cargo "${toolchain[@]}" --version)" \
  "${RUSTC_BOOTSTRAP:+(RUSTC_BOOTSTRAP=1)}"

mkdir -p "corpus/$target"
# -timeout: an input taking over 10 s counts as a hang (a crash). -print_final_stats: the
# execution rate, for planning CI time.
cargo "${toolchain[@]}" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
  -max_total_time="$seconds" -timeout=10 -print_final_stats=1
