#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes for a bounded time; exits non-zero if an input crashes
# them.
#
#   fuzz/run.sh SECONDS [TARGET]      (TARGET defaults to frame_decoder)
#   fuzz/run.sh SECONDS all           (every target in turn, SECONDS split between them)
#
# Targets: frame_decoder (DWCP frames), hde_item (HDE items), segments_payload (`Segments`
# payloads), api_body (REST API request bodies), qmp_reply (lines from QEMU's QMP socket);
# `cargo fuzz list` in fuzz/ names them all. With `all`, each target
# gets SECONDS divided by their number (at least 1 s; the remainder goes to the first ones),
# every target runs even after one crashes, and the exit status is non-zero if any crashed.
#
# Set DWCP_FUZZ_TOOLCHAIN=stable to build with the stable toolchain even where a nightly one
# is installed (what a machine with only the stable toolchain does anyway).
#
# New interesting inputs go to fuzz/corpus/TARGET (not committed); the checked-in seeds in
# fuzz/seeds/TARGET are read but never written. A crashing input is saved under
# fuzz/artifacts/TARGET and named in the output; replay it with
#   cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...   (from fuzz/, same toolchain flags)
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET|all]}
target=${2:-frame_decoder}
case $seconds in
  '' | *[!0-9]*) echo "SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
# libFuzzer reads -max_total_time=0 as "no limit".
if ((10#$seconds < 1)); then
  echo "SECONDS must be at least 1, got '$seconds'" >&2
  exit 2
fi
seconds=$((10#$seconds))
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

# Fuzzes target $1 for $2 seconds.
fuzz_one() {
  local target=$1 seconds=$2
  echo "fuzzing $target for ${seconds}s with $(cargo "${toolchain[@]}" --version)" \
    "${RUSTC_BOOTSTRAP:+(RUSTC_BOOTSTRAP=1)}"
  mkdir -p "corpus/$target"
  # -timeout: an input taking over 10 s counts as a hang (a crash). -print_final_stats: the
  # execution rate, for planning CI time.
  cargo "${toolchain[@]}" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1
}

if [[ $target != all ]]; then
  fuzz_one "$target" "$seconds"
  exit
fi

mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
if ((${#targets[@]} == 0)); then
  echo "no fuzz targets found" >&2
  exit 1
fi
# Build them all first, so that the time split below is spent fuzzing, not compiling.
cargo "${toolchain[@]}" fuzz build
share=$((seconds / ${#targets[@]}))
extra=$((seconds % ${#targets[@]}))
failed=()
total=0
for i in "${!targets[@]}"; do
  t=$((share + (i < extra ? 1 : 0)))
  t=$((t > 0 ? t : 1))
  total=$((total + t))
  fuzz_one "${targets[i]}" "$t" || failed+=("${targets[i]}")
done
if ((${#failed[@]})); then
  echo "fuzz targets that failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzed ${#targets[@]} targets (${targets[*]}) for ${total}s in all"
