#!/usr/bin/env bash
# The test suite, from a fresh machine: installs what is missing (scripts/setup.sh), checks formatting
# and lints, then runs every test. Integration tests start their own tansu broker on free loopback
# ports; set GATEWATCH_TEST_BROKERS=host:port to run them against an external Kafka instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: cargo clippy"
cargo clippy --locked --all-targets --quiet -- -D warnings
./scripts/deny.sh
./scripts/machete.sh
echo "test: cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --locked "$@" 2>&1 | tee "$log"
# One total over every test binary (unit, integration, doc).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
