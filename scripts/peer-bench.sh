#!/usr/bin/env bash
# gatewatch next to syslog-ng on the same job, in the same run: scripts/peer-bench.sh [N] [RUNS]
# Runs ../shared/bench/peer-syslog-ng/run.sh (PEER_BENCH overrides its path) with GATEWATCH_CMD set to
# `gatewatch replay --enriched-out` doing the full job on the peer corpus: GeoLite2 City (the peer's
# database) + ASN, the peer's 100,000 indicators as a csv feed, the shipped rule pack; every enriched event
# written as NDJSON, the alerts to a file. Prints the peer script's report, ending in the ratio.
# GATEWATCH_EXTRA adds arguments to the replay (e.g. `--sort-memory 16MiB`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
peer=${PEER_BENCH:-$root/../shared/bench/peer-syslog-ng/run.sh}
[ -x "$peer" ] || [ -f "$peer" ] || { echo "peer-bench: $peer not found (set PEER_BENCH)" >&2; exit 1; }
[ -s .tools/geoip/GeoLite2-ASN.mmdb ] || scripts/setup.sh
cargo build --release --locked --quiet --bin gatewatch
bin=${CARGO_TARGET_DIR:-$root/target}/release/gatewatch
conf_tmpl=$(mktemp --suffix=.toml)
trap 'rm -f "$conf_tmpl"' EXIT
cat >"$conf_tmpl" <<TOML
[enrich.geoip]
city_db = "MMDB_PATH"
asn_db = "$root/.tools/geoip/GeoLite2-ASN.mmdb"
[[enrich.ioc.feeds]]
name = "peer-indicators"
path = "INDICATORS_PATH"
format = "csv"
[detect]
rules_dirs = ["$root/rules"]
TOML
export GATEWATCH_CMD="sed -e 's|MMDB_PATH|@MMDB@|' -e 's|INDICATORS_PATH|@INDICATORS_TYPED@|' $conf_tmpl > @OUTPUT@.toml && \
$bin --config @OUTPUT@.toml replay --from 1970-01-01 --input @CORPUS@ --enriched-out @OUTPUT@ \
--alerts-out @OUTPUT@.alerts ${GATEWATCH_EXTRA:-}"
bash "$peer" "${1:-1000000}" "${2:-3}"
