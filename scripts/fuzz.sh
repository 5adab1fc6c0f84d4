#!/usr/bin/env bash
# Fuzzes every parser entry point for SECONDS each (default 60), seeded with the public-sample fixtures.
# CI runs a short pass; BENCHMARKS.md-style notes in fuzz/README.md record the long runs.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz wants nightly-only sanitizer flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds/parse" "$seeds/records"
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
PY
# The fuzz workspace builds with sanitizer flags into its own target directory.
unset CARGO_TARGET_DIR
cd fuzz
for target in parse records; do
  echo "fuzz: $target for ${seconds}s"
  log="$seeds/$target.log"
  if ! cargo fuzz run "$target" "$seeds/$target" -- -max_total_time="$seconds" -max_len=8192 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target failed; the crashing input is under fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E "^Done [0-9]+ runs" "$log"
done
