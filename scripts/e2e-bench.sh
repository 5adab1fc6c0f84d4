#!/usr/bin/env bash
# End to end through a broker, in the same run: scripts/e2e-bench.sh [N] [RUNS]
# Starts tansu (memory engine) on a free port, puts the first N lines (default 200000) of the peer
# benchmark's corpus on a 2-partition input topic, then RUNS times (default 3), alternating:
#   copy      examples/kafka_copy.rs: consume the input, produce every value to a topic, no processing
#             (gatewatch's producer settings, same client library);
#   gatewatch `gatewatch run`, the full job: GeoLite2 City + ASN, the peer's 100,000 indicators, the rule
#             pack, every enriched event to its topic (at least once, committed offsets).
# Each from a fresh consumer group (session timeout 6 s for both: joining a group takes about half of it
# on tansu), timed from launch until the N-th output is delivered (for gatewatch:
# gatewatch_records_out_total on its enriched and dead-letter topics, polled every 100 ms), and from the
# first record consumed to the N-th delivered: the steady rate, without start-up (group join; for
# gatewatch also loading GeoIP, indicators and rules). Prints the medians and gatewatch's rate
# as a fraction of the copy's, both ways (issue #14's target: >= 0.8).
# E2E_INDICATORS names another indicator feed (csv: type,value,source) instead of the peer's 100,000;
# E2E_INDICATORS=1m makes (once, in the cache) and uses the peer's 100,000 plus 900,000 distinct
# pseudo-random IPv4 addresses (fixed seed).
# GATEWATCH_ENV adds settings as NAME=VALUE words (e.g. GATEWATCH_ENV="GATEWATCH__DETECT__STATE_TOPIC=");
# GATEWATCH_BIN runs another gatewatch binary (an older build, to compare); GATEWATCH_WRAP prefixes the gatewatch command (e.g. GATEWATCH_WRAP="perf record -g -o /tmp/live.data --").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
n=${1:-200000}
runs=${2:-3}
peer=${PEER_BENCH:-$root/../shared/bench/peer-syslog-ng}
cache=${PEER_BENCH_CACHE:-$HOME/.cache/gatewatch-peer-bench}/peer-syslog-ng
corpus=$cache/corpus-1000000.log
indicators=$cache/indicators.csv
[ -s .tools/geoip/GeoLite2-ASN.mmdb ] && [ -x .tools/bin/tansu ] || scripts/setup.sh
mkdir -p "$cache"
if [ ! -s "$corpus" ]; then
  python3 "$peer/make_corpus.py" -n 1000000 -o "$corpus.tmp" && mv "$corpus.tmp" "$corpus"
fi
if [ ! -s "$indicators.typed.csv" ]; then
  [ -s "$indicators" ] || { python3 "$peer/make_corpus.py" --indicators "$indicators.tmp" && mv "$indicators.tmp" "$indicators"; }
  { echo "type,value,source"; cut -d, -f1,3 "$indicators" | sort -u -t, -k1,1 | sed 's/^/ipv4,/'; } >"$indicators.typed.csv"
fi
if [ "${E2E_INDICATORS:-}" = 1m ]; then
  E2E_INDICATORS=$cache/indicators-1m.typed.csv
  [ -s "$E2E_INDICATORS" ] || python3 - "$indicators.typed.csv" "$E2E_INDICATORS" <<'PY'
import random, sys
rows = open(sys.argv[1]).read().splitlines()
seen = {row.split(",")[1] for row in rows[1:]}
rng = random.Random(7)
with open(sys.argv[2] + ".tmp", "w") as out:
    out.write("\n".join(rows) + "\n")
    added = 0
    while added < 900_000:
        a = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if a not in seen:
            seen.add(a)
            out.write(f"ipv4,{a},random\n")
            added += 1
import os
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
fi
cargo build --release --locked --quiet --bin gatewatch --example kafka_copy
target=${CARGO_TARGET_DIR:-$root/target}/release
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
brokers=127.0.0.1:$port
.tools/bin/tansu broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
  --storage-engine memory://tansu/ >/dev/null 2>&1 &
