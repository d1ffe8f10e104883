#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60),
# starting from the committed corpus in fuzz/corpus/<target>; new inputs go
# to a scratch directory, so the committed corpus only changes when someone
# merges them in (`make fuzz-merge`). A crash fails the run and leaves its
# input in fuzz/artifacts/<target>/ (turn it into a regression test).
#
# cargo fuzz drives libFuzzer with nightly-only rustc flags
# (-Zsanitizer=address, sanitizer coverage); this machine has only the
# stable toolchain, so RUSTC_BOOTSTRAP=1 lets stable accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-${SECONDS_EACH:-60}}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build --dev
status=0
for target in $(cargo fuzz list); do
  scratch=$(mktemp -d)
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  if cargo fuzz run --dev "$target" "$scratch" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -print_final_stats=0 >"$scratch.log" 2>&1; then
    echo "fuzz $target: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$scratch.log" | tail -n1)s, no crash"
  else
    echo "fuzz $target: FAILED" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$scratch.log" >&2 || tail -n 30 "$scratch.log" >&2
    status=1
  fi
  rm -rf "$scratch" "$scratch.log"
done
exit "$status"
