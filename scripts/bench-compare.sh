#!/usr/bin/env bash
# Runs a benchmark against two payorch builds in one invocation, alternating
# them so both meet the same machine state: BASELINE (another commit's
# release binary, e.g. built in a git worktree) and this tree's build. Both
# binaries are copied first, so editing the tree meanwhile changes nothing.
# Build the baseline with a target directory of its own: cargo names a
# workspace member's artifacts without their path, so two checkouts sharing
# one target directory overwrite each other's crates.
#   BASELINE=/tmp/payorch-before bash scripts/bench-compare.sh api
set -euo pipefail
bench=${1:?usage: BASELINE=path bench-compare.sh api or webhooks, then rounds}
rounds=${2:-2}
: "${BASELINE:?set BASELINE to the payorch binary of the other build}"
runner=$(cargo bench --bench "$bench" --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
[ -x "$runner" ] || { echo "bench-compare: no bench executable for $bench" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$runner" "$work/bench"
cp "$BASELINE" "$work/payorch-baseline"
cp "${CARGO_TARGET_DIR:-target}/release/payorch" "$work/payorch-current"
for round in $(seq 1 "$rounds"); do
  echo "=== round $round: baseline ($BASELINE) ==="
  PAYORCH_BENCH_BIN="$work/payorch-baseline" "$work/bench"
  echo "=== round $round: this tree ==="
  PAYORCH_BENCH_BIN="$work/payorch-current" "$work/bench"
done
