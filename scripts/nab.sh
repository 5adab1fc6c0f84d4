#!/usr/bin/env bash
# Scores the shipped baseline detector on the Numenta Anomaly Benchmark:
#   scripts/nab.sh [NAB_DIR] [SCORER]     (defaults: ../shared/nab, ../shared/tools/nab_score.py)
# Every NAB series goes through `gatewatch baseline backtest` (the service's detector and its configured
# threshold, from config/default.toml), then the scorer reports standard / reward-low-FP / reward-low-FN
# scores with its optimised threshold and with the threshold the service ships with.
set -euo pipefail
cd "$(dirname "$0")/.."
nab=$(realpath "${1:-../shared/nab}")
scorer=$(realpath "${2:-../shared/tools/nab_score.py}")
[ -d "$nab/data" ] || { echo "nab: no NAB corpus at $nab" >&2; exit 2; }
cargo build --release --locked --quiet
bin=${CARGO_TARGET_DIR:-target}/release/gatewatch
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s%N)
rows=0
for f in "$nab"/data/*/*.csv; do
  rel=${f#"$nab/data/"}
  mkdir -p "$out/$(dirname "$rel")"
  "$bin" baseline backtest --input "$f" --output "$out/$rel" >/dev/null
  rows=$((rows + $(wc -l < "$f") - 1))
done
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
threshold=$(awk -F' *= *' '/^\[baseline\]/ {b=1} b && $1=="alert_threshold" {print $2; exit}' config/default.toml)
echo "nab: $rows rows in $(ls "$nab"/data/*/*.csv | wc -l) series, backtested in ${elapsed_ms} ms"
echo "== optimised threshold (per profile, over the whole corpus)"
python3 "$scorer" --nab "$nab" --results "$out"
echo "== the shipped threshold (baseline.alert_threshold = $threshold)"
python3 "$scorer" --nab "$nab" --results "$out" --threshold "$threshold"
