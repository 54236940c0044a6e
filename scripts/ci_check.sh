#!/usr/bin/env bash
# This project's own regression guard: the default experiment (noisy_linear, 1-300-300-1 MLP,
# 500 epochs) for five regularizers x 20 seeds, checked against the committed baseline.
#   scripts/ci_check.sh                     check (exit 1 on a regression or a broken claim)
#   scripts/ci_check.sh --update-baseline   re-record results/baselines/ci_sweep.csv
# JUNIT=path.xml also writes a JUnit report. About 10 s on a 2-core laptop.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=results/baselines/ci_sweep.csv
out="$(mktemp -d)/ci_sweep"
trap 'rm -rf "$(dirname "$out")"' EXIT
dropbench run -m reg=none,l1,l2,dropout,droppath 'seed=range(20)' out="$out" -q
if [[ "${1:-}" == "--update-baseline" ]]; then
    dropbench check "$out" --baseline "$baseline" --update-baseline
else
    dropbench check "$out" --baseline "$baseline" --expect "droppath < none" --expect "l2 < none" ${JUNIT:+--junit "$JUNIT"}
fi