tansu=$!
trap 'kill $tansu 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
head -n "$n" "$corpus" >"$work/input.log"
"$target/examples/kafka_copy" create "$brokers" 2 input
echo "e2e-bench: $("$target/examples/kafka_copy" produce "$brokers" input "$work/input.log" 2) lines on the input topic"
cat >"$work/gatewatch.toml" <<TOML
[enrich.geoip]
city_db = "$root/.tools/geoip/GeoLite2-City.mmdb"
asn_db = "$root/.tools/geoip/GeoLite2-ASN.mmdb"
[[enrich.ioc.feeds]]
name = "peer-indicators"
path = "${E2E_INDICATORS:-$indicators.typed.csv}"
format = "csv"
[detect]
rules_dirs = ["$root/rules"]
TOML
metrics() { # records consumed, and records out (summed over the enriched and dead-letter topics)
  { curl -s "http://$1/metrics" || true; } | awk -v i='gatewatch_records_in_total{topic="input"}' \
    -v a="gatewatch_records_out_total{topic=\"enriched-$2\"}" -v b="gatewatch_records_out_total{topic=\"dlq-$2\"}" \
    '$1 == i { n += $2 } $1 == a || $1 == b { s += $2 } END { print n + 0, s + 0 }'
}
# E2E_WORKERS lists the pipeline.workers values to run gatewatch with, each in every run (default
# "0": one per core), e.g. E2E_WORKERS="1 2" compares one worker with two in the same run.
workers_list=${E2E_WORKERS:-0}
copy_secs=() ; copy_cpu=() ; copy_steady=()
declare -A gw_secs gw_steady gw_cpu gw_rss
for run in $(seq "$runs"); do
  "$target/examples/kafka_copy" create "$brokers" 3 "copy-$run"
  /usr/bin/time -f '%U %S %M' -o "$work/copy.time" \
    "$target/examples/kafka_copy" copy "$brokers" input "copy-$run" "copy-group-$run" "$n" >"$work/copy.secs"
  read -r total first <"$work/copy.secs"
  copy_secs+=("$total")
  copy_steady+=("$(awk -v t="$total" -v f="$first" 'BEGIN { printf "%.3f", t - f }')")
  copy_cpu+=("$(tail -n 1 "$work/copy.time" | awk '{ print $1 + $2 }')")
  line="e2e-bench: run $run: copy ${copy_secs[-1]} s (steady ${copy_steady[-1]} s, ${copy_cpu[-1]} CPU-s)"
  for w in $workers_list; do
    id=$run-w$w
    "$target/examples/kafka_copy" create "$brokers" 3 "enriched-$id"
    "$target/examples/kafka_copy" create "$brokers" 1 "alerts-$id" "dlq-$id"
    "$target/examples/kafka_copy" create "$brokers" 2 "metrics-$id" "state-$id" "detect-state-$id"
    admin=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    broker_before=$(awk '{ print $14 + $15 }' /proc/$tansu/stat)
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    env GATEWATCH__KAFKA__BROKERS="$brokers" GATEWATCH__KAFKA__GROUP_ID="gatewatch-group-$id" \
      GATEWATCH__KAFKA__INPUT_TOPICS=input GATEWATCH__KAFKA__SESSION_TIMEOUT=6s GATEWATCH__OUTPUT__ENRICHED_TOPIC="enriched-$id" \
      GATEWATCH__OUTPUT__ALERTS_TOPIC="alerts-$id" GATEWATCH__OUTPUT__DLQ_TOPIC="dlq-$id" \
      GATEWATCH__BASELINE__METRICS_TOPIC="metrics-$id" GATEWATCH__BASELINE__STATE_TOPIC="state-$id" \
      GATEWATCH__DETECT__STATE_TOPIC="detect-state-$id" GATEWATCH__ADMIN__LISTEN="$admin" \
      GATEWATCH__PIPELINE__WORKERS="$w" ${GATEWATCH_ENV:-} \
      /usr/bin/time -f '%U %S %M' -o "$work/gw.time" ${GATEWATCH_WRAP:-} "${GATEWATCH_BIN:-$target/gatewatch}" --config "$work/gatewatch.toml" run \
      >"$work/gw.log" 2>&1 &
    gw=$!
    first=""
    while read -r in out < <(metrics "$admin" "$id") && [ "$out" -lt "$n" ]; do
      kill -0 $gw 2>/dev/null || { tail -20 "$work/gw.log"; echo "e2e-bench: gatewatch exited" >&2; exit 1; }
      [ -n "$first" ] || [ "$in" -eq 0 ] || first=$(date +%s.%N)
      sleep 0.1
    done
    end=$(date +%s.%N)
    broker_cpu=$(awk -v b="$broker_before" -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15 - b) / hz }' /proc/$tansu/stat)
    pkill -TERM -P $gw; wait $gw || { tail -20 "$work/gw.log"; cat "$work/gw.time"; }
    secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')
    steady=$(awk -v s="${first:-$start}" -v e="$end" 'BEGIN { printf "%.3f", e - s }')
    read -r cpu rss < <(tail -n 1 "$work/gw.time" | awk '{ print $1 + $2, $3 }')
    gw_secs[$w]+="$secs " ; gw_steady[$w]+="$steady " ; gw_cpu[$w]+="$cpu " ; gw_rss[$w]+="$rss "
    line+=", gatewatch (workers=$w) $secs s (steady $steady s, $cpu CPU-s, $((rss / 1024)) MiB; broker $broker_cpu CPU-s)"
  done
  echo "$line"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
c=$(median "${copy_secs[@]}") ; cs=$(median "${copy_steady[@]}")
awk -v n="$n" -v c="$c" -v cs="$cs" -v cc="$(median "${copy_cpu[@]}")" 'BEGIN {
  printf "e2e-bench: copy (no processing) %.2f s (steady %.2f s = %.0f records/s), %.1f CPU-s\n", c, cs, n / cs, cc }'
for w in $workers_list; do
  # shellcheck disable=SC2086
  awk -v n="$n" -v w="$w" -v c="$c" -v cs="$cs" -v g="$(median ${gw_secs[$w]})" -v gs="$(median ${gw_steady[$w]})" \
    -v gc="$(median ${gw_cpu[$w]})" -v m="$(median ${gw_rss[$w]})" 'BEGIN {
    printf "e2e-bench: gatewatch full job, workers=%s: %.2f s (steady %.2f s = %.0f records/s), %.1f CPU-s, peak RSS %.0f MiB\n", w, g, gs, n / gs, gc, m / 1024
    printf "e2e-bench: gatewatch (workers=%s) at %.2f of the copy'"'"'s rate from launch, %.2f steady (medians of %d runs)\n", w, c / g, cs / gs, '"$runs"' }'
done
set -- $workers_list
if [ $# -ge 2 ]; then
  # shellcheck disable=SC2086
  awk -v a="$1" -v b="${!#}" -v ga="$(median ${gw_steady[$1]})" -v gb="$(median ${gw_steady[${!#}]})" \
    -v la="$(median ${gw_secs[$1]})" -v lb="$(median ${gw_secs[${!#}]})" 'BEGIN {
    printf "e2e-bench: workers=%s runs %.2fx the rate of workers=%s steady, %.2fx from launch\n", b, ga / gb, a, la / lb }'
fi
