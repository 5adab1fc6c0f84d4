#!/usr/bin/env bash
# Replay throughput from .gz files: scripts/replay-bench.sh [COPIES]
# Builds COPIES (default 400) copies of every public sample record into one gzip file per appliance-file
# kind, replays them with `gatewatch replay --input ... --alerts-out` (release build, default config, rules
# on, no GeoIP) and reports records/s and peak memory (GNU time).
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-400}
cargo build --release --locked --quiet --bin gatewatch
bin=${CARGO_TARGET_DIR:-target}/release/gatewatch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in"
for f in tests/fixtures/public-samples/*.log; do
  name=$(basename "$f" .log)
  grep -v '^#' "$f" >"$work/one.log" || true
  # 1,000 copies at a time (one process per copy made large runs slow to build).
  chunk=$((copies < 1000 ? copies : 1000))
  for _ in $(seq "$chunk"); do cat "$work/one.log"; done >"$work/chunk.log"
  { for _ in $(seq $((copies / chunk))); do cat "$work/chunk.log"; done
    for _ in $(seq $((copies % chunk))); do cat "$work/one.log"; done
  } | gzip -6 >"$work/in/$name.log.gz"
done
bytes=$(cat "$work"/in/*.gz | wc -c)
raw=$(for f in "$work"/in/*.gz; do gzip -dc "$f"; done | wc -c)
echo "replay-bench: $(ls "$work"/in/*.gz | wc -l) files, $((raw / 1048576)) MiB of logs, $((bytes / 1048576)) MiB gzip"
/usr/bin/time -v "$bin" replay --from 1970-01-01 --input "$work/in/*.log.gz" --alerts-out "$work/alerts.ndjson" \
  2>"$work/stderr"
records=$(sed -n 's/^replay [0-9a-f]*: \([0-9]*\) records.*/\1/p' "$work/stderr")
secs=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): \(.*\)/\1/p' "$work/stderr" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
rss=$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\)/\1/p' "$work/stderr")
alerts=$(wc -l <"$work/alerts.ndjson")
awk -v r="$records" -v s="$secs" -v m="$rss" -v a="$alerts" \
  'BEGIN { printf "replay-bench: %d records in %.2f s = %.0f records/s, %d alerts, peak RSS %.0f MiB\n", r, s, r / s, a, m / 1024 }'
