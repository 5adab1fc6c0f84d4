#!/usr/bin/env bash
# Fuzzes every entry point that reads outside input for SECONDS each (default 60): the log parser and
# file reader (seeded with the public-sample fixtures), metric samples and baseline state records,
# detection state entries, indicator feeds, rule files (seeded with the shipped ones) and NITRO answers.
# CI runs a short pass; BENCHMARKS.md-style notes in fuzz/README.md record the long runs.
#   scripts/fuzz.sh [SECONDS [TARGET...]]     (default: every target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
all_targets=(parse records samples detect_state feeds rules nitro)
targets=("${@:-${all_targets[@]}}")
for target in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $target "* ]] || { echo "fuzz: unknown target $target (${all_targets[*]})" >&2; exit 2; }
done
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz wants nightly-only sanitizer flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
for target in "${all_targets[@]}"; do mkdir -p "$seeds/$target"; done
cp rules/citrix/*.yml tests/fixtures/sigma/*.yml "$seeds/rules/"
python3 - "$seeds" tests/fixtures/public-samples/*.log <<'PY'
import os, sys
out, files = sys.argv[1], sys.argv[2:]
n = 0
for f in files:
    data = open(f, 'rb').read()
    open(os.path.join(out, 'records', os.path.basename(f)), 'wb').write(data)
    for line in data.split(b'\n'):
        if line and not line.startswith(b'#'):
            # First byte selects the dataset hint: 0 = none, 3 = httperror.
            hint = b'\x03' if b'httperror' in f.encode() else b'\x00'
            open(os.path.join(out, 'parse', str(n)), 'wb').write(hint + line)
            n += 1
def seed(target, name, data):
    open(os.path.join(out, target, name), 'wb').write(data)
seed('samples', 'cpu', b'{"@timestamp":"2020-01-10T11:55:00Z","observer":{"hostname":"adc-1"},"system":{"cpu":{"total":{"pct":0.4}},"memory":{"used":{"pct":0.5}}}}')
seed('samples', 'flat', b'{"@timestamp":1578657300000,"observer.hostname":"adc-2","citrix_adc.cpu.packet_engine.pct":0.9,"citrix_adc.cpu.management.pct":0.1}')
group = b'{"times":["2020-01-11T10:00:00Z","2020-01-11T10:00:10Z"],"sample":[{"at":"2020-01-11T10:00:00Z","origin":{"offset":1},"original":"x"}],"values":{},"steps":[],"last":"2020-01-11T10:00:10Z"}'
window = (b'{"alert":{"id":"00","rule_id":"gw-citrix-bruteforce","stage":"auth-abuse","doc":{"gatewatch":{"count":10},"event":{}},'
          b'"update":false},"first":"2020-01-11T10:00:00Z","last":"2020-01-11T10:00:30Z","window":3600000,"count":3}')
seed('detect_state', 'group', b'c\x1fgw-citrix-bruteforce\x1fbob\x1f198.51.100.50\x00' + group)
seed('detect_state', 'window', b's\x1fgw-citrix-bruteforce\x1fbob\x1f198.51.100.50\x00' + window + b'\xffw\x00"2020-01-11T10:00:00Z"')
seed('detect_state', 'deletion', b'c\x1fgw-citrix-bruteforce\x1fbob\x00' + group + b'\xffc\x1fgw-citrix-bruteforce\x1fbob')
seed('feeds', 'csv', b'\x00' + open('tests/fixtures/feeds/cve-2019-19781-demo.csv', 'rb').read())
seed('feeds', 'stix', b'\x01{"type":"bundle","objects":[{"type":"indicator","id":"indicator--1","pattern_type":"stix",'
     b'"pattern":"[ipv4-addr:value = \'203.0.113.9\']","valid_until":"2030-01-01T00:00:00Z","labels":["c2"]},'
     b'{"type":"indicator","id":"indicator--2","pattern":"[url:value = \'http://x.test/a.sh\']"}]}')
seed('feeds', 'misp', b'\x02{"Event":{"info":"campaign","Attribute":[{"type":"ip-dst","value":"198.51.100.7"},'
     b'{"type":"md5","value":"d41d8cd98f00b204e9800998ecf8427e"},{"type":"domain","value":"evil.test"}]}}')
# NITRO answers: the first byte selects the HTTP status (0 = 200, 3 = 401).
seed('nitro', 'system', b'\x00{"errorcode":0,"message":"Done","severity":"NONE","system":{"cpuusagepcnt":12.5,'
     b'"memusagepcnt":"40.2","pktcpuusagepcnt":4294967295,"mgmtcpuusagepcnt":3.1}}')
seed('nitro', 'array', b'\x00{"errorcode":0,"system":[{"cpuusagepcnt":99.9}]}')
seed('nitro', 'auth', b'\x03{"errorcode":354,"message":"Invalid username or password","severity":"ERROR"}')
PY
# The fuzz workspace builds with sanitizer flags into its own target directory.
unset CARGO_TARGET_DIR
cd fuzz
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${seconds}s"
  log="$seeds/$target.log"
  if ! cargo fuzz run "$target" "$seeds/$target" -- -max_total_time="$seconds" -max_len=8192 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target failed; the crashing input is under fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E "^Done [0-9]+ runs" "$log"
done
