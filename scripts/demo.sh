#!/usr/bin/env bash
# The demo, from a fresh machine: installs what is missing, starts a local broker (tansu), creates the
# topics, loads the real ADC sample lines from tests/fixtures/public-samples, runs gatewatch on them and
# prints what came out, then replays the same history into a hunt report (.cache/demo/hunt.html).
# Stops everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

port="${GATEWATCH_DEMO_PORT:-19092}"
admin="127.0.0.1:${GATEWATCH_DEMO_ADMIN_PORT:-19464}"
brokers="127.0.0.1:$port"
work=".cache/demo"
mkdir -p "$work"

echo "demo: building gatewatch (release)"
cargo build --release --quiet --bin gatewatch --example demo

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "demo: starting tansu on $brokers"
.tools/bin/tansu broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
  --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

samples=(tests/fixtures/public-samples/*.log)
./target/release/examples/demo load "$brokers" "${samples[@]}" | tee "$work/load.txt"
expected=$(sed -n 's/^loaded \([0-9]*\) records in all$/\1/p' "$work/load.txt")

echo "demo: running gatewatch (log: $work/gatewatch.log)"
GATEWATCH__KAFKA__BROKERS="$brokers" GATEWATCH__ADMIN__LISTEN="$admin" \
  ./target/release/gatewatch run --config config/demo.toml >"$work/gatewatch.log" 2>&1 &
gw=$!
pids=("$gw" "${pids[@]}")

./target/release/examples/demo report "$brokers" "$expected" "$admin"

kill -TERM "$gw"
if wait "$gw"; then echo "demo: gatewatch stopped cleanly (SIGTERM, offsets committed)"; fi

# The retro-hunt over the same history, as `gatewatch replay` would run it on collected files: the
# public samples and the two days of metric samples, 8-21 January 2020, into one HTML report.
./target/release/examples/demo metrics >"$work/metrics.ndjson"
./target/release/gatewatch replay --config config/demo.toml --from 2020-01-08 --to 2020-01-21 \
  --input 'tests/fixtures/public-samples/*.log' --metrics "$work/metrics.ndjson" \
  --mitigation-date vpx-dc1-01=2020-01-09 --mitigation-date vpx-dc2-01=2020-01-13 \
  --alerts-out "$work/retro-alerts.ndjson" --report "$work/hunt.html"
echo "demo: hunt report written to $work/hunt.html (open it in a browser)"
